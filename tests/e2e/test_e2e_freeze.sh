#!/usr/bin/env bash
# Freeze: long SIGSTOP gaps between invocations (the simulator freezes the sandbox for
# --interval-ms), then more traffic. A SigV4 signature is valid for 5 minutes, too long
# to wait in CI; instead the test proves that what is sent after a thaw is signed
# after the thaw: Kinesis (the fault proxy) is taken down while the sandbox is frozen,
# so the next invocation's data fails to go out and waits in the dispatcher's retry;
# it comes back up during the following freeze; after that thaw the retried requests
# must carry a fresh X-Amz-Date (the proxy records each request's date against its
# arrival: a request signed before a freeze would be GAP ms old). Every id arrives,
# under continuous (sends while thawed, caught by freezes) and end (ships before next).
. "$(dirname "$0")/lib.sh"

GAP=${E2E_FREEZE_GAP_MS:-4500}
N=5
kinesis_start z-event:1 z-kpl:1
proxy_start
# The measurement itself: a request dated 10 minutes ago shows a 10-minute skew.
old=$(date -u -d '-10 min' +%Y%m%dT%H%M%SZ)
curl -s -o /dev/null -X POST "$FAULT_PROXY_ENDPOINT/" -H 'X-Amz-Target: Kinesis_20131202.PutRecords' \
	-H 'Content-Type: application/x-amz-json-1.1' -H "X-Amz-Date: $old" \
	--data-binary '{"StreamName":"z-event","Records":[]}' || true
curl -sf "$FAULT_PROXY_CONTROL/__stats" >"$T/selfcheck.json"
[ "$(jq_js "$T/selfcheck.json" 'j.amzDate.maxSkewMs >= 599000')" = true ] ||
	fail "the proxy does not measure X-Amz-Date skew: $(jq_js "$T/selfcheck.json" 'j.amzDate')"
for combo in event:continuous kpl:end; do
	f=${combo%%:*} p=${combo#*:}
	curl -sf -X POST "$FAULT_PROXY_CONTROL/__stats/reset" >/dev/null
	sim_start "$f-$p" "z-$f" "$f" "$p" --invocations "$N" --log-lines 50 --log-bytes 200-2000 \
		--handler-ms 50 --interval-ms "$GAP"
	wait_for 60 log_has "invoke 2 .*frozen" || fail "invocation 2 did not end in a freeze"
	proxy_fault '{"down":true}'                  # while frozen
	wait_for 60 log_has "invoke 3 .*frozen" || fail "invocation 3 did not end in a freeze"
	# The sandbox is frozen again with invocation 3's data undelivered.
	proxy_stats
	before=$(jq_js "$T/$RUN.proxy.json" 'j.amzDate.checked')
	proxy_fault '{"down":false}'
	sim_wait 120
	assert_run_ok "$N"
	proxy_stats
	st=$T/$RUN.proxy.json
	[ "$(jq_js "$st" "j.amzDate.checked > $before && j.amzDate.missing === 0")" = true ] ||
		fail "no signed request after the thaw: $(jq_js "$st" 'j.amzDate')"
	skew=$(jq_js "$st" 'j.amzDate.maxSkewMs')
	[ "$(jq_js "$st" "Math.abs(j.amzDate.maxSkewMs) < $GAP - 1500")" = true ] ||
		fail "a request was sent with an X-Amz-Date $skew ms old (signed before a ${GAP} ms freeze?)"
	[ "$(log_count 'frozen')" -ge "$N" ] || fail "the simulator did not freeze the sandbox"
	# A request in flight when the proxy went down lost its reply (counted in ackDropped).
	check_stream "z-$f" "$f" --max-duplicate-records "$(jq_js "$st" 'j.records.ackDropped')"
	assert_shutdown_account
	note "$RUN: ${GAP} ms freezes, Kinesis down across one; $(cj 'j.arrived')/$(cj 'j.emitted') ids;" \
		"$(jq_js "$st" 'j.amzDate.checked') signed requests, largest X-Amz-Date skew $skew ms"
done
pass "freezes of $GAP ms with Kinesis down across one: re-signed after the thaw, nothing lost"
