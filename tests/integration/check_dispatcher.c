/*
 * The dispatcher process end to end against a scripted Kinesis (tests/support/
 * kinesis_sink): a real ring in shared memory, a real control block, dispatcher_main
 * in a forked process, libcurl over loopback. Every test writes numbered events into
 * the ring and checks what the sink accepted: nothing lost, nothing twice except what
 * was in flight when a failure struck, ring space released only after acceptance,
 * flushes answered, the circuit breaker, the shutdown deadline, restarts, signatures.
 *
 * The sink runs in its own process (forked before anything starts a thread) and records
 * what it accepted in shared memory: the test process stays single-threaded, so the
 * dispatcher it forks never inherits a lock held by another thread (under ASan a sink
 * thread inside malloc at fork time left the child blocked forever on the allocator's
 * lock).
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <zlib.h>

#include "dispatcher/base64.h"
#include "base64_decode.h"
#include "dispatcher/dispatcher.h"
#include "dispatcher/sigv4.h"
#include "kinesis_sink.h"
#include "notify.h"

#define MAX_ACCEPTED 200000
#define ARENA_BYTES (512u << 20)   /* shared, reserved lazily: accepted data and script state */

struct accepted {
	char *data;
	size_t len;
	char key[260];
	unsigned request;
};

struct harness;
/* Decides the fate of one request: fill failed[i] for partial failures, or rep. */
typedef void (*script_fn)(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway);

/* What the sink process writes and the test reads: in shared memory. */
struct shared {
	_Atomic uint64_t requests;          /* requests the sink received */
	char *arena;                        /* shared bump allocator, ARENA_BYTES */
	size_t arena_used;
	script_fn script;
	void *script_ctx;                   /* in the arena (h_shared) */
	pthread_mutex_t lock;               /* process-shared */
	pthread_cond_t cond;
	struct accepted *acc;
	size_t nacc;
	uint64_t released_at_request[64];   /* ring released_records seen by request i */
	unsigned nreq;
	char last_error[512];
	/* the body records of each request (first 64 requests): their first seq numbers */
	unsigned req_nrec[64];
	long req_seq[64][8];
};

struct harness {
	struct kte_config cfg;
	struct ring ring;
	struct control *ctl;
	struct control_fds fds;
	pid_t pid;
	pid_t sink_pid;                     /* the sink process */
	int sink_fd;                        /* its listening socket (closed here once it runs) */
	uint16_t port;
	char endpoint[64];
	struct shared *sh;
	const char *vars[32];
	int nvars;
};

static const char *
h_get(const char *name, void *ctx)
{
	struct harness *h = ctx;
	size_t n = strlen(name);

	for (int i = h->nvars - 1; i >= 0; i--)
		if (strncmp(h->vars[i], name, n) == 0 && h->vars[i][n] == '=')
			return h->vars[i] + n + 1;
	return getenv(name);
}

static long
seq_of(const char *data, size_t len)
{
	const char *p = memmem(data, len, "\"seq\":", 6);

	return p == NULL ? -1 : strtol(p + 6, NULL, 10);
}

/* Bump-allocates n zeroed bytes of shared memory; h->sh->lock held. NULL when the arena is full. */
static void *
h_alloc_locked(struct harness *h, size_t n)
{
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (h->sh->arena_used + n > ARENA_BYTES)
		return NULL;
	p = h->sh->arena + h->sh->arena_used;
	h->sh->arena_used += n;
	return p;
}

/* Shared memory for a script's state: both the sink process and the test see it. */
static void *
h_shared(struct harness *h, size_t n)
{
	void *p;

	pthread_mutex_lock(&h->sh->lock);
	p = h_alloc_locked(h, n);
	pthread_mutex_unlock(&h->sh->lock);
	ck_assert_ptr_nonnull(p);
	return p;
}

static void *
shared_map(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

static void
h_handler(void *ctx, const struct sink_request *req, struct sink_reply *rep)
{
	struct harness *h = ctx;
	json_object *root = NULL, *recs;
	uint8_t failed[600] = { 0 };
	bool record_anyway = false;
	unsigned n = 0;
	struct ring_stats st;
	char *text;

	atomic_fetch_add(&h->sh->requests, 1);
	text = strndup(req->body, req->body_len);
	root = json_tokener_parse(text);
	free(text);
	if (root == NULL || !json_object_object_get_ex(root, "Records", &recs) ||
	    strcmp(req->target, "Kinesis_20131202.PutRecords") != 0 ||
	    strcmp(req->content_type, "application/x-amz-json-1.1") != 0) {
		rep->status = 400;
		rep->body = "{\"__type\":\"SerializationException\"}";
		pthread_mutex_lock(&h->sh->lock);
		snprintf(h->sh->last_error, sizeof(h->sh->last_error), "bad request: target %s", req->target);
		pthread_mutex_unlock(&h->sh->lock);
		goto out;
	}
	n = (unsigned)json_object_array_length(recs);
	ring_stats(&h->ring, &st);
	pthread_mutex_lock(&h->sh->lock);
	if (h->sh->nreq < 64) {
		h->sh->released_at_request[h->sh->nreq] = st.released_records;
		h->sh->req_nrec[h->sh->nreq] = n;
		for (unsigned i = 0; i < n && i < 8; i++) {
			json_object *d;
			const char *s;
			char tmp[4096];
			ssize_t dl;

			json_object_object_get_ex(json_object_array_get_idx(recs, i), "Data", &d);
			s = json_object_get_string(d);
			dl = strlen(s) < 4000 ? base64_decode(s, strlen(s) < 4000 ? strlen(s) : 0, tmp) : -1;
			h->sh->req_seq[h->sh->nreq][i] = dl > 0 ? seq_of(tmp, (size_t)dl) : -2;
		}
	}
	h->sh->nreq++;
	pthread_mutex_unlock(&h->sh->lock);
	if (h->sh->script != NULL)
		h->sh->script(h, req, n, failed, rep, &record_anyway);
	if (rep->drop || (rep->status != 0 && rep->status != 200)) {
		if (!record_anyway)
			goto out;
	} else if (rep->body == NULL && rep->body_alloc == NULL)
		rep->body_alloc = sink_putrecords_reply(n, failed, NULL);
	pthread_mutex_lock(&h->sh->lock);
	for (unsigned i = 0; i < n && h->sh->nacc < MAX_ACCEPTED; i++) {
		json_object *r = json_object_array_get_idx(recs, i), *d, *k;
		struct accepted *a = &h->sh->acc[h->sh->nacc];
		const char *s;
		ssize_t dl;

		if (failed[i] && !record_anyway)
			continue;
		json_object_object_get_ex(r, "Data", &d);
		json_object_object_get_ex(r, "PartitionKey", &k);
		s = json_object_get_string(d);
		a->data = h_alloc_locked(h, base64_decoded_max(strlen(s)) + 1);
		if (a->data == NULL)
			break;
		dl = base64_decode(s, strlen(s), a->data);
		a->len = dl > 0 ? (size_t)dl : 0;
		a->data[a->len] = '\0';
		snprintf(a->key, sizeof(a->key), "%s", json_object_get_string(k));
		a->request = req->seq;
		h->sh->nacc++;
	}
	pthread_cond_broadcast(&h->sh->cond);
	pthread_mutex_unlock(&h->sh->lock);
out:
	if (root != NULL)
		json_object_put(root);
}

static void
h_spawn(struct harness *h)
{
	h->pid = fork();
	ck_assert_int_ge(h->pid, 0);
	if (h->pid == 0) {
		struct dispatcher_args a = { &h->cfg, &h->ring, h->ctl, &h->fds };

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(dispatcher_main(&a));
	}
}

/* Sets up everything; vars are extra KTE_ settings ("NAME=value"). Does not start the dispatcher. */
static struct harness *
h_new(const char *const *vars)
{
	struct harness *h = calloc(1, sizeof(*h));
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	char err[256];

	h->sh = shared_map(sizeof(*h->sh));
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&h->sh->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	pthread_cond_init(&h->sh->cond, &ca);
	pthread_condattr_destroy(&ca);
	h->sh->acc = shared_map(MAX_ACCEPTED * sizeof(*h->sh->acc));
	h->sh->arena = shared_map(ARENA_BYTES);
	h->sink_fd = sink_listen(&h->port);
	ck_assert_int_ge(h->sink_fd, 0);
	snprintf(h->endpoint, sizeof(h->endpoint), "KTE_KINESIS_ENDPOINT=http://127.0.0.1:%u/", h->port);
	h->vars[h->nvars++] = "KTE_STREAM_NAME=test-stream";
	h->vars[h->nvars++] = "AWS_REGION=us-east-1";
	h->vars[h->nvars++] = "KTE_RING_BYTES=16M";
	h->vars[h->nvars++] = "KTE_LOG_LEVEL=warn";
	h->vars[h->nvars++] = "KTE_RETRY_BASE_MS=5";
	h->vars[h->nvars++] = "KTE_RETRY_MAX_MS=50";
	h->vars[h->nvars++] = h->endpoint;
	for (int i = 0; vars != NULL && vars[i] != NULL; i++)
		h->vars[h->nvars++] = vars[i];
	setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret-test-key", 1);
	ck_assert_msg(config_load_from(&h->cfg, h_get, h, err, sizeof(err)) == 0, "config: %s", err);
	ck_assert_int_eq(ring_create(&h->ring, h->cfg.ring_bytes), 0);
	h->ctl = control_new(&h->fds);
	ck_assert_ptr_nonnull(h->ctl);
	/* The sink serves from its own process, which may start threads; this one never does. */
	h->sink_pid = fork();
	ck_assert_int_ge(h->sink_pid, 0);
	if (h->sink_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		sink_serve(h->sink_fd, h_handler, h);
	}
	close(h->sink_fd);
	h->sink_fd = -1;
	return h;
}

static int
h_stop_dispatcher(struct harness *h)
{
	int st = 0;

	if (h->pid > 0) {
		kill(h->pid, SIGTERM);
		ck_assert_int_eq(waitpid(h->pid, &st, 0), h->pid);
		h->pid = 0;
	}
	return st;
}

static void
h_free(struct harness *h)
{
	h_stop_dispatcher(h);
	kill(h->sink_pid, SIGKILL);
	waitpid(h->sink_pid, NULL, 0);
	control_free(h->ctl, &h->fds);
	ring_close(&h->ring);
	munmap(h->sh->arena, ARENA_BYTES);
	munmap(h->sh->acc, MAX_ACCEPTED * sizeof(*h->sh->acc));
	munmap(h->sh, sizeof(*h->sh));
	free(h);
}

/* Writes events first..first+n-1 of about size bytes; request ids change every 10 events. */
static void
h_write(struct harness *h, unsigned first, unsigned n, size_t size)
{
	char buf[8192];

	for (unsigned i = first; i < first + n; i++) {
		int len = snprintf(buf, sizeof(buf), "{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":\"function\","
		    "\"record\":{\"requestId\":\"req-%u\",\"seq\":%u,\"message\":\"", i / 10, i);
		while ((size_t)len + 3 < size && len < (int)sizeof(buf) - 4)
			buf[len++] = (char)('a' + i % 26);
		memcpy(buf + len, "\"}}", 3);
		len += 3;
		for (int tries = 0; ring_write(&h->ring, buf, (size_t)len) == -ENOSPC; tries++) {
			ck_assert_msg(tries < 20000, "ring stays full");
			ring_reader_wait(&h->ring, 1);  /* a short pause while the dispatcher drains */
		}
	}
}

/* Asks for a flush and waits for its answer; returns ms taken or -1 on timeout. */
static long
h_flush(struct harness *h, int timeout_ms)
{
	uint64_t req = atomic_fetch_add(&h->ctl->flush_requested, 1) + 1, t0 = now_mono_ms();

	notify_signal(h->fds.to_dispatcher);
	while (atomic_load(&h->ctl->flush_completed) < req) {
		if (now_mono_ms() - t0 > (uint64_t)timeout_ms)
			return -1;
		notify_wait(h->fds.to_controller, 50);
	}
	return (long)(now_mono_ms() - t0);
}

/* Waits until the sink has accepted at least n records. */
static bool
h_wait_accepted(struct harness *h, size_t n, int timeout_ms)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&h->sh->lock);
	while (h->sh->nacc < n && pthread_cond_timedwait(&h->sh->cond, &h->sh->lock, &ts) == 0)
		;
	ok = h->sh->nacc >= n;
	pthread_mutex_unlock(&h->sh->lock);
	return ok;
}

/* Waits until the ring has released n records (Kinesis accepted them, or they were dropped). */
static bool
h_wait_released(struct harness *h, uint64_t n, int timeout_ms)
{
	uint64_t t0 = now_mono_ms();
	struct ring_stats st;

	for (;;) {
		ring_stats(&h->ring, &st);
		if (st.released_records >= n)
			return true;
		if (now_mono_ms() - t0 > (uint64_t)timeout_ms)
			return false;
		notify_wait(h->fds.to_controller, 10);
	}
}

/*
 * Splits the accepted records into events (ndjson: by line) and counts each seq.
 * Returns the number of events; counts[seq] incremented; summaries copied out.
 */
static size_t
h_events(struct harness *h, unsigned *counts, unsigned maxseq, char *summary, size_t sumlen)
{
	size_t n = 0;

	pthread_mutex_lock(&h->sh->lock);
	for (size_t i = 0; i < h->sh->nacc; i++) {
		char *p = h->sh->acc[i].data, *end = p + h->sh->acc[i].len;

		while (p < end) {
			char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t l = (size_t)((nl ? nl : end) - p);
			long s = seq_of(p, l);

			if (memmem(p, l, "extension.kte.dropped", 21) != NULL) {
				if (summary != NULL)
					snprintf(summary, sumlen, "%.*s", (int)l, p);
			} else if (s >= 0 && (unsigned long)s < maxseq) {
				counts[s]++;
				n++;
			}
			p += l + 1;
		}
	}
	pthread_mutex_unlock(&h->sh->lock);
	return n;
}

static void
assert_each_once(struct harness *h, unsigned n)
{
	unsigned *counts = calloc(n, sizeof(*counts));
	size_t got = h_events(h, counts, n, NULL, 0);

	for (unsigned i = 0; i < n; i++)
		ck_assert_msg(counts[i] == 1, "event %u delivered %u times", i, counts[i]);
	ck_assert_uint_eq(got, n);
	free(counts);
}

static void
assert_ring_drained(struct harness *h, unsigned n)
{
	struct ring_stats st;

	ring_stats(&h->ring, &st);
	ck_assert_uint_eq(st.released_records, n);
	ck_assert(ring_empty(&h->ring));
}

/* ---- plain delivery ---- */

static void
run_drain(const char *format, unsigned n)
{
	const char *vars[] = { format, NULL };
	struct harness *h = h_new(vars);
	long ms;

	h_spawn(h);
	h_write(h, 0, n, 300);
	ms = h_flush(h, 20000);
	ck_assert_msg(ms >= 0, "flush not answered");
	assert_each_once(h, n);
	assert_ring_drained(h, n);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_sent), n);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.bytes_sent), (uint64_t)n * 300);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.records_sent), h->sh->nacc);
	ck_assert_uint_eq(atomic_load(&h->ctl->kinesis_healthy), 1);
	ck_assert_uint_gt(atomic_load(&h->ctl->last_success_ms), 0);
	ck_assert_int_eq(WEXITSTATUS(h_stop_dispatcher(h)), 0);
	h_free(h);
}

START_TEST(test_drain_event)
{
	run_drain("KTE_RECORD_FORMAT=event", 5000);
}
END_TEST

START_TEST(test_drain_ndjson)
{
	struct harness *h;

	run_drain("KTE_RECORD_FORMAT=ndjson", 20000);
	/* Packing: 20000 events of 300 bytes fit 6 records of 1 MiB. */
	const char *vars[] = { "KTE_RECORD_FORMAT=ndjson", NULL };
	h = h_new(vars);
	h_spawn(h);
	h_write(h, 0, 20000, 300);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	ck_assert_uint_le(h->sh->nacc, 12);
	h_free(h);
}
END_TEST

START_TEST(test_drain_kpl_counts)
{
	const char *vars[] = { "KTE_RECORD_FORMAT=kpl", "KTE_PARTITION_KEY=random", NULL };
	struct harness *h = h_new(vars);

	h_spawn(h);
	h_write(h, 0, 20000, 300);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_sent), 20000);
	ck_assert_uint_le(h->sh->nacc, 20000 / 50);     /* at least 50 events per Kinesis record */
	assert_ring_drained(h, 20000);
	h_free(h);
}
END_TEST

/* ---- gzip ---- */

START_TEST(test_gzip_records_decode_to_events)
{
	const char *vars[] = { "KTE_RECORD_FORMAT=ndjson", "KTE_COMPRESSION=gzip", NULL };
	struct harness *h = h_new(vars);
	static unsigned counts[5000];
	static char out[8 << 20];
	size_t events = 0;

	h_spawn(h);
	h_write(h, 0, 5000, 300);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	assert_ring_drained(h, 5000);
	pthread_mutex_lock(&h->sh->lock);
	for (size_t i = 0; i < h->sh->nacc; i++) {
		struct accepted *a = &h->sh->acc[i];
		uLongf n = sizeof(out);
		z_stream zs;
		char *p, *end;

		ck_assert(a->len > 2 && (uint8_t)a->data[0] == 0x1f && (uint8_t)a->data[1] == 0x8b);
		memset(&zs, 0, sizeof(zs));
		ck_assert_int_eq(inflateInit2(&zs, 15 + 16), Z_OK);
		zs.next_in = (Bytef *)a->data;
		zs.avail_in = (uInt)a->len;
		zs.next_out = (Bytef *)out;
		zs.avail_out = (uInt)n;
		ck_assert_int_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
		for (p = out, end = out + zs.total_out; p < end;) {
			char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t l = (size_t)((nl ? nl : end) - p);
			long sq = seq_of(p, l);

			ck_assert(sq >= 0 && sq < 5000);
			counts[sq]++;
			events++;
			p += l + 1;
		}
		inflateEnd(&zs);
	}
	pthread_mutex_unlock(&h->sh->lock);
	ck_assert_uint_eq(events, 5000);
	for (unsigned i = 0; i < 5000; i++)
		ck_assert_uint_eq(counts[i], 1);
	/* Compressed: far fewer bytes on the wire than the 1.5 MB of events. */
	ck_assert_uint_lt(atomic_load(&h->ctl->dispatcher.wire_bytes), 5000 * 300 / 4);
	h_free(h);
}
END_TEST

/* ---- partial failures: every 7th record fails on its first attempt ---- */

struct partial_ctx {
	unsigned tries[100000];
};

static void
script_partial(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	struct partial_ctx *c = h->sh->script_ctx;
	char *text = strndup(req->body, req->body_len);
	json_object *root = json_tokener_parse(text), *recs;

	free(text);
	(void)rep;
	(void)record_anyway;
	json_object_object_get_ex(root, "Records", &recs);
	for (unsigned i = 0; i < n; i++) {
		json_object *d;
		const char *s;
		char tmp[1024];
		ssize_t dl;
		long seq;

		json_object_object_get_ex(json_object_array_get_idx(recs, i), "Data", &d);
		s = json_object_get_string(d);
		dl = base64_decode(s, strlen(s), tmp);
		seq = dl > 0 ? seq_of(tmp, (size_t)dl) : -1;
		if (seq >= 0 && seq % 7 == 0 && c->tries[seq]++ == 0)
			failed[i] = 1;
	}
	json_object_put(root);
}

START_TEST(test_partial_failures_rejoin_new_records)
{
	struct harness *h = h_new(NULL);
	struct partial_ctx *c = h_shared(h, sizeof(*c));

	h->sh->script = script_partial;
	h->sh->script_ctx = c;
	h_spawn(h);
	h_write(h, 0, 700, 200);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	assert_each_once(h, 700);
	assert_ring_drained(h, 700);
	/*
	 * The second request resends the failed records of the first, in order, together
	 * with the 200 new ones (as the KPL does), not alone.
	 */
	ck_assert_uint_eq(h->sh->req_nrec[0], 500);
	ck_assert_uint_eq(h->sh->req_nrec[1], 72 + 200);        /* 0, 7, ..., 497, then 500..699 */
	for (unsigned i = 0; i < 8; i++)
		ck_assert_int_eq(h->sh->req_seq[1][i], (long)i * 7);
	/* Nothing was released while the first batch had failed records. */
	ck_assert_uint_eq(h->sh->released_at_request[1], 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.records_retried), 100);
	for (unsigned s = 0; s < 700; s += 7)
		ck_assert_uint_eq(c->tries[s], 2);
	h_free(h);
}
END_TEST

/* ---- whole-request failures ---- */

static void
script_errors(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	(void)h;
	(void)n;
	(void)failed;
	(void)record_anyway;
	switch (req->seq) {
	case 1:
		rep->status = 500;
		rep->body = "{\"__type\":\"InternalFailure\"}";
		break;
	case 2:
		rep->status = 400;
		rep->error_type = "ThrottlingException:http://internal.amazon.com/coral/";
		rep->body = "{\"message\":\"Rate exceeded\"}";
		break;
	case 3:
		rep->drop = true;
		break;
	case 4:
		rep->status = 503;
		rep->body = "{\"__type\":\"ServiceUnavailable\"}";
		break;
	case 5:
		rep->status = 400;
		rep->body = "{\"__type\":\"ProvisionedThroughputExceededException\",\"message\":\"x\"}";
		break;
	case 6:
		rep->status = 400;
		rep->body = "{\"__type\":\"ExpiredTokenException\",\"message\":\"expired\"}";
		break;
	default:
		break;
	}
}

START_TEST(test_whole_request_failures_retry)
{
	struct harness *h = h_new(NULL);

	h->sh->script = script_errors;
	h_spawn(h);
	h_write(h, 0, 300, 200);
	/* Three failures in a row open the circuit: the flush is answered without waiting. */
	ck_assert_int_ge(h_flush(h, 20000), 0);
	ck_assert(h_wait_released(h, 300, 20000));
	assert_each_once(h, 300);
	assert_ring_drained(h, 300);
	/* 7, or 8 when libcurl resent on the dropped connection (see below). */
	ck_assert_uint_ge(h->sh->nreq, 7);
	ck_assert_uint_le(h->sh->nreq, 8);
	for (unsigned i = 0; i < h->sh->nreq; i++) {
		ck_assert_uint_eq(h->sh->req_nrec[i], 300);                 /* the same batch each time */
		ck_assert_uint_eq(h->sh->released_at_request[i], 0);        /* nothing released before */
	}
	/* libcurl itself resends once on a reused connection that died without a reply, so
	 * the dropped connection may be one failure or two (the 503 then answers curl's). */
	ck_assert_uint_ge(atomic_load(&h->ctl->dispatcher.request_failures), 5);
	ck_assert_uint_le(atomic_load(&h->ctl->dispatcher.request_failures), 6);
	ck_assert_uint_eq(atomic_load(&h->ctl->consecutive_failures), 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->kinesis_healthy), 1);
	h_free(h);
}
END_TEST

/* The reply to a request Kinesis stored is lost: those records (and only those) come twice. */
static void
script_lost_ack(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	(void)h;
	(void)n;
	(void)failed;
	if (req->seq == 2) {
		rep->drop = true;
		*record_anyway = true;
	}
}

START_TEST(test_lost_ack_duplicates_only_in_flight)
{
	struct harness *h = h_new(NULL);
	unsigned *counts = calloc(1500, sizeof(*counts));
	unsigned twice = 0;

	h->sh->script = script_lost_ack;
	h_spawn(h);
	h_write(h, 0, 1500, 200);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	h_events(h, counts, 1500, NULL, 0);
	for (unsigned i = 0; i < 1500; i++) {
		ck_assert_uint_ge(counts[i], 1);
		ck_assert_uint_le(counts[i], 2);
		twice += counts[i] == 2;
	}
	ck_assert_uint_eq(twice, h->sh->req_nrec[1]);   /* exactly the records of the lost request */
	ck_assert_uint_gt(twice, 0);
	assert_ring_drained(h, 1500);
	free(counts);
	h_free(h);
}
END_TEST

/* ---- the circuit breaker ---- */

static void
script_not_found_until(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	atomic_int *healthy = h->sh->script_ctx;

	(void)req;
	(void)n;
	(void)failed;
	(void)record_anyway;
	if (!atomic_load(healthy)) {
		rep->status = 400;
		rep->body = "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream test-stream under "
		    "account 123456789012 not found.\"}";
	}
}

START_TEST(test_circuit_opens_and_flush_does_not_wait)
{
	const char *vars[] = { "KTE_CIRCUIT_PROBE_MS=300", NULL };
	struct harness *h = h_new(vars);
	atomic_int *healthy = h_shared(h, sizeof(*healthy));
	struct ring_stats st;
	long ms;

	h->sh->script = script_not_found_until;
	h->sh->script_ctx = healthy;
	h_spawn(h);
	h_write(h, 0, 100, 200);
	ms = h_flush(h, 5000);
	ck_assert_msg(ms >= 0 && ms < 2000, "flush took %ld ms with Kinesis refusing", ms);
	ck_assert_uint_eq(atomic_load(&h->ctl->kinesis_healthy), 0);
	ck_assert_uint_ge(atomic_load(&h->ctl->consecutive_failures), 1);
	ring_stats(&h->ring, &st);
	ck_assert_uint_eq(st.released_records, 0);          /* kept, not dropped */
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 0);
	/* A second flush while open is answered at once too. */
	ms = h_flush(h, 5000);
	ck_assert(ms >= 0 && ms < 1000);
	/* The stream appears: the next probe delivers everything, the circuit closes. */
	atomic_store(healthy, 1);
	ck_assert(h_wait_released(h, 100, 10000));
	ck_assert_int_ge(h_flush(h, 10000), 0);
	assert_each_once(h, 100);
	assert_ring_drained(h, 100);
	ck_assert_uint_eq(atomic_load(&h->ctl->kinesis_healthy), 1);
	ck_assert_uint_eq(atomic_load(&h->ctl->consecutive_failures), 0);
	h_free(h);
}
END_TEST

/* ---- drops and the summary event ---- */

/* The seq numbers of the records of a request (-1 where none), n of them. */
static void
req_seqs(const struct sink_request *req, long *seqs, unsigned n)
{
	char *text = strndup(req->body, req->body_len);
	json_object *root = json_tokener_parse(text), *recs;

	free(text);
	json_object_object_get_ex(root, "Records", &recs);
	for (unsigned i = 0; i < n; i++) {
		json_object *d;
		const char *s;
		char tmp[4096];
		ssize_t dl;

		json_object_object_get_ex(json_object_array_get_idx(recs, i), "Data", &d);
		s = json_object_get_string(d);
		dl = strlen(s) < 4000 ? base64_decode(s, strlen(s), tmp) : -1;
		seqs[i] = dl > 0 ? seq_of(tmp, (size_t)dl) : -1;
	}
	json_object_put(root);
}

/* Every 5th record fails on each of its first two attempts; the rest are accepted. */
static void
script_fifth_fails_twice(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	struct partial_ctx *c = h->sh->script_ctx;
	long seqs[600];

	(void)rep;
	(void)record_anyway;
	req_seqs(req, seqs, n);
	for (unsigned i = 0; i < n; i++)
		if (seqs[i] >= 0 && seqs[i] % 5 == 0 && c->tries[seqs[i]]++ < 2)
			failed[i] = 1;
}

START_TEST(test_partial_success_does_not_back_off)
{
	/* A backoff of up to 10 s per retry: had partial successes grown it, this would take minutes. */
	const char *vars[] = { "KTE_RETRY_BASE_MS=10000", "KTE_RETRY_MAX_MS=10000", NULL };
	struct harness *h = h_new(vars);
	struct partial_ctx *c = h_shared(h, sizeof(*c));
	long ms;

	h->sh->script = script_fifth_fails_twice;
	h->sh->script_ctx = c;
	h_spawn(h);
	h_write(h, 0, 3000, 200);
	ms = h_flush(h, 8000);
	ck_assert_msg(ms >= 0, "flush not answered within 8 s: partial successes were backed off");
	assert_each_once(h, 3000);
	assert_ring_drained(h, 3000);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.records_retried), 2 * 600);
	ck_assert_uint_eq(atomic_load(&h->ctl->consecutive_failures), 0);
	h_free(h);
}
END_TEST

/* Record 250 fails on its first attempt. */
static void
script_250_fails_once(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	struct partial_ctx *c = h->sh->script_ctx;
	long seqs[600];

	(void)rep;
	(void)record_anyway;
	req_seqs(req, seqs, n);
	for (unsigned i = 0; i < n; i++)
		if (seqs[i] == 250 && c->tries[250]++ == 0)
			failed[i] = 1;
}

START_TEST(test_acknowledged_prefix_released)
{
	struct harness *h = h_new(NULL);
	struct partial_ctx *c = h_shared(h, sizeof(*c));

	h->sh->script = script_250_fails_once;
	h->sh->script_ctx = c;
	atomic_store(&h->ctl->hold_sending, 1);            /* all 500 in the first request */
	h_spawn(h);
	h_write(h, 0, 500, 200);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	assert_each_once(h, 500);
	assert_ring_drained(h, 500);
	ck_assert_uint_eq(h->sh->req_nrec[0], 500);
	ck_assert_uint_eq(h->sh->req_nrec[1], 1);
	ck_assert_int_eq(h->sh->req_seq[1][0], 250);
	/* When record 250 went out again, the 250 before it were released, not those after it. */
	ck_assert_uint_eq(h->sh->released_at_request[1], 250);
	h_free(h);
}
END_TEST

/* InvalidArgumentException for any request holding the poisoned seq (or every request). */
struct poison_ctx {
	long seq;                       /* -1: reject everything */
	atomic_int healed;              /* accept everything from now on */
};

static void
script_poison(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	struct poison_ctx *c = h->sh->script_ctx;
	long seqs[600];
	bool poisoned = c->seq < 0 && !atomic_load(&c->healed);

	(void)failed;
	(void)record_anyway;
	req_seqs(req, seqs, n);
	for (unsigned i = 0; i < n && !poisoned; i++)
		poisoned = seqs[i] == c->seq;
	if (poisoned) {
		rep->status = 400;
		rep->error_type = "InvalidArgumentException:http://internal.amazon.com/coral/com.amazonaws.kinesis/";
		rep->body = "{\"__type\":\"InvalidArgumentException\",\"message\":\"injected\"}";
	}
}

START_TEST(test_poisoned_record_alone_dropped)
{
	struct harness *h = h_new(NULL);
	struct poison_ctx *c = h_shared(h, sizeof(*c));
	unsigned counts[1200] = { 0 };
	char summary[1024] = "";

	c->seq = 777;
	h->sh->script = script_poison;
	h->sh->script_ctx = c;
	h_spawn(h);
	h_write(h, 0, 1200, 200);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	ck_assert(h_wait_released(h, 1200, 10000));
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 1);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.bytes_dropped), 200);
	ck_assert_uint_eq(atomic_load(&h->ctl->kinesis_healthy), 1);
	/* The summary follows in a later request: write one more event to carry it. */
	h_write(h, 1199, 1, 200);
	for (int i = 0; i < 500 && summary[0] == '\0'; i++) {
		ck_assert_int_ge(h_flush(h, 10000), 0);
		h_events(h, counts, 1200, summary, sizeof(summary));
		if (summary[0] == '\0')
			poll(NULL, 0, 10);
	}
	memset(counts, 0, sizeof(counts));
	ck_assert_uint_eq(h_events(h, counts, 1200, summary, sizeof(summary)), 1200);
	for (unsigned i = 0; i < 1199; i++)
		ck_assert_msg(counts[i] == (i == 777 ? 0u : 1u), "event %u delivered %u times", i, counts[i]);
	ck_assert_msg(strstr(summary, "\"eventsRejected\":1,") != NULL, "summary: %s", summary);
	h_free(h);
}
END_TEST

START_TEST(test_poisoned_record_alone_in_its_request)
{
	struct harness *h = h_new(NULL);
	struct poison_ctx *c = h_shared(h, sizeof(*c));
	unsigned counts[100] = { 0 };

	c->seq = 0;
	h->sh->script = script_poison;
	h->sh->script_ctx = c;
	h_spawn(h);
	/* One record, rejected: a bad record or a bad configuration? Kept, retried with backoff. */
	h_write(h, 0, 1, 200);
	for (int i = 0; i < 1000 && atomic_load(&h->sh->requests) < 3; i++)
		poll(NULL, 0, 5);
	ck_assert_uint_ge(atomic_load(&h->sh->requests), 3);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 0);
	/* Others arrive: the bisection tells them apart, only the rejected one is dropped. */
	h_write(h, 1, 99, 200);
	ck_assert(h_wait_released(h, 100, 10000));
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 1);
	ck_assert_uint_eq(h_events(h, counts, 100, NULL, 0), 99);
	for (unsigned i = 1; i < 100; i++)
		ck_assert_uint_eq(counts[i], 1);
	h_free(h);
}
END_TEST

START_TEST(test_rejecting_everything_keeps_data)
{
	const char *vars[] = { "KTE_CIRCUIT_PROBE_MS=300", NULL };
	struct harness *h = h_new(vars);
	struct poison_ctx *c = h_shared(h, sizeof(*c));
	struct ring_stats st;
	long ms;

	c->seq = -1;
	h->sh->script = script_poison;
	h->sh->script_ctx = c;
	h_spawn(h);
	h_write(h, 0, 300, 200);
	ms = h_flush(h, 10000);
	ck_assert_msg(ms >= 0, "flush not answered with every request rejected");
	ck_assert_uint_eq(atomic_load(&h->ctl->kinesis_healthy), 0);        /* circuit open */
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 0);
	ring_stats(&h->ring, &st);
	ck_assert_uint_eq(st.released_records, 0);          /* kept, not dropped */
	/* A few requests found it out: not one per record. */
	ck_assert_uint_le(atomic_load(&h->ctl->dispatcher.requests), 20);
	/* Kinesis accepts again: the next probe delivers everything. */
	atomic_store(&c->healed, 1);
	ck_assert(h_wait_released(h, 300, 10000));
	ck_assert_int_ge(h_flush(h, 10000), 0);
	assert_each_once(h, 300);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 0);
	h_free(h);
}
END_TEST

START_TEST(test_too_large_dropped_and_reported)
{
	const char *vars[] = { "KTE_MAX_RECORD_BYTES=1024", NULL };
	struct harness *h = h_new(vars);
	unsigned counts[30] = { 0 };
	char summary[1024] = "";

	h_spawn(h);
	h_write(h, 0, 10, 300);
	h_write(h, 10, 1, 2000);        /* larger than a record */
	h_write(h, 11, 10, 300);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 1);
	assert_ring_drained(h, 21);
	/* The summary rides with the next batch. */
	h_write(h, 21, 1, 300);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	ck_assert_uint_eq(h_events(h, counts, 30, summary, sizeof(summary)), 21);
	ck_assert_uint_eq(counts[10], 0);
	ck_assert_msg(strstr(summary, "\"eventsTooLarge\":1,") != NULL, "summary: %s", summary);
	h_free(h);
}
END_TEST

/* ---- control: hold, shutdown deadline ---- */

START_TEST(test_hold_sending_until_flush)
{
	struct harness *h = h_new(NULL);
	uint64_t t0;

	atomic_store(&h->ctl->hold_sending, 1);
	h_spawn(h);
	h_write(h, 0, 50, 200);
	/* Observe a while: nothing may go out while held. */
	t0 = now_mono_ms();
	while (now_mono_ms() - t0 < 300)
		notify_wait(h->fds.to_controller, 50);
	ck_assert_uint_eq(atomic_load(&h->sh->requests), 0);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	assert_each_once(h, 50);
	h_free(h);
}
END_TEST

static void
script_always_500(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	(void)h;
	(void)req;
	(void)n;
	(void)failed;
	(void)record_anyway;
	rep->status = 500;
	rep->delay_ms = 30;
}

/*
 * Under the periodic policy the controller asks for a flush only when an invocation
 * starts. During one long invocation the ring must not fill up behind hold_sending
 * (the listener would answer 503 until Lambda gives up): past half full, it is sent.
 */
START_TEST(test_hold_sending_yields_to_a_filling_ring)
{
	const char *vars[] = { "KTE_RING_BYTES=256K", NULL };
	struct harness *h = h_new(vars);

	atomic_store(&h->ctl->hold_sending, 1);
	h_spawn(h);
	h_write(h, 0, 160, 1000);                           /* about 62% of the ring */
	ck_assert_msg(h_wait_released(h, 1, 5000), "nothing sent with the ring over half full");
	ck_assert_uint_eq(atomic_load(&h->ctl->flush_requested), 0);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	assert_each_once(h, 160);
	h_free(h);
}
END_TEST

START_TEST(test_shutdown_deadline_counts_leftovers)
{
	struct harness *h = h_new(NULL);
	int64_t deadline, accounted;
	int st;

	h->sh->script = script_always_500;
	h_spawn(h);
	h_write(h, 0, 400, 200);
	deadline = (int64_t)now_epoch_ms() + 500;
	atomic_store(&h->ctl->shutdown_deadline_ms, deadline);
	notify_signal(h->fds.to_dispatcher);
	/*
	 * The controller acts on the dispatcher's account (events_left and a wake-up), not on
	 * its exit, which under ASan also runs the leak check: time the account.
	 */
	while (atomic_load(&h->ctl->dispatcher.events_left) == 0 &&
	    (int64_t)now_epoch_ms() < deadline + 5000)
		notify_wait(h->fds.to_controller, 5);
	accounted = (int64_t)now_epoch_ms();
	ck_assert_int_eq(waitpid(h->pid, &st, 0), h->pid);
	h->pid = 0;
	ck_assert_msg(accounted <= deadline + 20, "accounted %" PRId64 " ms after the deadline",
	    accounted - deadline);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 400);
	ck_assert_uint_eq(atomic_load(&h->ctl->flush_completed), atomic_load(&h->ctl->flush_requested));
	ck_assert_uint_ge(atomic_load(&h->sh->requests), 2);      /* it kept trying until the deadline */
	h_free(h);
}
END_TEST

START_TEST(test_shutdown_sends_then_waits_for_sigterm)
{
	struct harness *h = h_new(NULL);
	int64_t deadline = (int64_t)now_epoch_ms() + 3000;

	h_spawn(h);
	atomic_store(&h->ctl->shutdown_deadline_ms, deadline);
	atomic_store(&h->ctl->hold_sending, 1);             /* ignored once shutting down */
	h_write(h, 0, 100, 200);
	ck_assert(h_wait_accepted(h, 100, 2000));
	/* Events arriving after SHUTDOWN (the last platform.report) still go out. */
	h_write(h, 100, 5, 200);
	ck_assert_int_ge(h_flush(h, 2000), 0);
	assert_each_once(h, 105);
	ck_assert_int_eq(WEXITSTATUS(h_stop_dispatcher(h)), 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 0);
	h_free(h);
}
END_TEST

/*
 * A listener that died between reserving and committing leaves a record the ring
 * counts as written and abandoned, never as released (ring_recover turns it into a
 * skipped one). At shutdown the dispatcher must not count it again as an event it
 * failed to deliver: the summary already reports it as ringAbandoned.
 */
START_TEST(test_shutdown_leftovers_exclude_abandoned)
{
	struct harness *h = h_new(NULL);
	struct ring_stats st;
	pid_t w;
	int ws;

	h_spawn(h);
	h_write(h, 0, 10, 200);
	w = fork();
	ck_assert_int_ge(w, 0);
	if (w == 0) {
		/* Dies of SIGSEGV copying the second payload, after the group was reserved. */
		static const char ev[] = "{\"type\":\"function\",\"record\":{\"seq\":10}}";
		void *bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct iovec v[2] = { { (void *)(uintptr_t)ev, sizeof(ev) - 1 }, { bad, 300 } };

		signal(SIGSEGV, SIG_DFL);        /* under ASan: no report for this intended fault */
		(void)!ring_writev(&h->ring, v, 2);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(w, &ws, 0), w);
	ck_assert(WIFSIGNALED(ws));
	ck_assert_uint_eq(ring_recover(&h->ring, w), 1);
	h_write(h, 11, 10, 200);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	ck_assert(h_wait_released(h, 21, 5000));
	ring_stats(&h->ring, &st);
	ck_assert(ring_empty(&h->ring));
	ck_assert_uint_eq(st.abandoned_records, 1);

	atomic_store(&h->ctl->shutdown_deadline_ms, (int64_t)now_epoch_ms() + 3000);
	ck_assert_int_eq(WEXITSTATUS(h_stop_dispatcher(h)), 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.bytes_dropped), 0);
	assert_each_once(h, 21);
	h_free(h);
}
END_TEST

/* ---- restarts ---- */

/* Summaries accepted so far, and the sum of one field over them. */
static unsigned
h_summaries(struct harness *h, const char *field, uint64_t *sum)
{
	char pat[64];
	unsigned n = 0;

	snprintf(pat, sizeof(pat), "\"%s\":", field);
	*sum = 0;
	pthread_mutex_lock(&h->sh->lock);
	for (size_t i = 0; i < h->sh->nacc; i++) {
		const char *p = h->sh->acc[i].data, *f;

		if (strstr(p, "extension.kte.dropped") == NULL)
			continue;
		n++;
		if ((f = strstr(p, pat)) != NULL)
			*sum += strtoull(f + strlen(pat), NULL, 10);
	}
	pthread_mutex_unlock(&h->sh->lock);
	return n;
}

/*
 * A restarted dispatcher reports only drops not yet delivered: the listener's counts
 * live in shared memory, so a fresh baseline would report them all again; and its own
 * counts (too large here) survive the restart instead of being forgotten.
 */
START_TEST(test_restart_does_not_repeat_summary)
{
	const char *vars[] = { "KTE_MAX_RECORD_BYTES=1024", NULL };
	struct harness *h = h_new(vars);
	uint64_t sum;

	atomic_store(&h->ctl->listener.bad_request, 3);
	h_spawn(h);
	h_write(h, 0, 10, 200);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	ck_assert(h_wait_released(h, 10, 5000));
	ck_assert_uint_eq(h_summaries(h, "listenerBadRequest", &sum), 1);
	ck_assert_uint_eq(sum, 3);

	/* One event too large, counted by the dispatcher; then it dies before reporting it. */
	atomic_store(&h->ctl->hold_sending, 1);
	h_write(h, 10, 1, 2000);
	for (int i = 0; i < 500 && atomic_load(&h->ctl->dispatcher.events_dropped) == 0; i++) {
		atomic_fetch_add(&h->ctl->flush_requested, 1);
		notify_signal(h->fds.to_dispatcher);
		poll(NULL, 0, 10);
	}
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 1);
	h_stop_dispatcher(h);
	atomic_store(&h->ctl->hold_sending, 0);

	h_spawn(h);
	h_write(h, 11, 10, 200);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	ck_assert(h_wait_released(h, 21, 5000));
	ck_assert_int_ge(h_flush(h, 10000), 0);
	h_summaries(h, "listenerBadRequest", &sum);
	ck_assert_msg(sum == 3, "listenerBadRequest reported %" PRIu64 " times in all, not 3", sum);
	h_summaries(h, "eventsTooLarge", &sum);
	ck_assert_msg(sum == 1, "eventsTooLarge reported %" PRIu64 " in all, not 1", sum);
	h_free(h);
}
END_TEST

static void
script_hang_first(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	(void)n;
	(void)failed;
	(void)record_anyway;
	if (req->seq == 2) {
		/* Stall until the test has killed the dispatcher, then drop. */
		atomic_int *killed = h->sh->script_ctx;

		for (int i = 0; i < 500 && !atomic_load(killed); i++)
			poll(NULL, 0, 10);
		rep->drop = true;
	}
}

START_TEST(test_sigkill_then_restart_resumes)
{
	struct harness *h = h_new(NULL);
	atomic_int *killed = h_shared(h, sizeof(*killed));
	int st;

	h->sh->script = script_hang_first;
	h->sh->script_ctx = killed;
	h_spawn(h);
	h_write(h, 0, 1200, 200);
	/* The first batch is accepted; the second hangs: kill the dispatcher then. */
	for (int i = 0; i < 500 && atomic_load(&h->sh->requests) < 1; i++)
		poll(NULL, 0, 10);
	while (h->sh->nreq < 2)
		poll(NULL, 0, 5);
	kill(h->pid, SIGKILL);
	waitpid(h->pid, &st, 0);
	atomic_store(killed, 1);
	h_spawn(h);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	assert_each_once(h, 1200);
	assert_ring_drained(h, 1200);
	h_free(h);
}
END_TEST

START_TEST(test_exits_when_parent_dies)
{
	struct harness *h = h_new(NULL);
	pid_t mid, pid;
	int p[2], st;

	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ck_assert_int_eq(pipe(p), 0);
	mid = fork();
	if (mid == 0) {
		pid_t c = fork();

		if (c == 0) {
			struct dispatcher_args a = { &h->cfg, &h->ring, h->ctl, &h->fds };

			close(p[0]);
			_exit(dispatcher_main(&a));
		}
		if (write(p[1], &c, sizeof(c)) != sizeof(c))
			_exit(1);
		/* Once the dispatcher runs (idle, nothing to send), its parent goes away. */
		while (!atomic_load(&h->ctl->dispatcher_idle))
			poll(NULL, 0, 5);
		_exit(0);
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &pid, sizeof(pid)), sizeof(pid));
	waitpid(mid, &st, 0);
	/* Reparented to us (subreaper): it must notice and exit by itself. */
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	h_free(h);
}
END_TEST

/* ---- signatures ---- */

static void
script_check_signature(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	struct sigv4_credentials cred = { 0 };
	struct sigv4_kinesis_headers out;
	struct tm tm = { 0 };
	char host[64];

	(void)n;
	(void)failed;
	(void)record_anyway;
	snprintf(cred.access_key_id, sizeof(cred.access_key_id), "AKIDTEST");
	snprintf(cred.secret_access_key, sizeof(cred.secret_access_key), "secret-test-key");
	snprintf(cred.session_token, sizeof(cred.session_token), "token/with+chars=");
	snprintf(host, sizeof(host), "127.0.0.1:%u", h->port);
	strptime(req->amz_date, "%Y%m%dT%H%M%SZ", &tm);
	if (strcmp(req->host, host) != 0 || strcmp(req->security_token, cred.session_token) != 0 ||
	    sigv4_sign_kinesis(NULL, &cred, "us-east-1", req->host, req->target, req->body, req->body_len,
	    timegm(&tm), &out) != 0 || strcmp(out.authorization, req->authorization) != 0 ||
	    strstr(req->authorization, "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;"
	    "x-amz-target,") == NULL) {
		pthread_mutex_lock(&h->sh->lock);
		snprintf(h->sh->last_error, sizeof(h->sh->last_error), "bad signature: host %s auth %s", req->host,
		    req->authorization);
		pthread_mutex_unlock(&h->sh->lock);
		rep->status = 403;
		rep->body = "{\"__type\":\"InvalidSignatureException\"}";
	}
	if (req->seq == 1 && rep->status == 0) {
		rep->status = 500;      /* the retry must carry a valid signature too */
	}
}

START_TEST(test_requests_are_signed)
{
	struct harness *h;

	setenv("AWS_SESSION_TOKEN", "token/with+chars=", 1);
	h = h_new(NULL);
	h->sh->script = script_check_signature;
	h_spawn(h);
	h_write(h, 0, 20, 200);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	ck_assert_msg(h->sh->last_error[0] == '\0', "%s", h->sh->last_error);
	assert_each_once(h, 20);
	ck_assert_uint_eq(h->sh->nreq, 2);
	h_free(h);
	unsetenv("AWS_SESSION_TOKEN");
}
END_TEST

START_TEST(test_missing_credentials_open_circuit)
{
	struct harness *h = h_new(NULL);
	struct ring_stats st;
	long ms;

	unsetenv("AWS_ACCESS_KEY_ID");
	h_spawn(h);
	h_write(h, 0, 10, 200);
	ms = h_flush(h, 5000);
	ck_assert_msg(ms >= 0 && ms < 2000, "flush took %ld ms without credentials", ms);
	ck_assert_uint_eq(atomic_load(&h->ctl->kinesis_healthy), 0);
	ck_assert_uint_eq(atomic_load(&h->sh->requests), 0);
	ring_stats(&h->ring, &st);
	ck_assert_uint_eq(st.released_records, 0);
	h_free(h);
}
END_TEST

START_TEST(test_no_destination_discards_and_counts)
{
	struct harness *h = h_new(NULL);
	int64_t deadline;
	int st;

	h->cfg.shipping_enabled = false;        /* as config_load leaves it without a stream */
	h_spawn(h);
	h_write(h, 0, 30, 200);
	ck_assert_int_ge(h_flush(h, 5000), 0);
	ck_assert(h_wait_released(h, 30, 5000));
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 30);
	ck_assert_uint_eq(atomic_load(&h->sh->requests), 0);
	deadline = (int64_t)now_epoch_ms() + 200;
	atomic_store(&h->ctl->shutdown_deadline_ms, deadline);
	notify_signal(h->fds.to_dispatcher);
	ck_assert_int_eq(waitpid(h->pid, &st, 0), h->pid);
	h->pid = 0;
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	h_free(h);
}
END_TEST

/* Random partial and whole failures while events keep arriving (the next batch is prepared meanwhile). */
static void
script_random(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	unsigned x = req->seq * 2654435761u;

	(void)h;
	(void)record_anyway;
	if (x % 100 < 5) {
		rep->status = 500;
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		failed[i] = (x >> 16) % 100 < 10;
	}
}

START_TEST(test_streaming_with_random_failures)
{
	const char *vars[] = { "KTE_RECORD_FORMAT=ndjson", "KTE_MAX_RECORD_BYTES=4096", NULL };
	struct harness *h = h_new(vars);

	h->sh->script = script_random;
	h_spawn(h);
	for (unsigned i = 0; i < 20000; i += 500)
		h_write(h, i, 500, 150 + i % 200);
	ck_assert(h_wait_released(h, 20000, 30000));
	assert_each_once(h, 20000);
	ck_assert_uint_gt(atomic_load(&h->ctl->dispatcher.records_retried), 0);
	h_free(h);
}
END_TEST

/* ---- TLS ---- */

/*
 * A throw-away certificate for 127.0.0.1 and a Node HTTPS server answering PutRecords
 * with success (one entry per record). Writes the certificate path into cert and
 * returns the server's pid, its port in *port.
 */
static pid_t
https_sink_start(char *dir, char *cert, size_t certlen, uint16_t *port)
{
	static const char js[] =
	    "const fs=require('fs'),https=require('https');"
	    "const d=process.argv[1];"
	    "const s=https.createServer({key:fs.readFileSync(d+'/key.pem'),cert:fs.readFileSync(d+'/cert.pem')},"
	    "(q,r)=>{let b=[];q.on('data',c=>b.push(c));q.on('end',()=>{"
	    "const n=JSON.parse(Buffer.concat(b)).Records.length;"
	    "const recs=Array.from({length:n},(_,i)=>({SequenceNumber:String(i),ShardId:'shardId-000000000000'}));"
	    "r.writeHead(200,{'Content-Type':'application/x-amz-json-1.1'});"
	    "r.end(JSON.stringify({FailedRecordCount:0,Records:recs}));});});"
	    "s.listen(0,'127.0.0.1',()=>{fs.writeFileSync(d+'/port',String(s.address().port));});";
	char cmd[1024], path[300];
	pid_t pid;
	FILE *f;
	unsigned p = 0;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/key.pem -out %s/cert.pem "
	    "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1", dir, dir);
	ck_assert_msg(system(cmd) == 0, "openssl could not make a certificate");
	snprintf(cert, certlen, "%s/cert.pem", dir);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("node", "node", "-e", js, dir, (char *)NULL);
		_exit(127);
	}
	snprintf(path, sizeof(path), "%s/port", dir);
	for (int i = 0; i < 1000 && p == 0; i++) {
		if ((f = fopen(path, "r")) != NULL) {
			if (fscanf(f, "%u", &p) != 1)
				p = 0;
			fclose(f);
		}
		if (p == 0)
			poll(NULL, 0, 10);
	}
	ck_assert_msg(p != 0, "the HTTPS sink did not start");
	*port = (uint16_t)p;
	return pid;
}

static void
https_sink_stop(pid_t pid, const char *dir)
{
	char cmd[300];

	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static void
run_tls(bool trust)
{
	char dir[] = "/tmp/kte-tls-XXXXXX", cert[300], ep[128], ca[340];
	const char *vars[4] = { ep, NULL, NULL, NULL };
	struct harness *h;
	uint16_t port;
	pid_t pid = https_sink_start(dir, cert, sizeof(cert), &port);

	snprintf(ep, sizeof(ep), "KTE_KINESIS_ENDPOINT=https://127.0.0.1:%u/", port);
	snprintf(ca, sizeof(ca), "KTE_CA_BUNDLE=%s", cert);
	if (trust)
		vars[1] = ca;
	h = h_new(vars);
	h_spawn(h);
	h_write(h, 0, 50, 200);
	ck_assert_int_ge(h_flush(h, 15000), 0);
	if (trust) {
		ck_assert(h_wait_released(h, 50, 10000));
		ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_sent), 50);
	} else {
		/* An untrusted certificate is refused: nothing sent, the circuit opens, records kept. */
		struct ring_stats st;

		ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_sent), 0);
		ck_assert_uint_eq(atomic_load(&h->ctl->kinesis_healthy), 0);
		ring_stats(&h->ring, &st);
		ck_assert_uint_eq(st.released_records, 0);
	}
	h_free(h);
	https_sink_stop(pid, dir);
}

START_TEST(test_tls_verified_with_ca_bundle)
{
	run_tls(true);
}
END_TEST

START_TEST(test_tls_untrusted_certificate_refused)
{
	run_tls(false);
}
END_TEST

static Suite *
dispatcher_suite(void)
{
	Suite *s = suite_create("dispatcher");
	TCase *tc;

	tc = tcase_create("deliver");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_drain_event);
	tcase_add_test(tc, test_drain_ndjson);
	tcase_add_test(tc, test_drain_kpl_counts);
	tcase_add_test(tc, test_gzip_records_decode_to_events);
	tcase_add_test(tc, test_requests_are_signed);
	suite_add_tcase(s, tc);
	tc = tcase_create("failures");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_partial_failures_rejoin_new_records);
	tcase_add_test(tc, test_partial_success_does_not_back_off);
	tcase_add_test(tc, test_acknowledged_prefix_released);
	tcase_add_test(tc, test_poisoned_record_alone_dropped);
	tcase_add_test(tc, test_poisoned_record_alone_in_its_request);
	tcase_add_test(tc, test_rejecting_everything_keeps_data);
	tcase_add_test(tc, test_whole_request_failures_retry);
	tcase_add_test(tc, test_lost_ack_duplicates_only_in_flight);
	tcase_add_test(tc, test_circuit_opens_and_flush_does_not_wait);
		tcase_add_test(tc, test_too_large_dropped_and_reported);
	tcase_add_test(tc, test_missing_credentials_open_circuit);
	tcase_add_test(tc, test_streaming_with_random_failures);
	suite_add_tcase(s, tc);
	tc = tcase_create("tls");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_tls_verified_with_ca_bundle);
	tcase_add_test(tc, test_tls_untrusted_certificate_refused);
	suite_add_tcase(s, tc);
	tc = tcase_create("control");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hold_sending_until_flush);
	tcase_add_test(tc, test_hold_sending_yields_to_a_filling_ring);
	tcase_add_test(tc, test_shutdown_deadline_counts_leftovers);
	tcase_add_test(tc, test_shutdown_sends_then_waits_for_sigterm);
	tcase_add_test(tc, test_shutdown_leftovers_exclude_abandoned);
	tcase_add_test(tc, test_sigkill_then_restart_resumes);
	tcase_add_test(tc, test_restart_does_not_repeat_summary);
	tcase_add_test(tc, test_exits_when_parent_dies);
	tcase_add_test(tc, test_no_destination_discards_and_counts);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(dispatcher_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
