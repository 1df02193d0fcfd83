# Shared helpers for the lambda-sim tests (sourced, not run). Needs KTE_SIM (exported by make).
set -u
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${KTE_SIM:=$SRC_DIR/../../build/bin/lambda-sim}"
T=$(mktemp -d "${TMPDIR:-/tmp}/lambda-sim-test.XXXXXX")
FAILS=0
SIM_PIDS=()
cleanup() {
	local p
	for p in "${SIM_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

ok()   { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; FAILS=$((FAILS + 1)); }
check() { # check "description" command...
	local d=$1; shift
	if "$@"; then ok "$d"; else fail "$d"; fi
}
finish() {
	if [ "$FAILS" -ne 0 ]; then echo "$(basename "$0"): $FAILS failure(s)"; exit 1; fi
	echo "$(basename "$0"): all passed"
}

# jv FILE EXPR: evaluates a JavaScript expression over the JSON document `s` in FILE.
jv() {
	node -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
	         const v = eval(process.argv[2]); console.log(typeof v === "object" ? JSON.stringify(v) : v);' "$1" "$2"
}

# wait_until TIMEOUT_S command...: polls the command every 10 ms until it succeeds.
wait_until() {
	local end=$(( $(date +%s%N) + $1 * 1000000000 )); shift
	until "$@"; do
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep 0.01
	done
}

# build_mini DIR NAME: compiles the minimal test extension as DIR/extensions/NAME.
build_mini() {
	mkdir -p "$1/extensions"
	if [ ! -x "$T/mini.bin" ]; then
		${CC:-cc} -O1 -g -Wall -Wextra -Werror -o "$T/mini.bin" "$SRC_DIR/testext/mini_ext.c" -lcurl -lpthread ||
			{ echo "cannot build the test extension"; exit 1; }
	fi
	cp "$T/mini.bin" "$1/extensions/$2"
}
