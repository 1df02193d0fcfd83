#!/usr/bin/env bash
# Clients that hold the listener's connections without progress, for a whole run:
# 8 POSTs that drip their body (Content-Length 100000, one byte a second), 8 idle
# keep-alive connections and 4 half requests (part of the headers, then nothing), each
# opened again as soon as the listener closes it. Meanwhile the simulator's Lambda
# delivers the function's telemetry: nothing may be lost, the run completes normally,
# and the listener closes every kind of held connection (its deadlines and keep-alive
# limit). Prints the listener's POST reply latency (p50/p99/max) as Lambda saw it.
. "$(dirname "$0")/lib.sh"

N=$(scaled 40 20)
kinesis_start slow-ndjson:1
sim_start slow slow-ndjson ndjson continuous --invocations "$N" --log-lines 40 --log-bytes 200-2000 \
	--handler-ms 40 --interval-ms 100
wait_for 60 log_has "listening on" || fail "the listener did not start"
node "$TOOLS/slow_clients.js" --port "$LISTENER_PORT" --drip 8 --idle 8 --half 4 --stats "$T/slow.json" &
ATTACK_PID=$!
_bg_pids+=("$ATTACK_PID")
sim_wait 300
kill -TERM "$ATTACK_PID"
wait "$ATTACK_PID" || true
[ -s "$T/slow.json" ] || fail "the slow clients wrote no stats"
note "slow clients: $(cat "$T/slow.json")"
assert_run_ok "$N"
[ "$(log_count 'restarted as pid')" -eq 0 ] || fail "a child was restarted"
check_stream slow-ndjson ndjson
assert_shutdown_account
# Held for the whole run: each kind was closed by the listener (and opened again) many times.
for kind in drip idle half; do
	[ "$(jq_js "$T/slow.json" "j.$kind.closed_by_server")" -ge 2 ] ||
		fail "$kind connections were not closed by the listener: $(cat "$T/slow.json")"
done
sj_assert 'j.telemetry.failures === 0'
note "listener POST reply latency (ms): $(sj 'JSON.stringify(j.telemetry.reply_latency_ms)')"
note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids arrived with 20 slow connections held open"
pass "20 slow connections held for the whole run: nothing lost, every kind closed by the listener"
