/*
 * config_load_from() over a table of variables: defaults, every variable's valid
 * values, and for each bad value -EINVAL with one message naming the variable and
 * the value. config_load() (getenv) is checked once.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

#define MAX_VARS 32

struct env {
	const char *name[MAX_VARS];
	const char *value[MAX_VARS];
	int n;
};

static const char *
env_get(const char *name, void *ctx)
{
	struct env *e = ctx;

	for (int i = e->n - 1; i >= 0; i--)
		if (strcmp(e->name[i], name) == 0)
			return e->value[i];
	return NULL;
}

static void
env_set(struct env *e, const char *name, const char *value)
{
	ck_assert_int_lt(e->n, MAX_VARS);
	e->name[e->n] = name;
	e->value[e->n] = value;
	e->n++;
}

/* A valid minimal environment: a stream name and a region. */
static void
env_minimal(struct env *e)
{
	memset(e, 0, sizeof(*e));
	env_set(e, "KTE_STREAM_NAME", "telemetry");
	env_set(e, "AWS_REGION", "eu-west-1");
}

static char err[512];

static int
load(struct env *e, struct kte_config *cfg)
{
	return config_load_from(cfg, env_get, e, err, sizeof(err));
}

/* Loads the minimal environment plus name=value and expects success. */
static void
load_ok(struct kte_config *cfg, const char *name, const char *value)
{
	struct env e;

	env_minimal(&e);
	env_set(&e, name, value);
	ck_assert_msg(load(&e, cfg) == 0, "%s=\"%s\" refused: %s", name, value, err);
	ck_assert_str_eq(err, "");
	ck_assert(cfg->shipping_enabled);
}

/* Loads the minimal environment plus name=value and expects -EINVAL naming both. */
static void
load_bad(const char *name, const char *value)
{
	struct kte_config cfg;
	struct env e;

	env_minimal(&e);
	env_set(&e, name, value);
	ck_assert_msg(load(&e, &cfg) == -EINVAL, "%s=\"%s\" accepted", name, value);
	ck_assert_msg(strstr(err, name) != NULL, "message does not name %s: %s", name, err);
	ck_assert_msg(strstr(err, value) != NULL, "message does not show \"%s\": %s", value, err);
	ck_assert_msg(strchr(err, '\n') == NULL, "message is not one line: %s", err);
}

START_TEST(test_defaults)
{
	struct kte_config cfg;
	struct env e;

	env_minimal(&e);
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert_str_eq(err, "");
	ck_assert(cfg.shipping_enabled);
	ck_assert_str_eq(cfg.stream_name, "telemetry");
	ck_assert_str_eq(cfg.stream_arn, "");
	ck_assert_str_eq(cfg.region, "eu-west-1");
	ck_assert_str_eq(cfg.kinesis_endpoint, "");
	ck_assert_str_eq(cfg.ca_bundle, "");
	ck_assert_str_eq(cfg.listener_host, "sandbox.localdomain");
	ck_assert_uint_eq(cfg.listener_port, 4243);
	ck_assert_uint_eq(cfg.telemetry_types, TELEMETRY_PLATFORM | TELEMETRY_FUNCTION);
	ck_assert_str_eq(cfg.schema_version, "2025-01-29");
	ck_assert_uint_eq(cfg.buffer_max_items, 1000);
	ck_assert_uint_eq(cfg.buffer_max_bytes, 262144);
	ck_assert_uint_eq(cfg.buffer_timeout_ms, 25);
	ck_assert_str_eq(cfg.drop_types, "");
	ck_assert_int_eq(cfg.min_log_level, -1);
	ck_assert_uint_eq(cfg.ring_bytes, 8u << 20);
	ck_assert_uint_eq(cfg.max_record_bytes, 1u << 20);
	ck_assert_uint_eq(cfg.max_request_bytes, 5u << 20);
	ck_assert_int_eq(cfg.record_format, FORMAT_EVENT);
	ck_assert_int_eq(cfg.pkey_mode, PKEY_REQUEST_ID);
	ck_assert_str_eq(cfg.pkey_fixed, "");
	ck_assert_int_eq(cfg.flush, FLUSH_ADAPTIVE);
	ck_assert_uint_eq(cfg.flush_interval_ms, 10000);
	ck_assert_uint_eq(cfg.flush_budget_ms, 500);
	ck_assert_uint_eq(cfg.shutdown_margin_ms, 100);
	ck_assert_int_eq(cfg.overflow, OVERFLOW_WAIT);
	ck_assert_str_eq(config_overflow_name(cfg.overflow), "wait");
	ck_assert_str_eq(config_overflow_name((enum overflow_policy)9), "?");
	ck_assert_int_eq(cfg.log_level, LOG_LEVEL_INFO);
	ck_assert(!cfg.strict);
	ck_assert_str_eq(config_flush_name(cfg.flush), "adaptive");
	ck_assert_str_eq(config_format_name(cfg.record_format), "event");
	ck_assert_str_eq(config_flush_name((enum flush_policy)9), "?");
	ck_assert_str_eq(config_format_name((enum record_format)9), "?");
}
END_TEST

START_TEST(test_destination)
{
	struct kte_config cfg;
	struct env e;

	/* Nothing at all: no destination, shipping off, still defaults. */
	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(load(&e, &cfg), -EINVAL);
	ck_assert(strstr(err, "KTE_STREAM_NAME") && strstr(err, "KTE_STREAM_ARN"));
	ck_assert(!cfg.shipping_enabled);
	ck_assert_uint_eq(cfg.ring_bytes, 8u << 20);

	/* Empty strings count as unset. */
	env_set(&e, "KTE_STREAM_NAME", "");
	env_set(&e, "KTE_STREAM_ARN", "");
	env_set(&e, "AWS_REGION", "");
	ck_assert_int_eq(load(&e, &cfg), -EINVAL);
	ck_assert(strstr(err, "no destination") != NULL);

	/* A name but no region. */
	memset(&e, 0, sizeof(e));
	env_set(&e, "KTE_STREAM_NAME", "s");
	ck_assert_int_eq(load(&e, &cfg), -EINVAL);
	ck_assert(strstr(err, "AWS_REGION") != NULL);
	ck_assert(!cfg.shipping_enabled);
	/* AWS_DEFAULT_REGION is the fallback; AWS_REGION wins over it. */
	env_set(&e, "AWS_DEFAULT_REGION", "us-east-2");
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert_str_eq(cfg.region, "us-east-2");
	env_set(&e, "AWS_REGION", "ap-south-1");
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert_str_eq(cfg.region, "ap-south-1");

	/* An ARN alone gives the region. */
	memset(&e, 0, sizeof(e));
	env_set(&e, "KTE_STREAM_ARN", "arn:aws:kinesis:eu-central-1:123456789012:stream/my.stream-1");
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert(cfg.shipping_enabled);
	ck_assert_str_eq(cfg.region, "eu-central-1");
	ck_assert_str_eq(cfg.stream_name, "");
	/*
	 * The ARN's region wins over AWS_REGION (which Lambda always sets): a stream
	 * in another region must be called at its own regional endpoint.
	 */
	env_set(&e, "AWS_REGION", "us-west-2");
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert_str_eq(cfg.region, "eu-central-1");
	/* Other partitions. */
	memset(&e, 0, sizeof(e));
	env_set(&e, "KTE_STREAM_ARN", "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/s");
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert_str_eq(cfg.region, "cn-north-1");
	env_set(&e, "KTE_STREAM_ARN", "arn:aws-us-gov:kinesis:us-gov-west-1:123456789012:stream/s");
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert_str_eq(cfg.region, "us-gov-west-1");

	/* Both name and ARN. */
	env_minimal(&e);
	env_set(&e, "KTE_STREAM_ARN", "arn:aws:kinesis:eu-west-1:123456789012:stream/telemetry");
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert_str_eq(cfg.stream_name, "telemetry");
	ck_assert_str_eq(cfg.stream_arn, "arn:aws:kinesis:eu-west-1:123456789012:stream/telemetry");
	/* ...which must then name the same stream (Kinesis refuses every request otherwise). */
	load_bad("KTE_STREAM_ARN", "arn:aws:kinesis:eu-west-1:123456789012:stream/other");
	load_bad("KTE_STREAM_ARN", "arn:aws:kinesis:eu-west-1:123456789012:stream/telemetry2");
	load_bad("KTE_STREAM_ARN", "arn:aws:kinesis:eu-west-1:123456789012:stream/telemetr");
	ck_assert(strstr(err, "KTE_STREAM_NAME") != NULL);

	/* Stream names: 1..128 of [a-zA-Z0-9_.-]. */
	{
		char name[130];

		memset(name, 'a', 128);
		name[128] = '\0';
		load_ok(&cfg, "KTE_STREAM_NAME", name);
		ck_assert_uint_eq(strlen(cfg.stream_name), 128);
		load_ok(&cfg, "KTE_STREAM_NAME", "A_z.0-9");
		name[128] = 'a';
		name[129] = '\0';
		env_minimal(&e);
		env_set(&e, "KTE_STREAM_NAME", name);
		ck_assert_int_eq(load(&e, &cfg), -EINVAL);
		ck_assert(strstr(err, "KTE_STREAM_NAME") != NULL);
		ck_assert(!cfg.shipping_enabled);
	}
	load_bad("KTE_STREAM_NAME", "has space");
	load_bad("KTE_STREAM_NAME", "slash/name");
	load_bad("KTE_STREAM_NAME", "caf\xc3\xa9");
	load_bad("KTE_STREAM_NAME", "x:y");

	/* Endpoints. */
	load_ok(&cfg, "KTE_KINESIS_ENDPOINT", "http://127.0.0.1:4567");
	ck_assert_str_eq(cfg.kinesis_endpoint, "http://127.0.0.1:4567");
	load_ok(&cfg, "KTE_KINESIS_ENDPOINT", "https://kinesis.eu-west-1.amazonaws.com");
	load_bad("KTE_KINESIS_ENDPOINT", "ftp://example.com");
	load_bad("KTE_KINESIS_ENDPOINT", "localhost:4567");
	load_ok(&cfg, "KTE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt");
	ck_assert_str_eq(cfg.ca_bundle, "/etc/ssl/certs/ca-certificates.crt");
}
END_TEST

START_TEST(test_bad_arns)
{
	static const char *const bad[] = {
		"arn:aws:kinesis:eu-west-1:12345678901:stream/s",        /* 11 digits */
		"arn:aws:kinesis:eu-west-1:1234567890123:stream/s",      /* 13 digits */
		"arn:aws:kinesis:eu-west-1:12345678901a:stream/s",
		"arn:aws:kinesis::123456789012:stream/s",                /* no region */
		"arn:aws:kinesis:eu-west-1:123456789012:stream/",        /* no name */
		"arn:aws:kinesis:eu-west-1:123456789012:stream/a b",
		"arn:aws:kinesis:eu-west-1:123456789012:table/s",
		"arn:aws:sqs:eu-west-1:123456789012:stream/s",
		"arn:gcp:kinesis:eu-west-1:123456789012:stream/s",
		"aws:kinesis:eu-west-1:123456789012:stream/s",
		"arn:aws:kinesis:eu-west-1",
		"arn:aws",
		"telemetry",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		load_bad("KTE_STREAM_ARN", bad[i]);
}
END_TEST

START_TEST(test_numbers)
{
	struct kte_config cfg;

	/* Limits are inclusive. */
	load_ok(&cfg, "KTE_LISTENER_PORT", "1024");
	ck_assert_uint_eq(cfg.listener_port, 1024);
	load_ok(&cfg, "KTE_LISTENER_PORT", "65535");
	ck_assert_uint_eq(cfg.listener_port, 65535);
	load_bad("KTE_LISTENER_PORT", "1023");
	load_bad("KTE_LISTENER_PORT", "65536");
	load_bad("KTE_LISTENER_PORT", "0");
	load_bad("KTE_LISTENER_PORT", "-1");
	load_bad("KTE_LISTENER_PORT", "80a");
	load_bad("KTE_LISTENER_PORT", "9001");          /* Lambda's own */
	load_bad("KTE_LISTENER_PORT", "0x1000");
	load_bad("KTE_LISTENER_PORT", "4.2");
	load_bad("KTE_LISTENER_PORT", " 4243");
	load_bad("KTE_LISTENER_PORT", "4243 ");
	load_bad("KTE_LISTENER_PORT", "+4243");
	load_bad("KTE_RING_BYTES", "\t8M");
	load_bad("KTE_RING_BYTES", " -8M");

	load_ok(&cfg, "KTE_BUFFER_MAX_ITEMS", "10000");
	ck_assert_uint_eq(cfg.buffer_max_items, 10000);
	load_bad("KTE_BUFFER_MAX_ITEMS", "999");
	load_bad("KTE_BUFFER_MAX_ITEMS", "10001");
	load_ok(&cfg, "KTE_BUFFER_MAX_BYTES", "1048576");
	ck_assert_uint_eq(cfg.buffer_max_bytes, 1048576);
	load_ok(&cfg, "KTE_BUFFER_MAX_BYTES", "512K");
	ck_assert_uint_eq(cfg.buffer_max_bytes, 512 * 1024);
	load_ok(&cfg, "KTE_BUFFER_MAX_BYTES", "1M");
	ck_assert_uint_eq(cfg.buffer_max_bytes, 1048576);
	load_bad("KTE_BUFFER_MAX_BYTES", "262143");
	load_bad("KTE_BUFFER_MAX_BYTES", "2M");
	load_ok(&cfg, "KTE_BUFFER_TIMEOUT_MS", "25");
	ck_assert_uint_eq(cfg.buffer_timeout_ms, 25);
	load_ok(&cfg, "KTE_BUFFER_TIMEOUT_MS", "30000");
	load_bad("KTE_BUFFER_TIMEOUT_MS", "24");
	load_bad("KTE_BUFFER_TIMEOUT_MS", "30001");

	/* Sizes with suffixes, case-insensitive, KiB/MiB/GiB spelled out too. */
	load_ok(&cfg, "KTE_RING_BYTES", "8M");
	ck_assert_uint_eq(cfg.ring_bytes, 8u << 20);
	load_ok(&cfg, "KTE_RING_BYTES", "16m");
	ck_assert_uint_eq(cfg.ring_bytes, 16u << 20);
	load_ok(&cfg, "KTE_RING_BYTES", "64K");
	ck_assert_uint_eq(cfg.ring_bytes, 64u << 10);
	load_ok(&cfg, "KTE_RING_BYTES", "1G");
	ck_assert_uint_eq(cfg.ring_bytes, 1u << 30);
	load_ok(&cfg, "KTE_RING_BYTES", "32MiB");
	ck_assert_uint_eq(cfg.ring_bytes, 32u << 20);
	load_ok(&cfg, "KTE_RING_BYTES", "65536");
	ck_assert_uint_eq(cfg.ring_bytes, 65536);
	load_bad("KTE_RING_BYTES", "65535");
	load_bad("KTE_RING_BYTES", "63K");
	load_bad("KTE_RING_BYTES", "2G");
	load_bad("KTE_RING_BYTES", "8MB");
	load_bad("KTE_RING_BYTES", "8 M");
	load_bad("KTE_RING_BYTES", "8T");
	load_bad("KTE_RING_BYTES", "M");
	load_bad("KTE_RING_BYTES", "-8M");
	load_bad("KTE_RING_BYTES", "99999999999999999999");
	load_bad("KTE_RING_BYTES", "18014398509481984K");   /* overflows 64 bits */
	load_bad("KTE_RING_BYTES", "lots");

	load_ok(&cfg, "KTE_MAX_RECORD_BYTES", "1024");
	ck_assert_uint_eq(cfg.max_record_bytes, 1024);
	load_bad("KTE_MAX_RECORD_BYTES", "1023");
	load_bad("KTE_MAX_RECORD_BYTES", "11M");
	load_ok(&cfg, "KTE_MAX_REQUEST_BYTES", "10M");
	ck_assert_uint_eq(cfg.max_request_bytes, 10u << 20);
	load_bad("KTE_MAX_REQUEST_BYTES", "10485761");

	load_ok(&cfg, "KTE_FLUSH_INTERVAL_MS", "100");
	ck_assert_uint_eq(cfg.flush_interval_ms, 100);
	load_ok(&cfg, "KTE_FLUSH_INTERVAL_MS", "3600000");
	load_bad("KTE_FLUSH_INTERVAL_MS", "99");
	load_bad("KTE_FLUSH_INTERVAL_MS", "3600001");
	load_ok(&cfg, "KTE_FLUSH_BUDGET_MS", "0");
	ck_assert_uint_eq(cfg.flush_budget_ms, 0);
	load_ok(&cfg, "KTE_FLUSH_BUDGET_MS", "60000");
	load_bad("KTE_FLUSH_BUDGET_MS", "60001");
	load_ok(&cfg, "KTE_SHUTDOWN_MARGIN_MS", "10");
	load_ok(&cfg, "KTE_SHUTDOWN_MARGIN_MS", "1000");
	ck_assert_uint_eq(cfg.shutdown_margin_ms, 1000);
	load_bad("KTE_SHUTDOWN_MARGIN_MS", "9");
	load_bad("KTE_SHUTDOWN_MARGIN_MS", "1001");
}
END_TEST

START_TEST(test_record_vs_request_size)
{
	struct kte_config cfg;
	struct env e;

	env_minimal(&e);
	env_set(&e, "KTE_MAX_RECORD_BYTES", "2M");
	env_set(&e, "KTE_MAX_REQUEST_BYTES", "1M");
	ck_assert_int_eq(load(&e, &cfg), -EINVAL);
	ck_assert(strstr(err, "KTE_MAX_REQUEST_BYTES") && strstr(err, "KTE_MAX_RECORD_BYTES"));
	ck_assert(strstr(err, "1048576") && strstr(err, "2097152"));
	env_set(&e, "KTE_MAX_REQUEST_BYTES", "2M");
	ck_assert_int_eq(load(&e, &cfg), 0);
}
END_TEST

START_TEST(test_enums)
{
	struct kte_config cfg;
	static const char *const flushes[] = { "adaptive", "end", "periodic", "continuous" };
	static const char *const formats[] = { "event", "ndjson", "kpl" };
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	static const char *const fn_levels[] = { "trace", "debug", "info", "warn", "error", "fatal" };

	for (int i = 0; i < 4; i++) {
		load_ok(&cfg, "KTE_FLUSH", flushes[i]);
		ck_assert_int_eq(cfg.flush, i);
		ck_assert_str_eq(config_flush_name(cfg.flush), flushes[i]);
		load_ok(&cfg, "KTE_LOG_LEVEL", levels[i]);
		ck_assert_int_eq(cfg.log_level, i);
	}
	load_ok(&cfg, "KTE_FLUSH", "PERIODIC");
	ck_assert_int_eq(cfg.flush, FLUSH_PERIODIC);
	load_bad("KTE_FLUSH", "sometimes");
	load_bad("KTE_FLUSH", "end ");
	for (int i = 0; i < 3; i++) {
		load_ok(&cfg, "KTE_RECORD_FORMAT", formats[i]);
		ck_assert_int_eq(cfg.record_format, i);
		ck_assert_str_eq(config_format_name(cfg.record_format), formats[i]);
	}
	load_bad("KTE_RECORD_FORMAT", "json");
	load_ok(&cfg, "KTE_COMPRESSION", "none");
	ck_assert_int_eq(cfg.compression, COMPRESSION_NONE);
	load_ok(&cfg, "KTE_COMPRESSION", "gzip");
	ck_assert_int_eq(cfg.compression, COMPRESSION_GZIP);
	load_bad("KTE_COMPRESSION", "zstd");
	{
		struct env e;

		env_minimal(&e);
		env_set(&e, "KTE_COMPRESSION", "gzip");
		env_set(&e, "KTE_RECORD_FORMAT", "kpl");
		ck_assert_int_eq(load(&e, &cfg), -EINVAL);
		ck_assert_msg(strstr(err, "KTE_COMPRESSION") != NULL, "%s", err);
	}
	load_bad("KTE_LOG_LEVEL", "verbose");
	load_bad("KTE_LOG_LEVEL", "trace");
	for (int i = 0; i < 6; i++) {
		load_ok(&cfg, "KTE_MIN_FUNCTION_LOG_LEVEL", fn_levels[i]);
		ck_assert_int_eq(cfg.min_log_level, i);
	}
	load_ok(&cfg, "KTE_MIN_FUNCTION_LOG_LEVEL", "");
	ck_assert_int_eq(cfg.min_log_level, -1);
	load_bad("KTE_MIN_FUNCTION_LOG_LEVEL", "critical");

	load_ok(&cfg, "KTE_SCHEMA_VERSION", "2022-07-01");
	ck_assert_str_eq(cfg.schema_version, "2022-07-01");
	load_ok(&cfg, "KTE_SCHEMA_VERSION", "2022-12-13");
	ck_assert_str_eq(cfg.schema_version, "2022-12-13");
	load_bad("KTE_SCHEMA_VERSION", "2021-01-01");

	/* Booleans. */
	load_ok(&cfg, "KTE_STRICT", "1");
	ck_assert(cfg.strict);
	load_ok(&cfg, "KTE_STRICT", "true");
	ck_assert(cfg.strict);
	load_ok(&cfg, "KTE_STRICT", "YES");
	ck_assert(cfg.strict);
	load_ok(&cfg, "KTE_STRICT", "on");
	ck_assert(cfg.strict);
	load_ok(&cfg, "KTE_STRICT", "0");
	ck_assert(!cfg.strict);
	load_ok(&cfg, "KTE_STRICT", "off");
	ck_assert(!cfg.strict);
	load_ok(&cfg, "KTE_STRICT", "false");
	ck_assert(!cfg.strict);
	load_ok(&cfg, "KTE_STRICT", "");
	ck_assert(!cfg.strict);
	load_bad("KTE_STRICT", "2");
	load_bad("KTE_STRICT", "maybe");
}
END_TEST

START_TEST(test_overflow)
{
	struct kte_config cfg;

	load_ok(&cfg, "KTE_OVERFLOW", "wait");
	ck_assert_int_eq(cfg.overflow, OVERFLOW_WAIT);
	load_ok(&cfg, "KTE_OVERFLOW", "drop");
	ck_assert_int_eq(cfg.overflow, OVERFLOW_DROP);
	ck_assert_str_eq(config_overflow_name(cfg.overflow), "drop");
	load_ok(&cfg, "KTE_OVERFLOW", "DROP");
	ck_assert_int_eq(cfg.overflow, OVERFLOW_DROP);
	load_bad("KTE_OVERFLOW", "block");
	load_bad("KTE_OVERFLOW", "wait ");
	load_bad("KTE_OVERFLOW", "0");
}
END_TEST

/* The ring's default follows the function's memory; KTE_RING_BYTES overrides it. */
START_TEST(test_ring_default_from_memory)
{
	static const struct { const char *mem; uint64_t want; } cases[] = {
		{ "128", 8ull << 20 },          /* 1/16 = 8 MiB */
		{ "256", 16ull << 20 },
		{ "1024", 64ull << 20 },
		{ "1769", (1769ull << 20) / 16 & ~4095ull },
		{ "2048", 128ull << 20 },       /* the ceiling */
		{ "10240", 128ull << 20 },
		{ "64", 8ull << 20 },           /* the floor */
		{ "lots", 8ull << 20 },         /* unusable: Lambda's variable, not an error of ours */
		{ "0", 8ull << 20 },
	};
	struct kte_config cfg;
	struct env e;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		load_ok(&cfg, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", cases[i].mem);
		ck_assert_msg(cfg.ring_bytes == cases[i].want, "memory %s: ring %" PRIu64 ", want %" PRIu64,
		    cases[i].mem, cfg.ring_bytes, cases[i].want);
	}
	env_minimal(&e);
	env_set(&e, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024");
	env_set(&e, "KTE_RING_BYTES", "1M");
	ck_assert_int_eq(load(&e, &cfg), 0);
	ck_assert_uint_eq(cfg.ring_bytes, 1u << 20);
	/* A memory size Lambda got wrong does not hide the user's own error, nor replace it. */
	env_minimal(&e);
	env_set(&e, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "x");
	env_set(&e, "KTE_RING_BYTES", "1X");
	ck_assert_int_eq(load(&e, &cfg), -EINVAL);
	ck_assert(strstr(err, "KTE_RING_BYTES") != NULL);
	ck_assert_uint_eq(config_ring_default(0), 8ull << 20);
	ck_assert_uint_eq(config_ring_default(512), 32ull << 20);
}
END_TEST

START_TEST(test_partition_key)
{
	struct kte_config cfg;
	char key[300];

	load_ok(&cfg, "KTE_PARTITION_KEY", "request-id");
	ck_assert_int_eq(cfg.pkey_mode, PKEY_REQUEST_ID);
	load_ok(&cfg, "KTE_PARTITION_KEY", "random");
	ck_assert_int_eq(cfg.pkey_mode, PKEY_RANDOM);
	load_ok(&cfg, "KTE_PARTITION_KEY", "Function");
	ck_assert_int_eq(cfg.pkey_mode, PKEY_FUNCTION);
	load_ok(&cfg, "KTE_PARTITION_KEY", "fixed:shard-7");
	ck_assert_int_eq(cfg.pkey_mode, PKEY_FIXED);
	ck_assert_str_eq(cfg.pkey_fixed, "shard-7");
	memcpy(key, "fixed:", 6);
	memset(key + 6, 'k', 256);
	key[262] = '\0';
	load_ok(&cfg, "KTE_PARTITION_KEY", key);
	ck_assert_uint_eq(strlen(cfg.pkey_fixed), 256);
	key[262] = 'k';
	key[263] = '\0';
	load_bad("KTE_PARTITION_KEY", key);
	load_bad("KTE_PARTITION_KEY", "fixed:");
	load_bad("KTE_PARTITION_KEY", "shard");
}
END_TEST

START_TEST(test_telemetry_types)
{
	struct kte_config cfg;

	load_ok(&cfg, "KTE_TELEMETRY_TYPES", "platform");
	ck_assert_uint_eq(cfg.telemetry_types, TELEMETRY_PLATFORM);
	load_ok(&cfg, "KTE_TELEMETRY_TYPES", "function,extension");
	ck_assert_uint_eq(cfg.telemetry_types, TELEMETRY_FUNCTION | TELEMETRY_EXTENSION);
	load_ok(&cfg, "KTE_TELEMETRY_TYPES", "platform, function, extension");
	ck_assert_uint_eq(cfg.telemetry_types,
	    TELEMETRY_PLATFORM | TELEMETRY_FUNCTION | TELEMETRY_EXTENSION);
	load_ok(&cfg, "KTE_TELEMETRY_TYPES", "PLATFORM");
	ck_assert_uint_eq(cfg.telemetry_types, TELEMETRY_PLATFORM);
	load_bad("KTE_TELEMETRY_TYPES", "platform,logs");
	load_bad("KTE_TELEMETRY_TYPES", ",");
	load_bad("KTE_TELEMETRY_TYPES", "function;platform");
}
END_TEST

START_TEST(test_strings)
{
	struct kte_config cfg;
	struct env e;
	char longv[CONFIG_STR_MAX + 10];

	load_ok(&cfg, "KTE_LISTENER_HOST", "0.0.0.0");
	ck_assert_str_eq(cfg.listener_host, "0.0.0.0");
	load_ok(&cfg, "KTE_DROP_TYPES", "platform.report,platform.start");
	ck_assert_str_eq(cfg.drop_types, "platform.report,platform.start");

	/* Too long: the message names the variable (the value itself would flood the log). */
	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	env_minimal(&e);
	env_set(&e, "KTE_DROP_TYPES", longv);
	ck_assert_int_eq(load(&e, &cfg), -EINVAL);
	ck_assert(strstr(err, "KTE_DROP_TYPES") != NULL);
	ck_assert_str_eq(cfg.drop_types, "");
	env_minimal(&e);
	env_set(&e, "KTE_KINESIS_ENDPOINT", longv);
	ck_assert_int_eq(load(&e, &cfg), -EINVAL);
	ck_assert(strstr(err, "KTE_KINESIS_ENDPOINT") != NULL);
}
END_TEST

START_TEST(test_first_error_wins_others_default)
{
	struct kte_config cfg;
	struct env e;
	char small[24];

	env_minimal(&e);
	env_set(&e, "KTE_LOG_LEVEL", "loud");
	env_set(&e, "KTE_RING_BYTES", "1");
	env_set(&e, "KTE_FLUSH", "end");
	ck_assert_int_eq(load(&e, &cfg), -EINVAL);
	ck_assert(strstr(err, "KTE_LOG_LEVEL") != NULL);
	ck_assert(strstr(err, "KTE_RING_BYTES") == NULL);
	/* Bad values fall back to their defaults; good ones still apply. */
	ck_assert_int_eq(cfg.log_level, LOG_LEVEL_INFO);
	ck_assert_uint_eq(cfg.ring_bytes, 8u << 20);
	ck_assert_int_eq(cfg.flush, FLUSH_END);
	/* The destination is fine, so shipping stays on despite the other errors. */
	ck_assert(cfg.shipping_enabled);

	/* A small buffer truncates the message; a NULL one is allowed. */
	ck_assert_int_eq(config_load_from(&cfg, env_get, &e, small, sizeof(small)), -EINVAL);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_int_eq(config_load_from(&cfg, env_get, &e, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_config_load_environ)
{
	struct kte_config cfg;

	clearenv();
	ck_assert_int_eq(config_load(&cfg, err, sizeof(err)), -EINVAL);
	ck_assert(!cfg.shipping_enabled);
	setenv("KTE_STREAM_NAME", "env-stream", 1);
	setenv("AWS_REGION", "us-east-1", 1);
	setenv("KTE_RING_BYTES", "4M", 1);
	ck_assert_int_eq(config_load(&cfg, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.stream_name, "env-stream");
	ck_assert_uint_eq(cfg.ring_bytes, 4u << 20);
	setenv("KTE_RING_BYTES", "4X", 1);
	ck_assert_int_eq(config_load(&cfg, err, sizeof(err)), -EINVAL);
	ck_assert(strstr(err, "KTE_RING_BYTES=\"4X\"") != NULL);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_destination);
	tcase_add_test(tc, test_bad_arns);
	tcase_add_test(tc, test_numbers);
	tcase_add_test(tc, test_record_vs_request_size);
	tcase_add_test(tc, test_enums);
	tcase_add_test(tc, test_partition_key);
	tcase_add_test(tc, test_telemetry_types);
	tcase_add_test(tc, test_strings);
	tcase_add_test(tc, test_overflow);
	tcase_add_test(tc, test_ring_default_from_memory);
	tcase_add_test(tc, test_first_error_wins_others_default);
	tcase_add_test(tc, test_config_load_environ);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
