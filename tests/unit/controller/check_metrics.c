/*
 * The self-metrics (controller/metrics.c, common/latency.c): the EMF line is valid embedded
 * metric format (parsed back with json-c and checked member by member), latency buckets and
 * quantiles, deltas between two readings, and metrics_emit's rate limit over a real
 * control block and ring, writing into a pipe.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "controller/metrics.h"
#include "latency.h"
#include "ring.h"

static const char *const ALL[] = { "Invocations", "EventsReceived", "EventsSent", "RecordsSent", "BytesSent",
	"RecordsRetried", "EventsDropped", "DroppedByLambda", "DroppedTooLarge", "DroppedRejected",
	"DroppedAtShutdown", "AckLatencyP50", "AckLatencyMax", "RingHighWater", "RingHighWaterBytes",
	"NextHolds", "NextHoldTime" };
#define NALL (sizeof(ALL) / sizeof(ALL[0]))

static json_object *
get(json_object *o, const char *key)
{
	json_object *v = NULL;

	ck_assert_msg(json_object_object_get_ex(o, key, &v), "member %s missing", key);
	return v;
}

/*
 * Checks one line against the EMF specification's structure and returns the parsed root
 * (caller puts it): one JSON object ending in '\n', _aws {Timestamp, CloudWatchMetrics:
 * [{Namespace, Dimensions, Metrics}]}, every dimension and metric named a root member.
 */
static json_object *
check_emf(const char *line, int len, const char *ns, const char *fn)
{
	json_object *root, *aws, *cwm, *dir, *dims, *mets;
	enum json_tokener_error jerr;

	ck_assert_int_eq((int)strlen(line), len);
	ck_assert_msg(len > 0 && line[len - 1] == '\n' && strchr(line, '\n') == line + len - 1,
	    "not one line: %s", line);
	root = json_tokener_parse_verbose(line, &jerr);
	ck_assert_msg(root != NULL && json_object_is_type(root, json_type_object), "not JSON: %s", line);
	aws = get(root, "_aws");
	ck_assert(json_object_is_type(get(aws, "Timestamp"), json_type_int));
	ck_assert(json_object_get_int64(get(aws, "Timestamp")) > 1600000000000LL);
	cwm = get(aws, "CloudWatchMetrics");
	ck_assert(json_object_is_type(cwm, json_type_array));
	ck_assert_int_eq((int)json_object_array_length(cwm), 1);
	dir = json_object_array_get_idx(cwm, 0);
	ck_assert_str_eq(json_object_get_string(get(dir, "Namespace")), ns);
	dims = get(dir, "Dimensions");
	ck_assert_int_eq((int)json_object_array_length(dims), 2);
	for (size_t i = 0; i < json_object_array_length(dims); i++) {
		json_object *set = json_object_array_get_idx(dims, i);

		ck_assert(json_object_is_type(set, json_type_array));
		ck_assert(json_object_array_length(set) <= 30);
		for (size_t j = 0; j < json_object_array_length(set); j++) {
			const char *d = json_object_get_string(json_object_array_get_idx(set, j));

			ck_assert(json_object_is_type(get(root, d), json_type_string));
		}
	}
	ck_assert_str_eq(json_object_get_string(get(root, "FunctionName")), fn);
	mets = get(dir, "Metrics");
	ck_assert(json_object_array_length(mets) >= 1 && json_object_array_length(mets) <= 100);
	for (size_t i = 0; i < json_object_array_length(mets); i++) {
		json_object *m = json_object_array_get_idx(mets, i);
		const char *name = json_object_get_string(get(m, "Name")), *unit = json_object_get_string(get(m, "Unit"));

		ck_assert(json_object_is_type(get(root, name), json_type_int));
		ck_assert(json_object_get_int64(get(root, name)) >= 0);
		ck_assert_msg(strcmp(unit, "Count") == 0 || strcmp(unit, "Bytes") == 0 ||
		    strcmp(unit, "Milliseconds") == 0 || strcmp(unit, "Percent") == 0, "unit %s", unit);
	}
	return root;
}

static bool
declared(json_object *root, const char *name)
{
	json_object *mets = get(json_object_array_get_idx(get(get(root, "_aws"), "CloudWatchMetrics"), 0), "Metrics");

	for (size_t i = 0; i < json_object_array_length(mets); i++)
		if (strcmp(json_object_get_string(get(json_object_array_get_idx(mets, i), "Name")), name) == 0)
			return true;
	return false;
}

static int64_t
value(json_object *root, const char *name)
{
	return json_object_get_int64(get(root, name));
}

START_TEST(line_is_valid_emf_with_every_metric)
{
	struct metrics_values v = { .invocations = 3, .received = 100, .sent = 98, .records_sent = 40,
		.bytes_sent = 12345, .retried = 2, .dropped_lambda = 1, .dropped_too_large = 2, .dropped_rejected = 3,
		.dropped_shutdown = 4, .acked = 98, .ack_p50_ms = 15, .ack_max_ms = 230, .ring_hw_bytes = 1000,
		.ring_capacity = 4000, .hold_count = 3, .hold_ms = 42 };
	char buf[4096];
	int n = metrics_format(buf, sizeof(buf), "KinesisTelemetryExtension", "my-fn", 1760000000123ULL, &v);
	json_object *root = check_emf(buf, n, "KinesisTelemetryExtension", "my-fn");

	for (size_t i = 0; i < NALL; i++)
		ck_assert_msg(declared(root, ALL[i]), "%s not declared", ALL[i]);
	ck_assert_int_eq(json_object_get_int64(get(get(root, "_aws"), "Timestamp")), 1760000000123LL);
	ck_assert_int_eq(value(root, "Invocations"), 3);
	ck_assert_int_eq(value(root, "EventsReceived"), 100);
	ck_assert_int_eq(value(root, "EventsSent"), 98);
	ck_assert_int_eq(value(root, "RecordsSent"), 40);
	ck_assert_int_eq(value(root, "BytesSent"), 12345);
	ck_assert_int_eq(value(root, "RecordsRetried"), 2);
	ck_assert_int_eq(value(root, "EventsDropped"), 10);
	ck_assert_int_eq(value(root, "DroppedByLambda"), 1);
	ck_assert_int_eq(value(root, "DroppedTooLarge"), 2);
	ck_assert_int_eq(value(root, "DroppedRejected"), 3);
	ck_assert_int_eq(value(root, "DroppedAtShutdown"), 4);
	ck_assert_int_eq(value(root, "AckLatencyP50"), 15);
	ck_assert_int_eq(value(root, "AckLatencyMax"), 230);
	ck_assert_int_eq(value(root, "RingHighWater"), 25);
	ck_assert_int_eq(value(root, "RingHighWaterBytes"), 1000);
	ck_assert_int_eq(value(root, "NextHolds"), 3);
	ck_assert_int_eq(value(root, "NextHoldTime"), 42);
	json_object_put(root);
}
END_TEST

START_TEST(no_latency_without_acknowledged_events)
{
	struct metrics_values v = { .invocations = 1, .ring_capacity = 4096 };
	char buf[4096];
	int n = metrics_format(buf, sizeof(buf), "NS", "f", 1760000000000ULL, &v);
	json_object *root = check_emf(buf, n, "NS", "f"), *x;

	ck_assert(!declared(root, "AckLatencyP50") && !declared(root, "AckLatencyMax"));
	ck_assert(!json_object_object_get_ex(root, "AckLatencyP50", &x));
	ck_assert(declared(root, "EventsSent"));
	ck_assert_int_eq(value(root, "RingHighWater"), 0);
	json_object_put(root);
}
END_TEST

START_TEST(names_are_escaped)
{
	struct metrics_values v = { 0 };
	char buf[4096];
	int n = metrics_format(buf, sizeof(buf), "a\"b\\c", "f\n\"x", 1760000000000ULL, &v);
	json_object *root = check_emf(buf, n, "a\"b\\c", "f\n\"x");

	json_object_put(root);
}
END_TEST

START_TEST(small_buffer_is_refused)
{
	struct metrics_values v = { .acked = 1, .ack_max_ms = 1 };
	char buf[4096], small[4096];
	int n = metrics_format(buf, sizeof(buf), "KinesisTelemetryExtension", "fn", 1760000000000ULL, &v);

	ck_assert_int_gt(n, 0);
	for (int len = 0; len <= n; len++)
		ck_assert_int_eq(metrics_format(len ? small : NULL, (size_t)len, "KinesisTelemetryExtension", "fn",
		    1760000000000ULL, &v), -ENOSPC);
	ck_assert_int_eq(metrics_format(small, (size_t)n + 1, "KinesisTelemetryExtension", "fn",
	    1760000000000ULL, &v), n);
	ck_assert_str_eq(small, buf);
}
END_TEST

START_TEST(latency_buckets_tile_the_range)
{
	/* Contiguous, increasing, each value inside its own bucket, at most ~25% wide. */
	ck_assert_uint_eq(latency_bucket_low(0), 0);
	for (unsigned b = 0; b + 1 < LATENCY_BUCKETS; b++) {
		ck_assert_uint_eq(latency_bucket_high(b) + 1, latency_bucket_low(b + 1));
		ck_assert(latency_bucket_high(b) >= latency_bucket_low(b));
		if (b >= 4)
			ck_assert(latency_bucket_high(b) - latency_bucket_low(b) + 1 <= latency_bucket_low(b) / 4);
	}
	ck_assert_uint_eq(latency_bucket_high(LATENCY_BUCKETS - 1), UINT64_MAX);
	for (uint64_t ms = 0; ms < 3000000; ms += 1 + ms / 50) {
		unsigned b = latency_bucket(ms);

		ck_assert_msg(latency_bucket_low(b) <= ms && ms <= latency_bucket_high(b), "%llu in bucket %u",
		    (unsigned long long)ms, b);
	}
	ck_assert_uint_eq(latency_bucket(UINT64_MAX), LATENCY_BUCKETS - 1);
}
END_TEST

START_TEST(quantile_from_counts)
{
	uint64_t h[LATENCY_BUCKETS] = { 0 };

	ck_assert_uint_eq(latency_quantile(h, 0.5, 100), 0);
	/* 10 events at 2 ms, 10 at 100 ms: p50 is the 2 ms bucket, p51 the 100 ms one. */
	h[latency_bucket(2)] = 10;
	h[latency_bucket(100)] = 10;
	ck_assert_uint_eq(latency_quantile(h, 0.5, 100), 2);
	ck_assert_uint_eq(latency_quantile(h, 0.51, 100), 100);      /* bucket high capped at the max */
	ck_assert_uint_eq(latency_quantile(h, 0.51, 1000), latency_bucket_high(latency_bucket(100)));
	ck_assert_uint_eq(latency_quantile(h, 1.0, 100), 100);
	/* One event: every quantile is it. */
	memset(h, 0, sizeof(h));
	h[latency_bucket(7)] = 1;
	ck_assert_uint_eq(latency_quantile(h, 0.5, 7), 7);
}
END_TEST

START_TEST(delta_between_readings)
{
	struct metrics_sample a = { 0 }, b = { 0 };
	struct metrics_values v;

	a.received = 10, a.sent = 5, a.hold_count = 1, a.hold_ms = 10;
	a.latency[latency_bucket(3)] = 5;
	b = a;
	b.received = 30, b.sent = 25, b.records_sent = 9, b.bytes_sent = 900, b.retried = 1;
	b.dropped_lambda = 2, b.dropped_too_large = 3, b.dropped_rejected = 4, b.dropped_shutdown = 5;
	b.hold_count = 3, b.hold_ms = 50;
	b.latency[latency_bucket(3)] += 15;     /* 15 at 3 ms, 5 at ~40 ms in this interval */
	b.latency[latency_bucket(40)] += 5;
	metrics_delta(&b, &a, 41, &v);
	ck_assert_uint_eq(v.received, 20);
	ck_assert_uint_eq(v.sent, 20);
	ck_assert_uint_eq(v.records_sent, 9);
	ck_assert_uint_eq(v.bytes_sent, 900);
	ck_assert_uint_eq(v.retried, 1);
	ck_assert_uint_eq(v.dropped_lambda + v.dropped_too_large + v.dropped_rejected + v.dropped_shutdown, 14);
	ck_assert_uint_eq(v.hold_count, 2);
	ck_assert_uint_eq(v.hold_ms, 40);
	ck_assert_uint_eq(v.acked, 20);
	ck_assert_uint_eq(v.ack_p50_ms, 3);
	ck_assert_uint_eq(v.ack_max_ms, 41);
	/* A window maximum lost to a race is never reported below the highest bucket seen. */
	metrics_delta(&b, &a, 0, &v);
	ck_assert_uint_eq(v.ack_max_ms, latency_bucket_low(latency_bucket(40)));
	/* Counters that went backwards (never expected) give 0, not a wrapped number. */
	metrics_delta(&a, &b, 0, &v);
	ck_assert_uint_eq(v.received, 0);
	ck_assert_uint_eq(v.acked, 0);
}
END_TEST

static const char *const *env_vars;

static const char *
env_get(const char *name, void *ctx)
{
	(void)ctx;
	for (const char *const *p = env_vars; *p; p += 2)
		if (strcmp(p[0], name) == 0)
			return p[1];
	return NULL;
}

START_TEST(configuration)
{
	static const char *const dflt[] = { "KTE_STREAM_NAME", "s", "AWS_REGION", "us-east-1", NULL };
	static const char *const off[] = { "KTE_STREAM_NAME", "s", "AWS_REGION", "us-east-1", "KTE_METRICS", "off",
		"KTE_METRICS_NAMESPACE", "My/App #1: x", "KTE_METRICS_INTERVAL_MS", "1000", NULL };
	static const char *const bad[][6] = {
		{ "KTE_STREAM_NAME", "s", "AWS_REGION", "us-east-1", "KTE_METRICS_NAMESPACE", "AWS/Lambda" },
		{ "KTE_STREAM_NAME", "s", "AWS_REGION", "us-east-1", "KTE_METRICS_NAMESPACE", "caf\xc3\xa9" },
		{ "KTE_STREAM_NAME", "s", "AWS_REGION", "us-east-1", "KTE_METRICS_NAMESPACE", "a\"b" },
		{ "KTE_STREAM_NAME", "s", "AWS_REGION", "us-east-1", "KTE_METRICS", "maybe" },
		{ "KTE_STREAM_NAME", "s", "AWS_REGION", "us-east-1", "KTE_METRICS_INTERVAL_MS", "999" },
	};
	struct kte_config cfg;
	char err[256];

	env_vars = dflt;
	ck_assert_int_eq(config_load_from(&cfg, env_get, NULL, err, sizeof(err)), 0);
	ck_assert(cfg.metrics);
	ck_assert_str_eq(cfg.metrics_namespace, "KinesisTelemetryExtension");
	ck_assert_uint_eq(cfg.metrics_interval_ms, 60000);
	env_vars = off;
	ck_assert_int_eq(config_load_from(&cfg, env_get, NULL, err, sizeof(err)), 0);
	ck_assert(!cfg.metrics);
	ck_assert_str_eq(cfg.metrics_namespace, "My/App #1: x");
	ck_assert_uint_eq(cfg.metrics_interval_ms, 1000);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *vars[7];

		memcpy(vars, bad[i], sizeof(bad[i]));
		vars[6] = NULL;
		env_vars = vars;
		ck_assert_int_eq(config_load_from(&cfg, env_get, NULL, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, bad[i][4]) != NULL, "message \"%s\" does not name %s", err, bad[i][4]);
		if (i < 3)      /* a refused namespace falls back to the default, never half-used */
			ck_assert_str_eq(cfg.metrics_namespace, "KinesisTelemetryExtension");
	}
}
END_TEST

/* Reads what the pipe holds (non-blocking), NUL-terminated; returns its length. */
static int
drain(int fd, char *buf, size_t len)
{
	ssize_t n = read(fd, buf, len - 1);

	n = n < 0 ? 0 : n;
	buf[n] = '\0';
	return (int)n;
}

START_TEST(emit_is_rate_limited_and_sums_to_the_totals)
{
	struct control_fds fds;
	struct control *ctl = control_new(&fds);
	struct kte_config cfg = { .metrics = true, .metrics_interval_ms = 1000 };
	struct metrics m;
	struct ring ring;
	char buf[8192];
	int p[2], n;
	json_object *root;
	int64_t received = 0, sent = 0, invocations = 0;

	ck_assert_ptr_nonnull(ctl);
	ck_assert_int_eq(ring_create(&ring, 65536), 0);
	ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
	snprintf(cfg.metrics_namespace, sizeof(cfg.metrics_namespace), "KinesisTelemetryExtension");
	metrics_init(&m, &cfg, "fn", 10000);

	/* Within the interval: counted, not written. */
	atomic_store(&ctl->listener.events, 7);
	ck_assert_int_eq(metrics_emit(&m, ctl, &ring, p[1], true, false, 10000), 0);
	ck_assert_int_eq(metrics_emit(&m, ctl, &ring, p[1], true, false, 10999), 0);
	ck_assert_int_eq(drain(p[0], buf, sizeof(buf)), 0);
	/* Interval passed: one line with the three invocations and everything so far. */
	atomic_store(&ctl->dispatcher.events_sent, 5);
	latency_record(ctl, 12, 5);
	latency_ring_used(ctl, 3000);
	ck_assert_int_eq(metrics_emit(&m, ctl, &ring, p[1], true, false, 11000), 1);
	n = drain(p[0], buf, sizeof(buf));
	root = check_emf(buf, n, "KinesisTelemetryExtension", "fn");
	ck_assert_int_eq(value(root, "Invocations"), 3);
	ck_assert_int_eq(value(root, "EventsReceived"), 7);
	ck_assert_int_eq(value(root, "EventsSent"), 5);
	ck_assert_int_eq(value(root, "AckLatencyMax"), 12);
	ck_assert_int_eq(value(root, "RingHighWaterBytes"), 3000);
	invocations += value(root, "Invocations"), received += value(root, "EventsReceived");
	sent += value(root, "EventsSent");
	json_object_put(root);
	ck_assert_uint_eq(m.lines, 1);
	ck_assert_uint_eq(m.bytes, (uint64_t)n);

	/* Next window: the maxima start afresh. */
	atomic_store(&ctl->listener.events, 9);
	atomic_store(&ctl->dispatcher.events_sent, 9);
	latency_record(ctl, 2, 4);
	ck_assert_int_eq(metrics_emit(&m, ctl, &ring, p[1], true, false, 11500), 0);
	/* Final: written whatever the interval. */
	ck_assert_int_eq(metrics_emit(&m, ctl, &ring, p[1], false, true, 11501), 1);
	n = drain(p[0], buf, sizeof(buf));
	root = check_emf(buf, n, "KinesisTelemetryExtension", "fn");
	ck_assert_int_eq(value(root, "AckLatencyMax"), 2);
	ck_assert_int_eq(value(root, "AckLatencyP50"), 2);
	ck_assert_int_eq(value(root, "RingHighWaterBytes"), 0);
	invocations += value(root, "Invocations"), received += value(root, "EventsReceived");
	sent += value(root, "EventsSent");
	json_object_put(root);
	ck_assert_int_eq(invocations, 4);
	ck_assert_int_eq(received, 9);
	ck_assert_int_eq(sent, 9);

	/* Off: nothing, ever. */
	cfg.metrics = false;
	metrics_init(&m, &cfg, NULL, 0);
	ck_assert_str_eq(m.function, "unknown");
	ck_assert_int_eq(metrics_emit(&m, ctl, &ring, p[1], true, true, 100000), 0);
	ck_assert_int_eq(drain(p[0], buf, sizeof(buf)), 0);
	/* A write error is returned. */
	cfg.metrics = true;
	metrics_init(&m, &cfg, "fn", 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(metrics_emit(&m, ctl, &ring, p[1], true, true, 1), -EPIPE);
	close(p[1]);
	ring_close(&ring);
	control_free(ctl, &fds);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("controller_metrics");
	TCase *tc = tcase_create("emf");

	tcase_add_test(tc, line_is_valid_emf_with_every_metric);
	tcase_add_test(tc, no_latency_without_acknowledged_events);
	tcase_add_test(tc, names_are_escaped);
	tcase_add_test(tc, small_buffer_is_refused);
	tcase_add_test(tc, latency_buckets_tile_the_range);
	tcase_add_test(tc, quantile_from_counts);
	tcase_add_test(tc, delta_between_readings);
	tcase_add_test(tc, configuration);
	tcase_add_test(tc, emit_is_rate_limited_and_sums_to_the_totals);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
