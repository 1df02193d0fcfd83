#!/usr/bin/env bash
# lambda-sim: each API returns AWS's validation errors for wrong requests.
source "$(dirname "$0")/lib.sh"
echo "lambda-sim API validation (work dir $T)"
L=$T/layer; O=$T/out; mkdir -p "$L/extensions" "$O"
cp "$SRC_DIR/testext/validator.sh" "$L/extensions/validator"; chmod +x "$L/extensions/validator"
"$KTE_SIM" --layer "$L" --invocations 2 --env VAL_OUT="$O" --summary "$T/summary.json" --quiet; RC=$?
check "simulator exits 0 (rc=$RC)" test "$RC" -eq 0
check "validator ran to the end" grep -qx done "$O/results"
expect() { # expect CASE STATUS [ERRORTYPE]
	local line; line=$(grep "^$1 " "$O/results")
	if [ -z "$line" ]; then fail "$1: no result"; return; fi
	if [ "$(awk '{print $2}' <<<"$line")" != "$2" ]; then fail "$1: expected $2, got: $line"; return; fi
	if [ $# -ge 3 ] && ! grep -qF "\"errorType\":\"$3\"" <<<"$line"; then fail "$1: expected $3, got: $line"; return; fi
	ok "$1 -> $2 ${3:-}"
}
expect reg_no_name 403 Extension.InvalidExtensionName
expect reg_bad_json 400 InvalidRequestFormat
expect reg_events_string 400 InvalidRequestFormat
expect reg_unknown_event 403 Extension.InvalidEventType
expect reg_config_keys 403 InvalidRequestFormat
expect reg_wrong_name_shutdown 403 Extension.InvalidEventType
expect reg_wrong_method 405
expect next_no_id 403 Extension.MissingExtensionIdentifier
expect next_bad_id 403 Extension.InvalidExtensionIdentifier
expect next_unknown_id 403 Extension.UnknownExtensionIdentifier
expect sub_no_id 403 Extension.MissingExtensionIdentifier
expect initerr_no_id 403 Extension.MissingExtensionIdentifier
expect reg_internal 200
expect reg_ok 200
check "register reply has functionName, functionVersion, handler, accountId" \
	grep -q '^reg_ok 200 {"functionName":"[^"]*","functionVersion":"$LATEST","handler":"[^"]*","accountId":"[0-9]\{12\}"}' "$O/results"
expect reg_twice 403 Extension.InvalidExtensionState
for c in sub_bad_json sub_no_schema sub_bad_schema sub_bad_type sub_empty_types sub_items_low sub_items_high \
         sub_bytes_low sub_bytes_high sub_timeout_low sub_timeout_high sub_items_string sub_no_destination \
         sub_bad_protocol sub_https sub_other_host sub_port_9001 sub_no_port; do
	expect "$c" 400 ValidationError
done
check "sub_ok_127 -> 200 \"OK\"" grep -q '^sub_ok_127 200 "OK"$' "$O/results"
expect initerr_no_type 403 Extension.MissingHeader
expect sub_after_init 403 Telemetry.SubscriptionClosed
expect initerr_after_init 403 Extension.InvalidExtensionState
expect exiterr_ok 202
expect next_after_exiterr 403 Extension.InvalidExtensionState
check "summary lists the internal extension" test "$(jv "$T/summary.json" 's.cold_start.extensions.some(e => e.name === "ghost" && e.internal)')" = true
check "summary reports the exit error" test "$(jv "$T/summary.json" 's.errors.exit[0].type')" = Extension.TestExit
finish
