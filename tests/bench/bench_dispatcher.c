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
 * says what one core sustains when the machine is shared). Asserts nothing.
 *   KTE_BENCH_EVENTS (default 300000) sets the number of events.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dispatcher/dispatcher.h"
#include "kinesis_sink.h"
#include "notify.h"

#define EVENT_BYTES 300

struct run {
	const char *name;
	const char *vars[4];
};

static const char *const *bench_vars;

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

static int
run_one(const struct run *r, unsigned nevents, uint16_t port, double *event_records)
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
	double secs, cpu, requests, records, wire, body;

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
	if (ring_create(&ring, (uint64_t)nevents * (EVENT_BYTES + 32) + (1u << 20)) < 0 ||
	    (ctl = control_new(&fds)) == NULL) {
		perror("ring/control");
		return -1;
	}
	for (unsigned i = 0; i < nevents; i++) {
		fill_event(ev, i);
		if (ring_write(&ring, ev, EVENT_BYTES) < 0) {
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
	t1 = now_mono_us();
	kill(pid, SIGTERM);
	wait4(pid, &st, 0, &ru);
	secs = (double)(t1 - t0) / 1e6;
	requests = (double)atomic_load(&ctl->dispatcher.requests);
	records = (double)atomic_load(&ctl->dispatcher.records_sent);
	wire = (double)atomic_load(&ctl->dispatcher.wire_bytes);
	body = wire;    /* headers included: what crosses the wire */
	cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	    (double)ru.ru_stime.tv_usec / 1e6;
	if (atomic_load(&ctl->dispatcher.events_sent) != nevents)
		fprintf(stderr, "%s: only %llu of %u events acknowledged\n", r->name,
		    (unsigned long long)atomic_load(&ctl->dispatcher.events_sent), nevents);
	if (*event_records == 0)
		*event_records = records;
	printf("%-22s %8.0f events/s %5.0f req/s %6.1f rec/req %6.0f KiB/req %6.1f B/event "
	    "%7.1f events/record (%5.0fx fewer records than event) | dispatcher cpu %.2fs = %.0f events/cpu-s\n",
	    r->name, nevents / secs, requests / secs, records / requests, body / requests / 1024,
	    wire / nevents, nevents / records, *event_records / records, cpu, nevents / cpu);
	fflush(stdout);
	control_free(ctl, &fds);
	ring_close(&ring);
	return 0;
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
	printf("dispatcher -> local sink (127.0.0.1:%u), %u events of %d bytes, SigV4 signed, 2 cores\n",
	    port, nevents, EVENT_BYTES);
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		if (run_one(&runs[i], nevents, port, &event_records) < 0)
			break;
	kill(sink, SIGTERM);
	waitpid(sink, NULL, 0);
	return 0;
}
