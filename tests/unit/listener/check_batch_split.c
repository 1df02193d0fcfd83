/* The Telemetry batch splitter: strict JSON validation, element spans, extracted fields. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listener/batch_split.h"

#define MAX_EV 64

struct got {
	size_t n;
	char *elem[MAX_EV];
	char type[MAX_EV][BATCH_TYPE_MAX + 1];
	int has_type[MAX_EV];
	size_t type_len[MAX_EV];
	enum event_kind kind[MAX_EV];
	int level[MAX_EV];
	uint64_t dropped[MAX_EV];
	char rid[MAX_EV][64];       /* record.requestId's raw bytes, "-" if none */
	long rid_off[MAX_EV];       /* its offset in the element, -1 if none */
	int rid_escaped[MAX_EV];
	int stop_at;            /* return -ECANCELED at this index, -1 never */
};

static int
collect(void *ctx, const struct batch_event *ev)
{
	struct got *g = ctx;

	if ((int)ev->index == g->stop_at)
		return -ECANCELED;
	ck_assert_uint_eq(ev->index, g->n);
	ck_assert_uint_lt(g->n, MAX_EV);
	g->elem[g->n] = strndup((const char *)ev->data, ev->len);
	g->has_type[g->n] = ev->type != NULL;
	g->type_len[g->n] = ev->type_len;
	if (ev->type != NULL && ev->type_len <= BATCH_TYPE_MAX) {
		memcpy(g->type[g->n], ev->type, ev->type_len);
		g->type[g->n][ev->type_len] = '\0';
	}
	g->kind[g->n] = ev->kind;
	g->level[g->n] = ev->level;
	g->dropped[g->n] = ev->dropped_records;
	g->rid_off[g->n] = -1;
	strcpy(g->rid[g->n], "-");
	if (ev->request_id != NULL) {
		ck_assert(ev->request_id >= ev->data && ev->request_id + ev->request_id_len <= ev->data + ev->len);
		g->rid_off[g->n] = ev->request_id - ev->data;
		snprintf(g->rid[g->n], sizeof(g->rid[g->n]), "%.*s", (int)ev->request_id_len,
		    (const char *)ev->request_id);
		g->rid_escaped[g->n] = ev->request_id_escaped;
	}
	g->n++;
	return 0;
}

static void
got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->elem[i]);
	memset(g, 0, sizeof(*g));
}

/* Splits a NUL-terminated body; returns the result code and fills g. */
static int
split(const char *body, struct got *g)
{
	size_t count = 99;
	int rc;

	memset(g, 0, sizeof(*g));
	g->stop_at = -1;
	rc = batch_split((const uint8_t *)body, strlen(body), collect, g, &count, NULL);
	if (rc == 0)
		ck_assert_uint_eq(count, g->n);
	else
		ck_assert_uint_eq(count, 0);
	return rc;
}

static int
valid(const char *body)
{
	struct got g;
	int rc = split(body, &g);

	got_free(&g);
	return rc;
}

START_TEST(test_simple_batch_spans)
{
	const char *body = "[{\"time\":\"2022-10-12T00:03:50.000Z\",\"type\":\"function\",\"record\":\"[INFO] Hello\"},"
	    " {\"type\":\"platform.start\",\"record\":{\"requestId\":\"r1\"}} ,\n\t{\"a\":[1,2,{\"b\":null}]}\r\n]";
	struct got g;

	ck_assert_int_eq(split(body, &g), 0);
	ck_assert_uint_eq(g.n, 3);
	ck_assert_str_eq(g.elem[0], "{\"time\":\"2022-10-12T00:03:50.000Z\",\"type\":\"function\",\"record\":\"[INFO] Hello\"}");
	ck_assert_str_eq(g.elem[1], "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"r1\"}}");
	ck_assert_str_eq(g.elem[2], "{\"a\":[1,2,{\"b\":null}]}");
	ck_assert_str_eq(g.type[0], "function");
	ck_assert_int_eq(g.kind[0], EVENT_FUNCTION);
	ck_assert_str_eq(g.type[1], "platform.start");
	ck_assert_int_eq(g.kind[1], EVENT_OTHER);
	ck_assert_int_eq(g.has_type[2], 0);
	got_free(&g);
}
END_TEST

START_TEST(test_nested_arrays_objects)
{
	const char *body = "[[1,[2,[3,[]]],{}],{\"x\":{\"y\":{\"z\":[{\"w\":[]}]}}},[],{},\"s\",0,true,false,null]";
	struct got g;

	ck_assert_int_eq(split(body, &g), 0);
	ck_assert_uint_eq(g.n, 9);
	ck_assert_str_eq(g.elem[0], "[1,[2,[3,[]]],{}]");
	ck_assert_str_eq(g.elem[1], "{\"x\":{\"y\":{\"z\":[{\"w\":[]}]}}}");
	ck_assert_str_eq(g.elem[2], "[]");
	ck_assert_str_eq(g.elem[3], "{}");
	ck_assert_str_eq(g.elem[4], "\"s\"");
	ck_assert_str_eq(g.elem[5], "0");
	ck_assert_str_eq(g.elem[8], "null");
	got_free(&g);
}
END_TEST

START_TEST(test_escaped_quotes_and_brackets)
{
	const char *body = "[{\"record\":\"a \\\"quoted\\\" ] } [ { , string\\\\\",\"type\":\"function\"},"
	    "\"]\",\"\\\\\",{\"k\\\"]\":\"}\"}]";
	struct got g;

	ck_assert_int_eq(split(body, &g), 0);
	ck_assert_uint_eq(g.n, 4);
	ck_assert_str_eq(g.elem[0], "{\"record\":\"a \\\"quoted\\\" ] } [ { , string\\\\\",\"type\":\"function\"}");
	ck_assert_str_eq(g.type[0], "function");
	ck_assert_str_eq(g.elem[1], "\"]\"");
	ck_assert_str_eq(g.elem[2], "\"\\\\\"");
	ck_assert_str_eq(g.elem[3], "{\"k\\\"]\":\"}\"}");
	got_free(&g);
}
END_TEST

START_TEST(test_unicode_escapes)
{
	ck_assert_int_eq(valid("[\"\\u00e9\\u20AC\\uFFFF\\u0000\"]"), 0);
	ck_assert_int_eq(valid("[\"\\ud83d\\ude00 and \\uD800\\uDC00 \\uDBFF\\uDFFF\"]"), 0);
	ck_assert_int_eq(valid("[\"\\ud83d\"]"), -EBADMSG);          /* lone high */
	ck_assert_int_eq(valid("[\"\\ude00\"]"), -EBADMSG);          /* lone low */
	ck_assert_int_eq(valid("[\"\\ud83d\\u0041\"]"), -EBADMSG);   /* high + non-low */
	ck_assert_int_eq(valid("[\"\\ud83dx\\ude00\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"\\u12\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"\\u12G4\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"\\U0041\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"\\x41\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"\\'\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"]"), 0);
}
END_TEST

START_TEST(test_raw_utf8)
{
	ck_assert_int_eq(valid("[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"]"), 0);
	ck_assert_int_eq(valid("[\"\xc0\x80\"]"), -EBADMSG);          /* overlong NUL */
	ck_assert_int_eq(valid("[\"\xe0\x80\xaf\"]"), -EBADMSG);      /* overlong '/' */
	ck_assert_int_eq(valid("[\"\xed\xa0\x80\"]"), -EBADMSG);      /* encoded surrogate */
	ck_assert_int_eq(valid("[\"\xf4\x90\x80\x80\"]"), -EBADMSG);  /* above U+10FFFF */
	ck_assert_int_eq(valid("[\"\xf5\x80\x80\x80\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"\x80\"]"), -EBADMSG);              /* stray continuation */
	ck_assert_int_eq(valid("[\"\xc3\"]"), -EBADMSG);              /* cut before the quote */
	ck_assert_int_eq(valid("[\"\xe2\x82\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\xc3\xa9]"), -EBADMSG);              /* outside a string */
}
END_TEST

START_TEST(test_control_chars)
{
	ck_assert_int_eq(valid("[\"a\nb\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"a\tb\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"a\x1f\"]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"a\x7f\"]"), 0);                    /* DEL is allowed */
}
END_TEST

START_TEST(test_empty_array_and_whitespace)
{
	struct got g;

	ck_assert_int_eq(split("[]", &g), 0);
	ck_assert_uint_eq(g.n, 0);
	ck_assert_int_eq(split(" \t\r\n[ \t\r\n] \t\r\n", &g), 0);
	ck_assert_uint_eq(g.n, 0);
	ck_assert_int_eq(split("\n[\n 1 \n,\n\t2\n]\n", &g), 0);
	ck_assert_uint_eq(g.n, 2);
	ck_assert_str_eq(g.elem[0], "1");
	ck_assert_str_eq(g.elem[1], "2");
	got_free(&g);
	/* Only the four RFC whitespace characters. */
	ck_assert_int_eq(valid("[\f]"), -EBADMSG);
	ck_assert_int_eq(valid("[1\v]"), -EBADMSG);
	ck_assert_int_eq(valid("\xc2\xa0[]"), -EPROTOTYPE);
	ck_assert_int_eq(valid("[]\xc2\xa0"), -EBADMSG);
}
END_TEST

START_TEST(test_empty_body_and_non_array)
{
	struct batch_split_error err;

	ck_assert_int_eq(valid(""), -ENODATA);
	ck_assert_int_eq(valid(" \n\t\r "), -ENODATA);
	ck_assert_int_eq(valid("{}"), -EPROTOTYPE);
	ck_assert_int_eq(valid("{\"type\":\"function\"}"), -EPROTOTYPE);
	ck_assert_int_eq(valid("1"), -EPROTOTYPE);
	ck_assert_int_eq(valid("\"[1]\""), -EPROTOTYPE);
	ck_assert_int_eq(valid("null"), -EPROTOTYPE);
	ck_assert_int_eq(valid("]"), -EPROTOTYPE);
	ck_assert_int_eq(batch_split(NULL, 0, NULL, NULL, NULL, &err), -ENODATA);
	ck_assert_str_eq(err.what, "empty body");
}
END_TEST

START_TEST(test_truncated_every_prefix)
{
	const char *body = "[{\"time\":\"t\",\"type\":\"platform.report\",\"record\":{\"a\":[1,-2.5e+3,true,false,"
	    "null,\"\\u00e9\\ud83d\\ude00\\\"x\",{}],\"b\":\"caf\xc3\xa9\"}},[],\"s\"]";
	size_t len = strlen(body);

	ck_assert_int_eq(batch_split((const uint8_t *)body, len, NULL, NULL, NULL, NULL), 0);
	for (size_t i = 1; i < len; i++) {
		struct batch_split_error err = { 0, NULL };
		int rc = batch_split((const uint8_t *)body, i, NULL, NULL, NULL, &err);

		ck_assert_msg(rc == -EBADMSG, "prefix of %zu bytes gave %d", i, rc);
		ck_assert_ptr_nonnull(err.what);
		ck_assert_uint_le(err.offset, i);
	}
}
END_TEST

START_TEST(test_trailing_garbage)
{
	struct batch_split_error err;

	ck_assert_int_eq(valid("[]x"), -EBADMSG);
	ck_assert_int_eq(valid("[1]]"), -EBADMSG);
	ck_assert_int_eq(valid("[1],"), -EBADMSG);
	ck_assert_int_eq(valid("[1][2]"), -EBADMSG);
	ck_assert_int_eq(valid("[1] \n 0"), -EBADMSG);
	ck_assert_int_eq(batch_split((const uint8_t *)"[1]\0", 4, NULL, NULL, NULL, &err), -EBADMSG);
	ck_assert_uint_eq(err.offset, 3);
	ck_assert_str_eq(err.what, "trailing data after the array");
}
END_TEST

START_TEST(test_structure_errors)
{
	ck_assert_int_eq(valid("[1,]"), -EBADMSG);
	ck_assert_int_eq(valid("[,1]"), -EBADMSG);
	ck_assert_int_eq(valid("[1 2]"), -EBADMSG);
	ck_assert_int_eq(valid("[{\"a\":1,}]"), -EBADMSG);
	ck_assert_int_eq(valid("[{\"a\" 1}]"), -EBADMSG);
	ck_assert_int_eq(valid("[{\"a\":}]"), -EBADMSG);
	ck_assert_int_eq(valid("[{1:2}]"), -EBADMSG);
	ck_assert_int_eq(valid("[{'a':1}]"), -EBADMSG);
	ck_assert_int_eq(valid("[{\"a\":1]"), -EBADMSG);
	ck_assert_int_eq(valid("[[1}]"), -EBADMSG);
	ck_assert_int_eq(valid("[{\"a\",1}]"), -EBADMSG);
	ck_assert_int_eq(valid("[undefined]"), -EBADMSG);
	ck_assert_int_eq(valid("[tru]"), -EBADMSG);
	ck_assert_int_eq(valid("[True]"), -EBADMSG);
	ck_assert_int_eq(valid("[nul"), -EBADMSG);
	ck_assert_int_eq(valid("[NaN]"), -EBADMSG);
	ck_assert_int_eq(valid("[\"a\"\"b\"]"), -EBADMSG);
}
END_TEST

START_TEST(test_numbers)
{
	static const char *good[] = { "0", "-0", "1", "-1", "1234567890", "0.5", "-0.0", "1e5", "1E+5",
		"1e-5", "0.0e-0", "123.456E789", "99999999999999999999999999" };
	static const char *bad[] = { "01", "-", "+1", ".5", "1.", "1e", "1e+", "-a", "0x1", "1.e3",
		"--1", "1ee3", "-01", "00" };
	char buf[64];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "[%s]", good[i]);
		ck_assert_msg(valid(buf) == 0, "%s should be valid", good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "[%s]", bad[i]);
		ck_assert_msg(valid(buf) == -EBADMSG, "%s should be invalid", bad[i]);
	}
}
END_TEST

/* Builds "[" + depth-1 nested open/close pairs around inner (depth containers in all) + "]". */
static char *
nested(int depth, const char *open, const char *inner, const char *close)
{
	size_t ol = strlen(open), cl = strlen(close), il = strlen(inner);
	char *s = malloc((size_t)depth * (ol + cl) + il + 3), *p = s;

	*p++ = '[';
	for (int i = 1; i < depth; i++, p += ol)
		memcpy(p, open, ol);
	memcpy(p, inner, il);
	p += il;
	for (int i = 1; i < depth; i++, p += cl)
		memcpy(p, close, cl);
	*p++ = ']';
	*p = '\0';
	return s;
}

START_TEST(test_deep_nesting)
{
	char *s;
	struct batch_split_error err;

	s = nested(BATCH_MAX_DEPTH, "[", "", "]");
	ck_assert_int_eq(valid(s), 0);
	free(s);
	s = nested(BATCH_MAX_DEPTH + 1, "[", "", "]");
	ck_assert_int_eq(batch_split((const uint8_t *)s, strlen(s), NULL, NULL, NULL, &err), -EBADMSG);
	ck_assert_str_eq(err.what, "nesting too deep");
	free(s);
	s = nested(BATCH_MAX_DEPTH, "{\"a\":", "0", "}");
	ck_assert_int_eq(valid(s), 0);
	free(s);
	s = nested(BATCH_MAX_DEPTH + 1, "{\"a\":", "0", "}");
	ck_assert_int_eq(valid(s), -EBADMSG);
	free(s);
	/* Far deeper than any stack would like: still a clean rejection. */
	s = nested(1000000, "[", "", "]");
	ck_assert_int_eq(valid(s), -EBADMSG);
	free(s);
}
END_TEST

START_TEST(test_huge_strings)
{
	size_t n = 8u << 20;
	char *body = malloc(n + 64), *p = body;
	struct batch_split_error err;
	size_t count;

	p += sprintf(p, "[{\"record\":\"");
	for (size_t i = 0; i < n; i++)
		*p++ = (char)('a' + i % 26);
	p += sprintf(p, "\"},1]");
	ck_assert_int_eq(batch_split((const uint8_t *)body, (size_t)(p - body), NULL, NULL, &count, &err), 0);
	ck_assert_uint_eq(count, 2);
	/* The same, one byte short of its closing quote region. */
	ck_assert_int_eq(batch_split((const uint8_t *)body, n + 10, NULL, NULL, NULL, &err), -EBADMSG);
	ck_assert_str_eq(err.what, "unterminated string");
	free(body);
}
END_TEST

START_TEST(test_extract_fields)
{
	const char *body = "["
	    "{\"record\":{\"droppedRecords\":123,\"droppedBytes\":9,\"reason\":\"x\"},\"type\":\"platform.logsDropped\"},"
	    "{\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":\"r\",\"status\":\"success\"}},"
	    "{\"type\":\"platform.report\",\"record\":{}},"
	    "{\"type\":\"function\",\"record\":{\"timestamp\":\"t\",\"level\":\"WARN\",\"message\":\"m\"}},"
	    "{\"type\":\"function\",\"record\":{\"level\":\"debug\",\"x\":{\"level\":\"FATAL\"}}},"
	    "{\"type\":\"function\",\"record\":\"level ERROR\"},"
	    "{\"typ\\u0065\":\"exte\\u006esion\",\"record\":{\"le\\u0076el\":\"\\u0049NFO\"}},"
	    "{\"x\":{\"type\":\"function\"},\"level\":\"ERROR\",\"record\":[{\"level\":\"ERROR\"}]},"
	    "{\"type\":1,\"record\":{\"droppedRecords\":-5}},"
	    "{\"type\":\"platform.logsDropped\",\"record\":{\"droppedRecords\":1.5}},"
	    "{\"type\":\"platform.logsDropped\",\"record\":{\"droppedRecords\":18446744073709551616}},"
	    "{\"type\":\"function\",\"record\":{\"level\":\"verbose\"}}"
	    "]";
	struct got g;

	ck_assert_int_eq(split(body, &g), 0);
	ck_assert_uint_eq(g.n, 12);
	ck_assert_int_eq(g.kind[0], EVENT_LOGS_DROPPED);
	ck_assert_uint_eq(g.dropped[0], 123);
	ck_assert_int_eq(g.kind[1], EVENT_RUNTIME_DONE);
	ck_assert_int_eq(g.kind[2], EVENT_REPORT);
	ck_assert_int_eq(g.kind[3], EVENT_FUNCTION);
	ck_assert_int_eq(g.level[3], RECORD_LEVEL_WARN);
	ck_assert_int_eq(g.level[4], RECORD_LEVEL_DEBUG);       /* the nested one is ignored */
	ck_assert_int_eq(g.level[5], RECORD_LEVEL_NONE);        /* text log */
	ck_assert_int_eq(g.kind[6], EVENT_EXTENSION);           /* escaped key and value */
	ck_assert_str_eq(g.type[6], "extension");
	ck_assert_int_eq(g.level[6], RECORD_LEVEL_INFO);
	ck_assert_int_eq(g.has_type[7], 0);                     /* nested "type" is not the event's */
	ck_assert_int_eq(g.level[7], RECORD_LEVEL_NONE);
	ck_assert_int_eq(g.has_type[8], 0);
	ck_assert_uint_eq(g.dropped[8], 0);
	ck_assert_uint_eq(g.dropped[9], 0);
	ck_assert_uint_eq(g.dropped[10], UINT64_MAX);           /* saturates */
	ck_assert_int_eq(g.level[11], RECORD_LEVEL_NONE);
	got_free(&g);
}
END_TEST

/* record.requestId: its exact place in the element, only at the event's record level. */
START_TEST(test_request_id_span)
{
	const char *body = "["
	    "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"abc-1\",\"version\":\"1\"}},"
	    "{\"requestId\":\"top\",\"x\":{\"requestId\":\"x\"},\"record\":{\"tracing\":{\"requestId\":\"n\"}}},"
	    "{\"record\":{\"requestId\":\"a\\\"b\"}},"
	    "{\"record\":{\"requestId\":7}},"
	    "{\"record\":[{\"requestId\":\"in-array\"}]},"
	    "{\"record\":{\"req\\u0075estId\":\"escaped-key\"}},"
	    "\"requestId\""
	    "]";
	struct got g;

	ck_assert_int_eq(split(body, &g), 0);
	ck_assert_uint_eq(g.n, 7);
	ck_assert_str_eq(g.rid[0], "abc-1");
	ck_assert(strncmp(g.elem[0] + g.rid_off[0], "abc-1\"", 6) == 0);
	ck_assert_int_eq(g.rid_escaped[0], 0);
	ck_assert_int_eq(g.rid_off[1], -1);                      /* none at record level */
	ck_assert_str_eq(g.rid[2], "a\\\"b");                   /* raw bytes, flagged */
	ck_assert_int_eq(g.rid_escaped[2], 1);
	ck_assert_int_eq(g.rid_off[3], -1);                      /* not a string */
	ck_assert_int_eq(g.rid_off[4], -1);
	ck_assert_str_eq(g.rid[5], "escaped-key");
	ck_assert_int_eq(g.rid_off[6], -1);
	got_free(&g);
}
END_TEST

START_TEST(test_long_escaped_type)
{
	char body[512];
	struct got g;

	/* An escaped type longer than BATCH_TYPE_MAX is not decoded: no type, kind other. */
	snprintf(body, sizeof(body), "[{\"type\":\"\\u0066%0100d\"}]", 0);
	ck_assert_int_eq(split(body, &g), 0);
	ck_assert_int_eq(g.has_type[0], 0);
	ck_assert_int_eq(g.kind[0], EVENT_OTHER);
	got_free(&g);
	/* An unescaped one of any length is passed as is. */
	snprintf(body, sizeof(body), "[{\"type\":\"f%0200d\"}]", 0);
	ck_assert_int_eq(split(body, &g), 0);
	ck_assert_int_eq(g.has_type[0], 1);
	ck_assert_uint_eq(g.type_len[0], 201);
	got_free(&g);
}
END_TEST

START_TEST(test_callback_stops)
{
	struct got g;
	size_t count = 5;

	memset(&g, 0, sizeof(g));
	g.stop_at = 1;
	ck_assert_int_eq(batch_split((const uint8_t *)"[1,2,3]", 7, collect, &g, &count, NULL), -ECANCELED);
	ck_assert_uint_eq(g.n, 1);
	ck_assert_uint_eq(count, 0);
	got_free(&g);
}
END_TEST

START_TEST(test_level_parse)
{
	ck_assert_int_eq(batch_level_parse("TRACE", 5), RECORD_LEVEL_TRACE);
	ck_assert_int_eq(batch_level_parse("Warning", 7), RECORD_LEVEL_WARN);
	ck_assert_int_eq(batch_level_parse("fatal", 5), RECORD_LEVEL_FATAL);
	ck_assert_int_eq(batch_level_parse("info ", 5), RECORD_LEVEL_NONE);
	ck_assert_int_eq(batch_level_parse("inf", 3), RECORD_LEVEL_NONE);
	ck_assert_int_eq(batch_level_parse("", 0), RECORD_LEVEL_NONE);
}
END_TEST

static Suite *
batch_split_suite(void)
{
	Suite *s = suite_create("batch_split");
	TCase *tc = tcase_create("split");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_simple_batch_spans);
	tcase_add_test(tc, test_nested_arrays_objects);
	tcase_add_test(tc, test_escaped_quotes_and_brackets);
	tcase_add_test(tc, test_unicode_escapes);
	tcase_add_test(tc, test_raw_utf8);
	tcase_add_test(tc, test_control_chars);
	tcase_add_test(tc, test_empty_array_and_whitespace);
	tcase_add_test(tc, test_empty_body_and_non_array);
	tcase_add_test(tc, test_truncated_every_prefix);
	tcase_add_test(tc, test_trailing_garbage);
	tcase_add_test(tc, test_structure_errors);
	tcase_add_test(tc, test_numbers);
	tcase_add_test(tc, test_deep_nesting);
	tcase_add_test(tc, test_huge_strings);
	tcase_add_test(tc, test_extract_fields);
	tcase_add_test(tc, test_long_escaped_type);
	tcase_add_test(tc, test_request_id_span);
	tcase_add_test(tc, test_callback_stops);
	tcase_add_test(tc, test_level_parse);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(batch_split_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
