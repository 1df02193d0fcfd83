#!/usr/bin/env bash
# SIGKILL of the listener and then of the dispatcher in the middle of a run: each is
# restarted, the invocations go on, and every event the simulator emitted arrives in
# Kinesis (Lambda retries the batches the dead listener did not acknowledge; the new
# dispatcher resumes from the first record Kinesis had not acknowledged).
. "$(dirname "$0")/lib.sh"

kill_child() {
	local role=$1 pid
	pid=$(child_pid "$role")
	[ -n "$pid" ] || fail "no $role process to kill"
	kill -9 "$pid"
	echo "  killed $role (pid $pid)"
	wait_for 20 log_has "$role \\(pid $pid\\) killed by signal 9 \\(Killed\\); restarted as pid [0-9]+" ||
		fail "$role (pid $pid) was not restarted"
	# The replacement runs (or the run already reached SHUTDOWN, which stops the children).
	wait_for 10 child_back "$role" || fail "no $role running after the restart"
}

child_back() {
	has_child "$1" || log_has "SHUTDOWN"
}

kinesis_start
N=40
sim_start --invocations $N --log-lines 20 --interval-ms 40 --handler-ms 10 "${KINESIS_ENV[@]}"
wait_for 60 log_has "invoke 8 " || fail "the run did not reach invocation 8"
kill_child listener
wait_for 60 log_has "invoke 20 " || fail "the run did not reach invocation 20"
kill_child dispatcher
wait_for 60 log_has "invoke 28 " || fail "the run did not reach invocation 28"
kill_child listener
kill_child dispatcher
sim_wait 180
[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
sj_assert "s.invocations.completed === $N"
sj_assert 's.errors.init.length === 0 && s.errors.exit.length === 0'
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
[ "$(log_count 'restarted as pid')" -eq 4 ] || fail "expected 4 restarts in the log"
assert_all_ids_arrived
reports=$(kinesis_count_type platform.report)
[ "$reports" -ge $N ] || fail "$reports platform.report events in Kinesis, want $N"
pass "listener and dispatcher killed twice each, restarted, nothing lost"
