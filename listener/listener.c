/*
 * The listener process: a civetweb server that takes Telemetry API POSTs and hands
 * each body to intake (intake.c), answering 200 only once the batch is in the ring.
 *
 * HTTP concerns live here: path (404), method (405), body size (413, decided from
 * Content-Length before reading, or while reading a chunked body, never holding more
 * than the limit), reading the body into a per-thread buffer, the reply. Nothing is
 * logged per request at the default level: the listener's own log lines may be fed
 * back to it through the Telemetry API's extension stream.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "intake.h"
#include "log.h"
#include "notify.h"

struct listener {
	struct intake intake;
	struct control *ctl;
	size_t body_limit;
	_Atomic int stopping;       /* SIGTERM seen: refuse new batches, stop waiting for ring space */
	_Atomic int active;         /* requests being handled */
};

/* How long a stopping listener waits for civetweb to wind down before leaving anyway. */
#define LISTENER_STOP_GRACE_MS 300
/*
 * How long it waits for requests in flight: enough to parse and copy a batch into the
 * ring (one waiting for ring space answers 503 at once: intake.cancel). Not a slow
 * client's body: the controller SIGKILLs a child 200 ms after SIGTERM.
 */
#define LISTENER_STOP_WAIT_MS 50

/* One per civetweb worker thread (init_thread/exit_thread), reused across requests. */
struct worker {
	uint8_t *body;
	size_t cap;
	struct intake_scratch scratch;
};

/* civetweb's last message while starting, to explain a failed mg_start. */
static char listener_start_error[256];
static volatile int listener_starting;

size_t
listener_body_limit(const struct kte_config *cfg)
{
	return 2 * (size_t)cfg->buffer_max_bytes + LISTENER_BODY_SLACK;
}

static void *
worker_init(const struct mg_context *ctx, int thread_type)
{
	(void)ctx;
	/* 1: a worker thread; the master and timer threads need nothing. */
	return thread_type == 1 ? calloc(1, sizeof(struct worker)) : NULL;
}

static void
worker_exit(const struct mg_context *ctx, int thread_type, void *p)
{
	struct worker *w = p;

	(void)ctx;
	(void)thread_type;
	if (w == NULL)
		return;
	intake_scratch_cleanup(&w->scratch);
	free(w->body);
	free(w);
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
 * Writes the whole response (status line, headers, body) in one write. Written by
 * hand because civetweb's header API refuses to run after a "100 Continue".
 * close ends the connection after the reply (body not fully read).
 */
static void
reply(struct mg_connection *conn, int status, const char *allow, const char *text, bool close)
{
	char buf[512];
	size_t n = text != NULL ? strlen(text) : 0;
	int len;

	if (close || !keep_alive(conn)) {
		close = true;
		mg_disable_connection_keep_alive(conn);
	}
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
	if ((p = realloc(w->body, cap)) == NULL)
		return -ENOMEM;
	w->body = p;
	w->cap = cap;
	return 0;
}

/*
 * Reads the whole body into w->body. content_length < 0 means chunked (or unknown):
 * read until the end, growing the buffer, and give up with -EFBIG once more than
 * limit bytes arrived. Returns 0 with *len, -EFBIG, -ENOMEM, or -EIO when the client
 * went away or timed out mid-body.
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
			if (n <= 0)
				return -EIO;
			got += (size_t)n;
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

static bool
path_ok(const char *p)
{
	return p != NULL && (strcmp(p, "/") == 0 || strcmp(p, LISTENER_PATH) == 0 ||
	    strcmp(p, LISTENER_PATH "/") == 0);
}

static int handle_request(struct listener *l, struct mg_connection *conn);

/* Counts requests in flight, so that a stop waits for batches being written. */
static int
handle_telemetry(struct mg_connection *conn, void *cbdata)
{
	struct listener *l = cbdata;
	int status;

	atomic_fetch_add(&l->active, 1);
	if (atomic_load(&l->stopping)) {
		/* Nothing taken now could still be delivered: let Lambda keep it. */
		reply(conn, 503, NULL, "shutting down\n", true);
		status = 503;
	} else
		status = handle_request(l, conn);
	atomic_fetch_sub(&l->active, 1);
	return status;
}

static int
handle_request(struct listener *l, struct mg_connection *conn)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct worker *w = mg_get_thread_pointer(conn);
	struct listener_counters *lc = &l->ctl->listener;
	struct intake_result res;
	size_t len = 0;
	int rc;

	if (!path_ok(ri->local_uri)) {
		atomic_fetch_add_explicit(&lc->not_found, 1, memory_order_relaxed);
		reply(conn, 404, NULL, "not found: POST telemetry batches to / or " LISTENER_PATH "\n", false);
		return 404;
	}
	if (strcmp(ri->request_method, "POST") != 0) {
		atomic_fetch_add_explicit(&lc->bad_method, 1, memory_order_relaxed);
		reply(conn, 405, "POST", "method not allowed: POST telemetry batches\n", false);
		return 405;
	}
	if (w == NULL) {
		reply(conn, 500, NULL, "no worker state\n", false);
		return 500;
	}
	if (ri->content_length > (long long)l->body_limit)
		rc = -EFBIG;
	else {
		/* civetweb leaves "Expect: 100-continue" to handlers; without it the client stalls. */
		const char *expect = mg_get_header(conn, "Expect");

		if (expect != NULL && strcasecmp(expect, "100-continue") == 0)
			mg_printf(conn, "HTTP/1.1 100 Continue\r\n\r\n");
		rc = read_body(conn, w, ri->content_length, l->body_limit, &len);
	}
	if (rc == -EFBIG) {
		atomic_fetch_add_explicit(&lc->too_large, 1, memory_order_relaxed);
		/* The rest of the body is not read into memory; the connection ends after the reply. */
		reply(conn, 413, NULL, "payload too large\n", true);
		return 413;
	}
	if (rc == -EIO) {
		atomic_fetch_add_explicit(&lc->bad_request, 1, memory_order_relaxed);
		reply(conn, 400, NULL, "incomplete body\n", true);
		return 400;
	}
	if (rc != 0) {
		reply(conn, 500, NULL, "out of memory\n", false);
		return 500;
	}
	(void)intake_batch(&l->intake, &w->scratch, w->body, len, &res);
	if (res.status != 200)
		log_debug("%d for a %zu-byte batch: %s (offset %zu)", res.status, len, res.why,
		    res.error_offset);
	reply(conn, res.status, NULL, res.status == 200 ? NULL : res.why, false);
	return res.status;
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
	_Atomic int done;
};

static void *
stopper_run(void *p)
{
	struct stopper *st = p;

	mg_stop(st->ctx);
	atomic_store(&st->done, 1);
	return NULL;
}

/*
 * Wakes the civetweb workers parked on idle keep-alive connections (they poll in
 * 2-second quanta): shuts down every accepted socket of ours. Called only once no
 * request is in flight and new ones are refused, so no batch is cut.
 */
static void
kick_idle_connections(uint16_t port)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int fd = atoi(de->d_name), listening = 0;
		socklen_t ll = sizeof(listening);
		uint16_t p;

		if (fd <= 2 || fd == dirfd(d) || getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
			continue;
		if (sa.ss_family == AF_INET)
			p = ntohs(((struct sockaddr_in *)(void *)&sa)->sin_port);
		else if (sa.ss_family == AF_INET6)
			p = ntohs(((struct sockaddr_in6 *)(void *)&sa)->sin6_port);
		else
			continue;
		if (p == port && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 &&
		    !listening)
			shutdown(fd, SHUT_RDWR);
	}
	closedir(d);
}

/*
 * Stops the server quickly: new requests are refused, requests in flight finish
 * (bounded by LISTENER_STOP_WAIT_MS), idle keep-alive connections are closed, and
 * mg_stop runs while we connect to ourselves every 20 ms to wake civetweb's master
 * thread, which otherwise notices the stop only at the end of its 2-second poll.
 * A request still in flight after that (a body still arriving) is not acknowledged,
 * and mg_stop, which would wait for its thread, is skipped. Returns true when civetweb
 * stopped; false when its threads are still running (the process is about to exit,
 * which ends them; such a thread holds no ring reservation).
 */
static bool
stop_server(struct listener *l, struct mg_context *ctx, const char *addr, uint16_t port)
{
	struct stopper st = { .ctx = ctx };
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
	struct addrinfo *ai = NULL;
	char host[INET6_ADDRSTRLEN + 2], service[8];
	uint64_t deadline;
	pthread_t t;

	atomic_store(&l->stopping, 1);
	deadline = now_mono_ms() + LISTENER_STOP_WAIT_MS;
	while (atomic_load(&l->active) > 0 && now_mono_ms() < deadline)
		(void)poll(NULL, 0, 2);
	if (atomic_load(&l->active) > 0) {
		log_warnx("%d request(s) still in flight after %d ms: stopping without answering them",
		    atomic_load(&l->active), LISTENER_STOP_WAIT_MS);
		return false;
	}
	kick_idle_connections(port);

	if (pthread_create(&t, NULL, stopper_run, &st) != 0) {
		mg_stop(ctx);
		return true;
	}
	/* "[v6]" -> "v6"; a wildcard bind is reached through loopback. */
	snprintf(host, sizeof(host), "%s", addr[0] == '[' ? addr + 1 : addr);
	host[strcspn(host, "]")] = '\0';
	if (strcmp(host, "0.0.0.0") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "::1");
	snprintf(service, sizeof(service), "%u", (unsigned)port);
	if (getaddrinfo(host, service, &hints, &ai) != 0)
		ai = NULL;
	deadline = now_mono_ms() + LISTENER_STOP_GRACE_MS;
	while (!atomic_load(&st.done) && now_mono_ms() < deadline) {
		if (ai != NULL) {
			int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

			if (fd >= 0) {
				(void)connect(fd, ai->ai_addr, ai->ai_addrlen);
				close(fd);
			}
		}
		(void)poll(NULL, 0, 20);
	}
	if (ai != NULL)
		freeaddrinfo(ai);
	if (!atomic_load(&st.done)) {
		pthread_detach(t);
		return false;
	}
	pthread_join(t, NULL);
	return true;
}

int
listener_main(const struct listener_args *a)
{
	return listener_run(a, 0);
}

int
listener_run(const struct listener_args *a, int ring_wait_ms)
{
	const struct kte_config *cfg = a->cfg;
	/* Static: civetweb threads may outlive this call when they do not stop in time. */
	static struct listener l;
	struct mg_callbacks cb;
	struct mg_context *ctx;
	sigset_t stopset;
	char addr[INET6_ADDRSTRLEN + 2], ports[INET6_ADDRSTRLEN + 16], threads[8];
	const char *opts[] = {
		"listening_ports", ports,
		"num_threads", threads,
		"enable_keep_alive", "yes",
		"keep_alive_timeout_ms", "5000",
		"request_timeout_ms", "10000",
		"tcp_nodelay", "1",
		"listen_backlog", "64",
		NULL,
	};
	pid_t parent = getppid();
	int rc;

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

	memset(&l, 0, sizeof(l));
	l.ctl = a->ctl;
	l.body_limit = listener_body_limit(cfg);
	if (intake_init(&l.intake, cfg, a->ring, a->ctl, a->fds != NULL ? a->fds->to_controller : -1,
	    ring_wait_ms) != 0)
		log_warnx("KTE_DROP_TYPES=\"%s\": some entries are empty, too long or too many; "
		    "using the first %d valid ones", cfg->drop_types, FILTER_MAX_TYPES);
	/* A stopping listener answers 503 at once instead of sitting out a full ring. */
	l.intake.cancel = &l.stopping;

	if (resolve_host(cfg->listener_host, addr, sizeof(addr)) != 0)
		return 1;
	snprintf(ports, sizeof(ports), "%s:%u", addr, (unsigned)cfg->listener_port);
	snprintf(threads, sizeof(threads), "%d", LISTENER_THREADS);

	memset(&cb, 0, sizeof(cb));
	cb.init_thread = worker_init;
	cb.exit_thread = worker_exit;
	cb.log_message = civetweb_log;
	mg_init_library(0);
	listener_starting = 1;
	ctx = mg_start(&cb, NULL, opts);
	listener_starting = 0;
	if (ctx == NULL) {
		log_warnx("cannot listen on %s: %s", ports,
		    listener_start_error[0] != '\0' ? listener_start_error : "civetweb failed to start");
		mg_exit_library();
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
	if (stop_server(&l, ctx, addr, cfg->listener_port))
		mg_exit_library();
	else
		log_warnx("civetweb did not stop: leaving anyway");
	atomic_store(&a->ctl->listener_ready, 0);
	rc = 0;
	return rc;
}
