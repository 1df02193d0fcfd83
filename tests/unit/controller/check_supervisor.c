/* The crash budget and the supervision of real forked children (controller/supervisor.c). */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "controller/supervisor.h"
#include "notify.h"

START_TEST(budget_allows_max_per_window)
{
	struct crash_budget b;

	crash_budget_init(&b, 5, 60000);
	for (int i = 0; i < 5; i++)
		ck_assert(crash_budget_allow(&b, 1000 + (uint64_t)i));
	ck_assert(!crash_budget_allow(&b, 1010));
	ck_assert_uint_eq(crash_budget_used(&b, 1010), 5);
	/* Still inside the window of the first restart. */
	ck_assert(!crash_budget_allow(&b, 60999));
	/* The first restart has left the window: one more is allowed, and only one. */
	ck_assert(crash_budget_allow(&b, 61000));
	ck_assert(!crash_budget_allow(&b, 61000));
	ck_assert(crash_budget_allow(&b, 61001));
	ck_assert(!crash_budget_allow(&b, 61001));
	/* Long after: the whole budget again. */
	for (int i = 0; i < 5; i++)
		ck_assert(crash_budget_allow(&b, 500000));
	ck_assert(!crash_budget_allow(&b, 500000));
}
END_TEST

START_TEST(budget_clamps)
{
	struct crash_budget b;

	crash_budget_init(&b, 0, 1000);
	ck_assert(crash_budget_allow(&b, 1));
	ck_assert(!crash_budget_allow(&b, 2));
	crash_budget_init(&b, 1000, 1000);
	for (int i = 0; i < CRASH_BUDGET_MAX; i++)
		ck_assert(crash_budget_allow(&b, 5));
	ck_assert(!crash_budget_allow(&b, 5));
}
END_TEST

START_TEST(status_describe)
{
	char buf[128];

	child_status_describe(3 << 8, buf, sizeof(buf));
	ck_assert_str_eq(buf, "exited with code 3");
	child_status_describe(SIGKILL, buf, sizeof(buf));
	ck_assert(strncmp(buf, "killed by signal 9 (", 20) == 0);
}
END_TEST

/* Shared between the test and its children. */
struct shared {
	_Atomic int starts;
	_Atomic int deaths_seen;
	_Atomic pid_t last_dead;
};

static struct shared *sh;

static int
child_exit3(void *arg)
{
	(void)arg;
	atomic_fetch_add(&sh->starts, 1);
	return 3;
}

static int
child_sleep(void *arg)
{
	(void)arg;
	atomic_fetch_add(&sh->starts, 1);
	for (;;)
		pause();
	return 0;
}

static int
child_ignore_term(void *arg)
{
	(void)arg;
	signal(SIGTERM, SIG_IGN);
	atomic_fetch_add(&sh->starts, 1);
	for (;;)
		pause();
	return 0;
}

static void
on_death(struct child *c, pid_t pid, void *ctx)
{
	(void)c;
	(void)ctx;
	atomic_fetch_add(&sh->deaths_seen, 1);
	atomic_store(&sh->last_dead, pid);
}

static void
setup(void)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(sh, MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
}

static void
sup_init(struct supervisor *s)
{
	memset(s, 0, sizeof(*s));
	sigprocmask(SIG_SETMASK, NULL, &s->child_sigmask);
	s->log_level = LOG_LEVEL_ERROR;
	s->on_death = on_death;
}

static void
msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

START_TEST(crashing_child_restarted_until_budget)
{
	struct supervisor s;
	struct child *c;
	uint64_t until = now_mono_ms() + 5000;

	setup();
	sup_init(&s);
	c = supervisor_add(&s, "crasher", child_exit3, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(supervisor_spawn(&s, c), 0);
	while (!c->gave_up && now_mono_ms() < until) {
		supervisor_reap(&s, now_mono_ms());
		msleep(1);
	}
	ck_assert(c->gave_up);
	ck_assert_int_eq(c->pid, 0);
	/* The first start plus CRASH_BUDGET_RESTARTS restarts, then no more. */
	ck_assert_int_eq(atomic_load(&sh->starts), 1 + CRASH_BUDGET_RESTARTS);
	ck_assert_uint_eq(c->restarts, CRASH_BUDGET_RESTARTS);
	ck_assert_int_eq(atomic_load(&sh->deaths_seen), 1 + CRASH_BUDGET_RESTARTS);
	ck_assert(WIFEXITED(c->last_status) && WEXITSTATUS(c->last_status) == 3);
	msleep(20);
	supervisor_reap(&s, now_mono_ms());
	ck_assert_int_eq(atomic_load(&sh->starts), 1 + CRASH_BUDGET_RESTARTS);
}
END_TEST

START_TEST(killed_child_restarted_and_repaired)
{
	struct supervisor s;
	struct child *c;
	pid_t first;
	uint64_t until = now_mono_ms() + 5000;

	setup();
	sup_init(&s);
	c = supervisor_add(&s, "sleeper", child_sleep, NULL);
	ck_assert_int_eq(supervisor_spawn(&s, c), 0);
	first = c->pid;
	while (atomic_load(&sh->starts) < 1 && now_mono_ms() < until)
		msleep(1);
	ck_assert_int_eq(kill(first, SIGKILL), 0);
	while (atomic_load(&sh->starts) < 2 && now_mono_ms() < until) {
		supervisor_reap(&s, now_mono_ms());
		msleep(1);
	}
	ck_assert_int_eq(atomic_load(&sh->starts), 2);
	ck_assert_int_eq(atomic_load(&sh->last_dead), first);
	ck_assert(c->pid > 0 && c->pid != first);
	ck_assert(WIFSIGNALED(c->last_status) && WTERMSIG(c->last_status) == SIGKILL);
	ck_assert(!c->gave_up);
	ck_assert_int_eq(supervisor_stop_all(&s, now_mono_ms() + 2000), 0);
	ck_assert_int_eq(c->pid, 0);
	/* A stopped child is not restarted. */
	ck_assert_int_eq(atomic_load(&sh->starts), 2);
}
END_TEST

START_TEST(stop_all_kills_what_ignores_sigterm)
{
	struct supervisor s;
	struct child *a, *b;
	uint64_t until = now_mono_ms() + 5000, t0;

	setup();
	sup_init(&s);
	a = supervisor_add(&s, "polite", child_sleep, NULL);
	b = supervisor_add(&s, "stubborn", child_ignore_term, NULL);
	ck_assert_int_eq(supervisor_spawn(&s, a), 0);
	ck_assert_int_eq(supervisor_spawn(&s, b), 0);
	while (atomic_load(&sh->starts) < 2 && now_mono_ms() < until)
		msleep(1);
	t0 = now_mono_ms();
	ck_assert_int_eq(supervisor_stop_all(&s, t0 + 100), 1);
	ck_assert_uint_ge(now_mono_ms() - t0, 100);
	ck_assert_int_eq(a->pid, 0);
	ck_assert_int_eq(b->pid, 0);
	ck_assert_int_eq(atomic_load(&sh->deaths_seen), 2);
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
}
END_TEST

START_TEST(children_exit_with_the_controller)
{
	int pfd[2];
	pid_t mid, grandchild = 0;
	uint64_t until = now_mono_ms() + 5000;
	int status;

	setup();
	/* Orphans come back to us, so we can see the grandchild exit. */
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ck_assert_int_eq(pipe(pfd), 0);
	mid = fork();
	ck_assert_int_ge(mid, 0);
	if (mid == 0) {
		struct supervisor s;
		struct child *c;

		sup_init(&s);
		c = supervisor_add(&s, "orphan", child_sleep, NULL);
		if (supervisor_spawn(&s, c) != 0)
			_exit(1);
		if (write(pfd[1], &c->pid, sizeof(c->pid)) != sizeof(c->pid))
			_exit(1);
		for (;;)
			pause();
	}
	ck_assert_int_eq(read(pfd[0], &grandchild, sizeof(grandchild)), sizeof(grandchild));
	while (atomic_load(&sh->starts) < 1 && now_mono_ms() < until)
		msleep(1);
	kill(mid, SIGKILL);
	ck_assert_int_eq(waitpid(mid, &status, 0), mid);
	/* The grandchild got SIGTERM from PR_SET_PDEATHSIG. */
	for (;;) {
		pid_t r = waitpid(grandchild, &status, WNOHANG);

		if (r == grandchild)
			break;
		ck_assert_msg(now_mono_ms() < until, "grandchild still alive after its parent died");
		msleep(1);
	}
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
}
END_TEST

static int
child_exit0(void *arg)
{
	(void)arg;
	atomic_fetch_add(&sh->starts, 1);
	return 0;
}

START_TEST(clean_exit_during_shutdown_is_not_restarted)
{
	struct supervisor s;
	struct child *done, *crash;
	uint64_t until = now_mono_ms() + 5000;

	setup();
	sup_init(&s);
	s.shutting_down = true;
	done = supervisor_add(&s, "finished", child_exit0, NULL);
	crash = supervisor_add(&s, "crasher", child_exit3, NULL);
	ck_assert_int_eq(supervisor_spawn(&s, done), 0);
	ck_assert_int_eq(supervisor_spawn(&s, crash), 0);
	while ((done->pid != 0 || crash->restarts < 1) && now_mono_ms() < until) {
		supervisor_reap(&s, now_mono_ms());
		msleep(1);
	}
	/* The clean exit is final; a crash is still restarted while time remains. */
	ck_assert_int_eq(done->pid, 0);
	ck_assert(done->stopping && !done->gave_up);
	ck_assert_uint_eq(done->restarts, 0);
	ck_assert_uint_ge(crash->restarts, 1);
	supervisor_stop_all(&s, now_mono_ms() + 1000);
}
END_TEST

static Suite *
supervisor_suite(void)
{
	Suite *s = suite_create("controller_supervisor");
	TCase *tc = tcase_create("budget");
	TCase *tk = tcase_create("children");

	tcase_add_test(tc, budget_allows_max_per_window);
	tcase_add_test(tc, budget_clamps);
	tcase_add_test(tc, status_describe);
	tcase_set_timeout(tk, 20);
	tcase_add_test(tk, crashing_child_restarted_until_budget);
	tcase_add_test(tk, killed_child_restarted_and_repaired);
	tcase_add_test(tk, stop_all_kills_what_ignores_sigterm);
	tcase_add_test(tk, children_exit_with_the_controller);
	tcase_add_test(tk, clean_exit_during_shutdown_is_not_restarted);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, tk);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(supervisor_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
