#!/usr/bin/env bash
# Self-containment of the layer: unpack the zip from `make layer` into an otherwise empty root (a static
# busybox, /tmp and /dev/null, nothing else: no libc, no libcurl, no OpenSSL, no /etc), with the layer at
# /opt, chroot into it and start the extension there under the Lambda simulator (which runs on the host,
# over loopback) against a local Kinesis (kinesis-mock). It must register, subscribe, and ship every
# function log line and the platform events to Kinesis, then exit cleanly at SHUTDOWN.
#
# Kinesis is reached over HTTPS, as in Lambda: a TLS front (node, a throw-away certificate for 127.0.0.1)
# before kinesis-mock's plain port, its certificate given to the extension as KTE_CA_BUNDLE (copied into
# the root's /tmp, standing in for the runtime's CA bundle), so the layer's own OpenSSL and libcurl do the
# handshake and the verification.
#
# /opt/lib in the root holds broken copies of libc, libcurl and OpenSSL, and LD_LIBRARY_PATH=/opt/lib as
# Lambda sets it: the layer's DT_RPATH must win over them (another layer may well ship such libraries).
#
# Architectures: the build machine's always; arm64 on an x86_64 machine too when qemu-user-static and
# the cross toolchain are installed (`make layer ARCH=arm64` installs the latter), or when
# KTE_LAYER_ARCHS names it explicitly (e.g. KTE_LAYER_ARCHS="x86_64 arm64": CI does, after installing both
# with `.ci/deps.sh arm64`). qemu-aarch64-static is copied into the root and invoked directly (no binfmt_misc
# needed); it runs the executable's own loader from the layer.
# Needs root (chroot); CI runs as root. Skips, saying why, when not root.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT_DIR=$PWD
NAME=kinesis-telemetry-extension
OUT=${KTE_BUILD:-$ROOT_DIR/build}     # make's build directory (absolute)
KTE_SIM=${KTE_SIM:-$OUT/bin/lambda-sim}
INVOCATIONS=${KTE_CHROOT_INVOCATIONS:-4}
LOG_LINES=${KTE_CHROOT_LOG_LINES:-25}

PASS=0 FAIL=0 SKIP=0
ok()   { echo "  ok   $*"; PASS=$((PASS + 1)); }
bad()  { echo "  FAIL $*"; FAIL=$((FAIL + 1)); }
skip() { echo "  SKIP $*"; SKIP=$((SKIP + 1)); }
finish() {
	echo "layer-chroot: $PASS passed, $FAIL failed, $SKIP skipped"
	[ "$FAIL" -eq 0 ]
	exit
}

T=$(mktemp -d "${TMPDIR:-/tmp}/kte-chroot.XXXXXX")
MOCK_PID="" MOCK_LOGS=() MOUNTS=() TLS_PID=""
cleanup() {
	local m
	[ -n "$TLS_PID" ] && kill "$TLS_PID" 2>/dev/null
	[ -n "$MOCK_PID" ] && bash tests/tools/kinesis_mock.sh stop "$MOCK_PID" >/dev/null 2>&1
	rm -f "${MOCK_LOGS[@]}"
	for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT

norm_arch() { case "$1" in x86_64|amd64) echo x86_64 ;; aarch64|arm64) echo arm64 ;; *) echo "$1" ;; esac; }
HOST_ARCH=$(norm_arch "$(uname -m)")

echo "== layer self-containment (chroot)"
if [ -n "${SAN:-}" ]; then
	skip "sanitizer build (make asan): the layer is a release build, checked by make check"
	finish
fi
if [ "$(id -u)" != 0 ]; then
	skip "not root: chroot needs root (CI runs as root); run as root to check self-containment"
	finish
fi
CHROOT=$(command -v chroot || echo /usr/sbin/chroot)
BUSYBOX=$(command -v busybox || echo /bin/busybox)
if [ ! -x "$BUSYBOX" ] || readelf -l "$BUSYBOX" 2>/dev/null | grep -q INTERP; then
	bad "a static busybox is needed ($BUSYBOX): install busybox-static (make deps)"
	finish
fi
if [ ! -f controller/main.c ]; then
	skip "the extension's executable (controller/main.c, branch controller) is not merged yet: nothing to put in the layer"
	finish
fi
if [ ! -x "$KTE_SIM" ]; then
	bad "the Lambda simulator $KTE_SIM is not built (tests/lambda_sim, branch sim)"
	finish
fi
if [ ! -f tests/tools/kinesis_mock.sh ] || [ ! -f tests/tools/kinesis_read.js ]; then
	skip "local Kinesis tooling (tests/tools/kinesis_mock.sh, kinesis_read.js from branch dispatcher-core) is not merged yet"
	finish
fi
if [ -e /opt/$NAME ]; then
	bad "/opt/$NAME exists on this machine: the layer could load from the host, the test would prove nothing"
	finish
fi

ARCHS=${KTE_LAYER_ARCHS:-}
if [ -z "$ARCHS" ]; then
	ARCHS=$HOST_ARCH
	if [ "$HOST_ARCH" = x86_64 ]; then
		if ! command -v qemu-aarch64-static >/dev/null; then
			skip "arm64 under emulation: qemu-user-static is not installed"
		elif ! command -v aarch64-linux-gnu-gcc >/dev/null; then
			skip "arm64 under emulation: no cross toolchain yet (make layer ARCH=arm64 installs it)"
		else
			ARCHS="$ARCHS arm64"
		fi
	fi
fi

free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

# tls_front UPSTREAM_PORT: an HTTPS server on a free loopback port forwarding to http://127.0.0.1:PORT;
# sets TLS_PID and TLS_PORT ($T/tls/cert.pem is its certificate).
tls_front() {
	local i
	mkdir -p "$T/tls"
	if [ ! -f "$T/tls/cert.pem" ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls/key.pem" -out "$T/tls/cert.pem" -days 1 \
			-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || return 1
	fi
	rm -f "$T/tls/port" "$T/tls/requests"
	node -e '
		const fs = require("fs"), http = require("http"), https = require("https");
		const [d, up] = process.argv.slice(1);
		const s = https.createServer({ key: fs.readFileSync(d + "/key.pem"), cert: fs.readFileSync(d + "/cert.pem") },
			(q, r) => {
				fs.appendFileSync(d + "/requests", q.method + " " + q.url + "\n");
				const u = http.request({ host: "127.0.0.1", port: +up, method: q.method, path: q.url, headers: q.headers },
					ur => { r.writeHead(ur.statusCode, ur.headers); ur.pipe(r); });
				u.on("error", () => { r.writeHead(502); r.end(); });
				q.pipe(u);
			});
		s.listen(0, "127.0.0.1", () => fs.writeFileSync(d + "/port", String(s.address().port)));' "$T/tls" "$1" \
		>"$T/tls/log" 2>&1 &
	TLS_PID=$!
	for ((i = 0; i < 500; i++)); do
		[ -s "$T/tls/port" ] && { TLS_PORT=$(cat "$T/tls/port"); return 0; }
		kill -0 "$TLS_PID" 2>/dev/null || return 1
		sleep 0.02
	done
	return 1
}

# make_root DIR ARCH: the empty root with the layer unpacked at /opt.
make_root() {
	local r=$1 arch=$2 zip=$OUT/$NAME-$2.zip
	mkdir -p "$r/bin" "$r/tmp" "$r/dev" "$r/opt/lib"
	chmod 1777 "$r/tmp"
	cp "$BUSYBOX" "$r/bin/busybox"
	if ! mknod -m 666 "$r/dev/null" c 1 3 2>/dev/null; then
		touch "$r/dev/null" && mount --bind /dev/null "$r/dev/null" && MOUNTS+=("$r/dev/null") ||
			return 1
	fi
	unzip -q "$zip" -d "$r/opt" || return 1
	# Decoys where other layers put their libraries: loading any of them fails.
	local l
	for l in libc.so.6 libcurl.so.4 libssl.so.3 libcrypto.so.3 libcivetweb.so.1 libjson-c.so.5 libnghttp2.so.14 \
		libz.so.1 libzstd.so.1 libgcc_s.so.1; do
		echo "decoy: not a library" >"$r/opt/lib/$l"
	done
	if [ "$arch" != "$HOST_ARCH" ]; then
		cp "$(command -v "qemu-aarch64-static")" "$r/bin/qemu-$arch" || return 1
	fi
}

# Record ids found in the data of every record read back (any format: one event, NDJSON, KPL user records).
ids_in_stream() { # FILE(kinesis_read output) -> ids, one per line
	node -e '
		const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
		const out = [];
		for (const l of lines) {
			const data = Buffer.from(JSON.parse(l).data, "base64").toString("utf8");
			for (const m of data.matchAll(/kte-id=([A-Za-z0-9_.:-]+)/g)) out.push(m[1]);
		}
		console.log(out.join("\n"));' "$1"
}
types_in_stream() { # FILE -> "type count" lines
	node -e '
		const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
		const n = {};
		for (const l of lines) {
			const data = Buffer.from(JSON.parse(l).data, "base64").toString("utf8");
			for (const ev of data.split("\n").filter(Boolean)) {
				let t = "unparsed";
				try { t = JSON.parse(ev).type || "untyped"; } catch (e) {}
				n[t] = (n[t] || 0) + 1;
			}
		}
		for (const [k, v] of Object.entries(n)) console.log(k, v);' "$1"
}
jv() { node -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
	const v = eval(process.argv[2]); console.log(typeof v === "object" ? JSON.stringify(v) : v);' "$1" "$2"; }

run_arch() {
	local arch=$1 r=$T/root-$1 sim=$T/sim-$1 stream=kte-chroot-$1 lport exe
	echo "-- $arch"
	if [ "$arch" = "$HOST_ARCH" ]; then
		make --no-print-directory layer >"$T/make-$arch.log" 2>&1
	else
		make --no-print-directory layer ARCH="$arch" >"$T/make-$arch.log" 2>&1
	fi
	if [ $? -ne 0 ]; then
		tail -n 20 "$T/make-$arch.log" | sed 's/^/     /'
		bad "make layer ARCH=$arch"
		return
	fi
	grep '^layer:' "$T/make-$arch.log" | sed 's/^/     /'
	ok "make layer ARCH=$arch"

	if ! make_root "$r" "$arch"; then
		bad "cannot prepare the root for $arch"
		return
	fi
	if [ -x "$r/opt/extensions/$NAME" ]; then ok "zip keeps the executable bit"; else bad "extensions/$NAME is not executable after unzip"; fi
	local expect=". ./bin ./bin/busybox ./dev ./dev/null ./opt ./tmp"
	[ "$arch" != "$HOST_ARCH" ] && expect=". ./bin ./bin/busybox ./bin/qemu-$arch ./dev ./dev/null ./opt ./tmp"
	if [ "$(cd "$r" && find . -path ./opt -print -prune -o -print | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')" = "$expect" ]; then
		ok "the root holds only busybox, /dev/null, /tmp and the layer at /opt"
	else
		bad "unexpected files in the root: $(cd "$r" && find . -path ./opt -prune -o -print | tr '\n' ' ')"
	fi

	exe=/opt/extensions/$NAME
	[ "$arch" != "$HOST_ARCH" ] && exe="/bin/qemu-$arch $exe"
	# The simulator starts every file of <layer>/extensions: this one enters the root first.
	mkdir -p "$sim/extensions"
	cat >"$sim/extensions/$NAME" <<-EOF
	#!/bin/sh
	export LD_LIBRARY_PATH=/opt/lib
	exec $CHROOT $r $exe
	EOF
	chmod 755 "$sim/extensions/$NAME"

	eval "$(bash tests/tools/kinesis_mock.sh start "$stream:2")" || { bad "kinesis-mock did not start"; return; }
	MOCK_PID=$KINESIS_MOCK_PID
	MOCK_LOGS+=("$KINESIS_MOCK_LOG")
	if ! tls_front "$KINESIS_MOCK_PORT"; then
		bad "the TLS front for kinesis-mock did not start: $(tail -n 3 "$T/tls/log" 2>/dev/null)"
		return
	fi
	cp "$T/tls/cert.pem" "$r/tmp/kinesis-ca.pem"
	lport=$(free_port)
	"$KTE_SIM" --layer "$sim" --invocations "$INVOCATIONS" --log-lines "$LOG_LINES" --log-format json \
		--handler-ms 5 --summary "$T/summary-$arch.json" --ids "$T/ids-$arch.txt" --id-prefix "$arch-" \
		--dropped-ids "$T/lambda-dropped-$arch.txt" \
		--init-timeout-ms 10000 \
		--env AWS_REGION="$KINESIS_MOCK_REGION" --env KTE_STREAM_NAME="$stream" \
		--env KTE_KINESIS_ENDPOINT="https://127.0.0.1:$TLS_PORT" --env KTE_CA_BUNDLE=/tmp/kinesis-ca.pem \
		--env KTE_LISTENER_PORT="$lport" \
		--env KTE_TELEMETRY_TYPES=platform,function --env KTE_LOG_LEVEL=info \
		>"$T/sim-$arch.log" 2>&1
	local rc=$?
	if [ $rc -eq 0 ] && [ "$(jv "$T/summary-$arch.json" 's.result')" = ok ]; then
		ok "simulator run completed ($INVOCATIONS invocations)"
	else
		bad "simulator exit $rc, result $(jv "$T/summary-$arch.json" 's.result + " " + s.reason' 2>/dev/null)"
		tail -n 30 "$T/sim-$arch.log" | sed 's/^/     /'
	fi
	if grep -q "error while loading shared libraries\|chroot: \|decoy" "$T/sim-$arch.log"; then
		bad "the extension could not start inside the root:"
		grep "error while loading\|chroot: \|decoy" "$T/sim-$arch.log" | head -5 | sed 's/^/     /'
	fi
	local s=$T/summary-$arch.json
	if [ "$(jv "$s" 's.cold_start.extensions[0].exec_to_register_ms !== null')" = true ]; then
		ok "registered ($(jv "$s" 's.cold_start.extensions[0].exec_to_register_ms') ms after exec)"
	else
		bad "did not register"
	fi
	if [ "$(jv "$s" 's.cold_start.extensions[0].exec_to_subscribe_ms !== null')" = true ]; then
		ok "subscribed ($(jv "$s" 's.cold_start.extensions[0].exec_to_subscribe_ms') ms after exec)"
	else
		bad "did not subscribe to the Telemetry API"
	fi
	if [ "$(jv "$s" 's.telemetry.events > 0 && s.telemetry.undelivered === 0')" = true ]; then
		ok "received $(jv "$s" 's.telemetry.events') telemetry events in $(jv "$s" 's.telemetry.batches') batches"
	else
		bad "telemetry delivery: $(jv "$s" 'JSON.stringify({events: s.telemetry.events, failures: s.telemetry.failures, undelivered: s.telemetry.undelivered})')"
	fi
	local sd
	sd=$(jv "$s" 's.shutdown.extensions[0] && s.shutdown.extensions[0].received_shutdown && !s.shutdown.extensions[0].killed && s.shutdown.extensions[0].exit_status === 0')
	if [ "$sd" = true ]; then
		ok "exited 0 at SHUTDOWN in $(jv "$s" 's.shutdown.extensions[0].time_to_exit_ms') ms"
	else
		bad "shutdown: $(jv "$s" 'JSON.stringify(s.shutdown.extensions[0])')"
	fi

	local want
	node tests/tools/kinesis_read.js --endpoint "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" \
		--stream "$stream" --deaggregate --timeout-ms 20000 >"$T/records-$arch.jsonl" 2>"$T/read-$arch.log" ||
		bad "reading the stream back: $(tail -n 3 "$T/read-$arch.log")"
	ids_in_stream "$T/records-$arch.jsonl" | sort -u >"$T/arrived-$arch.txt"
	# Lines the simulator dropped itself (buffer overflow, as Lambda does) cannot arrive.
	touch "$T/lambda-dropped-$arch.txt"
	sort -u "$T/ids-$arch.txt" | grep -vxFf <(awk '{print $NF}' "$T/lambda-dropped-$arch.txt") >"$T/emitted-$arch.txt"
	want=$(wc -l <"$T/emitted-$arch.txt")
	local missing
	missing=$(comm -23 "$T/emitted-$arch.txt" "$T/arrived-$arch.txt" | wc -l)
	if [ "$want" -gt 0 ] && [ "$missing" -eq 0 ]; then
		ok "all $want function log lines arrived in Kinesis"
	else
		bad "$missing of $want function log lines missing in Kinesis (e.g. $(comm -23 "$T/emitted-$arch.txt" "$T/arrived-$arch.txt" | head -3 | tr '\n' ' '))"
	fi
	if [ -s "$T/tls/requests" ]; then
		ok "$(wc -l <"$T/tls/requests") requests to Kinesis came over HTTPS"
	else
		bad "no request reached Kinesis over HTTPS"
	fi
	types_in_stream "$T/records-$arch.jsonl" >"$T/types-$arch.txt"
	if grep -q "^platform.start $INVOCATIONS\$" "$T/types-$arch.txt" && grep -q '^platform.runtimeDone ' "$T/types-$arch.txt"; then
		ok "platform events arrived: $(tr '\n' ',' <"$T/types-$arch.txt" | sed 's/,$//')"
	else
		bad "platform events in Kinesis: $(tr '\n' ',' <"$T/types-$arch.txt")"
	fi
	bash tests/tools/kinesis_mock.sh stop "$MOCK_PID" >/dev/null 2>&1
	MOCK_PID=""
	kill "$TLS_PID" 2>/dev/null
	TLS_PID=""
}

for a in $ARCHS; do
	run_arch "$(norm_arch "$a")"
done
finish
