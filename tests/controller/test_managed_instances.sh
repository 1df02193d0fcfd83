#!/usr/bin/env bash
# Lambda Managed Instances: registering for INVOKE is refused (403
# Extension.InvalidEventType); the extension registers for SHUTDOWN only, ships
# continuously while concurrent invocations interleave, and everything arrives.
. "$(dirname "$0")/lib.sh"

kinesis_start
N=12
sim_run --managed-instances --concurrency 3 --invocations $N --log-lines 5 --handler-ms 20 \
	--interval-ms 5 "${KINESIS_ENV[@]}"
[ "$SIM_RC" -eq 0 ] || fail "simulator exit $SIM_RC"
sj_assert "s.invocations.completed === $N"
sj_assert 's.errors.init.length === 0 && s.errors.exit.length === 0'
log_has 'INVOKE refused \(Extension.InvalidEventType\): Lambda Managed Instances; registering for SHUTDOWN only' ||
	fail "no log line for the Managed Instances path"
log_has 'ready in [0-9]+ us: shipping, flush continuous \(managed instances\)' || fail "not shipping continuously"
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
assert_all_ids_arrived
reports=$(kinesis_count_type platform.report)
[ "$reports" -ge $N ] || fail "$reports platform.report events in Kinesis, want $N"
pass "SHUTDOWN-only registration, continuous shipping, nothing lost"
