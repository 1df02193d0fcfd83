/* Partition keys: request-id extraction from raw event JSON, the invocation carry-over, modes. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "dispatcher/backoff.h"
#include "dispatcher/pkey.h"
#include "event_type.h"
#include "listener/intake.h"
#include "ring.h"

static struct pkey_state
state(enum partition_key_mode m, const char *fixed)
{
	struct kte_config c;
	struct pkey_state s;

	memset(&c, 0, sizeof(c));
	c.pkey_mode = m;
	if (fixed != NULL)
		snprintf(c.pkey_fixed, sizeof(c.pkey_fixed), "%s", fixed);
	pkey_init(&s, &c, "my-function");
	return s;
}

static size_t
key_of(struct pkey_state *s, const char *ev, char *out)
{
	return pkey_for_event(s, (const uint8_t *)ev, strlen(ev), out);
}

START_TEST(test_scan_finds_fields)
{
	const char *ev = " { \"time\" : \"t\", \"x\":{\"requestId\":\"wrong\",\"a\":[1,{\"b\":\"}\"}]},"
	    "\"type\":\"platform.start\",\"record\": {\"tracing\":{\"requestId\":\"nested\"},"
	    "\"version\":\"$LATEST\",\"s\":\"a\\\"requestId\\\":\\\"no\",\"requestId\":\"459921b5\"} } ";
	const uint8_t *type, *rid;
	size_t tl, rl;

	ck_assert_int_eq(pkey_scan_event((const uint8_t *)ev, strlen(ev), &type, &tl, &rid, &rl), 0);
	ck_assert_uint_eq(tl, 14);
	ck_assert(memcmp(type, "platform.start", 14) == 0);
	ck_assert_uint_eq(rl, 8);
	ck_assert(memcmp(rid, "459921b5", 8) == 0);

	/* Escaped backslashes right before a closing quote; an escaped quote mid-string. */
	ev = "{\"type\":\"x\\\\\",\"m\":\"\\\\\\\"}\\\\\",\"record\":{\"requestId\":\"r\\\\\"}}";
	ck_assert_int_eq(pkey_scan_event((const uint8_t *)ev, strlen(ev), &type, &tl, &rid, &rl), 0);
	ck_assert_uint_eq(tl, 3);
	ck_assert(memcmp(type, "x\\\\", 3) == 0);
	ck_assert_uint_eq(rl, 3);
	ck_assert(memcmp(rid, "r\\\\", 3) == 0);
}
END_TEST

START_TEST(test_scan_malformed)
{
	const char *bad[] = { "", "[]", "\"str\"", "{", "{\"record\":{\"requestId\":\"abc",
	    "{\"record\":{\"requestId\":\"abc\"", "{\"record\" {}}", "{\"a\":1,,}", "{\"type\":\"x\"]",
	    "{\"a\":\"\\", NULL };
	const uint8_t *type, *rid;
	size_t tl, rl;

	for (int i = 0; bad[i] != NULL; i++) {
		int rc = pkey_scan_event((const uint8_t *)bad[i], strlen(bad[i]), &type, &tl, &rid, &rl);

		ck_assert_msg(rc == -EINVAL, "accepted: %s", bad[i]);
		ck_assert(rid == NULL && type == NULL);
	}
	/* A string record, no request id: valid, nothing found. */
	ck_assert_int_eq(pkey_scan_event((const uint8_t *)"{\"type\":\"function\",\"record\":\"[INFO] x\"}",
	    39, &type, &tl, &rid, &rl), 0);
	ck_assert_ptr_null(rid);
	ck_assert_uint_eq(tl, 8);
}
END_TEST

START_TEST(test_request_id_and_carry_over)
{
	struct pkey_state s = state(PKEY_REQUEST_ID, NULL);
	char k[PKEY_MAX + 1];

	/* Init-phase logs: no invocation yet, random key. */
	ck_assert_uint_eq(key_of(&s, "{\"type\":\"function\",\"record\":\"init log\"}", k), 0);
	ck_assert_uint_eq(key_of(&s, "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"R1\"}}", k), 2);
	ck_assert_str_eq(k, "R1");
	/* A text log during R1 goes with R1. */
	ck_assert_uint_eq(key_of(&s, "{\"type\":\"function\",\"record\":\"hello\"}", k), 2);
	ck_assert_str_eq(k, "R1");
	ck_assert_uint_eq(key_of(&s, "{\"type\":\"platform.report\",\"record\":{\"requestId\":\"R1\"}}", k), 2);
	ck_assert_str_eq(k, "R1");
	/* After R1's report: no invocation. */
	ck_assert_uint_eq(key_of(&s, "{\"type\":\"extension\",\"record\":\"bye\"}", k), 0);
	/* An unusable id (escape, too long) is not taken. */
	ck_assert_uint_eq(key_of(&s, "{\"record\":{\"requestId\":\"a\\\"b\"}}", k), 0);
	char longid[400] = "{\"record\":{\"requestId\":\"";
	memset(longid + strlen(longid), 'x', 257);
	strcat(longid, "\"}}");
	ck_assert_uint_eq(key_of(&s, longid, k), 0);
	ck_assert_uint_eq(key_of(&s, "{\"record\":{\"requestId\":\"\"}}", k), 0);
}
END_TEST

START_TEST(test_modes)
{
	struct pkey_state f = state(PKEY_FIXED, "tenant-7"), fn = state(PKEY_FUNCTION, NULL);
	struct pkey_state r = state(PKEY_RANDOM, NULL);
	char k[PKEY_MAX + 1], k2[PKEY_MAX + 1];
	const char *ev = "{\"record\":{\"requestId\":\"R1\"}}";

	ck_assert_uint_eq(key_of(&f, ev, k), 8);
	ck_assert_str_eq(k, "tenant-7");
	ck_assert_uint_eq(key_of(&fn, ev, k), 11);
	ck_assert_str_eq(k, "my-function");
	ck_assert_uint_eq(key_of(&r, ev, k), 0);
	ck_assert_uint_eq(pkey_random(&r, k), PKEY_RANDOM_LEN);
	ck_assert_uint_eq(pkey_random(&r, k2), PKEY_RANDOM_LEN);
	ck_assert_str_ne(k, k2);
	ck_assert_uint_eq(strspn(k, "0123456789abcdef"), PKEY_RANDOM_LEN);
}
END_TEST

/*
 * The listener's metadata gives the same keys as scanning: a batch of varied events
 * goes through the real intake into a ring; each record is keyed once with its
 * metadata (state h) and once by scanning (state s), in order; keys and the carried
 * invocation must agree, and h must never have scanned.
 */
START_TEST(test_metadata_matches_scan)
{
	static const char body[] = "["
	    "{\"time\":\"t\",\"type\":\"platform.initStart\",\"record\":{\"phase\":\"init\"}},"
	    "{\"type\":\"function\",\"record\":\"init log\"},"
	    "{\"time\":\"t\",\"type\":\"platform.start\",\"record\":{\"requestId\":\"R-1\",\"version\":\"$LATEST\"}},"
	    "{\"type\":\"function\",\"record\":\"text log during R-1\"},"
	    "{\"type\":\"function\",\"record\":{\"timestamp\":\"t\",\"level\":\"INFO\",\"message\":\"m\","
	    "\"requestId\":\"R-1b\"}},"
	    "{\"x\":{\"requestId\":\"not-this\"},\"type\":\"extension\",\"record\":\"ext\"},"
	    "{\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":\"R-1\",\"status\":\"success\"}},"
	    "{\"type\":\"platform.report\",\"record\":{\"requestId\":\"R-1\"}},"
	    "{\"type\":\"extension\",\"record\":\"after the report\"},"
	    "{\"record\":{\"requestId\":\"esc\\\"aped\"},\"type\":\"function\"},"
	    "{\"type\":\"platform.start\",\"record\":{\"tracing\":{\"requestId\":\"nested\"},\"requestId\":\"R-2\"}},"
	    "\"a string\", 42, [1,2],"
	    "{\"type\":\"function\",\"record\":\"late\"}"
	    "]";
	struct kte_config cfg;
	struct control_fds fds;
	struct control *ctl;
	struct intake in;
	struct intake_scratch w = { 0 };
	struct intake_result res;
	struct ring r;
	struct ring_record rec;
	struct pkey_state h = state(PKEY_REQUEST_ID, NULL), sc = state(PKEY_REQUEST_ID, NULL);
	char kh[PKEY_MAX + 1], ks[PKEY_MAX + 1];
	size_t n = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.max_record_bytes = 1u << 20;
	ck_assert_int_eq(ring_create(&r, 1u << 16), 0);
	ctl = control_new(&fds);
	ck_assert_ptr_nonnull(ctl);
	ck_assert_int_eq(intake_init(&in, &cfg, &r, ctl, -1, 100), 0);
	ck_assert_int_eq(intake_batch(&in, &w, (const uint8_t *)body, sizeof(body) - 1, &res), 200);
	ck_assert_uint_eq(res.written, 15);
	while (ring_peek(&r, &rec) == 0) {
		size_t lh, ls;

		ck_assert(rec.meta.flags & RING_META_VALID);
		ck_assert(rec.meta.flags & RING_META_ARRIVAL);
		ck_assert_uint_lt(rec.meta.type, EVENT_TYPES);
		pkey_hint(&h, &rec);
		lh = pkey_for_event(&h, rec.data, rec.len, kh);
		ls = pkey_for_event(&sc, rec.data, rec.len, ks);
		ck_assert_msg(lh == ls && (lh == 0 || strcmp(kh, ks) == 0), "event %zu (%.*s): %zu '%s' vs %zu '%s'",
		    n, (int)rec.len, rec.data, lh, lh ? kh : "", ls, ls ? ks : "");
		n++;
	}
	ck_assert_uint_eq(n, 15);
	ck_assert_uint_eq(h.hinted, 15);
	ck_assert_uint_eq(h.scanned, 0);
	ck_assert_uint_eq(sc.scanned, 15);
	intake_scratch_cleanup(&w);
	control_free(ctl, &fds);
	ring_close(&r);
}
END_TEST

/* Metadata from shared memory is hostile: a span outside the event or an unknown type is not used. */
START_TEST(test_hostile_hint_ignored)
{
	const char *ev = "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"R9\"}}";
	struct ring_record rec = { .data = (const uint8_t *)ev, .len = (uint32_t)strlen(ev) };
	struct ring_meta bad[] = {
		{ (uint32_t)strlen(ev) - 1, 2, EVENT_TYPE_PLATFORM_START, RING_META_VALID },   /* past the end */
		{ 0xfffffff0u, 0x20, EVENT_TYPE_PLATFORM_START, RING_META_VALID },            /* wraps */
		{ 0, PKEY_MAX + 1, EVENT_TYPE_PLATFORM_START, RING_META_VALID },              /* too long */
		{ 0, 0, EVENT_TYPES, RING_META_VALID },                                       /* unknown type */
		{ 0, 0, EVENT_TYPE_NOT_OBJECT, 0 },                                           /* not valid */
	};
	char k[PKEY_MAX + 1];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pkey_state s = state(PKEY_REQUEST_ID, NULL);

		rec.meta = bad[i];
		pkey_hint(&s, &rec);
		ck_assert_uint_eq(pkey_for_event(&s, rec.data, rec.len, k), 2);
		ck_assert_str_eq(k, "R9");
		ck_assert_uint_eq(s.hinted, 0);
		ck_assert_uint_eq(s.scanned, 1);
	}
	/* A valid hint is used once, and only for the bytes it was given for. */
	{
		struct pkey_state s = state(PKEY_REQUEST_ID, NULL);
		const char *other = "{\"type\":\"function\",\"record\":{\"requestId\":\"R8\"}}";

		rec.meta = (struct ring_meta){ (uint32_t)(strstr(ev, "R9") - ev), 2, EVENT_TYPE_PLATFORM_START,
		    RING_META_VALID };
		pkey_hint(&s, &rec);
		ck_assert_uint_eq(key_of(&s, other, k), 2);
		ck_assert_str_eq(k, "R8");
		ck_assert_uint_eq(s.scanned, 1);
		ck_assert_uint_eq(pkey_for_event(&s, rec.data, rec.len, k), 2);
		ck_assert_str_eq(k, "R9");
		ck_assert_uint_eq(s.hinted, 1);
		ck_assert_uint_eq(pkey_for_event(&s, rec.data, rec.len, k), 2);
		ck_assert_uint_eq(s.scanned, 2);
	}
}
END_TEST

/*
 * Two processes forked from one state stand for two environments restored from one
 * snapshot: without a reseed they draw the same keys and jitter; after it, not.
 */
static void
draw_in_child(struct pkey_state *s, struct backoff_rng *r, bool reseed, char key[PKEY_MAX + 1],
    double *jitter)
{
	int fds[2];
	pid_t pid;
	struct {
		char key[PKEY_MAX + 1];
		double jitter;
	} out;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (reseed) {
			pkey_reseed(s);
			backoff_rng_init(r);
		}
		memset(&out, 0, sizeof(out));
		pkey_random(s, out.key);
		out.jitter = backoff_rand01(r);
		_exit(write(fds[1], &out, sizeof(out)) == sizeof(out) ? 0 : 1);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], &out, sizeof(out)), (int)sizeof(out));
	close(fds[0]);
	waitpid(pid, NULL, 0);
	memcpy(key, out.key, PKEY_MAX + 1);
	*jitter = out.jitter;
}

START_TEST(test_reseed_after_restore)
{
	struct pkey_state s = state(PKEY_RANDOM, NULL);
	struct backoff_rng r;
	char a[PKEY_MAX + 1], b[PKEY_MAX + 1];
	double ja, jb;

	backoff_rng_init(&r);
	draw_in_child(&s, &r, false, a, &ja);
	draw_in_child(&s, &r, false, b, &jb);
	ck_assert_str_eq(a, b);                 /* the hazard: one snapshot, one sequence */
	ck_assert(ja == jb);
	draw_in_child(&s, &r, true, a, &ja);
	draw_in_child(&s, &r, true, b, &jb);
	ck_assert_uint_eq(strlen(a), PKEY_RANDOM_LEN);
	ck_assert_str_ne(a, b);
	ck_assert(ja != jb);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pkey");
	TCase *tc = tcase_create("pkey");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_scan_finds_fields);
	tcase_add_test(tc, test_scan_malformed);
	tcase_add_test(tc, test_request_id_and_carry_over);
	tcase_add_test(tc, test_modes);
	tcase_add_test(tc, test_metadata_matches_scan);
	tcase_add_test(tc, test_hostile_hint_ignored);
	tcase_add_test(tc, test_reseed_after_restore);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
