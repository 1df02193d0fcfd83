#!/usr/bin/env bash
# Volume: 50 invocations of 5,000 function log records of 200 to 2,000 bytes (about
# 275 MB) through the extension into kinesis-mock, read back and accounted for id by id.
# kinesis-mock takes only about 1.5-5 MB/s, so the handler is given enough time per
# invocation for the extension to keep up (continuous flushing, KPL records, a 64 MiB
# ring); whatever Lambda still had to drop (platform.logsDropped, when the listener
# answered 503 for long) must be exactly the ids missing, and the extension must report
# the same count.
# Full size (50 invocations: about 3.5 min of run and 7 min of reading back from
# kinesis-mock) under CI (CI=true) or with KTE_E2E_VOLUME=full; 10 invocations
# otherwise. Then scaled by KTE_E2E_SCALE (0.3 under the sanitizers). The knobs can be
# overridden: E2E_VOLUME_INVOCATIONS, E2E_VOLUME_LINES, E2E_VOLUME_HANDLER_MS,
# E2E_VOLUME_FORMAT, E2E_VOLUME_POLICY.
. "$(dirname "$0")/lib.sh"

full=10
[ "${CI:-}" != true ] && [ "${KTE_E2E_VOLUME:-}" != full ] || full=50
N=${E2E_VOLUME_INVOCATIONS:-$(scaled $full 5)}
LINES=${E2E_VOLUME_LINES:-5000}
H=${E2E_VOLUME_HANDLER_MS:-4000}
FMT=${E2E_VOLUME_FORMAT:-kpl}
POL=${E2E_VOLUME_POLICY:-continuous}
kinesis_start vol:2
t0=$(date +%s)
SIM_TIMEOUT=$((N * (H + 2000) / 1000 + 120)) sim_run vol vol "$FMT" "$POL" --invocations "$N" \
	--log-lines "$LINES" --log-bytes 200-2000 --handler-ms "$H" --timeout-ms $((H + 10000)) \
	--env KTE_RING_BYTES=67108864
t1=$(date +%s)
assert_run_ok "$N"
dropped=$(lambda_dropped)
[ "$(ext_lambda_dropped)" -eq "$dropped" ] ||
	fail "Lambda dropped $dropped records, the extension reported $(ext_lambda_dropped)"
unsent=$(ext_unsent)
check_stream vol "$FMT" --expect-missing "$dropped" --allow-missing "$unsent"
t2=$(date +%s)
bytes=$(sj 'j.telemetry.bytes')
note "emitted $(cj 'j.emitted') records ($((bytes / 1048576)) MiB of telemetry) in $((t1 - t0)) s;" \
	"arrived $(cj 'j.arrived'), Lambda dropped $dropped, extension left $unsent unsent;" \
	"read back and checked in $((t2 - t1)) s"
pass "$N x $LINES records of 200-2000 bytes, $FMT, $POL: emitted = arrived + reported dropped"
