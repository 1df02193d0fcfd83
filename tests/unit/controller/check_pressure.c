/* Push back's marks and its log rate limit (controller/pressure.c). */
#include <check.h>
#include <stdlib.h>

#include "controller/pressure.h"

START_TEST(test_marks)
{
	const uint64_t cap = 8u << 20;

	ck_assert(!pressure_high(0, cap));
	ck_assert(!pressure_high(cap / 2, cap));           /* at the mark: not above it */
	ck_assert(pressure_high(cap / 2 + 1, cap));
	ck_assert(pressure_high(cap, cap));
	ck_assert(pressure_low(0, cap));
	ck_assert(pressure_low(PRESSURE_LOW_MAX_BYTES, cap));
	ck_assert(!pressure_low(PRESSURE_LOW_MAX_BYTES + 1, cap));       /* 25% would be 2 MiB */
	ck_assert(pressure_low(1024, 4096));                             /* small ring: 25% */
	ck_assert(!pressure_low(1025, 4096));
	/* Between the marks: neither starts a hold nor ends one (hysteresis). */
	ck_assert(!pressure_high(cap / 3, cap) && !pressure_low(cap / 3, cap));
	ck_assert(pressure_low(256 << 10, 1u << 20) && !pressure_low((256 << 10) + 1, 1u << 20));
	/* Large rings do not overflow the arithmetic. */
	ck_assert(pressure_high(1ull << 40, 1ull << 40));
	ck_assert(pressure_low(0, 0) && !pressure_high(5, 0));
	/* Watch: the ring plus one more invocation like the last one would cross the mark. */
	ck_assert(!pressure_watch(cap / 8, cap / 8, cap));
	ck_assert(pressure_watch(cap / 8, cap / 2, cap));
	ck_assert(pressure_watch(cap, 0, cap));
	ck_assert(!pressure_watch(0, 0, cap));
	ck_assert_uint_eq(pressure_pct(cap / 4, cap), 25);
	ck_assert_uint_eq(pressure_pct(cap * 2, cap), 100);
	ck_assert_uint_eq(pressure_pct(1, 0), 0);
}
END_TEST

START_TEST(test_low_mark_follows_the_drain_pace)
{
	const uint64_t cap = 8u << 20;

	/* No pace known yet (too early): the fixed mark, 25% and at most 1 MiB. */
	ck_assert_uint_eq(pressure_low_mark(cap, 0, 0), PRESSURE_LOW_MAX_BYTES);
	ck_assert_uint_eq(pressure_low_mark(cap, 1u << 30, PRESSURE_RATE_MIN_MS - 1), PRESSURE_LOW_MAX_BYTES);
	ck_assert_uint_eq(pressure_low_mark(4096, 0, 0), 1024);
	/* 200 KB/s drained: what that pace sends in PRESSURE_DRAIN_TARGET_MS. */
	ck_assert_uint_eq(pressure_low_mark(cap, 200000, 1000), 200 * PRESSURE_DRAIN_TARGET_MS);
	/* A fast stream: the fixed mark still bounds it. */
	ck_assert_uint_eq(pressure_low_mark(cap, 100u << 20, 1000), PRESSURE_LOW_MAX_BYTES);
	/* Nothing drained: the floor, so that a hold can still end before the deadline. */
	ck_assert_uint_eq(pressure_low_mark(cap, 0, 5000), PRESSURE_LOW_MIN_BYTES);
	/* ... but never above the fixed mark of a small ring. */
	ck_assert_uint_eq(pressure_low_mark(65536, 0, 5000), 16384);
}
END_TEST

START_TEST(test_log_rate_limit)
{
	struct pressure_log p = { 0 };
	uint64_t holds = 0, ms = 0;

	/* The first hold is logged at once. */
	ck_assert(pressure_log_due(&p, 1000, 300, &holds, &ms));
	ck_assert_uint_eq(holds, 1);
	ck_assert_uint_eq(ms, 300);
	/* Within the interval: remembered, not logged. */
	ck_assert(!pressure_log_due(&p, 2000, 200, &holds, &ms));
	ck_assert(!pressure_log_due(&p, 1000 + PRESSURE_LOG_INTERVAL_MS - 1, 100, &holds, &ms));
	/* The next line covers them too. */
	ck_assert(pressure_log_due(&p, 1000 + PRESSURE_LOG_INTERVAL_MS, 50, &holds, &ms));
	ck_assert_uint_eq(holds, 3);
	ck_assert_uint_eq(ms, 350);
	ck_assert(!pressure_log_due(&p, 1000 + PRESSURE_LOG_INTERVAL_MS + 5, 7, &holds, &ms));
	ck_assert(pressure_log_due(&p, 1000 + 3 * PRESSURE_LOG_INTERVAL_MS, 9, &holds, &ms));
	ck_assert_uint_eq(holds, 2);
	ck_assert_uint_eq(ms, 16);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pressure");
	TCase *tc = tcase_create("pressure");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_marks);
	tcase_add_test(tc, test_low_mark_follows_the_drain_pace);
	tcase_add_test(tc, test_log_rate_limit);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
