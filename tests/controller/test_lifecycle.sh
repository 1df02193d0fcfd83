#!/usr/bin/env bash
# Register, subscribe, invoke, shutdown: every event reaches local Kinesis, including
# the last platform.report that Lambda delivers after SHUTDOWN.
. "$(dirname "$0")/lib.sh"

kinesis_start
N=5
sim_run --invocations $N --log-lines 3 --interval-ms 30 --handler-ms 5 "${KINESIS_ENV[@]}" \
	--env KTE_FLUSH=end --env KTE_BUFFER_MAX_ITEMS=2000 --env KTE_BUFFER_TIMEOUT_MS=50
[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
sj_assert "s.invocations.completed === $N"
sj_assert 's.errors.init.length === 0 && s.errors.exit.length === 0'
# Registered under its file name, subscribed with every buffering value we configured.
sj_assert 's.cold_start.extensions.length === 1 && s.cold_start.extensions[0].name === "kinesis-telemetry-extension"'
sj_assert 's.cold_start.extensions[0].internal === false'
sj_assert 's.cold_start.extensions[0].exec_to_first_next_ms > 0'
sj_assert "s.telemetry.subscriptions.length === 1 && s.telemetry.subscriptions[0].destination === 'http://sandbox.localdomain:$LISTENER_PORT'"
sj_assert 's.telemetry.subscriptions[0].max_items === 2000 && s.telemetry.subscriptions[0].max_bytes === 262144 && s.telemetry.subscriptions[0].timeout_ms === 50'
sj_assert 's.telemetry.failures === 0 && s.telemetry.undelivered === 0'
# Three processes, exited in time on its own.
sj_assert 's.memory.processes === 3'
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
sj_assert 's.shutdown.extensions[0].time_to_exit_ms < s.shutdown.budget_ms'
log_has 'INFO subscribed to telemetry' || fail "no subscription log line"
log_has 'INFO SHUTDOWN \(spindown\) after 5 invocations' || fail "no SHUTDOWN log line"
log_has 'shutdown: everything received was sent' || fail "shutdown reports unsent events"

assert_all_ids_arrived
reports=$(kinesis_count_type platform.report)
[ "$reports" -ge $N ] || fail "$reports platform.report events in Kinesis, want $N (the last arrives after SHUTDOWN)"
starts=$(kinesis_count_type platform.start)
[ "$starts" -ge $N ] || fail "$starts platform.start events in Kinesis, want $N"
pass "$N invocations, every function log id and all $N reports in Kinesis"
