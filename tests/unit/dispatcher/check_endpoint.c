/*
 * Endpoint resolution: the Kinesis endpoint rule set's own test cases
 * (tests/data/endpoint-rules/endpoint-tests-1.json, read at run time from the repository
 * root or $KTE_ENDPOINT_RULES), the compiled-in partitions against partitions.json,
 * negative cases of our own (malformed ARNs, unknown regions, every partition), and the
 * URL split that gives the Host header and the path that is sent and signed; the
 * precedence of the variables that choose the endpoint (config); and a request through the
 * real client to a sink whose endpoint URL has a path, its signature verified against
 * the path the sink received.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "common/config.h"
#include "common/endpoint.h"
#include "dispatcher/kinesis_client.h"
#include "dispatcher/sigv4.h"
#include "kinesis_sink.h"

#define RULES_MIN_RUN 75        /* cases without ConsumerARN/ResourceARN in the copied file */

static char rules_dir[4096];

static json_object *
load_json(const char *name)
{
	const char *env = getenv("KTE_ENDPOINT_RULES");
	const char *cands[] = { env, "tests/data/endpoint-rules" };
	char path[8192];
	json_object *j;

	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		if (cands[i] == NULL || cands[i][0] == '\0')
			continue;
		snprintf(path, sizeof(path), "%s/%s", cands[i], name);
		if ((j = json_object_from_file(path)) != NULL) {
			snprintf(rules_dir, sizeof(rules_dir), "%s", cands[i]);
			return j;
		}
	}
	return NULL;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : NULL;
}

static bool
jbool(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/* Every case of the rule set's tests that PutRecords can meet. */
START_TEST(test_rule_set_cases)
{
	json_object *root = load_json("endpoint-tests-1.json"), *cases;
	int ran = 0, ran_data = 0, skipped = 0, failed = 0;

	ck_assert_msg(root != NULL, "tests/data/endpoint-rules/endpoint-tests-1.json not found: run from the "
	    "repository root or set KTE_ENDPOINT_RULES");
	ck_assert(json_object_object_get_ex(root, "testCases", &cases));
	for (size_t i = 0; i < json_object_array_length(cases); i++) {
		json_object *c = json_object_array_get_idx(cases, i), *params = NULL, *expect, *ep;
		struct endpoint_params p = { 0 };
		const char *doc = jstr(c, "documentation"), *want_url = NULL, *want_err;
		char url[1024], err[256];
		int rc;

		json_object_object_get_ex(c, "params", &params);
		ck_assert(json_object_object_get_ex(c, "expect", &expect));
		/* ConsumerARN and ResourceARN are parameters of other operations. */
		if (params != NULL && (jstr(params, "ConsumerARN") != NULL || jstr(params, "ResourceARN") != NULL)) {
			skipped++;
			continue;
		}
		if (params != NULL) {
			p.region = jstr(params, "Region");
			p.use_fips = jbool(params, "UseFIPS");
			p.use_dual_stack = jbool(params, "UseDualStack");
			p.endpoint = jstr(params, "Endpoint");
			p.stream_arn = jstr(params, "StreamARN");
			p.operation_type = jstr(params, "OperationType");
		}
		want_err = jstr(expect, "error");
		if (json_object_object_get_ex(expect, "endpoint", &ep))
			want_url = jstr(ep, "url");
		ck_assert_msg((want_url != NULL) != (want_err != NULL), "case %zu (%s): no expectation", i, doc);
		rc = endpoint_resolve(&p, url, sizeof(url), err, sizeof(err));
		if (want_url != NULL && (rc != 0 || strcmp(url, want_url) != 0)) {
			fprintf(stderr, "case %zu (%s): got rc %d url \"%s\" err \"%s\", want url \"%s\"\n", i, doc,
			    rc, url, err, want_url);
			failed++;
		} else if (want_err != NULL && (rc != -EINVAL || strcmp(err, want_err) != 0)) {
			fprintf(stderr, "case %zu (%s): got rc %d url \"%s\" err \"%s\", want error \"%s\"\n", i,
			    doc, rc, url, err, want_err);
			failed++;
		}
		ran++;
		if (p.operation_type == NULL || strcmp(p.operation_type, "data") == 0)
			ran_data++;
	}
	printf("endpoint rule set (%s): %d cases run (%d with OperationType data or unset, %d control), "
	    "%d skipped (ConsumerARN/ResourceARN), %d failed\n", rules_dir, ran, ran_data, ran - ran_data,
	    skipped, failed);
	json_object_put(root);
	ck_assert_int_eq(failed, 0);
	ck_assert_int_ge(ran, RULES_MIN_RUN);
}
END_TEST

/* The compiled-in partitions are partitions.json's: every output, every listed region. */
START_TEST(test_partitions_table)
{
	json_object *root = load_json("partitions.json"), *parts;
	int regions = 0;

	ck_assert_msg(root != NULL, "tests/data/endpoint-rules/partitions.json not found");
	ck_assert(json_object_object_get_ex(root, "partitions", &parts));
	ck_assert_int_ge(json_object_array_length(parts), 8);
	for (size_t i = 0; i < json_object_array_length(parts); i++) {
		json_object *pj = json_object_array_get_idx(parts, i), *out, *regs;
		const char *id = jstr(pj, "id");
		const struct endpoint_partition *pr = NULL;

		ck_assert(json_object_object_get_ex(pj, "outputs", &out));
		ck_assert(json_object_object_get_ex(pj, "regions", &regs));
		json_object_object_foreach(regs, name, val) {
			(void)val;
			pr = endpoint_partition_of(name);
			ck_assert_msg(strcmp(pr->name, id) == 0, "region %s: partition %s, want %s", name, pr->name, id);
			regions++;
		}
		ck_assert_msg(pr != NULL, "partition %s lists no region", id);
		ck_assert_str_eq(pr->dns_suffix, jstr(out, "dnsSuffix"));
		ck_assert_str_eq(pr->dual_stack_dns_suffix, jstr(out, "dualStackDnsSuffix"));
		ck_assert_int_eq(pr->supports_fips, jbool(out, "supportsFIPS"));
		ck_assert_int_eq(pr->supports_dual_stack, jbool(out, "supportsDualStack"));
	}
	ck_assert_int_ge(regions, 40);
	json_object_put(root);
}
END_TEST

struct rcase {
	const char *region;
	bool fips, ds;
	const char *arn;
	const char *want;               /* url, or "!" + error */
};

static void
run_rcases(const struct rcase *t, size_t n, const char *endpoint)
{
	for (size_t i = 0; i < n; i++) {
		struct endpoint_params p = { .region = t[i].region, .use_fips = t[i].fips,
		    .use_dual_stack = t[i].ds, .stream_arn = t[i].arn, .operation_type = "data",
		    .endpoint = endpoint };
		char url[512], err[256];
		int rc = endpoint_resolve(&p, url, sizeof(url), err, sizeof(err));

		if (t[i].want[0] == '!') {
			ck_assert_msg(rc == -EINVAL, "%s %s: rc %d url %s, want an error", t[i].region, t[i].arn, rc, url);
			ck_assert_msg(strcmp(err, t[i].want + 1) == 0, "%s %s: error \"%s\", want \"%s\"", t[i].region,
			    t[i].arn, err, t[i].want + 1);
		} else {
			ck_assert_msg(rc == 0, "%s %s: rc %d (%s)", t[i].region, t[i].arn, rc, err);
			ck_assert_msg(strcmp(url, t[i].want) == 0, "%s fips %d ds %d %s: %s, want %s", t[i].region,
			    t[i].fips, t[i].ds, t[i].arn, url, t[i].want);
		}
	}
}

#define ARN(part, region) "arn:" part ":kinesis:" region ":123456789012:stream/s"

/* Every partition, the partitions the copied cases do not cover, unknown regions. */
START_TEST(test_partitions_resolve)
{
	static const struct rcase t[] = {
		/* Unknown regions: by regex, else the aws partition (the rule set's default). */
		{ "mx-central-9", false, false, NULL, "https://kinesis.mx-central-9.amazonaws.com" },
		{ "xx-nowhere-1", false, false, NULL, "https://kinesis.xx-nowhere-1.amazonaws.com" },
		{ "moon", false, false, NULL, "https://kinesis.moon.amazonaws.com" },
		{ "cn-south-7", false, false, NULL, "https://kinesis.cn-south-7.amazonaws.com.cn" },
		{ "us-gov-south-9", true, false, NULL, "https://kinesis.us-gov-south-9.amazonaws.com" },
		{ "aws-global", false, false, NULL, "https://kinesis.aws-global.amazonaws.com" },
		/* aws-eusc */
		{ "eusc-de-east-1", false, false, NULL, "https://kinesis.eusc-de-east-1.amazonaws.eu" },
		{ "eusc-de-west-2", true, false, NULL, "https://kinesis-fips.eusc-de-west-2.amazonaws.eu" },
		{ "eusc-de-east-1", false, true, NULL,
		  "!DualStack is enabled but this partition does not support DualStack" },
		{ "eusc-fr-east-1", false, false, NULL, "https://kinesis.eusc-fr-east-1.amazonaws.com" },
		/* aws-iso-e, aws-iso-f */
		{ "eu-isoe-west-1", false, false, NULL, "https://kinesis.eu-isoe-west-1.cloud.adc-e.uk" },
		{ "eu-isoe-west-1", true, true, NULL,
		  "!FIPS and DualStack are enabled, but this partition does not support one or both" },
		{ "us-isof-south-1", false, false, NULL, "https://kinesis.us-isof-south-1.csp.hci.ic.gov" },
		{ "us-isof-east-1", true, false, NULL, "https://kinesis-fips.us-isof-east-1.csp.hci.ic.gov" },
		/* aws-iso, aws-iso-b */
		{ "us-iso-east-1", false, true, NULL,
		  "!DualStack is enabled but this partition does not support DualStack" },
		{ "us-isob-west-9", false, false, NULL, "https://kinesis.us-isob-west-9.sc2s.sgov.gov" },
	};

	run_rcases(t, sizeof(t) / sizeof(t[0]), NULL);
}
END_TEST

/* The account-based data endpoint in every partition, and its errors. */
START_TEST(test_stream_arn)
{
	static const struct rcase t[] = {
		{ "eu-west-1", false, false, ARN("aws", "eu-west-1"),
		  "https://123456789012.data-kinesis.eu-west-1.amazonaws.com" },
		{ "cn-north-1", false, true, ARN("aws-cn", "cn-north-1"),
		  "https://123456789012.data-kinesis.cn-north-1.api.amazonwebservices.com.cn" },
		/* No GovCloud special case in the ARN branch: the fips host. */
		{ "us-gov-west-1", true, false, ARN("aws-us-gov", "us-gov-west-1"),
		  "https://123456789012.data-kinesis-fips.us-gov-west-1.amazonaws.com" },
		{ "eusc-de-east-1", false, false, ARN("aws-eusc", "eusc-de-east-1"),
		  "https://123456789012.data-kinesis.eusc-de-east-1.amazonaws.eu" },
		{ "eusc-de-east-1", true, true, ARN("aws-eusc", "eusc-de-east-1"),
		  "!DualStack is enabled, but this partition does not support DualStack." },
		{ "eu-isoe-west-1", false, false, ARN("aws-iso-e", "eu-isoe-west-1"),
		  "https://123456789012.data-kinesis.eu-isoe-west-1.cloud.adc-e.uk" },
		{ "us-isof-south-1", true, false, ARN("aws-iso-f", "us-isof-south-1"),
		  "https://123456789012.data-kinesis-fips.us-isof-south-1.csp.hci.ic.gov" },
		{ "us-isof-south-1", false, true, ARN("aws-iso-f", "us-isof-south-1"),
		  "!DualStack is enabled but this partition does not support DualStack" },
		/* aws-iso and aws-iso-b keep the regional endpoint, whatever the ARN says. */
		{ "us-iso-west-1", false, false, "arn:nonsense", "https://kinesis.us-iso-west-1.c2s.ic.gov" },
		/* The ARN's partition must be the region's. */
		{ "cn-north-1", false, false, ARN("aws", "cn-north-1"),
		  "!Partition: aws from ARN doesn't match with partition name: aws-cn." },
		{ "eu-west-1", false, false, ARN("aws-cn", "eu-west-1"),
		  "!Partition: aws-cn from ARN doesn't match with partition name: aws." },
		{ "eusc-de-east-1", false, false, ARN("aws", "eusc-de-east-1"),
		  "!Partition: aws from ARN doesn't match with partition name: aws-eusc." },
		/* Malformed ARNs. */
		{ "eu-west-1", false, false, "", "!Invalid ARN: Failed to parse ARN." },
		{ "eu-west-1", false, false, "arn:aws:kinesis:eu-west-1:123456789012", "!Invalid ARN: Failed to parse ARN." },
		{ "eu-west-1", false, false, "arn:aws:kinesis:eu-west-1:123456789012:", "!Invalid ARN: Failed to parse ARN." },
		{ "eu-west-1", false, false, "arn:aws::eu-west-1:123456789012:stream/s", "!Invalid ARN: Failed to parse ARN." },
		{ "eu-west-1", false, false, "ARN:aws:kinesis:eu-west-1:123456789012:stream/s",
		  "!Invalid ARN: Failed to parse ARN." },
		{ "eu-west-1", false, false, "arn:aws:kinesis:eu-west-1:12.34:stream/s", "!Invalid ARN: Invalid account id." },
		{ "eu-west-1", false, false, "arn:aws:kinesis:eu-west-1:-1:stream/s", "!Invalid ARN: Invalid account id." },
		{ "eu-west-1", false, false, "arn:aws:kinesis:eu_west_1:123456789012:stream/s", "!Invalid ARN: Invalid region." },
		{ "eu-west-1", false, false,
		  "arn:aws:kinesis:eu-west-1-and-a-region-name-far-longer-than-sixty-three-characters-xx:1:stream/s",
		  "!Invalid ARN: Invalid region." },
		{ "eu-west-1", false, false, "arn:aws:firehose:eu-west-1:123456789012:deliverystream/s",
		  "!Invalid ARN: The ARN was not for the Kinesis service, found: firehose." },
		{ "eu-west-1", false, false, "arn:aws:kinesis:eu-west-1:123456789012:/s", "!Invalid ARN: No ARN type specified" },
		{ "eu-west-1", false, false, "arn:aws:kinesis:eu-west-1:123456789012:streams/s",
		  "!Invalid ARN: Kinesis ARNs don't support `streams` arn types." },
		{ "eu-west-1", false, false, "arn:aws:kinesis:eu-west-1:123456789012:stream:s",
		  "https://123456789012.data-kinesis.eu-west-1.amazonaws.com" },
	};

	run_rcases(t, sizeof(t) / sizeof(t[0]), NULL);
}
END_TEST

/* A configured endpoint wins over everything but FIPS and dual-stack, which it cannot honour. */
START_TEST(test_configured_endpoint)
{
	static const struct rcase t[] = {
		{ "eu-west-1", false, false, ARN("aws", "eu-west-1"), "http://127.0.0.1:4567/p/" },
		{ NULL, false, false, NULL, "http://127.0.0.1:4567/p/" },
		{ "eu-west-1", true, false, NULL, "!Invalid Configuration: FIPS and custom endpoint are not supported" },
		{ "eu-west-1", false, true, ARN("aws", "eu-west-1"),
		  "!Invalid Configuration: Dualstack and custom endpoint are not supported" },
	};
	struct endpoint_params none = { 0 };
	char url[16], err[128];

	run_rcases(t, sizeof(t) / sizeof(t[0]), "http://127.0.0.1:4567/p/");
	ck_assert_int_eq(endpoint_resolve(&none, url, sizeof(url), err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "Invalid Configuration: Missing Region");
	none.region = "ap-southeast-2";     /* https://kinesis.ap-southeast-2.amazonaws.com: 43 bytes */
	ck_assert_int_eq(endpoint_resolve(&none, url, sizeof(url), err, sizeof(err)), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_host_label)
{
	ck_assert(endpoint_host_label_valid("123456789012"));
	ck_assert(endpoint_host_label_valid("a-b"));
	ck_assert(endpoint_host_label_valid("A"));
	ck_assert(!endpoint_host_label_valid(""));
	ck_assert(!endpoint_host_label_valid("-a"));
	ck_assert(!endpoint_host_label_valid("a.b"));
	ck_assert(!endpoint_host_label_valid("a b"));
	ck_assert(endpoint_host_label_valid("123456789012345678901234567890123456789012345678901234567890123"));
	ck_assert(!endpoint_host_label_valid("1234567890123456789012345678901234567890123456789012345678901234"));
}
END_TEST

struct ucase {
	const char *url;
	const char *authority, *host, *path;    /* NULL authority: must be refused */
	bool https;
};

START_TEST(test_url_parse)
{
	static const struct ucase t[] = {
		{ "https://kinesis.eu-west-1.amazonaws.com", "kinesis.eu-west-1.amazonaws.com",
		  "kinesis.eu-west-1.amazonaws.com", "/", true },
		{ "HTTPS://Kinesis.example.com:443/", "Kinesis.example.com", "Kinesis.example.com", "/", true },
		{ "http://127.0.0.1:4567", "127.0.0.1:4567", "127.0.0.1", "/", false },
		{ "http://h:80/x", "h", "h", "/x", false },
		{ "https://h:8443/prefix/", "h:8443", "h", "/prefix/", true },
		{ "https://h/a//b/./c/../d", "h", "h", "/a/b/d", true },
		{ "https://h/a/b/..", "h", "h", "/a/", true },
		{ "https://h/..", "h", "h", "/", true },
		{ "https://h/a%20b/~x", "h", "h", "/a%20b/~x", true },
		{ "http://[::1]:9000/p", "[::1]:9000", "::1", "/p", false },
		{ "http://[::1]/", "[::1]", "::1", "/", false },
		{ "ftp://h/", NULL, NULL, NULL, false },
		{ "h:4567", NULL, NULL, NULL, false },
		{ "https://", NULL, NULL, NULL, true },
		{ "https://:443/", NULL, NULL, NULL, true },
		{ "https://user:pw@h/", NULL, NULL, NULL, true },
		{ "https://h/?a=1", NULL, NULL, NULL, true },
		{ "https://h/#f", NULL, NULL, NULL, true },
		{ "https://h:0/", NULL, NULL, NULL, true },
		{ "https://h:65536/", NULL, NULL, NULL, true },
		{ "https://h:12x/", NULL, NULL, NULL, true },
		{ "https://h:/", NULL, NULL, NULL, true },
		{ "https://h/a b", NULL, NULL, NULL, true },
		{ "https://h/a\"b", NULL, NULL, NULL, true },
		{ "https://h\r\nX: y/", NULL, NULL, NULL, true },
		{ "http://[::1/", NULL, NULL, NULL, false },
		{ "http://[::1]x/", NULL, NULL, NULL, false },
	};
	char longurl[2048];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct endpoint_url u;
		char err[128] = "";
		int rc = endpoint_url_parse(t[i].url, &u, err, sizeof(err));

		if (t[i].authority == NULL) {
			ck_assert_msg(rc < 0, "%s: accepted", t[i].url);
			continue;
		}
		ck_assert_msg(rc == 0, "%s: %d %s", t[i].url, rc, err);
		ck_assert_str_eq(u.authority, t[i].authority);
		ck_assert_str_eq(u.host, t[i].host);
		ck_assert_str_eq(u.path, t[i].path);
		ck_assert_int_eq(u.https, t[i].https);
	}
	memset(longurl, 'a', sizeof(longurl) - 1);
	longurl[sizeof(longurl) - 1] = '\0';
	memcpy(longurl, "https://h/", 10);
	{
		struct endpoint_url u;

		ck_assert_int_eq(endpoint_url_parse(longurl, &u, NULL, 0), -ENAMETOOLONG);
	}
}
END_TEST

START_TEST(test_loopback)
{
	ck_assert(endpoint_host_is_loopback("127.0.0.1"));
	ck_assert(endpoint_host_is_loopback("127.255.0.9"));
	ck_assert(endpoint_host_is_loopback("localhost"));
	ck_assert(endpoint_host_is_loopback("LOCALHOST"));
	ck_assert(endpoint_host_is_loopback("kinesis.localhost"));
	ck_assert(endpoint_host_is_loopback("::1"));
	ck_assert(!endpoint_host_is_loopback("128.0.0.1"));
	ck_assert(!endpoint_host_is_loopback("10.0.0.5"));
	ck_assert(!endpoint_host_is_loopback("127.0.0.1.example.com"));
	ck_assert(!endpoint_host_is_loopback("localhost.example.com"));
	ck_assert(!endpoint_host_is_loopback("kinesis-mock"));
	ck_assert(!endpoint_host_is_loopback("::2"));
	ck_assert(!endpoint_host_is_loopback("127.0.0.300"));
}
END_TEST


/* ---- Which endpoint the configuration chooses. ---- */

struct env {
	const char *names[16];
	const char *values[16];
	int n;
};

static const char *
env_get(const char *name, void *ctx)
{
	struct env *e = ctx;

	for (int i = e->n - 1; i >= 0; i--)      /* the last setting wins */
		if (strcmp(e->names[i], name) == 0)
			return e->values[i];
	return NULL;
}

/* Loads KTE_STREAM_NAME=s, AWS_REGION=eu-west-1 and the NULL-terminated name, value pairs. */
static int
load_env(struct kte_config *cfg, char *err, size_t errlen, ...)
{
	struct env e = { .n = 0 };
	va_list ap;
	const char *n;

	e.names[e.n] = "KTE_STREAM_NAME", e.values[e.n++] = "s";
	e.names[e.n] = "AWS_REGION", e.values[e.n++] = "eu-west-1";
	va_start(ap, errlen);
	while ((n = va_arg(ap, const char *)) != NULL && e.n < 16) {
		e.names[e.n] = n;
		e.values[e.n++] = va_arg(ap, const char *);
	}
	va_end(ap);
	err[0] = '\0';
	return config_load_from(cfg, env_get, &e, err, errlen);
}

#define LOAD_OK(cfg, ...) do { \
	char err_[512]; \
	int rc_ = load_env(cfg, err_, sizeof(err_), __VA_ARGS__, NULL); \
	ck_assert_msg(rc_ == 0 && (cfg)->shipping_enabled, "rc %d: %s", rc_, err_); \
} while (0)

#define LOAD_BAD(want, ...) do { \
	struct kte_config c_; \
	char err_[512]; \
	int rc_ = load_env(&c_, err_, sizeof(err_), __VA_ARGS__, NULL); \
	ck_assert_msg(rc_ == -EINVAL && !c_.shipping_enabled, "accepted (%s)", c_.endpoint_url); \
	ck_assert_msg(strstr(err_, want) != NULL, "error \"%s\" does not say \"%s\"", err_, want); \
} while (0)

START_TEST(test_config_precedence)
{
	struct kte_config cfg;

	LOAD_OK(&cfg, "KTE_LOG_LEVEL", "info");
	ck_assert_str_eq(cfg.endpoint_url, "https://kinesis.eu-west-1.amazonaws.com");
	ck_assert_str_eq(cfg.endpoint_source, "the Kinesis endpoint rules");
	/* Only AWS_ENDPOINT_URL_KINESIS, only AWS_ENDPOINT_URL: each is used. */
	LOAD_OK(&cfg, "AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:4567");
	ck_assert_str_eq(cfg.endpoint_url, "http://127.0.0.1:4567");
	ck_assert_str_eq(cfg.endpoint_source, "AWS_ENDPOINT_URL_KINESIS");
	LOAD_OK(&cfg, "AWS_ENDPOINT_URL", "http://127.0.0.1:4568");
	ck_assert_str_eq(cfg.endpoint_url, "http://127.0.0.1:4568");
	ck_assert_str_eq(cfg.endpoint_source, "AWS_ENDPOINT_URL");
	/* KTE_KINESIS_ENDPOINT > AWS_ENDPOINT_URL_KINESIS > AWS_ENDPOINT_URL. */
	LOAD_OK(&cfg, "AWS_ENDPOINT_URL", "http://127.0.0.1:1", "AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:2");
	ck_assert_str_eq(cfg.endpoint_url, "http://127.0.0.1:2");
	LOAD_OK(&cfg, "AWS_ENDPOINT_URL", "http://127.0.0.1:1", "AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:2",
	    "KTE_KINESIS_ENDPOINT", "http://127.0.0.1:3");
	ck_assert_str_eq(cfg.endpoint_url, "http://127.0.0.1:3");
	ck_assert_str_eq(cfg.endpoint_source, "KTE_KINESIS_ENDPOINT");
	/* Empty = unset. */
	LOAD_OK(&cfg, "AWS_ENDPOINT_URL_KINESIS", "", "AWS_ENDPOINT_URL", "http://127.0.0.1:1",
	    "AWS_USE_FIPS_ENDPOINT", "");
	ck_assert_str_eq(cfg.endpoint_url, "http://127.0.0.1:1");
	/* AWS_IGNORE_CONFIGURED_ENDPOINT_URLS drops the AWS variables, not the extension's own. */
	LOAD_OK(&cfg, "AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:2", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "TRUE");
	ck_assert_str_eq(cfg.endpoint_url, "https://kinesis.eu-west-1.amazonaws.com");
	LOAD_OK(&cfg, "KTE_KINESIS_ENDPOINT", "http://127.0.0.1:3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true");
	ck_assert_str_eq(cfg.endpoint_url, "http://127.0.0.1:3");
	LOAD_OK(&cfg, "AWS_ENDPOINT_URL", "http://127.0.0.1:1", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "false");
	ck_assert_str_eq(cfg.endpoint_url, "http://127.0.0.1:1");
}
END_TEST

START_TEST(test_config_rules)
{
	struct kte_config cfg;

	LOAD_OK(&cfg, "AWS_USE_FIPS_ENDPOINT", "true");
	ck_assert_str_eq(cfg.endpoint_url, "https://kinesis-fips.eu-west-1.amazonaws.com");
	LOAD_OK(&cfg, "AWS_USE_DUALSTACK_ENDPOINT", "True");
	ck_assert_str_eq(cfg.endpoint_url, "https://kinesis.eu-west-1.api.aws");
	LOAD_OK(&cfg, "AWS_USE_DUALSTACK_ENDPOINT", "true", "AWS_USE_FIPS_ENDPOINT", "true");
	ck_assert_str_eq(cfg.endpoint_url, "https://kinesis-fips.eu-west-1.api.aws");
	LOAD_OK(&cfg, "AWS_REGION", "us-iso-east-1");
	ck_assert_str_eq(cfg.endpoint_url, "https://kinesis.us-iso-east-1.c2s.ic.gov");
	LOAD_OK(&cfg, "AWS_REGION", "eusc-de-east-1");
	ck_assert_str_eq(cfg.endpoint_url, "https://kinesis.eusc-de-east-1.amazonaws.eu");
	LOAD_OK(&cfg, "AWS_REGION", "cn-northwest-1");
	ck_assert_str_eq(cfg.endpoint_url, "https://kinesis.cn-northwest-1.amazonaws.com.cn");
	/* A stream ARN: the account-based data endpoint of the ARN's region. */
	LOAD_OK(&cfg, "KTE_STREAM_ARN", "arn:aws:kinesis:us-east-2:123456789012:stream/s");
	ck_assert_str_eq(cfg.endpoint_url, "https://123456789012.data-kinesis.us-east-2.amazonaws.com");
	ck_assert_str_eq(cfg.region, "us-east-2");
	LOAD_OK(&cfg, "KTE_STREAM_ARN", "arn:aws-us-gov:kinesis:us-gov-west-1:123456789012:stream/s",
	    "AWS_USE_FIPS_ENDPOINT", "true");
	ck_assert_str_eq(cfg.endpoint_url, "https://123456789012.data-kinesis-fips.us-gov-west-1.amazonaws.com");
	/* ...unless an endpoint is configured. */
	LOAD_OK(&cfg, "KTE_STREAM_ARN", "arn:aws:kinesis:us-east-2:123456789012:stream/s",
	    "AWS_ENDPOINT_URL", "https://vpce-1.kinesis.us-east-2.vpce.amazonaws.com");
	ck_assert_str_eq(cfg.endpoint_url, "https://vpce-1.kinesis.us-east-2.vpce.amazonaws.com");
	/* Errors of the rule set become configuration errors that name the variables. */
	LOAD_BAD("Partition: aws-cn from ARN doesn't match with partition name: aws.",
	    "KTE_STREAM_ARN", "arn:aws-cn:kinesis:us-east-2:123456789012:stream/s");
	LOAD_BAD("FIPS and custom endpoint are not supported", "AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:1",
	    "AWS_USE_FIPS_ENDPOINT", "true");
	LOAD_BAD("AWS_USE_DUALSTACK_ENDPOINT=true", "KTE_KINESIS_ENDPOINT", "http://127.0.0.1:1",
	    "AWS_USE_DUALSTACK_ENDPOINT", "true");
	LOAD_BAD("DualStack is enabled but this partition does not support DualStack", "AWS_REGION", "us-isob-east-1",
	    "AWS_USE_DUALSTACK_ENDPOINT", "true");
	LOAD_BAD("AWS_USE_FIPS_ENDPOINT=\"yes\" is invalid", "AWS_USE_FIPS_ENDPOINT", "yes");
	LOAD_BAD("AWS_USE_DUALSTACK_ENDPOINT=\"1\" is invalid", "AWS_USE_DUALSTACK_ENDPOINT", "1");
	LOAD_BAD("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=\"on\" is invalid", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "on");
	LOAD_BAD("region \"eu-west-1.evil.com\" is invalid", "AWS_REGION", "eu-west-1.evil.com");
	LOAD_BAD("AWS_ENDPOINT_URL_KINESIS=\"ftp://h/\" is invalid", "AWS_ENDPOINT_URL_KINESIS", "ftp://h/");
	LOAD_BAD("AWS_ENDPOINT_URL=\"https://h/?x=1\" is invalid", "AWS_ENDPOINT_URL", "https://h/?x=1");
	LOAD_BAD("KTE_KINESIS_ENDPOINT=\"https://u:p@h/\" is invalid", "KTE_KINESIS_ENDPOINT", "https://u:p@h/");
}
END_TEST

START_TEST(test_config_cleartext)
{
	struct kte_config cfg;

	LOAD_OK(&cfg, "AWS_ENDPOINT_URL", "http://10.0.0.5:4567");
	ck_assert(cfg.endpoint_cleartext);
	LOAD_OK(&cfg, "AWS_ENDPOINT_URL_KINESIS", "http://kinesis-mock:4567/");
	ck_assert(cfg.endpoint_cleartext);
	LOAD_OK(&cfg, "KTE_KINESIS_ENDPOINT", "http://127.0.0.1:4567");
	ck_assert(!cfg.endpoint_cleartext);
	LOAD_OK(&cfg, "KTE_KINESIS_ENDPOINT", "http://localhost:4567");
	ck_assert(!cfg.endpoint_cleartext);
	LOAD_OK(&cfg, "KTE_KINESIS_ENDPOINT", "https://10.0.0.5:4567");
	ck_assert(!cfg.endpoint_cleartext);
	LOAD_OK(&cfg, "KTE_LOG_LEVEL", "info");
	ck_assert(!cfg.endpoint_cleartext);
}
END_TEST

/* ---- The path is signed as sent. ---- */

#define K_AKID "AKIDEXAMPLE"
#define K_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define K_TIME ((time_t)1440938160)     /* 20150830T123600Z */

static const char k_body[] = "{\"StreamName\":\"s\",\"Records\":[]}";

/* sigv4_sign_kinesis_path is the generic signer over POST <path>. */
START_TEST(test_sign_path)
{
	struct sigv4_credentials cred = { .access_key_id = K_AKID, .secret_access_key = K_SECRET };
	struct sigv4_kinesis_headers root, pre, pre2;
	struct sigv4_header hs[3] = { { "content-type", SIGV4_KINESIS_CONTENT_TYPE }, { "host", "h:4567" },
	    { "x-amz-target", "Kinesis_20131202.PutRecords" } };
	struct sigv4_request r = { .method = "POST", .path = "/prefix/", .headers = hs, .n_headers = 3,
	    .body = k_body, .body_len = sizeof(k_body) - 1 };
	struct sigv4_params p = { .region = "eu-west-1", .service = "kinesis", .now = K_TIME,
	    .normalize_path = true };
	struct sigv4_signed s;

	ck_assert_int_eq(sigv4_sign_kinesis_path(NULL, &cred, "eu-west-1", "h:4567", "/prefix/",
	    "Kinesis_20131202.PutRecords", k_body, sizeof(k_body) - 1, K_TIME, &pre), 0);
	ck_assert_int_eq(sigv4_sign(NULL, &cred, &r, &p, &s), 0);
	ck_assert_msg(strncmp(s.canonical_request, "POST\n/prefix/\n\n", 15) == 0, "%s", s.canonical_request);
	ck_assert_str_eq(pre.authorization, s.authorization);
	sigv4_signed_cleanup(&s);
	/* "/" is another signature: a verifier of the path would refuse one for the other. */
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &cred, "eu-west-1", "h:4567", "Kinesis_20131202.PutRecords",
	    k_body, sizeof(k_body) - 1, K_TIME, &root), 0);
	ck_assert_str_ne(root.authorization, pre.authorization);
	ck_assert_int_eq(sigv4_sign_kinesis_path(NULL, &cred, "eu-west-1", "h:4567", "/",
	    "Kinesis_20131202.PutRecords", k_body, sizeof(k_body) - 1, K_TIME, &pre2), 0);
	ck_assert_str_eq(root.authorization, pre2.authorization);
	ck_assert_int_eq(sigv4_sign_kinesis_path(NULL, &cred, "eu-west-1", "h", "prefix/",
	    "Kinesis_20131202.PutRecords", k_body, 1, K_TIME, &pre2), -EINVAL);
}
END_TEST

/* What the sink received, for the test thread. */
struct seen {
	pthread_mutex_t mu;
	unsigned n;
	char method[16], path[1024], auth[1024], date[64], token[4096], host[256], target[128], ctype[128];
	char *body;
	size_t body_len;
};

static void
seen_handler(void *ctx, const struct sink_request *req, struct sink_reply *rep)
{
	struct seen *s = ctx;

	(void)rep;
	pthread_mutex_lock(&s->mu);
	s->n++;
	snprintf(s->method, sizeof(s->method), "%s", req->method);
	snprintf(s->path, sizeof(s->path), "%s", req->path);
	snprintf(s->auth, sizeof(s->auth), "%s", req->authorization);
	snprintf(s->date, sizeof(s->date), "%s", req->amz_date);
	snprintf(s->token, sizeof(s->token), "%s", req->security_token);
	snprintf(s->host, sizeof(s->host), "%s", req->host);
	snprintf(s->target, sizeof(s->target), "%s", req->target);
	snprintf(s->ctype, sizeof(s->ctype), "%s", req->content_type);
	free(s->body);
	s->body = malloc(req->body_len + 1);
	if (s->body != NULL) {
		memcpy(s->body, req->body, req->body_len);
		s->body_len = req->body_len;
	}
	pthread_mutex_unlock(&s->mu);
}

/*
 * Recomputes, from what the sink received, the signature of that request claimed at path
 * (the received path, for a verifier) and says whether the received Authorization is it.
 */
static bool
signature_matches(const struct seen *s, const struct sigv4_credentials *cred, const char *region,
    const char *path)
{
	struct sigv4_header hs[3] = { { "content-type", s->ctype }, { "host", s->host },
	    { "x-amz-target", s->target } };
	struct sigv4_request r = { .method = s->method, .path = path, .headers = hs, .n_headers = 3,
	    .body = s->body, .body_len = s->body_len };
	struct sigv4_params p = { .region = region, .service = "kinesis", .normalize_path = true };
	struct sigv4_signed sg;
	struct tm tm = { 0 };
	bool same;

	ck_assert_ptr_nonnull(strptime(s->date, "%Y%m%dT%H%M%SZ", &tm));
	p.now = timegm(&tm);
	ck_assert_int_eq(sigv4_sign(NULL, cred, &r, &p, &sg), 0);
	same = strcmp(sg.authorization, s->auth) == 0;
	sigv4_signed_cleanup(&sg);
	return same;
}

/* One PutRecords through the real client to http://127.0.0.1:<sink port><suffix>. */
static void
client_roundtrip(const char *suffix, const char *want_path)
{
	struct sigv4_credentials cred = { .access_key_id = K_AKID, .secret_access_key = K_SECRET };
	struct seen s = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct kinesis_client *kc;
	struct kinesis_response resp;
	struct kte_config cfg;
	struct sink *sk;
	char ep[256], err[512];
	uint16_t port;
	int rc = 0;

	snprintf(cred.session_token, sizeof(cred.session_token), "token/with+chars=");
	setenv("AWS_ACCESS_KEY_ID", cred.access_key_id, 1);
	setenv("AWS_SECRET_ACCESS_KEY", cred.secret_access_key, 1);
	setenv("AWS_SESSION_TOKEN", cred.session_token, 1);
	ck_assert_ptr_nonnull(sk = sink_start(seen_handler, &s, &port));
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u%s", (unsigned)port, suffix);
	ck_assert_int_eq(load_env(&cfg, err, sizeof(err), "AWS_ENDPOINT_URL_KINESIS", ep, NULL), 0);
	ck_assert_ptr_nonnull(kc = kinesis_client_new(&cfg));
	ck_assert_int_eq(kinesis_client_start(kc, k_body, sizeof(k_body) - 1, 10000), 0);
	for (int i = 0; i < 200 && rc == 0; i++)
		ck_assert_int_ge(rc = kinesis_client_wait(kc, NULL, 0, 100, &resp), 0);
	ck_assert_int_eq(rc, 1);
	ck_assert_int_eq(resp.transport_err, 0);
	ck_assert_int_eq(resp.http_status, 200);
	pthread_mutex_lock(&s.mu);
	ck_assert_uint_eq(s.n, 1);
	ck_assert_str_eq(s.method, "POST");
	ck_assert_str_eq(s.path, want_path);
	ck_assert_str_eq(s.token, cred.session_token);
	ck_assert_msg(signature_matches(&s, &cred, "eu-west-1", s.path), "%s: the signature is not the "
	    "received request's", ep);
	/* The check can fail: the same request claimed at "/" does not verify. */
	if (strcmp(want_path, "/") != 0)
		ck_assert(!signature_matches(&s, &cred, "eu-west-1", "/"));
	pthread_mutex_unlock(&s.mu);
	kinesis_client_free(kc);
	sink_stop(sk);
	free(s.body);
}

START_TEST(test_client_path_signed)
{
	client_roundtrip("/prefix/", "/prefix/");
	client_roundtrip("/a//b/./c/../kinesis", "/a/b/kinesis");
	client_roundtrip("/sp%20ace/", "/sp%20ace/");
	client_roundtrip("", "/");
}
END_TEST

static Suite *
endpoint_suite(void)
{
	Suite *s = suite_create("endpoint");
	TCase *tc = tcase_create("rules");

	tcase_add_test(tc, test_rule_set_cases);
	tcase_add_test(tc, test_partitions_table);
	tcase_add_test(tc, test_partitions_resolve);
	tcase_add_test(tc, test_stream_arn);
	tcase_add_test(tc, test_configured_endpoint);
	tcase_add_test(tc, test_host_label);
	suite_add_tcase(s, tc);
	tc = tcase_create("url");
	tcase_add_test(tc, test_url_parse);
	tcase_add_test(tc, test_loopback);
	suite_add_tcase(s, tc);
	tc = tcase_create("config");
	tcase_add_test(tc, test_config_precedence);
	tcase_add_test(tc, test_config_rules);
	tcase_add_test(tc, test_config_cleartext);
	suite_add_tcase(s, tc);
	tc = tcase_create("signing");
	tcase_add_test(tc, test_sign_path);
	tcase_add_test(tc, test_client_path_signed);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(endpoint_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
