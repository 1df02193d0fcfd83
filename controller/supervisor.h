/*
 * Supervision of the controller's children (listener, dispatcher): fork, reap with
 * a waitpid(WNOHANG) loop, log how each died, let the caller repair shared state,
 * and restart within a crash budget. Children get PR_SET_PDEATHSIG so they exit
 * when the controller goes away. Single-threaded (the controller's main loop).
 */
#ifndef KTE_CONTROLLER_SUPERVISOR_H
#define KTE_CONTROLLER_SUPERVISOR_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"

#define CRASH_BUDGET_MAX       16
#define CRASH_BUDGET_RESTARTS  5        /* restarts allowed ... */
#define CRASH_BUDGET_WINDOW_MS 60000    /* ... per sliding minute */
#define SUPERVISOR_MAX_CHILDREN 4
#define SUPERVISOR_KILL_REAP_MS 20      /* after SIGKILL, reap for at most this long */

/* A sliding window of restart times: at most max restarts within window_ms. */
struct crash_budget {
	uint32_t max;
	uint64_t window_ms;
	uint64_t times[CRASH_BUDGET_MAX];   /* ring of the last restarts, monotonic ms */
	uint32_t count;                     /* valid entries */
	uint32_t next;                      /* where the next one goes */
};

/* max is clamped to 1..CRASH_BUDGET_MAX. */
void crash_budget_init(struct crash_budget *b, uint32_t max, uint64_t window_ms);
/* A crash at now_ms: returns true (and counts a restart) if one is allowed. */
bool crash_budget_allow(struct crash_budget *b, uint64_t now_ms);
/* Restarts counted within the window ending at now_ms. */
uint32_t crash_budget_used(const struct crash_budget *b, uint64_t now_ms);

struct child {
	const char *role;                   /* "listener", "dispatcher": log tag in the child */
	int (*main)(void *arg);             /* runs in the child; returns its exit code */
	void *arg;
	pid_t pid;                          /* 0 while not running */
	bool gave_up;                       /* crash budget exhausted: not restarted any more */
	bool stopping;                      /* asked to stop: its death is expected */
	uint64_t restarts;
	uint64_t started_ms;                /* monotonic */
	int last_status;                    /* wait status of the last death */
	struct crash_budget budget;
};

struct supervisor {
	struct child children[SUPERVISOR_MAX_CHILDREN];
	size_t n;
	sigset_t child_sigmask;             /* signal mask restored in each child */
	bool shutting_down;                 /* a child's clean exit (code 0) is expected: no restart */
	enum log_level log_level;
	/* Runs in the child right after fork, before main: close controller-only fds. */
	void (*in_child)(void *ctx);
	/* Runs in the controller after a child died, before any restart: repair shared state. */
	void (*on_death)(struct child *c, pid_t pid, void *ctx);
	void *ctx;
};

/* Adds a child (not started). Returns it, or NULL when the table is full. */
struct child *supervisor_add(struct supervisor *s, const char *role, int (*main_fn)(void *), void *arg);

/* Forks the child. Returns 0 or -errno (fork failed). */
int supervisor_spawn(struct supervisor *s, struct child *c) __attribute__((warn_unused_result));

/*
 * Reaps every dead child without blocking, logs how it died, calls on_death, and
 * restarts it if the crash budget allows (else gives up on it and says so).
 * Returns the number of children reaped.
 */
int supervisor_reap(struct supervisor *s, uint64_t now_ms);

/*
 * Stops every running child: SIGTERM, then SIGKILL to whatever still runs at
 * deadline_mono_ms, reaping them without ever blocking: it returns by
 * deadline_mono_ms + SUPERVISOR_KILL_REAP_MS whatever the children do (one not reaped
 * by then is forgotten; it was sent SIGKILL). Returns the number that needed SIGKILL.
 */
int supervisor_stop_all(struct supervisor *s, uint64_t deadline_mono_ms);

/* Asks one child to stop (SIGTERM) without waiting; its death is then expected. */
void supervisor_stop_child(struct supervisor *s, struct child *c);
/* SIGTERM to one child, then reaps until it is gone or deadline_mono_ms; true when gone. */
bool supervisor_stop_child_wait(struct supervisor *s, struct child *c, uint64_t deadline_mono_ms);

/* "exited with code 3", "killed by signal 9 (Killed)" from a wait status. */
void child_status_describe(int status, char *buf, size_t len);

#endif
