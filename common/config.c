#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "endpoint.h"
#include "log.h"

struct config_ctx {
	const char *(*get)(const char *name, void *ctx);
	void *get_ctx;
	char *err;
	size_t errlen;
	int rc;
};

static void config_fail(struct config_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the first problem only: one clear line beats a cascade. */
static void
config_fail(struct config_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->rc != 0)
		return;
	c->rc = -EINVAL;
	if (c->err == NULL || c->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
}

/* An empty variable counts as unset (AWS's emulator sets some to ""). */
static const char *
config_get(struct config_ctx *c, const char *name)
{
	const char *v = c->get(name, c->get_ctx);

	return (v != NULL && *v != '\0') ? v : NULL;
}

static void
config_u64(struct config_ctx *c, const char *name, uint64_t *out, uint64_t def, uint64_t min,
    uint64_t max)
{
	const char *v = config_get(c, name);
	char *end;
	unsigned long long n;
	uint64_t mult = 1;

	*out = def;
	if (v == NULL)
		return;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (end != v && *end != '\0') {
		/* Sizes may carry a binary suffix: 8M, 512K, 1G. */
		if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kib") == 0)
			mult = 1024;
		else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mib") == 0)
			mult = 1024 * 1024;
		else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "gib") == 0)
			mult = 1024ull * 1024 * 1024;
		else
			mult = 0;
	}
	/* Digits first: strtoull would also take leading blanks, a '+' or a '-'. */
	if (end == v || v[0] < '0' || v[0] > '9' || errno != 0 || mult == 0 || n > UINT64_MAX / mult ||
	    n * mult < min || n * mult > max) {
		config_fail(c, "%s=\"%s\" is invalid: expected an integer from %" PRIu64 " to %" PRIu64,
		    name, v, min, max);
		return;
	}
	*out = n * mult;
}

static void
config_u32(struct config_ctx *c, const char *name, uint32_t *out, uint32_t def, uint32_t min,
    uint32_t max)
{
	uint64_t v;

	config_u64(c, name, &v, def, min, max);
	*out = (uint32_t)v;
}

static void
config_str(struct config_ctx *c, const char *name, char *out, size_t outlen, const char *def)
{
	const char *v = config_get(c, name);

	if (v == NULL)
		v = def;
	if (strlen(v) >= outlen) {
		config_fail(c, "%s is too long (%zu bytes, at most %zu)", name, strlen(v), outlen - 1);
		v = def;
	}
	snprintf(out, outlen, "%s", v);
}

/* Returns the index of v in names, or -1 (case-insensitive). */
static int
config_enum(struct config_ctx *c, const char *name, const char *const *names, int n, int def)
{
	const char *v = config_get(c, name);
	char allowed[256] = "";

	if (v == NULL)
		return def;
	for (int i = 0; i < n; i++)
		if (strcasecmp(v, names[i]) == 0)
			return i;
	for (int i = 0; i < n; i++) {
		strncat(allowed, names[i], sizeof(allowed) - strlen(allowed) - 1);
		if (i + 1 < n)
			strncat(allowed, ", ", sizeof(allowed) - strlen(allowed) - 1);
	}
	config_fail(c, "%s=\"%s\" is invalid: expected one of %s", name, v, allowed);
	return def;
}

static bool
config_bool(struct config_ctx *c, const char *name, bool def)
{
	static const char *const names[] = { "0", "1", "false", "true", "no", "yes", "off", "on" };
	int i = config_enum(c, name, names, 8, def ? 1 : 0);

	return (i % 2) == 1;
}

static void
config_types(struct config_ctx *c, struct kte_config *cfg)
{
	const char *v = config_get(c, "KTE_TELEMETRY_TYPES");
	char buf[128], *tok, *save;

	cfg->telemetry_types = TELEMETRY_PLATFORM | TELEMETRY_FUNCTION;
	if (v == NULL)
		return;
	if (strlen(v) >= sizeof(buf))
		goto bad;
	snprintf(buf, sizeof(buf), "%s", v);
	cfg->telemetry_types = 0;
	for (tok = strtok_r(buf, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		if (strcasecmp(tok, "platform") == 0)
			cfg->telemetry_types |= TELEMETRY_PLATFORM;
		else if (strcasecmp(tok, "function") == 0)
			cfg->telemetry_types |= TELEMETRY_FUNCTION;
		else if (strcasecmp(tok, "extension") == 0)
			cfg->telemetry_types |= TELEMETRY_EXTENSION;
		else
			goto bad;
	}
	if (cfg->telemetry_types != 0)
		return;
bad:
	cfg->telemetry_types = TELEMETRY_PLATFORM | TELEMETRY_FUNCTION;
	config_fail(c, "KTE_TELEMETRY_TYPES=\"%s\" is invalid: expected a comma-separated list of "
	    "platform, function, extension", v);
}

static bool
stream_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 128)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		    *s == '_' || *s == '.' || *s == '-'))
			return false;
	return true;
}

/*
 * arn:aws[-cn|-us-gov...]:kinesis:<region>:<12 digits>:stream/<name>
 * On success copies the region into region (if non-NULL) and points *name at the stream name.
 */
static bool
stream_arn_parse(const char *arn, char *region, size_t regionlen, const char **name)
{
	const char *p = arn, *r, *acct;
	size_t i;

	if (strncmp(p, "arn:aws", 7) != 0 || (p = strchr(p + 4, ':')) == NULL)
		return false;
	if (strncmp(p, ":kinesis:", 9) != 0)
		return false;
	r = p + 9;
	if ((p = strchr(r, ':')) == NULL || p == r)
		return false;
	acct = p + 1;
	for (i = 0; i < 12; i++)
		if (acct[i] < '0' || acct[i] > '9')
			return false;
	if (strncmp(acct + 12, ":stream/", 8) != 0 || acct[20] == '\0' || strpbrk(acct + 20, " \t\n"))
		return false;
	if (region != NULL) {
		if ((size_t)(p - r) >= regionlen)
			return false;
		memcpy(region, r, (size_t)(p - r));
		region[p - r] = '\0';
	}
	*name = acct + 20;
	return true;
}

/* "true" or "false" (any case), as the SDKs read their boolean variables; unset = false. */
static bool
config_aws_bool(struct config_ctx *c, const char *name, bool *bad)
{
	const char *v = config_get(c, name);

	if (v == NULL || strcasecmp(v, "false") == 0)
		return false;
	if (strcasecmp(v, "true") == 0)
		return true;
	config_fail(c, "%s=\"%s\" is invalid: expected true or false", name, v);
	*bad = true;
	return false;
}

/*
 * The endpoint, as the AWS SDKs choose it: KTE_KINESIS_ENDPOINT, else
 * AWS_ENDPOINT_URL_KINESIS, else AWS_ENDPOINT_URL (these two unless
 * AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true), else the Kinesis endpoint rule set for the
 * region, AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT and the stream ARN
 * (PutRecords is a data-plane operation). Returns 0 or -EINVAL (reported).
 */
static int
config_endpoint(struct config_ctx *c, struct kte_config *cfg)
{
	static const char *const vars[] = { "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL" };
	struct endpoint_params p = { .region = cfg->region, .operation_type = "data" };
	struct endpoint_url u;
	char why[256];
	bool ignore, bad = false;

	cfg->use_fips = config_aws_bool(c, "AWS_USE_FIPS_ENDPOINT", &bad);
	cfg->use_dual_stack = config_aws_bool(c, "AWS_USE_DUALSTACK_ENDPOINT", &bad);
	ignore = config_aws_bool(c, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", &bad);
	if (bad)
		return -EINVAL;
	/* The region becomes part of a host name and of the signature's scope. */
	if (!endpoint_host_label_valid(cfg->region)) {
		config_fail(c, "region \"%s\" is invalid: expected letters, digits and '-'", cfg->region);
		return -EINVAL;
	}
	if (cfg->kinesis_endpoint[0] != '\0') {
		p.endpoint = cfg->kinesis_endpoint;
		snprintf(cfg->endpoint_source, sizeof(cfg->endpoint_source), "KTE_KINESIS_ENDPOINT");
	}
	for (size_t i = 0; i < 2 && p.endpoint == NULL && !ignore; i++) {
		if ((p.endpoint = config_get(c, vars[i])) == NULL)
			continue;
		if (strlen(p.endpoint) >= sizeof(cfg->endpoint_url)) {
			config_fail(c, "%s is too long (%zu bytes, at most %zu)", vars[i], strlen(p.endpoint),
			    sizeof(cfg->endpoint_url) - 1);
			return -EINVAL;
		}
		snprintf(cfg->endpoint_source, sizeof(cfg->endpoint_source), "%s", vars[i]);
	}
	if (p.endpoint == NULL)
		snprintf(cfg->endpoint_source, sizeof(cfg->endpoint_source), "the Kinesis endpoint rules");
	p.use_fips = cfg->use_fips;
	p.use_dual_stack = cfg->use_dual_stack;
	p.stream_arn = cfg->stream_arn[0] != '\0' ? cfg->stream_arn : NULL;
	if (endpoint_resolve(&p, cfg->endpoint_url, sizeof(cfg->endpoint_url), why, sizeof(why)) != 0) {
		config_fail(c, "no Kinesis endpoint: %s (region %s%s%s%s%s)", why[0] ? why : "the URL is too long",
		    cfg->region, p.endpoint != NULL ? ", endpoint from " : "",
		    p.endpoint != NULL ? cfg->endpoint_source : "",
		    cfg->use_fips ? ", AWS_USE_FIPS_ENDPOINT=true" : "",
		    cfg->use_dual_stack ? ", AWS_USE_DUALSTACK_ENDPOINT=true" : "");
		return -EINVAL;
	}
	if (endpoint_url_parse(cfg->endpoint_url, &u, why, sizeof(why)) != 0) {
		config_fail(c, "%s=\"%s\" is invalid: %s", cfg->endpoint_source, cfg->endpoint_url,
		    why[0] ? why : "too long");
		return -EINVAL;
	}
	cfg->endpoint_cleartext = !u.https && !endpoint_host_is_loopback(u.host);
	return 0;
}

static void
config_destination(struct config_ctx *c, struct kte_config *cfg)
{
	char arn_region[64] = "";
	const char *arn_name = NULL;

	config_str(c, "KTE_STREAM_NAME", cfg->stream_name, sizeof(cfg->stream_name), "");
	config_str(c, "KTE_STREAM_ARN", cfg->stream_arn, sizeof(cfg->stream_arn), "");
	config_str(c, "KTE_KINESIS_ENDPOINT", cfg->kinesis_endpoint, sizeof(cfg->kinesis_endpoint), "");
	config_str(c, "KTE_CA_BUNDLE", cfg->ca_bundle, sizeof(cfg->ca_bundle), "");
	if (config_get(c, "AWS_REGION") != NULL)
		config_str(c, "AWS_REGION", cfg->region, sizeof(cfg->region), "");
	else
		config_str(c, "AWS_DEFAULT_REGION", cfg->region, sizeof(cfg->region), "");

	cfg->shipping_enabled = false;
	if (cfg->stream_name[0] == '\0' && cfg->stream_arn[0] == '\0') {
		config_fail(c, "no destination: set KTE_STREAM_NAME or KTE_STREAM_ARN");
		return;
	}
	if (cfg->stream_name[0] != '\0' && !stream_name_valid(cfg->stream_name)) {
		config_fail(c, "KTE_STREAM_NAME=\"%s\" is invalid: expected 1-128 characters of "
		    "[a-zA-Z0-9_.-]", cfg->stream_name);
		return;
	}
	if (cfg->stream_arn[0] != '\0' &&
	    !stream_arn_parse(cfg->stream_arn, arn_region, sizeof(arn_region), &arn_name)) {
		config_fail(c, "KTE_STREAM_ARN=\"%s\" is invalid: expected "
		    "arn:aws:kinesis:<region>:<account>:stream/<name>", cfg->stream_arn);
		return;
	}
	/* Both given: Kinesis refuses a request whose name and ARN disagree. */
	if (cfg->stream_name[0] != '\0' && arn_name != NULL && strcmp(arn_name, cfg->stream_name) != 0) {
		config_fail(c, "KTE_STREAM_ARN=\"%s\" is invalid: it names another stream than "
		    "KTE_STREAM_NAME=\"%s\"", cfg->stream_arn, cfg->stream_name);
		return;
	}
	/* A stream ARN names its region: call that region's endpoint, whatever AWS_REGION says. */
	if (arn_region[0] != '\0')
		snprintf(cfg->region, sizeof(cfg->region), "%s", arn_region);
	if (cfg->region[0] == '\0') {
		config_fail(c, "no region: set AWS_REGION (Lambda always does)");
		return;
	}
	if (config_endpoint(c, cfg) == 0)
		cfg->shipping_enabled = true;
}

static void
config_partition_key(struct config_ctx *c, struct kte_config *cfg)
{
	const char *v = config_get(c, "KTE_PARTITION_KEY");

	cfg->pkey_mode = PKEY_REQUEST_ID;
	cfg->pkey_fixed[0] = '\0';
	if (v == NULL || strcasecmp(v, "request-id") == 0)
		return;
	if (strcasecmp(v, "random") == 0)
		cfg->pkey_mode = PKEY_RANDOM;
	else if (strcasecmp(v, "function") == 0)
		cfg->pkey_mode = PKEY_FUNCTION;
	else if (strncasecmp(v, "fixed:", 6) == 0 && strlen(v + 6) >= 1 && strlen(v + 6) <= 256) {
		cfg->pkey_mode = PKEY_FIXED;
		snprintf(cfg->pkey_fixed, sizeof(cfg->pkey_fixed), "%s", v + 6);
	} else
		config_fail(c, "KTE_PARTITION_KEY=\"%s\" is invalid: expected request-id, random, "
		    "function or fixed:<1-256 characters>", v);
}

static void
config_min_log_level(struct config_ctx *c, struct kte_config *cfg)
{
	static const char *const names[] = { "trace", "debug", "info", "warn", "error", "fatal" };
	const char *v = config_get(c, "KTE_MIN_FUNCTION_LOG_LEVEL");

	cfg->min_log_level = v == NULL ? -1 : config_enum(c, "KTE_MIN_FUNCTION_LOG_LEVEL", names, 6, -1);
}

/*
 * CloudWatch namespaces: 1-255 of [A-Za-z0-9.-_/#: ], not starting with "AWS/" (reserved
 * for AWS services). A bad one would make CloudWatch drop every line, silently.
 */
static void
config_metrics(struct config_ctx *c, struct kte_config *cfg)
{
	const char *p;

	cfg->metrics = config_bool(c, "KTE_METRICS", true);
	config_str(c, "KTE_METRICS_NAMESPACE", cfg->metrics_namespace, sizeof(cfg->metrics_namespace),
	    "KinesisTelemetryExtension");
	config_u32(c, "KTE_METRICS_INTERVAL_MS", &cfg->metrics_interval_ms, 60000, 1000, 3600000);
	for (p = cfg->metrics_namespace; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr(".-_/#: ", *p) != NULL))
			break;
	if (*p != '\0' || strncmp(cfg->metrics_namespace, "AWS/", 4) == 0) {
		config_fail(c, "KTE_METRICS_NAMESPACE=\"%s\" is invalid: expected 1-255 characters of "
		    "[A-Za-z0-9.-_/#: ], not starting with AWS/", cfg->metrics_namespace);
		snprintf(cfg->metrics_namespace, sizeof(cfg->metrics_namespace), "KinesisTelemetryExtension");
	}
}

int
config_load_from(struct kte_config *cfg, const char *(*get)(const char *, void *), void *ctx,
    char *err, size_t errlen)
{
	static const char *const flushes[] = { "adaptive", "end", "periodic", "continuous" };
	static const char *const formats[] = { "event", "ndjson", "kpl" };
	static const char *const compressions[] = { "none", "gzip" };
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	static const char *const schemas[] = { "2022-07-01", "2022-12-13", "2025-01-29" };
	static const char *const overflows[] = { "wait", "drop" };
	struct config_ctx c = { get, ctx, err, errlen, 0 };
	uint32_t port;
	int schema;

	memset(cfg, 0, sizeof(*cfg));
	if (err != NULL && errlen > 0)
		err[0] = '\0';

	/* Log level first, so that the remaining problems can be logged at the right level. */
	cfg->log_level = config_enum(&c, "KTE_LOG_LEVEL", levels, 4, LOG_LEVEL_INFO);
	cfg->strict = config_bool(&c, "KTE_STRICT", false);

	config_str(&c, "KTE_LISTENER_HOST", cfg->listener_host, sizeof(cfg->listener_host),
	    "sandbox.localdomain");
	config_u32(&c, "KTE_LISTENER_PORT", &port, 4243, 1024, 65535);
	if (port == 9001) {
		config_fail(&c, "KTE_LISTENER_PORT=9001 is invalid: Lambda reserves port 9001");
		port = 4243;
	}
	cfg->listener_port = (uint16_t)port;
	config_types(&c, cfg);
	schema = config_enum(&c, "KTE_SCHEMA_VERSION", schemas, 3, 2);
	snprintf(cfg->schema_version, sizeof(cfg->schema_version), "%s", schemas[schema]);
	config_u32(&c, "KTE_BUFFER_MAX_ITEMS", &cfg->buffer_max_items, 1000, 1000, 10000);
	config_u32(&c, "KTE_BUFFER_MAX_BYTES", &cfg->buffer_max_bytes, 262144, 262144, 1048576);
	/* 25 ms, the minimum: `end` waits for platform.runtimeDone, which Lambda holds up to this long. */
	config_u32(&c, "KTE_BUFFER_TIMEOUT_MS", &cfg->buffer_timeout_ms, 25, 25, 30000);
	config_str(&c, "KTE_DROP_TYPES", cfg->drop_types, sizeof(cfg->drop_types), "");
	config_min_log_level(&c, cfg);

	/*
	 * Default: a sixteenth of the function's memory, 8 to 128 MiB (8 MiB on a 128 MB
	 * function): a burst the stream cannot take at once waits in the ring, and a larger
	 * function both logs more and has the memory to spare. An unusable memory size (not
	 * ours to validate) gives the minimum.
	 */
	{
		uint64_t mem = 0;

		if (config_get(&c, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE") != NULL) {
			struct config_ctx quiet = c;    /* a bad value here is Lambda's, not the user's */

			quiet.err = NULL;
			quiet.errlen = 0;
			quiet.rc = 0;
			config_u64(&quiet, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &mem, 0, 1, 1u << 20);
			if (quiet.rc != 0)
				mem = 0;
		}
		config_u64(&c, "KTE_RING_BYTES", &cfg->ring_bytes, config_ring_default(mem), 64u << 10,
		    1ull << 30);
	}
	config_u32(&c, "KTE_MAX_RECORD_BYTES", &cfg->max_record_bytes, 1u << 20, 1024, 10u << 20);
	config_u32(&c, "KTE_MAX_REQUEST_BYTES", &cfg->max_request_bytes, 5u << 20, 1024, 10u << 20);
	if (cfg->max_request_bytes < cfg->max_record_bytes)
		config_fail(&c, "KTE_MAX_REQUEST_BYTES=%" PRIu32 " is smaller than KTE_MAX_RECORD_BYTES=%"
		    PRIu32, cfg->max_request_bytes, cfg->max_record_bytes);
	cfg->record_format = config_enum(&c, "KTE_RECORD_FORMAT", formats, 3, FORMAT_EVENT);
	cfg->compression = config_enum(&c, "KTE_COMPRESSION", compressions, 2, COMPRESSION_NONE);
	if (cfg->compression == COMPRESSION_GZIP && cfg->record_format == FORMAT_KPL)
		config_fail(&c, "KTE_COMPRESSION=gzip does not go with KTE_RECORD_FORMAT=kpl (KPL consumers "
		    "expect aggregated records as they are): use event or ndjson");
	config_partition_key(&c, cfg);
	config_u32(&c, "KTE_RETRY_BASE_MS", &cfg->retry_base_ms, 50, 1, 10000);
	config_u32(&c, "KTE_RETRY_MAX_MS", &cfg->retry_max_ms, 20000, 10, 300000);
	config_u32(&c, "KTE_CIRCUIT_PROBE_MS", &cfg->circuit_probe_ms, 30000, 10, 3600000);

	cfg->flush = config_enum(&c, "KTE_FLUSH", flushes, 4, FLUSH_ADAPTIVE);
	config_u32(&c, "KTE_FLUSH_INTERVAL_MS", &cfg->flush_interval_ms, 10000, 100, 3600000);
	config_u32(&c, "KTE_FLUSH_BUDGET_MS", &cfg->flush_budget_ms, 500, 0, 60000);
	config_u32(&c, "KTE_SHUTDOWN_MARGIN_MS", &cfg->shutdown_margin_ms, 100, 10, 1000);
	cfg->overflow = config_enum(&c, "KTE_OVERFLOW", overflows, 2, OVERFLOW_WAIT);

	config_metrics(&c, cfg);

	/* Last: a missing destination is the most common problem, but the others are more specific. */
	config_destination(&c, cfg);
	return c.rc;
}

static const char *
config_getenv(const char *name, void *ctx)
{
	(void)ctx;
	return getenv(name);
}

int
config_load(struct kte_config *cfg, char *err, size_t errlen)
{
	return config_load_from(cfg, config_getenv, NULL, err, errlen);
}

const char *
config_flush_name(enum flush_policy f)
{
	static const char *const names[] = { "adaptive", "end", "periodic", "continuous" };

	return (unsigned)f < 4 ? names[f] : "?";
}

const char *
config_format_name(enum record_format f)
{
	static const char *const names[] = { "event", "ndjson", "kpl" };

	return (unsigned)f < 3 ? names[f] : "?";
}

const char *
config_overflow_name(enum overflow_policy o)
{
	static const char *const names[] = { "wait", "drop" };

	return (unsigned)o < 2 ? names[o] : "?";
}

uint64_t
config_ring_default(uint64_t memory_mb)
{
	uint64_t b = memory_mb * (1ull << 20) / CONFIG_RING_MEMORY_DIVISOR;

	if (memory_mb == 0 || memory_mb > (1u << 20) || b < CONFIG_RING_MIN_DEFAULT)
		return CONFIG_RING_MIN_DEFAULT;
	if (b > CONFIG_RING_MAX_DEFAULT)
		return CONFIG_RING_MAX_DEFAULT;
	return b & ~(uint64_t)4095;
}
