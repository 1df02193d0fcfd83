#!/usr/bin/env bash
# A child that keeps dying is restarted at most CRASH_BUDGET_RESTARTS (5) times a
# minute; past that the controller says so and keeps the lifecycle going without it:
# invocations are not held up, and shutdown is clean.
. "$(dirname "$0")/lib.sh"

kinesis_start
N=300
sim_start --invocations $N --log-lines 1 --interval-ms 10 --handler-ms 2 "${KINESIS_ENV[@]}" \
	--env KTE_FLUSH=end
wait_for 60 log_has "invoke 3 " || fail "the run did not start"
for i in 1 2 3 4 5 6; do
	pid=$(child_pid listener)
	[ -n "$pid" ] || fail "no listener to kill (round $i)"
	kill -9 "$pid"
	if [ $i -le 5 ]; then
		wait_for 20 log_has "listener \\(pid $pid\\) killed by signal 9 \\(Killed\\); restarted as pid [0-9]+ \\(restart $i of 5 within 60 s\\)" ||
			fail "listener not restarted after kill $i"
		wait_for 10 has_child listener || fail "no listener after restart $i"
	else
		wait_for 20 log_has "listener \\(pid $pid\\) killed by signal 9 \\(Killed\\); it crashed more than 5 times in 60 s: not restarting it, carrying on without it" ||
			fail "the sixth crash did not exhaust the budget"
	fi
done
sleep 0.5   # give a wrongly restarted listener time to show up
[ -z "$(child_pid listener)" ] || fail "a listener runs again past the crash budget"
[ -n "$(child_pid dispatcher)" ] || fail "the dispatcher should still run"
sim_wait 180
[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
sj_assert "s.invocations.completed === $N"
sj_assert 's.errors.init.length === 0 && s.errors.exit.length === 0'
# Without a listener no runtimeDone can come: `end` must not wait for one until the deadline.
sj_assert 's.overhead_ms.max < 1000'
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
[ "$(log_count 'restarted as pid')" -eq 5 ] || fail "expected exactly 5 restarts"
pass "5 restarts, then carried on without the listener"
