#!/usr/bin/env bash
# SIGTERM to the controller (not something Lambda does to extensions, but an operator
# or a local emulator may): it runs the shutdown sequence with a 1 s deadline, ships
# what it received, stops both children and exits; nothing is left behind.
. "$(dirname "$0")/lib.sh"

controller_pid() {
	local p
	for p in $(ext_pids); do
		case "$(cat /proc/"$p"/comm 2>/dev/null)" in
		kte-*) ;;
		*) echo "$p"; return 0 ;;
		esac
	done
}

kinesis_start
sim_start --invocations 200 --log-lines 3 --interval-ms 50 --handler-ms 5 "${KINESIS_ENV[@]}" \
	--env KTE_FLUSH=end
wait_for 60 log_has "invoke 5 " || fail "the run did not reach invocation 5"
pid=$(controller_pid)
[ -n "$pid" ] || fail "no controller process"
kill -TERM "$pid"
wait_for 20 log_has "received Terminated: shutting down" || fail "no log line for the SIGTERM"
wait_for 20 log_has "exiting [0-9-]+ ms before the deadline" || fail "the controller did not finish its shutdown"
# Controller and children all gone (the simulator then resets the environment).
gone() { [ -z "$(ext_pids)" ]; }
wait_for 10 gone || fail "extension processes still running after the controller exited"
sim_wait 120
log_has 'shutdown: everything received was sent' || fail "events received before SIGTERM were not all sent"
! log_has 'dispatcher \(pid [0-9]+\) did not stop in time' || fail "the dispatcher had to be killed"
pass "SIGTERM: flushed, children stopped, exited"
