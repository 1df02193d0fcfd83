#!/usr/bin/env bash
# A configuration error must not take the function down: one clear log line, the
# lifecycle goes on without shipping. With KTE_STRICT=1 it becomes init/error
# Extension.ConfigInvalid and init fails.
. "$(dirname "$0")/lib.sh"

# 1. No destination at all: invocations run, nothing forked, nothing subscribed.
sim_run --invocations 3 --log-lines 2 --interval-ms 20
[ "$SIM_RC" -eq 0 ] || fail "no destination: simulator exit $SIM_RC, want 0"
sj_assert 's.invocations.completed === 3'
sj_assert 's.errors.init.length === 0 && s.errors.exit.length === 0'
sj_assert 's.telemetry.subscriptions.length === 0'
sj_assert 's.memory.processes === 1'
sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
[ "$(log_count 'ERROR configuration error: no destination: set KTE_STREAM_NAME or KTE_STREAM_ARN; telemetry will NOT be shipped')" -eq 1 ] ||
	fail "no destination: expected exactly one clear configuration error line"
log_has 'ready in [0-9]+ us: NOT shipping' || fail "no destination: no 'NOT shipping' line"

# 2. A bad value next to a valid destination: named in the line, still not shipping.
sim_run --invocations 2 --env KTE_STREAM_NAME=s --env KTE_FLUSH=sometimes
[ "$SIM_RC" -eq 0 ] || fail "bad KTE_FLUSH: simulator exit $SIM_RC, want 0"
sj_assert 's.invocations.completed === 2 && s.errors.init.length === 0'
log_has 'configuration error: KTE_FLUSH="sometimes" is invalid: expected one of adaptive, end, periodic, continuous' ||
	fail "bad KTE_FLUSH: the log line does not name the variable and the allowed values"
sj_assert 's.telemetry.subscriptions.length === 0'

# 3. KTE_STRICT=1: init/error Extension.ConfigInvalid, init fails, the extension exits.
sim_run --invocations 2 --env KTE_STRICT=1 --env KTE_STREAM_NAME='bad name!'
[ "$SIM_RC" -eq 3 ] || fail "strict: simulator exit $SIM_RC, want 3 (init failed)"
sj_assert 's.errors.init.length === 1 && s.errors.init[0].type === "Extension.ConfigInvalid"'
sj_assert 'JSON.parse(s.errors.init[0].body).errorMessage.includes("KTE_STREAM_NAME")'
sj_assert 's.invocations.completed === 0'
log_has 'KTE_STRICT=1: failing init' || fail "strict: no log line saying init fails"

pass "lifecycle kept without shipping; strict mode fails init with Extension.ConfigInvalid"
