/*
 * The listener process: a civetweb server that takes Telemetry API POSTs and hands
 * each body to intake (intake.c), answering 200 only once the batch is in the ring.
 *
 * HTTP concerns live here: path (404), method (405), body size (413, decided from
 * Content-Length before reading, or while reading a chunked body, never holding more
 * than the limit), reading the body into a per-thread buffer within a deadline (408),
 * the reply. Nothing is logged per request at the default level: the listener's own
 * log lines may be fed back to it through the Telemetry API's extension stream.
 *
 * civetweb gives a connection one worker thread for as long as the connection lasts.
 * Its options bound what it reads itself (the request headers, in total, within
 * request_timeout_ms; the wait for the next request on a kept-alive connection within
 * keep_alive_timeout_ms). What it cannot bound, a watchdog thread does (worker_due): a
 * body still arriving at its deadline and, when workers run short, connections that
 * hold one while sending no request. It wakes such a worker, blocked in civetweb's
 * poll(), with a signal (LISTENER_WAKE_SIG): the read returns early and the worker ends
 * that request or connection. The same wake-up makes a stop take milliseconds instead
 * of civetweb's 2-second poll quantum.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "intake.h"
#include "log.h"
#include "notify.h"

/* Interrupts a worker's (or civetweb's master thread's) blocking poll(); the handler does nothing. */
#define LISTENER_WAKE_SIG SIGUSR1
/* A wake-up may land between two system calls and be lost: repeat it this often until heeded. */
#define LISTENER_REPOKE_MS 20
/* How long a stopping listener waits for batches being written into the ring. */
#define LISTENER_STOP_WAIT_MS 50
/*
 * Then how long for civetweb to wind down before leaving anyway: the controller
 * SIGKILLs a child 200 ms after SIGTERM.
 */
#define LISTENER_STOP_GRACE_MS 30

/*
 * What a worker thread is doing, for the watchdog. Changed only by worker_enter, by
 * the worker itself; read by the watchdog; both under listener.mu.
 */
enum worker_state {
	WORKER_IDLE,        /* no connection: waiting in civetweb's queue */
	WORKER_WAITING,     /* a connection, no request yet (new, or kept alive after a reply) */
	WORKER_BODY,        /* reading a request body: deadline */
	WORKER_INTAKE,      /* body read, batch going into the ring: no deadline, waits for space */
	WORKER_DRAIN,       /* error reply sent, discarding the rest of the body before the close: deadline */
};

/* One per civetweb worker thread (init_thread/exit_thread), reused across requests. */
struct worker {
	uint8_t *body;
	size_t cap;
	struct intake_scratch scratch;
	pthread_t tid;
	enum worker_state state;
	uint64_t since_ms;          /* when it entered state */
	_Atomic uint64_t deadline_ms; /* BODY and DRAIN: woken from then on; brought forward to shed a body */
};

struct listener {
	struct intake intake;
	struct control *ctl;
	size_t body_limit;
	_Atomic int stopping;       /* SIGTERM seen: refuse new batches, stop waiting for ring space */

	pthread_mutex_t mu;         /* guards what follows */
	pthread_cond_t cv;          /* the watchdog waits on it (CLOCK_MONOTONIC) */
	struct worker *workers[LISTENER_THREADS];
	int nworkers, held;         /* registered workers; those not IDLE */
	pthread_t master;
	bool have_master;
	bool wake_all;              /* stopping: keep waking every civetweb thread */
	bool quit;                  /* the watchdog leaves */
};

/* civetweb's last message while starting, to explain a failed mg_start. */
static char listener_start_error[256];
static volatile int listener_starting;

size_t
listener_body_limit(const struct kte_config *cfg)
{
	return 2 * (size_t)cfg->buffer_max_bytes + LISTENER_BODY_SLACK;
}

static void
wake_handler(int sig)
{
	(void)sig;      /* only there to interrupt a system call (no SA_RESTART) */
}

/* True when so few workers are free that connections sending nothing must make room. */
static bool
workers_short(const struct listener *l)
{
	return l->nworkers - l->held < LISTENER_SPARE_WORKERS;
}

/*
 * The one transition of a worker's state. Wakes the watchdog when the new state has a
 * deadline or workers are running short (otherwise it has nothing new to do).
 */
static void
worker_enter(struct listener *l, struct worker *w, enum worker_state s, uint64_t deadline_ms)
{
	pthread_mutex_lock(&l->mu);
	if ((w->state == WORKER_IDLE) != (s == WORKER_IDLE))
		l->held += s == WORKER_IDLE ? -1 : 1;
	w->state = s;
	w->since_ms = now_mono_ms();
	w->deadline_ms = deadline_ms;
	if (s == WORKER_BODY || s == WORKER_DRAIN || workers_short(l))
		pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/*
 * When the watchdog must wake this worker (UINT64_MAX: never): a body or a drain past
 * its deadline; while fewer than LISTENER_SPARE_WORKERS workers are free, also a
 * connection waiting for a request for LISTENER_SHED_MS (an idle keep-alive
 * connection, or a client that connected and sent nothing or half a request) and a
 * body still arriving after LISTENER_SHED_BODY_MS. Called under l->mu.
 */
static uint64_t
worker_due(const struct listener *l, const struct worker *w)
{
	switch (w->state) {
	case WORKER_BODY:
		/* A body takes milliseconds at memory speed: one still arriving after LISTENER_SHED_BODY_MS makes room. */
		if (workers_short(l) && w->since_ms + LISTENER_SHED_BODY_MS < w->deadline_ms)
			return w->since_ms + LISTENER_SHED_BODY_MS;
		return w->deadline_ms;
	case WORKER_DRAIN:
		return w->deadline_ms;
	case WORKER_WAITING:
		return workers_short(l) ? w->since_ms + LISTENER_SHED_MS : UINT64_MAX;
	case WORKER_IDLE:
	case WORKER_INTAKE:
	default:
		return UINT64_MAX;
	}
}

static void
cv_wait_until(struct listener *l, uint64_t until_ms)
{
	struct timespec ts;

	if (until_ms == UINT64_MAX) {
		pthread_cond_wait(&l->cv, &l->mu);
		return;
	}
	ts.tv_sec = (time_t)(until_ms / 1000);
	ts.tv_nsec = (long)(until_ms % 1000) * 1000000L;
	(void)pthread_cond_timedwait(&l->cv, &l->mu, &ts);
}

/* The watchdog thread: wakes the workers that are due, sleeps until the next one is. */
static void *
watchdog_run(void *p)
{
	struct listener *l = p;

	pthread_mutex_lock(&l->mu);
	while (!l->quit) {
		uint64_t now = now_mono_ms(), next = UINT64_MAX;

		for (int i = 0; i < l->nworkers; i++) {
			struct worker *w = l->workers[i];
			/* Stopping: workers with a connection sit in civetweb's poll(); idle ones are woken by mg_stop. */
			uint64_t due = l->wake_all && w->state != WORKER_IDLE ? now : worker_due(l, w);

			if (due <= now) {
				/* A body shed before its deadline: read_body sees the new one and answers 408. */
				if (w->state == WORKER_BODY && w->deadline_ms > now)
					w->deadline_ms = now;
				(void)pthread_kill(w->tid, LISTENER_WAKE_SIG);
				due = now + LISTENER_REPOKE_MS;
			}
			if (due < next)
				next = due;
		}
		if (l->wake_all) {
			/* civetweb's accept loop sees its stop flag only when its poll() returns. */
			if (l->have_master)
				(void)pthread_kill(l->master, LISTENER_WAKE_SIG);
			next = now + 5;
		}
		cv_wait_until(l, next);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/*
 * A worker's buffers live while it has a connection: a body buffer mapped on its own
 * (munmap gives it back to the system, where free() would keep it in one of malloc's
 * per-thread arenas) and the intake scratch. With 16 workers, buffers kept by each
 * would add up to many MiB that only a few connections use.
 */
static void
worker_release(struct worker *w)
{
	if (w->body != NULL)
		munmap(w->body, w->cap);
	w->body = NULL;
	w->cap = 0;
	intake_scratch_cleanup(&w->scratch);
}

static void *
thread_init(const struct mg_context *ctx, int thread_type)
{
	struct listener *l = mg_get_user_data(ctx);
	struct worker *w;

	if (thread_type == 0) {
		pthread_mutex_lock(&l->mu);
		l->master = pthread_self();
		l->have_master = true;
		pthread_mutex_unlock(&l->mu);
		return NULL;
	}
	/* 1: a worker thread; the timer thread (2) needs nothing. */
	if (thread_type != 1 || (w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->tid = pthread_self();
	w->state = WORKER_IDLE;
	pthread_mutex_lock(&l->mu);
	if (l->nworkers < LISTENER_THREADS)
		l->workers[l->nworkers++] = w;
	pthread_mutex_unlock(&l->mu);
	return w;
}

static void
thread_exit(const struct mg_context *ctx, int thread_type, void *p)
{
	struct listener *l = mg_get_user_data(ctx);
	struct worker *w = p;

	(void)thread_type;
	if (w == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	for (int i = 0; i < l->nworkers; i++)
		if (l->workers[i] == w) {
			l->workers[i] = l->workers[--l->nworkers];
			break;
		}
	if (w->state != WORKER_IDLE)
		l->held--;
	pthread_mutex_unlock(&l->mu);
	worker_release(w);
	free(w);
}

/* A worker took a connection from civetweb's queue: it is held until connection_closed. */
static int
connection_init(const struct mg_connection *conn, void **conn_data)
{
	struct worker *w = mg_get_thread_pointer(conn);

	*conn_data = NULL;
	if (w != NULL)
		worker_enter(mg_get_user_context_data(conn), w, WORKER_WAITING, 0);
	return 0;
}

static void
connection_closed(const struct mg_connection *conn)
{
	struct worker *w = mg_get_thread_pointer(conn);

	if (w == NULL)
		return;
	worker_release(w);
	worker_enter(mg_get_user_context_data(conn), w, WORKER_IDLE, 0);
}

static int
civetweb_log(const struct mg_connection *conn, const char *message)
{
	(void)conn;
	if (listener_starting)
		snprintf(listener_start_error, sizeof(listener_start_error), "%s", message);
	log_debug("civetweb: %s", message);
	return 1;       /* handled: civetweb prints nothing itself */
}

/* Mirrors civetweb's own keep-alive decision (enable_keep_alive is on), so the header tells the truth. */
static bool
keep_alive(const struct mg_connection *conn)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	const char *c = mg_get_header(conn, "Connection");

	if (c != NULL)
		return strcasestr(c, "keep-alive") != NULL;
	return ri->http_version != NULL && strcmp(ri->http_version, "1.1") == 0;
}

/*
 * Writes the whole response (status line, headers, body) in one write. Written here
 * because civetweb 1.15 does not answer "Expect: 100-continue" for request handlers,
 * and once the handler has sent the "100 Continue" itself, civetweb's reply functions
 * (mg_send_http_*, mg_response_header_*) refuse to run. close ends the connection
 * after the reply; so does a shortage of workers (a kept-alive connection would hold one).
 */
static void
reply(struct listener *l, struct mg_connection *conn, int status, const char *allow, const char *text,
    bool close)
{
	char buf[512];
	size_t n = text != NULL ? strlen(text) : 0;
	int len;

	if (!close && !keep_alive(conn))
		close = true;
	if (!close) {
		pthread_mutex_lock(&l->mu);
		close = workers_short(l);
		pthread_mutex_unlock(&l->mu);
	}
	if (close)
		mg_disable_connection_keep_alive(conn);
	len = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
	    "Content-Length: %zu\r\nConnection: %s\r\n%s%s%s\r\n%s", status,
	    mg_get_response_code_text(conn, status), n, close ? "close" : "keep-alive",
	    allow != NULL ? "Allow: " : "", allow != NULL ? allow : "", allow != NULL ? "\r\n" : "",
	    text != NULL ? text : "");
	if (len > 0)
		mg_write(conn, buf, (size_t)len < sizeof(buf) ? (size_t)len : sizeof(buf) - 1);
}

static int
worker_reserve(struct worker *w, size_t need)
{
	uint8_t *p;
	size_t cap;

	if (need <= w->cap)
		return 0;
	cap = w->cap == 0 ? 64 * 1024 : w->cap;
	while (cap < need)
		cap *= 2;
	p = w->body == NULL ? mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) :
	    mremap(w->body, w->cap, cap, MREMAP_MAYMOVE);
	if (p == MAP_FAILED)
		return -ENOMEM;
	w->body = p;
	w->cap = cap;
	return 0;
}

/*
 * Reads the whole body into w->body before w->deadline_ms (the watchdog wakes a read
 * blocked past it, or brings the deadline forward to shed the body). content_length < 0 means chunked (or unknown): read until the
 * end, growing the buffer, and give up with -EFBIG once more than limit bytes arrived.
 * Returns 0 with *len, -EFBIG, -ENOMEM, -ETIMEDOUT, or -EIO when the client went away
 * or sent nothing for request_timeout_ms.
 */
static int
read_body(struct mg_connection *conn, struct worker *w, long long content_length, size_t limit,
    size_t *len)
{
	size_t got = 0;
	int n;

	if (content_length >= 0) {
		if (worker_reserve(w, (size_t)content_length) != 0)
			return -ENOMEM;
		while (got < (size_t)content_length) {
			n = mg_read(conn, w->body + got, (size_t)content_length - got);
			if (n > 0)
				got += (size_t)n;
			if (got < (size_t)content_length && now_mono_ms() >= atomic_load(&w->deadline_ms))
				return -ETIMEDOUT;
			if (n <= 0)
				return -EIO;
		}
		*len = got;
		return 0;
	}
	for (;;) {
		if (got == w->cap) {
			if (got > limit)
				return -EFBIG;
			if (worker_reserve(w, got + 1 < limit + 1 ? got + 1 : limit + 1) != 0)
				return -ENOMEM;
		}
		n = mg_read(conn, w->body + got, (w->cap < limit + 1 ? w->cap : limit + 1) - got);
		if (now_mono_ms() >= atomic_load(&w->deadline_ms))
			return -ETIMEDOUT;
		if (n < 0)
			return -EIO;
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > limit)
			return -EFBIG;
	}
	*len = got;
	return 0;
}

/*
 * After an error reply sent before the whole body was read: reads and discards the
 * rest for a bounded time, so that the close that follows finds nothing unread. Closing
 * a socket with unread data makes the kernel send a reset, which can destroy the reply
 * before the client reads it. Ends at the body's end, when the client closes (it has
 * the whole reply: Content-Length, Connection: close), or at the bound; civetweb then
 * shuts the socket down for writing and closes it.
 */
static void
drain_body(struct listener *l, struct worker *w, struct mg_connection *conn)
{
	char buf[16384];
	uint64_t until = now_mono_ms() + LISTENER_DRAIN_MS;
	size_t total = 0;
	int n;

	worker_enter(l, w, WORKER_DRAIN, until);
	while (total < LISTENER_DRAIN_MAX && now_mono_ms() < until &&
	    (n = mg_read(conn, buf, sizeof(buf))) > 0)
		total += (size_t)n;
}

static bool
path_ok(const char *p)
{
	return p != NULL && (strcmp(p, "/") == 0 || strcmp(p, LISTENER_PATH) == 0 ||
	    strcmp(p, LISTENER_PATH "/") == 0);
}

/* Replies to a request refused before its body was read; a body that may follow is drained. */
static int
refuse(struct listener *l, struct worker *w, struct mg_connection *conn, int status, const char *allow,
    const char *text)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	const char *te = mg_get_header(conn, "Transfer-Encoding");
	/* civetweb says -1 both for chunked and for no body at all (a GET). */
	bool body = ri->content_length > 0 || (te != NULL && strcasestr(te, "chunked") != NULL);

	reply(l, conn, status, allow, text, body);
	if (body)
		drain_body(l, w, conn);
	return status;
}

static int
handle_request(struct listener *l, struct worker *w, struct mg_connection *conn)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct listener_counters *lc = &l->ctl->listener;
	struct intake_result res;
	size_t len = 0;
	int rc;

	if (atomic_load(&l->stopping))
		/* Nothing taken now could still be delivered: let Lambda keep it. */
		return refuse(l, w, conn, 503, NULL, "shutting down\n");
	if (!path_ok(ri->local_uri)) {
		atomic_fetch_add_explicit(&lc->not_found, 1, memory_order_relaxed);
		return refuse(l, w, conn, 404, NULL, "not found: POST telemetry batches to / or "
		    LISTENER_PATH "\n");
	}
	if (strcmp(ri->request_method, "POST") != 0) {
		atomic_fetch_add_explicit(&lc->bad_method, 1, memory_order_relaxed);
		return refuse(l, w, conn, 405, "POST", "method not allowed: POST telemetry batches\n");
	}
	if (ri->content_length > (long long)l->body_limit) {
		/* Decided before "100 Continue": a client that asked does not send the body at all. */
		atomic_fetch_add_explicit(&lc->too_large, 1, memory_order_relaxed);
		return refuse(l, w, conn, 413, NULL, "payload too large\n");
	}
	{
		/* civetweb leaves "Expect: 100-continue" to handlers; without it the client stalls. */
		const char *expect = mg_get_header(conn, "Expect");

		if (expect != NULL && strcasecmp(expect, "100-continue") == 0)
			mg_printf(conn, "HTTP/1.1 100 Continue\r\n\r\n");
	}
	{
		worker_enter(l, w, WORKER_BODY, now_mono_ms() + LISTENER_BODY_MS);
		rc = read_body(conn, w, ri->content_length, l->body_limit, &len);
		/* From here no deadline: a batch may wait for ring space (intake.ring_wait_ms). */
		worker_enter(l, w, WORKER_INTAKE, 0);
	}
	if (rc == -EFBIG) {
		atomic_fetch_add_explicit(&lc->too_large, 1, memory_order_relaxed);
		/* The rest of the body is not kept in memory; the connection ends after the reply. */
		reply(l, conn, 413, NULL, "payload too large\n", true);
		drain_body(l, w, conn);
		return 413;
	}
	if (rc == -ETIMEDOUT) {
		atomic_fetch_add_explicit(&lc->bad_request, 1, memory_order_relaxed);
		reply(l, conn, 408, NULL, "body not received in time\n", true);
		return 408;
	}
	if (rc == -EIO) {
		atomic_fetch_add_explicit(&lc->bad_request, 1, memory_order_relaxed);
		reply(l, conn, 400, NULL, "incomplete body\n", true);
		return 400;
	}
	if (rc != 0) {
		reply(l, conn, 500, NULL, "out of memory\n", true);
		drain_body(l, w, conn);
		return 500;
	}
	(void)intake_batch(&l->intake, &w->scratch, w->body, len, &res);
	if (res.status != 200)
		log_debug("%d for a %zu-byte batch: %s (offset %zu)", res.status, len, res.why,
		    res.error_offset);
	reply(l, conn, res.status, NULL, res.status == 200 ? NULL : res.why, false);
	return res.status;
}

static int
handle_telemetry(struct mg_connection *conn, void *cbdata)
{
	struct listener *l = cbdata;
	struct worker *w = mg_get_thread_pointer(conn);
	int status;

	if (w == NULL) {
		reply(l, conn, 500, NULL, "no worker state\n", true);
		return 500;
	}
	status = handle_request(l, w, conn);
	/* Replied: the connection waits for its next request, or civetweb closes it. */
	worker_enter(l, w, WORKER_WAITING, 0);
	return status;
}

/*
 * Resolves host to the numeric address civetweb binds ("a.b.c.d" or "[v6]").
 * IPv4 is preferred. Outside Lambda sandbox.localdomain does not resolve: fall back
 * to 127.0.0.1 for that name only.
 */
static int
resolve_host(const char *host, char *out, size_t outlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai, *pick = NULL;
	char buf[INET6_ADDRSTRLEN];
	int rc;

	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		if (strcmp(host, "sandbox.localdomain") == 0) {
			log_info("%s does not resolve (not in Lambda): binding 127.0.0.1", host);
			snprintf(out, outlen, "127.0.0.1");
			return 0;
		}
		log_warnx("cannot resolve KTE_LISTENER_HOST=%s: %s", host, gai_strerror(rc));
		return -EADDRNOTAVAIL;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (ai->ai_family == AF_INET && (pick = ai) != NULL)
			break;
	if (pick == NULL)
		for (ai = res; ai != NULL; ai = ai->ai_next)
			if (ai->ai_family == AF_INET6 && (pick = ai) != NULL)
				break;
	rc = -EADDRNOTAVAIL;
	if (pick != NULL && pick->ai_family == AF_INET &&
	    inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)pick->ai_addr)->sin_addr, buf,
	    sizeof(buf)) != NULL) {
		snprintf(out, outlen, "%s", buf);
		rc = 0;
	} else if (pick != NULL && pick->ai_family == AF_INET6 &&
	    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)pick->ai_addr)->sin6_addr, buf,
	    sizeof(buf)) != NULL) {
		snprintf(out, outlen, "[%s]", buf);
		rc = 0;
	}
	freeaddrinfo(res);
	if (rc != 0)
		log_warnx("KTE_LISTENER_HOST=%s has no IPv4 or IPv6 address", host);
	return rc;
}

/* Sleeps until SIGTERM/SIGINT (blocked, taken synchronously) or the parent is gone. */
static void
wait_for_stop(const sigset_t *stopset, pid_t parent)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	for (;;) {
		int sig = sigtimedwait(stopset, NULL, &ts);

		if (sig == SIGTERM || sig == SIGINT) {
			log_debug("signal %d: stopping", sig);
			return;
		}
		if (getppid() != parent) {
			log_warnx("parent process gone: stopping");
			return;
		}
	}
}

struct stopper {
	struct mg_context *ctx;
	pthread_t thread;
};

static void *
stopper_run(void *p)
{
	struct stopper *st = p;

	mg_stop(st->ctx);
	return NULL;
}

/* Workers writing a batch into the ring (after stopping is set, no new one starts). */
static int
workers_in_intake(struct listener *l)
{
	int n = 0;

	pthread_mutex_lock(&l->mu);
	for (int i = 0; i < l->nworkers; i++)
		n += l->workers[i]->state == WORKER_INTAKE;
	pthread_mutex_unlock(&l->mu);
	return n;
}

/*
 * Stops the server quickly: new requests are refused (503), a batch waiting for ring
 * space gives up (503, intake.cancel), batches being written get LISTENER_STOP_WAIT_MS
 * to finish, then mg_stop runs while the watchdog wakes every civetweb thread so that
 * each sees the stop flag at once (each polls in 2-second quanta). Returns true when
 * civetweb stopped; false when it did not within LISTENER_STOP_GRACE_MS (the process is
 * about to exit, which ends its threads; none of them holds a ring reservation then).
 */
static bool
stop_server(struct listener *l, struct mg_context *ctx)
{
	static struct stopper st;       /* static: the stopper thread may outlive this call */
	uint64_t deadline = now_mono_ms() + LISTENER_STOP_WAIT_MS;
	struct timespec ts;
	int n;

	atomic_store(&l->stopping, 1);
	while ((n = workers_in_intake(l)) > 0 && now_mono_ms() < deadline)
		(void)poll(NULL, 0, 2);
	if (n > 0) {
		log_warnx("%d batch(es) still being written after %d ms: stopping without answering them",
		    n, LISTENER_STOP_WAIT_MS);
		return false;
	}
	pthread_mutex_lock(&l->mu);
	l->wake_all = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);

	st.ctx = ctx;
	if (pthread_create(&st.thread, NULL, stopper_run, &st) != 0)
		return false;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += LISTENER_STOP_GRACE_MS * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	if (pthread_timedjoin_np(st.thread, NULL, &ts) != 0) {
		pthread_detach(st.thread);
		return false;
	}
	log_debug("civetweb stopped in %" PRIu64 " ms", now_mono_ms() - (deadline - LISTENER_STOP_WAIT_MS));
	return true;
}

int
listener_main(const struct listener_args *a)
{
	return listener_run(a, 0);
}

/* Sets up l's lock, condition (on the monotonic clock, as now_mono_ms) and the watchdog thread. */
static int
watchdog_start(struct listener *l, pthread_t *t)
{
	pthread_condattr_t ca;

	if (pthread_mutex_init(&l->mu, NULL) != 0 || pthread_condattr_init(&ca) != 0)
		return -ENOMEM;
	(void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&l->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		return -ENOMEM;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_create(t, NULL, watchdog_run, l) != 0)
		return -EAGAIN;
	return 0;
}

static void
watchdog_stop(struct listener *l, pthread_t t)
{
	pthread_mutex_lock(&l->mu);
	l->quit = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(t, NULL);
}

int
listener_run(const struct listener_args *a, int ring_wait_ms)
{
	const struct kte_config *cfg = a->cfg;
	/* Static: civetweb threads may outlive this call when they do not stop in time. */
	static struct listener l;
	struct sigaction sa;
	struct mg_callbacks cb;
	struct mg_context *ctx;
	sigset_t stopset;
	pthread_t watchdog;
	char addr[INET6_ADDRSTRLEN + 2], ports[INET6_ADDRSTRLEN + 16], threads[8], backlog[8];
	char header_ms[16], keepalive_ms[16];
	const char *opts[] = {
		"listening_ports", ports,
		"num_threads", threads,
		/* Accepted connections waiting for a worker, then the kernel's backlog. */
		"connection_queue", backlog,
		"listen_backlog", backlog,
		"enable_keep_alive", "yes",
		"keep_alive_timeout_ms", keepalive_ms,
		/* Headers in total; also civetweb's limit for one read or write without progress. */
		"request_timeout_ms", header_ms,
		"tcp_nodelay", "1",
		NULL,
	};
	pid_t parent = getppid();
	int wait_ms;

	log_init("listener", (enum log_level)cfg->log_level);
	/* Exit with the parent: a signal now, and getppid() checks for the window before this. */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Handlers inherited from the controller would swallow a SIGTERM sent right
	 * after fork; default action until blocked, then blocked before civetweb starts
	 * its threads, so only wait_for_stop takes them.
	 */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	sigemptyset(&stopset);
	sigaddset(&stopset, SIGTERM);
	sigaddset(&stopset, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stopset, NULL);
	/*
	 * No SA_RESTART: the wake-up must make a blocking poll() return. Unblocked
	 * whatever mask was inherited; civetweb's threads inherit this one.
	 */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wake_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(LISTENER_WAKE_SIG, &sa, NULL);
	{
		sigset_t wake;

		sigemptyset(&wake);
		sigaddset(&wake, LISTENER_WAKE_SIG);
		pthread_sigmask(SIG_UNBLOCK, &wake, NULL);
	}

	memset(&l, 0, sizeof(l));
	l.ctl = a->ctl;
	l.body_limit = listener_body_limit(cfg);
	/*
	 * While the ring is full a POST is held until the dispatcher frees space (Lambda
	 * keeps the batch meanwhile and sends no other on that subscription), bounded only
	 * by a stop; KTE_OVERFLOW=drop answers 503 after INTAKE_RING_WAIT_MS instead.
	 */
	wait_ms = ring_wait_ms > 0 ? ring_wait_ms :
	    cfg->overflow == OVERFLOW_DROP ? INTAKE_RING_WAIT_MS : INT_MAX;
	if (intake_init(&l.intake, cfg, a->ring, a->ctl, a->fds != NULL ? a->fds->to_controller : -1,
	    wait_ms) != 0)
		log_warnx("KTE_DROP_TYPES=\"%s\": some entries are empty, too long or too many; "
		    "using the first %d valid ones", cfg->drop_types, FILTER_MAX_TYPES);
	/* A stopping listener answers 503 at once instead of sitting out a full ring. */
	l.intake.cancel = &l.stopping;

	if (resolve_host(cfg->listener_host, addr, sizeof(addr)) != 0)
		return 1;
	snprintf(ports, sizeof(ports), "%s:%u", addr, (unsigned)cfg->listener_port);
	snprintf(threads, sizeof(threads), "%d", LISTENER_THREADS);
	snprintf(backlog, sizeof(backlog), "%d", LISTENER_BACKLOG);
	snprintf(header_ms, sizeof(header_ms), "%d", LISTENER_HEADER_MS);
	snprintf(keepalive_ms, sizeof(keepalive_ms), "%d", LISTENER_KEEPALIVE_MS);
	if (watchdog_start(&l, &watchdog) != 0) {
		log_warnx("cannot start the listener's watchdog thread");
		return 1;
	}

	memset(&cb, 0, sizeof(cb));
	cb.init_thread = thread_init;
	cb.exit_thread = thread_exit;
	cb.init_connection = connection_init;
	cb.connection_close = connection_closed;
	cb.log_message = civetweb_log;
	mg_init_library(0);
	listener_starting = 1;
	ctx = mg_start(&cb, &l, opts);
	listener_starting = 0;
	if (ctx == NULL) {
		log_warnx("cannot listen on %s: %s", ports,
		    listener_start_error[0] != '\0' ? listener_start_error : "civetweb failed to start");
		mg_exit_library();
		watchdog_stop(&l, watchdog);
		return 1;
	}
	mg_set_request_handler(ctx, "/", handle_telemetry, &l);

	atomic_store(&a->ctl->listener_ready, 1);
	if (a->fds != NULL)
		notify_signal(a->fds->to_controller);
	log_info("listening on %s (%s), %d threads, bodies up to %zu bytes, events up to %u bytes",
	    ports, cfg->listener_host, LISTENER_THREADS, l.body_limit, l.intake.max_event);

	wait_for_stop(&stopset, parent);

	/* In-flight requests finish (their batches reach the ring or are refused) first. */
	if (stop_server(&l, ctx)) {
		mg_exit_library();
		watchdog_stop(&l, watchdog);
	} else
		log_info("civetweb still stopping after %d ms: its threads end with the process", LISTENER_STOP_GRACE_MS);
	atomic_store(&a->ctl->listener_ready, 0);
	return 0;
}
