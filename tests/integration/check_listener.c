/*
 * The listener end to end: listener_main in a forked child on a free port with a
 * real ring, real HTTP over libcurl (keep-alive, concurrent clients), every batch
 * read back from the ring byte for byte, every bad input answered with its status
 * while the process keeps serving, ring full answered 503 with nothing partial.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "listener/intake.h"
#include "listener/listener.h"
#include "listener_fixture.h"
#include "notify.h"

#define RING_BYTES (8u << 20)

struct batch {
	char *body;
	size_t len;
	size_t n;
	char *ev[64];
	size_t evlen[64];
};

/* Event j of batch b from client c: varied shapes, each unique. */
static int
make_event(char *out, size_t outlen, int c, int b, int j)
{
	switch (j % 4) {
	case 0:
		return snprintf(out, outlen, "{\"time\":\"2026-11-28T05:00:00.000Z\",\"type\":\"function\","
		    "\"record\":\"c%db%de%d [INFO] hello \\\"world\\\" ]}[{\"}", c, b, j);
	case 1:
		return snprintf(out, outlen, "{\"time\":\"2026-11-28T05:00:00.001Z\",\"type\":\"function\","
		    "\"record\":{\"timestamp\":\"t\",\"level\":\"INFO\",\"requestId\":\"c%db%de%d\","
		    "\"message\":\"caf\xc3\xa9 \\u00e9\\ud83d\\ude00\"}}", c, b, j);
	case 2:
		return snprintf(out, outlen, "{\"type\":\"platform.start\",\"time\":\"x\",\"record\":"
		    "{\"requestId\":\"c%db%de%d\",\"version\":\"$LATEST\",\"tracing\":{\"spanId\":\"1\","
		    "\"type\":\"X-Amzn-Trace-Id\",\"value\":\"Root=1-2;Sampled=1\"}}}", c, b, j);
	default:
		return snprintf(out, outlen, "{\"record\":{\"a\":[1,-2.5e3,true,null,{\"b\":[[]]}],"
		    "\"id\":\"c%db%de%d\"},\"type\":\"extension\",\"unknown\":{}}", c, b, j);
	}
}

static void
batch_build(struct batch *bt, int c, int b, size_t n)
{
	char ev[512];
	size_t cap = 64, len = 0;

	memset(bt, 0, sizeof(*bt));
	ck_assert_uint_le(n, 64);
	bt->body = malloc(cap);
	bt->body[len++] = '[';
	for (size_t j = 0; j < n; j++) {
		int m = make_event(ev, sizeof(ev), c, b, (int)j);

		while (len + (size_t)m + 8 > cap)
			bt->body = realloc(bt->body, cap *= 2);
		if (j > 0)
			len += (size_t)sprintf(bt->body + len, (j % 2) ? ",\n  " : ",");
		bt->ev[j] = strndup(ev, (size_t)m);
		bt->evlen[j] = (size_t)m;
		memcpy(bt->body + len, ev, (size_t)m);
		len += (size_t)m;
	}
	bt->body[len++] = ']';
	bt->body[len] = '\0';
	bt->len = len;
	bt->n = n;
}

static void
batch_free(struct batch *bt)
{
	for (size_t j = 0; j < bt->n; j++)
		free(bt->ev[j]);
	free(bt->body);
}

/* Reads the batch's events back from the ring, byte for byte, and releases them. */
static void
ring_expect_batch(struct ring *r, const struct batch *bt)
{
	struct ring_record rec;

	for (size_t j = 0; j < bt->n; j++) {
		ck_assert_int_eq(ring_peek(r, &rec), 0);
		ck_assert_uint_eq(rec.len, bt->evlen[j]);
		ck_assert_msg(memcmp(rec.data, bt->ev[j], rec.len) == 0, "event %zu differs", j);
		ck_assert_int_eq(ring_release(r, rec.next), 0);
	}
}

static void
ring_expect_empty(struct ring *r)
{
	struct ring_record rec;

	ck_assert_int_eq(ring_peek(r, &rec), -EAGAIN);
}

static long
post(CURL *h, const struct listener_fixture *f, const char *path, const char *body)
{
	return lfix_request(h, f, "POST", path, body, strlen(body), 0);
}

START_TEST(test_valid_batches_keepalive)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	uint64_t events = 0, bytes = 0;
	long conns = -1;

	lfix_init(&f);
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	for (int b = 0; b < 50; b++) {
		struct batch bt;

		batch_build(&bt, 0, b, (size_t)(b % 7) + 1);
		ck_assert_int_eq(lfix_request(h, &f, "POST", (b % 2) ? "/" : LISTENER_PATH, bt.body, bt.len,
		    ((b % 5 == 4) ? LFIX_CHUNKED : 0) | ((b % 3 == 2) ? LFIX_EXPECT : 0)), 200);
		if (b > 0) {
			curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
			ck_assert_int_eq(conns, 0);     /* the connection was reused */
		}
		ring_expect_batch(&f.ring, &bt);
		ring_expect_empty(&f.ring);
		events += bt.n;
		for (size_t j = 0; j < bt.n; j++)
			bytes += bt.evlen[j];
		batch_free(&bt);
	}
	ck_assert_int_eq(post(h, &f, "/", " [ ] "), 200);
	ring_expect_empty(&f.ring);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.requests), 51);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.events), events);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.bytes), bytes);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.bad_request), 0);
	curl_easy_cleanup(h);
	ck_assert_int_eq(lfix_stop(&f, SIGTERM), 0);    /* clean exit on SIGTERM */
	lfix_free(&f);
}
END_TEST

#define CLIENTS 4
#define CLIENT_BATCHES 100
#define BATCH_EVENTS 10

struct client {
	struct listener_fixture *f;
	int id, ok;
};

static void *
client_run(void *p)
{
	struct client *c = p;
	CURL *h = curl_easy_init();

	for (int b = 0; b < CLIENT_BATCHES; b++) {
		struct batch bt;

		batch_build(&bt, c->id, b, BATCH_EVENTS);
		if (lfix_request(h, c->f, "POST", "/", bt.body, bt.len, 0) == 200)
			c->ok++;
		batch_free(&bt);
	}
	curl_easy_cleanup(h);
	return NULL;
}

START_TEST(test_concurrent_clients)
{
	static char seen[CLIENTS][CLIENT_BATCHES];
	struct listener_fixture f;
	struct client c[CLIENTS];
	pthread_t t[CLIENTS];
	struct ring_record rec;
	int last[CLIENTS];

	lfix_init(&f);
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	for (int i = 0; i < CLIENTS; i++) {
		c[i] = (struct client){ &f, i, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, client_run, &c[i]), 0);
	}
	for (int i = 0; i < CLIENTS; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(c[i].ok, CLIENT_BATCHES);
		last[i] = -1;
	}
	/* Each batch is one group: its events are contiguous and in order; a client's batches in order. */
	for (int k = 0; k < CLIENTS * CLIENT_BATCHES; k++) {
		struct batch bt;
		int ci, bi, ei;
		const char *m;

		ck_assert_int_eq(ring_peek(&f.ring, &rec), 0);
		m = memmem(rec.data, rec.len, "\"c", 2);
		ck_assert_ptr_nonnull(m);
		ck_assert_int_eq(sscanf(m + 1, "c%db%de%d", &ci, &bi, &ei), 3);
		ck_assert_int_eq(ei, 0);
		ck_assert(ci >= 0 && ci < CLIENTS && bi >= 0 && bi < CLIENT_BATCHES);
		ck_assert_int_eq(seen[ci][bi], 0);
		ck_assert_int_gt(bi, last[ci]);
		seen[ci][bi] = 1;
		last[ci] = bi;
		ring_rewind(&f.ring);   /* re-read this batch from its first event */
		batch_build(&bt, ci, bi, BATCH_EVENTS);
		ring_expect_batch(&f.ring, &bt);
		batch_free(&bt);
	}
	ring_expect_empty(&f.ring);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.events), CLIENTS * CLIENT_BATCHES * BATCH_EVENTS);
	lfix_free(&f);
}
END_TEST

/* Sends raw bytes and returns the status of the first response line, or -1. */
static int
raw_request(const struct listener_fixture *f, const char *req)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(f->cfg.listener_port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { 10, 0 };
	char buf[256];
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	shutdown(fd, SHUT_WR);          /* nothing more is coming */
	n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
			status = -1;
	}
	close(fd);
	return status;
}

START_TEST(test_bad_inputs_each_status)
{
	static const char *bad_json[] = { "[{\"a\":1}", "{\"type\":\"function\"}", "", "  ", "[1]x",
		"[\"\\ud800\"]", "[{\"a\":01}]", "not json" };
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	struct batch good;
	size_t limit, nbad = sizeof(bad_json) / sizeof(bad_json[0]);
	char *big, req[256];
	pid_t pid;

	lfix_init(&f);
	f.cfg.max_record_bytes = 4096;          /* events over 4096 - 256 bytes are dropped */
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	pid = f.pid;
	batch_build(&good, 9, 9, 5);
	limit = listener_body_limit(&f.cfg);

	for (size_t i = 0; i < nbad; i++) {
		ck_assert_msg(post(h, &f, "/", bad_json[i]) == 400, "body %zu", i);
		ck_assert_int_eq(lfix_request(h, &f, "POST", "/", good.body, good.len, 0), 200);
	}
	ck_assert_int_eq(lfix_request(h, &f, "GET", "/", NULL, 0, 0), 405);
	ck_assert_int_eq(lfix_request(h, &f, "PUT", "/", good.body, good.len, 0), 405);
	{
		long conns = -1;

		/* The GET had no body to drain: its connection stayed open for the PUT. */
		curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
		ck_assert_int_eq(conns, 0);
	}
	ck_assert_int_eq(lfix_request(h, &f, "DELETE", LISTENER_PATH, NULL, 0, 0), 405);
	ck_assert_int_eq(post(h, &f, "/other", "[]"), 404);
	ck_assert_int_eq(lfix_request(h, &f, "GET", "/telemetry/x", NULL, 0, 0), 404);
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", good.body, good.len, 0), 200);

	/* 413 from Content-Length alone: the 100 MB body is never sent. */
	snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	    "Content-Length: 100000000\r\n\r\n[");
	ck_assert_int_eq(raw_request(&f, req), 413);
	/* With Expect: 100-continue the oversized body is refused before it is sent. */
	big = malloc(limit + 2);
	memset(big, ' ', limit + 1);
	big[0] = '[';
	big[limit] = ']';
	big[limit + 1] = '\0';
	{
		curl_off_t up = -1;

		ck_assert_int_eq(lfix_request(h, &f, "POST", "/", big, limit + 1, LFIX_EXPECT), 413);
		curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
		ck_assert_int_eq(up, 0);
	}
	/* One byte over the limit, with a length, then chunked. */
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", big, limit + 1, 0), 413);
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", big, limit + 1, LFIX_CHUNKED), 413);
	/* Exactly at the limit is fine. */
	big[limit - 1] = ']';
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", big, limit, 0), 200);
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", big, limit, LFIX_CHUNKED), 200);
	free(big);
	/* A body cut short by the client: 400 (or the connection drops), never a batch. */
	snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n[1,2]");
	{
		int st = raw_request(&f, req);

		ck_assert(st == 400 || st == -1);
	}

	/* Only the good batches reached the ring, each whole. */
	for (size_t i = 0; i < nbad + 1; i++)
		ring_expect_batch(&f.ring, &good);
	ring_expect_empty(&f.ring);

	ck_assert_uint_eq(atomic_load(&f.ctl->listener.bad_request), nbad + 1);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.bad_method), 3);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.not_found), 2);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.too_large), 4);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.requests), nbad + 3);

	/* A single event over the record limit: dropped and counted, the rest accepted. */
	{
		size_t n = 5000;
		char *body = malloc(n + 200);
		int len = sprintf(body, "[{\"type\":\"function\",\"record\":\"small 1\"},{\"record\":\"");

		memset(body + len, 'x', n);
		len += (int)n;
		len += sprintf(body + len, "\"},{\"type\":\"function\",\"record\":\"small 2\"}]");
		ck_assert_int_eq(lfix_request(h, &f, "POST", "/", body, (size_t)len, 0), 200);
		free(body);
	}
	{
		struct ring_record rec;

		ck_assert_int_eq(ring_peek(&f.ring, &rec), 0);
		ck_assert(memmem(rec.data, rec.len, "small 1", 7) != NULL);
		ck_assert_int_eq(ring_peek(&f.ring, &rec), 0);
		ck_assert(memmem(rec.data, rec.len, "small 2", 7) != NULL);
		ck_assert_int_eq(ring_release(&f.ring, rec.next), 0);
		ring_expect_empty(&f.ring);
	}
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.oversized_dropped), 1);

	/* Still the same process, still serving. */
	ck_assert_int_eq(f.pid, pid);
	ck_assert_int_eq(kill(pid, 0), 0);
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", good.body, good.len, 0), 200);
	ring_expect_batch(&f.ring, &good);
	batch_free(&good);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

struct drainer {
	struct ring *ring;
	int delay_ms;
	volatile int stop;
	size_t records;
	char *copy;             /* concatenation of every record seen, for test_batch_larger_than_ring */
	size_t copy_len, copy_cap;
};

static void *
drain_run(void *p)
{
	struct drainer *d = p;
	struct ring_record rec;
	uint64_t until = now_mono_ms() + (uint64_t)d->delay_ms;

	while (now_mono_ms() < until)
		(void)ring_reader_wait(d->ring, 10);
	while (!d->stop || !ring_empty(d->ring)) {
		int rc = ring_peek(d->ring, &rec);

		if (rc == -EAGAIN) {
			if (!ring_reader_arm(d->ring))
				(void)ring_reader_wait(d->ring, 20);
			continue;
		}
		ck_assert_int_eq(rc, 0);
		if (d->copy != NULL) {
			ck_assert_uint_le(d->copy_len + rec.len, d->copy_cap);
			memcpy(d->copy + d->copy_len, rec.data, rec.len);
			d->copy_len += rec.len;
		}
		d->records++;
		ck_assert_int_eq(ring_release(d->ring, rec.next), 0);
	}
	return NULL;
}

START_TEST(test_ring_full_503_nothing_partial)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	struct batch bt;
	struct ring_record rec;
	int accepted = 0, refused = 0;

	lfix_init(&f);
	f.ring_wait_ms = 100;
	ck_assert_int_eq(lfix_start(&f, 16384), 0);
	batch_build(&bt, 1, 1, 20);     /* ~4 KiB: a few fit */
	for (int i = 0; i < 50 && refused == 0; i++) {
		uint64_t t0 = now_mono_ms();
		long st = lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0);

		ck_assert(st == 200 || st == 503);
		if (st == 200)
			accepted++;
		else {
			refused++;
			/* It waited for space first (a lower bound: never flaky). */
			ck_assert_uint_ge(now_mono_ms() - t0, (uint64_t)f.ring_wait_ms);
		}
	}
	ck_assert_int_gt(accepted, 0);
	ck_assert_int_eq(refused, 1);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.ring_full), 1);
	/* The ring holds exactly the accepted batches, whole. */
	for (int i = 0; i < accepted; i++)
		ring_expect_batch(&f.ring, &bt);
	ck_assert_int_eq(ring_peek(&f.ring, &rec), -EAGAIN);
	ck_assert(ring_empty(&f.ring));

	/* Space is back: accepted again, same connection, same process. */
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0), 200);
	ring_expect_batch(&f.ring, &bt);
	batch_free(&bt);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

START_TEST(test_ring_full_wait_then_accept)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	struct batch bt;
	struct drainer d;
	pthread_t t;
	int accepted = 0;

	lfix_init(&f);
	f.ring_wait_ms = 10000;         /* long enough for the drainer to free space */
	ck_assert_int_eq(lfix_start(&f, 16384), 0);
	batch_build(&bt, 1, 1, 20);
	/* Fill the ring without a reader: writev directly, as another writer would. */
	{
		struct iovec v[20];

		for (size_t j = 0; j < bt.n; j++)
			v[j] = (struct iovec){ bt.ev[j], bt.evlen[j] };
		while (ring_writev(&f.ring, v, bt.n) == 0)
			accepted++;
	}
	memset(&d, 0, sizeof(d));
	d.ring = &f.ring;
	d.delay_ms = 200;
	ck_assert_int_eq(pthread_create(&t, NULL, drain_run, &d), 0);
	/* The listener waits for the drainer (bounded) instead of failing. */
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0), 200);
	d.stop = 1;
	pthread_join(t, NULL);
	ck_assert_uint_eq(d.records, (size_t)(accepted + 1) * bt.n);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.ring_full), 0);
	batch_free(&bt);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

/* Fills the ring with copies of bt written directly, as another writer would; returns how many. */
static int
ring_fill(struct ring *r, const struct batch *bt)
{
	struct iovec v[64];
	int n = 0;

	for (size_t j = 0; j < bt->n; j++)
		v[j] = (struct iovec){ bt->ev[j], bt->evlen[j] };
	while (ring_writev(r, v, bt->n) == 0)
		n++;
	return n;
}

/*
 * KTE_OVERFLOW=wait (the default): a POST finding the ring full is held, well past the
 * 1 s that drop allows, and accepted once the reader frees space; nothing answered 503.
 */
START_TEST(test_ring_full_held_until_space)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	struct batch bt;
	struct drainer d;
	pthread_t t;
	uint64_t t0;
	int filled;

	lfix_init(&f);
	ck_assert_int_eq(f.cfg.overflow, OVERFLOW_WAIT);
	ck_assert_int_eq(lfix_start(&f, 16384), 0);
	batch_build(&bt, 1, 1, 20);
	filled = ring_fill(&f.ring, &bt);
	memset(&d, 0, sizeof(d));
	d.ring = &f.ring;
	d.delay_ms = 2500;      /* longer than the drop policy's wait and the body deadline */
	t0 = now_mono_ms();
	ck_assert_int_eq(pthread_create(&t, NULL, drain_run, &d), 0);
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0), 200);
	ck_assert_uint_ge(now_mono_ms() - t0, (uint64_t)d.delay_ms);   /* it was held, not refused */
	d.stop = 1;
	pthread_join(t, NULL);
	ck_assert_uint_eq(d.records, (size_t)(filled + 1) * bt.n);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.ring_full), 0);
	batch_free(&bt);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

/* KTE_OVERFLOW=drop: the bounded wait (INTAKE_RING_WAIT_MS), then 503, counted. */
START_TEST(test_ring_full_drop_policy_503)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	struct batch bt;
	uint64_t t0;

	lfix_init(&f);
	f.cfg.overflow = OVERFLOW_DROP;
	ck_assert_int_eq(lfix_start(&f, 16384), 0);
	batch_build(&bt, 1, 1, 20);
	(void)ring_fill(&f.ring, &bt);
	t0 = now_mono_ms();
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0), 503);
	ck_assert_uint_ge(now_mono_ms() - t0, INTAKE_RING_WAIT_MS);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.ring_full), 1);
	batch_free(&bt);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

START_TEST(test_batch_larger_than_ring)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	struct drainer d;
	pthread_t t;
	size_t n = 450, evlen = 1000, len = 0;
	char *body = malloc(n * (evlen + 1) + 2), *expect = malloc(n * evlen);

	for (size_t j = 0; j < n; j++) {
		char *e = expect + j * evlen;
		int m = sprintf(e, "{\"type\":\"function\",\"n\":%zu,\"record\":\"", j);

		memset(e + m, 'a' + (int)(j % 26), evlen - (size_t)m - 2);
		memcpy(e + evlen - 2, "\"}", 2);
	}
	body[len++] = '[';
	for (size_t j = 0; j < n; j++) {
		if (j > 0)
			body[len++] = ',';
		memcpy(body + len, expect + j * evlen, evlen);
		len += evlen;
	}
	body[len++] = ']';

	lfix_init(&f);
	f.ring_wait_ms = 10000;
	ck_assert_int_eq(lfix_start(&f, 128 * 1024), 0);
	ck_assert_uint_gt(ring_space_needed(&(struct iovec){ body, len }, 1), f.ring.capacity);
	memset(&d, 0, sizeof(d));
	d.ring = &f.ring;
	d.copy_cap = n * evlen;
	d.copy = malloc(d.copy_cap);
	ck_assert_int_eq(pthread_create(&t, NULL, drain_run, &d), 0);
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", body, len, 0), 200);
	d.stop = 1;
	pthread_join(t, NULL);
	ck_assert_uint_eq(d.records, n);
	ck_assert_uint_eq(d.copy_len, n * evlen);
	ck_assert(memcmp(d.copy, expect, n * evlen) == 0);
	free(d.copy);
	free(body);
	free(expect);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

START_TEST(test_runtime_done_and_counts)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	const char *body = "[{\"time\":\"t\",\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":\"r\","
	    "\"status\":\"success\"}},{\"type\":\"platform.report\",\"record\":{}},"
	    "{\"type\":\"platform.logsDropped\",\"record\":{\"droppedBytes\":10,\"droppedRecords\":7,"
	    "\"reason\":\"r\"}},{\"type\":\"platform.logsDropped\",\"record\":{\"droppedRecords\":3}}]";

	lfix_init(&f);
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	notify_drain(f.fds.to_controller);
	ck_assert_int_eq(post(h, &f, "/", "[{\"type\":\"platform.start\",\"record\":{}}]"), 200);
	ck_assert_uint_eq(notify_drain(f.fds.to_controller), 0);   /* nothing to signal */
	ck_assert_int_eq(post(h, &f, "/", body), 200);
	ck_assert_uint_eq(atomic_load(&f.ctl->runtime_done_count), 1);
	ck_assert_uint_eq(atomic_load(&f.ctl->report_count), 1);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.logs_dropped_records), 10);
	ck_assert_uint_gt(notify_drain(f.fds.to_controller), 0);
	/* A refused batch counts nothing (Lambda sends it again). */
	ck_assert_int_eq(post(h, &f, "/", "[{\"type\":\"platform.runtimeDone\"},"), 400);
	ck_assert_uint_eq(atomic_load(&f.ctl->runtime_done_count), 1);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.events), 5);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

START_TEST(test_filters)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	struct ring_record rec;
	const char *body = "["
	    "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"drop1\"}},"
	    "{\"type\":\"function\",\"record\":{\"level\":\"DEBUG\",\"message\":\"drop2\"}},"
	    "{\"type\":\"function\",\"record\":{\"level\":\"INFO\",\"message\":\"keep1\"}},"
	    "{\"type\":\"function\",\"record\":\"keep2 [DEBUG] text logs have no level\"},"
	    "{\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":\"keep3\"}},"
	    "{\"type\":\"extension\",\"record\":{\"level\":\"DEBUG\",\"message\":\"keep4\"}},"
	    "{\"type\":\"platform.initStart\",\"record\":{\"x\":\"drop3\"}}"
	    "]";
	int kept = 0;

	lfix_init(&f);
	snprintf(f.cfg.drop_types, sizeof(f.cfg.drop_types), "platform.start, platform.init*");
	f.cfg.min_log_level = 2;        /* info */
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	ck_assert_int_eq(post(h, &f, "/", body), 200);
	while (ring_peek(&f.ring, &rec) == 0) {
		ck_assert(memmem(rec.data, rec.len, "keep", 4) != NULL);
		ck_assert(memmem(rec.data, rec.len, "drop", 4) == NULL);
		kept++;
	}
	ck_assert_int_eq(kept, 4);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.filtered), 3);
	ck_assert_uint_eq(atomic_load(&f.ctl->runtime_done_count), 1);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

START_TEST(test_restart_same_port)
{
	struct listener_fixture f;
	CURL *h = curl_easy_init();
	struct batch bt;
	unsigned port;

	lfix_init(&f);
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	port = f.cfg.listener_port;
	batch_build(&bt, 2, 2, 3);
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0), 200);
	/* Killed with a connection open: the server side of it lingers in TIME_WAIT. */
	ck_assert_int_ne(lfix_stop(&f, SIGKILL), -1);
	curl_easy_cleanup(h);
	ck_assert_int_eq(lfix_start_same_port(&f), 0);
	ck_assert_uint_eq(f.cfg.listener_port, port);
	h = curl_easy_init();
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0), 200);
	ring_expect_batch(&f.ring, &bt);
	ring_expect_batch(&f.ring, &bt);
	batch_free(&bt);
	curl_easy_cleanup(h);
	lfix_free(&f);
}
END_TEST

START_TEST(test_sigterm_with_idle_keepalive)
{
	struct listener_fixture f;
	CURL *h[3];
	uint64_t t0;
	int status;

	lfix_init(&f);
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	/* Three idle keep-alive connections, each parking a civetweb worker. */
	for (int i = 0; i < 3; i++) {
		h[i] = curl_easy_init();
		ck_assert_int_eq(post(h[i], &f, "/", "[]"), 200);
	}
	t0 = now_mono_ms();
	status = lfix_stop(&f, SIGTERM);
	/* civetweb alone would take up to 2 s (its poll quantum); the controller's budget is smaller. */
	ck_assert_uint_lt(now_mono_ms() - t0, 1000);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int i = 0; i < 3; i++)
		curl_easy_cleanup(h[i]);
	lfix_free(&f);
}
END_TEST

struct waiting_post {
	const struct listener_fixture *f;
	const struct batch *bt;
	atomic_int uploading;           /* the body is going out: the handler runs (it sent 100 Continue) */
	long status;
};

static int
waiting_post_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct waiting_post *w = ud;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	if (ulnow > 0)
		atomic_store(&w->uploading, 1);
	return 0;
}

static void *
waiting_post_run(void *p)
{
	struct waiting_post *w = p;
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = curl_slist_append(NULL, "Expect: 100-continue");
	char url[128];

	snprintf(url, sizeof(url), "%s/", w->f->base);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 30000L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)w->bt->len);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, w->bt->body);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, waiting_post_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, w);
	w->status = -1;
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &w->status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return NULL;
}

/*
 * SIGTERM while a request waits for ring space (the ring full at SHUTDOWN with
 * Kinesis down): the listener must still stop at once. The controller SIGKILLs it
 * 200 ms after SIGTERM at most; that batch cannot be made safe in time anyway.
 */
START_TEST(test_sigterm_while_waiting_for_ring_space)
{
	struct listener_fixture f;
	struct waiting_post w = { 0 };
	struct batch bt;
	pthread_t t;
	uint64_t t0;
	int status;

	lfix_init(&f);
	f.ring_wait_ms = 10000;
	ck_assert_int_eq(lfix_start(&f, 16384), 0);
	batch_build(&bt, 1, 1, 20);
	{
		struct iovec v[20];

		for (size_t j = 0; j < bt.n; j++)
			v[j] = (struct iovec){ bt.ev[j], bt.evlen[j] };
		while (ring_writev(&f.ring, v, bt.n) == 0)
			;
	}
	w.f = &f;
	w.bt = &bt;
	ck_assert_int_eq(pthread_create(&t, NULL, waiting_post_run, &w), 0);
	for (int i = 0; i < 500 && !atomic_load(&w.uploading); i++)
		poll(NULL, 0, 10);
	ck_assert_msg(atomic_load(&w.uploading), "the request never reached the handler");
	t0 = now_mono_ms();
	status = lfix_stop(&f, SIGTERM);
	ck_assert_msg(now_mono_ms() - t0 < 1000, "the listener took %" PRIu64 " ms to stop",
	    now_mono_ms() - t0);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	pthread_join(t, NULL);
	ck_assert_int_ne(w.status, 200);
	batch_free(&bt);
	lfix_free(&f);
}
END_TEST

START_TEST(test_exits_with_parent)
{
	struct listener_fixture f;
	int pfd[2], status;
	pid_t mid, child = -1;
	uint64_t deadline;

	lfix_init(&f);
	ck_assert_int_eq(ring_create(&f.ring, 65536), 0);
	f.ctl = control_new(&f.fds);
	ck_assert_ptr_nonnull(f.ctl);
	f.cfg.listener_port = (uint16_t)lfix_free_port();
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);  /* the orphan comes to us */
	ck_assert_int_eq(pipe(pfd), 0);
	mid = fork();
	ck_assert_int_ge(mid, 0);
	if (mid == 0) {
		struct listener_args a = { &f.cfg, &f.ring, f.ctl, &f.fds };
		pid_t c = fork();

		if (c == 0)
			_exit(listener_main(&a));
		(void)!write(pfd[1], &c, sizeof(c));
		for (;;)
			pause();
	}
	ck_assert_int_eq(read(pfd[0], &child, sizeof(child)), sizeof(child));
	deadline = now_mono_ms() + 10000;
	while (!atomic_load(&f.ctl->listener_ready) && now_mono_ms() < deadline)
		(void)notify_wait(f.fds.to_controller, 50);
	ck_assert(atomic_load(&f.ctl->listener_ready));
	kill(mid, SIGKILL);
	ck_assert_int_eq(waitpid(mid, &status, 0), mid);
	deadline = now_mono_ms() + 10000;
	while (waitpid(child, &status, WNOHANG) == 0 && now_mono_ms() < deadline)
		(void)notify_wait(f.fds.to_controller, 20);
	ck_assert_msg(now_mono_ms() < deadline, "listener did not exit with its parent");
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener_ready), 0);
	lfix_free(&f);
}
END_TEST

/*
 * Clients that hold connections without progress. Each kind is opened
 * LISTENER_THREADS + 4 times, more than the listener has workers: a normal POST must
 * still be answered, and the listener must end every one of those connections (its
 * deadlines, its keep-alive limit, or the shedding of waiting connections when
 * workers run short). Both are asserted on completion, with generous bounds.
 */
enum slow_kind { SLOW_DRIP, SLOW_IDLE, SLOW_HALF, SLOW_SILENT };
#define SLOW_CONNS (LISTENER_THREADS + 4)

struct dripper {
	int *fds;
	int n;
	atomic_int stop;
};

/* Sends one body byte to each dripping connection every 200 ms (the gap stays below civetweb's read timeout). */
static void *
drip_run(void *p)
{
	struct dripper *d = p;

	while (!atomic_load(&d->stop)) {
		for (int i = 0; i < d->n; i++)
			(void)send(d->fds[i], " ", 1, MSG_NOSIGNAL);
		poll(NULL, 0, 200);
	}
	return NULL;
}

static int
slow_connect(const struct listener_fixture *f)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(f->cfg.listener_port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/*
 * Waits (at most timeout_ms, a failure bound) until the server ends the connection:
 * end of file or a reset. What arrives meanwhile is read and, if status is not NULL,
 * the first response's status kept. Returns true when the server closed it.
 */
static bool
closed_by_server(int fd, int timeout_ms, int *status)
{
	uint64_t until = now_mono_ms() + (uint64_t)timeout_ms;
	char buf[4096];
	bool first = true;

	while (now_mono_ms() < until) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			return true;
		if (first && status != NULL) {
			buf[n] = '\0';
			if (sscanf(buf, "HTTP/1.1 %d", status) != 1)
				*status = -1;
		}
		first = false;
	}
	return false;
}

static void
slow_clients_then_normal_post(enum slow_kind kind)
{
	static const char drip[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	    "Content-Length: 100000\r\n\r\n[";
	static const char idle[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	    "Content-Length: 2\r\n\r\n[]";
	static const char half[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Le";
	struct listener_fixture f;
	struct dripper d = { 0 };
	int fds[SLOW_CONNS], statuses[SLOW_CONNS];
	CURL *h = curl_easy_init();
	struct batch bt;
	pthread_t t;

	lfix_init(&f);
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	for (int i = 0; i < SLOW_CONNS; i++) {
		const char *req = kind == SLOW_DRIP ? drip : kind == SLOW_IDLE ? idle :
		    kind == SLOW_HALF ? half : NULL;

		fds[i] = slow_connect(&f);
		statuses[i] = 0;
		if (req != NULL)
			ck_assert_int_eq(send(fds[i], req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	}
	if (kind == SLOW_DRIP) {
		d.fds = fds;
		d.n = SLOW_CONNS;
		ck_assert_int_eq(pthread_create(&t, NULL, drip_run, &d), 0);
	}
	/* More held connections than workers, and still a normal POST is answered. */
	batch_build(&bt, 3, 3, 5);
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0), 200);
	ring_expect_batch(&f.ring, &bt);
	/* The listener ends every held connection; the dripping ones with a 408. */
	for (int i = 0; i < SLOW_CONNS; i++)
		ck_assert_msg(closed_by_server(fds[i], 30000, &statuses[i]),
		    "held connection %d of kind %d still open", i, (int)kind);
	if (kind == SLOW_DRIP) {
		atomic_store(&d.stop, 1);
		pthread_join(t, NULL);
		for (int i = 0; i < SLOW_CONNS; i++)
			ck_assert_int_eq(statuses[i], 408);
	}
	if (kind == SLOW_IDLE)
		/* Each was answered before it was closed (some only once workers were freed). */
		for (int i = 0; i < SLOW_CONNS; i++)
			ck_assert_int_eq(statuses[i], 200);
	for (int i = 0; i < SLOW_CONNS; i++)
		close(fds[i]);
	/* Still serving, on a fresh connection and on the kept-alive one. */
	ck_assert_int_eq(lfix_request(h, &f, "POST", "/", bt.body, bt.len, 0), 200);
	ring_expect_batch(&f.ring, &bt);
	ring_expect_empty(&f.ring);
	batch_free(&bt);
	curl_easy_cleanup(h);
	ck_assert_int_eq(lfix_stop(&f, SIGTERM), 0);
	lfix_free(&f);
}

START_TEST(test_dripping_bodies)
{
	slow_clients_then_normal_post(SLOW_DRIP);
}
END_TEST

START_TEST(test_idle_keepalive_connections)
{
	slow_clients_then_normal_post(SLOW_IDLE);
}
END_TEST

START_TEST(test_half_requests)
{
	slow_clients_then_normal_post(SLOW_HALF);
}
END_TEST

START_TEST(test_silent_connections)
{
	slow_clients_then_normal_post(SLOW_SILENT);
}
END_TEST

/* Sends len bytes of body as fast as the socket takes them; returns how many went out before an error. */
static size_t
big_send(int fd, size_t len)
{
	static char chunk[65536];
	size_t sent = 0;

	memset(chunk, 'a', sizeof(chunk));
	while (sent < len) {
		ssize_t n = send(fd, chunk, len - sent < sizeof(chunk) ? len - sent : sizeof(chunk), MSG_NOSIGNAL);

		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	return sent;
}

/*
 * A 20 MB body refused with 413 while the client is still sending it: the client must
 * be able to finish sending and then read the 413, every time. Closing with unread data
 * would make the kernel reset the connection; the listener drains the body first. With
 * a length, and chunked.
 */
START_TEST(test_413_reaches_a_client_still_sending)
{
	struct listener_fixture f;

	lfix_init(&f);
	ck_assert_int_eq(lfix_start(&f, RING_BYTES), 0);
	for (int i = 0; i < 10; i++) {
		char req[256];
		size_t len = 20u * 1000 * 1000;
		int fd = slow_connect(&f), status = 0;

		if (i % 2 == 0)
			snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", len);
		else
			/* One chunk announced as 20 MB: the listener stops reading past its limit. */
			snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			    "%zx\r\n", len);
		ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
		/*
		 * Like curl: the whole body goes out first, the reply is read after. A server
		 * that closes with unread data resets the connection; curl's send then fails
		 * and it gives up without reading the 413 already there.
		 */
		ck_assert_msg(big_send(fd, len) == len, "attempt %d: connection reset while sending", i);
		if (i % 2 == 1)
			(void)send(fd, "\r\n0\r\n\r\n", 7, MSG_NOSIGNAL);
		ck_assert(closed_by_server(fd, 30000, &status));
		ck_assert_msg(status == 413, "attempt %d: status %d, want 413", i, status);
		close(fd);
	}
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.too_large), 10);
	lfix_free(&f);
}
END_TEST

static Suite *
listener_suite(void)
{
	Suite *s = suite_create("listener");
	TCase *tc = tcase_create("http");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_valid_batches_keepalive);
	tcase_add_test(tc, test_concurrent_clients);
	tcase_add_test(tc, test_bad_inputs_each_status);
	tcase_add_test(tc, test_ring_full_503_nothing_partial);
	tcase_add_test(tc, test_ring_full_wait_then_accept);
	tcase_add_test(tc, test_ring_full_held_until_space);
	tcase_add_test(tc, test_ring_full_drop_policy_503);
	tcase_add_test(tc, test_batch_larger_than_ring);
	tcase_add_test(tc, test_runtime_done_and_counts);
	tcase_add_test(tc, test_filters);
	tcase_add_test(tc, test_restart_same_port);
	tcase_add_test(tc, test_sigterm_with_idle_keepalive);
	tcase_add_test(tc, test_sigterm_while_waiting_for_ring_space);
	tcase_add_test(tc, test_exits_with_parent);
	tcase_add_test(tc, test_413_reaches_a_client_still_sending);
	suite_add_tcase(s, tc);
	tc = tcase_create("slow_clients");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_dripping_bodies);
	tcase_add_test(tc, test_idle_keepalive_connections);
	tcase_add_test(tc, test_half_requests);
	tcase_add_test(tc, test_silent_connections);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	sr = srunner_create(listener_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
