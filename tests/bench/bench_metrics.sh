#!/usr/bin/env bash
# Cost of the self-metrics (EMF lines on stdout), in the Lambda simulator against the
# fast local Kinesis stub: RUNS runs with KTE_METRICS=off and RUNS with it on, interleaved
# so that machine load hits both alike; medians of the per-run figures:
#   cold start   exec -> first event/next
#   overhead     the simulator's runtimeDone -> next p50 (continuous: nothing waits on Kinesis)
#   quick        the controller's INVOKE read -> next sent, mean (where the line is written)
# at the default interval (60 s: only the last line), and with KTE_METRICS_INTERVAL_MS=1000
# and invocations 1 s apart (a line at every invocation, the most there can be): the
# quick mean and max then include the write. Bytes: what the extension wrote on stdout.
# Knobs: BENCH_METRICS_RUNS (10), BENCH_METRICS_INVOCATIONS (40).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../controller/lib.sh"

RUNS=${BENCH_METRICS_RUNS:-10}
INV=${BENCH_METRICS_INVOCATIONS:-40}

node "$here/kinesis_stub.js" "$T/stub.port" 2>"$T/stub.log" &
_bg_pids+=($!)
wait_for 10 test -s "$T/stub.port" || fail "kinesis stub did not start"
STUB=(--env KTE_STREAM_NAME=bench --env AWS_REGION=us-east-1
	--env "KTE_KINESIS_ENDPOINT=http://127.0.0.1:$(cat "$T/stub.port")" --env KTE_LISTENER_HOST=127.0.0.1
	--env KTE_FLUSH=continuous)

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
emf_bytes() { node "$KTE_ROOT/tests/e2e/check_emf.js" "$SIMLOG" | node -e \
	'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.lines+" "+j.bytes);});'; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in off on; do : >"$T/cold.$mode"; : >"$T/ovh.$mode"; : >"$T/quick.$mode"; done
for ((i = 0; i < RUNS; i++)); do
	for mode in off on; do
		sim_run --invocations "$INV" --interval-ms 20 --handler-ms 2 --log-lines 10 "${STUB[@]}" \
			--env "KTE_METRICS=$mode"
		[ "$SIM_RC" -eq 0 ] || fail "run $i ($mode): simulator exit $SIM_RC"
		sj 's.cold_start.extensions[0].exec_to_first_next_ms' >>"$T/cold.$mode"
		sj 's.overhead_ms.p50' >>"$T/ovh.$mode"
		sed -nE 's/.*INVOKE to next mean ([0-9]+) us.*/\1/p' "$SIMLOG" >>"$T/quick.$mode"
		if [ "$mode" = on ]; then read -r lines bytes < <(emf_bytes); echo "$lines $bytes" >"$T/bytes.on"; fi
	done
done
read -r lines bytes <"$T/bytes.on"
printf 'metrics %-4s cold start median %7.3f ms   overhead p50 median %7.3f ms   quick mean median %6s us\n' \
	off "$(median <"$T/cold.off")" "$(median <"$T/ovh.off")" "$(median <"$T/quick.off")" \
	on "$(median <"$T/cold.on")" "$(median <"$T/ovh.on")" "$(median <"$T/quick.on")"
echo "  (median of $RUNS runs each, interleaved; $INV invocations 20 ms apart, 10 log lines each)"
echo "  default interval (60 s): $lines line(s), $bytes bytes on stdout for $INV invocations ($((bytes / INV)) B per invocation)"

# Worst case: a line at every invocation (KTE_METRICS_INTERVAL_MS=1000, invocations 1 s apart),
# against the same runs with metrics off; 3 runs each, interleaved, median of the runs' means.
: >"$T/wq.on"; : >"$T/wq.off"
for ((i = 0; i < 3; i++)); do
	for mode in off on; do
		sim_run --invocations 10 --interval-ms 1000 --handler-ms 2 --log-lines 10 "${STUB[@]}" \
			--env KTE_METRICS_INTERVAL_MS=1000 --env "KTE_METRICS=$mode"
		[ "$SIM_RC" -eq 0 ] || fail "worst case ($mode): simulator exit $SIM_RC"
		sed -nE 's/.*INVOKE to next mean ([0-9]+) us.*/\1/p' "$SIMLOG" >>"$T/wq.$mode"
		if [ "$mode" = on ]; then read -r lines bytes < <(emf_bytes); fi
	done
done
echo "  a line every invocation (KTE_METRICS_INTERVAL_MS=1000, 1 s apart): $lines lines, $bytes bytes" \
	"($((bytes / lines)) B per line); INVOKE -> next mean, median of 3 runs: $(median <"$T/wq.on") us on," \
	"$(median <"$T/wq.off") us off"
