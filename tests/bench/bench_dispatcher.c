/*
 * Dispatcher throughput, end to end: a ring pre-filled with 300-byte telemetry events,
 * dispatcher_main in its own process encoding, signing (SigV4) and sending PutRecords
 * over loopback HTTP to a local sink process that answers every request with success
 * (tests/support/kinesis_sink: a 500-entry reply for 500 records, as Kinesis does).
 * Kinesis-mock is not used: it is far slower than the dispatcher.
 *
 * For each record format, prints events/s (from the dispatcher's start until the flush
 * that covers every event was answered), requests/s, the average fill of a request
 * (records and bytes), bytes on the wire per event, events per Kinesis record (the
 * cost saving against `event`), and the dispatcher's own CPU time (events per CPU-second
 * says what one core sustains when the machine is shared). Then the latency of a flush
 * of 10 and of 1,000 events from idle. Then, for `event`, the throughput against a sink
 * that answers 10% of requests with HTTP 500 and fails 20% of the records of the others
 * with ProvisionedThroughputExceededException, as a ratio of the fault-free figure (the
 * same sink with faults off, same event count): over loopback, where a round trip takes
 * about a millisecond and any backoff weighs as much as dozens of requests, and with the
 * 50 ms round trips of tests/e2e/test_e2e_throttle.sh, closer to a real stream. Last,
 * bytes on the wire with KTE_COMPRESSION=gzip against none, for realistic function logs
 * (Lambda text lines and structured JSON lines with timestamps, request ids and varied
 * words), event and ndjson.
 * Asserts nothing.
 * Events carry the metadata the listener stores with them (type, requestId span), so
 * partition keys come without parsing the JSON again, as in the extension.
 *   KTE_BENCH_EVENTS (default 300000) sets the number of events.
 *   KTE_BENCH_NO_META=1 writes them without metadata (the dispatcher then scans each).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dispatcher/dispatcher.h"
#include "event_type.h"
#include "kinesis_sink.h"
#include "notify.h"

#define EVENT_BYTES 300

struct run {
	const char *name;
	const char *vars[4];
};

static const char *const *bench_vars;

/* A sink's shape: a round-trip latency, with or without faults. */
struct sink_shape {
	unsigned latency_ms;
	bool faults;
};

/* The faulty sink: 10% of requests HTTP 500, 20% of the records of the rest throttled. */
static _Atomic uint64_t fault_rng = 0x9e3779b97f4a7c15ull;

static uint32_t
fault_rand(void)
{
	uint64_t x = atomic_fetch_add(&fault_rng, 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return (uint32_t)((x ^ (x >> 31)) % 1000);
}

static void
shaped_handler(void *ctx, const struct sink_request *req, struct sink_reply *rep)
{
	const struct sink_shape *shape = ctx;
	uint8_t failed[512] = { 0 };
	unsigned n = req->nrecords < 512 ? req->nrecords : 512;

	rep->delay_ms = shape->latency_ms;
	if (!shape->faults)
		return;                 /* the default: every record accepted */
	if (fault_rand() < 100) {
		rep->status = 500;
		rep->error_type = "InternalFailure";
		rep->body = "{\"__type\":\"InternalFailure\"}";
		return;
	}
	for (unsigned i = 0; i < n; i++)
		failed[i] = fault_rand() < 200;
	rep->body_alloc = sink_putrecords_reply(n, failed, "ProvisionedThroughputExceededException");
}

static const char *
bench_get(const char *name, void *ctx)
{
	size_t n = strlen(name);

	(void)ctx;
	for (int i = 0; bench_vars[i] != NULL; i++)
		if (strncmp(bench_vars[i], name, n) == 0 && bench_vars[i][n] == '=')
			return bench_vars[i] + n + 1;
	return getenv(name);
}

/* A function log line of exactly EVENT_BYTES; an invocation every 100 events. */
static int
fill_event(char *ev, unsigned i)
{
	int n = snprintf(ev, EVENT_BYTES, "{\"time\":\"2026-11-28T05:38:13.%03uZ\",\"type\":\"function\","
	    "\"record\":{\"timestamp\":\"2026-11-28T05:38:13.%03uZ\",\"level\":\"INFO\",\"requestId\":"
	    "\"4e4c6f2a-0000-4000-8000-%012u\",\"message\":\"", i % 1000, i % 1000, i / 100);

	memset(ev + n, 'a' + i % 26, EVENT_BYTES - (size_t)n - 3);
	memcpy(ev + EVENT_BYTES - 3, "\"}}", 3);
	return EVENT_BYTES;
}

/* A realistic function log event of about EVENT_BYTES (text or JSON logging), as Lambda delivers it. */
static int
fill_log(char *ev, unsigned i, bool json)
{
	static const char *const words[] = { "user", "order", "cache", "miss", "hit", "db", "query", "took",
	    "ms", "retry", "payment", "accepted", "item", "sku", "warehouse", "region", "status", "200", "GET",
	    "/api/v1/orders", "latency", "bytes", "session", "token", "refreshed", "queue", "depth", "worker" };
	uint32_t x = i * 2654435761u + 17;
	char msg[EVENT_BYTES];
	int n = 0, m;

	while (n < EVENT_BYTES - 200) {
		x = x * 1103515245u + 12345u;
		n += snprintf(msg + n, sizeof(msg) - (size_t)n, "%s%s=%u", n ? " " : "",
		    words[(x >> 16) % (sizeof(words) / sizeof(words[0]))], (x >> 6) % 10000);
	}
	if (json)
		m = snprintf(ev, EVENT_BYTES, "{\"time\":\"2026-11-28T05:38:13.%03uZ\",\"type\":\"function\",\"record\":"
		    "{\"timestamp\":\"2026-11-28T05:38:13.%03uZ\",\"level\":\"INFO\",\"requestId\":"
		    "\"4e4c6f2a-%04x-4000-8000-%012u\",\"message\":\"%.*s\"}}", i % 1000, i % 1000, i / 100 & 0xffff, i / 100,
		    80, msg);
	else
		m = snprintf(ev, EVENT_BYTES, "{\"time\":\"2026-11-28T05:38:13.%03uZ\",\"type\":\"function\",\"record\":"
		    "\"2026-11-28T05:38:13.%03uZ\\t4e4c6f2a-%04x-4000-8000-%012u\\tINFO\\t%.*s\\n\"}", i % 1000, i % 1000,
		    i / 100 & 0xffff, i / 100, 90, msg);
	return m < EVENT_BYTES ? m : EVENT_BYTES - 1;
}

/* 0: fill_event; 1: JSON logs; 2: text logs. */
static int filler;

/* Writes one event as the listener would: with its metadata (unless KTE_BENCH_NO_META=1). */
static int
put_event(struct ring *r, const char *ev, size_t len)
{
	static const char key[] = "\"requestId\":\"";
	struct iovec v = { (void *)(uintptr_t)ev, len };
	struct ring_meta m = { 0, 0, EVENT_TYPE_FUNCTION, 0 };
	const char *rid, *end;

	if (getenv("KTE_BENCH_NO_META") != NULL)
		return ring_write(r, ev, len);
	if ((rid = memmem(ev, len, key, sizeof(key) - 1)) != NULL) {
		rid += sizeof(key) - 1;
		end = memchr(rid, '"', len - (size_t)(rid - ev));
		m.rid_off = (uint32_t)(rid - ev);
		m.rid_len = end != NULL ? (uint16_t)(end - rid) : 0;
	}
	return ring_writev_meta_wait(r, &v, &m, 1, 0, NULL);
}

/* Pss of pid in KiB, leaving out the shared ring (a memfd mapping). */
static long
pss_kib(pid_t pid)
{
	char path[64], line[512];
	long total = 0, v;
	bool ring = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strchr(line, '-') != NULL && strchr(line, ':') != NULL && line[0] != ' ' &&
		    strncmp(line, "Pss", 3) != 0 && sscanf(line, "%*x-%*x %*s %*x %*s %*d") == 0)
			ring = strstr(line, "memfd:") != NULL;
		if (sscanf(line, "Pss: %ld kB", &v) == 1 && !ring)
			total += v;
	}
	fclose(f);
	return total;
}

struct result {
	double secs, cpu, requests, records, wire;
	long pss;
};

static void
print_result(const struct run *r, unsigned nevents, const struct result *o, double *event_records)
{
	if (*event_records == 0)
		*event_records = o->records;
	printf("%-22s %8.0f events/s %5.0f req/s %6.1f rec/req %6.0f KiB/req %6.1f B/event "
	    "%7.1f events/record (%5.0fx fewer records than event) | dispatcher cpu %.2fs = %.0f events/cpu-s, "
	    "idle Pss %ld KiB without the ring\n",
	    r->name, nevents / o->secs, o->requests / o->secs, o->records / o->requests,
	    o->wire / o->requests / 1024, o->wire / nevents, nevents / o->records, *event_records / o->records,
	    o->cpu, nevents / o->cpu, o->pss);
	fflush(stdout);
}

static int
run_one(const struct run *r, unsigned nevents, uint16_t port, struct result *out)
{
	char endpoint[64], err[256], ev[EVENT_BYTES];
	const char *vars[12];
	struct kte_config cfg;
	struct ring ring;
	struct control *ctl;
	struct control_fds fds;
	struct rusage ru;
	uint64_t t0, t1, req;
	pid_t pid;
	int n = 0, st;
	long pss;

	snprintf(endpoint, sizeof(endpoint), "KTE_KINESIS_ENDPOINT=http://127.0.0.1:%u/", port);
	vars[n++] = endpoint;
	vars[n++] = "KTE_STREAM_NAME=bench";
	vars[n++] = "AWS_REGION=us-east-1";
	vars[n++] = getenv("KTE_BENCH_DEBUG") ? "KTE_LOG_LEVEL=debug" : "KTE_LOG_LEVEL=warn";
	for (int i = 0; r->vars[i] != NULL; i++)
		vars[n++] = r->vars[i];
	vars[n] = NULL;
	bench_vars = vars;
	if (config_load_from(&cfg, bench_get, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "config: %s\n", err);
		return -1;
	}
	if (ring_create(&ring, (uint64_t)nevents * ring_record_size(EVENT_BYTES) + (1u << 20)) < 0 ||
	    (ctl = control_new(&fds)) == NULL) {
		perror("ring/control");
		return -1;
	}
	for (unsigned i = 0; i < nevents; i++) {
		int len = filler == 0 ? fill_event(ev, i) : fill_log(ev, i, filler == 1);

		if (put_event(&ring, ev, (size_t)len) < 0) {
			fprintf(stderr, "ring full at %u\n", i);
			return -1;
		}
	}
	t0 = now_mono_us();
	pid = fork();
	if (pid == 0) {
		struct dispatcher_args a = { &cfg, &ring, ctl, &fds };

		_exit(dispatcher_main(&a));
	}
	req = atomic_fetch_add(&ctl->flush_requested, 1) + 1;
	notify_signal(fds.to_dispatcher);
	while (atomic_load(&ctl->flush_completed) < req)
		notify_wait(fds.to_controller, 100);
	/*
	 * A flush is answered early once the circuit opened (3 requests in a row without
	 * progress: it happens under faults); the dispatcher goes on sending, so wait for it.
	 */
	for (int i = 0; i < 12000 && atomic_load(&ctl->dispatcher.events_sent) < nevents; i++)
		notify_wait(fds.to_controller, 5);
	t1 = now_mono_us();
	/* Memory once idle again (buffers of the burst given back). */
	for (int i = 0; i < 200 && !atomic_load(&ctl->dispatcher_idle); i++)
		notify_wait(fds.to_controller, 5);
	pss = pss_kib(pid);
	kill(pid, SIGTERM);
	wait4(pid, &st, 0, &ru);
	out->secs = (double)(t1 - t0) / 1e6;
	out->requests = (double)atomic_load(&ctl->dispatcher.requests);
	out->records = (double)atomic_load(&ctl->dispatcher.records_sent);
	out->wire = (double)atomic_load(&ctl->dispatcher.wire_bytes);
	out->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	    (double)ru.ru_stime.tv_usec / 1e6;
	out->pss = pss;
	if (atomic_load(&ctl->dispatcher.events_sent) != nevents)
		fprintf(stderr, "%s: only %llu of %u events acknowledged\n", r->name,
		    (unsigned long long)atomic_load(&ctl->dispatcher.events_sent), nevents);
	control_free(ctl, &fds);
	ring_close(&ring);
	return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Flush latency, what the `end` policy waits per invocation: with the dispatcher idle,
 * write a few events, request a flush, wait for its answer (one signed round trip to
 * the local sink on a kept-alive connection).
 */
static void
flush_latency(uint16_t port, unsigned nevents)
{
	char endpoint[64], err[256], ev[EVENT_BYTES];
	const char *vars[] = { endpoint, "KTE_STREAM_NAME=bench", "AWS_REGION=us-east-1", "KTE_LOG_LEVEL=warn",
	    NULL };
	struct kte_config cfg;
	struct ring ring;
	struct control *ctl;
	struct control_fds fds;
	uint64_t lat[200];
	pid_t pid;
	int n = 200;

	snprintf(endpoint, sizeof(endpoint), "KTE_KINESIS_ENDPOINT=http://127.0.0.1:%u/", port);
	bench_vars = vars;
	if (config_load_from(&cfg, bench_get, NULL, err, sizeof(err)) < 0 || ring_create(&ring, 8u << 20) < 0 ||
	    (ctl = control_new(&fds)) == NULL)
		return;
	if ((pid = fork()) == 0) {
		struct dispatcher_args a = { &cfg, &ring, ctl, &fds };

		_exit(dispatcher_main(&a));
	}
	for (int i = 0; i < n + 10; i++) {
		uint64_t t0, req;

		/* Let it go idle first, as between invocations. */
		for (int k = 0; k < 100 && !atomic_load(&ctl->dispatcher_idle); k++)
			notify_wait(fds.to_controller, 1);
		t0 = now_mono_us();
		for (unsigned e = 0; e < nevents; e++) {
			fill_event(ev, (unsigned)i * nevents + e);
			if (put_event(&ring, ev, EVENT_BYTES) < 0)
				break;
		}
		req = atomic_fetch_add(&ctl->flush_requested, 1) + 1;
		notify_signal(fds.to_dispatcher);
		while (atomic_load(&ctl->flush_completed) < req)
			notify_wait(fds.to_controller, 100);
		if (i >= 10)            /* the first ones include connecting */
			lat[i - 10] = now_mono_us() - t0;
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	qsort(lat, (size_t)n, sizeof(lat[0]), cmp_u64);
	printf("flush of %u events (event format, dispatcher idle before): p50 %llu us, p90 %llu us, p99 %llu us\n",
	    nevents, (unsigned long long)lat[n / 2], (unsigned long long)lat[n * 9 / 10],
	    (unsigned long long)lat[n * 99 / 100]);
	control_free(ctl, &fds);
	ring_close(&ring);
}

/* A sink process of the given shape; returns its pid (port in *port) or -1. */
static pid_t
shaped_sink(struct sink_shape *shape, uint16_t *port)
{
	pid_t pid;
	int fd;

	if ((fd = sink_listen(port)) < 0)
		return -1;
	if ((pid = fork()) == 0)
		sink_serve(fd, shaped_handler, shape);
	close(fd);
	return pid;
}

/*
 * Throughput with faults as a ratio of the fault-free one, `event` format, both sinks
 * answering after latency_ms.
 */
static void
faults(unsigned latency_ms, unsigned nevents, unsigned repeat)
{
	static const struct run r = { "event, faults", { "KTE_RECORD_FORMAT=event", NULL } };
	struct sink_shape clean_shape = { latency_ms, false }, bad_shape = { latency_ms, true };
	struct result clean = { 0 }, bad = { 0 }, o;
	uint16_t clean_port, bad_port;
	pid_t clean_sink, bad_sink;

	if ((clean_sink = shaped_sink(&clean_shape, &clean_port)) < 0)
		return;
	if ((bad_sink = shaped_sink(&bad_shape, &bad_port)) < 0)
		goto out;
	for (unsigned k = 0; k < (repeat ? repeat : 1); k++) {
		if (run_one(&r, nevents, clean_port, &o) == 0 && (clean.secs == 0 || o.secs < clean.secs))
			clean = o;
		if (run_one(&r, nevents, bad_port, &o) == 0 && (bad.secs == 0 || o.secs < bad.secs))
			bad = o;
	}
	kill(bad_sink, SIGTERM);
	waitpid(bad_sink, NULL, 0);
	if (clean.secs != 0 && bad.secs != 0)
		printf("event, 10%% HTTP 500 + 20%% records throttled, +%u ms a round trip: %.0f events/s against "
		    "%.0f fault-free (%u events, best of %u): ratio %.2f; %.0f requests for %.0f fault-free\n",
		    latency_ms, nevents / bad.secs, nevents / clean.secs, nevents, repeat ? repeat : 1,
		    clean.secs / bad.secs, bad.requests, clean.requests);
out:
	kill(clean_sink, SIGTERM);
	waitpid(clean_sink, NULL, 0);
}

/* Bytes on the wire and the dispatcher's CPU with gzip against none. */
static void
compression(uint16_t port, unsigned nevents)
{
	static const struct run runs[] = {
		{ "event", { "KTE_RECORD_FORMAT=event", "KTE_COMPRESSION=none", NULL } },
		{ "event+gzip", { "KTE_RECORD_FORMAT=event", "KTE_COMPRESSION=gzip", NULL } },
		{ "ndjson", { "KTE_RECORD_FORMAT=ndjson", "KTE_COMPRESSION=none", NULL } },
		{ "ndjson+gzip", { "KTE_RECORD_FORMAT=ndjson", "KTE_COMPRESSION=gzip", NULL } },
	};
	struct result o[4];

	for (filler = 1; filler <= 2; filler++) {
		for (int i = 0; i < 4; i++)
			if (run_one(&runs[i], nevents, port, &o[i]) < 0)
				return;
		for (int i = 0; i < 4; i += 2)
			printf("%s logs, %-6s: %.1f wire bytes/event, gzip %.1f (%.1f%% of none, %.2fx smaller); "
			    "%.0f vs %.0f events/s, dispatcher cpu %.2fs vs %.2fs\n", filler == 1 ? "JSON" : "text",
			    runs[i].name, o[i].wire / nevents, o[i + 1].wire / nevents,
			    100.0 * o[i + 1].wire / o[i].wire, o[i].wire / o[i + 1].wire, nevents / o[i].secs,
			    nevents / o[i + 1].secs, o[i].cpu, o[i + 1].cpu);
	}
	filler = 0;
}

int
main(void)
{
	static const struct run runs[] = {
		{ "event", { "KTE_RECORD_FORMAT=event", NULL } },
		{ "ndjson", { "KTE_RECORD_FORMAT=ndjson", NULL } },
		{ "kpl (request-id keys)", { "KTE_RECORD_FORMAT=kpl", NULL } },
		{ "kpl (random keys)", { "KTE_RECORD_FORMAT=kpl", "KTE_PARTITION_KEY=random", NULL } },
	};
	const char *env = getenv("KTE_BENCH_EVENTS");
	unsigned nevents = env != NULL ? (unsigned)strtoul(env, NULL, 10) : 300000;
	const char *renv = getenv("KTE_BENCH_REPEAT");
	unsigned repeat = renv != NULL ? (unsigned)strtoul(renv, NULL, 10) : 3;
	double event_records = 0;
	uint16_t port;
	int fd;
	pid_t sink;

	setenv("AWS_ACCESS_KEY_ID", "AKIDBENCH", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "bench-secret", 1);
	setenv("AWS_SESSION_TOKEN", "bench-session-token", 1);
	if ((fd = sink_listen(&port)) < 0) {
		fprintf(stderr, "sink: %s\n", strerror(-fd));
		return 1;
	}
	if ((sink = fork()) == 0)
		sink_serve(fd, NULL, NULL);
	close(fd);
	printf("dispatcher -> local sink (127.0.0.1:%u), %u events of %d bytes%s, SigV4 signed, best of %u runs "
	    "(wall clock; the machine may be shared)\n", port, nevents, EVENT_BYTES,
	    getenv("KTE_BENCH_NO_META") != NULL ? " without metadata" : " with the listener's metadata", repeat);
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		struct result best = { 0 }, o;

		for (unsigned k = 0; k < (repeat ? repeat : 1); k++) {
			if (run_one(&runs[i], nevents, port, &o) < 0)
				goto out;
			if (best.secs == 0 || o.secs < best.secs)
				best = o;
		}
		print_result(&runs[i], nevents, &best, &event_records);
	}
	flush_latency(port, 10);
	flush_latency(port, 1000);
	faults(0, nevents / 6, repeat);
	faults(50, nevents / 15, repeat);       /* 40 fault-free requests: 2 s a run */
	compression(port, nevents / 6);
out:
	kill(sink, SIGTERM);
	waitpid(sink, NULL, 0);
	return 0;
}
