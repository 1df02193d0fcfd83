#!/usr/bin/env bash
# SnapStart: the extension runs in the simulator's --snapstart mode (init, snapshot with the
# processes frozen, restore), with no AWS_ACCESS_KEY_ID in its environment: only container
# credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN) whose key
# pairs rotate every 2 s (each valid 4 s) during the run. Kinesis is behind the fault proxy in
# verifier mode: it checks every request's SigV4 signature against the pairs the simulator issued
# and refuses unknown or expired ones, as Kinesis would.
# Every event arrives; the credentials endpoint was called more than once (refreshed before
# expiry, and after an ExpiredTokenException); several pairs were used; no request signed with an
# expired key was accepted; the restore was acted upon once, before any request went out on a
# connection of before the snapshot; no secret reached the log.
# Second case: platform.restore* filtered out (KTE_DROP_TYPES): the controller's signal (the
# first INVOKE of a snap-start environment) still triggers the restore handling.
# Third case: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE holds a wrong token through init: fetches are
# refused (401, logged once), the circuit opens, the file is re-read at each fetch and once it holds
# the right token everything is shipped.
. "$(dirname "$0")/lib.sh"

TTL_MS=4000
KEYS=$T/keys
kinesis_start s-snap:2 s-snap-drop:1 s-snap-tok:1
proxy_start --credentials-file "$KEYS"
E2E_STRICT=1

# snap_case NAME STREAM INVOCATIONS SIGNALS [simulator options...]: SIGNALS, an ERE of the restore
# signals that may have been acted upon.
snap_case() {
	local name=$1 stream=$2 n=$3 signal=$4 st issued served used first_akid first_token
	shift 4
	curl -sf -X POST "$FAULT_PROXY_CONTROL/__stats/reset" >/dev/null
	# --runtime-init-ms: the extension is in next while the runtime initialises, so the dispatcher ships
	# the init events before the snapshot, on a connection and with credentials the restore must renew.
	sim_start "$name" "$stream" event adaptive --snapstart --snapshot-gap-ms 3000 \
		--credentials-ttl-ms "$TTL_MS" --credentials-file "$KEYS" --runtime-init-ms 1500 \
		--invocations "$n" --log-lines "$(scaled 40 10)" --log-bytes 200-1000 --handler-ms 100 \
		--interval-ms 1000 "$@"
	sim_wait 180
	assert_run_ok "$n"
	proxy_stats
	check_stream "$stream" event
	assert_shutdown_account
	st=$T/$RUN.proxy.json

	# The run spans several rotations (a new pair every TTL/2).
	issued=$(sj 'j.snapstart.credentials_issued')
	served=$(sj 'j.snapstart.credentials_served')
	[ "$issued" -ge 3 ] || fail "only $issued key pairs issued during the run: it did not span rotations"
	[ "$served" -ge 2 ] || fail "the credentials endpoint was called $served time(s): no refresh"
	[ "$(sj 'j.snapstart.credentials_unauthorized')" -eq 0 ] || fail "the extension sent a wrong authorization token"
	used=$(jq_js "$st" 'Object.keys(j.credentials.keys).length')
	[ "$used" -ge 2 ] || fail "Kinesis saw only $used key pair(s): the credentials were not refreshed"
	[ "$(jq_js "$st" 'j.credentials.unknown + j.credentials.badSignature')" -eq 0 ] ||
		fail "requests with unknown keys or bad signatures: $(jq_js "$st" 'JSON.stringify(j.credentials)')"
	# Independently of the verifier's own decision: every accepted request's key was valid on arrival.
	node -e '
	const fs = require("fs");
	const keys = new Map(fs.readFileSync(process.argv[1], "utf8").trim().split("\n")
	  .map((l) => l.split(" ")).map(([a, , e]) => [a, Number(e)]));
	const log = JSON.parse(fs.readFileSync(process.argv[2], "utf8")).credentials.log;
	const bad = log.filter((r) => !keys.has(r.akid) || r.at >= keys.get(r.akid));
	if (log.length === 0 || bad.length) { console.error(JSON.stringify(bad.slice(0, 5))); process.exit(1); }' \
		"$KEYS" "$st" || fail "a request signed with an expired key was accepted"
	# The restore was handled once, on the expected signal.
	[ "$(log_count 'SnapStart restore \(.*\): random sources reseeded')" -eq 1 ] || fail "no (or more than one) restore handling"
	log_has "SnapStart restore \\(($signal)\\)" || fail "the restore was not handled on $signal"
	! log_has 'reloading' || fail "the old reload of the same variables is still there"
	# No secret in the log: neither secret keys nor session tokens.
	while read -r _ token _ secret; do
		! grep -qF -e "$secret" -e "$token" "$T/$RUN.log" "$T/$RUN.out" || fail "a credential reached the log"
	done <"$KEYS"
	note "$RUN: restore handled on $(sed -nE 's/.*SnapStart restore \((.*)\): random.*/\1/p' "$T/$RUN.log")"
	note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids; $issued pairs issued, endpoint called $served times," \
		"$used pairs used by $(jq_js "$st" 'j.credentials.accepted') accepted requests," \
		"$(jq_js "$st" 'j.credentials.expired') refused as expired"
}

# Reconnect: requests after the restore never reuse a connection of before the snapshot (and some
# were sent before it, so the check means something).
assert_reconnected() {
	node -e '
	const fs = require("fs");
	const st = JSON.parse(fs.readFileSync(process.argv[1], "utf8")), sum = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
	const snap = Date.parse(sum.snapstart.snapshot_at), restore = Date.parse(sum.snapstart.restore_at);
	const before = st.credentials.log.filter((r) => r.at < snap), after = st.credentials.log.filter((r) => r.at > restore);
	const old = new Set(before.map((r) => r.conn));
	const reused = after.filter((r) => old.has(r.conn));
	console.log(`${before.length} requests before the snapshot on ${old.size} connection(s), ${after.length} after, ${reused.length} reusing one`);
	process.exit(before.length > 0 && after.length > 0 && reused.length === 0 ? 0 : 1);' \
		"$T/$RUN.proxy.json" "$T/$RUN.summary.json" >"$T/$RUN.reconnect.txt" ||
		fail "restore: $(cat "$T/$RUN.reconnect.txt")"
	note "$RUN: $(cat "$T/$RUN.reconnect.txt")"
}

# Kinesis also refuses the first PutRecords as expired: the dispatcher must fetch afresh and resend.
proxy_fault '{"script":["expired"]}'
# platform.restoreStart and the INVOKE come together after the restore: either may be seen first.
snap_case snap s-snap "$(scaled 8 4)" 'platform.restoreStart|first invocation'
[ "$(jq_js "$T/$RUN.proxy.json" 'j.injected.expired')" -eq 1 ] || fail "the scripted ExpiredTokenException was not sent"
assert_reconnected

# The verifier does refuse: a key it never issued, and the run's first (now expired) pair.
refused() { # refused AKID TOKEN -> the error type of a PutRecords signed (badly) with that key
	curl -s -X POST "$FAULT_PROXY_ENDPOINT/" -H 'Content-Type: application/x-amz-json-1.1' \
		-H 'X-Amz-Target: Kinesis_20131202.PutRecords' -H 'X-Amz-Date: 20260101T000000Z' \
		-H "X-Amz-Security-Token: $2" -H "Authorization: AWS4-HMAC-SHA256 Credential=$1/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=$(printf '0%.0s' {1..64})" \
		-d '{"StreamName":"s-snap","Records":[]}' | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).__type))'
}
read -r first_akid first_token _ <"$KEYS"
[ "$(refused ASIANEVERISSUED0000 x)" = UnrecognizedClientException ] || fail "the verifier accepted an unknown key"
[ "$(refused "$first_akid" "$first_token")" = ExpiredTokenException ] || fail "the verifier accepted an expired key"

# Restore telemetry filtered out: the first INVOKE is the signal.
snap_case snap-drop s-snap-drop "$(scaled 5 3)" 'first invocation' --env 'KTE_DROP_TYPES=platform.restore*'
# The token file holds a wrong token through init; the test puts the right one in while the snapshot holds the
# extension frozen (a window of --snapshot-gap-ms that does not depend on the machine's speed).
printf 'not-the-token\n' >"$T/token"
curl -sf -X POST "$FAULT_PROXY_CONTROL/__stats/reset" >/dev/null
N=$(scaled 6 4)
sim_start snap-token s-snap-tok event adaptive --snapstart --runtime-init-ms 3000 --snapshot-gap-ms 3000 \
	--credentials-ttl-ms "$TTL_MS" --credentials-file "$KEYS" --invocations "$N" --log-lines "$(scaled 20 10)" \
	--handler-ms 100 --interval-ms 500 --env "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=$T/token"
wait_for 60 log_has 'snapshot taken' || fail "no snapshot"
log_has 'cannot fetch credentials from the container endpoint: HTTP 401' ||
	fail "no failed fetch reported during init with a wrong token"
log_has 'CredentialsUnavailable.*circuit open' || fail "the circuit did not open while credentials were unavailable"
# The controller is the simulator's child (a scan of every /proc entry, as controller_pid does, can outlast
# the window on a busy machine).
ctl=
for p in $(cat /proc/"$SIM_PID"/task/*/children 2>/dev/null); do
	[ "$(cat /proc/"$p"/comm 2>/dev/null)" = kinesis-telemet ] && ctl=$p
done
[ -n "$ctl" ] || fail "no controller process among the simulator's children"
good=$(tr '\0' '\n' <"/proc/$ctl/environ" | sed -n 's/^AWS_CONTAINER_AUTHORIZATION_TOKEN=//p')
[ -n "$good" ] || fail "no AWS_CONTAINER_AUTHORIZATION_TOKEN in the extension's environment"
printf '%s\n' "$good" >"$T/token.new" && mv "$T/token.new" "$T/token"
log_has 'restored in' && fail "the restore came before the token file was fixed (the window was missed)"
sim_wait 180
assert_run_ok "$N"
check_stream s-snap-tok event
assert_shutdown_account
[ "$(sj 'j.snapstart.credentials_unauthorized')" -ge 1 ] || fail "the endpoint never saw the wrong token"
log_has 'credentials fetched again after [0-9]+ failed attempt' || fail "no recovery line"
[ "$(log_count 'cannot fetch credentials from the container endpoint')" -eq 1 ] || fail "fetch failures logged more than once per series"
note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids; $(sj 'j.snapstart.credentials_unauthorized') fetches refused" \
	"before the token file was fixed"
pass "SnapStart with rotating container credentials: nothing lost, refreshed before expiry, no expired key accepted, reseeded and reconnected at the restore"
