#!/usr/bin/env bash
# SHUTDOWN right after Kinesis refused a few requests in a row (the dispatcher's
# circuit opened: flushes of invocations stop waiting for it), while Kinesis is in fact
# back: the final flush must keep retrying until the shutdown deadline instead of
# giving up at once, and nothing may be lost. (Found by test_e2e_faults: the
# controller stopped the dispatcher as soon as SHUTDOWN began with the circuit open.)
# Twice: with a short retry ceiling (100 ms), and with the default one after 3 s of
# failures, when the retry pending at SHUTDOWN is due seconds after the deadline: the
# dispatcher must bring it forward. (Found here: it kept the old backoff.)
E2E_STRICT=1
. "$(dirname "$0")/lib.sh"

kinesis_start s-retry-event:1 s-retry-ndjson:1
proxy_start
for combo in event:300:100 ndjson:3000:20000; do
	IFS=: read -r f handler retry_max <<<"$combo"
	# Kinesis throttles every request until the circuit opens; the sandbox is then frozen
	# (1.5 s before SHUTDOWN), and Kinesis comes back while it is.
	proxy_fault '{"reset":true,"throttleRate":1}'
	sim_start "$f" "s-retry-$f" "$f" continuous --invocations 1 --log-lines 50 --log-bytes 200-2000 \
		--handler-ms "$handler" --interval-ms 1500 --env KTE_RETRY_BASE_MS=20 --env "KTE_RETRY_MAX_MS=$retry_max" \
		${E2E_EXTRA_ENV:+--env "$E2E_EXTRA_ENV"}
	wait_for 30 log_has 'circuit open' || fail "the circuit did not open"
	wait_for 30 log_has 'invoke 1 .*frozen' || fail "invocation 1 did not end in a freeze"
	proxy_fault '{"throttleRate":0}'
	sim_wait 60
	assert_run_ok 1
	# The scenario: the circuit opened before SHUTDOWN and closed only after it.
	open_at=$(grep -n 'circuit open' "$T/$RUN.log" | head -n 1 | cut -d: -f1)
	shut_at=$(grep -n 'SHUTDOWN (' "$T/$RUN.log" | head -n 1 | cut -d: -f1)
	closed_at=$(grep -n 'circuit closed' "$T/$RUN.log" | head -n 1 | cut -d: -f1)
	[ -n "$open_at" ] && [ -n "$shut_at" ] && [ "$open_at" -lt "$shut_at" ] &&
		{ [ -z "$closed_at" ] || [ "$closed_at" -gt "$shut_at" ]; } ||
		fail "the circuit was not open at SHUTDOWN (the scenario did not happen)"
	proxy_stats
	check_stream "s-retry-$f" "$f"
	assert_shutdown_account
	note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids after $(jq_js "$T/$RUN.proxy.json" 'j.injected.throttle') throttled requests"
	curl -sf -X POST "$FAULT_PROXY_CONTROL/__stats/reset" >/dev/null
done
pass "shutdown with the circuit open but Kinesis back: retried until sent"
