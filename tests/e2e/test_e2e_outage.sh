#!/usr/bin/env bash
# Kinesis outage: the fault proxy goes down (connections refused) for a stretch in the
# middle of a run, then comes back by itself.
# 1. Traffic that fits in the ring (`end` policy): nothing is lost, and no invocation is
#    held past the flush budget (500 ms) while Kinesis is unreachable.
# 2. Traffic that does not fit (a 1 MiB ring, the simulator's buffer 256 KiB) with
#    KTE_OVERFLOW=drop, the user's choice of speed over completeness (the default, wait,
#    would hold the function instead: test_e2e_burst): Kinesis stays down until Lambda
#    has dropped records (the simulator lists each drop as it happens). The listener
#    answers 503, Lambda retries and finally drops records, reporting them in
#    platform.logsDropped. Every emitted id is either in the stream or counted in what
#    Lambda reported (emitted = arrived + reported dropped, nothing unreported missing);
#    the extension reports the same count in its shutdown account and an
#    extension.kte.dropped event in the stream says what it had to refuse (503s) and
#    what Lambda dropped. (Under ASan the listener can be slow enough for Lambda to drop
#    without a single 503: the account must hold all the same.)
. "$(dirname "$0")/lib.sh"

kinesis_start o-fit:1 o-over:1
proxy_start

# 1. Fits in the ring.
N=$(scaled 30 20)
OUT_MS=1500
sim_start fit o-fit event end --invocations "$N" --log-lines 15 --log-bytes 200-2000 --handler-ms 30 \
	--interval-ms 100 --env KTE_RETRY_MAX_MS=1000
wait_for 60 log_has "invoke 3 " || fail "the run did not reach invocation 3"
proxy_fault "{\"down\":true,\"downMs\":$OUT_MS}"
note "Kinesis down for $OUT_MS ms after invocation 3"
sim_wait 300
assert_run_ok "$N"
proxy_stats
# A request on the wire when the proxy goes down was written upstream but its reply lost:
# those records are sent again (the proxy counts them in ackDropped), nothing else may repeat.
check_stream o-fit event --max-duplicate-records "$(jq_js "$T/$RUN.proxy.json" 'j.records.ackDropped')"
assert_shutdown_account
sj_assert "j.overhead_ms.max < $OVERHEAD_MAX_MS"
note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids arrived; overhead p50 $(sj 'j.overhead_ms.p50') ms," \
	"max $(sj 'j.overhead_ms.max') ms (budget 500)"

# 2. Overflows the ring while Kinesis is down.
N=12
sim_start over o-over event continuous --invocations "$N" --log-lines 300 --log-bytes 500-1500 \
	--handler-ms 200 --interval-ms 50 --buffer-bytes 262144 --env KTE_RING_BYTES=1048576 \
	--env KTE_OVERFLOW=drop --dropped-ids "$T/over.dropped"
wait_for 60 log_has "invoke 2 " || fail "the run did not reach invocation 2"
curl -sf -X POST "$FAULT_PROXY_CONTROL/__stats/reset" >/dev/null
proxy_fault '{"down":true,"downMs":0}'
lambda_dropping() { [ -s "$T/over.dropped" ]; }
wait_for 120 lambda_dropping || fail "Lambda dropped nothing while Kinesis was down: the ring did not overflow"
proxy_fault '{"down":false}'
sim_wait 300
assert_run_ok "$N"
proxy_stats
# Going down resets the open connections: a request already forwarded loses its reply
# (its records are in the stream and will be sent again): the proxy counts them in ackDropped.
acks=$(jq_js "$T/$RUN.proxy.json" 'j.records.ackDropped')
dropped=$(lambda_dropped)
[ "$dropped" -gt 0 ] || fail "Lambda dropped nothing: the outage did not overflow the ring"
[ "$(ext_lambda_dropped)" -eq "$dropped" ] ||
	fail "Lambda reported $dropped dropped records, the extension's account says $(ext_lambda_dropped)"
unsent=$(ext_unsent)
check_stream o-over event --expect-missing "$dropped" --allow-missing "$unsent" \
	--max-duplicate-records "$acks"
# The extension.kte.dropped summary goes out once Kinesis accepts records again, behind
# the backlog: when the backlog did not all fit in the run, it may not have.
if [ "$unsent" -eq 0 ] || [ "$(cj 'j.droppedEvents')" -ge 1 ]; then
	[ "$(cj 'j.droppedEvents')" -ge 1 ] || fail "no extension.kte.dropped event in the stream"
	[ "$(cj '(j.dropped.listenerRingFull || 0) + (j.dropped.lambdaLogsDropped || 0) > 0')" = true ] ||
		fail "extension.kte.dropped counts neither the 503s nor Lambda's drops"
	if log_has 'ring full: answering 503'; then
		[ "$(cj 'j.dropped.listenerRingFull > 0')" = true ] || fail "extension.kte.dropped does not count the 503s"
	fi
fi
note "$RUN: emitted $(cj 'j.emitted'), arrived $(cj 'j.arrived'), Lambda dropped $dropped (reported by" \
	"the extension too), $unsent left unsent, $(cj 'j.duplicateRecords') duplicates ($acks acks lost); kte.dropped: $(cj 'JSON.stringify(j.dropped)')"
pass "outage: nothing lost that fitted in the ring; overflow counted and reported"
