/* Quick single-process checks of the ring's basic contract; the multi-process suite is check_ring.c. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

START_TEST(test_write_peek_release)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats st;
	char buf[100];

	ck_assert_int_eq(ring_create(&r, 8192), 0);
	ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(buf, sizeof(buf), "record-%d", i);

		ck_assert_int_eq(ring_write(&r, buf, (size_t)n), 0);
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_int_eq(rec.len, n);
		ck_assert(memcmp(rec.data, buf, (size_t)n) == 0);
		ck_assert_int_eq(ring_release(&r, rec.next), 0);
	}
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.written_records, 1000);
	ck_assert_uint_eq(st.released_records, 1000);
	ck_assert(ring_empty(&r));
	ring_close(&r);
}
END_TEST

START_TEST(test_full_then_space)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats st;
	char buf[1024 - RING_RECORD_HDR];
	int n = 0;

	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(ring_create(&r, 4096), 0);
	while (ring_write(&r, buf, sizeof(buf)) == 0)
		n++;
	ck_assert_int_eq(n, 4);         /* 4 x 1024 bytes with their headers fill 4096 exactly */
	ck_assert_int_eq(ring_write(&r, buf, sizeof(buf)), -ENOSPC);
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.rejected_records, 2);
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_int_eq(ring_release(&r, rec.next), 0);
	ck_assert_int_eq(ring_write(&r, buf, sizeof(buf)), 0);
	ck_assert_int_eq(ring_write(&r, buf, 2000), -EMSGSIZE);
	ring_close(&r);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ring_smoke");
	TCase *tc = tcase_create("basic");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_write_peek_release);
	tcase_add_test(tc, test_full_then_space);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
