#!/usr/bin/env bash
# Builds the Lambda layer for one architecture (`make layer [ARCH=x86_64|arm64]`):
#   <layer>/extensions/kinesis-telemetry-extension     the executable Lambda starts
#   <layer>/kinesis-telemetry-extension/lib/            its private copies of the loader, libc, civetweb...
#   build/kinesis-telemetry-extension-<arch>.zip        the same tree, zipped (executable bits kept)
# <layer> is build/layer for the build machine's architecture, build/layer-<arch> for another one.
#
# Self-contained whatever the runtime's OS has (Amazon Linux 2023 has glibc 2.34 and its own libcurl and
# OpenSSL): the objects `make` compiled are linked again with
#   - libcurl, OpenSSL, json-c, zlib and brotli statically (Debian ships their .a);
#   - the libraries Debian's libcurl wants but the extension never uses (RTMP, LDAP, SSH, GSS-API, IDN,
#     PSL) replaced by the stand-ins in layer/curl_stubs.c;
#   - everything without a static library (civetweb, nghttp2, zstd, glibc) as shared libraries copied
#     into the layer's private lib directory, found through DT_RPATH (which, unlike DT_RUNPATH, wins over
#     the LD_LIBRARY_PATH=/opt/lib Lambda sets) and loaded by the layer's own copy of the dynamic loader
#     (PT_INTERP). Nothing is put in /opt/lib, so the function's runtime never sees these libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=kinesis-telemetry-extension
OPT_DIR=/opt/$NAME/lib                 # where the private libraries are at run time
BUILD=${BUILD:-build}
BUILD=${BUILD%/}
# Libraries of Debian's libcurl that layer/curl_stubs.c stands in for.
STUBBED=" idn2 rtmp ssh2 psl gssapi_krb5 ldap lber "

die() { echo "layer: $*" >&2; exit 1; }
norm_arch() {
	case "$1" in
	x86_64|amd64) echo x86_64 ;;
	arm64|aarch64) echo arm64 ;;
	*) die "unknown architecture '$1' (expected x86_64 or arm64)" ;;
	esac
}

[ -f controller/main.c ] || die "no controller/main.c in this tree: there is no extension executable to package yet"
[ -z "${SAN:-}" ] || die "the layer is a release build: not with SAN=$SAN (make asan)"
ARCH=$(norm_arch "${1:-$(uname -m)}")
HOST_ARCH=$(norm_arch "$(uname -m)")
case "$ARCH" in
x86_64) TRIPLET=x86_64-linux-gnu;  DEB_ARCH=amd64; LOADER=ld-linux-x86-64.so.2 ;;
arm64)  TRIPLET=aarch64-linux-gnu; DEB_ARCH=arm64; LOADER=ld-linux-aarch64.so.1 ;;
esac

if [ "$ARCH" = "$HOST_ARCH" ]; then
	OBJ_BUILD=$BUILD
	LAYER=$BUILD/layer
	CC=${CC:-cc}
	TOOL_PREFIX=""
	MAKE_ARGS=()
else
	# Cross build: Debian's cross compiler and the target's -dev packages, installed only here (not by
	# `make deps`, to keep CI lean).
	OBJ_BUILD=$BUILD/$ARCH
	LAYER=$BUILD/layer-$ARCH
	CC=$TRIPLET-gcc
	TOOL_PREFIX=$TRIPLET-
	need=()
	command -v "$CC" >/dev/null || need+=("gcc-$TRIPLET")
	for p in libc6-dev libcurl4-openssl-dev libjson-c-dev libcivetweb-dev libssl-dev; do
		dpkg-query -W -f='${Status}' "$p:$DEB_ARCH" 2>/dev/null | grep -q "install ok installed" ||
			need+=("$p:$DEB_ARCH")
	done
	if ((${#need[@]})); then
		echo "layer: installing ${need[*]}"
		SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
		if ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
			$SUDO dpkg --add-architecture "$DEB_ARCH"
		fi
		export DEBIAN_FRONTEND=noninteractive
		$SUDO apt-get update -qq || true
		$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	export PKG_CONFIG_LIBDIR=/usr/lib/$TRIPLET/pkgconfig:/usr/share/pkgconfig
	MAKE_ARGS=(CC="$CC" AR="${TOOL_PREFIX}ar" BUILD="$OBJ_BUILD")
fi

# The objects: whatever `make` builds for the executable (a no-op when `make layer` just built them).
make --no-print-directory "${MAKE_ARGS[@]}" "$OBJ_BUILD/obj/controller/main.o" "$OBJ_BUILD/libkte.a" >/dev/null

LIBDIRS=(/lib/$TRIPLET /usr/lib/$TRIPLET /usr/$TRIPLET/lib)
find_lib() {   # find_lib FILE: the first match in the target's library directories
	local d
	for d in "${LIBDIRS[@]}"; do
		[ -e "$d/$1" ] && { echo "$d/$1"; return 0; }
	done
	return 1
}

# Link flags: every -l of the Makefile's libraries (pkg-config --static, so libcurl's own dependencies
# appear), as a static archive when one exists, as a shared library when not, skipped when stubbed. A
# static archive records no dependencies: take them from its shared twin's DT_NEEDED.
shared_of() {   # shared_of NAME: the shared library file for -lNAME
	find_lib "lib$1.so" && return 0
	for d in "${LIBDIRS[@]}"; do ls "$d/lib$1.so."* 2>/dev/null || true; done | sort -V | head -n1 | grep .
}
needed() { "${TOOL_PREFIX}readelf" -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
queue=($(pkg-config --static --libs-only-l libcurl json-c libcrypto) -lcivetweb)
static=() shared=()
seen=" c m dl pthread rt ld-linux-x86-64 ld-linux-aarch64 "
while ((${#queue[@]})); do
	n=${queue[0]#-l}
	queue=("${queue[@]:1}")
	case "$seen" in *" $n "*) continue ;; esac
	seen="$seen$n "
	case "$STUBBED" in *" $n "*) continue ;; esac
	so=$(shared_of "$n") || so=""
	if a=$(find_lib "lib$n.a"); then
		static+=("$a")
		if [ -n "$so" ]; then
			for dep in $(needed "$so"); do
				dep=${dep#lib}
				queue+=("${dep%%.so*}")
			done
		fi
	elif [ -n "$so" ]; then
		shared+=("$so")
	else
		die "no static or shared library for -l$n ($ARCH)"
	fi
done
mkdir -p "$OBJ_BUILD/layer-obj" "$LAYER"
STUBS_O=$OBJ_BUILD/layer-obj/curl_stubs.o
"$CC" -std=gnu11 -O2 -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Werror -fPIC \
	-c -o "$STUBS_O" layer/curl_stubs.c

EXE=$OBJ_BUILD/layer-obj/$NAME
rm -rf "${LAYER:?}/extensions" "${LAYER:?}/$NAME"
mkdir -p "$LAYER/extensions" "$LAYER/$NAME/lib"
# Static archives refer to each other in pkg-config's order, not ours: a link group resolves any order.
if ! "$CC" -pthread -o "$EXE" \
	-Wl,--dynamic-linker="$OPT_DIR/$LOADER" -Wl,-rpath,"$OPT_DIR" -Wl,--disable-new-dtags \
	-Wl,--gc-sections -Wl,--as-needed -Wl,-O1 \
	"$OBJ_BUILD/obj/controller/main.o" "$OBJ_BUILD/libkte.a" "$STUBS_O" \
	-Wl,--start-group "${static[@]}" -Wl,--end-group "${shared[@]}" -lpthread -lm -ldl \
	2>"$OBJ_BUILD/layer-obj/link.log"; then
	cat "$OBJ_BUILD/layer-obj/link.log" >&2
	grep -q "undefined reference" "$OBJ_BUILD/layer-obj/link.log" &&
		echo "layer: a library gained a dependency: add a stand-in to layer/curl_stubs.c" >&2
	exit 1
fi

# Keep the symbols apart (for crash analysis; they match the shipped executable by its build ID), ship
# the stripped executable. No debuglink: its CRC would tie the zip to this checkout's paths.
"${TOOL_PREFIX}objcopy" --only-keep-debug "$EXE" "$BUILD/$NAME-$ARCH.debug"
"${TOOL_PREFIX}strip" --strip-all -o "$LAYER/extensions/$NAME" "$EXE"
chmod 0755 "$LAYER/extensions/$NAME"

# The private lib directory: the loader, then every DT_NEEDED, recursively.
copy_lib() {   # copy_lib SONAME: copies it and what it needs, once
	local dst=$LAYER/$NAME/lib/$1 src
	[ -e "$dst" ] && return 0
	src=$(find_lib "$1") || die "cannot find $1 for $ARCH"
	cp -L "$src" "$dst"
	chmod 0644 "$dst"
	[ "$1" = "$LOADER" ] && { chmod 0755 "$dst"; return 0; }
	"${TOOL_PREFIX}strip" --strip-unneeded "$dst"
	local n
	for n in $(needed "$dst"); do copy_lib "$n"; done
}
copy_lib "$LOADER"
for n in $(needed "$LAYER/extensions/$NAME"); do copy_lib "$n"; done
# glibc loads libgcc_s at run time for thread cancellation and pthread_exit unwinding.
copy_lib libgcc_s.so.1

# Checks: the loader and the search path are the private ones, and every library is there.
"${TOOL_PREFIX}readelf" -l "$LAYER/extensions/$NAME" | grep -q "interpreter: $OPT_DIR/$LOADER]" ||
	die "PT_INTERP is not $OPT_DIR/$LOADER"
"${TOOL_PREFIX}readelf" -d "$LAYER/extensions/$NAME" | grep -q "(RPATH).*\[$OPT_DIR\]" ||
	die "DT_RPATH is not $OPT_DIR"
if [ "$ARCH" = "$HOST_ARCH" ]; then
	# The layer's own loader resolves every library from the layer (the RPATH directory does not exist
	# outside Lambda or the test chroot, so --library-path stands in for it).
	list=$("$LAYER/$NAME/lib/$LOADER" --library-path "$LAYER/$NAME/lib" --list "$LAYER/extensions/$NAME")
	if echo "$list" | grep -v -e "=> $LAYER/$NAME/lib/" -e 'linux-vdso' -e "$OPT_DIR/$LOADER" | grep -q .; then
		echo "$list" >&2
		die "a library resolves outside the layer"
	fi
fi

# The zip: fixed timestamps and file order, so an unchanged layer gives the same zip (and the same
# S3 key from `aws cloudformation package`).
ZIP=$BUILD/$NAME-$ARCH.zip
find "$LAYER/extensions" "$LAYER/$NAME" -exec touch -h -d @315532800 {} +
rm -f "$ZIP"
zip_abs=$(cd "$(dirname "$ZIP")" && pwd)/$(basename "$ZIP")
(cd "$LAYER" && find extensions "$NAME" | LC_ALL=C sort | zip -q -9 -X -@ "$zip_abs")

zip_bytes=$(stat -c %s "$ZIP")
unpacked=$(unzip -l "$ZIP" | tail -n1 | awk '{print $1}')
awk -v z="$ZIP" -v a="$ARCH" -v zb="$zip_bytes" -v ub="$unpacked" -v n="$(ls "$LAYER/$NAME/lib" | wc -l)" 'BEGIN {
	printf "layer: %s (%s): zip %d bytes (%.2f MiB), unpacked %d bytes (%.2f MiB), %d libraries\n", z, a, zb, zb / 1048576, ub, ub / 1048576, n }'
