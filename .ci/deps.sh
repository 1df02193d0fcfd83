#!/usr/bin/env bash
# Installs what the build, the tests and the demo need, only when it is missing.
# Debian packages through apt-get (as root, or through sudo); npm packages into tests/node.
#   bash .ci/deps.sh          what `make` and `make check` need
#   bash .ci/deps.sh arm64    also the arm64 layer's cross build and its test under emulation (CI does this;
#                             `make layer ARCH=arm64` alone installs all but qemu itself)
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config libcivetweb-dev libcurl4-openssl-dev libjson-c-dev libssl-dev
      check libsubunit-dev clang libclang-rt-14-dev valgrind busybox-static zip unzip nodejs npm curl
      openssl dpkg-dev)
if [ "${1:-}" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
  # The cross compiler, qemu for running arm64 executables (invoked directly: binfmt_misc may be absent),
  # and the arm64 libraries the layer links (multiarch).
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO dpkg --add-architecture arm64
  fi
  PKGS+=(gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu qemu-user-static libc6-dev:arm64 libssl-dev:arm64
         zlib1g-dev:arm64 libjson-c-dev:arm64 libcivetweb-dev:arm64)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from elsewhere than Debian (nodesource, nvm): accept any working copy.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  # Another apt-get (a boot-time upgrade) may hold dpkg's lock: wait for it rather than fail.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq || true
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -f tests/node/package.json ] && [ ! -f tests/node/node_modules/.kte-installed ] ||
   [ tests/node/package-lock.json -nt tests/node/node_modules/.kte-installed ]; then
  echo "deps: npm ci in tests/node"
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.kte-installed)
fi
