#!/usr/bin/env bash
# Bad input sent straight to the listener while the extension runs in the simulator:
# invalid JSON, a 20 MB body (with Content-Length, and chunked), an empty body, wrong
# method and path, binary garbage, a huge array of tiny events. Each gets its status
# code (400, 413, 404, 405; 200 for the tiny events, which are valid), the listener
# never dies (no restart), and the normal traffic around it loses nothing: every id
# arrives, and so does every tiny event.
. "$(dirname "$0")/lib.sh"

N=$(scaled 60 40)
TINY=20000
kinesis_start b-ndjson:1
sim_start bad b-ndjson ndjson continuous --invocations "$N" --log-lines 40 --log-bytes 200-2000 \
	--handler-ms 40 --interval-ms 100
wait_for 60 log_has "invoke 3 " || fail "the run did not reach invocation 3"
URL=http://127.0.0.1:$LISTENER_PORT

# post EXPECTED_STATUS WHAT [curl options...]: the sandbox may be frozen for a moment, so
# curl waits (at most 60 s) until the listener answers.
post() {
	local want=$1 what=$2 got
	shift 2
	got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$@") || true
	[ "$got" = "$want" ] || fail "$what: HTTP $got, want $want"
	note "$what: $got"
}
head -c $((20 * 1000 * 1000)) /dev/zero | tr '\0' 'a' >"$T/big.body"
head -c 65536 /dev/urandom >"$T/garbage.body"
node -e 'const n=+process.argv[1];const a=[];for(let i=0;i<n;i++)a.push(`{"type":"e2e.tiny","n":${i}}`);
	process.stdout.write("["+a.join(",")+"]");' "$TINY" >"$T/tiny.body"
post 400 "invalid JSON" -X POST "$URL/" -H 'Content-Type: application/json' --data-binary '[{"type":"x",]'
post 400 "not an array" -X POST "$URL/" --data-binary '{"type":"x"}'
post 413 "20 MB body" -X POST "$URL/" --data-binary "@$T/big.body"
post 413 "20 MB body, chunked" -X POST "$URL/" -H 'Transfer-Encoding: chunked' --data-binary "@$T/big.body"
post 400 "empty body" -X POST "$URL/" --data-binary ''
post 405 "GET" "$URL/"
post 405 "PUT" -X PUT "$URL/" --data-binary '[]'
post 404 "wrong path" -X POST "$URL/not/telemetry" --data-binary '[]'
post 400 "binary garbage" -X POST "$URL/" --data-binary "@$T/garbage.body"
post 200 "$TINY tiny events ($(wc -c <"$T/tiny.body") bytes)" -X POST "$URL/" --data-binary "@$T/tiny.body"
post 400 "truncated array" -X POST "$URL/" --data-binary '[{"type":"x"},{"ty'
# Normal traffic must follow the bad input: the run is not over yet.
done_inv=$(grep -oE 'invoke [0-9]+ ' "$T/$RUN.log" | tail -n 1 | grep -oE '[0-9]+')
[ "${done_inv:-0}" -lt "$N" ] || fail "the run ended during the bad input (make it longer)"
note "bad input sent during invocation ${done_inv:-0} of $N"
sim_wait 300
assert_run_ok "$N"
[ "$(log_count 'restarted as pid')" -eq 0 ] || fail "a child was restarted"
check_stream b-ndjson ndjson
[ "$(cj "j.types['e2e.tiny'] || 0")" -eq "$TINY" ] || fail "$(cj "j.types['e2e.tiny'] || 0") tiny events arrived, want $TINY"
assert_shutdown_account
note "$RUN: $(cj 'j.arrived')/$(cj 'j.emitted') ids and $TINY tiny events arrived"
pass "bad input answered, listener kept serving, nothing lost"
