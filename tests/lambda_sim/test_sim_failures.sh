#!/usr/bin/env bash
# lambda-sim: init failures, crashes, telemetry delivery failures and drops, Managed Instances, local mode.
source "$(dirname "$0")/lib.sh"
echo "lambda-sim failure modes (work dir $T)"
build_mini "$T/layer" mini
L=$T/layer
run() { # run NAME [sim options...]: runs the simulator with out dir $T/NAME, summary $T/NAME.json
	local n=$1; shift
	mkdir -p "$T/$n"
	"$KTE_SIM" --layer "$L" --env MINI_OUT="$T/$n" --summary "$T/$n.json" --quiet "$@" 2>"$T/$n.err"
}

run initerr --env MINI_MODE=init_error; RC=$?
check "init/error: exit status 3 (rc=$RC)" test "$RC" -eq 3
check "init/error: reported in the summary" \
	test "$(jv "$T/initerr.json" 's.result === "init_failed" && s.errors.init[0].type === "Extension.ConfigInvalid" && /init\/error/.test(s.reason)')" = true
check "init/error: the call was accepted with 202" grep -q 'init_error 202' "$T/initerr/events.log"
# a second extension sees the failed init's platform.initReport
mkdir -p "$T/two/extensions" "$T/witness"; cp "$L/extensions/mini" "$T/two/extensions/bad"; cp "$L/extensions/mini" "$T/two/extensions/witness"
"$KTE_SIM" --layer "$T/two" --env MINI_OUT="$T/witness" --env MINI_MODE_bad=init_error \
	--env MINI_WAIT_FILE_bad="$T/witness/subscribed.witness" \
	--env MINI_WAIT_FOR=platform.initReport --summary "$T/witness.json" --quiet 2>/dev/null; RC=$?
check "init/error: platform.initReport status error with the extension's error type (rc=$RC)" \
	grep -q '"type":"platform.initReport","record":{"initializationType":"on-demand","phase":"init","status":"error","errorType":"Extension.ConfigInvalid"' "$T/witness/telemetry.log"

run crashinit --env MINI_MODE=crash_init; RC=$?
check "crash during init: exit status 3 (rc=$RC)" test "$RC" -eq 3
check "crash during init: Extension.Crash in the reason" test "$(jv "$T/crashinit.json" '/Extension.Crash/.test(s.reason)')" = true

run hang --env MINI_MODE=hang_init --init-timeout-ms 300; RC=$?
check "init timeout: exit status 3 (rc=$RC)" test "$RC" -eq 3
check "init timeout: reason names the extension" test "$(jv "$T/hang.json" '/init timeout.*mini/.test(s.reason)')" = true
check "init timeout: platform.initReport status timeout emitted" grep -q '"platform.initReport"' "$T/hang/telemetry.log"

run crashinv --invocations 3 --env MINI_MODE=crash_invoke; RC=$?
check "crash during an invocation: exit status 4 (rc=$RC)" test "$RC" -eq 4
check "crash during an invocation: reset, report status error Extension.Crash" \
	test "$(jv "$T/crashinv.json" 's.result === "reset" && s.shutdown.reason === "failure" && s.invocations.completed === 0')" = true

run timeout --shutdown-reason timeout
check "--shutdown-reason timeout is handed out in lowercase" grep -q '"shutdownReason":"timeout"' "$T/timeout/events.log"

# telemetry POSTs answered 500: retried with backoff, nothing lost
run retry --invocations 3 --log-lines 4 --ids "$T/retry.ids" --env MINI_FAIL_POSTS=3; RC=$?
check "delivery failures: run completes (rc=$RC)" test "$RC" -eq 0
check "delivery failures: counted and retried" \
	test "$(jv "$T/retry.json" 's.telemetry.failures === 3 && s.telemetry.retries === 3 && s.telemetry.undelivered === 0')" = true
missing=0
while read -r id; do grep -qF "kte-id=$id " "$T/retry/telemetry.log" || missing=$((missing + 1)); done <"$T/retry.ids"
check "delivery failures: every id delivered after retries (missing $missing)" test "$missing" -eq 0

# a slow listener and a small buffer: records dropped, platform.logsDropped delivered
run drop --invocations 2 --handler-ms 0 --log-lines 400 --log-bytes 1000 --buffer-bytes 65536 \
	--ids "$T/drop.ids" --dropped-ids "$T/drop.dropped" --env MINI_SLOW_MS=30; RC=$?
check "drops: run completes (rc=$RC)" test "$RC" -eq 0
check "drops: records dropped and reported" \
	test "$(jv "$T/drop.json" 's.telemetry.logs_dropped.records > 0 && s.telemetry.logs_dropped.events > 0')" = true
check "drops: platform.logsDropped delivered" \
	grep -q '"type":"platform.logsDropped","record":{"droppedBytes":[0-9]*,"droppedRecords":[0-9]*,"reason":"' "$T/drop/telemetry.log"
delivered=$(grep -o 'kte-id=[0-9]*-[0-9]* ' "$T/drop/telemetry.log" | sort -u | wc -l)
dropped=$(jv "$T/drop.json" 's.telemetry.logs_dropped.records')
ext_lines=$(jv "$T/drop.json" 's.events_emitted.extension || 0')
# every function record is delivered or dropped; extension records (its stdout) may be dropped too
check "drops: delivered ($delivered) + dropped ($dropped) = emitted (800 function, $ext_lines extension)" \
	test $((delivered + dropped)) -ge 800 -a $((delivered + dropped)) -le $((800 + ext_lines))
lost=0
while read -r id; do
	grep -qF "kte-id=$id " "$T/drop/telemetry.log" || grep -qx "mini $id" "$T/drop.dropped" || lost=$((lost + 1))
done <"$T/drop.ids"
check "drops: every id was delivered or is listed in --dropped-ids (unaccounted $lost)" test "$lost" -eq 0
check "drops: --dropped-ids lists no delivered id" \
	test -z "$(awk '{print "kte-id=" $2 " "}' "$T/drop.dropped" | grep -F -f - "$T/drop/telemetry.log" | head -1)"
check "drops: batches never exceed maxBytes plus one record" \
	test "$(jv "$T/drop.json" 's.telemetry.subscriptions[0].max_batch_bytes <= 262144 + 2000')" = true

# Lambda Managed Instances: INVOKE refused at register; no runtimeDone; concurrent invocations
run lmi_invoke --managed-instances --env MINI_SCHEMA=2025-01-29; RC=$?
check "managed instances: registering INVOKE is refused, init fails (rc=$RC)" test "$RC" -eq 3
check "managed instances: 403 Extension.InvalidEventType" grep -q 'Extension.InvalidEventType' "$T/lmi_invoke/events.log"
run lmi --managed-instances --concurrency 3 --invocations 6 --handler-ms 50 --log-lines 2 \
	--env 'MINI_EVENTS=["SHUTDOWN"]' --env MINI_SCHEMA=2025-01-29 --env MINI_EXPECT_REPORTS=6; RC=$?
check "managed instances: run completes (rc=$RC)" test "$RC" -eq 0
check "managed instances: 6 reports, no runtimeDone, no INVOKE" \
	test "$(grep -o '"type":"platform.report"' "$T/lmi/telemetry.log" | wc -l)" -eq 6 -a \
	     "$(grep -c '"type":"platform.runtimeDone"' "$T/lmi/telemetry.log")" -eq 0 -a \
	     "$(grep -c ' INVOKE ' "$T/lmi/events.log")" -eq 0
check "managed instances: SHUTDOWN still delivered" grep -q ' SHUTDOWN ' "$T/lmi/events.log"
check "managed instances: invocations overlapped" \
	test "$(jv "$T/lmi.json" 's.invocations.completed === 6 && s.invocations.max_in_flight >= 2')" = true
run lmi_schema --managed-instances --env 'MINI_EVENTS=["SHUTDOWN"]' --env MINI_SCHEMA=2022-12-13
check "managed instances: schema before 2025-01-29 is a ValidationError" grep -q 'subscribe {"errorMessage":"[^"]*","errorType":"ValidationError"}' "$T/lmi_schema/events.log"

# local emulators answer subscribe with 202 Telemetry.NotSupported
run unsup --telemetry-unsupported; RC=$?
check "telemetry unsupported: 202 Telemetry.NotSupported, run completes (rc=$RC)" \
	grep -q 'subscribe {"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}' "$T/unsup/events.log"

# schema 2022-07-01: function records are strings even in JSON log format
run oldschema --log-format json --env MINI_SCHEMA=2022-07-01
check "schema 2022-07-01: JSON function records delivered as strings" \
	grep -q '"type":"function","record":"{\\"timestamp' "$T/oldschema/telemetry.log"

# a file of extensions/ that cannot be executed: init fails
mkdir -p "$T/noexec/extensions"; echo 'not a program' >"$T/noexec/extensions/broken"
"$KTE_SIM" --layer "$T/noexec" --summary "$T/noexec.json" --quiet 2>/dev/null; RC=$?
check "non-executable extension: init fails (rc=$RC)" \
	test "$RC" -eq 3 -a "$(jv "$T/noexec.json" '/cannot start extension broken/.test(s.reason)')" = true

# --port: a port picked free at run time, passed on
P=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});')
run fixedport --port "$P"; RC=$?
check "--port $P: the Runtime API listens there (rc=$RC)" \
	test "$RC" -eq 0 -a "$(jv "$T/fixedport.json" 's.config.port')" = "$P"

# usage errors
"$KTE_SIM" --invocations 1 >/dev/null 2>&1; RC=$?
check "no --layer is a usage error (rc=$RC)" test "$RC" -eq 2
"$KTE_SIM" --layer "$T/no-such-layer" >/dev/null 2>&1; RC=$?
check "a missing layer directory is a usage error (rc=$RC)" test "$RC" -eq 2
"$KTE_SIM" --layer "$L" --log-format xml >/dev/null 2>&1; RC=$?
check "bad --log-format is a usage error (rc=$RC)" test "$RC" -eq 2
finish
