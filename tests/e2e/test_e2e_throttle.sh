#!/usr/bin/env bash
# A throttling Kinesis at default settings: 10 runs (fault seeds 1-10), each 20
# invocations of 50 function log lines, through the fault proxy answering 10% of
# PutRecords with HTTP 500 and failing 20% of the records of the others with
# ProvisionedThroughputExceededException, 50 ms added to every request, into a
# 2-shard stream. The faults last the whole run, SHUTDOWN included. Nothing may be
# lost in any run: every id arrives, and the extension reports nothing unsent
# (strict: no tolerated "unsent at shutdown").
# Knobs: E2E_THROTTLE_SEEDS (default "1 2 ... 10").
. "$(dirname "$0")/lib.sh"

E2E_STRICT=1
SEEDS=${E2E_THROTTLE_SEEDS:-$(seq 1 10)}
N=20
LINES=50
FAULTS='{"error500Rate":0.1,"throttleRecordRate":0.2,"latencyMs":50}'
streams=()
for s in $SEEDS; do streams+=("thr$s:2"); done
kinesis_start "${streams[@]}"
total500=0 totalthrottled=0 runs=0
for s in $SEEDS; do
	proxy_start --seed "$s"
	proxy_fault "$FAULTS"
	sim_run "seed$s" "thr$s" default default --invocations "$N" --log-lines "$LINES" \
		--log-bytes 200-1000 --handler-ms 100 --interval-ms 100
	assert_run_ok "$N"
	assert_exited_in_time
	assert_shutdown_account
	proxy_stats
	st=$T/$RUN.proxy.json
	[ "$(jq_js "$st" 'j.latencyApplied > 0')" = true ] || fail "no latency applied"
	total500=$((total500 + $(jq_js "$st" 'j.injected.error500')))
	totalthrottled=$((totalthrottled + $(jq_js "$st" 'j.records.injectedFailed')))
	# Strict: check_stream fails on any event the extension reported not sent.
	# Duplicates only from requests that failed after Kinesis wrote them (a timeout).
	check_stream "thr$s" event --max-duplicate-records $(($(ext_failed_requests) * 500))
	[ "$(lambda_dropped)" -eq 0 ] || fail "Lambda dropped $(lambda_dropped) records"
	note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids; $(jq_js "$st" 'j.byTarget.PutRecords') PutRecords," \
		"$(jq_js "$st" 'j.injected.error500') answered 500, $(jq_js "$st" 'j.records.injectedFailed') records" \
		"throttled; post-runtime p50 $(sj 'j.overhead_ms.p50') max $(sj 'j.overhead_ms.max') ms," \
		"shutdown $(sj 'Math.round(j.shutdown.duration_ms)') ms"
	bash "$TOOLS/fault_proxy.sh" stop "$FAULT_PROXY_PID" >/dev/null 2>&1 || true
	FAULT_PROXY_PID= FAULT_PROXY_ENDPOINT=
	runs=$((runs + 1))
done
[ "$total500" -gt 0 ] || fail "no request answered 500"
[ "$totalthrottled" -gt 0 ] || fail "no record throttled"
pass "$runs seeds x $N invocations x $LINES lines, 10% 500s, 20% throttled records, 50 ms: nothing lost"
