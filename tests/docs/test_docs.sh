#!/usr/bin/env bash
# The documentation matches the code (see check_docs.js for what is checked); then the checker itself is shown
# to fail on a broken copy of the docs, so that a pass means something.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
node "$here/check_docs.js"

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
git -C "$root" ls-files -co --exclude-standard -z | (cd "$root" && xargs -0 cp --parents -t "$tmp")
git -C "$tmp" init -q && git -C "$tmp" add -A
sed -i 's/`KTE_LOG_LEVEL`/`KTE_LOG_LEVEL_X`/' "$tmp/docs/configuration.md"
echo '[a link](docs/nowhere.md)' >> "$tmp/README.md"
out=$(node "$tmp/tests/docs/check_docs.js" || true)
for want in "KTE_LOG_LEVEL is read by the code" "link to docs/nowhere.md does not resolve"; do
	grep -qF "$want" <<<"$out" || { echo "FAIL: the checker missed: $want"; echo "$out"; exit 1; }
done
echo "docs checks: 2 passed, 0 failed"
