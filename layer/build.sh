#!/usr/bin/env bash
# Builds the Lambda layer for one architecture (`make layer [ARCH=x86_64|arm64]`):
#   <layer>/extensions/kinesis-telemetry-extension     the executable Lambda starts
#   <layer>/kinesis-telemetry-extension/lib/            its private copies of the loader, libc, civetweb...
#   build/kinesis-telemetry-extension-<arch>.zip        the same tree, zipped (executable bits kept)
# <layer> is build/layer for the build machine's architecture, build/layer-<arch> for another one.
#
# Self-contained whatever the runtime's OS has (Amazon Linux 2023 has glibc 2.34 and its own libcurl and
# OpenSSL): the objects `make` compiled are linked again with
#   - a libcurl built for the layer by layer/libcurl.sh (Debian's source package, HTTP and HTTPS only, static,
#     cached in build/cache/), and OpenSSL, zlib and json-c from Debian's static libraries;
#   - civetweb and glibc, which have no static library in Debian, as shared libraries copied into the
#     layer's private lib directory, found through DT_RPATH (which, unlike DT_RUNPATH, wins over the
#     LD_LIBRARY_PATH=/opt/lib Lambda sets) and loaded by the layer's own copy of the dynamic loader
#     (PT_INTERP). Nothing is put in /opt/lib, so the function's runtime never sees these libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=kinesis-telemetry-extension
OPT_DIR=/opt/$NAME/lib                 # where the private libraries are at run time
BUILD=${BUILD:-build}
BUILD=${BUILD%/}

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
	for p in libc6-dev libjson-c-dev libcivetweb-dev libssl-dev zlib1g-dev; do
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
fi

# The layer's libcurl (built once, then cached).
CURL_PREFIX=$(CC=$CC BUILD=$BUILD bash layer/libcurl.sh "$ARCH") || die "no libcurl for $ARCH"
if [ "$ARCH" != "$HOST_ARCH" ]; then
	# The target's libraries, and the layer's libcurl headers: no libcurl -dev package of the target.
	export PKG_CONFIG_LIBDIR=/usr/lib/$TRIPLET/pkgconfig:/usr/share/pkgconfig
	MAKE_ARGS=(CC="$CC" AR="${TOOL_PREFIX}ar" BUILD="$OBJ_BUILD"
		PKG_CFLAGS="-I$CURL_PREFIX/include $(pkg-config --cflags json-c libcrypto)")
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
needed() { "${TOOL_PREFIX}readelf" -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

# What the extension links, named: static archives (the layer's libcurl first, then what it and the
# extension use), then the shared libraries that have no archive.
static=("$CURL_PREFIX/lib/libcurl.a")
for a in libjson-c.a libssl.a libcrypto.a libz.a; do
	f=$(find_lib "$a") || die "no $a for $ARCH (install the -dev package)"
	static+=("$f")
done
civetweb=$(find_lib libcivetweb.so) || die "no libcivetweb.so for $ARCH (libcivetweb-dev)"

mkdir -p "$OBJ_BUILD/layer-obj" "$LAYER"
EXE=$OBJ_BUILD/layer-obj/$NAME
rm -rf "${LAYER:?}/extensions" "${LAYER:?}/$NAME"
mkdir -p "$LAYER/extensions" "$LAYER/$NAME/lib"
# Not position-independent: a PIE would make the loader apply ~19,000 relative relocations (OpenSSL's and
# libcurl's tables of pointers) and copy-on-write ~90 pages before main() on every cold start
# (docs/internals/layer.md). Address randomisation of libc, the stack, the heap and mmap stays; the three
# processes are forks of one image, so they shared one executable layout anyway.
"$CC" -pthread -no-pie -o "$EXE" \
	-Wl,--dynamic-linker="$OPT_DIR/$LOADER" -Wl,-rpath,"$OPT_DIR" -Wl,--disable-new-dtags \
	-Wl,--gc-sections -Wl,--as-needed -Wl,-O1 -Wl,--hash-style=gnu \
	"$OBJ_BUILD/obj/controller/main.o" "$OBJ_BUILD/libkte.a" \
	"${static[@]}" "$civetweb" -lpthread -lm -ldl ||
	die "linking the extension for $ARCH failed"

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
