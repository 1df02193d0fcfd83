#!/usr/bin/env bash
# Lambda Managed Instances: registering for INVOKE is refused (403
# Extension.InvalidEventType); the extension registers for SHUTDOWN only, ships
# continuously while concurrent invocations interleave, and everything arrives.
. "$(dirname "$0")/lib.sh"

# There is no INVOKE and no freeze: the controller sits in event/next for the whole run,
# so a child killed now must be restarted from inside that wait (signalfd in the same
# poll as the Runtime API socket), not at some next event.
restart() {
	local role=$1 pid
	pid=$(child_pid "$role")
	[ -n "$pid" ] || fail "no $role to kill"
	kill -9 "$pid"
	wait_for 20 log_has "$role \\(pid $pid\\) killed by signal 9 \\(Killed\\); restarted as pid" ||
		fail "$role not restarted while the controller waits in next"
	wait_for 10 has_child "$role" || fail "no $role after the restart"
	echo "  $role (pid $pid) killed and restarted during the run"
}

kinesis_start
N=40
sim_start --managed-instances --concurrency 3 --invocations $N --log-lines 5 --handler-ms 20 \
	--interval-ms 30 "${KINESIS_ENV[@]}"
wait_for 60 log_has "invoke 5 " || fail "the run did not reach invocation 5"
restart listener
wait_for 60 log_has "invoke 20 " || fail "the run did not reach invocation 20"
restart dispatcher
sim_wait 180
[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
sj_assert "s.invocations.completed === $N"
sj_assert 's.errors.init.length === 0 && s.errors.exit.length === 0'
log_has 'INVOKE refused \(Extension.InvalidEventType\): Lambda Managed Instances; registering for SHUTDOWN only' ||
	fail "no log line for the Managed Instances path"
log_has 'ready in [0-9]+ us: shipping, flush continuous \(managed instances\)' || fail "not shipping continuously"
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
assert_all_ids_arrived
reports=$(kinesis_count_type platform.report)
[ "$reports" -ge $N ] || fail "$reports platform.report events in Kinesis, want $N"
pass "SHUTDOWN-only registration, continuous shipping, children restarted while in next, nothing lost"
