#!/usr/bin/env bash
# Kinesis faults: the extension ships through the fault proxy, which answers 10% of
# PutRecords with 500, fails 20% of the records of the others as throttled
# (ProvisionedThroughputExceededException, partial failure), adds 50 ms to every
# request and drops 2% of the replies after forwarding (the lost-ack case). Each record
# format, under a different flush policy: every id arrives; duplicates only in as many
# Kinesis records as had their acknowledgement dropped; the faults really happened.
# The faults stop (latency stays) once the second-to-last invocation is over: on this
# shared 2-core machine kinesis-mock takes hundreds of ms per request, and several
# rounds of 20% throttled records do not fit in SHUTDOWN's 1.7 s (what does not fit is
# reported as not sent; test_e2e_outage and test_e2e_shutdown_retry cover that end).
. "$(dirname "$0")/lib.sh"

N=$(scaled 8 3)
LINES=$(scaled 40 10)
kinesis_start f-event:1 f-ndjson:1 f-kpl:1
proxy_start --seed "${E2E_SEED:-8}"
total500=0 totalthrottled=0
FAULTS='{"error500Rate":0.1,"throttleRecordRate":0.2,"latencyMs":50,"dropReplyRate":0.02}'
for combo in event:end ndjson:continuous kpl:adaptive; do
	f=${combo%%:*} p=${combo#*:}
	proxy_fault "$FAULTS"
	curl -sf -X POST "$FAULT_PROXY_CONTROL/__stats/reset" >/dev/null
	sim_start "$f-$p" "f-$f" "$f" "$p" --invocations "$N" --log-lines "$LINES" --log-bytes 200-1000 \
		--handler-ms 100 --interval-ms 30
	wait_for 120 log_has "invoke $((N - 1)) " || fail "the run did not reach invocation $((N - 1))"
	proxy_fault '{"error500Rate":0,"throttleRecordRate":0,"dropReplyRate":0}'
	sim_wait 120
	assert_run_ok "$N"
	proxy_stats
	st=$T/$RUN.proxy.json
	total500=$((total500 + $(jq_js "$st" 'j.injected.error500')))
	totalthrottled=$((totalthrottled + $(jq_js "$st" 'j.records.injectedFailed')))
	[ "$(jq_js "$st" 'j.latencyApplied > 0')" = true ] || fail "no latency applied"
	acks=$(jq_js "$st" 'j.records.ackDropped')
	check_stream "f-$f" "$f" --max-duplicate-records "$acks"
	assert_shutdown_account
	note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids; $(jq_js "$st" 'j.byTarget.PutRecords') PutRecords," \
		"$(jq_js "$st" 'j.injected.error500') answered 500, $(jq_js "$st" 'j.records.injectedFailed') records" \
		"throttled, $acks acks dropped -> $(cj 'j.duplicateRecords') records with duplicates;" \
		"overhead p50 $(sj 'j.overhead_ms.p50') max $(sj 'j.overhead_ms.max') ms"
done
# The faults really happened (over the three runs: a single short run may draw no 500).
[ "$total500" -gt 0 ] || fail "no request answered 500"
[ "$totalthrottled" -gt 0 ] || fail "no record throttled"
pass "500s, throttled records, latency and lost acks: nothing lost, duplicates within the lost acks"
