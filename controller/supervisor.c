#include "controller/supervisor.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"

void
crash_budget_init(struct crash_budget *b, uint32_t max, uint64_t window_ms)
{
	memset(b, 0, sizeof(*b));
	b->max = max < 1 ? 1 : (max > CRASH_BUDGET_MAX ? CRASH_BUDGET_MAX : max);
	b->window_ms = window_ms;
}

uint32_t
crash_budget_used(const struct crash_budget *b, uint64_t now_ms)
{
	uint32_t used = 0;

	for (uint32_t i = 0; i < b->count; i++)
		if (b->times[i] + b->window_ms > now_ms)
			used++;
	return used;
}

bool
crash_budget_allow(struct crash_budget *b, uint64_t now_ms)
{
	if (crash_budget_used(b, now_ms) >= b->max)
		return false;
	/* The ring holds max entries; the oldest is outside the window, so overwrite it. */
	if (b->count < b->max) {
		b->times[b->count++] = now_ms;
		return true;
	}
	{
		uint32_t oldest = 0;

		for (uint32_t i = 1; i < b->count; i++)
			if (b->times[i] < b->times[oldest])
				oldest = i;
		b->times[oldest] = now_ms;
	}
	return true;
}

void
child_status_describe(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "changed state (wait status 0x%x)", (unsigned)status);
}

struct child *
supervisor_add(struct supervisor *s, const char *role, int (*main_fn)(void *), void *arg)
{
	struct child *c;

	if (s->n >= SUPERVISOR_MAX_CHILDREN)
		return NULL;
	c = &s->children[s->n++];
	memset(c, 0, sizeof(*c));
	c->role = role;
	c->main = main_fn;
	c->arg = arg;
	crash_budget_init(&c->budget, CRASH_BUDGET_RESTARTS, CRASH_BUDGET_WINDOW_MS);
	return c;
}

int
supervisor_spawn(struct supervisor *s, struct child *c)
{
	pid_t parent = getpid(), pid;
	sigset_t all, saved;
	int saved_errno;

	/*
	 * Every signal blocked across fork: the child must not run an inherited handler
	 * before it has reset the dispositions below.
	 */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &saved);
	pid = fork();
	if (pid < 0) {
		saved_errno = errno;
		sigprocmask(SIG_SETMASK, &saved, NULL);
		return -saved_errno;
	}
	if (pid == 0) {
		/* Exit with the controller, even if it died before the prctl. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(0);
		/* Default dispositions (SIGPIPE stays ignored: both children do network I/O). */
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		sigprocmask(SIG_SETMASK, &s->child_sigmask, NULL);
		if (s->in_child != NULL)
			s->in_child(s->ctx);
		/* "kte-listener" in ps and /proc/<pid>/comm (at most 15 characters). */
		{
			char comm[16];

			snprintf(comm, sizeof(comm), "kte-%s", c->role);
			prctl(PR_SET_NAME, comm);
		}
		log_init(c->role, s->log_level);
		_exit(c->main(c->arg));
	}
	sigprocmask(SIG_SETMASK, &saved, NULL);
	c->pid = pid;
	c->stopping = false;
	c->started_ms = now_mono_ms();
	log_debug("%s started (pid %d)", c->role, (int)pid);
	return 0;
}

static struct child *
supervisor_find(struct supervisor *s, pid_t pid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->children[i].pid == pid)
			return &s->children[i];
	return NULL;
}

int
supervisor_reap(struct supervisor *s, uint64_t now_ms)
{
	int status, reaped = 0;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct child *c = supervisor_find(s, pid);
		char how[128];

		reaped++;
		if (c == NULL)
			continue;
		c->pid = 0;
		c->last_status = status;
		child_status_describe(status, how, sizeof(how));
		if (s->on_death != NULL)
			s->on_death(c, pid, s->ctx);
		if (c->stopping || (s->shutting_down && WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			c->stopping = true;
			log_debug("%s (pid %d) %s", c->role, (int)pid, how);
			continue;
		}
		if (!crash_budget_allow(&c->budget, now_ms)) {
			c->gave_up = true;
			log_error("%s (pid %d) %s; it crashed more than %u times in %llu s: not restarting it, "
			    "carrying on without it", c->role, (int)pid, how, c->budget.max,
			    (unsigned long long)(c->budget.window_ms / 1000));
			continue;
		}
		c->restarts++;
		if (supervisor_spawn(s, c) != 0) {
			c->gave_up = true;
			log_warn("%s (pid %d) %s; restart failed, carrying on without it", c->role, (int)pid,
			    how);
			continue;
		}
		log_warnx("%s (pid %d) %s; restarted as pid %d (restart %u of %u within %llu s)", c->role,
		    (int)pid, how, (int)c->pid, crash_budget_used(&c->budget, now_ms), c->budget.max,
		    (unsigned long long)(c->budget.window_ms / 1000));
	}
	return reaped;
}

void
supervisor_stop_child(struct supervisor *s, struct child *c)
{
	(void)s;
	c->stopping = true;
	if (c->pid > 0)
		kill(c->pid, SIGTERM);
}

bool
supervisor_stop_child_wait(struct supervisor *s, struct child *c, uint64_t deadline_mono_ms)
{
	struct timespec ms = { 0, 1000000 };

	supervisor_stop_child(s, c);
	for (;;) {
		supervisor_reap(s, now_mono_ms());
		if (c->pid <= 0)
			return true;
		if (now_mono_ms() >= deadline_mono_ms)
			return false;
		nanosleep(&ms, NULL);
	}
}

/* Reaps until no child runs or deadline_mono_ms; true when none runs. */
static bool
supervisor_reap_until(struct supervisor *s, uint64_t deadline_mono_ms)
{
	struct timespec ms = { 0, 1000000 };

	for (;;) {
		bool any = false;

		supervisor_reap(s, now_mono_ms());
		for (size_t i = 0; i < s->n; i++)
			any |= s->children[i].pid > 0;
		if (!any)
			return true;
		if (now_mono_ms() >= deadline_mono_ms)
			return false;
		nanosleep(&ms, NULL);
	}
}

int
supervisor_stop_all(struct supervisor *s, uint64_t deadline_mono_ms)
{
	int killed = 0;

	for (size_t i = 0; i < s->n; i++) {
		s->children[i].stopping = true;
		if (s->children[i].pid > 0)
			kill(s->children[i].pid, SIGTERM);
	}
	if (supervisor_reap_until(s, deadline_mono_ms))
		return 0;
	for (size_t i = 0; i < s->n; i++) {
		struct child *c = &s->children[i];

		if (c->pid <= 0)
			continue;
		log_warnx("%s (pid %d) did not stop in time: SIGKILL", c->role, (int)c->pid);
		kill(c->pid, SIGKILL);
		killed++;
	}
	/*
	 * Never a blocking waitpid: a process that maps a large ring takes a while to be
	 * torn down, and the caller has a deadline. What is not reaped by then dies anyway
	 * (SIGKILL is sent) and is the kernel's to clean up once we exit.
	 */
	if (!supervisor_reap_until(s, now_mono_ms() + SUPERVISOR_KILL_REAP_MS))
		for (size_t i = 0; i < s->n; i++)
			if (s->children[i].pid > 0) {
				log_warnx("%s (pid %d) not reaped %d ms after SIGKILL: leaving it",
				    s->children[i].role, (int)s->children[i].pid, SUPERVISOR_KILL_REAP_MS);
				s->children[i].pid = 0;
			}
	return killed;
}
