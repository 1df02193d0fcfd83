# Helpers for the controller's tests in the Lambda simulator. Source it from a test:
#   . "$(dirname "$0")/lib.sh"
# Provides a temporary layer with the extension, a free listener port, the simulator
# run with a summary and the ids it emitted, JSON queries on the summary, local
# Kinesis (kinesis-mock) and the check that every emitted id arrived in it.
# Every process started here is stopped on exit.
set -euo pipefail

KTE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${KTE_BIN:=$KTE_ROOT/build/bin/kinesis-telemetry-extension}"
: "${KTE_SIM:=$KTE_ROOT/build/bin/lambda-sim}"
TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "${TMPDIR:-/tmp}/kte-$TEST_NAME.XXXXXX")
LAYER=$T/layer
EXT_NAME=kinesis-telemetry-extension
SUMMARY=$T/summary.json
IDS=$T/ids.txt
SIMLOG=$T/sim.log
SIM_PID=
KINESIS_MOCK_PID=
STREAM=kte-ctl-test
_bg_pids=()

cleanup() {
	local rc=$?
	for p in "${_bg_pids[@]}" $SIM_PID; do
		kill "$p" 2>/dev/null || true
	done
	# Our extension processes, found by their unique layer path (never by a broad name).
	for p in $(ext_pids); do
		kill -9 "$p" 2>/dev/null || true
	done
	if [ -n "$KINESIS_MOCK_PID" ] && [ -x "$KTE_ROOT/tests/tools/kinesis_mock.sh" ]; then
		"$KTE_ROOT/tests/tools/kinesis_mock.sh" stop "$KINESIS_MOCK_PID" >/dev/null 2>&1 || true
	fi
	if [ $rc -ne 0 ] && [ -f "$SIMLOG" ]; then
		echo "---- $TEST_NAME: last simulator output ($SIMLOG)" >&2
		tail -n 40 "$SIMLOG" >&2
	fi
	if [ $rc -eq 0 ] && [ -z "${KTE_KEEP_TMP:-}" ]; then
		rm -rf "$T"
	else
		echo "($TEST_NAME: files kept in $T)" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "FAIL $TEST_NAME: $*" >&2
	exit 1
}

pass() {
	echo "PASS $TEST_NAME${1:+: $1}"
}

[ -x "$KTE_BIN" ] || fail "no extension binary at $KTE_BIN (run make)"
[ -x "$KTE_SIM" ] || fail "no simulator at $KTE_SIM (run make)"
mkdir -p "$LAYER/extensions"
ln -s "$KTE_BIN" "$LAYER/extensions/$EXT_NAME"

free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

# PIDs of this test's extension processes (controller and children share argv[0],
# which holds this test's unique layer path). Reads /proc: no procps needed.
ext_pids() {
	local d arg0
	for d in /proc/[0-9]*; do
		arg0=
		{ IFS= read -r -d '' arg0 <"$d/cmdline"; } 2>/dev/null || true
		[ "$arg0" != "$LAYER/extensions/$EXT_NAME" ] || echo "${d#/proc/}"
	done
}

# PID of the child whose /proc comm is kte-<role> (listener, dispatcher), or nothing.
child_pid() {
	local p
	for p in $(ext_pids); do
		if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "kte-$1" ]; then
			echo "$p"
			return 0
		fi
	done
}

# Succeeds when a child of that role runs (for wait_for: evaluated at each poll).
has_child() {
	[ -n "$(child_pid "$1")" ]
}

# Waits until cmd succeeds, polling every 20 ms, at most $1 seconds.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 50; i++)); do
		if "$@"; then
			return 0
		fi
		sleep 0.02
	done
	return 1
}

log_has() {
	grep -qE -- "$1" "$SIMLOG" 2>/dev/null
}

log_count() {
	grep -cE -- "$1" "$SIMLOG" 2>/dev/null || true
}

# Evaluates a JavaScript expression over the summary `s`, prints the result.
sj() {
	node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
		const v=(new Function("s","return ("+process.argv[2]+");"))(s);
		console.log(typeof v==="object"?JSON.stringify(v):String(v));' "$SUMMARY" "$1"
}

# Asserts a JavaScript condition over the summary.
sj_assert() {
	local v
	v=$(sj "$1")
	[ "$v" = true ] || fail "summary: expected $1 (got $v)"
}

# Starts the simulator in the background: sim_start [simulator options...]
# The extension gets a free listener port; callers add --env for the rest.
sim_start() {
	LISTENER_PORT=$(free_port)
	rm -f "$SUMMARY" "$IDS"
	"$KTE_SIM" --layer "$LAYER" --summary "$SUMMARY" --ids "$IDS" \
		--env "KTE_LISTENER_PORT=$LISTENER_PORT" "$@" >"$T/sim.out" 2>"$SIMLOG" &
	SIM_PID=$!
}

# Waits for the simulator to finish (at most $1 seconds, default 120); sets SIM_RC.
sim_wait() {
	local secs=${1:-120} i
	for ((i = 0; i < secs * 20; i++)); do
		if ! kill -0 "$SIM_PID" 2>/dev/null; then
			break
		fi
		sleep 0.05
	done
	if kill -0 "$SIM_PID" 2>/dev/null; then
		kill "$SIM_PID" 2>/dev/null || true
		fail "simulator still running after ${secs}s"
	fi
	set +e
	wait "$SIM_PID"
	SIM_RC=$?
	set -e
	SIM_PID=
	[ -s "$SUMMARY" ] || fail "simulator wrote no summary (exit $SIM_RC)"
}

# Runs the simulator to completion: sim_run [options...]; sets SIM_RC.
sim_run() {
	sim_start "$@"
	sim_wait 180
}

# Starts local Kinesis with $STREAM; sets KINESIS_ENDPOINT and KINESIS_ENV (the --env options).
kinesis_start() {
	local tool=$KTE_ROOT/tests/tools/kinesis_mock.sh
	[ -f "$tool" ] || fail "tests/tools/kinesis_mock.sh missing (merge dispatcher-core)"
	eval "$(bash "$tool" start "$STREAM:1")"
	KINESIS_ENDPOINT=$KINESIS_MOCK_ENDPOINT
	KINESIS_ENV=(--env "KTE_STREAM_NAME=$STREAM" --env "KTE_KINESIS_ENDPOINT=$KINESIS_ENDPOINT"
		--env "AWS_REGION=$KINESIS_MOCK_REGION")
}

# Reads the stream back into $T/records.txt, one decoded data payload per line
# (KPL aggregates expanded), waiting for at least $1 records.
kinesis_dump() {
	local expect=${1:-0}
	node "$KTE_ROOT/tests/tools/kinesis_read.js" --endpoint "$KINESIS_ENDPOINT" \
		--region "$KINESIS_MOCK_REGION" --stream "$STREAM" --deaggregate --expect "$expect" \
		--timeout-ms "${KINESIS_READ_TIMEOUT_MS:-20000}" >"$T/records.jsonl" || true
	node -e 'const rl=require("readline").createInterface({input:require("fs").createReadStream(process.argv[1])});
		rl.on("line",l=>{if(!l.trim())return;const r=JSON.parse(l);
			const d=Buffer.from(r.data,"base64").toString("utf8");
			for(const x of d.split("\n")) if(x.trim()) console.log(x.replace(/\r/g,""));});' \
		"$T/records.jsonl" >"$T/records.txt"
}

# Asserts that every id the simulator emitted (its --ids file) arrived in Kinesis.
assert_all_ids_arrived() {
	local n
	n=$(wc -l <"$IDS")
	[ "$n" -gt 0 ] || fail "the simulator emitted no ids"
	kinesis_dump "$n"
	node -e 'const fs=require("fs");
		const ids=fs.readFileSync(process.argv[1],"utf8").split("\n").filter(Boolean);
		const data=fs.readFileSync(process.argv[2],"utf8");
		const seen=new Set();
		for (const m of data.matchAll(/kte-id=([^ \\"]+)/g)) seen.add(m[1]);
		const missing=ids.filter(i=>!seen.has(i));
		if (missing.length) { console.error(missing.length+" of "+ids.length+" ids missing, e.g. "+missing.slice(0,5).join(", ")); process.exit(1); }
		console.log(ids.length);' "$IDS" "$T/records.txt" >"$T/ids_ok" ||
		fail "not every emitted id arrived in Kinesis"
	echo "  all $(cat "$T/ids_ok") emitted ids arrived in Kinesis"
}

# Counts events of a type in the stream dump ($T/records.txt from kinesis_dump).
kinesis_count_type() {
	grep -c "\"type\":\"$1\"" "$T/records.txt" || true
}
