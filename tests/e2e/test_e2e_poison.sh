#!/usr/bin/env bash
# A record Kinesis refuses: the fault proxy answers 400 InvalidArgumentException to every
# PutRecords that holds one poisoned function log line (event format: one line, one
# record). The dispatcher must split the requests until that record stands alone, give
# up on it only, deliver everything else, and report the one event in extension.kte.dropped.
E2E_STRICT=1
. "$(dirname "$0")/lib.sh"

kinesis_start s-poison:1
proxy_start
RUN=poison
poisoned="poison-1-7"
proxy_fault "{\"reset\":true,\"rejectMarker\":\"kte-id=$poisoned \"}"
# The flush of each invocation may wait for the bisection (a dozen requests to kinesis-mock).
sim_start poison s-poison event end --invocations 3 --log-lines 40 --log-bytes 300 --env KTE_FLUSH_BUDGET_MS=8000 \
	${E2E_EXTRA_ENV:+--env "$E2E_EXTRA_ENV"}
sim_wait 120
assert_run_ok 3
proxy_stats
[ "$(jq_js "$T/$RUN.proxy.json" 'j.injected.invalid')" -ge 1 ] || fail "the proxy rejected no request"
grep -q "$poisoned" "$T/$RUN.ids" || fail "the simulator did not emit $poisoned"
check_stream s-poison event --expect-missing 1
# The one missing is the poisoned line: no record read back carries it.
node -e 'const fs=require("fs"); const want="kte-id="+process.argv[2]+" ";
	const hit=fs.readFileSync(process.argv[1],"utf8").split("\n").filter(Boolean)
		.some((l)=>Buffer.from(JSON.parse(l).data,"base64").includes(want));
	process.exit(hit?1:0);' "$T/$RUN.records.jsonl" "$poisoned" || fail "$poisoned arrived: another record was given up"
[ "$(cj 'j.dropped.eventsRejected')" = 1 ] ||
	fail "extension.kte.dropped reports $(cj 'j.dropped.eventsRejected') rejected events, want 1"
log_has 'dropped 1 event\(s\).*a record Kinesis rejects' || fail "no log line for the rejected record"
! log_has 'everything received was delivered' || fail "the log claims everything was delivered"
note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids arrived, $(jq_js "$T/$RUN.proxy.json" 'j.injected.invalid') requests rejected"
pass "a poisoned record: only it is given up, counted in extension.kte.dropped"
