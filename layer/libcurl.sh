#!/usr/bin/env bash
# A static libcurl for the layer, built from Debian's source package (curl 7.88.1 with Debian's patches,
# security fixes included) with HTTP and HTTPS only: OpenSSL and zlib, nothing else. Called by
# layer/build.sh; prints the install prefix (include/, lib/libcurl.a) on stdout, progress on stderr.
#   bash layer/libcurl.sh ARCH        ARCH: x86_64 or arm64 (cross: CC=aarch64-linux-gnu-gcc)
#
# Cached in $BUILD/cache/: the source (one directory per Debian version) and one built prefix per
# (version, architecture, compiler, configuration below); it is rebuilt only when one of them changes. Needs the network only when the source is missing, and then
# only Debian's mirrors: it adds a deb-src entry mirroring the machine's deb entries when apt has none.
#
# The version is the one of the installed libcurl4-openssl-dev (whose headers `make` compiles the
# extension against): the source apt holds for it, or apt's newest one (a newer Debian revision of the
# same upstream release) when the mirror has moved on.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
BUILD=${BUILD%/}
CACHE=$BUILD/cache
ARCH=${1:?usage: libcurl.sh x86_64|arm64}
case "$ARCH" in
x86_64) TRIPLET=x86_64-linux-gnu ;;
arm64)  TRIPLET=aarch64-linux-gnu ;;
*) echo "libcurl: unknown architecture $ARCH" >&2; exit 1 ;;
esac
CC=${CC:-cc}

say() { echo "libcurl: $*" >&2; }
die() { say "$*"; exit 1; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

# HTTP and HTTPS over OpenSSL, zlib for Content-Encoding; every other protocol, library and feature off.
# The extension sets CURLOPT_CAINFO itself (KTE_CA_BUNDLE or the runtime's bundle), so no build-host path
# is compiled in. The proxy support stays (HTTPS_PROXY and NO_PROXY work as with any libcurl).
CONFIG=(--disable-shared --enable-static --with-pic --disable-dependency-tracking --disable-silent-rules
	--with-openssl --with-zlib --enable-threaded-resolver --enable-ipv6
	--without-brotli --without-zstd --without-nghttp2 --without-ngtcp2 --without-nghttp3 --without-quiche
	--without-msh3 --without-libssh2 --without-libssh --without-wolfssh --without-librtmp --without-libidn2
	--without-libpsl --without-gssapi --without-libgsasl --without-hyper --without-ca-bundle
	--without-ca-path --without-ca-fallback
	--disable-ldap --disable-ldaps --disable-rtsp --disable-dict --disable-telnet --disable-tftp --disable-pop3
	--disable-imap --disable-smb --disable-smtp --disable-gopher --disable-mqtt --disable-ftp --disable-file
	--disable-manual --disable-libcurl-option --disable-alt-svc --disable-hsts --disable-cookies
	--disable-ntlm --disable-ntlm-wb --disable-tls-srp
	--disable-doh --disable-netrc --disable-websockets --disable-unix-sockets --disable-dnsshuffle)

CFLAGS="-O2 -g0 -ffunction-sections -fdata-sections -fstack-protector-strong -D_FORTIFY_SOURCE=2"

# The wanted version: the installed headers' (build machine architecture: the same source for both).
VERSION=$(dpkg-query -W -f='${Version}\n' "libcurl4-openssl-dev:$(dpkg --print-architecture)" 2>/dev/null | head -n1) && [ -n "$VERSION" ] ||
	die "libcurl4-openssl-dev is not installed (make deps)"
key=$(printf '%s\n' "$ARCH" "$CC" "$CFLAGS" "${CONFIG[@]}" | sha256sum | cut -c1-12)

# A prefix already built for this version and configuration: nothing to do, no network.
find_prefix() {   # find_prefix VERSION
	local p=$CACHE/curl-$1-$ARCH-$key
	[ -f "$p/.complete" ] && { (cd "$p" && pwd); return 0; }
	return 1
}
if p=$(find_prefix "$VERSION"); then echo "$p"; exit 0; fi
# ... or one for a newer revision fetched earlier when the mirror had moved on.
if [ -f "$CACHE/src/curl.version" ] && p=$(find_prefix "$(cat "$CACHE/src/curl.version")"); then
	echo "$p"; exit 0
fi

# The source: apt-get source, once per version.
apt_quiet() { DEBIAN_FRONTEND=noninteractive "$@" -o DPkg::Lock::Timeout=600; }
deb_src_ready() { apt-get source --print-uris curl 2>/dev/null | grep -q "\.dsc'"; }
add_deb_src() {
	# One deb-src entry for every Debian deb entry of the machine (deb822 .sources, or one-line .list).
	local out=/etc/apt/sources.list.d/kte-deb-src.sources f
	local tmp
	tmp=$(mktemp)
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'BEGIN { RS = ""; ORS = "\n\n" }
			/(^|\n)Types:[^\n]*(^|[ \t])deb([ \t\n]|$)/ && /(^|\n)URIs:[^\n]*debian/ {
				gsub(/(^|\n)#[^\n]*/, ""); sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f" >>"$tmp"
	done
	if [ ! -s "$tmp" ]; then
		grep -h '^deb \S*debian' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			sed 's/^deb /deb-src /' >"$tmp.list" || true
		if [ -s "$tmp.list" ]; then
			out=/etc/apt/sources.list.d/kte-deb-src.list
			mv "$tmp.list" "$tmp"
		fi
	fi
	[ -s "$tmp" ] || die "no Debian deb entry in /etc/apt/sources.list* to mirror as deb-src"
	say "adding $out (deb-src for Debian's mirrors, as the machine's deb entries)"
	$SUDO install -m 0644 "$tmp" "$out"
	rm -f "$tmp" "$tmp.list"
}
fetch_source() {
	local dl=$CACHE/src/dl i
	command -v dpkg-source >/dev/null || {
		say "installing dpkg-dev (apt-get source unpacks with dpkg-source)"
		$SUDO apt-get update -qq || true
		apt_quiet $SUDO apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
	}
	if ! deb_src_ready; then
		add_deb_src
		# Another apt may hold the lists lock for a while: retry.
		for i in 1 2 3 4 5 6; do $SUDO apt-get update -qq && break; sleep 10; done
		deb_src_ready || die "apt-get source curl: no source package even after adding deb-src"
	fi
	rm -rf "$dl"
	mkdir -p "$dl"
	if ! (cd "$dl" && apt-get source --download-only -qq "curl=$VERSION" >&2 2>/dev/null); then
		say "the mirror no longer has curl $VERSION: taking its newest revision"
		(cd "$dl" && apt-get source --download-only -qq curl >&2) || die "apt-get source curl failed"
	fi
	local dsc
	dsc=$(ls "$dl"/curl_*.dsc | head -n1)
	VERSION=$(sed -n 's/^Version: //p' "$dsc")
	say "unpacking $(basename "$dsc") (Debian's patches applied)"
	rm -rf "$CACHE/src/curl-$VERSION"
	dpkg-source --no-check -x "$dsc" "$CACHE/src/curl-$VERSION" >/dev/null
	rm -rf "$dl"
	echo "$VERSION" >"$CACHE/src/curl.version"
}
mkdir -p "$CACHE/src"
[ -f "$CACHE/src/curl-$VERSION/configure" ] || fetch_source
SRC=$(cd "$CACHE/src/curl-$VERSION" && pwd)
PREFIX=$(mkdir -p "$CACHE" && cd "$CACHE" && pwd)/curl-$VERSION-$ARCH-$key

# Configure and build lib/ only (no curl tool, no docs), out of tree.
t0=$(date +%s)
say "building curl $VERSION for $ARCH (HTTP/HTTPS only, static; cached in $PREFIX)"
OBJ=$CACHE/obj-curl-$ARCH
rm -rf "$OBJ" "$PREFIX"
mkdir -p "$OBJ"
host=()
[ "$ARCH" = "$(uname -m | sed 's/aarch64/arm64/')" ] || host=(--host="$TRIPLET" --build="$(uname -m)-linux-gnu")
(
	cd "$OBJ"
	export PKG_CONFIG_LIBDIR=/usr/lib/$TRIPLET/pkgconfig:/usr/share/pkgconfig
	"$SRC/configure" "${host[@]}" --prefix="$PREFIX" "${CONFIG[@]}" CC="$CC" \
		CFLAGS="$CFLAGS" \
		>configure.log 2>&1 || { tail -n 30 configure.log >&2; exit 1; }
	make -C lib -j"$(nproc)" >make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
	make -C lib install >>make.log 2>&1 && make -C include install >>make.log 2>&1 ||
		{ tail -n 30 make.log >&2; exit 1; }
	cp configure.log "$PREFIX/configure.log"
) || die "building curl $VERSION failed (logs in $OBJ)"
# What configure settled on, for the record (and a check that only HTTP(S) remains).
protocols=$(sed -n 's/^ *Protocols: *//p' "$PREFIX/configure.log" | tr 'A-Z' 'a-z')
[ "$protocols" = "http https" ] || die "curl $VERSION for $ARCH supports '$protocols', expected 'http https'"
rm -rf "$OBJ"
touch "$PREFIX/.complete"
say "curl $VERSION for $ARCH built in $(( $(date +%s) - t0 )) s: protocols $protocols"
echo "$PREFIX"
