#include "endpoint.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * partitions.json (botocore/data/partitions.json, version 1.1; see
 * tests/data/endpoint-rules/SOURCE.md). Order matters for the regex step: it is the
 * file's order.
 */
static const char *const aws_prefixes[] = { "us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx", NULL };
static const char *const aws_regions[] = {
	"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
	"ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
	"ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "aws-global", "ca-central-1", "ca-west-1",
	"eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2",
	"eu-west-3", "il-central-1", "me-central-1", "me-south-1", "mx-central-1", "sa-east-1", "us-east-1",
	"us-east-2", "us-west-1", "us-west-2", NULL,
};
static const char *const cn_prefixes[] = { "cn", NULL };
static const char *const cn_regions[] = { "aws-cn-global", "cn-north-1", "cn-northwest-1", NULL };
static const char *const eusc_prefixes[] = { "eusc-de", NULL };
static const char *const eusc_regions[] = { "eusc-de-east-1", NULL };
static const char *const iso_prefixes[] = { "us-iso", NULL };
static const char *const iso_regions[] = { "aws-iso-global", "us-iso-east-1", "us-iso-west-1", NULL };
static const char *const isob_prefixes[] = { "us-isob", NULL };
static const char *const isob_regions[] = { "aws-iso-b-global", "us-isob-east-1", NULL };
static const char *const isoe_prefixes[] = { "eu-isoe", NULL };
static const char *const isoe_regions[] = { "aws-iso-e-global", "eu-isoe-west-1", NULL };
static const char *const isof_prefixes[] = { "us-isof", NULL };
static const char *const isof_regions[] = { "aws-iso-f-global", "us-isof-east-1", "us-isof-south-1", NULL };
static const char *const gov_prefixes[] = { "us-gov", NULL };
static const char *const gov_regions[] = { "aws-us-gov-global", "us-gov-east-1", "us-gov-west-1", NULL };

static const struct endpoint_partition partitions[] = {
	{ "aws", "amazonaws.com", "api.aws", true, true, aws_prefixes, aws_regions },
	{ "aws-cn", "amazonaws.com.cn", "api.amazonwebservices.com.cn", true, true, cn_prefixes, cn_regions },
	{ "aws-eusc", "amazonaws.eu", "api.amazonwebservices.eu", true, false, eusc_prefixes, eusc_regions },
	{ "aws-iso", "c2s.ic.gov", "api.aws.ic.gov", true, false, iso_prefixes, iso_regions },
	{ "aws-iso-b", "sc2s.sgov.gov", "api.aws.scloud", true, false, isob_prefixes, isob_regions },
	{ "aws-iso-e", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk", true, false, isoe_prefixes, isoe_regions },
	{ "aws-iso-f", "csp.hci.ic.gov", "api.aws.hci.ic.gov", true, false, isof_prefixes, isof_regions },
	{ "aws-us-gov", "amazonaws.com", "api.aws", true, true, gov_prefixes, gov_regions },
};
#define N_PARTITIONS (sizeof(partitions) / sizeof(partitions[0]))

static bool
is_word(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* region =~ ^<prefix>\-\w+\-\d+$ (\w and \d are ASCII, as in the SDKs). */
static bool
region_matches(const char *region, const char *prefix)
{
	size_t n = strlen(prefix);
	const char *p = region + n + 1, *q;

	if (strncmp(region, prefix, n) != 0 || region[n] != '-')
		return false;
	for (q = p; is_word(*q); q++)
		;
	if (q == p || *q != '-')
		return false;
	for (p = ++q; *q >= '0' && *q <= '9'; q++)
		;
	return q != p && *q == '\0';
}

const struct endpoint_partition *
endpoint_partition_of(const char *region)
{
	for (size_t i = 0; i < N_PARTITIONS; i++)
		for (const char *const *r = partitions[i].regions; *r != NULL; r++)
			if (strcmp(region, *r) == 0)
				return &partitions[i];
	for (size_t i = 0; i < N_PARTITIONS; i++)
		for (const char *const *pf = partitions[i].prefixes; *pf != NULL; pf++)
			if (region_matches(region, *pf))
				return &partitions[i];
	return &partitions[0];
}

bool
endpoint_host_label_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static int ep_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
ep_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int ep_url(char *url, size_t urllen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
ep_url(char *url, size_t urllen, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(url, urllen, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= urllen ? -ENAMETOOLONG : 0;
}

/* aws.parseArn: arn:<partition>:<service>:<region>:<account>:<resource>, resource split on ':' and '/'. */
struct parsed_arn {
	char partition[128];
	char service[128];
	char region[128];
	char account[128];
	char type[128];                 /* resourceId[0] */
};

static bool
arn_field(const char **p, char *out, size_t outlen, bool last)
{
	const char *e = last ? *p + strlen(*p) : strchr(*p, ':');
	size_t n;

	if (e == NULL)
		return false;
	/* Longer than any valid value: keep a truncated copy that still fails every check. */
	n = (size_t)(e - *p) < outlen ? (size_t)(e - *p) : outlen - 1;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p = last ? e : e + 1;
	return true;
}

static bool
arn_parse(const char *s, struct parsed_arn *a)
{
	const char *p = s, *res;
	size_t n;

	if (strncmp(p, "arn:", 4) != 0)
		return false;
	p += 4;
	if (!arn_field(&p, a->partition, sizeof(a->partition), false) ||
	    !arn_field(&p, a->service, sizeof(a->service), false) ||
	    !arn_field(&p, a->region, sizeof(a->region), false) ||
	    !arn_field(&p, a->account, sizeof(a->account), false))
		return false;
	res = p;
	if (a->partition[0] == '\0' || a->service[0] == '\0' || res[0] == '\0')
		return false;
	n = strcspn(res, ":/");
	if (n >= sizeof(a->type))
		n = sizeof(a->type) - 1;        /* longer than any type: reported truncated */
	memcpy(a->type, res, n);
	a->type[n] = '\0';
	return true;
}

/* The StreamARN branch: the account-based endpoint <account>.<op>-kinesis[-fips].<region>.<suffix>. */
static int
resolve_stream_arn(const struct endpoint_params *p, const struct endpoint_partition *pr, char *url,
    size_t urllen, char *err, size_t errlen)
{
	struct parsed_arn a;
	const char *op = p->operation_type;

	memset(&a, 0, sizeof(a));
	if (!arn_parse(p->stream_arn, &a))
		return ep_fail(err, errlen, "Invalid ARN: Failed to parse ARN.");
	if (!endpoint_host_label_valid(a.account))
		return ep_fail(err, errlen, "Invalid ARN: Invalid account id.");
	if (!endpoint_host_label_valid(a.region))
		return ep_fail(err, errlen, "Invalid ARN: Invalid region.");
	if (strcmp(a.service, "kinesis") != 0)
		return ep_fail(err, errlen, "Invalid ARN: The ARN was not for the Kinesis service, found: %s.",
		    a.service);
	if (a.type[0] == '\0')
		return ep_fail(err, errlen, "Invalid ARN: No ARN type specified");
	if (strcmp(a.type, "stream") != 0)
		return ep_fail(err, errlen, "Invalid ARN: Kinesis ARNs don't support `%s` arn types.", a.type);
	if (strcmp(pr->name, a.partition) != 0)
		return ep_fail(err, errlen, "Partition: %s from ARN doesn't match with partition name: %s.",
		    a.partition, pr->name);
	if (op == NULL)
		return ep_fail(err, errlen, "Operation Type is not set. Please contact service team for resolution.");
	if (p->use_fips && p->use_dual_stack) {
		if (!pr->supports_fips)
			return ep_fail(err, errlen, "FIPS is enabled, but this partition does not support FIPS.");
		if (!pr->supports_dual_stack)
			return ep_fail(err, errlen, "DualStack is enabled, but this partition does not support DualStack.");
		return ep_url(url, urllen, "https://%s.%s-kinesis-fips.%s.%s", a.account, op, p->region,
		    pr->dual_stack_dns_suffix);
	}
	if (p->use_fips) {
		if (!pr->supports_fips)
			return ep_fail(err, errlen, "FIPS is enabled but this partition does not support FIPS");
		return ep_url(url, urllen, "https://%s.%s-kinesis-fips.%s.%s", a.account, op, p->region,
		    pr->dns_suffix);
	}
	if (p->use_dual_stack) {
		if (!pr->supports_dual_stack)
			return ep_fail(err, errlen, "DualStack is enabled but this partition does not support DualStack");
		return ep_url(url, urllen, "https://%s.%s-kinesis.%s.%s", a.account, op, p->region,
		    pr->dual_stack_dns_suffix);
	}
	return ep_url(url, urllen, "https://%s.%s-kinesis.%s.%s", a.account, op, p->region, pr->dns_suffix);
}

/* The regional rules: kinesis[-fips].<region>.<suffix>. */
static int
resolve_regional(const struct endpoint_params *p, const struct endpoint_partition *pr, char *url,
    size_t urllen, char *err, size_t errlen)
{
	if (p->use_fips && p->use_dual_stack) {
		if (!pr->supports_fips || !pr->supports_dual_stack)
			return ep_fail(err, errlen, "FIPS and DualStack are enabled, but this partition does not "
			    "support one or both");
		return ep_url(url, urllen, "https://kinesis-fips.%s.%s", p->region, pr->dual_stack_dns_suffix);
	}
	if (p->use_fips) {
		if (!pr->supports_fips)
			return ep_fail(err, errlen, "FIPS is enabled but this partition does not support FIPS");
		/* GovCloud's regular endpoint is the FIPS one. */
		if (strcmp(pr->name, "aws-us-gov") == 0)
			return ep_url(url, urllen, "https://kinesis.%s.amazonaws.com", p->region);
		return ep_url(url, urllen, "https://kinesis-fips.%s.%s", p->region, pr->dns_suffix);
	}
	if (p->use_dual_stack) {
		if (!pr->supports_dual_stack)
			return ep_fail(err, errlen, "DualStack is enabled but this partition does not support DualStack");
		return ep_url(url, urllen, "https://kinesis.%s.%s", p->region, pr->dual_stack_dns_suffix);
	}
	return ep_url(url, urllen, "https://kinesis.%s.%s", p->region, pr->dns_suffix);
}

int
endpoint_resolve(const struct endpoint_params *p, char *url, size_t urllen, char *err, size_t errlen)
{
	const struct endpoint_partition *pr;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (urllen > 0)
		url[0] = '\0';
	/* The rule set leaves the two oldest isolated partitions on the regional endpoint. */
	if (p->stream_arn != NULL && p->endpoint == NULL && p->region != NULL) {
		pr = endpoint_partition_of(p->region);
		if (strcmp(pr->name, "aws-iso") != 0 && strcmp(pr->name, "aws-iso-b") != 0)
			return resolve_stream_arn(p, pr, url, urllen, err, errlen);
	}
	if (p->endpoint != NULL) {
		if (p->use_fips)
			return ep_fail(err, errlen, "Invalid Configuration: FIPS and custom endpoint are not supported");
		if (p->use_dual_stack)
			return ep_fail(err, errlen, "Invalid Configuration: Dualstack and custom endpoint are not "
			    "supported");
		return ep_url(url, urllen, "%s", p->endpoint);
	}
	if (p->region != NULL)
		return resolve_regional(p, endpoint_partition_of(p->region), url, urllen, err, errlen);
	return ep_fail(err, errlen, "Invalid Configuration: Missing Region");
}

bool
endpoint_host_is_loopback(const char *host)
{
	size_t n = strlen(host);
	unsigned a, b, c, d;
	char tail;

	if (strcasecmp(host, "localhost") == 0 || (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0))
		return true;
	if (strcmp(host, "::1") == 0 || strcasecmp(host, "0:0:0:0:0:0:0:1") == 0)
		return true;
	return sscanf(host, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b <= 255 &&
	    c <= 255 && d <= 255;
}

/* Characters a path may hold as they are (RFC 3986 pchar, '/' and '%'-escapes). */
static bool
path_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	    strchr("-._~!$&'()*+,;=:@/%", ch) != NULL;
}

/* Removes ".", ".." and empty segments; keeps a trailing "/". */
static int
path_normalise(const char *in, size_t len, char *out, size_t outlen)
{
	size_t o = 0, i = 0, last;
	bool trailing;

	/* A path ending in "/", "/." or "/.." keeps a trailing "/" (RFC 3986 remove_dot_segments). */
	for (last = len; last > 0 && in[last - 1] != '/'; last--)
		;
	trailing = last == len || (len - last == 1 && in[last] == '.') ||
	    (len - last == 2 && in[last] == '.' && in[last + 1] == '.');

	while (i < len) {
		size_t s, n;

		while (i < len && in[i] == '/')
			i++;
		s = i;
		while (i < len && in[i] != '/')
			i++;
		n = i - s;
		if (n == 0 || (n == 1 && in[s] == '.'))
			continue;
		if (n == 2 && in[s] == '.' && in[s + 1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;        /* the '/' before the dropped segment */
			continue;
		}
		if (o + 1 + n >= outlen)
			return -ENAMETOOLONG;
		out[o++] = '/';
		memcpy(out + o, in + s, n);
		o += n;
	}
	if (o == 0 || (trailing && out[o - 1] != '/')) {
		if (o + 1 >= outlen)
			return -ENAMETOOLONG;
		out[o++] = '/';
	}
	out[o] = '\0';
	return 0;
}

int
endpoint_url_parse(const char *url, struct endpoint_url *u, char *err, size_t errlen)
{
	const char *p, *auth_end, *host_end, *port = NULL;
	size_t n;
	int rc;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(url, "https://", 8) == 0) {
		u->https = true;
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		p = url + 7;
	} else {
		return ep_fail(err, errlen, "expected an http:// or https:// URL");
	}
	auth_end = p + strcspn(p, "/?#");
	if (*auth_end == '?' || *auth_end == '#' || strpbrk(auth_end, "?#") != NULL)
		return ep_fail(err, errlen, "a query or fragment cannot be part of an endpoint URL");
	if (memchr(p, '@', (size_t)(auth_end - p)) != NULL)
		return ep_fail(err, errlen, "user information (user@host) is not allowed in an endpoint URL");
	if (*p == '[') {                        /* [IPv6]:port */
		host_end = memchr(p, ']', (size_t)(auth_end - p));
		if (host_end == NULL)
			return ep_fail(err, errlen, "no closing ']' after an IPv6 address");
		n = (size_t)(host_end - p - 1);
		if (n == 0 || n >= sizeof(u->host))
			return ep_fail(err, errlen, "bad IPv6 host");
		memcpy(u->host, p + 1, n);
		if (strspn(u->host, "0123456789abcdefABCDEF:.") != n)
			return ep_fail(err, errlen, "bad IPv6 host");
		host_end++;
		if (host_end < auth_end && *host_end != ':')
			return ep_fail(err, errlen, "unexpected text after the IPv6 address");
	} else {
		host_end = memchr(p, ':', (size_t)(auth_end - p));
		if (host_end == NULL)
			host_end = auth_end;
		n = (size_t)(host_end - p);
		if (n == 0)
			return ep_fail(err, errlen, "no host");
		if (n >= sizeof(u->host))
			return -ENAMETOOLONG;
		memcpy(u->host, p, n);
		for (size_t i = 0; i < n; i++)
			if (!(is_word(u->host[i]) || u->host[i] == '-' || u->host[i] == '.'))
				return ep_fail(err, errlen, "the host has a character a host name cannot hold");
	}
	if (host_end < auth_end) {              /* ":port" */
		char *end;
		unsigned long v;

		port = host_end + 1;
		v = strtoul(port, &end, 10);
		if (end != auth_end || port == auth_end || *port < '0' || *port > '9' || v == 0 || v > 65535)
			return ep_fail(err, errlen, "bad port");
		/* curl leaves the scheme's default port out of Host: so must the signature. */
		if ((u->https && v == 443) || (!u->https && v == 80))
			port = NULL;
	}
	n = (size_t)(host_end - p);
	if (port != NULL)
		rc = snprintf(u->authority, sizeof(u->authority), "%.*s:%.*s", (int)n, p,
		    (int)(auth_end - port), port);
	else
		rc = snprintf(u->authority, sizeof(u->authority), "%.*s", (int)n, p);
	if (rc < 0 || (size_t)rc >= sizeof(u->authority))
		return -ENAMETOOLONG;
	for (const char *q = auth_end; *q != '\0'; q++)
		if (!path_char_ok(*q))
			return ep_fail(err, errlen, "the path has a character a request line cannot hold "
			    "(escape it as %%XX)");
	if ((rc = path_normalise(auth_end, strlen(auth_end), u->path, sizeof(u->path))) < 0)
		return rc;
	return 0;
}
