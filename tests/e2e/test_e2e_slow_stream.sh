#!/usr/bin/env bash
# A stream that takes data slowly: the fault proxy delays each PutRecords in proportion to
# its size (16.5 s per MiB, about 60 KB/s), so a request of 500 records of 1 KB outlasts the
# dispatcher's 10 s request timeout while one of 125 does not. One invocation logs 800 lines
# into a 1 MiB ring: the push back holds it while the dispatcher drains. The dispatcher must
# send smaller requests after a timeout instead of failing the same large request until the
# circuit opens (which ends the hold, and SHUTDOWN then finds the data unsent): strict,
# nothing lost; duplicates only from requests the proxy wrote after the client gave up.
E2E_STRICT=1
. "$(dirname "$0")/lib.sh"

kinesis_start s-slow:1
proxy_start
proxy_fault '{"reset":true,"latencyMsPerMiB":16500}'
sim_run slow s-slow default default --invocations 1 --log-lines 800 --log-bytes 1000 --handler-ms 200 \
	--timeout-ms 60000 --env KTE_RING_BYTES=1048576
assert_run_ok 1
assert_exited_in_time
proxy_stats
! log_has 'circuit open' || fail "the circuit opened: the dispatcher kept sending requests too large for the stream"
check_stream s-slow default --max-duplicate-records "$(jq_js "$T/$RUN.proxy.json" 'j.records.ackDropped')"
log_has 'PutRecords of [0-9]+ records timed out: Kinesis takes data slowly' ||
	fail "no request timed out: the proxy's delay did not bite"
note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids arrived;" \
	"$(log_count 'timed out: Kinesis takes data slowly') shrink(s); post-runtime $(overhead_pct 50) ms"
pass "a slow stream: requests shrink after a timeout, nothing lost"
