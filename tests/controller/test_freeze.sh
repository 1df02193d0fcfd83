#!/usr/bin/env bash
# Freeze and thaw between invocations under each flush policy: the sandbox is
# stopped (SIGSTOP) once every extension waits in next, and nothing is lost.
# `end` ships each invocation before calling next; the others call next at once.
. "$(dirname "$0")/lib.sh"

kinesis_start
N=6
for policy in end continuous periodic adaptive; do
	sim_run --invocations $N --log-lines 5 --interval-ms 150 --handler-ms 5 "${KINESIS_ENV[@]}" \
		--env KTE_FLUSH=$policy --env KTE_FLUSH_INTERVAL_MS=200 --id-prefix "$policy-" \
		--env KTE_BUFFER_TIMEOUT_MS=25 --timeout-ms 20000 --env KTE_FLUSH_BUDGET_MS=15000
	[ "$SIM_RC" -eq 0 ] || fail "$policy: simulator exit $SIM_RC"
	sj_assert "s.invocations.completed === $N"
	[ "$(log_count 'frozen')" -ge $N ] || fail "$policy: the simulator did not freeze the sandbox"
	sj_assert 's.shutdown.killed === false && s.shutdown.extensions[0].exit_status === 0'
	case $policy in
	end | adaptive)
		# Every invocation waited for its runtimeDone and a completed flush (the budget is
		# generous: kinesis-mock on a loaded machine can take a second per request).
		log_has "flush end: $N flushes, runtimeDone to next mean [0-9]+ us max [0-9]+ us, 0 over budget, 0 runtimeDone missed" ||
			fail "$policy: not every invocation was flushed at its end"
		sj_assert 's.overhead_ms.p50 > 0'
		;;
	*)
		! log_has 'flush end:' || fail "$policy: waited at the end of invocations"
		sj_assert 's.overhead_ms.p50 < 5'
		;;
	esac
	assert_all_ids_arrived
	echo "  $policy ok"
done
pass "end, continuous, periodic and adaptive across freezes"
