#!/usr/bin/env bash
# SHUTDOWN: events still arriving after it (the buffered logs of the last invocation
# and its platform.report) are shipped, and the extension exits before deadlineMs.
# When Kinesis cannot be reached, it still exits in time and says what was not sent.
. "$(dirname "$0")/lib.sh"

kinesis_start
N=3
# Telemetry API buffering longer than the run and no waiting at the end of invocations:
# the events are still buffered in Lambda when SHUTDOWN comes and arrive after it.
sim_run --invocations $N --log-lines 50 --interval-ms 10 --handler-ms 20 "${KINESIS_ENV[@]}" \
	--env KTE_FLUSH=continuous --env KTE_BUFFER_TIMEOUT_MS=500 --env KTE_BUFFER_MAX_ITEMS=10000
[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
sj_assert "s.invocations.completed === $N"
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
sj_assert 's.shutdown.extensions[0].time_to_exit_ms < s.shutdown.budget_ms - 50'
sj_assert 's.telemetry.undelivered === 0'
log_has 'shutdown: everything received was sent' || fail "shutdown reports unsent events"
assert_all_ids_arrived
reports=$(kinesis_count_type platform.report)
[ "$reports" -ge $N ] || fail "$reports platform.report events in Kinesis, want $N"

# Kinesis accepts connections but never answers: exit before the deadline anyway,
# and report the events that could not be sent.
BH_PORT_FILE=$T/blackhole.port
node -e 'const s=require("net").createServer(c=>{c.on("error",()=>{});});
	s.listen(0,"127.0.0.1",()=>{require("fs").writeFileSync(process.argv[1],String(s.address().port));});' \
	"$BH_PORT_FILE" &
_bg_pids+=($!)
wait_for 10 test -s "$BH_PORT_FILE" || fail "blackhole server did not start"
sim_run --invocations 4 --log-lines 10 --interval-ms 10 --env KTE_STREAM_NAME=s \
	--env AWS_REGION=us-east-1 --env "KTE_KINESIS_ENDPOINT=http://127.0.0.1:$(cat "$BH_PORT_FILE")" \
	--env KTE_FLUSH=end --env KTE_FLUSH_BUDGET_MS=100
[ "$SIM_RC" -eq 0 ] || fail "blackhole: simulator exit $SIM_RC"
sj_assert 's.invocations.completed === 4'
# Two invocations paid the flush budget, the others did not wait.
sj_assert 's.overhead_ms.values.filter(v => v >= 100).length === 2'
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
sj_assert 's.shutdown.extensions[0].time_to_exit_ms < s.shutdown.budget_ms'
log_has 'WARN shutdown: NOT sent: [1-9][0-9]* events' || fail "blackhole: unsent events not reported"
# A Kinesis that hangs without failing keeps the circuit closed: `end` stops waiting by itself.
log_has 'flush: 2 flushes in a row over the 100 ms budget: `end` stops waiting for Kinesis' ||
	fail "blackhole: end kept waiting for a hanging Kinesis"
# The dispatcher giving up at its deadline is the end of its work, not a crash.
! log_has 'restarted as pid' || fail "blackhole: a child was restarted during shutdown"
pass "events after SHUTDOWN shipped; exit in time even when Kinesis hangs, with the loss reported"
