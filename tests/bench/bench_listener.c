/*
 * Listener throughput and reply latency: listener_main in a child process on a free
 * port, 1 and 4 keep-alive HTTP clients (libcurl threads) POSTing Telemetry batches of
 * 1,000 events (256 KiB, the Telemetry API's default maxBytes), a reader thread
 * draining the ring as the dispatcher would. Prints events/s and MB/s accepted into
 * the ring and p50/p99/max reply latency. Aims: > 300,000 events/s, p99 < 2 ms.
 *
 * BENCH_SECONDS (default 3) sets the run time of each configuration.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listener/batch_split.h"
#include "listener/intake.h"
#include "listener_fixture.h"
#include "notify.h"

#define EVENTS 1000
#define BATCH_BYTES 262144

struct drain {
	struct ring *ring;
	volatile int stop;
	uint64_t records;
};

struct client {
	const struct listener_fixture *f;
	const char *body;
	size_t len;
	uint64_t until_us;
	uint64_t *lat;          /* microseconds per request */
	size_t nlat, cap;
	size_t failures;
};

/* A batch of EVENTS realistic events padded so the body is BATCH_BYTES long. */
static char *
make_batch(size_t *len)
{
	size_t per = (BATCH_BYTES - 2) / EVENTS - 1, n = 0;
	char *b = malloc(BATCH_BYTES + 1), ev[1024];

	b[n++] = '[';
	for (int i = 0; i < EVENTS; i++) {
		int m;

		switch (i % 5) {
		case 0:
			m = snprintf(ev, sizeof(ev), "{\"time\":\"2026-11-28T05:00:00.%03dZ\",\"type\":\"function\","
			    "\"record\":\"2026-11-28T05:00:00.000Z\\t79b4f56e-95b1-4643-9700-2807f4e68189\\tINFO\\t"
			    "request %d handled ", i % 1000, i);
			break;
		case 1:
			m = snprintf(ev, sizeof(ev), "{\"time\":\"2026-11-28T05:00:00.%03dZ\",\"type\":\"function\","
			    "\"record\":{\"timestamp\":\"2026-11-28T05:00:00.000Z\",\"level\":\"INFO\","
			    "\"requestId\":\"79b4f56e-95b1-4643-9700-2807f4e68189\",\"message\":\"item %d ", i % 1000, i);
			break;
		case 2:
			m = snprintf(ev, sizeof(ev), "{\"time\":\"2026-11-28T05:00:00.%03dZ\",\"type\":\"platform.start\","
			    "\"record\":{\"requestId\":\"79b4f56e-95b1-4643-9700-2807f4e68189\",\"version\":\"$LATEST\","
			    "\"tracing\":{\"type\":\"X-Amzn-Trace-Id\",\"value\":\"Root=1-%08x-", i % 1000, i);
			break;
		case 3:
			m = snprintf(ev, sizeof(ev), "{\"time\":\"2026-11-28T05:00:00.%03dZ\",\"type\":\"extension\","
			    "\"record\":\"[ext] unicode caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 %d ", i % 1000, i);
			break;
		default:
			m = snprintf(ev, sizeof(ev), "{\"time\":\"2026-11-28T05:00:00.%03dZ\",\"type\":\"function\","
			    "\"record\":\"{\\\"nested\\\": [1, 2, {\\\"k\\\": \\\"v\\\"}], \\\"n\\\": %d} ", i % 1000, i);
			break;
		}
		/* Pad the open string, then close it and the objects. */
		const char *close = (i % 5 == 1 || i % 5 == 2) ? (i % 5 == 2 ? "\"}}}" : "\"}}") : "\"}";
		size_t cl = strlen(close);

		while ((size_t)m + cl < per)
			ev[m++] = 'x';
		memcpy(ev + m, close, cl);
		m += (int)cl;
		if (i > 0)
			b[n++] = ',';
		memcpy(b + n, ev, (size_t)m);
		n += (size_t)m;
	}
	b[n++] = ']';
	b[n] = '\0';
	*len = n;
	return b;
}

static void *
drain_run(void *p)
{
	struct drain *d = p;
	struct ring_record rec;

	while (!d->stop) {
		uint64_t last = 0;
		int got = 0;

		while (got < 4096 && ring_peek(d->ring, &rec) == 0) {
			last = rec.next;
			got++;
		}
		if (got > 0) {
			if (ring_release(d->ring, last) != 0)
				abort();
			d->records += (uint64_t)got;
			continue;
		}
		if (!ring_reader_arm(d->ring))
			(void)ring_reader_wait(d->ring, 20);
	}
	return NULL;
}

static size_t
discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

static void *
client_run(void *p)
{
	struct client *c = p;
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	char url[128];

	snprintf(url, sizeof(url), "%s/", c->f->base);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->len);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
	while (now_mono_us() < c->until_us) {
		uint64_t t0 = now_mono_us();
		long status = 0;

		if (curl_easy_perform(h) != CURLE_OK ||
		    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
			c->failures++;
			continue;
		}
		if (c->nlat == c->cap) {
			c->cap = c->cap ? c->cap * 2 : 4096;
			c->lat = realloc(c->lat, c->cap * sizeof(*c->lat));
		}
		c->lat[c->nlat++] = now_mono_us() - t0;
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return NULL;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
run(struct listener_fixture *f, const char *body, size_t len, int nclients, double seconds)
{
	struct client c[8];
	pthread_t t[8];
	uint64_t *all, events0 = atomic_load(&f->ctl->listener.events);
	uint64_t bytes0 = atomic_load(&f->ctl->listener.bytes), t0, t1;
	size_t n = 0, fails = 0;
	double el;

	t0 = now_mono_us();
	for (int i = 0; i < nclients; i++) {
		c[i] = (struct client){ .f = f, .body = body, .len = len,
			.until_us = t0 + (uint64_t)(seconds * 1e6) };
		if (pthread_create(&t[i], NULL, client_run, &c[i]) != 0)
			return -1;
	}
	for (int i = 0; i < nclients; i++) {
		pthread_join(t[i], NULL);
		n += c[i].nlat;
		fails += c[i].failures;
	}
	t1 = now_mono_us();
	all = malloc((n ? n : 1) * sizeof(*all));
	n = 0;
	for (int i = 0; i < nclients; i++) {
		memcpy(all + n, c[i].lat, c[i].nlat * sizeof(*all));
		n += c[i].nlat;
		free(c[i].lat);
	}
	qsort(all, n, sizeof(*all), cmp_u64);
	el = (double)(t1 - t0) / 1e6;
	printf("listener: %d client(s), batches of %d events (%zu bytes): %zu requests, %zu failed, "
	    "%.0f events/s, %.1f MB/s into the ring, reply latency p50 %.2f ms p99 %.2f ms max %.2f ms\n",
	    nclients, EVENTS, len, n, fails,
	    (double)(atomic_load(&f->ctl->listener.events) - events0) / el,
	    (double)(atomic_load(&f->ctl->listener.bytes) - bytes0) / el / 1e6,
	    n ? (double)all[n / 2] / 1e3 : 0.0, n ? (double)all[n * 99 / 100] / 1e3 : 0.0,
	    n ? (double)all[n - 1] / 1e3 : 0.0);
	free(all);
	return fails == 0 && n > 0 ? 0 : -1;
}

/* The splitter alone, in-process: the parse cost per batch. */
static void
split_only(const char *body, size_t len)
{
	uint64_t t0 = now_mono_us(), n = 0;
	size_t count = 0;

	while (now_mono_us() - t0 < 500000) {
		if (batch_split((const uint8_t *)body, len, NULL, NULL, &count, NULL) != 0 || count != EVENTS)
			abort();
		n++;
	}
	printf("listener: batch_split alone: %.1f MB/s, %.0f events/s, %.1f us per 256 KiB batch\n",
	    (double)(n * len) / ((double)(now_mono_us() - t0)), (double)(n * EVENTS) * 1e6 /
	    (double)(now_mono_us() - t0), (double)(now_mono_us() - t0) / (double)n);
}

/* intake_batch alone (split + ring write, no HTTP), with the reader draining: the listener's own cost. */
static void
intake_only(struct listener_fixture *f, const char *body, size_t len)
{
	struct intake in;
	struct intake_scratch w = { 0 };
	struct intake_result res;
	uint64_t lat[2000], t0 = now_mono_us();
	size_t n = 0;

	if (intake_init(&in, &f->cfg, &f->ring, f->ctl, -1, 0) != 0)
		abort();
	while (n < sizeof(lat) / sizeof(lat[0]) && now_mono_us() - t0 < 1000000) {
		uint64_t a = now_mono_us();

		if (intake_batch(&in, &w, (const uint8_t *)body, len, &res) != 200)
			abort();
		lat[n++] = now_mono_us() - a;
	}
	qsort(lat, n, sizeof(lat[0]), cmp_u64);
	printf("listener: intake_batch alone (split + ring write, no HTTP): %zu batches, p50 %.0f us, "
	    "p99 %.0f us\n", n, (double)lat[n / 2], (double)lat[n * 99 / 100]);
	intake_scratch_cleanup(&w);
}

int
main(void)
{
	struct listener_fixture f;
	struct drain d;
	pthread_t dt;
	const char *s = getenv("BENCH_SECONDS");
	double seconds = s != NULL ? atof(s) : 3.0;
	size_t len;
	char *body = make_batch(&len);
	int rc = 0;

	split_only(body, len);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	lfix_init(&f);
	if (lfix_start(&f, f.cfg.ring_bytes) != 0) {
		fprintf(stderr, "bench_listener: cannot start the listener\n");
		return 1;
	}
	memset(&d, 0, sizeof(d));
	d.ring = &f.ring;
	pthread_create(&dt, NULL, drain_run, &d);
	intake_only(&f, body, len);
	/* Warm up: connections, worker buffers. */
	if (run(&f, body, len, 4, 0.3) != 0)
		rc = 1;
	printf("(warm-up above)\n");
	if (run(&f, body, len, 1, seconds) != 0 || run(&f, body, len, 4, seconds) != 0)
		rc = 1;
	d.stop = 1;
	pthread_join(dt, NULL);
	printf("listener: ring records drained %lu, ring_full %lu\n", (unsigned long)d.records,
	    (unsigned long)atomic_load(&f.ctl->listener.ring_full));
	lfix_free(&f);
	free(body);
	curl_global_cleanup();
	return rc;
}
