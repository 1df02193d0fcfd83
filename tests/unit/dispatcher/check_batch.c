/*
 * PutRecords batch building: the limits exactly at and one byte over (500 records,
 * request bytes with keys, record bytes with key), each record format decoded back
 * from the JSON body (KPL de-aggregated by the real aws-kinesis-agg through
 * tests/tools/kpl_deagg.js), and the body rewrite after a partial failure. With
 * KTE_COMPRESSION=gzip: every record gunzips back to its events, and the limits hold
 * for the compressed size.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <zlib.h>

#include "dispatcher/base64.h"
#include "base64_decode.h"
#include "dispatcher/batch.h"
#include "dispatcher/kpl.h"

#define MiB (1024u * 1024u)

struct rec_out {
	uint8_t *data;
	size_t len;
	char key[300];
};

struct body_out {
	struct rec_out rec[BATCH_MAX_RECORDS + 1];
	size_t n;
	char stream[200], arn[300];
};

static struct kte_config
make_cfg(enum record_format f, uint32_t max_record, uint32_t max_request, const char *fixed_key)
{
	struct kte_config c;

	memset(&c, 0, sizeof(c));
	snprintf(c.stream_name, sizeof(c.stream_name), "test-stream");
	c.record_format = f;
	c.max_record_bytes = max_record;
	c.max_request_bytes = max_request;
	if (fixed_key != NULL) {
		c.pkey_mode = PKEY_FIXED;
		snprintf(c.pkey_fixed, sizeof(c.pkey_fixed), "%s", fixed_key);
	} else
		c.pkey_mode = PKEY_REQUEST_ID;
	return c;
}

/* Parses a finished body; fails the test if it is not valid PutRecords JSON. */
static void
parse_body(const struct batch *b, struct body_out *o)
{
	json_object *root, *recs, *v;
	char *text = strndup(b->body, b->len);

	memset(o, 0, sizeof(*o));
	root = json_tokener_parse(text);
	free(text);
	ck_assert_msg(root != NULL, "body is not JSON");
	if (json_object_object_get_ex(root, "StreamName", &v))
		snprintf(o->stream, sizeof(o->stream), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(root, "StreamARN", &v))
		snprintf(o->arn, sizeof(o->arn), "%s", json_object_get_string(v));
	ck_assert(json_object_object_get_ex(root, "Records", &recs));
	o->n = json_object_array_length(recs);
	ck_assert_uint_le(o->n, BATCH_MAX_RECORDS);
	for (size_t i = 0; i < o->n; i++) {
		json_object *r = json_object_array_get_idx(recs, i), *d, *k;
		const char *s;
		ssize_t n;

		ck_assert(json_object_object_get_ex(r, "Data", &d));
		ck_assert(json_object_object_get_ex(r, "PartitionKey", &k));
		s = json_object_get_string(d);
		o->rec[i].data = malloc(base64_decoded_max(strlen(s)) + 1);
		n = base64_decode(s, strlen(s), o->rec[i].data);
		ck_assert_int_ge(n, 0);
		o->rec[i].len = (size_t)n;
		snprintf(o->rec[i].key, sizeof(o->rec[i].key), "%s", json_object_get_string(k));
	}
	json_object_put(root);
}

static void
free_body(struct body_out *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->rec[i].data);
	o->n = 0;
}

/* A telemetry-shaped event of exactly len bytes (len >= 80) with this request id (or none). */
static uint8_t *
make_event(size_t len, const char *rid, unsigned seq)
{
	uint8_t *e = malloc(len + 1);
	int n;

	if (rid != NULL)
		n = snprintf((char *)e, len + 1, "{\"type\":\"function\",\"record\":{\"requestId\":\"%s\","
		    "\"seq\":%u,\"message\":\"", rid, seq);
	else
		n = snprintf((char *)e, len + 1, "{\"type\":\"function\",\"record\":\"seq %u ", seq);
	ck_assert_int_lt(n + 3, (int)len);
	memset(e + n, 'a' + seq % 26, len - (size_t)n);
	memcpy(e + len - (rid != NULL ? 3 : 2), rid != NULL ? "\"}}" : "\"}", rid != NULL ? 3 : 2);
	return e;
}

struct fixture {
	struct kte_config cfg;
	struct pkey_state pk;
	struct batch b;
};

static struct fixture *
fixture_new(enum record_format f, uint32_t max_record, uint32_t max_request, const char *key)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	fx->cfg = make_cfg(f, max_record, max_request, key);
	pkey_init(&fx->pk, &fx->cfg, "fn");
	ck_assert_int_eq(batch_init(&fx->b, &fx->cfg, &fx->pk), 0);
	return fx;
}

static void
fixture_free(struct fixture *fx)
{
	batch_cleanup(&fx->b);
	free(fx);
}

/* ---- event format ---- */

START_TEST(test_event_500_records)
{
	struct fixture *fx = fixture_new(FORMAT_EVENT, MiB, 5 * MiB, NULL);
	static struct body_out o;
	uint8_t *ev[501];
	char rid[16];

	for (unsigned i = 0; i < 501; i++) {
		snprintf(rid, sizeof(rid), "r%u", i % 7);
		ev[i] = make_event(100 + i % 50, rid, i);
	}
	for (unsigned i = 0; i < 500; i++)
		ck_assert_int_eq(batch_add(&fx->b, ev[i], 100 + i % 50, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fx->b, ev[500], 100, false), BATCH_FULL);
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	ck_assert_int_eq(batch_add(&fx->b, ev[500], 100, false), BATCH_FULL);
	parse_body(&fx->b, &o);
	ck_assert_str_eq(o.stream, "test-stream");
	ck_assert_uint_eq(o.n, 500);
	for (unsigned i = 0; i < 500; i++) {
		char want[16];

		snprintf(want, sizeof(want), "r%u", i % 7);
		ck_assert_uint_eq(o.rec[i].len, 100 + i % 50);
		ck_assert(memcmp(o.rec[i].data, ev[i], o.rec[i].len) == 0);
		ck_assert_str_eq(o.rec[i].key, want);
	}
	free_body(&o);
	for (unsigned i = 0; i < 501; i++)
		free(ev[i]);
	fixture_free(fx);
}
END_TEST

/* Four records of exactly 1 MiB (data + 1-byte key), then one of 1 MiB - 2. */
static void
fill_to_5mib_minus_2(struct fixture *fx, uint8_t *big)
{
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(batch_add(&fx->b, big, MiB - 1, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fx->b, big, MiB - 3, false), BATCH_ADDED);
	ck_assert_uint_eq(fx->b.kin_total, 5 * MiB - 2);
}

START_TEST(test_event_request_exactly_5mib)
{
	struct fixture *fx = fixture_new(FORMAT_EVENT, MiB, 5 * MiB, "k");
	static struct body_out o;
	uint8_t *big = make_event(MiB, NULL, 1);

	fill_to_5mib_minus_2(fx, big);
	ck_assert_int_eq(batch_add(&fx->b, big, 1, false), BATCH_ADDED);   /* 1 + key: exactly 5 MiB */
	ck_assert_uint_eq(fx->b.kin_total, 5 * MiB);
	ck_assert_int_eq(batch_add(&fx->b, big, 1, false), BATCH_FULL);
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 6);
	size_t total = 0;
	for (size_t i = 0; i < o.n; i++) {
		ck_assert(memcmp(o.rec[i].data, big, o.rec[i].len) == 0);
		ck_assert_str_eq(o.rec[i].key, "k");
		total += o.rec[i].len + strlen(o.rec[i].key);
	}
	ck_assert_uint_eq(total, 5 * MiB);
	free_body(&o);
	free(big);
	fixture_free(fx);
}
END_TEST

START_TEST(test_event_request_one_byte_over)
{
	struct fixture *fx = fixture_new(FORMAT_EVENT, MiB, 5 * MiB, "k");
	uint8_t *big = make_event(MiB, NULL, 1);

	fill_to_5mib_minus_2(fx, big);
	ck_assert_int_eq(batch_add(&fx->b, big, 2, false), BATCH_FULL);    /* 2 + key: 1 byte over */
	ck_assert_uint_eq(fx->b.nkrec, 5);
	/* The event that did not fit opens the next batch. */
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	batch_reset(&fx->b, 0);
	ck_assert_int_eq(batch_add(&fx->b, big, 2, false), BATCH_ADDED);
	free(big);
	fixture_free(fx);
}
END_TEST

START_TEST(test_event_record_limit)
{
	struct fixture *fx = fixture_new(FORMAT_EVENT, MiB, 5 * MiB, NULL);
	const char *rid = "8f5c7b3e-1111-2222-3333-444455556666";   /* 36 bytes: counted */
	uint8_t *at = make_event(MiB - 36, rid, 1), *over = make_event(MiB - 35, rid, 2);
	static struct body_out o;

	ck_assert_int_eq(batch_add(&fx->b, over, MiB - 35, false), BATCH_TOO_LARGE);
	ck_assert_int_eq(batch_add(&fx->b, at, MiB - 36, false), BATCH_ADDED);
	ck_assert_uint_eq(fx->b.kin_total, MiB);
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 1);
	ck_assert_uint_eq(o.rec[0].len, MiB - 36);
	ck_assert_str_eq(o.rec[0].key, rid);
	free_body(&o);
	free(at);
	free(over);
	fixture_free(fx);
}
END_TEST

START_TEST(test_larger_limits)
{
	/* A stream with MaxRecordSizeInKiB = 10240: 10 MiB per record and per request. */
	struct fixture *fx = fixture_new(FORMAT_EVENT, 10 * MiB, 10 * MiB, "k");
	uint8_t *big = make_event(10 * MiB, NULL, 3);

	ck_assert_int_eq(batch_add(&fx->b, big, 10 * MiB, false), BATCH_TOO_LARGE);
	ck_assert_int_eq(batch_add(&fx->b, big, 3 * MiB, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fx->b, big, 7 * MiB - 2, false), BATCH_ADDED);
	ck_assert_uint_eq(fx->b.kin_total, 10 * MiB);
	ck_assert_int_eq(batch_add(&fx->b, big, 1, false), BATCH_FULL);
	free(big);
	fixture_free(fx);
}
END_TEST

/* ---- ndjson ---- */

START_TEST(test_ndjson_packs_events)
{
	struct fixture *fx = fixture_new(FORMAT_NDJSON, MiB, 5 * MiB, NULL);
	static struct body_out o;
	uint8_t *ev[1000];
	char rid[40];
	size_t off = 0;

	for (unsigned i = 0; i < 1000; i++) {
		snprintf(rid, sizeof(rid), "req-%u", i / 100);
		ev[i] = make_event(300, rid, i);
		ck_assert_int_eq(batch_add(&fx->b, ev[i], 300, false), BATCH_ADDED);
	}
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 1);
	ck_assert_str_eq(o.rec[0].key, "req-0");        /* the first event's key */
	ck_assert_uint_eq(o.rec[0].len, 1000 * 301 - 1);
	for (unsigned i = 0; i < 1000; i++) {
		ck_assert(memcmp(o.rec[0].data + off, ev[i], 300) == 0);
		off += 300;
		if (i < 999)
			ck_assert_int_eq(o.rec[0].data[off++], '\n');
		free(ev[i]);
	}
	free_body(&o);
	fixture_free(fx);
}
END_TEST

START_TEST(test_ndjson_record_exact_and_over)
{
	/* 1024-byte records, key "k": 511 + '\n' + 511 + key = 1024 exactly. */
	struct fixture *fx = fixture_new(FORMAT_NDJSON, 1024, 5 * MiB, "k");
	uint8_t *a = make_event(511, NULL, 1), *b = make_event(1024, NULL, 2);
	static struct body_out o;

	ck_assert_int_eq(batch_add(&fx->b, a, 511, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fx->b, a, 511, false), BATCH_ADDED);
	ck_assert_uint_eq(fx->b.nkrec, 1);
	ck_assert_uint_eq(fx->b.kin_total, 1024);
	ck_assert_int_eq(batch_add(&fx->b, a, 511, false), BATCH_ADDED);      /* a new record */
	ck_assert_uint_eq(fx->b.nkrec, 2);
	ck_assert_int_eq(batch_add(&fx->b, b, 512, false), BATCH_ADDED);      /* 1025: one over */
	ck_assert_uint_eq(fx->b.nkrec, 3);
	ck_assert_int_eq(batch_add(&fx->b, b, 1023, false), BATCH_ADDED);     /* alone: exactly 1024 */
	ck_assert_int_eq(batch_add(&fx->b, b, 1024, false), BATCH_TOO_LARGE);
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 4);
	ck_assert_uint_eq(o.rec[0].len, 1023);
	ck_assert_uint_eq(o.rec[1].len, 511);
	ck_assert_uint_eq(o.rec[2].len, 512);
	ck_assert_uint_eq(o.rec[3].len, 1023);
	free_body(&o);
	free(a);
	free(b);
	fixture_free(fx);
}
END_TEST

START_TEST(test_ndjson_500_records_and_request_bytes)
{
	struct fixture *fx = fixture_new(FORMAT_NDJSON, 1024, 5 * MiB, "k");
	uint8_t *e = make_event(1023, NULL, 1);
	struct fixture *fy;

	for (int i = 0; i < 500; i++)
		ck_assert_int_eq(batch_add(&fx->b, e, 1000, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fx->b, e, 1000, false), BATCH_FULL);
	fixture_free(fx);

	/* Request bytes: 1023-byte records up to 4096 exactly, then one byte over. */
	fy = fixture_new(FORMAT_NDJSON, 1024, 4096, "k");
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(batch_add(&fy->b, e, 1023, false), BATCH_ADDED);
	ck_assert_uint_eq(fy->b.kin_total, 4096);
	ck_assert_int_eq(batch_add(&fy->b, e, 1, false), BATCH_FULL);
	batch_reset(&fy->b, 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(batch_add(&fy->b, e, 1023, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fy->b, e, 1022, false), BATCH_ADDED);   /* 4095 */
	ck_assert_int_eq(batch_add(&fy->b, e, 1, false), BATCH_FULL);       /* would be 4097 */
	free(e);
	fixture_free(fy);
}
END_TEST

START_TEST(test_ndjson_newlines_become_spaces)
{
	struct fixture *fx = fixture_new(FORMAT_NDJSON, MiB, 5 * MiB, "k");
	const char *e1 = "{\"type\":\"function\",\n \"record\":\"a\"}";
	const char *e2 = "{\r\n\"type\":\"function\",\"record\":\"b\\n\"}\n";
	static struct body_out o;

	ck_assert_int_eq(batch_add(&fx->b, (const uint8_t *)e1, strlen(e1), false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fx->b, (const uint8_t *)e2, strlen(e2), false), BATCH_ADDED);
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 1);
	ck_assert_uint_eq(o.rec[0].len, strlen(e1) + 1 + strlen(e2));
	ck_assert(memcmp(o.rec[0].data, "{\"type\":\"function\",  \"record\":\"a\"}\n"
	    "{  \"type\":\"function\",\"record\":\"b\\n\"} ", o.rec[0].len) == 0);
	free_body(&o);
	fixture_free(fx);
}
END_TEST

/* ---- kpl ---- */

#define DEAGG "tests/tools/kpl_deagg.js"

/* De-aggregates data with the real aws-kinesis-agg; returns the parsed JSON line. */
static json_object *
deaggregate(const uint8_t *data, size_t len, const char *pkey)
{
	char path[] = "/tmp/kte-batch-kplXXXXXX", cmd[512], *line = NULL;
	size_t cap = 0;
	ssize_t n;
	json_object *j, *err;
	FILE *f;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "node %s --pkey '%s' %s", DEAGG, pkey, path);
	f = popen(cmd, "r");
	ck_assert(f != NULL);
	n = getline(&line, &cap, f);
	pclose(f);
	unlink(path);
	ck_assert_msg(n > 0, "no output from %s", cmd);
	j = json_tokener_parse(line);
	free(line);
	ck_assert(j != NULL);
	ck_assert_msg(!json_object_object_get_ex(j, "error", &err), "de-aggregation failed: %s",
	    json_object_get_string(err));
	return j;
}

static void
assert_deagg(json_object *j, uint8_t **want, const size_t *lens, size_t n, const char *key)
{
	json_object *recs, *r, *v;

	ck_assert(json_object_object_get_ex(j, "aggregated", &v) && json_object_get_boolean(v));
	ck_assert(json_object_object_get_ex(j, "records", &recs));
	ck_assert_uint_eq(json_object_array_length(recs), n);
	for (size_t i = 0; i < n; i++) {
		uint8_t buf[8192];
		const char *s;
		ssize_t dl;

		r = json_object_array_get_idx(recs, i);
		ck_assert(json_object_object_get_ex(r, "partitionKey", &v));
		ck_assert_str_eq(json_object_get_string(v), key);
		ck_assert(json_object_object_get_ex(r, "data", &v));
		s = json_object_get_string(v);
		ck_assert_uint_le(base64_decoded_max(strlen(s)), sizeof(buf));
		dl = base64_decode(s, strlen(s), buf);
		ck_assert_int_eq(dl, (ssize_t)lens[i]);
		ck_assert(memcmp(buf, want[i], lens[i]) == 0);
	}
}

START_TEST(test_kpl_groups_by_key)
{
	struct fixture *fx = fixture_new(FORMAT_KPL, MiB, 5 * MiB, NULL);
	static struct body_out o;
	/* A, B, A, B, C, then two id-less events during C (they take C's key), report C. */
	const char *rids[] = { "A", "B", "A", "B", "C", NULL, NULL };
	uint8_t *ev[8];
	size_t len[8];
	uint8_t *wa[2] = { 0 }, *wb[2], *wc[4];
	size_t la[2], lb[2], lc[4];
	const char *report = "{\"type\":\"platform.report\",\"record\":{\"requestId\":\"C\",\"status\":\"success\"}}";
	json_object *j;

	ck_assert_ptr_nonnull(wa);
	if (access("tests/node/node_modules/aws-kinesis-agg/index.js", R_OK) != 0)
		ck_abort_msg("aws-kinesis-agg missing: run make deps");
	for (int i = 0; i < 7; i++) {
		len[i] = 120 + (size_t)i;
		ev[i] = make_event(len[i], rids[i], (unsigned)i);
		ck_assert_int_eq(batch_add(&fx->b, ev[i], len[i], false), BATCH_ADDED);
	}
	ev[7] = (uint8_t *)strdup(report);
	len[7] = strlen(report);
	ck_assert_int_eq(batch_add(&fx->b, ev[7], len[7], false), BATCH_ADDED);
	ck_assert_uint_eq(fx->b.nkrec, 3);
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 3);
	ck_assert_str_eq(o.rec[0].key, "A");
	ck_assert_str_eq(o.rec[1].key, "B");
	ck_assert_str_eq(o.rec[2].key, "C");
	wa[0] = ev[0]; wa[1] = ev[2]; la[0] = len[0]; la[1] = len[2];
	wb[0] = ev[1]; wb[1] = ev[3]; lb[0] = len[1]; lb[1] = len[3];
	for (int i = 0; i < 4; i++) {
		wc[i] = ev[4 + i];
		lc[i] = len[4 + i];
	}
	j = deaggregate(o.rec[0].data, o.rec[0].len, "A");
	assert_deagg(j, wa, la, 2, "A");
	json_object_put(j);
	j = deaggregate(o.rec[1].data, o.rec[1].len, "B");
	assert_deagg(j, wb, lb, 2, "B");
	json_object_put(j);
	j = deaggregate(o.rec[2].data, o.rec[2].len, "C");
	assert_deagg(j, wc, lc, 4, "C");
	json_object_put(j);
	free_body(&o);
	for (int i = 0; i < 8; i++)
		free(ev[i]);
	fixture_free(fx);
}
END_TEST

START_TEST(test_kpl_record_exact_and_over)
{
	size_t inner = kpl_inner_size(200), fixed = kpl_fixed_size("k");
	uint32_t exact = (uint32_t)(fixed + 3 * inner + 1);
	struct fixture *fx = fixture_new(FORMAT_KPL, exact, 5 * MiB, "k");
	struct fixture *fy = fixture_new(FORMAT_KPL, exact - 1, 5 * MiB, "k");
	uint8_t *e = make_event(200, NULL, 5);
	static struct body_out o;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(batch_add(&fx->b, e, 200, false), BATCH_ADDED);
	ck_assert_uint_eq(fx->b.nkrec, 1);
	ck_assert_uint_eq(fx->b.kin_total, exact);
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 1);
	ck_assert_uint_eq(o.rec[0].len + 1, exact);
	free_body(&o);

	/* One byte less room: the third event opens a second aggregate. */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(batch_add(&fy->b, e, 200, false), BATCH_ADDED);
	ck_assert_uint_eq(fy->b.nkrec, 2);
	ck_assert_int_eq(batch_finish(&fy->b), 0);
	parse_body(&fy->b, &o);
	ck_assert_uint_eq(o.n, 2);
	ck_assert_uint_eq(o.rec[0].len, fixed + 2 * inner);
	ck_assert_uint_eq(o.rec[1].len, fixed + inner);
	free_body(&o);
	free(e);
	fixture_free(fx);
	fixture_free(fy);
}
END_TEST

START_TEST(test_kpl_too_large_and_500)
{
	size_t fixed = kpl_fixed_size("k");
	struct fixture *fx = fixture_new(FORMAT_KPL, 1024, 5 * MiB, "k");
	struct fixture *fy = fixture_new(FORMAT_KPL, 1024, 5 * MiB, NULL);
	uint8_t *e = make_event(1024, NULL, 1);
	size_t fit = 0;
	char rid[16];
	uint8_t *ev[501];

	/* Largest event that fits alone: fixed + inner(len) + key == 1024. */
	for (size_t l = 1; l < 1024; l++)
		if (fixed + kpl_inner_size(l) + 1 <= 1024)
			fit = l;
	ck_assert_int_eq(batch_add(&fx->b, e, fit + 1, false), BATCH_TOO_LARGE);
	ck_assert_int_eq(batch_add(&fx->b, e, fit, false), BATCH_ADDED);
	ck_assert_uint_eq(fx->b.kin_total, 1024);
	/* 500 distinct keys: 500 aggregates, the 501st key does not fit. */
	for (unsigned i = 0; i < 501; i++) {
		snprintf(rid, sizeof(rid), "k%u", i);
		ev[i] = make_event(100, rid, i);
	}
	for (unsigned i = 0; i < 500; i++)
		ck_assert_int_eq(batch_add(&fy->b, ev[i], 100, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fy->b, ev[500], 100, false), BATCH_FULL);
	ck_assert_int_eq(batch_add(&fy->b, ev[499], 100, false), BATCH_ADDED); /* joins k499 */
	ck_assert_int_eq(batch_finish(&fy->b), 0);
	for (unsigned i = 0; i < 501; i++)
		free(ev[i]);
	free(e);
	fixture_free(fx);
	fixture_free(fy);
}
END_TEST

/* ---- partial failures ---- */

START_TEST(test_apply_resends_failed_in_order)
{
	struct fixture *fx = fixture_new(FORMAT_EVENT, MiB, 5 * MiB, NULL);
	static struct body_out o;
	const uint8_t st1[6] = { 0, 1, 0, 1, 1, 0 }, st2[3] = { 1, 0, 0 }, st3[1] = { 0 };
	struct batch_settled s = { 0 };
	uint8_t *ev[6];
	char rid[8];

	for (unsigned i = 0; i < 6; i++) {
		snprintf(rid, sizeof(rid), "r%u", i);
		ev[i] = make_event(100 + i, rid, i);
		ck_assert_int_eq(batch_add(&fx->b, ev[i], 100 + i, i == 3), BATCH_ADDED);
	}
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	ck_assert_uint_eq(batch_nsent(&fx->b), 6);
	batch_apply(&fx->b, st1, 6, &s);
	ck_assert_uint_eq(s.records_ok, 3);
	ck_assert_uint_eq(s.records_failed, 3);
	ck_assert(!s.summary_ok);
	ck_assert(batch_pending(&fx->b));
	ck_assert_uint_eq(batch_nsent(&fx->b), 3);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 3);
	ck_assert(memcmp(o.rec[0].data, ev[1], 101) == 0 && strcmp(o.rec[0].key, "r1") == 0);
	ck_assert(memcmp(o.rec[1].data, ev[3], 103) == 0 && strcmp(o.rec[1].key, "r3") == 0);
	ck_assert(memcmp(o.rec[2].data, ev[4], 104) == 0 && strcmp(o.rec[2].key, "r4") == 0);
	free_body(&o);
	batch_apply(&fx->b, st2, 3, &s);
	ck_assert(s.summary_ok);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 1);
	ck_assert(memcmp(o.rec[0].data, ev[1], 101) == 0);
	free_body(&o);
	batch_apply(&fx->b, st3, 1, &s);
	ck_assert(!batch_pending(&fx->b));
	ck_assert_uint_eq(s.records_ok, 6);
	ck_assert_uint_eq(s.events_ok, 6);
	ck_assert_uint_eq(s.bytes_ok, 100 + 101 + 102 + 103 + 104 + 105);
	ck_assert_uint_eq(s.records_failed, 4);
	for (unsigned i = 0; i < 6; i++)
		free(ev[i]);
	fixture_free(fx);
}
END_TEST

START_TEST(test_drop_pending)
{
	struct fixture *fx = fixture_new(FORMAT_NDJSON, 1024, 5 * MiB, "k");
	struct batch_settled s = { 0 };
	const uint8_t st[2] = { 0, 1 };
	uint8_t *e = make_event(600, NULL, 1);

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(batch_add(&fx->b, e, 600, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&fx->b, e, 300, true), BATCH_ADDED);
	ck_assert_uint_eq(fx->b.nkrec, 4);  /* 600 | 600 | 600 | 600+300 */
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	batch_apply(&fx->b, st, 2, &s);
	ck_assert_uint_eq(s.events_ok, 1);
	batch_drop_pending(&fx->b, &s);
	ck_assert(!batch_pending(&fx->b));
	ck_assert_uint_eq(s.records_dropped, 3);
	ck_assert_uint_eq(s.events_dropped, 4);
	ck_assert_uint_eq(s.bytes_dropped, 600 * 3 + 300);
	ck_assert(s.summary_dropped);
	free(e);
	fixture_free(fx);
}
END_TEST

START_TEST(test_stream_name_and_arn)
{
	struct kte_config c = make_cfg(FORMAT_EVENT, MiB, 5 * MiB, "k\"\\q");
	struct pkey_state pk;
	static struct batch b;
	static struct body_out o;

	snprintf(c.stream_arn, sizeof(c.stream_arn), "arn:aws:kinesis:us-east-1:123456789012:stream/test-stream");
	pkey_init(&pk, &c, NULL);
	ck_assert_int_eq(batch_init(&b, &c, &pk), 0);
	ck_assert_int_eq(batch_finish(&b), 0);      /* an empty batch is still valid JSON */
	ck_assert_int_eq(batch_add(&b, (const uint8_t *)"{}", 2, false), BATCH_FULL);
	batch_reset(&b, 0);
	ck_assert_int_eq(batch_add(&b, (const uint8_t *)"{}", 2, false), BATCH_ADDED);
	ck_assert_int_eq(batch_add(&b, (const uint8_t *)"", 0, false), BATCH_TOO_LARGE);
	ck_assert_int_eq(batch_finish(&b), 0);
	parse_body(&b, &o);
	ck_assert_str_eq(o.stream, "test-stream");
	ck_assert_str_eq(o.arn, "arn:aws:kinesis:us-east-1:123456789012:stream/test-stream");
	ck_assert_uint_eq(o.n, 1);
	ck_assert_str_eq(o.rec[0].key, "k\"\\q");   /* escaped in JSON, 4 bytes counted */
	ck_assert_uint_eq(b.kin_total, 2 + 4);
	free_body(&o);
	batch_cleanup(&b);
}
END_TEST

START_TEST(test_random_keys_spread)
{
	struct kte_config c = make_cfg(FORMAT_EVENT, MiB, 5 * MiB, NULL);
	struct pkey_state pk;
	static struct batch b;
	static struct body_out o;

	c.pkey_mode = PKEY_RANDOM;
	pkey_init(&pk, &c, NULL);
	ck_assert_int_eq(batch_init(&b, &c, &pk), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(batch_add(&b, (const uint8_t *)"{\"record\":{\"requestId\":\"x\"}}", 29,
		    false), BATCH_ADDED);
	ck_assert_int_eq(batch_finish(&b), 0);
	parse_body(&b, &o);
	for (size_t i = 0; i < o.n; i++) {
		ck_assert_uint_eq(strlen(o.rec[i].key), PKEY_RANDOM_LEN);
		for (size_t k = 0; k < i; k++)
			ck_assert_str_ne(o.rec[i].key, o.rec[k].key);
	}
	free_body(&o);
	batch_cleanup(&b);
}
END_TEST

/* ---- gzip ---- */

/* Inflates a gzip member (fails the test unless it is one, complete). Returns malloc'd bytes. */
static uint8_t *
gunzip(const uint8_t *in, size_t len, size_t *outlen)
{
	z_stream zs;
	size_t cap = 64 * 1024;
	uint8_t *out = malloc(cap);
	int rc;

	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(inflateInit2(&zs, 15 + 16), Z_OK);
	ck_assert_uint_ge(len, 18);
	ck_assert(in[0] == 0x1f && in[1] == 0x8b);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	do {
		if (zs.total_out == cap) {
			cap *= 2;
			out = realloc(out, cap);
		}
		zs.next_out = out + zs.total_out;
		zs.avail_out = (uInt)(cap - zs.total_out);
		rc = inflate(&zs, Z_NO_FLUSH);
		ck_assert_msg(rc == Z_OK || rc == Z_STREAM_END, "inflate: %d", rc);
	} while (rc != Z_STREAM_END);
	ck_assert_uint_eq(zs.avail_in, 0);      /* one member, nothing after it */
	*outlen = zs.total_out;
	inflateEnd(&zs);
	return out;
}

/* A function log line of about len bytes: Lambda text or structured JSON, varied words. */
static size_t
log_line(char *buf, size_t cap, unsigned i, bool json)
{
	static const char *const words[] = { "user", "order", "cache", "miss", "hit", "db", "query",
	    "took", "ms", "retry", "payment", "accepted", "item", "sku", "warehouse", "region" };
	uint32_t x = i * 2654435761u;
	int n;

	if (json)
		n = snprintf(buf, cap, "{\"time\":\"2026-11-28T05:38:13.%03uZ\",\"type\":\"function\",\"record\":"
		    "{\"level\":\"INFO\",\"requestId\":\"4e4c6f2a-%04x-4000-8000-%012u\",\"message\":\"",
		    i % 1000, x & 0xffff, i / 50);
	else
		n = snprintf(buf, cap, "2026-11-28T05:38:13.%03uZ\t4e4c6f2a-%04x-4000-8000-%012u\tINFO\t",
		    i % 1000, x & 0xffff, i / 50);
	for (unsigned w = 0; w < 12; w++) {
		x = x * 1103515245u + 12345u;
		n += snprintf(buf + n, cap - (size_t)n, "%s%s=%u", w ? " " : "", words[(x >> 16) % 16], (x >> 8) % 1000);
	}
	if (json)
		n += snprintf(buf + n, cap - (size_t)n, "\"}}");
	return (size_t)n;
}

START_TEST(test_gzip_event_round_trip)
{
	struct fixture *fx;
	static struct body_out o;
	char ev[20][512];
	size_t len[20];

	fx = calloc(1, sizeof(*fx));
	fx->cfg = make_cfg(FORMAT_EVENT, MiB, 5 * MiB, NULL);
	fx->cfg.compression = COMPRESSION_GZIP;
	pkey_init(&fx->pk, &fx->cfg, "fn");
	ck_assert_int_eq(batch_init(&fx->b, &fx->cfg, &fx->pk), 0);
	for (unsigned i = 0; i < 20; i++) {
		len[i] = log_line(ev[i], sizeof(ev[i]), i, true);
		ck_assert_int_eq(batch_add(&fx->b, (const uint8_t *)ev[i], len[i], false), BATCH_ADDED);
	}
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, 20);
	for (unsigned i = 0; i < 20; i++) {
		size_t n;
		uint8_t *d = gunzip(o.rec[i].data, o.rec[i].len, &n);

		ck_assert_uint_eq(n, len[i]);
		ck_assert(memcmp(d, ev[i], n) == 0);
		ck_assert_uint_eq(fx->b.krec[i].data_len, o.rec[i].len);       /* limits count this size */
		ck_assert_uint_eq(fx->b.krec[i].event_bytes, len[i]);
		free(d);
	}
	free_body(&o);
	fixture_free(fx);
}
END_TEST

/* Adds log lines until the batch is full; checks every record gunzips to its lines, in order. */
static void
gzip_ndjson_fill(uint32_t max_record, uint32_t max_request, bool json, unsigned *nrec_out)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	static struct body_out o;
	static char lines[60000][300];
	static size_t lens[60000];
	unsigned n = 0, at = 0;
	uint64_t kin = 0;
	int rc;

	fx->cfg = make_cfg(FORMAT_NDJSON, max_record, max_request, "k");
	fx->cfg.compression = COMPRESSION_GZIP;
	pkey_init(&fx->pk, &fx->cfg, "fn");
	ck_assert_int_eq(batch_init(&fx->b, &fx->cfg, &fx->pk), 0);
	for (;;) {
		ck_assert_uint_lt(n, 60000);
		lens[n] = log_line(lines[n], sizeof(lines[n]), n, json);
		rc = batch_add(&fx->b, (const uint8_t *)lines[n], lens[n], false);
		if (rc == BATCH_FULL)
			break;
		ck_assert_int_eq(rc, BATCH_ADDED);
		n++;
	}
	ck_assert_int_eq(batch_finish(&fx->b), 0);
	parse_body(&fx->b, &o);
	ck_assert_uint_eq(o.n, fx->b.nkrec);
	for (size_t r = 0; r < o.n; r++) {
		size_t dl, off = 0;
		uint8_t *d = gunzip(o.rec[r].data, o.rec[r].len, &dl);

		ck_assert_uint_le(o.rec[r].len + 1, max_record);                  /* with its key */
		ck_assert_uint_eq(fx->b.krec[r].data_len, o.rec[r].len);
		kin += o.rec[r].len + 1;
		/* Filled: every record but the last within 8 KiB of the limit. */
		if (r + 1 < o.n)
			ck_assert_msg(o.rec[r].len + 1 + 8192 >= max_record, "record %zu: %zu of %u bytes",
			    r, o.rec[r].len, max_record);
		for (unsigned e = 0; e < fx->b.krec[r].events; e++, at++) {
			ck_assert(memcmp(d + off, lines[at], lens[at]) == 0);
			off += lens[at];
			if (e + 1 < fx->b.krec[r].events)
				ck_assert_int_eq(d[off++], '\n');
		}
		ck_assert_uint_eq(off, dl);
		free(d);
	}
	ck_assert_uint_eq(at, n);
	ck_assert_uint_le(kin, max_request);
	ck_assert_uint_eq(kin, fx->b.kin_total);
	*nrec_out = (unsigned)o.n;
	free_body(&o);
	fixture_free(fx);
}

START_TEST(test_gzip_ndjson_round_trip_and_record_limit)
{
	unsigned nrec;

	/* 64 KiB records, 1 MiB requests: the record limit binds; JSON and text lines. */
	gzip_ndjson_fill(64 * 1024, MiB, true, &nrec);
	ck_assert_uint_ge(nrec, 15);
	gzip_ndjson_fill(64 * 1024, MiB, false, &nrec);
	ck_assert_uint_ge(nrec, 15);
}
END_TEST

START_TEST(test_gzip_ndjson_request_limit)
{
	unsigned nrec;

	/* 1 MiB records, 256 KiB requests: the request limit binds on the compressed bytes. */
	gzip_ndjson_fill(MiB, 256 * 1024, true, &nrec);
	ck_assert_uint_eq(nrec, 1);
}
END_TEST

static Suite *
batch_suite(void)
{
	Suite *s = suite_create("batch");
	TCase *tc = tcase_create("limits");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_event_500_records);
	tcase_add_test(tc, test_event_request_exactly_5mib);
	tcase_add_test(tc, test_event_request_one_byte_over);
	tcase_add_test(tc, test_event_record_limit);
	tcase_add_test(tc, test_larger_limits);
	tcase_add_test(tc, test_ndjson_record_exact_and_over);
	tcase_add_test(tc, test_ndjson_500_records_and_request_bytes);
	tcase_add_test(tc, test_kpl_record_exact_and_over);
	tcase_add_test(tc, test_kpl_too_large_and_500);
	suite_add_tcase(s, tc);
	tc = tcase_create("formats");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ndjson_packs_events);
	tcase_add_test(tc, test_ndjson_newlines_become_spaces);
	tcase_add_test(tc, test_kpl_groups_by_key);
	tcase_add_test(tc, test_stream_name_and_arn);
	tcase_add_test(tc, test_random_keys_spread);
	suite_add_tcase(s, tc);
	tc = tcase_create("gzip");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_gzip_event_round_trip);
	tcase_add_test(tc, test_gzip_ndjson_round_trip_and_record_limit);
	tcase_add_test(tc, test_gzip_ndjson_request_limit);
	suite_add_tcase(s, tc);
	tc = tcase_create("settle");
	tcase_add_test(tc, test_apply_resends_failed_in_order);
	tcase_add_test(tc, test_drop_pending);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(batch_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
