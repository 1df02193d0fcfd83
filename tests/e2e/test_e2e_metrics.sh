#!/usr/bin/env bash
# Self-metrics: the extension in the simulator writes CloudWatch embedded metric format
# lines on stdout (echoed in the simulator's log). Each must be valid EMF; together they
# must count what the simulator delivered and what Kinesis received; there must be no
# line per event (at most one per invocation plus the last one, and at most one per
# KTE_METRICS_INTERVAL_MS plus the last one); with KTE_METRICS=off there is none.
# The `extension` stream is subscribed, so the lines also come back as telemetry: the loop
# stays bounded. On Lambda Managed Instances (no INVOKE) the lines come on the interval.
. "$(dirname "$0")/lib.sh"

N=$(scaled 8 4)
INTERVAL_MS=1000
kinesis_start metrics:1

emf() {
	node "$E2E/check_emf.js" "$T/$RUN.log" --namespace "$1" --function kte-sim-function >"$T/$RUN.emf.json" ||
		fail "invalid EMF lines (see above)"
}
ej() {
	jq_js "$T/$RUN.emf.json" "$1"
}

# 1. On, with a short interval and invocations spaced out so that it matters.
sim_run on metrics event end --invocations "$N" --log-lines 20 --interval-ms 300 \
	--env KTE_METRICS_INTERVAL_MS=$INTERVAL_MS --env KTE_TELEMETRY_TYPES=platform,function,extension
assert_run_ok "$N"
assert_shutdown_account
check_stream metrics event
emf KinesisTelemetryExtension
lines=$(ej 'j.lines')
wall_ms=$(sj 'Math.ceil(j.invocations.wall_ms + j.shutdown.duration_ms)')
[ "$lines" -ge 1 ] || fail "no EMF line"
[ "$lines" -le $((N + 1)) ] || fail "$lines EMF lines for $N invocations: more than one per invocation + 1"
[ "$lines" -le $((wall_ms / INTERVAL_MS + 2)) ] ||
	fail "$lines EMF lines in $wall_ms ms: more than one per ${INTERVAL_MS} ms + the last one"
[ "$(ej 'j.sums.Invocations')" -eq "$N" ] || fail "Invocations sum to $(ej 'j.sums.Invocations'), not $N"
delivered=$(sj 'j.telemetry.events')
[ "$(ej 'j.sums.EventsReceived')" -eq "$delivered" ] ||
	fail "EventsReceived sum to $(ej 'j.sums.EventsReceived'); the simulator delivered $delivered"
arrived=$(cj 'j.records')
[ "$(ej 'j.sums.EventsSent')" -eq "$arrived" ] ||
	fail "EventsSent sum to $(ej 'j.sums.EventsSent'); Kinesis holds $arrived records"
[ "$(ej 'j.sums.RecordsSent')" -eq "$arrived" ] || fail "RecordsSent sum to $(ej 'j.sums.RecordsSent'), not $arrived"
unsent=$(ext_unsent)
[ "$(ej 'j.sums.EventsDropped')" -eq "$unsent" ] && [ "$(ej 'j.sums.DroppedAtShutdown')" -eq "$unsent" ] ||
	fail "EventsDropped $(ej 'j.sums.EventsDropped'), DroppedAtShutdown $(ej 'j.sums.DroppedAtShutdown'); the log says $unsent unsent"
[ "$(ej 'j.lineMetrics.every(m => m.EventsSent === 0 || (m.AckLatencyP50 <= m.AckLatencyMax && m.AckLatencyMax >= 0))')" = true ] ||
	fail "a line with events sent has no or inconsistent latency"
[ "$(ej 'j.lineMetrics.every(m => m.RingHighWaterBytes > 0 || m.EventsReceived === 0)')" = true ] ||
	fail "a line that received events shows an empty ring"
# The lines came back as `extension` telemetry: as many as were written before the last.
back=$(node -e 'let n=0;for (const l of require("fs").readFileSync(process.argv[1],"utf8").split("\n")) {
	if (!l) continue; const r=JSON.parse(l); const d=Buffer.from(r.data,"base64").toString();
	if (d.includes("_aws")) n++; } console.log(n);' "$T/$RUN.records.jsonl")
[ "$back" -le "$lines" ] || fail "$back EMF lines came back through Kinesis, only $lines were written"
# The first line, written at an INVOKE a second or more before the end, must have come back.
[ "$lines" -lt 3 ] || [ "$back" -ge 1 ] || fail "$lines EMF lines written, none came back as extension telemetry"
note "on: $lines EMF lines ($(ej 'j.bytes') bytes) for $N invocations in $wall_ms ms; received $delivered," \
	"sent $arrived, $back line(s) came back as extension telemetry"
bytes_per_inv=$(( $(ej 'j.bytes') / N ))

# 2. Off: not one line, and shipping unchanged.
sim_run off metrics event end --invocations 2 --log-lines 5 --env KTE_METRICS=off
assert_run_ok 2
emf KinesisTelemetryExtension
[ "$(ej 'j.lines')" -eq 0 ] || fail "KTE_METRICS=off, but $(ej 'j.lines') EMF lines were written"

# 3. Default interval (60 s) and another namespace: a short run writes only the last line.
sim_run ns metrics event end --invocations 3 --log-lines 5 --env KTE_METRICS_NAMESPACE=My/Team
assert_run_ok 3
emf My/Team
[ "$(ej 'j.lines')" -eq 1 ] || fail "$(ej 'j.lines') EMF lines in a short run at the default interval, expected 1"
[ "$(ej 'j.sums.Invocations')" -eq 3 ] || fail "the last line counts $(ej 'j.sums.Invocations') invocations, not 3"

# 4. Lambda Managed Instances: no INVOKE to write at, so the lines come on the interval alone.
sim_run mi metrics event continuous --managed-instances --invocations 8 --interval-ms 400 --log-lines 5 \
	--env KTE_METRICS_INTERVAL_MS=$INTERVAL_MS
assert_run_ok 8
emf KinesisTelemetryExtension
wall_ms=$(sj 'Math.ceil(j.invocations.wall_ms + j.shutdown.duration_ms)')
[ "$(ej 'j.lines')" -ge 2 ] || fail "managed instances: $(ej 'j.lines') EMF line(s) in $wall_ms ms, expected interval lines too"
[ "$(ej 'j.lines')" -le $((wall_ms / INTERVAL_MS + 2)) ] || fail "managed instances: $(ej 'j.lines') lines in $wall_ms ms"
[ "$(ej 'j.sums.EventsReceived')" -eq "$(sj 'j.telemetry.events')" ] ||
	fail "managed instances: EventsReceived sum to $(ej 'j.sums.EventsReceived'), delivered $(sj 'j.telemetry.events')"

pass "valid EMF, sums match the simulator and Kinesis, <= 1 line per invocation and interval (+1), off when off; ~${bytes_per_inv} bytes/invocation at a ${INTERVAL_MS} ms interval"
