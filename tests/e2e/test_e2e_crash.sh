#!/usr/bin/env bash
# Crashes under load: the listener and the dispatcher are SIGKILLed at random moments,
# three times each, in alternation, while invocations keep coming (120 of them: the
# run must outlast the six kills on a loaded machine). The controller restarts each
# (found among the children of the controller the simulator started, with comm
# kte-listener or kte-dispatcher; each kill waits, bounded, until the child it needs is
# alive: never a single look at the process list); Lambda resends the batches the dead listener had not answered; the
# new dispatcher resumes from the first record Kinesis had not acknowledged. Every id
# arrives; duplicates are bounded by what a crash can repeat: one PutRecords request
# (500 records) per dispatcher kill, one Telemetry API batch (1,000 events) per
# listener kill.
. "$(dirname "$0")/lib.sh"

N=$(scaled 120 100)
KILLS=3
seed=${E2E_SEED:-$RANDOM}
RANDOM=$seed
kinesis_start c-event:1 c-kpl:1
for combo in event:end kpl:continuous; do
	f=${combo%%:*} p=${combo#*:}
	sim_start "$f-$p" "c-$f" "$f" "$p" --invocations "$N" --log-lines 30 --log-bytes 200-2000 \
		--handler-ms 60 --interval-ms 100
	wait_for 60 log_has "invoke 2 " || fail "the run did not reach invocation 2"
	kills=0
	for ((k = 0; k < 2 * KILLS; k++)); do
		if ((k % 2)); then role=dispatcher; else role=listener; fi
		sleep "0.$((RANDOM % 9 + 1))"               # a random moment (this is the fault, not a wait)
		wait_child_pid "$role" 30
		pid=$CHILD_PID
		kill -0 "$SIM_PID" 2>/dev/null || fail "the run ended before kill $((k + 1)) of $((2 * KILLS))"
		[ -n "$pid" ] || fail "no $role process to kill (none alive as the controller's child within 30 s)"
		kill -9 "$pid"
		kills=$((kills + 1))
		wait_for 30 log_has "$role \\(pid $pid\\) killed by signal 9.*restarted as pid" ||
			fail "$role (pid $pid) was not restarted"
	done
	sim_wait 300
	assert_run_ok "$N"
	[ "$(log_count 'restarted as pid')" -eq "$kills" ] || fail "expected $kills restarts in the log"
	check_stream "c-$f" "$f" --max-duplicate-records $((KILLS * 500 + KILLS * 1000))
	assert_shutdown_account
	note "$RUN (seed $seed): $kills kills; $(cj 'j.arrived')/$(cj 'j.emitted') ids arrived," \
		"$(cj 'j.duplicates') duplicate events in $(cj 'j.duplicateRecords') records"
done
pass "listener and dispatcher SIGKILLed $KILLS times each under load, twice: nothing lost"
