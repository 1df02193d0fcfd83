#!/usr/bin/env bash
# SHUTDOWN with the ring full and Lambda still POSTing (Kinesis down for the whole run):
# the extension must still exit inside the shutdown budget on its own, its children
# stopping on SIGTERM. Found: a listener thread waiting for ring space (up to 1 s,
# listener/intake.c ring_writev_wait) keeps the listener from stopping, stop_server()
# (listener/listener.c) waits ring_wait_ms + 100 ms for it, while the controller gives
# the children only what is left of CHILD_STOP_MS (50 ms) + the margin before it
# SIGKILLs them ("did not stop in time") and exits in the last tens of ms before the
# deadline; on a loaded machine it overran and Lambda SIGKILLed the whole extension.
# Known bug, owned by the listener/controller: reported as XFAIL (exit 0) unless
# E2E_KNOWN_BUGS=1; PASS once fixed.
. "$(dirname "$0")/lib.sh"

kinesis_start r-full:1
proxy_start --down
xfail=()
for i in 1 2 3; do
	sim_run "run$i" r-full event continuous --invocations 6 --log-lines 400 --log-bytes 500-1500 \
		--handler-ms 100 --interval-ms 20 --env KTE_RING_BYTES=262144
	[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
	sj_assert 'j.invocations.completed === 6'
	assert_shutdown_account
	sj_assert 'j.shutdown.killed === false'
	if log_has 'did not stop in time'; then
		who=$(grep -oE '[a-z]+ \(pid [0-9]+\) did not stop in time' "$T/$RUN.log" | head -n 1)
		xfail+=("run $i: $who, exited $(sj 'j.shutdown.extensions[0].time_to_exit_ms') ms into the 1700 ms budget")
	fi
done
if ((${#xfail[@]})); then
	printf '  %s\n' "${xfail[@]}"
	[ -z "${E2E_KNOWN_BUGS:-}" ] || fail "a child had to be SIGKILLed at SHUTDOWN"
	echo "XFAIL $TEST_NAME: known bug: a child ignored SIGTERM at SHUTDOWN with the ring full (E2E_KNOWN_BUGS=1 fails)"
	exit 0
fi
pass "ring full at SHUTDOWN: children stopped on SIGTERM, exit inside the budget"
