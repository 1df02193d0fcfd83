/*
 * Configuration: every KTE_ variable (and the AWS ones the extension reads) parsed
 * in one place, with defaults and ranges. A bad value yields one message naming the
 * variable, the value and what is allowed.
 */
#ifndef KTE_CONFIG_H
#define KTE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum flush_policy { FLUSH_ADAPTIVE = 0, FLUSH_END, FLUSH_PERIODIC, FLUSH_CONTINUOUS };
enum record_format { FORMAT_EVENT = 0, FORMAT_NDJSON, FORMAT_KPL };
enum compression { COMPRESSION_NONE = 0, COMPRESSION_GZIP };
enum partition_key_mode { PKEY_REQUEST_ID = 0, PKEY_RANDOM, PKEY_FUNCTION, PKEY_FIXED };
/* KTE_OVERFLOW: hold event/next while the ring is above its high-water mark, or never hold. */
enum overflow_policy { OVERFLOW_WAIT = 0, OVERFLOW_DROP };

/*
 * Default ring: 1/CONFIG_RING_MEMORY_DIVISOR of AWS_LAMBDA_FUNCTION_MEMORY_SIZE, within
 * [CONFIG_RING_MIN_DEFAULT, CONFIG_RING_MAX_DEFAULT] (docs/pressure.md says why).
 */
#define CONFIG_RING_MEMORY_DIVISOR 16u
#define CONFIG_RING_MIN_DEFAULT    (8ull << 20)
#define CONFIG_RING_MAX_DEFAULT    (128ull << 20)

/* Telemetry stream bits for KTE_TELEMETRY_TYPES. */
#define TELEMETRY_PLATFORM  0x1u
#define TELEMETRY_FUNCTION  0x2u
#define TELEMETRY_EXTENSION 0x4u

#define CONFIG_STR_MAX 512

struct kte_config {
	/* Destination */
	char stream_name[129];              /* KTE_STREAM_NAME */
	char stream_arn[CONFIG_STR_MAX];    /* KTE_STREAM_ARN */
	char kinesis_endpoint[CONFIG_STR_MAX]; /* KTE_KINESIS_ENDPOINT as given ("" = unset) */
	char region[64];                    /* the ARN's region, else AWS_REGION, else AWS_DEFAULT_REGION */
	char ca_bundle[CONFIG_STR_MAX];     /* KTE_CA_BUNDLE, "" = search the usual places */
	/* Where requests go: docs/configuration.md, "Which endpoint is used". */
	char endpoint_url[CONFIG_STR_MAX];  /* the URL in use: configured, else from the Kinesis rule set */
	char endpoint_source[32];           /* the variable it came from, or "the Kinesis endpoint rules" */
	bool use_fips;                      /* AWS_USE_FIPS_ENDPOINT */
	bool use_dual_stack;                /* AWS_USE_DUALSTACK_ENDPOINT */
	bool endpoint_cleartext;            /* http:// to a host off this machine (warned once at start) */

	/* Listener and subscription */
	char listener_host[256];            /* KTE_LISTENER_HOST, default sandbox.localdomain */
	uint16_t listener_port;             /* KTE_LISTENER_PORT, default 4243 */
	unsigned telemetry_types;           /* KTE_TELEMETRY_TYPES, default platform,function */
	char schema_version[16];            /* KTE_SCHEMA_VERSION, default 2025-01-29 */
	uint32_t buffer_max_items;          /* KTE_BUFFER_MAX_ITEMS 1000..10000, default 1000 */
	uint32_t buffer_max_bytes;          /* KTE_BUFFER_MAX_BYTES 262144..1048576, default 262144 */
	uint32_t buffer_timeout_ms;         /* KTE_BUFFER_TIMEOUT_MS 25..30000, default 25 (docs/internals/flush.md) */
	char drop_types[CONFIG_STR_MAX];    /* KTE_DROP_TYPES: comma list of event types dropped at intake */
	int min_log_level;                  /* KTE_MIN_FUNCTION_LOG_LEVEL: -1 = keep all; else 0 trace..5 fatal */

	/* Ring and records */
	uint64_t ring_bytes;                /* KTE_RING_BYTES, default from the function's memory (above) */
	uint32_t max_record_bytes;          /* KTE_MAX_RECORD_BYTES: Kinesis record limit incl. key, default 1 MiB */
	uint32_t max_request_bytes;         /* KTE_MAX_REQUEST_BYTES: PutRecords limit, default 5 MiB */
	enum record_format record_format;   /* KTE_RECORD_FORMAT event|ndjson|kpl */
	enum compression compression;       /* KTE_COMPRESSION none|gzip: each record's data */
	/*
	 * KTE_PARTITION_KEY (Kinesis hashes the key to pick a shard; dispatcher/pkey.h):
	 *   request-id (default): the event's record.requestId; id-less events (text logs)
	 *     take the id of the invocation in progress, until its platform.report; events
	 *     outside any invocation get a random key. Spreads invocations over shards and
	 *     keeps each invocation's events together, in order, on one shard.
	 *   random: a fresh random key per Kinesis record: even spread, fullest KPL records.
	 *   function: AWS_LAMBDA_FUNCTION_NAME (all on one shard: per-function order).
	 *   fixed:<key>: that key (1-256 characters).
	 */
	enum partition_key_mode pkey_mode;  /* KTE_PARTITION_KEY request-id|random|function|fixed:<key> */
	char pkey_fixed[257];
	uint32_t retry_base_ms;             /* KTE_RETRY_BASE_MS: backoff base, default 50 */
	uint32_t retry_max_ms;              /* KTE_RETRY_MAX_MS: backoff ceiling, default 20000 */
	uint32_t circuit_probe_ms;          /* KTE_CIRCUIT_PROBE_MS: retry interval once Kinesis refused
	                                       with a non-retryable error (circuit open), default 30000 */

	/* Flushing */
	enum flush_policy flush;            /* KTE_FLUSH adaptive|end|periodic|continuous */
	uint32_t flush_interval_ms;         /* KTE_FLUSH_INTERVAL_MS, periodic policy, default 10000 */
	uint32_t flush_budget_ms;           /* KTE_FLUSH_BUDGET_MS: max wait per invocation in `end`, default 500 */
	uint32_t shutdown_margin_ms;        /* KTE_SHUTDOWN_MARGIN_MS: exit this long before deadlineMs, default 100 */
	enum overflow_policy overflow;      /* KTE_OVERFLOW wait|drop, default wait */

	/* Self-metrics (controller/metrics.h): EMF lines on stdout */
	bool metrics;                       /* KTE_METRICS on|off, default on */
	char metrics_namespace[256];        /* KTE_METRICS_NAMESPACE, default KinesisTelemetryExtension */
	uint32_t metrics_interval_ms;       /* KTE_METRICS_INTERVAL_MS: at most one line per interval, default 60000 */

	/* Behaviour */
	int log_level;                      /* KTE_LOG_LEVEL error|warn|info|debug, default info */
	bool strict;                        /* KTE_STRICT=1: config errors become init/error */
	bool shipping_enabled;              /* false when the destination is missing or invalid */
};

/*
 * Fills cfg from the environment. Returns 0 when every value is valid, otherwise
 * -EINVAL with a one-line description in err (the first problem found); cfg then
 * still holds defaults for whatever was bad, and shipping_enabled says whether the
 * destination is usable. Not thread-safe (reads environ).
 */
int config_load(struct kte_config *cfg, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Same, but values come from get(name, ctx) instead of getenv: for tests. */
int config_load_from(struct kte_config *cfg, const char *(*get)(const char *name, void *ctx),
    void *ctx, char *err, size_t errlen) __attribute__((warn_unused_result));

const char *config_flush_name(enum flush_policy f);
const char *config_format_name(enum record_format f);
const char *config_overflow_name(enum overflow_policy o);
/* The default ring size for a function of memory_mb MB (0: unknown). */
uint64_t config_ring_default(uint64_t memory_mb);

#endif
