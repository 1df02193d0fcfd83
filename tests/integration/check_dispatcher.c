/*
 * The dispatcher process end to end against a scripted Kinesis (tests/support/
 * kinesis_sink): a real ring in shared memory, a real control block, dispatcher_main
 * in a forked process, libcurl over loopback. Every test writes numbered events into
 * the ring and checks what the sink accepted: nothing lost, nothing twice except what
 * was in flight when a failure struck, ring space released only after acceptance,
 * flushes answered, the circuit breaker, the shutdown deadline, restarts, signatures.
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

#include "dispatcher/base64.h"
#include "base64_decode.h"
#include "dispatcher/dispatcher.h"
#include "dispatcher/sigv4.h"
#include "kinesis_sink.h"
#include "notify.h"

#define MAX_ACCEPTED 200000

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

struct harness {
	struct kte_config cfg;
	struct ring ring;
	struct control *ctl;
	struct control_fds fds;
	pid_t pid;
	struct sink *sink;
	uint16_t port;
	char endpoint[64];
	script_fn script;
	void *script_ctx;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct accepted *acc;
	size_t nacc;
	uint64_t released_at_request[64];   /* ring released_records seen by request i */
	unsigned nreq;
	char last_error[512];
	/* the body records of each request (first 64 requests): their first seq numbers */
	unsigned req_nrec[64];
	long req_seq[64][8];
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

	text = strndup(req->body, req->body_len);
	root = json_tokener_parse(text);
	free(text);
	if (root == NULL || !json_object_object_get_ex(root, "Records", &recs) ||
	    strcmp(req->target, "Kinesis_20131202.PutRecords") != 0 ||
	    strcmp(req->content_type, "application/x-amz-json-1.1") != 0) {
		rep->status = 400;
		rep->body = "{\"__type\":\"SerializationException\"}";
		pthread_mutex_lock(&h->lock);
		snprintf(h->last_error, sizeof(h->last_error), "bad request: target %s", req->target);
		pthread_mutex_unlock(&h->lock);
		goto out;
	}
	n = (unsigned)json_object_array_length(recs);
	ring_stats(&h->ring, &st);
	pthread_mutex_lock(&h->lock);
	if (h->nreq < 64) {
		h->released_at_request[h->nreq] = st.released_records;
		h->req_nrec[h->nreq] = n;
		for (unsigned i = 0; i < n && i < 8; i++) {
			json_object *d;
			const char *s;
			char tmp[4096];
			ssize_t dl;

			json_object_object_get_ex(json_object_array_get_idx(recs, i), "Data", &d);
			s = json_object_get_string(d);
			dl = strlen(s) < 4000 ? base64_decode(s, strlen(s) < 4000 ? strlen(s) : 0, tmp) : -1;
			h->req_seq[h->nreq][i] = dl > 0 ? seq_of(tmp, (size_t)dl) : -2;
		}
	}
	h->nreq++;
	pthread_mutex_unlock(&h->lock);
	if (h->script != NULL)
		h->script(h, req, n, failed, rep, &record_anyway);
	if (rep->drop || (rep->status != 0 && rep->status != 200)) {
		if (!record_anyway)
			goto out;
	} else if (rep->body == NULL && rep->body_alloc == NULL)
		rep->body_alloc = sink_putrecords_reply(n, failed, NULL);
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < n && h->nacc < MAX_ACCEPTED; i++) {
		json_object *r = json_object_array_get_idx(recs, i), *d, *k;
		struct accepted *a = &h->acc[h->nacc];
		const char *s;
		ssize_t dl;

		if (failed[i] && !record_anyway)
			continue;
		json_object_object_get_ex(r, "Data", &d);
		json_object_object_get_ex(r, "PartitionKey", &k);
		s = json_object_get_string(d);
		a->data = malloc(base64_decoded_max(strlen(s)) + 1);
		dl = base64_decode(s, strlen(s), a->data);
		a->len = dl > 0 ? (size_t)dl : 0;
		a->data[a->len] = '\0';
		snprintf(a->key, sizeof(a->key), "%s", json_object_get_string(k));
		a->request = req->seq;
		h->nacc++;
	}
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
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
	char err[256];

	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->acc = calloc(MAX_ACCEPTED, sizeof(*h->acc));
	h->sink = sink_start(h_handler, h, &h->port);
	ck_assert_ptr_nonnull(h->sink);
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
	sink_stop(h->sink);
	for (size_t i = 0; i < h->nacc; i++)
		free(h->acc[i].data);
	free(h->acc);
	control_free(h->ctl, &h->fds);
	ring_close(&h->ring);
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
	pthread_mutex_lock(&h->lock);
	while (h->nacc < n && pthread_cond_timedwait(&h->cond, &h->lock, &ts) == 0)
		;
	ok = h->nacc >= n;
	pthread_mutex_unlock(&h->lock);
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

	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < h->nacc; i++) {
		char *p = h->acc[i].data, *end = p + h->acc[i].len;

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
	pthread_mutex_unlock(&h->lock);
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
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.records_sent), h->nacc);
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
	ck_assert_uint_le(h->nacc, 12);
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
	ck_assert_uint_le(h->nacc, 20000 / 50);     /* at least 50 events per Kinesis record */
	assert_ring_drained(h, 20000);
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
	struct partial_ctx *c = h->script_ctx;
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

START_TEST(test_partial_failures_resend_only_failed)
{
	struct harness *h = h_new(NULL);
	struct partial_ctx *c = calloc(1, sizeof(*c));

	h->script = script_partial;
	h->script_ctx = c;
	h_spawn(h);
	h_write(h, 0, 700, 200);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	assert_each_once(h, 700);
	assert_ring_drained(h, 700);
	/* The second request resends exactly the failed records of the first, in order. */
	ck_assert_uint_eq(h->req_nrec[0], 500);
	ck_assert_uint_eq(h->req_nrec[1], 72);      /* 0, 7, ..., 497 */
	for (unsigned i = 0; i < 8; i++)
		ck_assert_int_eq(h->req_seq[1][i], (long)i * 7);
	/* Nothing was released while the first batch had failed records. */
	ck_assert_uint_eq(h->released_at_request[1], 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.records_retried), 100);
	for (unsigned s = 0; s < 700; s += 7)
		ck_assert_uint_eq(c->tries[s], 2);
	h_free(h);
	free(c);
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

	h->script = script_errors;
	h_spawn(h);
	h_write(h, 0, 300, 200);
	/* Three failures in a row open the circuit: the flush is answered without waiting. */
	ck_assert_int_ge(h_flush(h, 20000), 0);
	ck_assert(h_wait_released(h, 300, 20000));
	assert_each_once(h, 300);
	assert_ring_drained(h, 300);
	/* 7, or 8 when libcurl resent on the dropped connection (see below). */
	ck_assert_uint_ge(h->nreq, 7);
	ck_assert_uint_le(h->nreq, 8);
	for (unsigned i = 0; i < h->nreq; i++) {
		ck_assert_uint_eq(h->req_nrec[i], 300);                 /* the same batch each time */
		ck_assert_uint_eq(h->released_at_request[i], 0);        /* nothing released before */
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

	h->script = script_lost_ack;
	h_spawn(h);
	h_write(h, 0, 1500, 200);
	ck_assert_int_ge(h_flush(h, 20000), 0);
	h_events(h, counts, 1500, NULL, 0);
	for (unsigned i = 0; i < 1500; i++) {
		ck_assert_uint_ge(counts[i], 1);
		ck_assert_uint_le(counts[i], 2);
		twice += counts[i] == 2;
	}
	ck_assert_uint_eq(twice, h->req_nrec[1]);   /* exactly the records of the lost request */
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
	atomic_int *healthy = h->script_ctx;

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
	static atomic_int healthy;
	struct ring_stats st;
	long ms;

	h->script = script_not_found_until;
	h->script_ctx = &healthy;
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
	atomic_store(&healthy, 1);
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

static void
script_invalid_first(struct harness *h, const struct sink_request *req, unsigned n, uint8_t *failed,
    struct sink_reply *rep, bool *record_anyway)
{
	(void)h;
	(void)n;
	(void)failed;
	(void)record_anyway;
	if (req->seq == 1) {
		rep->status = 400;
		rep->body = "{\"__type\":\"InvalidArgumentException\",\"message\":\"injected\"}";
	}
}

START_TEST(test_invalid_request_dropped_and_reported)
{
	const char *vars[] = { "KTE_CIRCUIT_PROBE_MS=100", NULL };
	struct harness *h = h_new(vars);
	unsigned counts[400] = { 0 };
	char summary[1024] = "";
	long ms;

	h->script = script_invalid_first;
	atomic_store(&h->ctl->hold_sending, 1);            /* all 200 in the first request */
	h_spawn(h);
	h_write(h, 0, 200, 200);
	ms = h_flush(h, 5000);
	ck_assert(ms >= 0);
	ck_assert(h_wait_released(h, 200, 5000));          /* given up: released */
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 200);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.bytes_dropped), 200 * 200);
	ck_assert_uint_eq(h->req_nrec[0], 200);
	atomic_store(&h->ctl->hold_sending, 0);
	h_write(h, 200, 200, 200);
	ck_assert(h_wait_released(h, 400, 10000));
	ck_assert_int_ge(h_flush(h, 10000), 0);
	/* The summary goes out once the circuit closed again: the flush need not wait for it. */
	for (int i = 0; i < 500 && summary[0] == '\0'; i++) {
		memset(counts, 0, sizeof(counts));
		h_events(h, counts, 400, summary, sizeof(summary));
		if (summary[0] == '\0')
			poll(NULL, 0, 10);
	}
	memset(counts, 0, sizeof(counts));
	ck_assert_uint_eq(h_events(h, counts, 400, summary, sizeof(summary)), 200);
	for (unsigned i = 200; i < 400; i++)
		ck_assert_uint_eq(counts[i], 1);
	ck_assert_msg(strstr(summary, "\"type\":\"extension.kte.dropped\"") != NULL, "no summary");
	ck_assert_msg(strstr(summary, "\"eventsRejected\":200") != NULL, "summary: %s", summary);
	ck_assert(strstr(summary, "\"eventsTooLarge\":0") != NULL);
	json_object *sj = json_tokener_parse(summary);

	ck_assert_ptr_nonnull(sj);
	json_object_put(sj);
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
	ck_assert_uint_eq(sink_requests(h->sink), 0);
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
	int64_t deadline;
	int st;

	h->script = script_always_500;
	h_spawn(h);
	h_write(h, 0, 400, 200);
	deadline = (int64_t)now_epoch_ms() + 500;
	atomic_store(&h->ctl->shutdown_deadline_ms, deadline);
	notify_signal(h->fds.to_dispatcher);
	ck_assert_int_eq(waitpid(h->pid, &st, 0), h->pid);
	h->pid = 0;
	ck_assert_msg((int64_t)now_epoch_ms() <= deadline + 20, "exited %" PRId64 " ms after the deadline",
	    (int64_t)now_epoch_ms() - deadline);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_uint_eq(atomic_load(&h->ctl->dispatcher.events_dropped), 400);
	ck_assert_uint_eq(atomic_load(&h->ctl->flush_completed), atomic_load(&h->ctl->flush_requested));
	ck_assert_uint_ge(sink_requests(h->sink), 2);      /* it kept trying until the deadline */
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
	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < h->nacc; i++) {
		const char *p = h->acc[i].data, *f;

		if (strstr(p, "extension.kte.dropped") == NULL)
			continue;
		n++;
		if ((f = strstr(p, pat)) != NULL)
			*sum += strtoull(f + strlen(pat), NULL, 10);
	}
	pthread_mutex_unlock(&h->lock);
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
		atomic_int *killed = h->script_ctx;

		for (int i = 0; i < 500 && !atomic_load(killed); i++)
			poll(NULL, 0, 10);
		rep->drop = true;
	}
}

START_TEST(test_sigkill_then_restart_resumes)
{
	struct harness *h = h_new(NULL);
	static atomic_int killed;
	int st;

	h->script = script_hang_first;
	h->script_ctx = &killed;
	h_spawn(h);
	h_write(h, 0, 1200, 200);
	/* The first batch is accepted; the second hangs: kill the dispatcher then. */
	for (int i = 0; i < 500 && sink_requests(h->sink) < 1; i++)
		poll(NULL, 0, 10);
	while (h->nreq < 2)
		poll(NULL, 0, 5);
	kill(h->pid, SIGKILL);
	waitpid(h->pid, &st, 0);
	atomic_store(&killed, 1);
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
		pthread_mutex_lock(&h->lock);
		snprintf(h->last_error, sizeof(h->last_error), "bad signature: host %s auth %s", req->host,
		    req->authorization);
		pthread_mutex_unlock(&h->lock);
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
	h->script = script_check_signature;
	h_spawn(h);
	h_write(h, 0, 20, 200);
	ck_assert_int_ge(h_flush(h, 10000), 0);
	ck_assert_msg(h->last_error[0] == '\0', "%s", h->last_error);
	assert_each_once(h, 20);
	ck_assert_uint_eq(h->nreq, 2);
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
	ck_assert_uint_eq(sink_requests(h->sink), 0);
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
	ck_assert_uint_eq(sink_requests(h->sink), 0);
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

	h->script = script_random;
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
	tcase_add_test(tc, test_requests_are_signed);
	suite_add_tcase(s, tc);
	tc = tcase_create("failures");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_partial_failures_resend_only_failed);
	tcase_add_test(tc, test_whole_request_failures_retry);
	tcase_add_test(tc, test_lost_ack_duplicates_only_in_flight);
	tcase_add_test(tc, test_circuit_opens_and_flush_does_not_wait);
	tcase_add_test(tc, test_invalid_request_dropped_and_reported);
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
