#!/usr/bin/env bash
# `make demo`: the extension's layer end to end on this machine, no AWS account needed.
#   1. builds the layer (make layer);
#   2. starts a local Kinesis (kinesis-mock) with a stream;
#   3. runs the Lambda simulator with the layer: a sample function invoked a dozen times, logging a few
#      hundred lines, then SHUTDOWN;
#   4. reads every record back from the stream and prints a report (tests/demo/report.js): events per
#      type, sample records, function log lines emitted vs arrived, cold start, per-invocation overhead,
#      and the metrics the extension published about itself (its EMF lines) beside the same figures
#      read back from Kinesis.
# As root the extension runs from the layer unpacked at /opt of an otherwise empty root (chroot), as in
# Lambda; otherwise through the layer's own dynamic loader. Artifacts are left in build/demo/.
# Knobs: DEMO_INVOCATIONS (12), DEMO_LOG_LINES (25 per invocation), DEMO_FORMAT (event|ndjson|kpl),
# DEMO_FLUSH (adaptive|end|periodic|continuous), DEMO_CHROOT=0 (no chroot even as root).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT_DIR=$PWD
NAME=kinesis-telemetry-extension
BDIR=$ROOT_DIR/build                      # the release build (make's default BUILD)
SIM=$BDIR/bin/lambda-sim
INVOCATIONS=${DEMO_INVOCATIONS:-12}
LOG_LINES=${DEMO_LOG_LINES:-25}
FORMAT=${DEMO_FORMAT:-event}
FLUSH=${DEMO_FLUSH:-adaptive}
STREAM=kte-demo
OUT=$BDIR/demo

step() { printf '\n[demo] %s\n' "$*"; }
info() { printf '[demo]   %s\n' "$*"; }
die()  { printf '[demo] FAILED: %s\n' "$*" >&2; exit 1; }

MOCK_PID="" SIM_PID="" MOCK_LOG="" MOUNTED=""
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kte-demo.XXXXXX")
cleanup() {
	[ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
	[ -n "$MOCK_PID" ] && bash tests/tools/kinesis_mock.sh stop "$MOCK_PID" >/dev/null 2>&1
	[ -n "$MOUNTED" ] && umount "$MOUNTED" 2>/dev/null
	[ -n "$MOCK_LOG" ] && rm -f "$MOCK_LOG"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -f controller/main.c ] || die "controller/main.c is missing: the extension itself (branch controller) is not merged yet"
for f in tests/tools/kinesis_mock.sh tests/tools/kinesis_read.js; do
	[ -f "$f" ] || die "$f is missing (local Kinesis tooling, branch dispatcher-core)"
done

step "building the extension, the simulator and the layer"
make --no-print-directory -s BUILD=build "build/bin/$NAME" build/bin/lambda-sim >"$WORK/make.log" 2>&1 ||
	{ tail -n 30 "$WORK/make.log"; die "build failed"; }
make --no-print-directory -s BUILD=build layer >"$WORK/layer.log" 2>&1 || { tail -n 30 "$WORK/layer.log"; die "make layer failed"; }
ARCH=$(sed -n 's/^layer: .*(\(.*\)): zip.*/\1/p' "$WORK/layer.log" | tail -n1)
ZIP=$BDIR/$NAME-$ARCH.zip
info "$(grep '^layer:' "$WORK/layer.log" | sed 's/^layer: //')"

step "starting local Kinesis (kinesis-mock) with stream $STREAM (2 shards)"
eval "$(bash tests/tools/kinesis_mock.sh start "$STREAM:2")" || die "kinesis-mock did not start"
MOCK_PID=$KINESIS_MOCK_PID MOCK_LOG=$KINESIS_MOCK_LOG
info "listening on $KINESIS_MOCK_ENDPOINT, region $KINESIS_MOCK_REGION"

# The simulator starts every executable in <dir>/extensions: this one starts the layer's executable.
mkdir -p "$WORK/sim/extensions" "$OUT"
launcher=$WORK/sim/extensions/$NAME
if [ "${DEMO_CHROOT:-1}" != 0 ] && [ "$(id -u)" = 0 ] && command -v chroot >/dev/null; then
	root=$WORK/root
	mkdir -p "$root/opt" "$root/tmp" "$root/dev"
	chmod 1777 "$root/tmp"
	if ! mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null; then
		touch "$root/dev/null" && mount --bind /dev/null "$root/dev/null" && MOUNTED=$root/dev/null
	fi
	unzip -q "$ZIP" -d "$root/opt"
	printf '#!/bin/sh\nexec %s %s /opt/extensions/%s\n' "$(command -v chroot)" "$root" "$NAME" >"$launcher"
	mode="from $ZIP unpacked at /opt of an empty root (chroot: no system libraries at all)"
else
	lib=$BDIR/layer/$NAME/lib
	loader=$(cd "$lib" && ls ld-linux-* | head -n1)
	printf '#!/bin/sh\nexec %s/%s --library-path %s %s/layer/extensions/%s\n' "$lib" "$loader" "$lib" "$BDIR" "$NAME" \
		>"$launcher"
	mode="from $BDIR/layer through the layer's own loader (no chroot: not root, or DEMO_CHROOT=0)"
fi
chmod 755 "$launcher"

step "running the Lambda simulator: $INVOCATIONS invocations x $LOG_LINES log lines, KTE_FLUSH=$FLUSH, KTE_RECORD_FORMAT=$FORMAT"
info "extension $mode"
listener_port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});')
"$SIM" --layer "$WORK/sim" --invocations "$INVOCATIONS" --log-lines "$LOG_LINES" --log-format json \
	--log-bytes 160 --handler-ms 30 --interval-ms 40 --function-name kte-demo-function \
	--summary "$OUT/summary.json" --ids "$OUT/emitted-ids.txt" --id-prefix demo- \
	--dropped-ids "$OUT/lambda-dropped-ids.txt" \
	--env AWS_REGION="$KINESIS_MOCK_REGION" --env KTE_STREAM_NAME="$STREAM" \
	--env KTE_KINESIS_ENDPOINT="$KINESIS_MOCK_ENDPOINT" --env KTE_LISTENER_PORT="$listener_port" \
	--env KTE_FLUSH="$FLUSH" --env KTE_RECORD_FORMAT="$FORMAT" \
	--env KTE_TELEMETRY_TYPES=platform,function,extension --env KTE_LOG_LEVEL=info \
	>"$OUT/sim.log" 2>&1 &
SIM_PID=$!
# Progress: the simulator's own lines (one per invocation) as they come.
tail -n +1 -f "$OUT/sim.log" --pid "$SIM_PID" 2>/dev/null | grep --line-buffered '\[lambda-sim\]' |
	sed -u 's/^\[lambda-sim\] /[demo]   sim: /' &
tail_pid=$!
sim_rc=0
wait "$SIM_PID" || sim_rc=$?
SIM_PID=""
wait "$tail_pid" 2>/dev/null || true
[ "$sim_rc" -eq 0 ] || info "the simulator exited with status $sim_rc (see $OUT/sim.log)"
[ -s "$OUT/summary.json" ] || die "the simulator wrote no summary (see $OUT/sim.log)"

step "reading every record back from $STREAM"
node tests/tools/kinesis_read.js --endpoint "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" \
	--stream "$STREAM" --deaggregate --timeout-ms 20000 >"$OUT/records.jsonl" 2>"$WORK/read.log" ||
	{ cat "$WORK/read.log"; die "cannot read the stream back"; }
info "$(wc -l <"$OUT/records.jsonl") records"
bash tests/tools/kinesis_mock.sh stop "$MOCK_PID" >/dev/null 2>&1
MOCK_PID=""

step "report"
rc=0
# The extension's own metrics: the CloudWatch EMF lines it wrote on stdout (echoed in sim.log).
node tests/e2e/check_emf.js "$OUT/sim.log" >"$OUT/emf.json" 2>"$WORK/emf.log" ||
	{ cat "$WORK/emf.log"; info "the extension's EMF lines are not valid (see above)"; rc=1; }
node tests/demo/report.js --summary "$OUT/summary.json" --records "$OUT/records.jsonl" --emf "$OUT/emf.json" \
	--ids "$OUT/emitted-ids.txt" --dropped-ids "$OUT/lambda-dropped-ids.txt" --layer-zip "$ZIP" || rc=$?
info "artifacts: $OUT (summary.json, records.jsonl, emitted-ids.txt, sim.log, emf.json)"
[ "$sim_rc" -eq 0 ] && [ "$rc" -eq 0 ] || die "see above"
