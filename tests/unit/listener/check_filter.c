/* The listener's optional filters: KTE_DROP_TYPES parsing and matching, the log-level floor. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "listener/filter.h"

static struct batch_event
ev(const char *type, enum event_kind kind, int level)
{
	struct batch_event e = { .type = type, .type_len = type ? strlen(type) : 0, .kind = kind,
		.level = level };

	return e;
}

static struct kte_config
cfg_with(const char *drop, int min_level)
{
	struct kte_config c;

	memset(&c, 0, sizeof(c));
	strncpy(c.drop_types, drop, sizeof(c.drop_types) - 1);
	c.min_log_level = min_level;
	return c;
}

START_TEST(test_off_by_default)
{
	struct kte_config c = cfg_with("", -1);
	struct listener_filter f;
	struct batch_event e = ev("function", EVENT_FUNCTION, RECORD_LEVEL_TRACE);

	ck_assert_int_eq(filter_init(&f, &c), 0);
	ck_assert(!filter_active(&f));
	ck_assert(!filter_drop(&f, &e));
}
END_TEST

START_TEST(test_drop_types)
{
	struct kte_config c = cfg_with(" platform.start ,,platform.init*, function", -1);
	struct listener_filter f;
	struct batch_event e;

	ck_assert_int_eq(filter_init(&f, &c), 0);
	ck_assert(filter_active(&f));
	ck_assert_uint_eq(f.ntypes, 3);
	e = ev("platform.start", EVENT_OTHER, -1);
	ck_assert(filter_drop(&f, &e));
	e = ev("platform.startX", EVENT_OTHER, -1);
	ck_assert(!filter_drop(&f, &e));
	e = ev("platform.star", EVENT_OTHER, -1);
	ck_assert(!filter_drop(&f, &e));
	e = ev("platform.initStart", EVENT_OTHER, -1);
	ck_assert(filter_drop(&f, &e));
	e = ev("platform.init", EVENT_OTHER, -1);
	ck_assert(filter_drop(&f, &e));
	e = ev("platform.ini", EVENT_OTHER, -1);
	ck_assert(!filter_drop(&f, &e));
	e = ev("function", EVENT_FUNCTION, -1);
	ck_assert(filter_drop(&f, &e));
	e = ev(NULL, EVENT_OTHER, -1);
	ck_assert(!filter_drop(&f, &e));
}
END_TEST

START_TEST(test_bad_entries)
{
	char longname[200];
	struct kte_config c;
	struct listener_filter f;
	struct batch_event e;

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memcpy(longname + sizeof(longname) - 11, ",extension", 10);   /* an over-long entry, then a good one */
	c = cfg_with(longname, -1);
	ck_assert_int_eq(filter_init(&f, &c), -EINVAL);
	/* The good entry after the bad one still counts. */
	e = ev("extension", EVENT_EXTENSION, -1);
	ck_assert(filter_drop(&f, &e));
}
END_TEST

START_TEST(test_min_level)
{
	struct kte_config c = cfg_with("", RECORD_LEVEL_WARN);
	struct listener_filter f;
	struct batch_event e;

	ck_assert_int_eq(filter_init(&f, &c), 0);
	ck_assert(filter_active(&f));
	e = ev("function", EVENT_FUNCTION, RECORD_LEVEL_INFO);
	ck_assert(filter_drop(&f, &e));
	e = ev("function", EVENT_FUNCTION, RECORD_LEVEL_WARN);
	ck_assert(!filter_drop(&f, &e));
	e = ev("function", EVENT_FUNCTION, RECORD_LEVEL_FATAL);
	ck_assert(!filter_drop(&f, &e));
	e = ev("function", EVENT_FUNCTION, RECORD_LEVEL_NONE);    /* text logs are kept */
	ck_assert(!filter_drop(&f, &e));
	e = ev("extension", EVENT_EXTENSION, RECORD_LEVEL_TRACE); /* only function logs */
	ck_assert(!filter_drop(&f, &e));
}
END_TEST

static Suite *
filter_suite(void)
{
	Suite *s = suite_create("listener_filter");
	TCase *tc = tcase_create("filter");

	tcase_add_test(tc, test_off_by_default);
	tcase_add_test(tc, test_drop_types);
	tcase_add_test(tc, test_bad_entries);
	tcase_add_test(tc, test_min_level);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(filter_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
