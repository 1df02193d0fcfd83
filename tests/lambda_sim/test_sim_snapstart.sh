#!/usr/bin/env bash
# lambda-sim --snapstart: init, snapshot (extensions frozen), restore with the platform.restore* events,
# the extension's environment (container credentials, no key variables) and the credentials endpoint
# (token checked, key pairs rotating with an Expiration, the list of issued pairs).
source "$(dirname "$0")/lib.sh"
echo "lambda-sim SnapStart mode (work dir $T)"
build_mini "$T/layer" mini.bin
L=$T/layer
mv "$L/extensions/mini.bin" "$L/mini.bin"
# The extension records its environment, then becomes the test extension under its own name.
cat >"$L/extensions/mini" <<EOF
#!/usr/bin/env bash
env >"\$MINI_OUT/env"
exec -a "\$0" "$L/mini.bin"
EOF
chmod +x "$L/extensions/mini"

mkdir -p "$T/run"
"$KTE_SIM" --layer "$L" --env MINI_OUT="$T/run" --env AWS_SESSION_TOKEN=from-user --summary "$T/run.json" \
	--quiet --snapstart --snapshot-gap-ms 1500 --credentials-ttl-ms 1000 --credentials-file "$T/keys" \
	--invocations 3 --interval-ms 1500 --log-lines 2 2>"$T/run.err" &
SIM=$!
SIM_PIDS+=("$SIM")

# During the snapshot gap the extension is stopped (state T) before any INVOKE.
stopped() {
	local pid
	pid=$(cat "$T/run/pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = T ] &&
		! grep -q INVOKE "$T/run/events.log" 2>/dev/null
}
check "snapshot: the extension is frozen after init, before the first INVOKE" wait_until 10 stopped

check "environment: AWS_LAMBDA_INITIALIZATION_TYPE=snap-start" grep -qx 'AWS_LAMBDA_INITIALIZATION_TYPE=snap-start' "$T/run/env"
check "environment: no AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (not even from --env)" \
	bash -c "! grep -qE '^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)=' '$T/run/env'"
URI=$(sed -n 's/^AWS_CONTAINER_CREDENTIALS_FULL_URI=//p' "$T/run/env")
TOK=$(sed -n 's/^AWS_CONTAINER_AUTHORIZATION_TOKEN=//p' "$T/run/env")
loopback_uri() { [[ $URI =~ ^http://127\.0\.0\.1:[0-9]+/ ]] && [ ${#TOK} -ge 32 ]; }
check "environment: a loopback AWS_CONTAINER_CREDENTIALS_FULL_URI and a token" loopback_uri

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "endpoint: no token -> 401" test "$(code "$URI")" = 401
check "endpoint: wrong token -> 401" test "$(code -H "Authorization: x$TOK" "$URI")" = 401
t_before=$(date +%s%3N)
curl -s -H "Authorization: $TOK" "$URI" >"$T/c1.json"
t_after=$(date +%s%3N)
check "endpoint: the token -> JSON with AccessKeyId, SecretAccessKey, Token, Expiration" \
	test "$(jv "$T/c1.json" '/^ASIA/.test(s.AccessKeyId) && s.SecretAccessKey.length >= 40 && s.Token.length > 0 && /Z$/.test(s.Expiration)')" = true
exp_c1=$(node -e 'console.log(Date.parse(JSON.parse(require("fs").readFileSync(process.argv[1])).Expiration))' "$T/c1.json")
# Pair k is issued at start + k*TTL/2 and lives TTL: fetched at any moment, it has (TTL/2, TTL] left.
check "endpoint: Expiration more than TTL/2 and at most one TTL after the fetch ($((exp_c1 - t_before)) ms)" \
	test $((exp_c1 - t_before)) -gt 500 -a $((exp_c1 - t_after)) -le 1000
K1=$(jv "$T/c1.json" s.AccessKeyId)
rotated() {
	curl -s -H "Authorization: $TOK" "$URI" >"$T/c2.json" && [ "$(jv "$T/c2.json" s.AccessKeyId)" != "$K1" ]
}
check "endpoint: a new key pair after half a TTL" wait_until 3 rotated
check "credentials file: both pairs listed with their token and Expiration" \
	bash -c "grep -q '^$K1 ' '$T/keys' && grep -q \"^\$(node -e 'console.log(JSON.parse(require(\"fs\").readFileSync(process.argv[1])).AccessKeyId)' '$T/c2.json') \" '$T/keys'"
exp1=$(awk -v k="$K1" '$1 == k {print $3}' "$T/keys")
check "credentials file: the first pair's Expiration matches the reply" \
	test "$exp_c1" = "$exp1"

wait "$SIM"; RC=$?
check "run completes (rc=$RC)" test "$RC" -eq 0
check "summary: snapshot gap and restore recorded, credentials served" \
	test "$(jv "$T/run.json" 's.snapstart.snapshot_gap_ms === 1500 && Date.parse(s.snapstart.restore_at) - Date.parse(s.snapstart.snapshot_at) >= 1500 && s.snapstart.credentials_served >= 2 && s.snapstart.credentials_unauthorized === 2 && s.invocations.completed === 3')" = true
# Telemetry order: init (snap-start) ... restoreStart, restoreRuntimeDone, restoreReport, then the invocations.
node -e '
const ev = [];
for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
  if (!l) continue;
  for (const e of JSON.parse(l.slice(l.indexOf(" ") + 1))) ev.push(e);
}
const idx = t => ev.findIndex(e => e.type === t);
const init = ev.find(e => e.type === "platform.initStart");
const rs = ev.find(e => e.type === "platform.restoreStart"), rr = ev.find(e => e.type === "platform.restoreReport");
const rep = ev.filter(e => e.type === "platform.report");
const ok = init && init.record.initializationType === "snap-start" &&
  idx("platform.initReport") < idx("platform.restoreStart") &&
  idx("platform.restoreStart") < idx("platform.restoreRuntimeDone") &&
  idx("platform.restoreRuntimeDone") < idx("platform.restoreReport") &&
  idx("platform.restoreReport") < idx("platform.start") &&
  rs.record.functionName && rr.record.status === "success" && typeof rr.record.metrics.durationMs === "number" &&
  rep.length === 3 && typeof rep[0].record.metrics.restoreDurationMs === "number" &&
  !("initDurationMs" in rep[0].record.metrics);
process.exit(ok ? 0 : 1);' "$T/run/telemetry.log"
check "telemetry: initStart snap-start, restoreStart < restoreRuntimeDone < restoreReport < platform.start, report has restoreDurationMs" test $? -eq 0

# Without --snapstart nothing changes: key variables, on-demand, and no credentials endpoint.
mkdir -p "$T/plain"
"$KTE_SIM" --layer "$L" --env MINI_OUT="$T/plain" --summary "$T/plain.json" --quiet --invocations 1 2>"$T/plain.err"
check "plain run: key variables present, on-demand, no snapstart summary" \
	bash -c "grep -q '^AWS_ACCESS_KEY_ID=' '$T/plain/env' && grep -qx 'AWS_LAMBDA_INITIALIZATION_TYPE=on-demand' '$T/plain/env' && ! grep -q CONTAINER_CREDENTIALS '$T/plain/env' && [ \"\$(node -e 'console.log(\"snapstart\" in JSON.parse(require(\"fs\").readFileSync(process.argv[1])))' '$T/plain.json')\" = false ]"
check "usage: --snapstart with --managed-instances is refused" \
	bash -c "'$KTE_SIM' --layer '$L' --snapstart --managed-instances >/dev/null 2>&1; [ \$? -eq 2 ]"
finish
