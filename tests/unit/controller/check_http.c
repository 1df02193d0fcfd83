/* The controller's HTTP/1.1 response parser and request formatter. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/http.h"

/* Parses a string literal copy (the parser may decode in place). */
static int
parse(const char *text, bool eof, struct http_response *r, char *copy, size_t copylen)
{
	size_t n = strlen(text);

	ck_assert_uint_lt(n, copylen);
	memcpy(copy, text, n + 1);
	return http_parse_response(copy, n, eof, r);
}

START_TEST(content_length)
{
	char buf[512];
	struct http_response r;
	const char *t = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	    "Lambda-Extension-Identifier: 0a1b-2c3d\r\nContent-Length: 13\r\n\r\n{\"events\":[]}";

	ck_assert_int_eq(parse(t, false, &r, buf, sizeof(buf)), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body_len, 13);
	ck_assert(memcmp(buf + r.body_off, "{\"events\":[]}", 13) == 0);
	ck_assert_str_eq(r.ext_id, "0a1b-2c3d");
	ck_assert(r.keep_alive);
	ck_assert_uint_eq(r.total_len, strlen(t));
}
END_TEST

START_TEST(header_names_case_insensitive_and_values_trimmed)
{
	char buf[512];
	struct http_response r;
	const char *t = "HTTP/1.1 200 OK\r\nlambda-extension-identifier:   id-9  \r\n"
	    "content-length:\t2\r\nCONNECTION: Close\r\n\r\nok";

	ck_assert_int_eq(parse(t, false, &r, buf, sizeof(buf)), 0);
	ck_assert_str_eq(r.ext_id, "id-9");
	ck_assert_uint_eq(r.body_len, 2);
	ck_assert(!r.keep_alive);
}
END_TEST

START_TEST(incomplete_everywhere)
{
	const char *t = "HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\n0123456789";
	size_t n = strlen(t);

	/* Every strict prefix needs more bytes; the whole is complete. */
	for (size_t i = 0; i < n; i++) {
		char buf[256];
		struct http_response r;

		memcpy(buf, t, i);
		ck_assert_msg(http_parse_response(buf, i, false, &r) == -EAGAIN, "prefix %zu", i);
		/* Truncated by the peer closing: malformed, never a silently short body. */
		if (i > 0)
			ck_assert_msg(http_parse_response(buf, i, true, &r) == -EPROTO, "eof prefix %zu", i);
	}
	{
		char buf[256];
		struct http_response r;

		memcpy(buf, t, n);
		ck_assert_int_eq(http_parse_response(buf, n, false, &r), 0);
		ck_assert_int_eq(r.status, 403);
	}
}
END_TEST

START_TEST(chunked)
{
	char buf[512];
	struct http_response r;
	const char *t = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\n{\"eve\r\n9;ext=1\r\nntType\":\"\r\nA\r\nINVOKE\"}xx\r\n0\r\n\r\n";

	ck_assert_int_eq(parse(t, false, &r, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(r.body_len, 24);
	ck_assert(memcmp(buf + r.body_off, "{\"eventType\":\"INVOKE\"}xx", 24) == 0);
	ck_assert_uint_eq(r.total_len, strlen(t));
}
END_TEST

START_TEST(chunked_incomplete_and_trailers)
{
	const char *t = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n";
	size_t n = strlen(t);

	for (size_t i = 0; i < n; i++) {
		char buf[256];
		struct http_response r;

		memcpy(buf, t, i);
		ck_assert_msg(http_parse_response(buf, i, false, &r) == -EAGAIN, "prefix %zu", i);
	}
	{
		char buf[256];
		struct http_response r;

		memcpy(buf, t, n);
		ck_assert_int_eq(http_parse_response(buf, n, false, &r), 0);
		ck_assert_uint_eq(r.body_len, 3);
		ck_assert(memcmp(buf + r.body_off, "abc", 3) == 0);
	}
}
END_TEST

START_TEST(chunked_malformed)
{
	char buf[512];
	struct http_response r;

	ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
	    false, &r, buf, sizeof(buf)), -EPROTO);
	/* Chunk data not followed by CRLF. */
	ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
	    false, &r, buf, sizeof(buf)), -EPROTO);
	/* Absurd chunk size. */
	ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n",
	    false, &r, buf, sizeof(buf)), -EMSGSIZE);
}
END_TEST

START_TEST(body_until_eof)
{
	char buf[512];
	struct http_response r;
	const char *t = "HTTP/1.0 200 OK\r\n\r\nhello";

	ck_assert_int_eq(parse(t, false, &r, buf, sizeof(buf)), -EAGAIN);
	ck_assert_int_eq(parse(t, true, &r, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(r.body_len, 5);
	ck_assert(!r.keep_alive);
}
END_TEST

START_TEST(no_body_statuses_and_interim)
{
	char buf[512];
	struct http_response r;

	ck_assert_int_eq(parse("HTTP/1.1 204 No Content\r\n\r\n", false, &r, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(r.body_len, 0);
	ck_assert_int_eq(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n"
	    "\r\n{}", false, &r, buf, sizeof(buf)), 0);
	ck_assert_int_eq(r.status, 202);
	ck_assert_uint_eq(r.body_len, 2);
	/* A reason phrase is optional. */
	ck_assert_int_eq(parse("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, &r, buf, sizeof(buf)), 0);
	ck_assert_int_eq(r.status, 200);
}
END_TEST

START_TEST(malformed)
{
	static const char *bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 099 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty-name\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char buf[512];
		struct http_response r;

		ck_assert_msg(parse(bad[i], false, &r, buf, sizeof(buf)) == -EPROTO, "case %zu", i);
	}
}
END_TEST

START_TEST(oversized)
{
	char *big = malloc(40000);
	struct http_response r;
	char buf[512];
	size_t n;

	/* Headers that never end. */
	strcpy(big, "HTTP/1.1 200 OK\r\n");
	n = strlen(big);
	while (n < 39000) {
		memcpy(big + n, "X-Pad: aaaaaaaaaaaaaaaaaaaa\r\n", 29);
		n += 29;
	}
	ck_assert_int_eq(http_parse_response(big, n, false, &r), -EMSGSIZE);
	free(big);
	/* An identifier too long for its field. */
	{
		char t[400];

		snprintf(t, sizeof(t), "HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: %0200d\r\n"
		    "Content-Length: 0\r\n\r\n", 7);
		ck_assert_int_eq(parse(t, false, &r, buf, sizeof(buf)), -EMSGSIZE);
	}
	/* A Content-Length past the limit. */
	ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", false, &r, buf,
	    sizeof(buf)), -EMSGSIZE);
}
END_TEST

START_TEST(empty)
{
	struct http_response r;
	char buf[4] = "";

	ck_assert_int_eq(http_parse_response(buf, 0, false, &r), -EAGAIN);
	ck_assert_int_eq(http_parse_response(buf, 0, true, &r), -EPROTO);
}
END_TEST

START_TEST(format_request)
{
	char out[256];
	int n;

	n = http_format_request(out, sizeof(out), "POST", "/2020-01-01/extension/register", "127.0.0.1:9001",
	    "Lambda-Extension-Name: kte\r\n", "{\"events\":[]}", 13);
	ck_assert_int_gt(n, 0);
	ck_assert_str_eq(out, "POST /2020-01-01/extension/register HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
	    "Lambda-Extension-Name: kte\r\nContent-Length: 13\r\n\r\n{\"events\":[]}");
	n = http_format_request(out, sizeof(out), "GET", "/x", "h:1", NULL, NULL, 0);
	ck_assert_str_eq(out, "GET /x HTTP/1.1\r\nHost: h:1\r\n\r\n");
	ck_assert_int_eq(n, (int)strlen(out));
	/* Too small: for the head, and for the body. */
	ck_assert_int_eq(http_format_request(out, 10, "GET", "/x", "h:1", NULL, NULL, 0), -ENOSPC);
	ck_assert_int_eq(http_format_request(out, 40, "PUT", "/x", "h", NULL, "0123456789", 10), -ENOSPC);
}
END_TEST

static Suite *
http_suite(void)
{
	Suite *s = suite_create("controller_http");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, content_length);
	tcase_add_test(tc, header_names_case_insensitive_and_values_trimmed);
	tcase_add_test(tc, incomplete_everywhere);
	tcase_add_test(tc, chunked);
	tcase_add_test(tc, chunked_incomplete_and_trailers);
	tcase_add_test(tc, chunked_malformed);
	tcase_add_test(tc, body_until_eof);
	tcase_add_test(tc, no_body_statuses_and_interim);
	tcase_add_test(tc, malformed);
	tcase_add_test(tc, oversized);
	tcase_add_test(tc, empty);
	tcase_add_test(tc, format_request);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(http_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
