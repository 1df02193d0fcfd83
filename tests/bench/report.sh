#!/usr/bin/env bash
# Prints the one benchmark report of `make bench` from the outputs of its benchmarks
# (one file per benchmark in DIR, written by the bench target): the date and machine,
# cold start, per-invocation overhead per flush policy, sustained events/s end to end,
# ring / listener / dispatcher / codec throughput, memory (Pss of the three processes)
# and the layer size. A figure whose benchmark did not print it shows as "(missing)".
# With OUT, the report is also written there as a Markdown page (make bench: docs/benchmarks.md).
#   bash tests/bench/report.sh DIR [OUT]
set -u
D=${1:?usage: report.sh DIR [OUT]}
OUT=${2:-}
if [ -n "$OUT" ]; then
	report=$(bash "$0" "$D")
	echo "$report"
	{
		echo "# Benchmarks"
		echo
		echo "Written by \`make bench\` (tests/bench/report.sh); do not edit by hand. Each benchmark's full output is in"
		echo "\`build/bench/out/\`. The figures are from one run on the machine named below; machines shared with other jobs"
		echo "give noisy tails, so compare medians and ratios. Figures only: nothing here passes or fails on speed."
		echo
		echo "What is measured: cold start (exec to first \`next\`, in the simulator; for the layer also as a"
		echo "difference to a floor program that only registers, subscribes and calls \`next\`: bench_cold_start.sh,"
		echo "[layer internals](internals/layer.md)), per-invocation overhead per flush"
		echo "policy (runtimeDone to \`next\`) with the Pss of the three processes, sustained events/s end to end (the"
		echo "simulator's function logging 5,000 records of 200-2,000 bytes per invocation), bursts beyond the"
		echo "stream's capacity (wall time and post-runtime duration at default settings), ring, listener, dispatcher"
		echo "and codec throughput, the cost of the self-metrics (KTE_METRICS off vs on, bytes on stdout), and the"
		echo "layer's size."
		echo
		echo '```text'
		echo "$report"
		echo '```'
	} >"$OUT"
	exit 0
fi

# pick FILE REGEX [MAX]: the matching lines of one benchmark's output, indented.
pick() {
	local f=$D/$1 out
	out=$(grep -E -- "$2" "$f" 2>/dev/null | head -n "${3:-100}")
	if [ -n "$out" ]; then sed 's/^/  /' <<<"$out"; else echo "  (missing: $1)"; fi
}

cpu=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n 1)
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo
echo "================ kinesis-telemetry-extension: benchmark report ================"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores ($cpu), $mem RAM, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit:  $(git -C "$(dirname "$0")/../.." log -1 --format='%h %s' 2>/dev/null | cut -c1-80)"
echo
echo "Cold start (lambda-sim: exec -> first event/next, median):"
pick bench_controller.sh.txt '^cold start|of which main|exec -> register'
echo "Cold start of the layer as a difference to the floor (a static register/subscribe/next program):"
pick bench_cold_start.sh.txt '^cold start, extension - floor|^  (floor|extension) \(|^  best case|^Pss after init'
echo "Per-invocation overhead per flush policy (runtimeDone -> next, ms; Pss/RSS kB of the 3 processes):"
pick bench_controller.sh.txt '^policy|^(end|continuous|periodic|adaptive)'
echo "Sustained end to end (lambda-sim -> extension -> PutRecords):"
pick bench_e2e.sh.txt ' events/s '
echo "Bursts beyond the stream's capacity at default settings (the push back's cost; before = BENCH_BURST_BEFORE_BIN):"
pick bench_burst.sh.txt '^burst '
echo "Ring (cross-process, 8 MiB; record bytes, writer threads, group, records/s, MB/s):"
pick bench_ring.txt '^ +record +threads|^ +(64|512|4096) +[14] +(1|16) '
echo "Listener (HTTP -> ring):"
pick bench_listener.txt '^listener: (1|4) client|batch_split alone' 3
echo "Dispatcher (ring -> signed PutRecords -> local sink, 300-byte events; faults; gzip against none):"
pick bench_dispatcher.txt '^(event|ndjson|kpl)|^flush of|^(JSON|text) logs'
echo "Codec (single thread):"
pick bench_codec.txt '^(kpl_encode|sigv4_sign_kinesis 1 KB body, cached|kpl \+ base64 \+ sign)'
echo "Self-metrics (EMF lines on stdout) off vs on, and their bytes:"
pick bench_metrics.sh.txt '^metrics (off|on)|bytes on stdout|a line every invocation'
echo "Memory (Pss of controller + listener + dispatcher): see the Pss column above (idle ring) and the"
echo "  end-to-end rows (64 MiB ring in use)."
echo "Layer:"
pick bench_e2e.sh.txt '^layer size'
echo "==============================================================================="
