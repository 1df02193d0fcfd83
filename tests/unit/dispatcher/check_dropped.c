/*
 * The dropped-summary event: collection from the ring and the control block, the
 * deltas since the last summary, the JSON it produces (parsed back with json-c), and
 * every buffer size from too small to enough.
 */
#include <check.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "dispatcher/dropped.h"
#include "ring.h"

START_TEST(test_names_unique_and_bounded)
{
	for (int i = 0; i < DROP_KINDS; i++) {
		ck_assert_str_ne(dropped_name((enum drop_kind)i), "?");
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(dropped_name((enum drop_kind)i), dropped_name((enum drop_kind)j));
	}
	ck_assert_str_eq(dropped_name(DROP_KINDS), "?");
	ck_assert_str_eq(dropped_name((enum drop_kind)-1), "?");
}
END_TEST

START_TEST(test_collect_from_ring_and_control)
{
	struct control_fds fds;
	struct control *ctl = control_new(&fds);
	struct drop_counts local = { { 0 } }, out;
	struct ring r;
	char big[1024 - RING_RECORD_HDR] = { 0 };   /* 1,024 bytes in the ring with its header */

	ck_assert_ptr_nonnull(ctl);
	ck_assert_int_eq(ring_create(&r, 4096), 0);
	local.v[DROP_TOO_LARGE] = 3;
	local.v[DROP_REJECTED] = 4;
	/* Four writes of 1 KiB with their headers fill the ring exactly; the next two are refused. */
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(ring_write(&r, big, sizeof(big)), 0);
	ck_assert_int_ne(ring_write(&r, big, sizeof(big)), 0);
	ck_assert_int_ne(ring_write(&r, big, sizeof(big)), 0);
	atomic_store(&ctl->listener.too_large, 5);
	atomic_store(&ctl->listener.oversized_dropped, 6);
	atomic_store(&ctl->listener.ring_full, 7);
	atomic_store(&ctl->listener.bad_request, 8);
	atomic_store(&ctl->listener.logs_dropped_records, 9);
	dropped_collect(&out, &local, &r, ctl);
	ck_assert_uint_eq(out.v[DROP_TOO_LARGE], 3);
	ck_assert_uint_eq(out.v[DROP_REJECTED], 4);
	ck_assert_uint_eq(out.v[DROP_RING_REJECTED], 2);
	ck_assert_uint_eq(out.v[DROP_RING_ABANDONED], 0);
	ck_assert_uint_eq(out.v[DROP_LISTENER_TOO_LARGE], 5);
	ck_assert_uint_eq(out.v[DROP_LISTENER_OVERSIZED], 6);
	ck_assert_uint_eq(out.v[DROP_LISTENER_RING_FULL], 7);
	ck_assert_uint_eq(out.v[DROP_LISTENER_BAD_REQUEST], 8);
	ck_assert_uint_eq(out.v[DROP_LAMBDA_LOGS_DROPPED], 9);
	ck_assert_uint_eq(out.v[DROP_RING_CORRUPT], 0);
	/* A corrupted record: the reader drops the four records from there on and ringCorrupt says so. */
	{
		struct ring_record rec;
		uint32_t bad = 12345;

		memcpy(r.data + 12, &bad, sizeof(bad));      /* the first record's check word */
		ck_assert_int_eq(ring_peek(&r, &rec), -EBADMSG);
		ck_assert_uint_eq(ring_skip_corrupt(&r), 4096);
		dropped_collect(&out, &local, &r, ctl);
		ck_assert_uint_eq(out.v[DROP_RING_CORRUPT], 4);
	}
	/* Without ring and control block: the local counts only. */
	dropped_collect(&out, &local, NULL, NULL);
	ck_assert_uint_eq(out.v[DROP_REJECTED], 4);
	ck_assert_uint_eq(out.v[DROP_LISTENER_RING_FULL], 0);
	ring_close(&r);
	control_free(ctl, &fds);
}
END_TEST

START_TEST(test_any_compares_with_base)
{
	struct drop_counts cur = { { 0 } }, base = { { 0 } };

	ck_assert(!dropped_any(&cur, &base));
	cur.v[DROP_LAMBDA_LOGS_DROPPED] = 1;
	ck_assert(dropped_any(&cur, &base));
	base.v[DROP_LAMBDA_LOGS_DROPPED] = 1;
	ck_assert(!dropped_any(&cur, &base));
	/* A base above the current count (a restarted process's view) is no drop. */
	base.v[DROP_TOO_LARGE] = 10;
	ck_assert(!dropped_any(&cur, &base));
}
END_TEST

START_TEST(test_format_is_the_documented_json)
{
	struct drop_counts cur = { { 0 } }, base = { { 0 } };
	char buf[1024];
	struct json_object *o, *rec, *v;
	int n;

	for (int i = 0; i < DROP_KINDS; i++) {
		cur.v[i] = 100u + (unsigned)i;
		base.v[i] = (unsigned)i;
	}
	base.v[DROP_REJECTED] = 500;    /* above cur: reported as 0, never negative */
	/* 2026-11-28T05:00:00.123Z and one hour before. */
	n = dropped_format(buf, sizeof(buf), &cur, &base, 1795842000123ull, 1795838400000ull);
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(strlen(buf), (size_t)n);
	ck_assert_ptr_nonnull(o = json_tokener_parse(buf));
	ck_assert(json_object_object_get_ex(o, "type", &v));
	ck_assert_str_eq(json_object_get_string(v), "extension.kte.dropped");
	ck_assert(json_object_object_get_ex(o, "time", &v));
	ck_assert_str_eq(json_object_get_string(v), "2026-11-28T05:00:00.123Z");
	ck_assert(json_object_object_get_ex(o, "record", &rec));
	ck_assert(json_object_object_get_ex(rec, "sinceTime", &v));
	ck_assert_str_eq(json_object_get_string(v), "2026-11-28T04:00:00.000Z");
	for (int i = 0; i < DROP_KINDS; i++) {
		ck_assert_msg(json_object_object_get_ex(rec, dropped_name((enum drop_kind)i), &v), "%s missing",
		    dropped_name((enum drop_kind)i));
		ck_assert_int_eq(json_object_get_int64(v), i == DROP_REJECTED ? 0 : 100);
	}
	ck_assert_int_eq(json_object_object_length(rec), DROP_KINDS + 1);
	json_object_put(o);
}
END_TEST

START_TEST(test_format_buffer_sizes)
{
	struct drop_counts cur = { { 0 } }, base = { { 0 } };
	char full[1024], *small;
	int want;

	cur.v[DROP_TOO_LARGE] = UINT64_MAX;
	want = dropped_format(full, sizeof(full), &cur, &base, 0, 0);
	ck_assert_int_gt(want, 0);
	/* Every size below want + 1 is refused; want + 1 gives the same text. */
	for (size_t len = 0; len <= (size_t)want + 1; len++) {
		small = malloc(len ? len : 1);
		if (len <= (size_t)want)
			ck_assert_int_eq(dropped_format(small, len, &cur, &base, 0, 0), -ENOSPC);
		else {
			ck_assert_int_eq(dropped_format(small, len, &cur, &base, 0, 0), want);
			ck_assert_str_eq(small, full);
		}
		free(small);
	}
}
END_TEST

static Suite *
dropped_suite(void)
{
	Suite *s = suite_create("dropped");
	TCase *tc = tcase_create("dropped");

	tcase_add_test(tc, test_names_unique_and_bounded);
	tcase_add_test(tc, test_collect_from_ring_and_control);
	tcase_add_test(tc, test_any_compares_with_base);
	tcase_add_test(tc, test_format_is_the_documented_json);
	tcase_add_test(tc, test_format_buffer_sizes);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(dropped_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
