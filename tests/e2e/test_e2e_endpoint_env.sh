#!/usr/bin/env bash
# Endpoint variables as the AWS SDKs read them: the whole extension in the Lambda
# simulator with ONLY AWS_ENDPOINT_URL_KINESIS set (pointing at kinesis-mock), then with
# ONLY AWS_ENDPOINT_URL (no KTE_KINESIS_ENDPOINT either time): every event must arrive
# (bar what the extension itself reports unsent at the SHUTDOWN deadline, as in every e2e
# test: see check_stream), and the controller must say which endpoint it uses and where
# it came from. Then a plain
# http:// endpoint named by a host name that is not a loopback name (this machine's
# name, when it resolves to 127.0.0.1): everything arrives and the clear-text warning is
# logged exactly once; the loopback runs have none.
. "$(dirname "$0")/lib.sh"

N=$(scaled 8 3)
LINES=$(scaled 40 10)
kinesis_start ep-kinesis:1 ep-all:1 ep-named:1
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

name=$(hostname 2>/dev/null || true)
if [ -n "$name" ] && [ "$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 { print $1 }')" = 127.0.0.1 ]; then
	url="http://$name:$KINESIS_MOCK_PORT"
	E2E_ENDPOINT=$url run_with named ep-named AWS_ENDPOINT_URL
	[ "$(log_count "$WARN")" -eq 1 ] || fail "$url: $(log_count "$WARN") clear-text warnings, want 1"
else
	note "NOTE: this machine's name does not resolve to 127.0.0.1: clear-text warning run skipped"
fi
pass "only AWS_ENDPOINT_URL_KINESIS, only AWS_ENDPOINT_URL: $N invocations x $LINES records each, all arrived"
