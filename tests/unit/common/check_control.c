/* The control block's identity check (common/control.h): what a child verifies before using it. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "control.h"

START_TEST(test_new_block_passes)
{
	struct control_fds fds;
	struct control *c = control_new(&fds);

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(control_check(c), 0);
	ck_assert_uint_eq(atomic_load(&c->kinesis_healthy), 1);
	ck_assert_uint_eq(atomic_load(&c->pressure.holds), 0);
	control_free(c, &fds);
	ck_assert_int_eq(fds.to_dispatcher, -1);
}
END_TEST

START_TEST(test_foreign_block_refused)
{
	struct control_fds fds;
	struct control *c = control_new(&fds);

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(control_check(NULL), -EPROTO);
	c->magic ^= 1;
	ck_assert_int_eq(control_check(c), -EPROTO);
	c->magic ^= 1;
	c->version = CONTROL_VERSION + 1;
	ck_assert_int_eq(control_check(c), -EPROTO);
	c->version = CONTROL_VERSION;
	c->size = (uint32_t)sizeof(*c) - 8;
	ck_assert_int_eq(control_check(c), -EPROTO);
	c->size = (uint32_t)sizeof(*c);
	ck_assert_int_eq(control_check(c), 0);
	control_free(c, &fds);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("check");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_new_block_passes);
	tcase_add_test(tc, test_foreign_block_refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
