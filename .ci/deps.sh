#!/usr/bin/env bash
# Installs what the build, the tests and the demo need, only when it is missing.
# Debian packages through apt-get (as root, or through sudo); npm packages into tests/node.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config libcivetweb-dev libcurl4-openssl-dev libjson-c-dev libssl-dev
      check libsubunit-dev clang libclang-rt-14-dev valgrind busybox-static zip unzip nodejs npm curl
      openssl)
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
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -f tests/node/package.json ] && [ ! -f tests/node/node_modules/.kte-installed ] ||
   [ tests/node/package-lock.json -nt tests/node/node_modules/.kte-installed ]; then
  echo "deps: npm ci in tests/node"
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.kte-installed)
fi
