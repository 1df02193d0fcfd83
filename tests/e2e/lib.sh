# Helpers for the end-to-end tests: the extension in the Lambda simulator against
# kinesis-mock (optionally behind the fault proxy), every emitted id read back.
#   . "$(dirname "$0")/lib.sh"
# The extension runs from a temporary layer (extensions/kinesis-telemetry-extension ->
# $KTE_BIN). The layer `make layer` builds is not used here: its loader lives under
# /opt, so it only runs in a chroot (tests/layer/test_layer_chroot.sh does that).
#
# Sizes scale with KTE_E2E_SCALE (default 1; 0.3 under the sanitizers, where
# everything is several times slower): use $(scaled N) for counts.
# Every process started here is stopped on exit; files are kept on failure (or with
# KTE_KEEP_TMP=1).
set -euo pipefail

KTE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${KTE_BIN:=$KTE_ROOT/build/bin/kinesis-telemetry-extension}"
: "${KTE_SIM:=$KTE_ROOT/build/bin/lambda-sim}"
TOOLS=$KTE_ROOT/tests/tools
E2E=$KTE_ROOT/tests/e2e
TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "${TMPDIR:-/tmp}/e2e-$TEST_NAME.XXXXXX")
LAYER=$T/layer
EXT_NAME=kinesis-telemetry-extension
SANITIZED=
[ -z "${ASAN_OPTIONS:-}${UBSAN_OPTIONS:-}" ] || SANITIZED=1
if [ -z "${KTE_E2E_SCALE:-}" ]; then
	if [ -n "$SANITIZED" ]; then KTE_E2E_SCALE=0.3; else KTE_E2E_SCALE=1; fi
fi
# Largest per-invocation overhead accepted (runtimeDone to next): the flush budget
# (KTE_FLUSH_BUDGET_MS, 500) plus slack for a loaded 2-core machine (and the sanitizers).
if [ -n "$SANITIZED" ]; then OVERHEAD_MAX_MS=2000; else OVERHEAD_MAX_MS=900; fi
SIM_PID=
KINESIS_MOCK_PID=
FAULT_PROXY_PID=
RUN=            # name of the current run; its files are $T/$RUN.*
_bg_pids=()

# PIDs of this test's extension processes (controller and children share argv[0], the
# layer path, unique to the test), from /proc (procps may not be installed).
ext_pids() {
	local d cmd
	for d in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
		case "$cmd" in "$LAYER/extensions/$EXT_NAME"*) echo "${d#/proc/}" ;; esac
	done
}

cleanup() {
	local rc=$? p
	for p in "${_bg_pids[@]}" $SIM_PID; do
		kill "$p" 2>/dev/null || true
	done
	for p in $(ext_pids); do
		kill -CONT "$p" 2>/dev/null || true
		kill -9 "$p" 2>/dev/null || true
	done
	[ -z "$FAULT_PROXY_PID" ] || bash "$TOOLS/fault_proxy.sh" stop "$FAULT_PROXY_PID" >/dev/null 2>&1 || true
	[ -z "$KINESIS_MOCK_PID" ] || bash "$TOOLS/kinesis_mock.sh" stop "$KINESIS_MOCK_PID" >/dev/null 2>&1 || true
	if [ $rc -ne 0 ] && [ -n "$RUN" ] && [ -f "$T/$RUN.log" ]; then
		echo "---- $TEST_NAME: last simulator output ($T/$RUN.log)" >&2
		tail -n 30 "$T/$RUN.log" >&2
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
	echo "FAIL $TEST_NAME${RUN:+ [$RUN]}: $*" >&2
	exit 1
}

pass() {
	echo "PASS $TEST_NAME${1:+: $1}"
}

note() {
	echo "  $*"
}

[ -x "$KTE_BIN" ] || fail "no extension binary at $KTE_BIN (run make)"
[ -x "$KTE_SIM" ] || fail "no simulator at $KTE_SIM (run make)"
[ -d "$KTE_ROOT/tests/node/node_modules" ] || fail "no tests/node/node_modules (run make deps)"
mkdir -p "$LAYER/extensions"
ln -s "$KTE_BIN" "$LAYER/extensions/$EXT_NAME"

# scaled N [MIN]: N * KTE_E2E_SCALE, at least MIN (default 1).
scaled() {
	awk -v n="$1" -v s="$KTE_E2E_SCALE" -v m="${2:-1}" 'BEGIN { v = int(n * s + 0.5); print (v < m ? m : v) }'
}

free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

# Polls cmd every 20 ms for at most $1 seconds.
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
	grep -qE -- "$1" "$T/$RUN.log" 2>/dev/null
}

log_count() {
	grep -cE -- "$1" "$T/$RUN.log" 2>/dev/null || true
}

# The process lookups below read /proc with bash builtins only and return through
# variables: no fork per process, so that on a loaded machine a lookup takes
# milliseconds, not seconds (the kills of test_e2e_crash must fit in one run).

# _KIDS=(children of PID), from every thread's /proc/PID/task/TID/children.
_children() {
	local f line
	_KIDS=()
	for f in /proc/"$1"/task/*/children; do
		line=
		read -r line 2>/dev/null <"$f" || true
		_KIDS+=($line)
	done
}

# _CTRL=this test's controller: the extension process the simulator started (a child
# of the simulator running our layer's binary) whose comm is not kte-*. Looking among
# the simulator's children, not at the first matching process of the machine, leaves
# out an extension of an earlier run still being torn down and a child just forked
# and not renamed yet.
_find_controller() {
	local p a c
	_CTRL=
	[ -n "$SIM_PID" ] || return 0
	_children "$SIM_PID"
	for p in "${_KIDS[@]}"; do
		a=
		read -r -d '' a 2>/dev/null </proc/"$p"/cmdline || true
		case "$a" in "$LAYER/extensions/$EXT_NAME"*) ;; *) continue ;; esac
		c=
		read -r c 2>/dev/null </proc/"$p"/comm || true
		case "$c" in kte-* | "") ;; *) _CTRL=$p; return 0 ;; esac
	done
}

# _CHILD=the controller's live (not zombie) child kte-ROLE, or empty.
_find_child() {
	local p c k v
	_CHILD=
	_find_controller
	[ -n "$_CTRL" ] || return 0
	_children "$_CTRL"
	for p in "${_KIDS[@]}"; do
		c=
		read -r c 2>/dev/null </proc/"$p"/comm || true
		[ "$c" = "kte-$1" ] || continue
		v=
		while read -r k v; do [ "$k" = State: ] && break; done 2>/dev/null </proc/"$p"/status || true
		case "$v" in Z* | X* | "") ;; *) _CHILD=$p; return 0 ;; esac
	done
}

# PID of this test's controller, or nothing.
controller_pid() {
	_find_controller
	echo "$_CTRL"
}

# PID of the controller's live child kte-ROLE (listener, dispatcher), or nothing.
child_pid() {
	_find_child "$1"
	echo "$_CHILD"
}

# wait_child_pid ROLE [SECONDS] [NOT_PID]: waits (default 30 s of wall-clock time, and
# only while the simulator runs) until the controller has a live kte-ROLE child other
# than NOT_PID, and sets CHILD_PID to it (empty if none came). A child is missing for
# a moment while it is being restarted: sampling the process list once is not enough.
wait_child_pid() {
	local role=$1 secs=${2:-30} not=${3:-} end
	end=$((SECONDS + secs))
	CHILD_PID=
	while [ "$SECONDS" -lt "$end" ]; do
		_find_child "$role"
		if [ -n "$_CHILD" ] && [ "$_CHILD" != "$not" ]; then
			CHILD_PID=$_CHILD
			return 0
		fi
		kill -0 "$SIM_PID" 2>/dev/null || return 0
		sleep 0.02
	done
}

# JSON expression over a file: jq_js FILE 'expression of j'.
jq_js() {
	node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
		const v=(new Function("j","return ("+process.argv[2]+");"))(j);
		console.log(typeof v==="object"?JSON.stringify(v):String(v));' "$1" "$2"
}

# Summary of the current run: sj 'expression of j'.
sj() {
	jq_js "$T/$RUN.summary.json" "$1"
}

sj_assert() {
	local v
	v=$(sj "$1")
	[ "$v" = true ] || fail "summary: expected $1 (got $v)"
}

# Starts kinesis-mock with the given STREAM[:SHARDS] (default e2e:1).
kinesis_start() {
	eval "$(bash "$TOOLS/kinesis_mock.sh" start "${@:-e2e:1}")"
	[ -n "$KINESIS_MOCK_PID" ] || fail "kinesis-mock did not start"
}

# Starts the fault proxy in front of kinesis-mock; ENDPOINT is what the extension uses.
proxy_start() {
	eval "$(bash "$TOOLS/fault_proxy.sh" start "$KINESIS_MOCK_ENDPOINT" "$@")"
	case " $* " in *" --spread-records "*) PROXY_SPREAD=1 ;; esac
	[ -n "$FAULT_PROXY_PID" ] || fail "the fault proxy did not start"
}

proxy_fault() {
	curl -sf -X POST "$FAULT_PROXY_CONTROL/__fault" -d "$1" >/dev/null || fail "proxy: POST /__fault $1"
}

# Saves the proxy's counters to $T/$RUN.proxy.json.
proxy_stats() {
	curl -sf "$FAULT_PROXY_CONTROL/__stats" >"$T/$RUN.proxy.json" || fail "proxy: GET /__stats"
}

# sim_start NAME STREAM FORMAT POLICY [simulator options...]: runs the extension in the
# simulator in the background, shipping to STREAM (through the proxy when one runs).
# FORMAT or POLICY "default" leaves KTE_RECORD_FORMAT or KTE_FLUSH unset.
# The endpoint is given in $E2E_ENDPOINT_VAR (default KTE_KINESIS_ENDPOINT), at
# $E2E_ENDPOINT if set.
# Ids are prefixed with NAME-, files are $T/NAME.{summary.json,ids,log,out}.
sim_start() {
	local name=$1 stream=$2 format=$3 policy=$4 endpoint defaults=()
	shift 4
	[ "$format" = default ] || defaults+=(--env "KTE_RECORD_FORMAT=$format")
	[ "$policy" = default ] || defaults+=(--env "KTE_FLUSH=$policy")
	RUN=$name
	endpoint=${E2E_ENDPOINT:-${FAULT_PROXY_ENDPOINT:-$KINESIS_MOCK_ENDPOINT}}
	LISTENER_PORT=$(free_port)
	"$KTE_SIM" --layer "$LAYER" --summary "$T/$RUN.summary.json" --ids "$T/$RUN.ids" --id-prefix "$RUN-" \
		--env "KTE_LISTENER_HOST=127.0.0.1" --env "KTE_LISTENER_PORT=$LISTENER_PORT" \
		--env "KTE_STREAM_NAME=$stream" --env "${E2E_ENDPOINT_VAR:-KTE_KINESIS_ENDPOINT}=$endpoint" \
		--env "AWS_REGION=$KINESIS_MOCK_REGION" "${defaults[@]}" "$@" \
		>"$T/$RUN.out" 2>"$T/$RUN.log" &
	SIM_PID=$!
}

# sim_wait [SECONDS]: waits for the simulator (default 300 s); sets SIM_RC.
sim_wait() {
	local secs=${1:-300} i
	for ((i = 0; i < secs * 20; i++)); do
		kill -0 "$SIM_PID" 2>/dev/null || break
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
	[ -s "$T/$RUN.summary.json" ] || fail "simulator wrote no summary (exit $SIM_RC)"
}

sim_run() {
	sim_start "$@"
	sim_wait "${SIM_TIMEOUT:-300}"
}

# The checks every run must pass: completed, no errors, the extension exited on its own.
assert_run_ok() {
	local n=$1
	[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
	sj_assert "j.result === 'ok' && j.invocations.completed === $n"
	sj_assert 'j.errors.init.length === 0 && j.errors.exit.length === 0'
	sj_assert 'j.shutdown.killed === false && j.shutdown.extensions[0].exit_status === 0'
}

# check_stream STREAM FORMAT [check_ids.js options...]: reads STREAM back and accounts
# for every id of the current run; the result is in $T/$RUN.check.json.
# Events the extension itself reported as not sent (still in the ring at the SHUTDOWN
# deadline: kinesis-mock on a loaded 2-core machine can take seconds per request) may
# be missing, and are noted; any other loss fails. E2E_STRICT=1 allows none.
check_stream() {
	local stream=$1 format=$2 n deagg=() split=() unsent allow=() streams
	shift 2
	unsent=$(ext_unsent)
	if [ "$unsent" -gt 0 ]; then
		[ -z "${E2E_STRICT:-}" ] || fail "the extension reported $unsent events not sent at shutdown"
		note "NOTE: the extension reported $unsent events not sent at the SHUTDOWN deadline (allowed missing)"
		allow=(--allow-missing "$unsent")
	fi
	n=$(wc -l <"$T/$RUN.ids")
	[ "$n" -gt 0 ] || fail "the simulator emitted no ids"
	[ "$format" = default ] && format=event
	[ "$format" = kpl ] && deagg=(--deaggregate)
	[ "$format" = ndjson ] && split=(--split-lines)
	# --expect counts Kinesis (user) records, not events: for ndjson wait for one at least.
	# A proxy started with --spread-records wrote the stream in generations: read them all.
	streams=$stream
	if [ -n "${PROXY_SPREAD:-}" ]; then
		streams=$(curl -sf "$FAULT_PROXY_CONTROL/__stats" | node -e 'const j = JSON.parse(require("fs").readFileSync(0));
			console.log(((j.spread && j.spread.streams[process.argv[1]]) || [process.argv[1]]).join(","))' "$stream") ||
			fail "proxy: GET /__stats"
	fi
	node "$TOOLS/kinesis_read.js" --endpoint "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" \
		--stream "$streams" "${deagg[@]}" --expect 1 --timeout-ms 30000 >"$T/$RUN.records.jsonl" ||
		fail "could not read $stream back"
	if ! node "$E2E/check_ids.js" --ids "$T/$RUN.ids" --actual "$T/$RUN.records.jsonl" "${split[@]}" "${allow[@]}" "$@" \
		>"$T/$RUN.check.json"; then
		cat "$T/$RUN.check.json" >&2
		fail "$stream: the ids read back do not account for what was emitted"
	fi
	CHECK=$(cat "$T/$RUN.check.json")
}

# Field of the last check_stream result.
cj() {
	jq_js "$T/$RUN.check.json" "$1"
}

# Events the extension reported as not sent at shutdown (its "NOT sent: N events" line), or 0.
ext_unsent() {
	local n
	n=$(sed -nE 's/.*shutdown: NOT sent: ([0-9]+) events.*/\1/p' "$T/$RUN.log" | tail -n 1)
	echo "${n:-0}"
}

# Whole PutRecords requests that failed (the extension's shutdown totals), or 0. One
# that timed out may still have been written: at most 500 records each may arrive twice.
ext_failed_requests() {
	local n
	n=$(sed -nE 's/.*shutdown: received .*, ([0-9]+) failed requests.*/\1/p' "$T/$RUN.log" | tail -n 1)
	echo "${n:-0}"
}

# Records Lambda (the simulator) dropped and reported in platform.logsDropped.
lambda_dropped() {
	sj 'j.telemetry.logs_dropped.records'
}

# The extension's own count of what Lambda reported dropped (its shutdown account).
ext_lambda_dropped() {
	local n
	n=$(sed -nE 's/.*; ([0-9]+) dropped by Lambda \(platform.logsDropped\).*/\1/p' "$T/$RUN.log" | tail -n 1)
	echo "${n:-0}"
}

# The extension gave its shutdown account: everything sent, or what was not (check_stream
# then decides whether that loss is acceptable).
assert_shutdown_account() {
	grep -qE 'shutdown: (everything received was sent|NOT sent: )' "$T/$RUN.log" ||
		fail "no shutdown account in the extension's log (killed before it?)"
}

# The simulator's summary says the extension exited on its own before the SHUTDOWN
# deadline (nothing SIGKILLed, exit status 0).
assert_exited_in_time() {
	sj_assert 'j.shutdown.killed === false && j.shutdown.extensions[0].killed === false'
	sj_assert 'j.shutdown.extensions[0].exit_status === 0'
}

# overhead_pct P: the P-th percentile of the invocations' post-runtime duration (overhead_ms).
overhead_pct() {
	sj "(function(v){ if (!v.length) return 0; v = v.slice().sort((a, b) => a - b);
		return Math.round(v[Math.min(v.length - 1, Math.ceil($1 / 100 * v.length) - 1)]); })(j.overhead_ms.values)"
}
