#include "reply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

void
reply_bare_code(const char *in, size_t in_len, char *out, size_t outlen)
{
	const char *p = in, *end = in + in_len, *hash, *colon;
	size_t n;

	hash = memchr(p, '#', in_len);
	if (hash != NULL)
		p = hash + 1;
	colon = memchr(p, ':', (size_t)(end - p));
	if (colon != NULL)
		end = colon;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		end--;
	n = (size_t)(end - p);
	if (outlen == 0)
		return;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

static bool
code_in(const char *code, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcasecmp(code, *list) == 0)
			return true;
	return false;
}

enum reply_outcome
reply_classify(const char *code, long http_status)
{
	static const char *const throttling[] = { "ProvisionedThroughputExceededException",
	    "ThrottlingException", "Throttling", "ThrottledException", "LimitExceededException",
	    "KMSThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
	    "SlowDown", NULL };
	static const char *const transient[] = { "InternalFailure", "InternalFailureException",
	    "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
	    "RequestTimeout", "RequestTimeoutException", "RequestExpired",
	    "PriorRequestNotComplete", NULL };
	static const char *const expired[] = { "ExpiredTokenException", "ExpiredToken",
	    "TokenRefreshRequired", NULL };
	static const char *const invalid[] = { "InvalidArgumentException", "ValidationException",
	    "SerializationException", "InvalidParameterValueException", "RequestEntityTooLarge",
	    "MissingParameter", "InvalidParameterCombination", NULL };

	if (code != NULL && code[0] != '\0') {
		if (code_in(code, throttling))
			return REPLY_THROTTLED;
		if (code_in(code, transient))
			return REPLY_RETRY;
		if (code_in(code, expired))
			return REPLY_EXPIRED;
		if (code_in(code, invalid))
			return REPLY_INVALID;
	}
	if (http_status == 429)
		return REPLY_THROTTLED;
	if (http_status == 413)
		return REPLY_INVALID;
	if (http_status >= 500 || http_status == 408)
		return REPLY_RETRY;
	/* Access, not found, KMS state, signature problems, and anything unknown: a human must act. */
	return REPLY_CONFIG;
}

const char *
reply_outcome_name(enum reply_outcome o)
{
	static const char *const names[] = { "ok", "partial", "retry", "throttled", "expired",
	    "config", "invalid" };

	return (unsigned)o < sizeof(names) / sizeof(names[0]) ? names[o] : "?";
}

static json_object *
parse_json(const char *body, size_t len)
{
	json_tokener *tok;
	json_object *obj;

	if (body == NULL || len == 0 || len > (size_t)INT32_MAX)
		return NULL;
	if ((tok = json_tokener_new()) == NULL)
		return NULL;
	obj = json_tokener_parse_ex(tok, body, (int)len);
	if (obj != NULL && json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

static const char *
member_string(json_object *o, const char *name)
{
	json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/*
 * Fast path for the common reply: "FailedRecordCount":0 found outside any string
 * (a quote inside a string value is escaped, so the unescaped pattern cannot occur
 * there). Then every record was accepted and the Records array need not be parsed.
 */
static bool
all_accepted(const char *body, size_t len)
{
	static const char pat[] = "\"FailedRecordCount\":";
	const char *p = memmem(body, len, pat, sizeof(pat) - 1), *end = body + len;

	const char *last = end;

	/* A complete object only: a cut reply must not pass for a success. */
	while (last > body && (last[-1] == ' ' || last[-1] == '\n' || last[-1] == '\r'))
		last--;
	if (p == NULL || last == body || last[-1] != '}' || memmem(body, len, "\"Records\":", 10) == NULL)
		return false;
	p += sizeof(pat) - 1;
	while (p < end && *p == ' ')
		p++;
	return p + 1 < end && p[0] == '0' && (p[1] == ',' || p[1] == '}' || p[1] == ' ');
}

/*
 * Copies the first line of a message from Kinesis (at most n bytes): a log line is
 * one line, and what AWS writes after a line break of a signature error is the
 * canonical request it expected, which holds the x-amz-security-token value.
 */
static void
message_line(struct reply_result *res, const char *msg, size_t n)
{
	size_t len = 0;

	while (len < n && msg[len] != '\0' && msg[len] != '\n' && msg[len] != '\r')
		len++;
	snprintf(res->message, sizeof(res->message), "%.*s", (int)len, msg);
}

static void
parse_success(const char *body, size_t len, unsigned n, uint8_t *status, struct reply_result *res)
{
	json_object *root, *recs, *rec;
	size_t count;
	unsigned failed = 0;
	const char *code, *msg;
	bool code_thr = false;

	if (all_accepted(body, len) && n > 0) {
		memset(status, 0, n);
		res->outcome = REPLY_OK;
		return;
	}
	root = parse_json(body, len);
	if (root == NULL || !json_object_object_get_ex(root, "Records", &recs) ||
	    !json_object_is_type(recs, json_type_array) ||
	    (count = json_object_array_length(recs)) != n) {
		res->outcome = REPLY_RETRY;
		snprintf(res->message, sizeof(res->message), "malformed PutRecords reply (%zu bytes)", len);
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		bool thr;

		rec = json_object_array_get_idx(recs, i);
		code = member_string(rec, "ErrorCode");
		status[i] = code != NULL ? 1 : 0;
		if (code == NULL)
			continue;
		failed++;
		thr = reply_classify(code, 400) == REPLY_THROTTLED;
		res->throttled += thr;
		/* Report the most telling code: the first one that is not throttling. */
		if (res->code[0] == '\0' || (!thr && code_thr)) {
			msg = member_string(rec, "ErrorMessage");
			snprintf(res->code, sizeof(res->code), "%s", code);
			message_line(res, msg != NULL ? msg : "", SIZE_MAX);
			code_thr = thr;
		}
	}
	res->failed = failed;
	res->outcome = failed == 0 ? REPLY_OK : REPLY_PARTIAL;
out:
	if (root != NULL)
		json_object_put(root);
}

static void
parse_error(const char *error_type, const char *body, size_t len, struct reply_result *res)
{
	json_object *root = parse_json(body, len);
	const char *type = member_string(root, "__type"), *msg;

	if (error_type != NULL && error_type[0] != '\0')
		reply_bare_code(error_type, strlen(error_type), res->code, sizeof(res->code));
	else if (type != NULL)
		reply_bare_code(type, strlen(type), res->code, sizeof(res->code));
	msg = member_string(root, "message");
	if (msg == NULL)
		msg = member_string(root, "Message");
	if (msg != NULL)
		message_line(res, msg, SIZE_MAX);
	else if (root == NULL && body != NULL && len > 0)
		message_line(res, body, len < 200 ? len : 200);
	if (root != NULL)
		json_object_put(root);
	res->outcome = reply_classify(res->code, res->http_status);
	/*
	 * A request signed more than 5 minutes before it arrived (held by a long freeze, or
	 * a clock that stepped): the keys are fine, the retry is signed anew.
	 */
	if (res->outcome == REPLY_CONFIG && strcasecmp(res->code, "InvalidSignatureException") == 0 &&
	    strncasecmp(res->message, "Signature expired", 17) == 0)
		res->outcome = REPLY_RETRY;
}

void
reply_parse(long http_status, int transport_err, const char *transport_msg, const char *error_type,
    const char *body, size_t len, unsigned n, uint8_t *status, struct reply_result *res)
{
	memset(res, 0, sizeof(*res));
	res->http_status = http_status;
	if (transport_err != 0 || http_status == 0) {
		/* An untrusted certificate needs a human (KTE_CA_BUNDLE); anything else may pass. */
		res->outcome = transport_err == -EPROTO ? REPLY_CONFIG : REPLY_RETRY;
		snprintf(res->code, sizeof(res->code), "%s", transport_err == -ETIMEDOUT ? "Timeout" :
		    transport_err == -EPROTO ? "TLSVerificationFailed" : "ConnectionError");
		snprintf(res->message, sizeof(res->message), "%s",
		    transport_msg != NULL ? transport_msg : strerror(-transport_err));
		return;
	}
	if (http_status == 200) {
		parse_success(body, len, n, status, res);
		return;
	}
	parse_error(error_type, body, len, res);
}
