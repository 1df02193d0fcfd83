#!/usr/bin/env bash
# lambda-sim: Telemetry API delivery (batching limits, TCP destination, several subscribers) and the
# invocation measurements (overhead, function timeout).
source "$(dirname "$0")/lib.sh"
echo "lambda-sim telemetry and measurements (work dir $T)"
build_mini "$T/layer" mini
L=$T/layer
run() { # run NAME [sim options...]
	local n=$1; shift
	mkdir -p "$T/$n"
	"$KTE_SIM" --layer "$L" --env MINI_OUT="$T/$n" --summary "$T/$n.json" --quiet "$@" 2>"$T/$n.err"
}

# maxItems: 2500 records at once with maxItems 1000 -> batches of at most 1000 events
run items --invocations 1 --handler-ms 0 --log-lines 2500 --ids "$T/items.ids" --env MINI_BUFFER_MS=1000; RC=$?
check "batching: run completes (rc=$RC)" test "$RC" -eq 0
check "batching: no batch above maxItems, full batches sent before timeoutMs" \
	test "$(jv "$T/items.json" 's.telemetry.subscriptions[0].max_batch_items === 1000 && s.telemetry.batches >= 3')" = true
n_items=$(node -e 'const fs=require("fs"); let m=0;
	for (const l of fs.readFileSync(process.argv[1],"utf8").split("\n")) { if (!l) continue;
	  const a = JSON.parse(l.slice(l.indexOf(" ") + 1)); if (!Array.isArray(a)) process.exit(1); m = Math.max(m, a.length); }
	console.log(m)' "$T/items/telemetry.log")
check "batching: every POST body is a JSON array of at most 1000 events (max $n_items)" test "${n_items:-0}" -le 1000 -a "${n_items:-0}" -gt 0
check "batching: each event has time, type, record" \
	test "$(node -e 'const fs=require("fs"); let ok=true;
	for (const l of fs.readFileSync(process.argv[1],"utf8").split("\n")) { if (!l) continue;
	  for (const e of JSON.parse(l.slice(l.indexOf(" ") + 1)))
	    ok = ok && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(e.time) && typeof e.type === "string" && "record" in e; }
	console.log(ok)' "$T/items/telemetry.log")" = true

# maxBytes: 300 records of 4 KiB -> bodies cut near 256 KiB (one record may cross it)
run bytes --invocations 1 --handler-ms 0 --log-lines 300 --log-bytes 4096 --env MINI_BUFFER_MS=500
check "batching: bodies stay within maxBytes plus one record" \
	test "$(jv "$T/bytes.json" 's.telemetry.subscriptions[0].max_batch_bytes > 200000 && s.telemetry.subscriptions[0].max_batch_bytes <= 262144 + 5000 && s.telemetry.batches >= 5')" = true
check "batching: padded records are about --log-bytes long" \
	grep -qE '"record":"[^"]{4080,4110}"' "$T/bytes/telemetry.log"

run jsonpad --invocations 1 --handler-ms 0 --log-lines 3 --log-bytes 700 --log-format json
check "padding: JSON function records are exactly --log-bytes of JSON" \
	test "$(node -e 'let n = 0, ok = true; for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
	  if (!l) continue; for (const e of JSON.parse(l.slice(l.indexOf(" ") + 1))) if (e.type === "function") {
	    n++; ok = ok && JSON.stringify(e.record).length === 700; } } console.log(ok && n === 3)' "$T/jsonpad/telemetry.log")" = true

# TCP destination: newline-delimited JSON events
run tcp --invocations 2 --log-lines 3 --ids "$T/tcp.ids" --env MINI_PROTOCOL=TCP
check "TCP: run completes, nothing undelivered" test "$(jv "$T/tcp.json" 's.result === "ok" && s.telemetry.undelivered === 0 && s.telemetry.events > 10')" = true
check "TCP: one JSON event per line" grep -q '^[0-9]* {"time":"[^"]*","type":"platform.start"' "$T/tcp/telemetry.log"
missing=0
while read -r id; do grep -qF "kte-id=$id " "$T/tcp/telemetry.log" || missing=$((missing + 1)); done <"$T/tcp.ids"
check "TCP: every id delivered (missing $missing)" test "$missing" -eq 0

# types filter: a subscriber of function only gets no platform events
run types --invocations 1 --log-lines 2 --env 'MINI_TYPES=["function"]' --env MINI_EXPECT_REPORTS=0 \
	--env MINI_INVOKE_SLEEP_MS=150
check "types: only function records delivered" \
	test "$(grep -c '"type":"platform' "$T/types/telemetry.log")" -eq 0 -a "$(grep -c '"type":"function"' "$T/types/telemetry.log")" -ge 1

# overhead: an extension that needs 60 ms after INVOKE, with a 10 ms handler -> overhead >= 50 ms
run over --invocations 3 --handler-ms 10 --env MINI_INVOKE_SLEEP_MS=60
check "overhead: measured from runtimeDone to the extension's next" \
	test "$(jv "$T/over.json" 's.overhead_ms.values.length === 3 && s.overhead_ms.p50 >= 49 && s.invocations.duration_ms.p50 >= 59')" = true

# an extension that waits for its runtimeDone before next: overhead includes telemetry delivery
run waitrd --invocations 3 --handler-ms 5 --env MINI_WAIT_RUNTIME_DONE=1
check "wait for runtimeDone: overhead > 0 and all invocations complete" \
	test "$(jv "$T/waitrd.json" 's.invocations.completed === 3 && s.overhead_ms.p50 > 0')" = true

# function timeout: the extension is still busy at the deadline -> report timeout, SHUTDOWN timeout
run fto --invocations 3 --timeout-ms 200 --env MINI_INVOKE_SLEEP_MS=500; RC=$?
check "function timeout: run ends early with result timeout (rc=$RC)" \
	test "$RC" -eq 0 -a "$(jv "$T/fto.json" 's.result === "timeout" && s.shutdown.reason === "timeout" && s.invocations.completed === 0')" = true
check "function timeout: SHUTDOWN reason timeout handed out" grep -q '"shutdownReason":"timeout"' "$T/fto/events.log"

# two extensions: both start in parallel, each has its own subscription
cp "$L/extensions/mini" "$L/extensions/second"
run two --invocations 2 --log-lines 2
check "two extensions: both registered, subscribed, served" \
	test "$(jv "$T/two.json" 's.cold_start.extensions.length === 2 && s.telemetry.subscriptions.length === 2 && s.telemetry.subscriptions.every(x => x.events > 10) && s.shutdown.extensions.every(x => x.received_shutdown && !x.killed)')" = true
check "two extensions: each sees the other's platform.extension" \
	test "$(grep -c '"type":"platform.extension","record":{"name":"second"' "$T/two/telemetry.log")" -ge 1
finish
