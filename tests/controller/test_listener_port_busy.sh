#!/usr/bin/env bash
# The listener cannot start (its port is taken): it is restarted within the crash
# budget, then the controller gives up on it, does not subscribe, and the function's
# invocations run normally, none of them waiting for telemetry that cannot come.
. "$(dirname "$0")/lib.sh"

# Something else listens on the port the extension is told to use.
node -e 'const s=require("net").createServer(()=>{});
	s.listen(0,"127.0.0.1",()=>{require("fs").writeFileSync(process.argv[1],String(s.address().port));});' \
	"$T/busy.port" &
_bg_pids+=($!)
wait_for 10 test -s "$T/busy.port" || fail "port holder did not start"
BUSY=$(cat "$T/busy.port")

"$KTE_SIM" --layer "$LAYER" --summary "$SUMMARY" --ids "$IDS" --invocations 5 --interval-ms 10 \
	--env KTE_STREAM_NAME=s --env AWS_REGION=us-east-1 --env KTE_KINESIS_ENDPOINT=http://127.0.0.1:9 \
	--env KTE_LISTENER_HOST=127.0.0.1 --env "KTE_LISTENER_PORT=$BUSY" --env KTE_FLUSH=end \
	>"$T/sim.out" 2>"$SIMLOG" &
SIM_PID=$!
sim_wait 120
[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
sj_assert 's.invocations.completed === 5 && s.errors.init.length === 0'
[ "$(log_count 'listener \(pid [0-9]+\) exited with code [0-9]+; restarted as pid')" -eq 5 ] ||
	fail "expected 5 restarts of the listener"
log_has 'it crashed more than 5 times in 60 s: not restarting it' || fail "crash budget not reported"
log_has 'listener cannot start; telemetry will NOT be received' || fail "no line saying telemetry is off"
log_has 'ready in [0-9]+ us: NOT shipping' || fail "still claims to be shipping"
! log_has '\[dispatcher\]' || fail "a dispatcher was started with no listener to feed it"
sj_assert 's.telemetry.subscriptions.length === 0'
sj_assert 's.overhead_ms.max < 1000'
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
pass "listener port taken: budget, no subscription, invocations unaffected"
