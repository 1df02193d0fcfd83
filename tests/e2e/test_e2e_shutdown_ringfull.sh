#!/usr/bin/env bash
# SHUTDOWN with the ring full and Lambda still POSTing (Kinesis down for the whole run):
# the extension must still exit inside the shutdown budget on its own, its children
# stopping on SIGTERM. Regression test: listener threads waiting for ring space (up to
# 1 s) used to keep the listener from stopping, so the controller had to SIGKILL it in
# the last milliseconds before the deadline; a stopping listener now gives up the wait
# at once (ring_writev_wait_cancel) and answers 503.
. "$(dirname "$0")/lib.sh"

kinesis_start r-full:1
proxy_start --down
for i in 1 2 3; do
	sim_run "run$i" r-full event continuous --invocations 6 --log-lines 400 --log-bytes 500-1500 \
		--handler-ms 100 --interval-ms 20 --env KTE_RING_BYTES=262144
	[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
	sj_assert 'j.invocations.completed === 6'
	assert_shutdown_account
	sj_assert 'j.shutdown.killed === false'
	! log_has 'did not stop in time' || fail "run $i: a child had to be SIGKILLed at SHUTDOWN: $(grep -oE '[a-z]+ \(pid [0-9]+\) did not stop in time' "$T/$RUN.log" | head -n 1)"
done
pass "ring full at SHUTDOWN: children stopped on SIGTERM, exit inside the budget"
