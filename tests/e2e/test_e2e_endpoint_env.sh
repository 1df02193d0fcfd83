#!/usr/bin/env bash
# Endpoint variables as the AWS SDKs read them: the whole extension in the Lambda
# simulator with ONLY AWS_ENDPOINT_URL_KINESIS set (pointing at kinesis-mock), then with
# ONLY AWS_ENDPOINT_URL (no KTE_KINESIS_ENDPOINT either time): every event must arrive
# (bar what the extension itself reports unsent at the SHUTDOWN deadline, as in every e2e
# test: see check_stream), and the controller must say which endpoint it uses and where
# it came from. Then a plain
# http:// endpoint named by a host name that is not a loopback name (this machine's
# name, when it resolves to 127.0.0.1): everything arrives and the clear-text warning is
# logged exactly once; the loopback runs have none. Last, AWS_ENDPOINT_URL_KINESIS with a
# path prefix, through a proxy that verifies every request's SigV4 signature for the path
# it received (tests/tools/sigv4_verify_proxy.js, its own SigV4 in Node) before passing it
# on to kinesis-mock: every request verified, everything arrives.
. "$(dirname "$0")/lib.sh"

N=$(scaled 8 3)
LINES=$(scaled 40 10)
kinesis_start ep-kinesis:1 ep-all:1 ep-named:1 ep-prefix:1
WARN='plain http:// to a host off this machine'

run_with() {
	local name=$1 stream=$2 var=$3
	shift 3
	# continuous: shipped as it arrives, so a slow kinesis-mock on a loaded machine does
	# not leave the tail for the SHUTDOWN deadline.
	E2E_ENDPOINT_VAR=$var sim_run "$name" "$stream" event continuous --invocations "$N" \
		--log-lines "$LINES" --log-bytes 200-2000 --handler-ms 20 --interval-ms 100 "$@"
	assert_run_ok "$N"
	assert_shutdown_account
	# Every id arrives, but for what the extension itself reported unsent at the deadline
	# (check_stream); with the endpoint not read, none would.
	check_stream "$stream" event
	[ "$(cj 'j.arrived')" -gt 0 ] || fail "nothing arrived"
	note "$RUN: $var: $(cj 'j.arrived')/$(cj 'j.emitted') ids arrived"
}

run_with only-kinesis ep-kinesis AWS_ENDPOINT_URL_KINESIS
log_has "Kinesis endpoint $KINESIS_MOCK_ENDPOINT \(from AWS_ENDPOINT_URL_KINESIS\)" ||
	fail "the controller did not log the endpoint from AWS_ENDPOINT_URL_KINESIS"
[ "$(log_count "$WARN")" -eq 0 ] || fail "clear-text warning for a loopback endpoint"

run_with only-all ep-all AWS_ENDPOINT_URL
log_has "Kinesis endpoint $KINESIS_MOCK_ENDPOINT \(from AWS_ENDPOINT_URL\)" ||
	fail "the controller did not log the endpoint from AWS_ENDPOINT_URL"
[ "$(log_count "$WARN")" -eq 0 ] || fail "clear-text warning for a loopback endpoint"

name=$(cat /proc/sys/kernel/hostname 2>/dev/null || true)
if [ -n "$name" ] && [ "$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 { print $1 }')" = 127.0.0.1 ]; then
	url="http://$name:$KINESIS_MOCK_PORT"
	E2E_ENDPOINT=$url run_with named ep-named AWS_ENDPOINT_URL
	[ "$(log_count "$WARN")" -eq 1 ] || fail "$url: $(log_count "$WARN") clear-text warnings, want 1"
else
	note "NOTE: this machine's name does not resolve to 127.0.0.1: clear-text warning run skipped"
fi
SECRET=e2eVerifyProxySecretKey0000000000000000
node "$TOOLS/sigv4_verify_proxy.js" --upstream "$KINESIS_MOCK_ENDPOINT" --prefix /kinesis/ --secret "$SECRET" \
	>"$T/verify.port" 2>"$T/verify.log" &
_bg_pids+=($!)
wait_for 20 test -s "$T/verify.port" || fail "the verifying proxy did not start"
VERIFY=http://127.0.0.1:$(head -n 1 "$T/verify.port")
verify_stats() { curl -sf "$VERIFY/__stats" >"$T/verify.json" || fail "verifying proxy: GET /__stats"; }
# The verifier refuses what is not signed right (here a made-up signature).
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$VERIFY/kinesis/" -H 'X-Amz-Date: 20150830T123600Z' \
	-H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=$(printf '%064d' 0)" -d '{}')
[ "$code" = 403 ] || fail "the verifying proxy answered $code to a bad signature, want 403"
E2E_ENDPOINT="$VERIFY/kinesis/" run_with prefix ep-prefix AWS_ENDPOINT_URL_KINESIS \
	--env AWS_ACCESS_KEY_ID=AKIDE2EVERIFY0000000 --env "AWS_SECRET_ACCESS_KEY=$SECRET" \
	--env AWS_SESSION_TOKEN=e2e/session+token=
verify_stats
[ "$(jq_js "$T/verify.json" 'j.rejected')" -eq 1 ] ||
	fail "the verifier rejected the extension's requests: $(jq_js "$T/verify.json" 'j.lastRejection')"
[ "$(jq_js "$T/verify.json" 'j.verified')" -ge 1 ] || fail "no request reached the verifier"
[ "$(jq_js "$T/verify.json" 'j.wrongPath')" -eq 0 ] || fail "requests outside /kinesis/"
note "path prefix: $(jq_js "$T/verify.json" 'j.verified') requests verified for /kinesis/"
pass "only AWS_ENDPOINT_URL_KINESIS, only AWS_ENDPOINT_URL, a path prefix behind a SigV4 verifier: $N invocations x $LINES records each, all arrived"
