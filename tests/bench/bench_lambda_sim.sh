#!/usr/bin/env bash
# Benchmark of the Lambda simulator itself: how much it adds to what it measures.
# Prints: time to start the extensions, the simulator's service time per API call, and the cost of one
# invocation cycle (INVOKE, runtimeDone, report, SIGSTOP/SIGCONT, /proc sampling) with a C extension that
# answers at once. Figures only; nothing here passes or fails on speed.
set -u
SRC=$(cd "$(dirname "$0")/../lambda_sim" && pwd)
: "${KTE_SIM:=$SRC/../../build/bin/lambda-sim}"
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-lambda-sim.XXXXXX"); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/layer/extensions" "$T/out"
${CC:-cc} -O2 -o "$T/layer/extensions/mini" "$SRC/testext/mini_ext.c" -lcurl -lpthread || exit 1
N=${BENCH_INVOCATIONS:-2000}
"$KTE_SIM" --layer "$T/layer" --invocations "$N" --handler-ms 0 --log-lines 1 --env MINI_OUT="$T/out" \
	--quiet --summary "$T/s.json" || exit 1
node -e '
const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const e = s.cold_start.extensions[0], a = s.api_service_ms, f = (x) => x.toFixed(3);
console.log(`lambda-sim: ${s.invocations.completed} invocations in ${f(s.invocations.wall_ms)} ms ` +
  `(${f(s.invocations.wall_ms / s.invocations.completed)} ms per cycle incl. freeze/thaw and /proc sampling)`);
console.log(`  extension started ${f(e.start_offset_ms)} ms after init start; test extension (C, libcurl) ` +
  `exec->register ${f(e.exec_to_register_ms)} ms, ->first next ${f(e.exec_to_first_next_ms)} ms`);
console.log(`  service time per call (ms): register ${f(a.register.p50)}, subscribe ${f(a.subscribe.p50)}, ` +
  `next p50 ${f(a.next.p50)} p99 ${f(a.next.p99)} max ${f(a.next.max)} (${a.next.count} calls)`);
console.log(`  invocation duration with an immediate extension (ms): p50 ${f(s.invocations.duration_ms.p50)} ` +
  `p99 ${f(s.invocations.duration_ms.p99)}; telemetry reply latency p50 ${f(s.telemetry.reply_latency_ms.p50)} ` +
  `p99 ${f(s.telemetry.reply_latency_ms.p99)} over ${s.telemetry.batches} batches`);
' "$T/s.json"
