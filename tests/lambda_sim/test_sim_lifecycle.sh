#!/usr/bin/env bash
# lambda-sim: a minimal extension registers, subscribes, receives telemetry, sees INVOKE and SHUTDOWN, is
# frozen between invocations and is killed at the deadline when it ignores SHUTDOWN.
source "$(dirname "$0")/lib.sh"
echo "lambda-sim lifecycle (work dir $T)"

# --- a well-behaved extension, 3 invocations with a frozen gap between them ---
L=$T/layer; O=$T/out; mkdir -p "$O"
build_mini "$L" mini
"$KTE_SIM" --layer "$L" --invocations 3 --interval-ms 300 --log-lines 5 --log-bytes 120 \
	--env MINI_OUT="$O" --summary "$T/summary.json" --ids "$T/ids" 2>"$T/sim.err" &
SIM=$!; SIM_PIDS+=("$SIM")
check "extension started" wait_until 10 test -s "$O/pid"
EXT_PID=$(cat "$O/pid")
is_stopped() { [ "$(awk '{print $3}' "/proc/$EXT_PID/stat" 2>/dev/null)" = T ]; }
check "extension is stopped (state T) while frozen between invocations" wait_until 10 is_stopped
wait "$SIM"; RC=$?
check "simulator exits 0 (rc=$RC)" test "$RC" -eq 0
check "summary says ok" test "$(jv "$T/summary.json" 's.result')" = ok
check "registered" grep -q ' register {"functionName"' "$O/events.log"
check "subscribed with 200 \"OK\"" grep -q ' subscribe "OK"' "$O/events.log"
check "3 INVOKE events" test "$(grep -c ' INVOKE ' "$O/events.log")" -eq 3
check "SHUTDOWN spindown received" grep -q '"shutdownReason":"spindown"' "$O/events.log"
check "extension exited by itself" grep -q ' exit 0' "$O/events.log"
check "INVOKE carries deadlineMs, requestId, invokedFunctionArn, tracing" \
	grep -q '"deadlineMs":[0-9]*,"requestId":"[0-9a-f-]\{36\}","invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:[^"]*","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-' "$O/events.log"
inv_ok=1
while read -r ts _ js; do
	dl=$(sed 's/.*"deadlineMs":\([0-9]*\).*/\1/' <<<"$js")
	[ "$dl" -ge "$ts" ] && [ "$dl" -le $((ts + 3100)) ] || inv_ok=0
done < <(grep ' INVOKE ' "$O/events.log")
check "INVOKE deadlineMs is epoch ms within the 3 s timeout" test "$inv_ok" = 1
read -r sd_ts _ sd_js < <(grep ' SHUTDOWN ' "$O/events.log")
sd_dl=$(sed 's/.*"deadlineMs":\([0-9]*\).*/\1/' <<<"$sd_js")
check "SHUTDOWN deadline is ~1700 ms ahead (2000 minus the runtime's 300)" \
	test $((sd_dl - sd_ts)) -ge 1600 -a $((sd_dl - sd_ts)) -le 1710
for t in platform.initStart platform.initRuntimeDone platform.initReport platform.extension \
         platform.telemetrySubscription platform.start platform.runtimeDone platform.report function extension; do
	check "telemetry delivered $t" grep -q "\"type\":\"$t\"" "$O/telemetry.log"
done
check "3 platform.report delivered" test "$(grep -o '"type":"platform.report"' "$O/telemetry.log" | wc -l)" -eq 3
missing=0
while read -r id; do grep -qF "kte-id=$id " "$O/telemetry.log" || missing=$((missing + 1)); done <"$T/ids"
check "15 ids written, every function log id delivered (missing $missing)" \
	test "$(wc -l <"$T/ids")" -eq 15 -a "$missing" -eq 0
last_req=$(grep ' INVOKE ' "$O/events.log" | tail -1 | sed 's/.*"requestId":"\([^"]*\)".*/\1/')
rep_ts=$(grep -F "\"type\":\"platform.report\",\"record\":{\"requestId\":\"$last_req\"" "$O/telemetry.log" | awk '{print $1}')
check "the last platform.report arrives after SHUTDOWN was handed out" test -n "$rep_ts" -a "${rep_ts:-0}" -ge "$sd_ts"
check "summary: 3 completed" test "$(jv "$T/summary.json" 's.invocations.completed')" = 3
check "summary: cold start measured" test "$(jv "$T/summary.json" 's.cold_start.extensions[0].exec_to_first_next_ms > 0')" = true
check "summary: 3 overhead values" test "$(jv "$T/summary.json" 's.overhead_ms.values.length')" = 3
check "summary: telemetry delivered, none lost" \
	test "$(jv "$T/summary.json" 's.telemetry.events > 20 && s.telemetry.undelivered === 0 && s.telemetry.failures === 0')" = true
check "summary: memory sampled" test "$(jv "$T/summary.json" 's.memory.pss_kb > 0 && s.memory.peak_rss_kb > 0')" = true
check "summary: shutdown without kill" \
	test "$(jv "$T/summary.json" 's.shutdown.killed === false && s.shutdown.extensions[0].received_shutdown')" = true
check "summary: events per type" test "$(jv "$T/summary.json" 's.events_emitted.function')" = 15
check "per-invocation lines on stderr" test "$(grep -c 'invoke [0-9]' "$T/sim.err")" -eq 3

# --- JSON logs ---
O2=$T/out2; mkdir -p "$O2"
"$KTE_SIM" --layer "$L" --invocations 2 --log-lines 3 --log-format json --env MINI_OUT="$O2" \
	--summary "$T/s2.json" --ids "$T/ids2" --quiet
check "JSON function records carry id, requestId, level, message" \
	grep -q '"type":"function","record":{"timestamp":"[^"]*","level":"INFO","requestId":"[0-9a-f-]*","message":"kte-id=2-3 [^"]*","id":"2-3"}' "$O2/telemetry.log"

# --- an extension that ignores SHUTDOWN is killed at the deadline ---
L3=$T/layer3; O3=$T/out3; mkdir -p "$O3"
build_mini "$L3" stubborn
"$KTE_SIM" --layer "$L3" --invocations 1 --env MINI_OUT="$O3" --env MINI_MODE=ignore_shutdown \
	--summary "$T/s3.json" --quiet; RC=$?
check "run still completes (rc=$RC)" test "$RC" -eq 0
check "summary: killed at the deadline" test "$(jv "$T/s3.json" 's.shutdown.killed && s.shutdown.extensions[0].signal === 9')" = true
check "kill happened at ~1700 ms, not before" test "$(jv "$T/s3.json" 's.shutdown.duration_ms >= 1690 && s.shutdown.duration_ms < 2500')" = true
check "stubborn extension is gone" test ! -e "/proc/$(cat "$O3/pid")/stat" -o "$(awk '{print $3}' "/proc/$(cat "$O3/pid")/stat" 2>/dev/null)" = Z

# --- the whole process group is frozen; a child left in it is killed at the deadline ---
L4=$T/layer4; O4=$T/out4; mkdir -p "$O4"
build_mini "$L4" parent
"$KTE_SIM" --layer "$L4" --invocations 2 --interval-ms 300 --env MINI_OUT="$O4" --env MINI_MODE=child \
	--summary "$T/s4.json" --quiet &
SIM_PIDS+=("$!"); SIM4=$!
check "child started" wait_until 10 test -s "$O4/child_pid"
CHILD=$(cat "$O4/child_pid")
child_stopped() { [ "$(awk '{print $3}' "/proc/$CHILD/stat" 2>/dev/null)" = T ]; }
check "the extension's child is frozen too (process group SIGSTOP)" wait_until 10 child_stopped
wait "$SIM4"
check "group with a lingering child is killed at the deadline" \
	test "$(jv "$T/s4.json" 's.shutdown.killed && s.shutdown.extensions[0].exit_status === 0')" = true
check "the child is gone" test ! -e "/proc/$CHILD/stat" -o "$(awk '{print $3}' "/proc/$CHILD/stat" 2>/dev/null)" = Z
check "memory counts both processes of the group" test "$(jv "$T/s4.json" 's.memory.processes')" = 2
finish
