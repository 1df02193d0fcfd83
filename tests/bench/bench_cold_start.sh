#!/usr/bin/env bash
# Cold start of the layer's extension as a difference to the floor: tests/bench/floor/floor_extension.c,
# a static program that only registers, subscribes a listening socket to the Telemetry API and calls
# event/next. Both run in the Lambda simulator, alternately (floor, extension, floor, ...), ROUNDS rounds of
# RUNS runs each; every figure is the simulator's summary (exec -> register, exec -> first next, Pss), the
# difference is taken per round (median of the extension's runs - median of the floor's) and the median of
# the rounds is reported.
#
# The extension is the layer (`make layer`): as root, unpacked at /opt of a root that holds nothing else and
# started there through chroot, as in tests/layer/test_layer_chroot.sh; the floor is started through the
# same static launcher (tests/bench/floor/chroot_launcher.c: chroot, exec) from the same root, so the
# launcher's cost is in both and cancels. Not root: both through a /bin/sh launcher, the extension through the layer's own loader
# (`ld.so --library-path`, as its PT_INTERP and DT_RPATH point to /opt, absent here).
# Kinesis: the fast local stub (tests/bench/kinesis_stub.js).
# Knobs: BENCH_COLD_ROUNDS (3), BENCH_COLD_RUNS (10), BENCH_LAYER_ZIP (a layer zip of this machine's
# architecture to measure instead of building one, e.g. an older build for a before/after comparison).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../controller/lib.sh"

ROUNDS=${BENCH_COLD_ROUNDS:-3}
RUNS=${BENCH_COLD_RUNS:-10}
BUILD_DIR=$KTE_ROOT/build
ARCH=$(uname -m)
case "$ARCH" in x86_64) LOADER=ld-linux-x86-64.so.2 ;; aarch64) ARCH=arm64 LOADER=ld-linux-aarch64.so.1 ;; esac

ZIP=${BENCH_LAYER_ZIP:-$BUILD_DIR/$EXT_NAME-$ARCH.zip}
if [ -n "${BENCH_LAYER_ZIP:-}" ]; then
	echo "layer: $ZIP (given), zip $(stat -c %s "$ZIP") bytes" >"$T/layer.log"
else
	make -s -C "$KTE_ROOT" layer >"$T/layer.log" 2>&1 || { tail "$T/layer.log"; fail "make layer failed"; }
fi
FLOOR=$BUILD_DIR/bench/floor-extension
mkdir -p "$BUILD_DIR/bench"
"${CC:-cc}" -std=gnu11 -O2 -Wall -Wextra -Werror -static -o "$FLOOR" "$here/floor/floor_extension.c" ||
	fail "cannot build the floor program (static glibc: libc6-dev)"

# Two simulator layers, one launcher each.
FL=$T/floor-layer EL=$T/ext-layer
mkdir -p "$FL/extensions" "$EL/extensions"
if [ "$(id -u)" = 0 ] && [ ! -e /opt/$EXT_NAME ]; then
	R=$T/root
	mkdir -p "$R/tmp" "$R/dev" "$R/opt"
	chmod 1777 "$R/tmp"
	mknod -m 666 "$R/dev/null" c 1 3
	unzip -q "$ZIP" -d "$R/opt"
	cp "$FLOOR" "$R/opt/extensions/floor-extension"
	"${CC:-cc}" -std=gnu11 -O2 -Wall -Wextra -Werror -static -o "$T/launcher" "$here/floor/chroot_launcher.c" ||
		fail "cannot build the chroot launcher"
	for l in "$EL/extensions/$EXT_NAME" "$FL/extensions/floor-extension"; do
		cp "$T/launcher" "$l"
		echo "$R" >"$(dirname "$l")/../root"
	done
	how="the layer unpacked in an otherwise empty root, both through a static chroot launcher"
else
	mkdir -p "$T/unzipped"
	unzip -q "$ZIP" -d "$T/unzipped"
	lib=$T/unzipped/$EXT_NAME/lib
	printf '#!/bin/sh\nexec %s/%s --library-path %s %s/unzipped/extensions/%s\n' "$lib" "$LOADER" "$lib" \
		"$T" "$EXT_NAME" >"$EL/extensions/$EXT_NAME"
	printf '#!/bin/sh\nexec %s\n' "$FLOOR" >"$FL/extensions/floor-extension"
	how="not root: the layer through its own loader, both through /bin/sh"
fi
chmod 755 "$EL/extensions/$EXT_NAME" "$FL/extensions/floor-extension"

node "$here/kinesis_stub.js" "$T/stub.port" 2>"$T/stub.log" &
_bg_pids+=($!)
wait_for 10 test -s "$T/stub.port" || fail "kinesis stub did not start"
ENVS=(--env KTE_STREAM_NAME=bench --env AWS_REGION=us-east-1
	--env "KTE_KINESIS_ENDPOINT=http://127.0.0.1:$(cat "$T/stub.port")" --env KTE_LISTENER_HOST=127.0.0.1)

# one KIND ROUND: a simulator run of the floor or the extension, its figures appended to $T/KIND.txt.
one() {
	LAYER=$2
	sim_run --invocations 1 --log-lines 0 "${ENVS[@]}"
	[ "$SIM_RC" -eq 0 ] && [ "$(sj s.result)" = ok ] || fail "$1: simulator exit $SIM_RC, $(sj 's.result + " " + s.reason')"
	echo "$3 $(sj '[s.cold_start.extensions[0].exec_to_register_ms, s.cold_start.extensions[0].exec_to_first_next_ms, s.memory.pss_kb_max].join(" ")')" >>"$T/$1.txt"
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$T/floor.txt"
: >"$T/ext.txt"
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < RUNS; i++)); do
		one floor "$FL" "$r"
		one ext "$EL" "$r"
	done
done

# The figures: per-round medians, their differences, the median over rounds.
node - "$T/floor.txt" "$T/ext.txt" "$ROUNDS" "$RUNS" "$how" "$(grep '^layer:' "$T/layer.log" | head -n1)" <<'EOF'
const fs = require('fs');
const [floorF, extF, rounds, runs, how, layerLine] = process.argv.slice(2);
const read = f => fs.readFileSync(f, 'utf8').trim().split('\n').map(l => l.split(' ').map(Number));
const med = a => { const s = [...a].sort((x, y) => x - y); return s.length ? s[(s.length - 1) >> 1] : NaN; };
const fl = read(floorF), ex = read(extF);
const col = (rows, r, c) => rows.filter(x => x[0] === r).map(x => x[c]);
const per = c => { const d = [];
	for (let r = 1; r <= +rounds; r++) d.push(med(col(ex, r, c)) - med(col(fl, r, c)));
	return d; };
const all = (rows, c) => rows.map(x => x[c]);
const f = x => x.toFixed(3);
const dn = per(2), dr = per(1);
console.log(`cold start vs floor (${rounds} interleaved rounds of ${runs}; ${how}):`);
console.log(`  floor (static: register, subscribe, next): exec -> register median ${f(med(all(fl, 1)))} ms, exec -> first next median ${f(med(all(fl, 2)))} ms`);
console.log(`  extension (layer):                         exec -> register median ${f(med(all(ex, 1)))} ms, exec -> first next median ${f(med(all(ex, 2)))} ms`);
console.log(`cold start, extension - floor: first next +${f(med(dn))} ms (rounds ${dn.map(f).join(', ')}), register +${f(med(dr))} ms (rounds ${dr.map(f).join(', ')})`);
console.log(`Pss after init (1 invocation, frozen): extension median ${med(all(ex, 3))} kB (all its processes), floor ${med(all(fl, 3))} kB`);
const mn = a => Math.min(...a);
console.log(`  best case (min over all runs, the least disturbed by other load): first next +${f(mn(all(ex, 2)) - mn(all(fl, 2)))} ms, register +${f(mn(all(ex, 1)) - mn(all(fl, 1)))} ms (floor ${f(mn(all(fl, 2)))} ms, extension ${f(mn(all(ex, 2)))} ms)`);
if (layerLine) console.log(layerLine);
EOF
