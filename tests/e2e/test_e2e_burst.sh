#!/usr/bin/env bash
# Bursts beyond the stream's capacity, at default settings: 50 invocations, each
# logging 5,000 function lines of 200 to 2,000 bytes (about 5.5 MB) within a 200 ms
# handler, 100 ms frozen between invocations, into a 2-shard stream: far more than
# Kinesis takes while the handler runs, so the default ring (8 MiB for the simulator's
# 128 MB function) fills and the extension pushes back (holds next, docs/pressure.md)
# instead of letting Lambda drop. Nothing may be lost: every id arrives, Lambda dropped
# nothing (platform.logsDropped), the extension reports nothing unsent. Prints the
# post-runtime duration (the hold's cost) p50/p95 and the total time.
# The function's timeout is 60 s: a hold lasts at most until the invocation's deadline.
# Kinesis is kinesis-mock behind the fault proxy with no faults, spreading the stream over
# generations of 2,500 records (--spread-records; read back as one): kinesis-mock's
# PutRecords costs time in proportion to what the shard already holds, so one stream of
# 250,000 records slows to seconds per request (measured: the drain of the 1st to 4th
# burst took 8, 21, 35 and over 59 s); in generations it stays at about 0.1-0.2 s per
# 500 records: 1.2 MB/s over a whole run here, below a real 2-shard stream's 2 MB/s and
# far below the 27 MB/s the handler logs.
# Knobs: E2E_BURST_INVOCATIONS (default 50, x KTE_E2E_SCALE: 15 under make asan),
# E2E_BURST_LINES (default 5000).
. "$(dirname "$0")/lib.sh"

E2E_STRICT=1
N=${E2E_BURST_INVOCATIONS:-$(scaled 50)}
LINES=${E2E_BURST_LINES:-5000}
KINESIS_MOCK_SHARD_LIMIT=1000 kinesis_start burst:2
proxy_start --spread-records 2500
t0=$(date +%s)
SIM_TIMEOUT=3600 sim_run burst burst default default --invocations "$N" --log-lines "$LINES" \
	--log-bytes 200-2000 --handler-ms 200 --interval-ms 100 --timeout-ms 60000
t1=$(date +%s)
assert_run_ok "$N"
assert_exited_in_time
assert_shutdown_account
dropped=$(lambda_dropped)
[ "$dropped" -eq 0 ] || fail "Lambda dropped $dropped records (the listener refused them for too long)"
[ "$(ext_lambda_dropped)" -eq 0 ] || fail "the extension reported $(ext_lambda_dropped) records dropped by Lambda"
log_has 'pressure: next held [0-9]+ times' || fail "the ring never went over its high-water mark: no burst?"
# Duplicates only from requests that failed after Kinesis wrote them (at-least-once).
check_stream burst default --max-duplicate-records $(($(ext_failed_requests) * 500))
t2=$(date +%s)
bytes=$(sj 'j.telemetry.bytes')
note "emitted $(cj 'j.emitted') records ($((bytes / 1048576)) MiB of telemetry) in $((t1 - t0)) s," \
	"read back and checked in $((t2 - t1)) s; all arrived"
note "post-runtime duration p50 $(overhead_pct 50) ms p95 $(overhead_pct 95) ms max" \
	"$(sj 'Math.round(j.overhead_ms.max)') ms; $(sed -nE 's/.*INFO (pressure: next held.*)/\1/p' "$T/$RUN.log")"
pass "$N x $LINES lines of 200-2000 bytes in 200 ms, 100 ms gaps, 2 shards, defaults: nothing lost"
