#!/usr/bin/env bash
# Controller benchmark in the Lambda simulator; every figure comes from the
# simulator's summary JSON, plus the controller's own shutdown statistics line:
#   cold start  exec -> first event/next, median of COLD_RUNS runs (register, ring,
#               fork of both children, listener ready and subscription included)
#   overhead    platform.runtimeDone emitted by Lambda -> the extension's next call,
#               per flush policy. For `end` this includes Lambda's Telemetry API
#               buffering delay (up to timeoutMs) before runtimeDone even reaches the
#               listener; "end" is the controller's part: runtimeDone seen -> next,
#               i.e. one flush round trip to Kinesis; "quick" is INVOKE read -> next sent
#               for invocations that did not wait (the controller's own cost).
#   memory      total Pss (max over the run) and max RSS of the three processes
# Kinesis: a fast local stub (tests/bench/kinesis_stub.js) so that the figures are
# the extension's, plus one `end` row against kinesis-mock (tens of ms per request).
# Knobs: BENCH_INVOCATIONS (200), BENCH_INTERVAL_MS (20), BENCH_LOG_LINES (10),
#        COLD_RUNS (15), BENCH_BUFFER_TIMEOUT_MS (25, the Telemetry API minimum),
#        BENCH_COLD_ONLY=1 (stop after the cold start figure), BENCH_LAYER=1 (the layer build,
#        x86_64 only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../controller/lib.sh"

# BENCH_LAYER=1: measure the layer's executable (make layer: libcurl and OpenSSL linked
# statically) started through the layer's own loader, as the demo does outside a chroot.
if [ -n "${BENCH_LAYER:-}" ]; then
	make -s -C "$KTE_ROOT" layer >"$T/layer.log" 2>&1 || { tail "$T/layer.log"; fail "make layer failed"; }
	lib=$KTE_ROOT/build/layer/$EXT_NAME/lib
	rm -f "$LAYER/extensions/$EXT_NAME"
	printf '#!/bin/sh\nexec %s/ld-linux-x86-64.so.2 --library-path %s %s/build/layer/extensions/%s\n' \
		"$lib" "$lib" "$KTE_ROOT" "$EXT_NAME" >"$LAYER/extensions/$EXT_NAME"
	chmod 755 "$LAYER/extensions/$EXT_NAME"
	echo "extension: the layer build, through its own loader (a /bin/sh launcher adds its exec)"
fi

INV=${BENCH_INVOCATIONS:-200}
INTERVAL=${BENCH_INTERVAL_MS:-20}
LINES=${BENCH_LOG_LINES:-10}
COLD_RUNS=${COLD_RUNS:-15}
BUF_TO=${BENCH_BUFFER_TIMEOUT_MS:-25}

node "$here/kinesis_stub.js" "$T/stub.port" 2>"$T/stub.log" &
_bg_pids+=($!)
wait_for 10 test -s "$T/stub.port" || fail "kinesis stub did not start"
STUB=(--env KTE_STREAM_NAME=bench --env AWS_REGION=us-east-1
	--env "KTE_KINESIS_ENDPOINT=http://127.0.0.1:$(cat "$T/stub.port")"
	--env "KTE_BUFFER_TIMEOUT_MS=$BUF_TO"
	# In Lambda sandbox.localdomain comes from /etc/hosts; here it would be a DNS query
	# (several ms, answered "no such name") inside the listener's start-up.
	--env KTE_LISTENER_HOST=127.0.0.1)

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$T/cold.txt"
: >"$T/register.txt"
: >"$T/ready.txt"
for ((i = 0; i < COLD_RUNS; i++)); do
	sim_run --invocations 1 --log-lines 0 "${STUB[@]}" --env KTE_FLUSH=continuous
	[ "$SIM_RC" -eq 0 ] || fail "cold start run $i: simulator exit $SIM_RC"
	sj 's.cold_start.extensions[0].exec_to_first_next_ms' >>"$T/cold.txt"
	sj 's.cold_start.extensions[0].exec_to_register_ms' >>"$T/register.txt"
	sed -nE 's/.*\[controller\] INFO ready in ([0-9]+) us.*/\1/p' "$SIMLOG" | awk '{print $1 / 1000}' >>"$T/ready.txt"
done
printf 'cold start, exec -> first next: median %.3f ms, min %.3f ms, max %.3f ms over %d runs\n' \
	"$(median <"$T/cold.txt")" "$(sort -g "$T/cold.txt" | head -1)" "$(sort -g "$T/cold.txt" | tail -1)" "$COLD_RUNS"
printf '  of which main() -> ready to call next (the controller'"'"'s own init): median %.3f ms, min %.3f ms;\n' \
	"$(median <"$T/ready.txt")" "$(sort -g "$T/ready.txt" | head -1)"
printf '  exec -> register median %.3f ms (process start and the dynamic loading of every library)\n' \
	"$(median <"$T/register.txt")"

[ -z "${BENCH_COLD_ONLY:-}" ] || exit 0

printf '%-22s %7s %9s %9s %9s %15s %15s %7s %7s\n' "policy (log lines)" invocs "ovh p50" "ovh p99" "ovh max" \
	"end mean/max" "quick mean/max" "Pss kB" "RSS kB"
run_policy() {
	local label=$1 lines=$2
	shift 2
	sim_run --invocations "$INV" --interval-ms "$INTERVAL" --handler-ms 2 --log-lines "$lines" "$@"
	[ "$SIM_RC" -eq 0 ] || fail "$label: simulator exit $SIM_RC"
	local own quick
	own=$(sed -nE 's/.*runtimeDone to next mean ([0-9]+) us max ([0-9]+) us.*/\1\/\2/p' "$SIMLOG")
	quick=$(sed -nE 's/.*INVOKE to next mean ([0-9]+) us max ([0-9]+) us.*/\1\/\2/p' "$SIMLOG")
	printf '%-22s %7s %9.3f %9.3f %9.3f %15s %15s %7s %7s\n' "$label" \
		"$(sj s.invocations.completed)" "$(sj s.overhead_ms.p50)" "$(sj s.overhead_ms.p99)" \
		"$(sj s.overhead_ms.max)" "${own:--}" "${quick:--}" "$(sj s.memory.pss_kb_max)" \
		"$(sj s.memory.rss_kb_max)"
}
for policy in end continuous periodic adaptive; do
	run_policy "$policy ($LINES)" "$LINES" "${STUB[@]}" --env "KTE_FLUSH=$policy"
done
run_policy "continuous (0)" 0 "${STUB[@]}" --env KTE_FLUSH=continuous
run_policy "end (0)" 0 "${STUB[@]}" --env KTE_FLUSH=end
run_policy "adaptive, 1 s apart" "$LINES" "${STUB[@]}" --env KTE_FLUSH=adaptive --interval-ms 1000 --invocations 15
kinesis_start
run_policy "end, kinesis-mock" "$LINES" "${KINESIS_ENV[@]}" --env "KTE_BUFFER_TIMEOUT_MS=$BUF_TO" \
	--env KTE_FLUSH=end --invocations 30
echo "ovh: the simulator's runtimeDone emitted -> next call (ms). end: the controller's runtimeDone"
echo "seen -> next (us, invocations that waited: one flush round trip). quick: INVOKE read -> next sent"
echo "(us, invocations that did not wait: the controller's own cost). ${INTERVAL} ms between invocations,"
echo "handler 2 ms, Telemetry API buffering timeoutMs ${BUF_TO}. Pss/RSS: the extension's processes, kB."
