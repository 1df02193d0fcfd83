#!/usr/bin/env bash
# cloudformation/template.yaml against the CloudFormation resource specification (@aws-cdk/cfnspec):
# the template must pass validate_template.js, and every deliberately broken copy made by
# broken_templates.js must fail with the error it was broken for (so the validator can fail).
set -euo pipefail
cd "$(dirname "$0")/../.."

here=tests/cloudformation
node_modules=tests/node/node_modules
for m in js-yaml @aws-cdk/cfnspec; do
	[ -d "$node_modules/$m" ] || { echo "FAIL: $node_modules/$m missing: run 'make deps'"; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

if node $here/validate_template.js cloudformation/template.yaml; then
	pass=$((pass + 1))
else
	echo "FAIL: cloudformation/template.yaml is not valid"
	fail=$((fail + 1))
fi

node $here/broken_templates.js cloudformation/template.yaml "$tmp" >"$tmp/expected.tsv"
while IFS=$'\t' read -r name expected; do
	if node $here/validate_template.js "$tmp/$name.yaml" >"$tmp/$name.out" 2>&1; then
		echo "FAIL: broken copy '$name' was accepted"
		fail=$((fail + 1))
	elif ! grep -qF -- "$expected" "$tmp/$name.out"; then
		echo "FAIL: broken copy '$name' was rejected, but not with \"$expected\":"
		sed 's/^/    /' "$tmp/$name.out"
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
done <"$tmp/expected.tsv"
[ "$(wc -l <"$tmp/expected.tsv")" -ge 20 ] || { echo "FAIL: too few broken copies"; fail=$((fail + 1)); }

echo "template: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
