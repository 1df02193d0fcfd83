/*
 * kinesis-telemetry-extension: the process Lambda starts from /opt/extensions.
 *
 * Registers with the Extensions API, creates the shared ring and control block,
 * forks the listener and the dispatcher, subscribes to the Telemetry API, then
 * loops on event/next, driving flushes (controller/flush.c) and restarting
 * crashed children (controller/supervisor.c). While it waits for an event it
 * polls the Runtime API socket together with a signalfd (SIGCHLD, SIGTERM) and
 * the children's eventfd, so a crashed child is restarted at once, not only at
 * the next invocation. See docs/operations.md for the log lines.
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "controller/extensions_api.h"
#include "controller/flush.h"
#include "controller/metrics.h"
#include "controller/pressure.h"
#include "controller/supervisor.h"
#include "controller/telemetry_subscribe.h"
#include "dispatcher/dispatcher.h"
#include "listener/listener.h"
#include "log.h"
#include "notify.h"
#include "ring.h"

#define LISTENER_READY_TIMEOUT_MS 3000
#define SIGTERM_SHUTDOWN_MS       1000   /* budget when stopped by a signal instead of SHUTDOWN */
#define SHUTDOWN_FLUSH_RESERVE_MS 300    /* kept for the final flush after the last report */
#define SHUTDOWN_ROUNDS           5      /* final flush rounds while new events keep arriving */
/*
 * The end of SHUTDOWN, backwards from deadlineMs - KTE_SHUTDOWN_MARGIN_MS (stop_at):
 * the teardown reserve (EXIT_RESERVE_MS plus EXIT_MS_PER_MIB per MiB of ring) for
 * SIGKILL, reaping, the account and our own exit: the kernel takes a while to tear
 * down processes that mapped a large ring and to free it (0.1-1.5 ms per MiB measured
 * on a 2-core VM, depending on its load; docs/pressure.md); before it CHILD_STOP_MS from SIGTERM to
 * SIGKILL; before that, the dispatcher's deadline. None of it depends on the backlog.
 */
#define EXIT_RESERVE_MS           40
#define EXIT_MS_PER_MIB           2
#define CHILD_STOP_MS             50
#define CHILD_STOP_GRACE_MS       200    /* SIGTERM to SIGKILL, at most (and never past the deadline) */

struct controller {
	struct kte_config cfg;
	char name[256];
	struct ext_api api;
	struct ring ring;
	struct control *ctl;
	struct control_fds fds;
	struct supervisor sup;
	struct child *listener, *dispatcher;
	struct listener_args largs;
	struct dispatcher_args dargs;
	struct flush_state flush;
	struct metrics metrics;         /* EMF lines on stdout (controller/metrics.h) */
	int sigfd;
	sigset_t oldmask;
	bool shipping;                  /* valid config, ring and children up */
	bool telemetry;                 /* subscription answered 200 */
	bool managed_instances;         /* INVOKE refused: SHUTDOWN only, continuous */
	bool term;                      /* SIGTERM/SIGINT received */
	bool dispatcher_pending;        /* start the dispatcher after the first event/next call */
	const char *setup_error;        /* ring or control block could not be created */
	uint64_t invocations;
	uint64_t flush_seq;             /* last flush_requested value we wrote */
	uint64_t rd_at_next;            /* runtime_done_count when event/next was last sent */
	uint64_t t0_us;                 /* process start, for the cold start log line */
	/* `end` statistics, logged at shutdown: time from seeing runtimeDone to calling next */
	uint64_t end_flushes, end_flush_late, end_rd_missed, end_sum_us, end_max_us;
	/* INVOKE read -> next sent, for invocations that did not wait: the controller's own cost */
	uint64_t quick_n, quick_sum_us, quick_max_us;
	bool waited;                    /* the current invocation waited for runtimeDone */
	struct pressure_log pressure;   /* rate limit of the hold lines */
	uint64_t written_at_invoke;     /* ring written_bytes when the last INVOKE was read ... */
	uint64_t last_cycle_bytes;      /* ... and what the ring took from the INVOKE before to it */
	uint64_t hold_t0;               /* push back in progress: monotonic ms it began ... */
	uint64_t hold_released0;        /* ... and the ring's released_bytes then (the drain pace) */
	uint64_t t_event_us;            /* when the last event was read, 0 before the first */
};

/* One process, one controller: the signal setup and the children use it. */
static struct controller ctrl;

static int
run_listener(void *arg)
{
	return listener_main(arg);
}

static int
run_dispatcher(void *arg)
{
	return dispatcher_main(arg);
}

/*
 * In a freshly forked child: drop what only the controller may use, and check the
 * control block before trusting any field of it (common/control.h, the protocol).
 */
static void
controller_in_child(void *ctx)
{
	struct controller *c = ctx;

	ext_api_close(&c->api);
	if (c->sigfd >= 0)
		close(c->sigfd);
	if (control_check(c->ctl) != 0) {
		log_error("control block: bad magic, version or size (want version %u, %zu bytes): "
		    "not starting", CONTROL_VERSION, sizeof(*c->ctl));
		_exit(2);
	}
}

/*
 * In the controller, after a child died: repair what it may have held in shared memory.
 * Only the listener writes to the ring, so only its death can leave reservations;
 * ring_recover walks the whole backlog under the ring's lock, so it is not run for the
 * dispatcher (a reader holds no reservation; a lock it died holding is repaired by the
 * next ring_lock) nor at shutdown, when nobody reads the ring any more: what a killed
 * listener reserved then is counted as not sent (written - released - abandoned).
 */
static void
controller_on_death(struct child *ch, pid_t pid, void *ctx)
{
	struct controller *c = ctx;
	uint64_t abandoned;

	if (!c->shipping)
		return;
	/*
	 * A child may have scribbled on the ring before dying. Without a reader, empty
	 * it here; with one, the dispatcher repairs it from its own copies on its next
	 * look (woken below). ring_recover walks only a plausible ring either way.
	 */
	if (ring_check(&c->ring) != 0) {
		if (ch == c->dispatcher)
			log_warnx("ring inconsistent after %s (pid %d) died: reset, %" PRIu64 " record(s) "
			    "dropped (counted in ringCorrupt)", ch->role, (int)pid, ring_reset(&c->ring));
		else
			log_warnx("ring inconsistent after %s (pid %d) died: the dispatcher repairs it",
			    ch->role, (int)pid);
	}
	if (ch == c->listener && !c->sup.shutting_down) {
		abandoned = ring_recover(&c->ring, pid);
		if (abandoned > 0)
			log_warnx("%s (pid %d) died with %" PRIu64 " ring record(s) reserved but not "
			    "committed: skipped (Lambda retries the batch it was not acknowledged for)",
			    ch->role, (int)pid, abandoned);
	}
	/* Wake the dispatcher in case it sleeps on a record that will now never commit. */
	notify_signal(c->ring.data_efd);
	notify_signal(c->fds.to_dispatcher);
}

static bool
child_usable(const struct child *ch)
{
	return ch != NULL && !ch->gave_up && !(ch->stopping && ch->pid == 0);
}

/* Reads the signalfd: reaps and restarts children, notes termination requests. */
static void
controller_signals(struct controller *c)
{
	struct signalfd_siginfo si;
	bool chld = false;

	while (read(c->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			chld = true;
		else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			if (!c->term)
				log_info("received %s: shutting down", strsignal((int)si.ssi_signo));
			c->term = true;
		}
	}
	if (chld)
		supervisor_reap(&c->sup, now_mono_ms());
}

/*
 * Waits until cond(c) holds or the epoch-ms time until passes, serving child deaths
 * meanwhile. The children signal to_controller for what the controller waits on;
 * tick_ms > 0 also re-checks cond that often, for counters nobody signals.
 * Returns whether cond held.
 */
static bool
controller_wait_tick(struct controller *c, bool (*cond)(struct controller *), int64_t until,
    int tick_ms)
{
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = c->sigfd, .events = POLLIN },
			{ .fd = c->fds.to_controller, .events = POLLIN },
		};
		int64_t now;

		if (cond(c))
			return true;
		now = (int64_t)now_epoch_ms();
		if (now >= until || c->term)
			return false;
		if (poll(p, 2, tick_ms > 0 && until - now > tick_ms ? tick_ms : (int)(until - now)) < 0 &&
		    errno != EINTR) {
			log_warn("poll");
			return cond(c);
		}
		if (p[0].revents & POLLIN)
			controller_signals(c);
		if (p[1].revents & POLLIN)
			notify_drain(c->fds.to_controller);
	}
}

static bool
controller_wait(struct controller *c, bool (*cond)(struct controller *), int64_t until)
{
	return controller_wait_tick(c, cond, until, 0);
}

static uint64_t
controller_request_flush(struct controller *c)
{
	c->flush_seq = atomic_fetch_add(&c->ctl->flush_requested, 1) + 1;
	notify_signal(c->fds.to_dispatcher);
	return c->flush_seq;
}

static bool
cond_listener_ready(struct controller *c)
{
	return atomic_load(&c->ctl->listener_ready) != 0 || !child_usable(c->listener);
}

static uint64_t runtime_done_target;

static bool
cond_runtime_done(struct controller *c)
{
	return atomic_load(&c->ctl->runtime_done_count) >= runtime_done_target ||
	    !child_usable(c->listener);
}

/*
 * The last flush we asked for is done (or everything was released, which the ring
 * tells without the dispatcher's help), or waiting for it is pointless.
 */
static bool
cond_flushed(struct controller *c)
{
	return atomic_load(&c->ctl->flush_completed) >= c->flush_seq || ring_empty(&c->ring) ||
	    atomic_load(&c->ctl->kinesis_healthy) == 0 || !child_usable(c->dispatcher);
}

/*
 * Shutdown: everything is released, or nobody is left to send it. Unlike cond_flushed
 * an open circuit does not end the wait: the dispatcher keeps retrying (at most every
 * 100 ms) until the deadline, and Kinesis often accepts again within it.
 */
static bool
cond_drained(struct controller *c)
{
	return ring_empty(&c->ring) || !child_usable(c->dispatcher);
}

static uint64_t report_target;

static bool
cond_reports(struct controller *c)
{
	return atomic_load(&c->ctl->report_count) >= report_target || !child_usable(c->listener);
}

/*
 * Reports an init error to Lambda (which then fails the init) and exits. Used for
 * KTE_STRICT=1 configuration errors and unrecoverable setup failures.
 */
static void __attribute__((noreturn))
controller_init_error(struct controller *c, const char *type, const char *msg)
{
	int rc;

	if ((rc = ext_api_report_error(&c->api, "init", type, msg)) != 0)
		log_warnx("init/error %s not acknowledged: %s", type, strerror(-rc));
	else
		log_info("reported init/error %s", type);
	if (c->listener != NULL)
		supervisor_stop_all(&c->sup, now_mono_ms() + 200);
	exit(1);
}

static void __attribute__((noreturn))
controller_exit_error(struct controller *c, const char *type, const char *msg)
{
	int rc;

	if ((rc = ext_api_report_error(&c->api, "exit", type, msg)) != 0)
		log_warnx("exit/error %s not acknowledged: %s", type, strerror(-rc));
	else
		log_info("reported exit/error %s", type);
	if (c->listener != NULL)
		supervisor_stop_all(&c->sup, now_mono_ms() + 200);
	exit(1);
}

static int
controller_signals_init(struct controller *c)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, &c->oldmask) != 0)
		return -errno;
	c->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return c->sigfd < 0 ? -errno : 0;
}

/* Registers for INVOKE and SHUTDOWN, or SHUTDOWN only on Lambda Managed Instances. */
static void
controller_register(struct controller *c)
{
	struct ext_reply reply;
	int rc;

	rc = ext_api_register(&c->api, c->name, "[\"INVOKE\",\"SHUTDOWN\"]", &reply);
	if (rc == 0 && reply.status == 403 && strstr(reply.error_type, "InvalidEventType") != NULL) {
		log_info("INVOKE refused (%s): Lambda Managed Instances; registering for SHUTDOWN only "
		    "and shipping continuously", reply.error_type);
		c->managed_instances = true;
		rc = ext_api_register(&c->api, c->name, "[\"SHUTDOWN\"]", &reply);
	}
	if (rc != 0)
		fatalx("register with the Extensions API at %s failed: %s", c->api.host, strerror(-rc));
	if (reply.status != 200 || c->api.id[0] == '\0')
		fatalx("register refused: %d %s %.200s", reply.status, reply.error_type, reply.body);
}

/*
 * Ring, control block, and the listener, started before registering so that its
 * start overlaps the register round trip. The dispatcher is started only after the
 * first event/next call (controller_next): it has nothing to send before, and its
 * TLS set-up then stays off the cold start path.
 */
static void
controller_prepare_shipping(struct controller *c)
{
	int rc;

	if ((rc = ring_create(&c->ring, c->cfg.ring_bytes)) != 0) {
		log_error("cannot create the %" PRIu64 "-byte ring: %s; telemetry will NOT be shipped",
		    c->cfg.ring_bytes, strerror(-rc));
		c->setup_error = "cannot create the ring";
		return;
	}
	if ((c->ctl = control_new(&c->fds)) == NULL) {
		log_warn("cannot create the control block; telemetry will NOT be shipped");
		ring_close(&c->ring);
		c->setup_error = "cannot create the control block";
		return;
	}
	c->shipping = true;
	c->largs = (struct listener_args){ .cfg = &c->cfg, .ring = &c->ring, .ctl = c->ctl, .fds = &c->fds };
	c->dargs = (struct dispatcher_args){ .cfg = &c->cfg, .ring = &c->ring, .ctl = c->ctl, .fds = &c->fds };
	c->sup.child_sigmask = c->oldmask;
	c->sup.log_level = (enum log_level)c->cfg.log_level;
	c->sup.in_child = controller_in_child;
	c->sup.on_death = controller_on_death;
	c->sup.ctx = c;
	c->listener = supervisor_add(&c->sup, "listener", run_listener, &c->largs);
	c->dispatcher = supervisor_add(&c->sup, "dispatcher", run_dispatcher, &c->dargs);
	if ((rc = supervisor_spawn(&c->sup, c->listener)) != 0)
		fatalx("fork: %s", strerror(-rc));
	c->dispatcher_pending = true;
}

/* Once the listener accepts connections: the Telemetry API subscription. */
static void
controller_subscribe(struct controller *c)
{
	char detail[160];
	enum subscribe_result sr;

	atomic_store(&c->ctl->hold_sending, c->flush.effective == FLUSH_PERIODIC);
	if (!controller_wait(c, cond_listener_ready,
	    (int64_t)now_epoch_ms() + LISTENER_READY_TIMEOUT_MS))
		log_warnx("listener not accepting after %d ms; subscribing anyway (Lambda retries "
		    "deliveries)", LISTENER_READY_TIMEOUT_MS);
	if (!child_usable(c->listener)) {
		log_error("listener cannot start; telemetry will NOT be received");
		/* Nothing can reach the ring: no dispatcher, no waiting, a plain lifecycle. */
		c->dispatcher_pending = false;
		c->shipping = false;
		return;
	}
	log_debug("+%" PRIu64 " us: listener accepting", now_mono_us() - c->t0_us);
	sr = telemetry_subscribe(&c->api, &c->cfg, detail, sizeof(detail));
	c->telemetry = sr == SUBSCRIBE_OK;
	if (sr == SUBSCRIBE_FAILED && c->cfg.strict)
		controller_init_error(c, "Extension.SubscribeFailed", detail);
}

/* Can platform.runtimeDone tell us when an invocation's runtime part is over? */
static bool
controller_runtime_done_usable(const struct controller *c)
{
	return c->shipping && c->telemetry && !c->managed_instances &&
	    (c->cfg.telemetry_types & TELEMETRY_PLATFORM) && child_usable(c->listener);
}

static bool
controller_ring_high(struct controller *c)
{
	struct ring_stats st;

	ring_stats(&c->ring, &st);
	return (st.head - st.tail) * 100 > st.capacity * FLUSH_RING_HIGH_PCT;
}

/*
 * SnapStart takes the snapshot after init, and every environment that runs invocations was
 * restored from it: the first INVOKE is the restore signal. Unlike platform.restore*
 * telemetry it cannot be filtered out (KTE_TELEMETRY_TYPES, KTE_DROP_TYPES), delayed by
 * Lambda's buffering or lost, and it comes before this invocation's flush.
 */
static bool
controller_snap_start(void)
{
	const char *t = getenv("AWS_LAMBDA_INITIALIZATION_TYPE");

	return t != NULL && strcmp(t, "snap-start") == 0;
}

static void
controller_invoke(struct controller *c, const struct ext_event *ev)
{
	struct flush_inputs in;
	struct flush_plan plan;
	uint64_t t_rd;
	int64_t until;
	bool was_slow;

	c->invocations++;
	if (c->invocations == 1 && controller_snap_start()) {
		/* Every environment restored from the snapshot shares what was random at init. */
		atomic_fetch_add(&c->ctl->restore_count, 1);
		notify_signal(c->fds.to_dispatcher);
		log_info("first invocation after a SnapStart restore: the dispatcher reseeds and reconnects");
	}
	if (!c->shipping)
		return;
	in.now_ms = now_mono_ms();
	/* KTE_FLUSH_BUDGET_MS=0: no time to flush in, so nothing to wait for either. */
	in.runtime_done_usable = controller_runtime_done_usable(c) && c->cfg.flush_budget_ms > 0;
	in.runtime_done_count = atomic_load(&c->ctl->runtime_done_count);
	in.ring_high = controller_ring_high(c);
	in.last_flush_done = atomic_load(&c->ctl->flush_completed) >= c->flush_seq || ring_empty(&c->ring);
	was_slow = c->flush.flush_slow;
	flush_on_invoke(&c->flush, &in, &plan);
	if (was_slow && !c->flush.flush_slow)
		log_info("flush: Kinesis keeps up again; `end` waits for flushes again");
	if (plan.changed)
		log_info("flush: adaptive policy now %s (mean interval %" PRIu64 " ms over the last %u "
		    "invocations)", config_flush_name(c->flush.effective), flush_mean_interval(&c->flush),
		    c->flush.n_intervals);
	atomic_store(&c->ctl->hold_sending, plan.hold_sending);
	if (plan.request_flush)
		controller_request_flush(c);
	if (!plan.wait_runtime_done)
		return;
	c->waited = true;

	/*
	 * This invocation's runtimeDone is the first one counted after the event/next
	 * call that returned its INVOKE: it cannot be emitted before that INVOKE, while
	 * the previous one was waited for before the call. Counting from that snapshot,
	 * not from the invocation number, survives a runtimeDone that Lambda dropped or
	 * delivered twice; and unlike a snapshot taken when the INVOKE is read, it
	 * cannot miss a runtimeDone that arrived before a slow controller read its INVOKE.
	 */
	runtime_done_target = c->rd_at_next + 1;
	if (!controller_wait(c, cond_runtime_done, ev->deadline_ms - (int64_t)c->cfg.shutdown_margin_ms)) {
		if (c->term)
			return;
		log_warnx("invocation %s: platform.runtimeDone did not arrive before the deadline; not "
		    "waiting for it again until one arrives", ev->request_id);
		flush_runtime_done_missed(&c->flush, atomic_load(&c->ctl->runtime_done_count));
		c->end_rd_missed++;
		return;
	}
	if (!plan.wait_flush || atomic_load(&c->ctl->kinesis_healthy) == 0 || !child_usable(c->dispatcher))
		return;
	t_rd = now_mono_us();
	controller_request_flush(c);
	until = flush_wait_until((int64_t)now_epoch_ms(), ev->deadline_ms, c->cfg.shutdown_margin_ms,
	    c->cfg.flush_budget_ms);
	if (!controller_wait(c, cond_flushed, until)) {
		c->end_flush_late++;
		log_debug("invocation %s: flush %" PRIu64 " not done within its budget; calling next",
		    ev->request_id, c->flush_seq);
		flush_end_result(&c->flush, false);
		if (c->flush.flush_slow)
			log_warnx("flush: %d flushes in a row over the %u ms budget: `end` stops waiting "
			    "for Kinesis until it keeps up again", FLUSH_LATE_LIMIT, c->cfg.flush_budget_ms);
	} else
		flush_end_result(&c->flush, true);
	c->end_flushes++;
	t_rd = now_mono_us() - t_rd;
	c->end_sum_us += t_rd;
	atomic_store(&c->ctl->next_hold_count, c->end_flushes);
	atomic_store(&c->ctl->next_hold_ms, c->end_sum_us / 1000);
	if (t_rd > c->end_max_us)
		c->end_max_us = t_rd;
}

/*
 * The self-metrics line, if one is due: at an INVOKE once the interval has passed, and the
 * last one at SHUTDOWN. Written after the invocation's flush decisions, never before them.
 */
static void
controller_metrics(struct controller *c, bool invocation, bool final)
{
	int rc;

	if (!c->shipping)
		return;
	rc = metrics_emit(&c->metrics, c->ctl, &c->ring, STDOUT_FILENO, invocation, final, now_mono_ms());
	if (rc < 0 && c->metrics.enabled) {
		log_warnx("metrics: cannot write to stdout: %s; metrics off", strerror(-rc));
		c->metrics.enabled = false;
	}
}

/*
 * How long event/next may wait before a metrics line is due, or -1 (wait for the event).
 * Only on Lambda Managed Instances: no INVOKE arrives there to write lines at, and the
 * environment is not frozen between requests.
 */
static int
controller_metrics_timeout(const struct controller *c)
{
	uint64_t now = now_mono_ms(), due = c->metrics.last_ms + c->metrics.interval_ms;

	if (!c->managed_instances || !c->shipping || !c->metrics.enabled)
		return -1;
	return due > now ? (int)(due - now) : 0;
}

/*
 * At each INVOKE, before anything waits: what the ring took since the previous INVOKE,
 * i.e. all of the previous invocation's output (during its runtime and any hold).
 */
static void
controller_note_cycle(struct controller *c)
{
	struct ring_stats st;

	if (!c->shipping)
		return;
	ring_stats(&c->ring, &st);
	c->last_cycle_bytes = st.written_bytes - c->written_at_invoke;
	c->written_at_invoke = st.written_bytes;
}

/* Push back released: the ring drained to the low-water mark, or draining stopped. */
static bool
cond_ring_low(struct controller *c)
{
	struct ring_stats st;

	ring_stats(&c->ring, &st);
	return st.head - st.tail <= pressure_low_mark(st.capacity, st.released_bytes - c->hold_released0,
	    now_mono_ms() - c->hold_t0) || !child_usable(c->dispatcher) ||
	    atomic_load(&c->ctl->kinesis_healthy) == 0;
}

/*
 * Push back (docs/pressure.md): with the ring above its high-water mark, do not call
 * next (which would let Lambda start another invocation that adds to it) until it is
 * down to the low-water mark or this invocation's deadline minus the margin
 * (PRESSURE_DEADLINE_MARGIN_MS) comes.
 * The environment stays thawed, so Lambda keeps delivering telemetry meanwhile. Not
 * when nothing drains the ring (no dispatcher, or Kinesis refusing: circuit open):
 * holding would only bill the function for nothing.
 */
static void
controller_push_back(struct controller *c, const struct ext_event *ev)
{
	struct pressure_counters *pc;
	struct ring_stats st;
	uint64_t t0, held, used0, holds, ms, cur, rd;
	int64_t until = ev->deadline_ms - (int64_t)(c->cfg.shutdown_margin_ms > PRESSURE_DEADLINE_MARGIN_MS ?
	    c->cfg.shutdown_margin_ms : PRESSURE_DEADLINE_MARGIN_MS);
	bool drained;
	uint32_t hold_sending;

	if (!c->shipping)
		return;
	ring_stats(&c->ring, &st);
	if (c->cfg.overflow != OVERFLOW_WAIT || c->term || !child_usable(c->dispatcher) ||
	    atomic_load(&c->ctl->kinesis_healthy) == 0)
		return;
	/*
	 * The function may not have logged yet (continuous and periodic call next at INVOKE):
	 * when the ring could cross the mark in this invocation, judged by what the last one
	 * brought, wait for its runtimeDone first, as `end` does.
	 */
	t0 = now_mono_ms();
	used0 = st.head - st.tail;
	rd = atomic_load(&c->ctl->runtime_done_count);
	if (!c->waited && controller_runtime_done_usable(c) &&
	    !(c->flush.runtime_done_missed && rd == c->flush.missed_at_count) &&
	    pressure_watch(used0, c->last_cycle_bytes, st.capacity)) {
		c->waited = true;
		runtime_done_target = c->rd_at_next + 1;
		if (!controller_wait(c, cond_runtime_done, until)) {
			if (c->term)
				return;
			/* Held until the deadline all the same (runtimeDone stuck behind a full ring?). */
			log_warnx("invocation %s: platform.runtimeDone did not arrive before the deadline; "
			    "not waiting for it again until one arrives", ev->request_id);
			flush_runtime_done_missed(&c->flush, atomic_load(&c->ctl->runtime_done_count));
			c->end_rd_missed++;
			drained = false;
			hold_sending = atomic_load(&c->ctl->hold_sending);
			goto account;
		}
		ring_stats(&c->ring, &st);
		used0 = st.head - st.tail;
	}
	if (!pressure_high(used0, st.capacity) || until <= (int64_t)now_epoch_ms())
		return;
	t0 = now_mono_ms();
	/* periodic: send now, not at the next interval. */
	hold_sending = atomic_load(&c->ctl->hold_sending);
	atomic_store(&c->ctl->hold_sending, 0);
	controller_request_flush(c);
	c->hold_t0 = t0;
	c->hold_released0 = st.released_bytes;
	/* The dispatcher signals nobody when it releases space: look every 5 ms. */
	drained = controller_wait_tick(c, cond_ring_low, until, 5);
account:
	atomic_store(&c->ctl->hold_sending, hold_sending);
	held = now_mono_ms() - t0;
	pc = &c->ctl->pressure;
	atomic_fetch_add(&pc->holds, 1);
	atomic_fetch_add(&pc->hold_ms, held);
	if (held > atomic_load(&pc->hold_max_ms))
		atomic_store(&pc->hold_max_ms, held);
	if (!drained && !c->term)
		atomic_fetch_add(&pc->hold_deadline, 1);
	ring_stats(&c->ring, &st);
	cur = st.head - st.tail;
	if (pressure_log_due(&c->pressure, now_mono_ms(), held, &holds, &ms))
		log_info("pressure: held next %" PRIu64 " ms after invocation %s, ring %u%% -> %u%% "
		    "(hold above %u%%, release at %u%%, %u KiB and what Kinesis takes in %u ms)%s; %" PRIu64
		    " hold(s), %" PRIu64 " ms in this line, %" PRIu64 " ms in all", held, ev->request_id,
		    pressure_pct(used0, st.capacity), pressure_pct(cur, st.capacity), PRESSURE_HIGH_PCT,
		    PRESSURE_LOW_PCT, PRESSURE_LOW_MAX_BYTES >> 10, PRESSURE_DRAIN_TARGET_MS,
		    drained ? "" : " until the deadline", holds, ms, atomic_load(&pc->hold_ms));
}

/* Logs what was shipped and, loudly, what was not, from the ring's counters st. */
static void
controller_report(struct controller *c, const struct ring_stats *stp)
{
	const struct ring_stats st = *stp;
	struct dispatcher_counters *d = &c->ctl->dispatcher;
	struct listener_counters *l = &c->ctl->listener;
	uint64_t pending, dropped, refused, lambda_dropped;

	/* Records a dead writer never committed are not events: Lambda retried those batches. */
	pending = st.written_records > st.released_records ? st.written_records - st.released_records : 0;
	pending = pending > st.abandoned_records ? pending - st.abandoned_records : 0;
	/* Records dropped by a corruption repair are no longer in the ring either. */
	pending = pending > st.corrupt_records ? pending - st.corrupt_records : 0;
	/* The dispatcher counts what its deadline left in the ring as dropped too: count it once. */
	dropped = atomic_load(&d->events_dropped);
	dropped -= atomic_load(&d->events_left) < dropped ? atomic_load(&d->events_left) : dropped;
	refused = atomic_load(&l->oversized_dropped);
	lambda_dropped = atomic_load(&l->logs_dropped_records);
	log_info("shutdown: received %" PRIu64 " events in %" PRIu64 " batches; sent %" PRIu64 " events "
	    "(%" PRIu64 " bytes) in %" PRIu64 " PutRecords, %" PRIu64 " failed requests, %" PRIu64
	    " records retried", atomic_load(&l->events), atomic_load(&l->requests),
	    atomic_load(&d->events_sent), atomic_load(&d->bytes_sent), atomic_load(&d->requests),
	    atomic_load(&d->request_failures), atomic_load(&d->records_retried));
	if (pending > 0 || dropped > 0 || refused > 0 || lambda_dropped > 0)
		log_warnx("shutdown: NOT sent: %" PRIu64 " events (%" PRIu64 " bytes) left in the ring; %"
		    PRIu64 " given up by the dispatcher (too large or rejected); %"
		    PRIu64 " too large for a record, dropped by the listener; %" PRIu64 " dropped by Lambda "
		    "(platform.logsDropped)", pending, st.head - st.tail, dropped, refused, lambda_dropped);
	else
		log_info("shutdown: everything received was sent");
	if (st.corrupt_records > 0 || st.resets > 0)
		log_warnx("shutdown: ring corruption: %" PRIu64 " record(s) dropped in %" PRIu64 " repair(s)",
		    st.corrupt_records, st.resets);
	if (atomic_load(&l->ring_full) > 0)
		log_warnx("shutdown: the ring was full %" PRIu64 " times (Lambda retried those batches; "
		    "consider a larger KTE_RING_BYTES)", atomic_load(&l->ring_full));
	if (atomic_load(&c->ctl->pressure.holds) > 0)
		log_info("pressure: next held %" PRIu64 " times for a full ring, %" PRIu64 " ms in all "
		    "(post-runtime duration), longest %" PRIu64 " ms, %" PRIu64 " until the deadline",
		    atomic_load(&c->ctl->pressure.holds), atomic_load(&c->ctl->pressure.hold_ms),
		    atomic_load(&c->ctl->pressure.hold_max_ms), atomic_load(&c->ctl->pressure.hold_deadline));
	if (c->quick_n > 0)
		log_info("invoke: %" PRIu64 " handled without waiting, INVOKE to next mean %" PRIu64 " us max %"
		    PRIu64 " us", c->quick_n, c->quick_sum_us / c->quick_n, c->quick_max_us);
	if (c->end_flushes > 0 || c->end_rd_missed > 0)
		log_info("flush end: %" PRIu64 " flushes, runtimeDone to next mean %" PRIu64 " us max %" PRIu64
		    " us, %" PRIu64 " over budget, %" PRIu64 " runtimeDone missed", c->end_flushes,
		    c->end_flushes ? c->end_sum_us / c->end_flushes : 0, c->end_max_us, c->end_flush_late,
		    c->end_rd_missed);
}

/* Monotonic time at which a child asked to stop now gets SIGKILL: kill_at, or sooner. */
static uint64_t
child_stop_deadline(int64_t kill_at)
{
	int64_t left = kill_at - (int64_t)now_epoch_ms();

	if (left > CHILD_STOP_GRACE_MS)
		left = CHILD_STOP_GRACE_MS;
	return now_mono_ms() + (uint64_t)(left > 0 ? left : 0);
}

static void __attribute__((noreturn))
controller_shutdown(struct controller *c, int64_t deadline_ms, const char *reason)
{
	int64_t stop_at = deadline_ms - (int64_t)c->cfg.shutdown_margin_ms;
	int64_t kill_at = stop_at - EXIT_RESERVE_MS - (int64_t)(EXIT_MS_PER_MIB * (c->cfg.ring_bytes >> 20));
	int64_t flush_until = kill_at - CHILD_STOP_MS;
	int64_t now = (int64_t)now_epoch_ms(), reserve;
	struct ring_stats st;

	log_info("SHUTDOWN (%s) after %" PRIu64 " invocations, deadline in %" PRId64 " ms", reason,
	    c->invocations, deadline_ms - now);
	if (!c->shipping)
		exit(0);
	c->sup.shutting_down = true;    /* a child ending its work now is done, not crashed */
	atomic_store(&c->ctl->shutdown_deadline_ms, flush_until);
	atomic_store(&c->ctl->hold_sending, 0);
	c->term = false;    /* from here on the deadline bounds every wait */
	controller_request_flush(c);

	/* The last invocation's platform.report only arrives after SHUTDOWN: wait for it. */
	if (controller_runtime_done_usable(c) && c->invocations > 0) {
		reserve = (flush_until - now) / 2;
		if (reserve > SHUTDOWN_FLUSH_RESERVE_MS)
			reserve = SHUTDOWN_FLUSH_RESERVE_MS;
		report_target = c->invocations;
		/* The listener counts reports without signalling: look every 2 ms. */
		if (!controller_wait_tick(c, cond_reports, flush_until - reserve, 2))
			log_info("shutdown: %" PRIu64 " of %" PRIu64 " platform.report events arrived in time",
			    atomic_load(&c->ctl->report_count), c->invocations);
		else if (c->cfg.ring_bytes > CONFIG_RING_MAX_DEFAULT && child_usable(c->listener) &&
		    c->listener->pid > 0)
			/*
			 * A ring larger than any default: every invocation's report is in, and
			 * with it the function's output before it, so the listener is stopped now
			 * and its teardown (unmapping a ring it may have filled: up to several
			 * hundred ms on a loaded machine) overlaps the final flush instead of
			 * threatening the deadline. What the runtime logs after its last report
			 * (a shutdown hook) is not received then; with smaller rings it is.
			 */
			supervisor_stop_child(&c->sup, c->listener);
	}
	/* Final flush; again while events keep arriving and time remains. */
	for (int round = 0; round < SHUTDOWN_ROUNDS && !ring_empty(&c->ring); round++) {
		controller_request_flush(c);
		if (!controller_wait(c, cond_flushed, flush_until) || ring_empty(&c->ring) ||
		    atomic_load(&c->ctl->kinesis_healthy) == 0 || !child_usable(c->dispatcher))
			break;
	}
	/* Kinesis refused lately (circuit open): give the dispatcher's retries the time left. */
	if (!ring_empty(&c->ring) && child_usable(c->dispatcher)) {
		controller_request_flush(c);
		controller_wait_tick(c, cond_drained, flush_until, 5);
	}
	/*
	 * The listener stops first, the dispatcher once it is gone: a batch the listener
	 * acknowledged while both were stopping would otherwise be left in the ring. What
	 * it wrote meanwhile gets the time left before the dispatcher's deadline. (A listener
	 * stopped before the final flush, with a large ring, is not waited for again.)
	 */
	if (c->listener != NULL && c->listener->pid > 0 && !c->listener->stopping &&
	    supervisor_stop_child_wait(&c->sup, c->listener, child_stop_deadline(kill_at)) &&
	    !ring_empty(&c->ring) && child_usable(c->dispatcher) && (int64_t)now_epoch_ms() < flush_until) {
		controller_request_flush(c);
		controller_wait_tick(c, cond_drained, flush_until, 5);
	}
	supervisor_stop_all(&c->sup, child_stop_deadline(kill_at));
	/*
	 * The account comes from the ring's counters, not from walking it: constant time
	 * whatever the backlog. Then the ring goes now, not in exit(): freeing a large one
	 * takes the kernel a while, and this way it happens inside the teardown reserve.
	 */
	ring_stats(&c->ring, &st);
	controller_metrics(c, false, true);
	ring_close(&c->ring);
	controller_report(c, &st);
	if (c->metrics.lines > 0)
		log_info("metrics: %" PRIu64 " EMF line(s), %" PRIu64 " bytes written to stdout", c->metrics.lines,
		    c->metrics.bytes);
	log_info("exiting %" PRId64 " ms before the deadline", deadline_ms - (int64_t)now_epoch_ms());
	exit(0);
}

/*
 * Sends event/next and waits for its answer with no timeout, restarting crashed
 * children meanwhile. Returns 0 with ev filled, or exits on unrecoverable errors.
 */
static int
controller_next(struct controller *c, struct ext_event *ev)
{
	struct ext_reply reply;
	uint64_t t_send;
	int rc, failures = 0;

	for (;;) {
		if (c->shipping)
			c->rd_at_next = atomic_load(&c->ctl->runtime_done_count);
		/* Timed before the send: once next is sent Lambda may freeze us before the next line. */
		t_send = now_mono_us();
		if ((rc = ext_api_next_send(&c->api)) != 0)
			goto transport;
		if (c->t_event_us != 0 && !c->waited) {
			uint64_t dt = t_send - c->t_event_us;

			c->quick_n++;
			c->quick_sum_us += dt;
			if (dt > c->quick_max_us)
				c->quick_max_us = dt;
		}
		c->t_event_us = 0;
		if (c->dispatcher_pending) {
			c->dispatcher_pending = false;
			if ((rc = supervisor_spawn(&c->sup, c->dispatcher)) != 0) {
				c->dispatcher->gave_up = true;
				log_error("cannot start the dispatcher (fork: %s): telemetry will NOT be sent",
				    strerror(-rc));
			}
		}
		for (;;) {
			struct pollfd p[3] = {
				{ .fd = ext_api_fd(&c->api), .events = POLLIN },
				{ .fd = c->sigfd, .events = POLLIN },
				{ .fd = c->shipping ? c->fds.to_controller : -1, .events = POLLIN },
			};
			int n;

			if (c->term)
				controller_shutdown(c, (int64_t)now_epoch_ms() + SIGTERM_SHUTDOWN_MS, "signal");
			if ((n = poll(p, 3, controller_metrics_timeout(c))) < 0 && errno != EINTR)
				fatal("poll");
			if (n == 0)
				controller_metrics(c, false, false);
			if (p[1].revents & POLLIN) {
				controller_signals(c);
				if (c->term)
					controller_shutdown(c, (int64_t)now_epoch_ms() + SIGTERM_SHUTDOWN_MS,
					    "signal");
			}
			if (p[2].revents & POLLIN)
				notify_drain(c->fds.to_controller);
			if (p[0].revents == 0)
				continue;
			rc = ext_api_next_recv(&c->api, &reply);
			if (rc == -EAGAIN)
				continue;
			if (rc != 0)
				goto transport;
			break;
		}
		if (reply.status != 200) {
			log_error("event/next refused: %d %s %.200s", reply.status, reply.error_type, reply.body);
			controller_exit_error(c, "Extension.NextFailed", "event/next refused");
		}
		if ((rc = ext_event_parse(reply.body, reply.body_len, ev)) == 0)
			return 0;
		log_warnx("event/next: unusable event (%s): %.200s", strerror(-rc), reply.body);
		continue;
transport:
		if (++failures >= 3) {
			log_error("event/next failed %d times: %s; exiting", failures, strerror(-rc));
			controller_exit_error(c, "Extension.NextFailed", strerror(-rc));
		}
		log_warnx("event/next: %s; retrying", strerror(-rc));
	}
}

int
main(int argc, char **argv)
{
	struct controller *c = &ctrl;
	char err[512], argv0[512];
	const char *runtime_api;
	struct ext_event ev;
	int rc;

	(void)argc;
	c->t0_us = now_mono_us();
	c->sigfd = -1;
	c->fds.to_controller = c->fds.to_dispatcher = -1;
	log_init("controller", LOG_LEVEL_INFO);
	snprintf(argv0, sizeof(argv0), "%s", argv[0]);
	snprintf(c->name, sizeof(c->name), "%s", basename(argv0));

	rc = config_load(&c->cfg, err, sizeof(err));
	log_set_level((enum log_level)c->cfg.log_level);
	if (rc != 0)
		log_error("configuration error: %s; telemetry will NOT be shipped%s", err,
		    c->cfg.strict ? " (KTE_STRICT=1: failing init)" :
		    " (the function runs normally; set KTE_STRICT=1 to fail init instead)");
	else
		log_info("Kinesis endpoint %s (from %s)", c->cfg.endpoint_url, c->cfg.endpoint_source);
	/* Said once, here: the dispatcher may be restarted, the configuration is not. */
	if (rc == 0 && c->cfg.endpoint_cleartext)
		log_warnx("the Kinesis endpoint %s is plain http:// to a host off this machine: the session "
		    "token and the telemetry travel in clear", c->cfg.endpoint_url);

	if ((runtime_api = getenv("AWS_LAMBDA_RUNTIME_API")) == NULL || *runtime_api == '\0')
		fatalx("AWS_LAMBDA_RUNTIME_API is not set: not running as a Lambda extension");
	if ((rc = ext_api_init(&c->api, runtime_api)) != 0)
		fatalx("AWS_LAMBDA_RUNTIME_API=\"%s\" is unusable: %s", runtime_api, strerror(-rc));
	if ((rc = controller_signals_init(c)) != 0)
		fatalx("signals: %s", strerror(-rc));

	if (err[0] == '\0')
		controller_prepare_shipping(c);
	log_debug("+%" PRIu64 " us: ring and control block ready, listener forked", now_mono_us() - c->t0_us);
	controller_register(c);
	log_debug("+%" PRIu64 " us: registered", now_mono_us() - c->t0_us);
	if (err[0] != '\0' && c->cfg.strict)
		controller_init_error(c, "Extension.ConfigInvalid", err);
	if (c->setup_error != NULL && c->cfg.strict)
		controller_init_error(c, "Extension.InitFailed", c->setup_error);

	flush_init(&c->flush, c->managed_instances ? FLUSH_CONTINUOUS : c->cfg.flush,
	    c->cfg.flush_interval_ms);
	metrics_init(&c->metrics, &c->cfg, getenv("AWS_LAMBDA_FUNCTION_NAME"), now_mono_ms());
	if (c->shipping)
		controller_subscribe(c);
	log_info("ready in %" PRIu64 " us: %s, flush %s%s, ring %" PRIu64 " bytes, overflow %s",
	    now_mono_us() - c->t0_us, c->shipping ? "shipping" : "NOT shipping",
	    config_flush_name(c->flush.configured), c->managed_instances ? " (managed instances)" : "",
	    c->cfg.ring_bytes, config_overflow_name(c->cfg.overflow));

	for (;;) {
		controller_next(c, &ev);
		c->t_event_us = now_mono_us();
		if (ev.type == EXT_EVENT_SHUTDOWN)
			controller_shutdown(c, ev.deadline_ms, ev.reason[0] ? ev.reason : "unknown");
		c->waited = false;
		controller_note_cycle(c);
		controller_invoke(c, &ev);
		controller_push_back(c, &ev);
		controller_metrics(c, true, false);
		if (c->term)
			controller_shutdown(c, (int64_t)now_epoch_ms() + SIGTERM_SHUTDOWN_MS, "signal");
	}
}
