#!/usr/bin/env bash
# Burst benchmark: the shape of test_e2e_burst.sh at default settings (invocations of
# 5,000 function log lines of 200-2,000 bytes within a 200 ms handler, 100 ms frozen gaps,
# a 60 s timeout) into a 2-shard kinesis-mock stream behind the fault proxy with no faults
# (--spread-records 2500, as in the test: kinesis-mock slows as a stream grows). Prints
# the run's wall time, the post-runtime duration (runtimeDone to the extension's next: the
# push back's cost) p50/p95/max, what Lambda dropped and what the extension reported unsent
# at SHUTDOWN. Figures only, nothing asserted (test_e2e_burst.sh asserts).
# With BENCH_BURST_BEFORE_BIN=<an extension executable> (e.g. built from an older commit
# in a git worktree) the same run is made with it first, for a before/after.
# Knobs: BENCH_BURST_INVOCATIONS (50).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../e2e/lib.sh"

N=${BENCH_BURST_INVOCATIONS:-50}
KINESIS_MOCK_SHARD_LIMIT=1000 kinesis_start bench-burst-before:2 bench-burst-after:2
proxy_start --spread-records 2500

# run LABEL STREAM: one run with the executable the layer links to; prints its line.
run() {
	local label=$1 stream=$2 t0 t1 sent unsent
	t0=$(date +%s%N)
	SIM_TIMEOUT=3600 sim_run "$stream" "$stream" default default --invocations "$N" --log-lines 5000 \
		--log-bytes 200-2000 --handler-ms 200 --interval-ms 100 --timeout-ms 60000
	t1=$(date +%s%N)
	sent=$(sed -nE 's/.*shutdown: received [0-9]+ events .*; sent ([0-9]+) events.*/\1/p' "$T/$RUN.log" | tail -n 1)
	unsent=$(ext_unsent)
	echo "burst $(printf '%-7s' "$label") $(sj 'j.invocations.completed') x 5000 lines:" \
		"wall $(((t1 - t0) / 1000000000)) s, post-runtime p50 $(overhead_pct 50) ms p95 $(overhead_pct 95) ms" \
		"max $(overhead_pct 100) ms; Lambda dropped $(lambda_dropped) records, unsent at SHUTDOWN $unsent," \
		"sent ${sent:-?} events$(sj 'j.shutdown.killed ? "  [killed at the shutdown deadline]" : ""')"
}

echo "bursts: $N invocations x 5000 lines of 200-2000 bytes in a 200 ms handler, 100 ms gaps, 2 shards," \
	"default settings (8 MiB ring for 128 MB, adaptive, KTE_OVERFLOW=wait)"
if [ -n "${BENCH_BURST_BEFORE_BIN:-}" ]; then
	ln -sf "$BENCH_BURST_BEFORE_BIN" "$LAYER/extensions/$EXT_NAME"
	run before bench-burst-before
	ln -sf "$KTE_BIN" "$LAYER/extensions/$EXT_NAME"
fi
run after bench-burst-after
pass "bench_burst done"
