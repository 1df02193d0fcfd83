/*
 * Reply parsing and retry decisions against scripted Kinesis replies, the backoff
 * formula and the circuit breaker.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dispatcher/backoff.h"
#include "dispatcher/reply.h"

static struct reply_result
parse(long status, const char *errtype, const char *body, unsigned n, uint8_t *st)
{
	struct reply_result r;

	reply_parse(status, 0, NULL, errtype, body, body ? strlen(body) : 0, n, st, &r);
	return r;
}

START_TEST(test_all_accepted)
{
	uint8_t st[3] = { 9, 9, 9 };
	struct reply_result r;

	r = parse(200, NULL, "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\","
	    "\"ShardId\":\"shardId-000000000000\"},{\"SequenceNumber\":\"2\",\"ShardId\":\"s\"},"
	    "{\"SequenceNumber\":\"3\",\"ShardId\":\"s\"}]}", 3, st);
	ck_assert_int_eq(r.outcome, REPLY_OK);
	ck_assert(st[0] == 0 && st[1] == 0 && st[2] == 0);
	/* Field order and spacing of real replies vary. */
	memset(st, 9, 3);
	r = parse(200, NULL, "{\"EncryptionType\":\"KMS\",\"Records\":[{\"SequenceNumber\":\"1\"},"
	    "{\"SequenceNumber\":\"2\"},{\"SequenceNumber\":\"3\"}], \"FailedRecordCount\": 0}", 3, st);
	ck_assert_int_eq(r.outcome, REPLY_OK);
	ck_assert(st[0] == 0 && st[1] == 0 && st[2] == 0);
}
END_TEST

START_TEST(test_partial_failure)
{
	uint8_t st[4];
	struct reply_result r;

	r = parse(200, NULL, "{\"FailedRecordCount\":2,\"Records\":[{\"SequenceNumber\":\"1\"},"
	    "{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"Rate exceeded\"},"
	    "{\"SequenceNumber\":\"3\"},{\"ErrorCode\":\"InternalFailure\",\"ErrorMessage\":\"oops\"}]}", 4, st);
	ck_assert_int_eq(r.outcome, REPLY_PARTIAL);
	ck_assert_uint_eq(r.failed, 2);
	ck_assert_uint_eq(r.throttled, 1);
	ck_assert(st[0] == 0 && st[1] == 1 && st[2] == 0 && st[3] == 1);
	ck_assert_str_eq(r.code, "InternalFailure");     /* the more telling code */
	ck_assert_str_eq(r.message, "oops");
	/* An ErrorMessage quoting the fast-path pattern does not fool it. */
	r = parse(200, NULL, "{\"Records\":[{\"ErrorCode\":\"InternalFailure\",\"ErrorMessage\":"
	    "\"\\\"FailedRecordCount\\\":0,\"}],\"FailedRecordCount\":1}", 1, st);
	ck_assert_int_eq(r.outcome, REPLY_PARTIAL);
	ck_assert_int_eq(st[0], 1);
}
END_TEST

START_TEST(test_malformed_success)
{
	uint8_t st[2];
	const char *bad[] = { "", "not json", "{\"FailedRecordCount\":1}", "{\"Records\":{}}",
	    "{\"Records\":[{}]}", "{\"Records\":[{},{},{}]}", "{\"FailedRecordCount\":0,", NULL };

	for (int i = 0; bad[i] != NULL; i++) {
		struct reply_result r = parse(200, NULL, bad[i], 2, st);

		ck_assert_msg(r.outcome == REPLY_RETRY, "body %s: %s", bad[i], reply_outcome_name(r.outcome));
	}
}
END_TEST

START_TEST(test_error_classes)
{
	static const struct {
		long status;
		const char *header, *body;
		enum reply_outcome want;
		const char *code;
	} cases[] = {
		{ 400, NULL, "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream s not found\"}",
		  REPLY_CONFIG, "ResourceNotFoundException" },
		{ 400, NULL, "{\"__type\":\"com.amazonaws.kinesis#AccessDeniedException\",\"Message\":\"no\"}",
		  REPLY_CONFIG, "AccessDeniedException" },
		{ 403, "UnrecognizedClientException:http://internal.amazon.com/", "{}", REPLY_CONFIG,
		  "UnrecognizedClientException" },
		{ 400, NULL, "{\"__type\":\"KMSDisabledException\"}", REPLY_CONFIG, "KMSDisabledException" },
		{ 400, NULL, "{\"__type\":\"InvalidArgumentException\",\"message\":\"too big\"}", REPLY_INVALID,
		  "InvalidArgumentException" },
		{ 400, NULL, "{\"__type\":\"ValidationException\"}", REPLY_INVALID, "ValidationException" },
		{ 413, NULL, "Request Entity Too Large", REPLY_INVALID, "" },
		{ 400, NULL, "{\"__type\":\"ExpiredTokenException\",\"message\":\"expired\"}", REPLY_EXPIRED,
		  "ExpiredTokenException" },
		{ 400, NULL, "{\"__type\":\"ProvisionedThroughputExceededException\"}", REPLY_THROTTLED,
		  "ProvisionedThroughputExceededException" },
		{ 400, "ThrottlingException", "", REPLY_THROTTLED, "ThrottlingException" },
		{ 400, NULL, "{\"__type\":\"LimitExceededException\"}", REPLY_THROTTLED, "LimitExceededException" },
		{ 429, NULL, "", REPLY_THROTTLED, "" },
		{ 500, NULL, "{\"__type\":\"InternalFailure\"}", REPLY_RETRY, "InternalFailure" },
		{ 502, NULL, "<html>Bad Gateway</html>", REPLY_RETRY, "" },
		{ 503, NULL, "{\"__type\":\"ServiceUnavailable\"}", REPLY_RETRY, "ServiceUnavailable" },
		{ 504, NULL, "", REPLY_RETRY, "" },
		{ 400, NULL, "{\"__type\":\"RequestExpired\"}", REPLY_RETRY, "RequestExpired" },
		{ 400, NULL, "{\"__type\":\"InvalidSignatureException\",\"message\":\"Signature expired: "
		  "20261204T100000Z is now earlier than 20261204T100500Z (20261204T101000Z - 5 min.)\"}",
		  REPLY_RETRY, "InvalidSignatureException" },
		{ 400, NULL, "{\"__type\":\"InvalidSignatureException\",\"message\":\"The request signature "
		  "we calculated does not match\"}", REPLY_CONFIG, "InvalidSignatureException" },
		{ 400, NULL, "{\"__type\":\"SomethingNew\"}", REPLY_CONFIG, "SomethingNew" },
		{ 404, NULL, "", REPLY_CONFIG, "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct reply_result r = parse(cases[i].status, cases[i].header, cases[i].body, 1, NULL);

		ck_assert_msg(r.outcome == cases[i].want, "case %zu: %s", i, reply_outcome_name(r.outcome));
		ck_assert_str_eq(r.code, cases[i].code);
		ck_assert_int_eq(r.http_status, cases[i].status);
	}
	struct reply_result r = parse(400, NULL,
	    "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream s not found\"}", 1, NULL);
	ck_assert_str_eq(r.message, "Stream s not found");
}
END_TEST

START_TEST(test_transport_errors)
{
	struct reply_result r;

	reply_parse(0, -ETIMEDOUT, "Operation timed out", NULL, NULL, 0, 1, NULL, &r);
	ck_assert_int_eq(r.outcome, REPLY_RETRY);
	ck_assert_str_eq(r.code, "Timeout");
	ck_assert_str_eq(r.message, "Operation timed out");
	reply_parse(0, -ECONNREFUSED, NULL, NULL, NULL, 0, 1, NULL, &r);
	ck_assert_int_eq(r.outcome, REPLY_RETRY);
	ck_assert_str_eq(r.code, "ConnectionError");
	reply_parse(0, -EPROTO, "SSL certificate problem: self-signed certificate", NULL, NULL, 0, 1, NULL, &r);
	ck_assert_int_eq(r.outcome, REPLY_CONFIG);
	ck_assert_str_eq(r.code, "TLSVerificationFailed");
}
END_TEST

/*
 * AWS answers a bad signature with the canonical request it expected, after a blank
 * line: it holds the x-amz-security-token value. The message kept for the log must be
 * one line, without it (the same for per-record messages and non-JSON bodies).
 */
START_TEST(test_message_one_line_without_canonical_request)
{
	static const char body[] = "{\"__type\":\"InvalidSignatureException\",\"message\":\"Signature "
	    "mismatch.\\n\\nThe Canonical String for this request should have been\\n'POST\\n/\\n\\n"
	    "x-amz-security-token:SECRETTOKEN\\n'\"}";
	uint8_t st[2] = { 9, 9 };
	struct reply_result r;

	r = parse(400, NULL, body, 1, st);
	ck_assert_int_eq(r.outcome, REPLY_CONFIG);
	ck_assert_str_eq(r.code, "InvalidSignatureException");
	ck_assert_str_eq(r.message, "Signature mismatch.");
	r = parse(200, NULL, "{\"FailedRecordCount\":1,\"Records\":[{\"SequenceNumber\":\"1\"},"
	    "{\"ErrorCode\":\"InternalFailure\",\"ErrorMessage\":\"bad\\r\\ntoken SECRETTOKEN\"}]}", 2, st);
	ck_assert_int_eq(r.outcome, REPLY_PARTIAL);
	ck_assert_str_eq(r.message, "bad");
	r = parse(403, NULL, "<Error>\n<Message>x</Message>\nSECRETTOKEN</Error>", 1, st);
	ck_assert_str_eq(r.message, "<Error>");
}
END_TEST

START_TEST(test_bare_code)
{
	char out[64];

	reply_bare_code("aws.protocol#Code:http://x", 26, out, sizeof(out));
	ck_assert_str_eq(out, "Code");
	reply_bare_code(" Plain \r\n", 9, out, sizeof(out));
	ck_assert_str_eq(out, "Plain");
	reply_bare_code("VeryLongCodeName", 16, out, 5);
	ck_assert_str_eq(out, "Very");
}
END_TEST

START_TEST(test_backoff_formula)
{
	/* rand * min(base * 2^(n-1), cap) */
	ck_assert_uint_eq(backoff_delay_ms(0, 50, 20000, 0.9), 0);
	ck_assert_uint_eq(backoff_delay_ms(1, 50, 20000, 0.5), 25);
	ck_assert_uint_eq(backoff_delay_ms(2, 50, 20000, 0.5), 50);
	ck_assert_uint_eq(backoff_delay_ms(5, 50, 20000, 0.5), 400);
	ck_assert_uint_eq(backoff_delay_ms(10, 50, 20000, 0.5), 10000);
	ck_assert_uint_eq(backoff_delay_ms(11, 50, 20000, 0.5), 10000);      /* capped at 20 s */
	ck_assert_uint_eq(backoff_delay_ms(1000, 50, 20000, 0.5), 10000);
	ck_assert_uint_eq(backoff_delay_ms(3, 50, 20000, 0.0), 0);
	ck_assert_uint_le(backoff_delay_ms(3, 50, 20000, 1.0), 200);
	ck_assert_uint_ge(backoff_delay_ms(3, 50, 20000, 0.999), 199);
}
END_TEST

START_TEST(test_jitter_spreads)
{
	struct backoff_rng rng;
	double sum = 0, lo = 1, hi = 0;

	backoff_rng_init(&rng);
	for (int i = 0; i < 10000; i++) {
		double v = backoff_rand01(&rng);

		ck_assert(v >= 0 && v < 1);
		sum += v;
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	ck_assert(sum / 10000 > 0.45 && sum / 10000 < 0.55);
	ck_assert(lo < 0.01 && hi > 0.99);
}
END_TEST

START_TEST(test_circuit)
{
	struct circuit c = { 0 };

	ck_assert(!circuit_failure(&c, false));
	ck_assert(!circuit_failure(&c, false));
	ck_assert(circuit_failure(&c, false));          /* third in a row opens */
	ck_assert(c.open);
	ck_assert(!circuit_failure(&c, false));         /* already open */
	ck_assert_uint_eq(c.consecutive, 4);
	ck_assert(circuit_success(&c));
	ck_assert(!c.open);
	ck_assert_uint_eq(c.consecutive, 0);
	ck_assert(!circuit_success(&c));
	ck_assert(circuit_failure(&c, true));           /* access denied: at once */
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("reply");
	TCase *tc = tcase_create("reply");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_all_accepted);
	tcase_add_test(tc, test_partial_failure);
	tcase_add_test(tc, test_malformed_success);
	tcase_add_test(tc, test_error_classes);
	tcase_add_test(tc, test_transport_errors);
	tcase_add_test(tc, test_bare_code);
	tcase_add_test(tc, test_message_one_line_without_canonical_request);
	suite_add_tcase(s, tc);
	tc = tcase_create("backoff");
	tcase_add_test(tc, test_backoff_formula);
	tcase_add_test(tc, test_jitter_spreads);
	tcase_add_test(tc, test_circuit);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
