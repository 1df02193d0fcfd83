/* Partition keys: request-id extraction from raw event JSON, the invocation carry-over, modes. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dispatcher/backoff.h"
#include "dispatcher/pkey.h"

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
	tcase_add_test(tc, test_reseed_after_restore);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
