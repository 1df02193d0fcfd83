/* Flush policy decisions (controller/flush.c). */
#include <check.h>
#include <stdlib.h>

#include "controller/flush.h"

/* flush_on_invoke with the inputs spelled out; the last flush is taken as done. */
static void
invoke(struct flush_state *f, uint64_t now, bool usable, uint64_t count, bool ring_high,
    struct flush_plan *p)
{
	struct flush_inputs in = { .now_ms = now, .runtime_done_usable = usable, .runtime_done_count = count,
		.ring_high = ring_high, .last_flush_done = true };

	flush_on_invoke(f, &in, p);
}

START_TEST(end_waits_only_when_runtime_done_can_come)
{
	struct flush_state f;
	struct flush_plan p;

	flush_init(&f, FLUSH_END, 10000);
	invoke(&f, 1000, true, 0, false, &p);
	ck_assert(p.wait_runtime_done && p.wait_flush);
	ck_assert(!p.request_flush && !p.hold_sending);
	/* No telemetry (202, no platform type, listener given up): nothing to wait for. */
	invoke(&f, 2000, false, 1, false, &p);
	ck_assert(!p.wait_runtime_done && !p.wait_flush && !p.hold_sending);
}
END_TEST

START_TEST(end_stops_waiting_after_a_miss_until_the_count_moves)
{
	struct flush_state f;
	struct flush_plan p;

	flush_init(&f, FLUSH_END, 10000);
	invoke(&f, 1000, true, 4, false, &p);
	ck_assert(p.wait_runtime_done);
	flush_runtime_done_missed(&f, 4);
	invoke(&f, 2000, true, 4, false, &p);
	ck_assert(!p.wait_runtime_done);
	invoke(&f, 3000, true, 4, false, &p);
	ck_assert(!p.wait_runtime_done);
	/* A runtimeDone arrived since: telemetry flows again. */
	invoke(&f, 4000, true, 5, false, &p);
	ck_assert(p.wait_runtime_done);
}
END_TEST

START_TEST(end_stops_waiting_while_kinesis_is_slow)
{
	struct flush_state f;
	struct flush_plan p;
	struct flush_inputs in = { .now_ms = 1000, .runtime_done_usable = true };

	flush_init(&f, FLUSH_END, 10000);
	flush_on_invoke(&f, &in, &p);
	ck_assert(p.wait_runtime_done && p.wait_flush);
	/* One late flush is tolerated; FLUSH_LATE_LIMIT in a row stop the waiting. */
	flush_end_result(&f, false);
	in.now_ms += 100;
	flush_on_invoke(&f, &in, &p);
	ck_assert(p.wait_flush);
	flush_end_result(&f, true);
	for (int i = 0; i < FLUSH_LATE_LIMIT - 1; i++)
		flush_end_result(&f, false);
	in.now_ms += 100;
	flush_on_invoke(&f, &in, &p);
	ck_assert(p.wait_flush);
	flush_end_result(&f, false);
	in.now_ms += 100;
	flush_on_invoke(&f, &in, &p);
	ck_assert(!p.wait_runtime_done && !p.wait_flush);
	in.now_ms += 100;
	flush_on_invoke(&f, &in, &p);
	ck_assert(!p.wait_flush);
	/* The dispatcher caught up with the last request: wait again. */
	in.last_flush_done = true;
	in.now_ms += 100;
	flush_on_invoke(&f, &in, &p);
	ck_assert(p.wait_runtime_done && p.wait_flush);
}
END_TEST

START_TEST(periodic_flushes_at_most_once_per_interval)
{
	struct flush_state f;
	struct flush_plan p;

	flush_init(&f, FLUSH_PERIODIC, 5000);
	ck_assert_int_eq(f.effective, FLUSH_PERIODIC);
	invoke(&f, 100000, true, 0, false, &p);
	ck_assert(p.request_flush && p.hold_sending && !p.wait_runtime_done);
	invoke(&f, 101000, true, 1, false, &p);
	ck_assert(!p.request_flush && p.hold_sending);
	invoke(&f, 104999, true, 2, false, &p);
	ck_assert(!p.request_flush);
	invoke(&f, 105000, true, 3, false, &p);
	ck_assert(p.request_flush);
	invoke(&f, 106000, true, 4, false, &p);
	ck_assert(!p.request_flush);
	/* A ring more than half full does not wait for the interval. */
	invoke(&f, 106001, true, 5, true, &p);
	ck_assert(p.request_flush && p.hold_sending);
	invoke(&f, 106002, true, 6, false, &p);
	ck_assert(!p.request_flush);
}
END_TEST

START_TEST(continuous_never_waits_or_holds)
{
	struct flush_state f;
	struct flush_plan p;

	flush_init(&f, FLUSH_CONTINUOUS, 5000);
	for (int i = 0; i < 30; i++) {
		invoke(&f, 1000 + (uint64_t)i * 10, true, (uint64_t)i, false, &p);
		ck_assert(!p.request_flush && !p.wait_runtime_done && !p.wait_flush && !p.hold_sending);
		ck_assert(!p.changed);
	}
}
END_TEST

START_TEST(adaptive_starts_with_end_and_goes_continuous_when_frequent)
{
	struct flush_state f;
	struct flush_plan p;
	uint64_t t = 50000;
	int i;

	flush_init(&f, FLUSH_ADAPTIVE, 10000);
	ck_assert_int_eq(f.effective, FLUSH_END);
	/* Frequent from the start, but the warm-up keeps `end`. */
	for (i = 1; i <= FLUSH_ADAPTIVE_WARMUP; i++, t += 100) {
		invoke(&f, t, true, (uint64_t)i, false, &p);
		ck_assert_int_eq(f.effective, FLUSH_END);
		ck_assert(p.wait_runtime_done && !p.changed);
	}
	invoke(&f, t, true, (uint64_t)i, false, &p);
	ck_assert_int_eq(f.effective, FLUSH_CONTINUOUS);
	ck_assert(p.changed && !p.wait_runtime_done && !p.hold_sending);
	invoke(&f, t + 100, true, (uint64_t)i + 1, false, &p);
	ck_assert(!p.changed);
}
END_TEST

START_TEST(adaptive_stays_end_when_infrequent)
{
	struct flush_state f;
	struct flush_plan p;

	flush_init(&f, FLUSH_ADAPTIVE, 10000);
	for (int i = 0; i < 50; i++) {
		invoke(&f, 1000 + (uint64_t)i * 5000, true, (uint64_t)i, false, &p);
		ck_assert_int_eq(f.effective, FLUSH_END);
		ck_assert(p.wait_runtime_done);
	}
	ck_assert_uint_eq(flush_mean_interval(&f), 5000);
}
END_TEST

START_TEST(adaptive_hysteresis)
{
	struct flush_state f;
	struct flush_plan p;
	uint64_t t = 1000;
	int i, changes = 0;

	flush_init(&f, FLUSH_ADAPTIVE, 10000);
	for (i = 0; i < 20; i++, t += 200)
		invoke(&f, t, true, 0, false, &p);
	ck_assert_int_eq(f.effective, FLUSH_CONTINUOUS);
	/* Between the two thresholds: no flapping. */
	for (i = 0; i < 30; i++, t += 1500) {
		invoke(&f, t, true, 0, false, &p);
		changes += p.changed;
	}
	ck_assert_int_eq(changes, 0);
	ck_assert_int_eq(f.effective, FLUSH_CONTINUOUS);
	/* Slower than the upper threshold: back to end once the window's mean says so. */
	for (i = 0; i < 30 && f.effective == FLUSH_CONTINUOUS; i++, t += 3000)
		invoke(&f, t, true, 0, false, &p);
	ck_assert_int_eq(f.effective, FLUSH_END);
	ck_assert(p.changed && p.wait_runtime_done);
	ck_assert_uint_gt(flush_mean_interval(&f), FLUSH_ADAPTIVE_SLOW_MS);
	/* Between the thresholds again: stays end. */
	for (i = 0; i < 30; i++, t += 1500)
		invoke(&f, t, true, 0, false, &p);
	ck_assert_int_eq(f.effective, FLUSH_END);
}
END_TEST

START_TEST(wait_until_budget_and_deadline)
{
	/* Budget shorter than the deadline allows. */
	ck_assert_int_eq(flush_wait_until(1000, 10000, 100, 500), 1500);
	/* Deadline minus margin comes first. */
	ck_assert_int_eq(flush_wait_until(1000, 1400, 100, 500), 1300);
	/* Already past: do not wait at all, never a time in the past. */
	ck_assert_int_eq(flush_wait_until(1000, 1050, 100, 500), 1000);
	ck_assert_int_eq(flush_wait_until(1000, 10000, 100, 0), 1000);
}
END_TEST

static Suite *
flush_suite(void)
{
	Suite *s = suite_create("controller_flush");
	TCase *tc = tcase_create("policies");

	tcase_add_test(tc, end_waits_only_when_runtime_done_can_come);
	tcase_add_test(tc, end_stops_waiting_after_a_miss_until_the_count_moves);
	tcase_add_test(tc, end_stops_waiting_while_kinesis_is_slow);
	tcase_add_test(tc, periodic_flushes_at_most_once_per_interval);
	tcase_add_test(tc, continuous_never_waits_or_holds);
	tcase_add_test(tc, adaptive_starts_with_end_and_goes_continuous_when_frequent);
	tcase_add_test(tc, adaptive_stays_end_when_infrequent);
	tcase_add_test(tc, adaptive_hysteresis);
	tcase_add_test(tc, wait_until_budget_and_deadline);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(flush_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
