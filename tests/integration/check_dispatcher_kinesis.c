/*
 * The dispatcher against a real Kinesis implementation: kinesis-mock (npm kinesis-local)
 * on a free loopback port, streams created at start, and the fault-injecting proxy
 * (tests/tools) in front of it. Events written into a real ring arrive in the stream;
 * they are read back with GetRecords (tests/tools/kinesis_read.js, KPL de-aggregated by
 * aws-kinesis-agg) and compared byte-exact, for each record format. Under injected
 * faults (500s, throttling, partial failures, resets, lost replies, an outage) nothing
 * is lost, and nothing is duplicated beyond the records whose reply the proxy dropped.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "dispatcher/base64.h"
#include "base64_decode.h"
#include "dispatcher/dispatcher.h"
#include "notify.h"

static char mock_endpoint[128], mock_pid[32], proxy_endpoint[128], proxy_control[128], proxy_pid[32];

/* Runs a helper script, reading its KEY=VALUE lines into the matching globals. */
static int
start_tool(const char *cmd)
{
	char line[120];
	FILE *f = popen(cmd, "r");
	int got = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
#define TAKE(key, var) \
		if (strncmp(line, key "=", sizeof(key)) == 0) { \
			snprintf(var, sizeof(var), "%.*s", (int)sizeof(var) - 1, line + sizeof(key)); \
			got++; \
		}
		TAKE("KINESIS_MOCK_ENDPOINT", mock_endpoint)
		TAKE("KINESIS_MOCK_PID", mock_pid)
		TAKE("FAULT_PROXY_ENDPOINT", proxy_endpoint)
		TAKE("FAULT_PROXY_CONTROL", proxy_control)
		TAKE("FAULT_PROXY_PID", proxy_pid)
#undef TAKE
	}
	return pclose(f) == 0 && got > 0 ? 0 : -1;
}

/* POSTs or GETs the proxy's control endpoint; returns the reply parsed, or NULL. */
static size_t
collect(char *p, size_t sz, size_t n, void *ud)
{
	char **buf = ud;
	size_t old = *buf ? strlen(*buf) : 0;

	*buf = realloc(*buf, old + sz * n + 1);
	memcpy(*buf + old, p, sz * n);
	(*buf)[old + sz * n] = '\0';
	return sz * n;
}

static json_object *
proxy_call(const char *path, const char *post)
{
	char url[256], *buf = NULL;
	CURL *c = curl_easy_init();
	json_object *j;

	snprintf(url, sizeof(url), "%s%s", proxy_control, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
	if (post != NULL)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_cleanup(c);
	j = buf ? json_tokener_parse(buf) : NULL;
	free(buf);
	ck_assert_ptr_nonnull(j);
	return j;
}

static uint64_t
stat_of(json_object *stats, const char *group, const char *name)
{
	json_object *g, *v;

	if (!json_object_object_get_ex(stats, group, &g) || !json_object_object_get_ex(g, name, &v))
		return 0;
	return (uint64_t)json_object_get_int64(v);
}

struct run {
	struct kte_config cfg;
	struct ring ring;
	struct control *ctl;
	struct control_fds fds;
	pid_t pid;
	const char *vars[16];
	int nvars;
	char endpoint[200], stream[64];
	char **events;
	size_t *lens;
	unsigned nevents;
};

static const char *
run_get(const char *name, void *ctx)
{
	struct run *r = ctx;
	size_t n = strlen(name);

	for (int i = r->nvars - 1; i >= 0; i--)
		if (strncmp(r->vars[i], name, n) == 0 && r->vars[i][n] == '=')
			return r->vars[i] + n + 1;
	return getenv(name);
}

static struct run *
run_new(const char *stream, const char *endpoint, const char *const *vars)
{
	struct run *r = calloc(1, sizeof(*r));
	char err[256];

	snprintf(r->endpoint, sizeof(r->endpoint), "KTE_KINESIS_ENDPOINT=%s/", endpoint);
	snprintf(r->stream, sizeof(r->stream), "KTE_STREAM_NAME=%s", stream);
	r->vars[r->nvars++] = r->endpoint;
	r->vars[r->nvars++] = r->stream;
	r->vars[r->nvars++] = "AWS_REGION=us-east-1";
	r->vars[r->nvars++] = "KTE_LOG_LEVEL=warn";
	r->vars[r->nvars++] = "KTE_RETRY_BASE_MS=10";
	r->vars[r->nvars++] = "KTE_RETRY_MAX_MS=200";
	r->vars[r->nvars++] = "KTE_CIRCUIT_PROBE_MS=300";
	for (int i = 0; vars != NULL && vars[i] != NULL; i++)
		r->vars[r->nvars++] = vars[i];
	ck_assert_msg(config_load_from(&r->cfg, run_get, r, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ring_create(&r->ring, 16u << 20), 0);
	ck_assert_ptr_nonnull(r->ctl = control_new(&r->fds));
	r->pid = fork();
	if (r->pid == 0) {
		struct dispatcher_args a = { &r->cfg, &r->ring, r->ctl, &r->fds };

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(dispatcher_main(&a));
	}
	return r;
}

static void
run_free(struct run *r)
{
	int st;

	kill(r->pid, SIGTERM);
	waitpid(r->pid, &st, 0);
	for (unsigned i = 0; i < r->nevents; i++)
		free(r->events[i]);
	free(r->events);
	free(r->lens);
	control_free(r->ctl, &r->fds);
	ring_close(&r->ring);
	free(r);
}

/*
 * Writes n telemetry events: platform and function events of one invocation every 20,
 * with text logs (no request id), unicode and escapes, of varied sizes.
 */
static void
run_write(struct run *r, unsigned n)
{
	char buf[4096];

	r->events = calloc(n, sizeof(*r->events));
	r->lens = calloc(n, sizeof(*r->lens));
	r->nevents = n;
	for (unsigned i = 0; i < n; i++) {
		unsigned inv = i / 20, k = i % 20;
		int len;

		if (k == 0)
			len = snprintf(buf, sizeof(buf), "{\"time\":\"2026-11-28T05:00:00.000Z\",\"type\":\"platform."
			    "start\",\"record\":{\"requestId\":\"%08x-aaaa-4bbb-8ccc-%012u\",\"version\":\"$LATEST\","
			    "\"seq\":%u}}", inv * 2654435761u, inv, i);
		else if (k == 19)
			len = snprintf(buf, sizeof(buf), "{\"time\":\"2026-11-28T05:00:00.100Z\",\"type\":\"platform."
			    "report\",\"record\":{\"requestId\":\"%08x-aaaa-4bbb-8ccc-%012u\",\"metrics\":{"
			    "\"durationMs\":1.5,\"billedDurationMs\":2},\"status\":\"success\",\"seq\":%u}}",
			    inv * 2654435761u, inv, i);
		else if (k % 3 == 0)
			len = snprintf(buf, sizeof(buf), "{\"time\":\"2026-11-28T05:00:00.050Z\",\"type\":\"function\","
			    "\"record\":\"[INFO] seq %u caf\xc3\xa9 \\\"quoted\\\" \\u00e9 tab\\t %.*s\"}", i,
			    (int)(i * 37 % 900), "................................................................"
			    "................................................................................"
			    "................................................................................"
			    "................................................................................"
			    "................................................................................"
			    "................................................................................"
			    "................................................................................"
			    "................................................................................"
			    "................................................................................"
			    "................................................................................"
			    "................................................................................"
			    "......................................................................");
		else
			len = snprintf(buf, sizeof(buf), "{\"time\":\"2026-11-28T05:00:00.060Z\",\"type\":\"function\","
			    "\"record\":{\"timestamp\":\"2026-11-28T05:00:00.060Z\",\"level\":\"INFO\",\"requestId\":"
			    "\"%08x-aaaa-4bbb-8ccc-%012u\",\"message\":\"seq %u \xe2\x82\xac\",\"seq\":%u}}",
			    inv * 2654435761u, inv, i, i);
		r->events[i] = strndup(buf, (size_t)len);
		r->lens[i] = (size_t)len;
		while (ring_write(&r->ring, buf, (size_t)len) == -ENOSPC)
			ring_reader_wait(&r->ring, 1);
	}
}

static long
run_flush(struct run *r, int timeout_ms)
{
	uint64_t req = atomic_fetch_add(&r->ctl->flush_requested, 1) + 1, t0 = now_mono_ms();

	notify_signal(r->fds.to_dispatcher);
	while (atomic_load(&r->ctl->flush_completed) < req) {
		if (now_mono_ms() - t0 > (uint64_t)timeout_ms)
			return -1;
		notify_wait(r->fds.to_controller, 50);
	}
	return (long)(now_mono_ms() - t0);
}

static bool
run_wait_released(struct run *r, uint64_t n, int timeout_ms)
{
	uint64_t t0 = now_mono_ms();
	struct ring_stats st;

	for (;;) {
		ring_stats(&r->ring, &st);
		if (st.released_records >= n)
			return true;
		if (now_mono_ms() - t0 > (uint64_t)timeout_ms)
			return false;
		notify_wait(r->fds.to_controller, 20);
	}
}

struct readback {
	char **data;
	size_t *len;
	char **key;
	size_t n, records;
};

/* Reads the stream back; splits ndjson records into lines; de-aggregates KPL. */
static void
read_back(const char *stream, bool deaggregate, bool split_lines, size_t expect, struct readback *rb)
{
	char cmd[512], *line = NULL, out[] = "/tmp/kte-readback-XXXXXX", last_seq[128] = "";
	size_t cap = 0;
	FILE *f;
	int fd = mkstemp(out);

	memset(rb, 0, sizeof(*rb));
	ck_assert_int_ge(fd, 0);
	close(fd);
	/* Into a file, not a pipe: node may exit before a large write to a pipe is flushed. */
	snprintf(cmd, sizeof(cmd), "node tests/tools/kinesis_read.js --endpoint %s --stream %s --region us-east-1 "
	    "--expect %zu --timeout-ms 60000 %s > %s", mock_endpoint, stream, expect,
	    deaggregate ? "--deaggregate" : "", out);
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
	f = fopen(out, "r");
	ck_assert_ptr_nonnull(f);
	unlink(out);
	while (getline(&line, &cap, f) > 0) {
		json_object *j = json_tokener_parse(line), *d, *k, *sq;
		const char *s;
		char *buf, *p, *end;
		ssize_t n;

		ck_assert_msg(j != NULL, "unparsable line from kinesis_read: %.300s", line);
		ck_assert(json_object_object_get_ex(j, "data", &d) && json_object_object_get_ex(j, "partitionKey", &k));
		/* De-aggregated user records keep their Kinesis record's sequence number. */
		ck_assert(json_object_object_get_ex(j, "sequenceNumber", &sq));
		if (strcmp(json_object_get_string(sq), last_seq) != 0)
			rb->records++;
		snprintf(last_seq, sizeof(last_seq), "%s", json_object_get_string(sq));
		s = json_object_get_string(d);
		buf = malloc(base64_decoded_max(strlen(s)) + 1);
		n = base64_decode(s, strlen(s), buf);
		ck_assert_int_ge(n, 0);
		for (p = buf, end = buf + n; p < end;) {
			char *nl = split_lines ? memchr(p, '\n', (size_t)(end - p)) : NULL;
			size_t l = (size_t)((nl ? nl : end) - p);

			rb->data = realloc(rb->data, (rb->n + 1) * sizeof(*rb->data));
			rb->len = realloc(rb->len, (rb->n + 1) * sizeof(*rb->len));
			rb->key = realloc(rb->key, (rb->n + 1) * sizeof(*rb->key));
			rb->data[rb->n] = strndup(p, l);
			rb->len[rb->n] = l;
			rb->key[rb->n] = strdup(json_object_get_string(k));
			rb->n++;
			p += l + 1;
		}
		free(buf);
		json_object_put(j);
	}
	free(line);
	fclose(f);
}

static void
readback_free(struct readback *rb)
{
	for (size_t i = 0; i < rb->n; i++) {
		free(rb->data[i]);
		free(rb->key[i]);
	}
	free(rb->data);
	free(rb->len);
	free(rb->key);
}

static long
seq_of(const char *s, size_t len)
{
	const char *p = memmem(s, len, "seq ", 4), *q = memmem(s, len, "\"seq\":", 6);

	if (q != NULL)
		return strtol(q + 6, NULL, 10);
	return p != NULL ? strtol(p + 4, NULL, 10) : -1;
}

/*
 * Every written event is in the stream byte-exact, at least once; returns how many
 * came more than once. Events of one request id appear in the order written.
 */
static unsigned
compare(struct run *r, struct readback *rb, bool check_order)
{
	unsigned *count = calloc(r->nevents, sizeof(*count)), dups = 0;
	long *last = NULL;

	for (size_t i = 0; i < rb->n; i++) {
		long s = seq_of(rb->data[i], rb->len[i]);

		if (strstr(rb->data[i], "extension.kte.dropped") != NULL)
			continue;
		ck_assert_msg(s >= 0 && (unsigned long)s < r->nevents, "unknown record %s", rb->data[i]);
		ck_assert_msg(rb->len[i] == r->lens[s] && memcmp(rb->data[i], r->events[s], rb->len[i]) == 0,
		    "event %ld differs:\n got  %s\n want %s", s, rb->data[i], r->events[s]);
		count[s]++;
	}
	for (unsigned i = 0; i < r->nevents; i++) {
		ck_assert_msg(count[i] >= 1, "event %u lost", i);
		dups += count[i] - 1;
	}
	if (check_order) {
		/* Per partition key (an invocation's events share one), seq increases along the stream. */
		last = calloc(rb->n, sizeof(*last));
		for (size_t i = 0; i < rb->n; i++) {
			long s = seq_of(rb->data[i], rb->len[i]);

			for (size_t j = 0; j < i; j++)
				if (strcmp(rb->key[j], rb->key[i]) == 0)
					ck_assert_msg(seq_of(rb->data[j], rb->len[j]) < s, "order broken for key %s",
					    rb->key[i]);
		}
		free(last);
	}
	free(count);
	return dups;
}

static void
run_format(const char *stream, const char *format, bool deagg, bool lines, unsigned n)
{
	const char *vars[] = { format, NULL };
	struct run *r = run_new(stream, mock_endpoint, vars);
	struct readback rb;
	long ms;

	run_write(r, n);
	ms = run_flush(r, 60000);
	ck_assert_msg(ms >= 0, "flush not answered");
	ck_assert_uint_eq(atomic_load(&r->ctl->dispatcher.events_sent), n);
	ck_assert_uint_eq(atomic_load(&r->ctl->kinesis_healthy), 1);
	read_back(stream + strlen("KTE_STREAM_NAME=") * 0, deagg, lines, lines ? 1 : n, &rb);
	if (lines)
		ck_assert_uint_eq(rb.n, n);
	ck_assert_uint_eq(compare(r, &rb, true), 0);
	ck_assert_uint_eq(rb.records, atomic_load(&r->ctl->dispatcher.records_sent));
	readback_free(&rb);
	run_free(r);
}

START_TEST(test_event_format_byte_exact)
{
	run_format("kte-event", "KTE_RECORD_FORMAT=event", false, false, 1500);
}
END_TEST

START_TEST(test_ndjson_format_byte_exact)
{
	run_format("kte-ndjson", "KTE_RECORD_FORMAT=ndjson", false, true, 3000);
}
END_TEST

START_TEST(test_kpl_format_byte_exact)
{
	run_format("kte-kpl", "KTE_RECORD_FORMAT=kpl", true, false, 3000);
}
END_TEST

/* Random faults of every kind through the proxy. */
START_TEST(test_faults_nothing_lost)
{
	json_object *cfg, *stats;
	struct run *r;
	struct readback rb;
	unsigned dups;
	uint64_t ack_dropped;

	json_object_put(proxy_call("/__stats/reset", ""));
	cfg = proxy_call("/__fault", "{\"reset\":true,\"error500Rate\":0.08,\"error503Rate\":0.05,"
	    "\"throttleRate\":0.08,\"exceededRate\":0.05,\"resetRate\":0.05,\"dropReplyRate\":0.08,"
	    "\"throttleRecordRate\":0.15,\"internalRecordRate\":0.05,\"latencyMs\":3}");
	json_object_put(cfg);
	r = run_new("kte-faults", proxy_endpoint, NULL);
	run_write(r, 2000);
	ck_assert(run_wait_released(r, 2000, 60000));
	stats = proxy_call("/__stats", NULL);
	ack_dropped = stat_of(stats, "records", "ackDropped");
	json_object_put(proxy_call("/__fault", "{\"reset\":true}"));
	read_back("kte-faults", false, false, 2000, &rb);
	dups = compare(r, &rb, false);
	ck_assert_msg(dups <= ack_dropped, "%u duplicates but only %llu records had their reply dropped", dups,
	    (unsigned long long)ack_dropped);
	ck_assert_uint_gt(stat_of(stats, "records", "injectedFailed"), 0);     /* faults did strike */
	ck_assert_uint_gt(atomic_load(&r->ctl->dispatcher.records_retried), 0);
	ck_assert_uint_gt(atomic_load(&r->ctl->dispatcher.request_failures), 0);
	fprintf(stderr, "faults: %zu records read, %u duplicates, %llu acks dropped by the proxy, "
	    "%llu records retried, %llu failed requests\n", rb.n, dups, (unsigned long long)ack_dropped,
	    (unsigned long long)atomic_load(&r->ctl->dispatcher.records_retried),
	    (unsigned long long)atomic_load(&r->ctl->dispatcher.request_failures));
	json_object_put(stats);
	readback_free(&rb);
	run_free(r);
}
END_TEST

/* An outage: the circuit opens, flushes stop waiting, and everything goes out once it is back. */
START_TEST(test_outage_and_recovery)
{
	struct run *r;
	struct readback rb;
	long ms;

	json_object_put(proxy_call("/__fault", "{\"reset\":true,\"down\":true,\"downMs\":2500}"));
	r = run_new("kte-outage", proxy_endpoint, NULL);
	run_write(r, 500);
	ms = run_flush(r, 10000);
	ck_assert_msg(ms >= 0 && ms < 2500, "flush waited %ld ms on a dead back end", ms);
	ck_assert_uint_eq(atomic_load(&r->ctl->kinesis_healthy), 0);
	ck_assert(run_wait_released(r, 500, 30000));
	ck_assert_uint_eq(atomic_load(&r->ctl->kinesis_healthy), 1);
	read_back("kte-outage", false, false, 500, &rb);
	ck_assert_uint_eq(compare(r, &rb, true), 0);
	readback_free(&rb);
	run_free(r);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("dispatcher_kinesis");
	TCase *tc = tcase_create("kinesis-mock");
	SRunner *sr;
	char cmd[512];
	int failed;

	if (chdir(getenv("KTE_ROOT") ? getenv("KTE_ROOT") : ".") < 0 ||
	    access("tests/tools/kinesis_mock.sh", X_OK) != 0) {
		fprintf(stderr, "run from the repository root\n");
		return 1;
	}
	setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret-test-key", 1);
	setenv("AWS_REGION", "us-east-1", 1);
	if (start_tool("tests/tools/kinesis_mock.sh start kte-event:2 kte-ndjson:1 kte-kpl:2 kte-faults:2 "
	    "kte-outage:1") < 0) {
		fprintf(stderr, "cannot start kinesis-mock\n");
		return 1;
	}
	snprintf(cmd, sizeof(cmd), "tests/tools/fault_proxy.sh start %s --seed 7", mock_endpoint);
	if (start_tool(cmd) < 0) {
		fprintf(stderr, "cannot start the fault proxy\n");
		snprintf(cmd, sizeof(cmd), "tests/tools/kinesis_mock.sh stop %s", mock_pid);
		return system(cmd) == 0 ? 1 : 1;
	}
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_event_format_byte_exact);
	tcase_add_test(tc, test_ndjson_format_byte_exact);
	tcase_add_test(tc, test_kpl_format_byte_exact);
	tcase_add_test(tc, test_faults_nothing_lost);
	tcase_add_test(tc, test_outage_and_recovery);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	snprintf(cmd, sizeof(cmd), "tests/tools/fault_proxy.sh stop %s; tests/tools/kinesis_mock.sh stop %s",
	    proxy_pid, mock_pid);
	if (system(cmd) != 0)
		fprintf(stderr, "could not stop the helpers\n");
	return failed == 0 ? 0 : 1;
}
