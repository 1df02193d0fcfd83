#!/usr/bin/env bash
# End-to-end benchmark: the extension in the Lambda simulator under a function that logs
# faster than it can be shipped (continuous flushing, 64 MiB ring), into
#   - kinesis-mock (the stream is real, but kinesis-mock itself takes only about
#     1.5-5 MB/s: the figure is a floor set by it, not the extension's limit), and
#   - tests/bench/kinesis_stub.js (a PutRecords sink answering at once: what the
#     simulator + listener + ring + dispatcher sustain on this machine).
# For each: events and MB per second sent (the extension's "sent N events (B bytes)"
# over the run's wall time), what Lambda had to drop meanwhile, the memory (Pss, max
# over the run, of the controller, listener and dispatcher) and CPU time. Then the
# layer's size (make layer). Figures only, nothing asserted.
# Knobs: BENCH_E2E_STUB_INVOCATIONS (20), BENCH_E2E_INVOCATIONS (4, into kinesis-mock),
# BENCH_E2E_LINES (5000). 
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../e2e/lib.sh"

N_STUB=${BENCH_E2E_STUB_INVOCATIONS:-20}
N=${BENCH_E2E_INVOCATIONS:-4}
LINES=${BENCH_E2E_LINES:-5000}

node "$here/kinesis_stub.js" "$T/stub.port" 2>"$T/stub.log" &
_bg_pids+=($!)
wait_for 10 test -s "$T/stub.port" || fail "kinesis stub did not start"
STUB=http://127.0.0.1:$(cat "$T/stub.port")
kinesis_start bench-kpl:1

# run NAME FORMAT ENDPOINT HANDLER_MS: one run; prints its line. The rate is what the
# extension reported sent ("sent N events (B bytes)") over the run's wall time; when
# the stream is kinesis-mock, the rate of arrival in the stream instead (first to last
# ApproximateArrivalTimestamp of the records read back).
run() {
	local name=$1 fmt=$2 ep=$3 h=$4 n=$5 line stream=-
	FAULT_PROXY_ENDPOINT=$ep sim_run "$name" bench-$fmt "$fmt" continuous --invocations "$n" \
		--log-lines "$LINES" --log-bytes 200-2000 --handler-ms "$h" --timeout-ms $((h + 10000)) \
		--env KTE_RING_BYTES=67108864
	[ "$SIM_RC" -eq 0 ] || fail "$name: simulator exit $SIM_RC"
	line=$(grep -E 'shutdown: received [0-9]+ events' "$T/$RUN.log" | tail -n 1 || true)
	if [ "$ep" = "$KINESIS_MOCK_ENDPOINT" ]; then
		node "$TOOLS/kinesis_read.js" --endpoint "$ep" --region "$KINESIS_MOCK_REGION" --stream "bench-$fmt" \
			--deaggregate >"$T/$RUN.records.jsonl"
		stream=$T/$RUN.records.jsonl
	fi
	node -e '
		const fs = require("fs");
		const s = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
		const m = /sent (\d+) events \((\d+) bytes\) in (\d+) PutRecords/.exec(process.argv[2]);
		let ev, by, secs, how;
		if (process.argv[4] !== "-") {
			const recs = fs.readFileSync(process.argv[4], "utf8").split("\n").filter(Boolean).map(JSON.parse);
			const t = recs.map((r) => r.arrival);
			ev = recs.length;
			by = recs.reduce((a, r) => a + Buffer.from(r.data, "base64").length, 0);
			secs = (Math.max(...t) - Math.min(...t)) / 1000;
			how = "arrivals";
		} else {
			ev = m ? +m[1] : 0; by = m ? +m[2] : 0;
			secs = (s.invocations.wall_ms + s.shutdown.duration_ms) / 1000;
			how = "sent/run";
		}
		const mem = s.memory || {};
		const dropped = s.telemetry.logs_dropped.records;
		console.log(`${process.argv[3].padEnd(24)} ${String(Math.round(ev / secs)).padStart(8)} events/s ` +
			`${(by / secs / 1e6).toFixed(1).padStart(6)} MB/s (${how}, ${secs.toFixed(1)} s)  ` +
			`Lambda dropped ${dropped} of ${s.telemetry.events + dropped}  Pss max ${mem.pss_kb_max} kB` +
			(s.shutdown.killed ? "  [killed at the shutdown deadline]" : ""));
	' "$T/$RUN.summary.json" "$line" "$name" "$stream"
}

off() { echo "$((LINES * 1100 / $1 / 1000)) MB/s"; }
echo "end to end: lambda-sim -> extension (continuous, 64 MiB ring) -> PutRecords; invocations of" \
	"$LINES function log records of 200-2000 bytes ($N_STUB into the stub, $N into kinesis-mock)"
run "kpl -> stub, 100 ms" kpl "$STUB" 100 "$N_STUB"
run "event -> stub, 100 ms" event "$STUB" 100 "$N_STUB"
run "kpl -> kinesis-mock, 1 s" kpl "$KINESIS_MOCK_ENDPOINT" 1000 "$N"
echo "  offered: $(off 100) (handler 100 ms), $(off 1000) (1 s); stub = tests/bench/kinesis_stub.js (answers at" \
	"once: the extension's and the simulator's limit); kinesis-mock's own speed bounds its row."
echo "  Pss: controller + listener + dispatcher, max over the run (the ring's touched pages included)."

make -s -C "$KTE_ROOT" layer >"$T/layer.log" 2>&1 || { cat "$T/layer.log"; fail "make layer"; }
grep -E '^layer: ' "$T/layer.log" | sed 's/^layer: /layer size: /'
pass "bench_e2e done"
