#!/usr/bin/env bash
# Every flush policy (end, periodic, continuous, adaptive) x every record format (event,
# ndjson, kpl): the extension in the Lambda simulator ships a modest volume (function
# log records of 200-2,000 bytes, each with a unique id) into kinesis-mock; after
# SHUTDOWN the stream is read back (KPL de-aggregated, ndjson split into lines) and
# every emitted id must be there exactly once (no faults: no duplicate is allowed),
# with one platform.start, platform.runtimeDone and platform.report per invocation
# (see check_stream in lib.sh for what the extension reports as not sent).
. "$(dirname "$0")/lib.sh"

POLICIES=(end periodic continuous adaptive)
FORMATS=(event ndjson kpl)
N=$(scaled 6 3)
LINES=$(scaled 60 10)
streams=()
for p in "${POLICIES[@]}"; do for f in "${FORMATS[@]}"; do streams+=("m-$p-$f:1"); done; done
kinesis_start "${streams[@]}"
for p in "${POLICIES[@]}"; do
	for f in "${FORMATS[@]}"; do
		sim_run "$p-$f" "m-$p-$f" "$f" "$p" --invocations "$N" --log-lines "$LINES" \
			--log-bytes 200-2000 --handler-ms 20 --interval-ms 30 --env KTE_FLUSH_INTERVAL_MS=200
		assert_run_ok "$N"
		check_stream "m-$p-$f" "$f"
		if [ "$(ext_unsent)" -eq 0 ]; then
			for t in platform.start platform.runtimeDone platform.report; do
				[ "$(cj "j.types['$t'] || 0")" -eq "$N" ] || fail "$t: $(cj "j.types['$t'] || 0") in the stream, want $N"
			done
		fi
		# No invocation held past the flush budget (500 ms) plus scheduling slack; the
		# policies that call next at once add nothing.
		sj_assert "j.overhead_ms.max < $OVERHEAD_MAX_MS"
		case $p in periodic | continuous) sj_assert 'j.overhead_ms.p50 < 5' ;; esac
		assert_shutdown_account
		note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids in $(cj 'j.records') records, overhead p50 $(sj 'j.overhead_ms.p50') ms"
	done
done
pass "4 flush policies x 3 record formats, $N invocations x $LINES records each, nothing lost or duplicated"
