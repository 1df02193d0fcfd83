#!/bin/sh
# Test extension for lambda-sim: sends wrong requests to each API and records "<case> <status> <body>"
# in $VAL_OUT/results, then behaves (register, next loop, exit at SHUTDOWN).
API="http://$AWS_LAMBDA_RUNTIME_API"
R="$VAL_OUT/results"
E=/2020-01-01/extension
req() {
	name=$1; shift
	code=$(curl -s --noproxy '*' -o "$VAL_OUT/body" -w '%{http_code}' "$@")
	echo "$name $code $(cat "$VAL_OUT/body")" >>"$R"
}
N="Lambda-Extension-Name: validator"
req reg_no_name        -X POST -d '{"events":["INVOKE"]}' "$API$E/register"
req reg_bad_json       -X POST -H "$N" -d '{bad' "$API$E/register"
req reg_events_string  -X POST -H "$N" -d '{"events":"INVOKE"}' "$API$E/register"
req reg_unknown_event  -X POST -H "$N" -d '{"events":["INVOKE","FOO"]}' "$API$E/register"
req reg_config_keys    -X POST -H "$N" -d '{"events":["INVOKE"],"configurationKeys":["a"]}' "$API$E/register"
req reg_wrong_name_shutdown -X POST -H "Lambda-Extension-Name: not-my-file" -d '{"events":["INVOKE","SHUTDOWN"]}' "$API$E/register"
req reg_wrong_method   -X GET -H "$N" "$API$E/register"
req next_no_id         "$API$E/event/next"
req next_bad_id        -H "Lambda-Extension-Identifier: abc" "$API$E/event/next"
req next_unknown_id    -H "Lambda-Extension-Identifier: 6f1f7f62-3a4c-4b7e-9d5e-0123456789ab" "$API$E/event/next"
req sub_no_id          -X PUT -d '{}' "$API/2022-07-01/telemetry"
req initerr_no_id      -X POST -H "Lambda-Extension-Function-Error-Type: A.B" "$API$E/init/error"
# a name that is no file of extensions/ registers as an internal extension when it asks for no SHUTDOWN
code=$(curl -s --noproxy '*' -D "$VAL_OUT/ghost.h" -o /dev/null -w '%{http_code}' -X POST \
	-H "Lambda-Extension-Name: ghost" -d '{"events":[]}' "$API$E/register")
echo "reg_internal $code" >>"$R"
GID=$(tr -d '\r' <"$VAL_OUT/ghost.h" | sed -n 's/^Lambda-Extension-Identifier: //Ip')
curl -s --noproxy '*' -o /dev/null -H "Lambda-Extension-Identifier: $GID" "$API$E/event/next" &
GHOST=$!

code=$(curl -s --noproxy '*' -D "$VAL_OUT/reg.h" -o "$VAL_OUT/body" -w '%{http_code}' -X POST -H "$N" \
	-H "Lambda-Extension-Accept-Feature: accountId" -d '{"events":["INVOKE","SHUTDOWN"]}' "$API$E/register")
echo "reg_ok $code $(cat "$VAL_OUT/body")" >>"$R"
ID=$(tr -d '\r' <"$VAL_OUT/reg.h" | sed -n 's/^Lambda-Extension-Identifier: //Ip')
I="Lambda-Extension-Identifier: $ID"
req reg_twice          -X POST -H "$N" -d '{"events":["INVOKE"]}' "$API$E/register"
S=/2022-07-01/telemetry
D='"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4243"}'
T='"types":["platform"]'
req sub_bad_json       -X PUT -H "$I" -d '{bad' "$API$S"
req sub_no_schema      -X PUT -H "$I" -d "{$T,$D}" "$API$S"
req sub_bad_schema     -X PUT -H "$I" -d "{\"schemaVersion\":\"2021-01-01\",$T,$D}" "$API$S"
req sub_bad_type       -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",\"types\":[\"platform\",\"foo\"],$D}" "$API$S"
req sub_empty_types    -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",\"types\":[],$D}" "$API$S"
req sub_items_low      -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"buffering\":{\"maxItems\":999},$D}" "$API$S"
req sub_items_high     -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"buffering\":{\"maxItems\":10001},$D}" "$API$S"
req sub_bytes_low      -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"buffering\":{\"maxBytes\":262143},$D}" "$API$S"
req sub_bytes_high     -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"buffering\":{\"maxBytes\":1048577},$D}" "$API$S"
req sub_timeout_low    -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"buffering\":{\"timeoutMs\":24},$D}" "$API$S"
req sub_timeout_high   -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"buffering\":{\"timeoutMs\":30001},$D}" "$API$S"
req sub_items_string   -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"buffering\":{\"maxItems\":\"1000\"},$D}" "$API$S"
req sub_no_destination -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T}" "$API$S"
req sub_bad_protocol   -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"destination\":{\"protocol\":\"UDP\",\"URI\":\"http://sandbox.localdomain:4243\"}}" "$API$S"
req sub_https          -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"destination\":{\"protocol\":\"HTTP\",\"URI\":\"https://sandbox.localdomain:4243\"}}" "$API$S"
req sub_other_host     -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"destination\":{\"protocol\":\"HTTP\",\"URI\":\"http://example.com:4243\"}}" "$API$S"
req sub_port_9001      -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"destination\":{\"protocol\":\"HTTP\",\"URI\":\"http://sandbox.localdomain:9001\"}}" "$API$S"
req sub_no_port        -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,\"destination\":{\"protocol\":\"HTTP\",\"URI\":\"http://sandbox.localdomain\"}}" "$API$S"
req sub_ok_127         -X PUT -H "$I" -d "{\"schemaVersion\":\"2025-01-29\",$T,\"buffering\":{\"maxItems\":1000,\"maxBytes\":262144,\"timeoutMs\":25},\"destination\":{\"protocol\":\"HTTP\",\"URI\":\"http://127.0.0.1:4243/x\"}}" "$API$S"
req initerr_no_type    -X POST -H "$I" "$API$E/init/error"
# init ends with this next; the first INVOKE follows
curl -s --noproxy '*' -o "$VAL_OUT/ev" -H "$I" "$API$E/event/next"
req sub_after_init     -X PUT -H "$I" -d "{\"schemaVersion\":\"2022-12-13\",$T,$D}" "$API$S"
req initerr_after_init -X POST -H "$I" -H "Lambda-Extension-Function-Error-Type: A.B" "$API$E/init/error"
while :; do
	curl -s --noproxy '*' -o "$VAL_OUT/ev" -H "$I" "$API$E/event/next" || exit 1
	if grep -q SHUTDOWN "$VAL_OUT/ev"; then
		req exiterr_ok -X POST -H "$I" -H "Lambda-Extension-Function-Error-Type: Extension.TestExit" \
			-d '{"errorMessage":"bye","errorType":"Extension.TestExit","stackTrace":[]}' "$API$E/exit/error"
		req next_after_exiterr -H "$I" "$API$E/event/next"
		echo done >>"$R"
		kill "$GHOST" 2>/dev/null
		exit 0
	fi
done
