#!/usr/bin/env bash
# A local emulator without the Telemetry API answers the subscription with 202:
# the extension logs it and carries on; invocations are not held up waiting for a
# platform.runtimeDone that never comes, and shutdown is prompt.
. "$(dirname "$0")/lib.sh"

sim_run --invocations 4 --interval-ms 20 --telemetry-unsupported --env KTE_STREAM_NAME=s \
	--env AWS_REGION=us-east-1 --env KTE_KINESIS_ENDPOINT=http://127.0.0.1:9 --env KTE_FLUSH=end
[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
sj_assert 's.invocations.completed === 4 && s.errors.init.length === 0'
log_has 'telemetry API not supported here \(202' || fail "no log line for the 202"
# Nothing to wait for: no invocation waited for a runtimeDone until its deadline.
sj_assert 's.overhead_ms.p50 < 5 && s.overhead_ms.max < 500'
! log_has 'runtimeDone did not arrive' || fail "waited for a runtimeDone that cannot come"
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
sj_assert 's.shutdown.extensions[0].time_to_exit_ms < 1000'
pass "202 logged, lifecycle unaffected"
