/*
 * Kinesis endpoint resolution, hand-translated from the AWS SDKs' endpoint rule set for
 * Kinesis (endpoint-rule-set-1.json, service model 2013-12-02) and the partitions table
 * (partitions.json), both compiled in. The rule set's own test cases run against it in
 * tests/unit/dispatcher/check_endpoint.c (data in tests/data/endpoint-rules/).
 *
 * Only the parts PutRecords reaches are translated: the StreamARN branch (account-based
 * endpoint) and the regional rules. The ConsumerARN and ResourceARN branches serve other
 * operations and are not.
 *
 * Also here: splitting an endpoint URL into what a request needs (Host header, path to
 * send and sign) and telling a loopback host from others. Pure functions, no state:
 * safe in any thread or process.
 */
#ifndef KTE_ENDPOINT_H
#define KTE_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

/* One AWS partition, as partitions.json describes it. */
struct endpoint_partition {
	const char *name;               /* "aws", "aws-cn", ... */
	const char *dns_suffix;         /* "amazonaws.com" */
	const char *dual_stack_dns_suffix; /* "api.aws" */
	bool supports_fips;
	bool supports_dual_stack;
	const char *const *prefixes;    /* regionRegex ^<prefix>\-\w+\-\d+$, one entry per alternative */
	const char *const *regions;     /* the regions the partition lists by name */
};

/*
 * The rule set's aws.partition(region): the partition listing region by name, else the
 * first whose regionRegex matches, else "aws". Never NULL.
 */
const struct endpoint_partition *endpoint_partition_of(const char *region);

/* The rule set's parameters. NULL strings are unset. */
struct endpoint_params {
	const char *region;             /* Region */
	bool use_fips;                  /* UseFIPS */
	bool use_dual_stack;            /* UseDualStack */
	const char *endpoint;           /* Endpoint: a configured endpoint URL */
	const char *stream_arn;         /* StreamARN */
	const char *operation_type;     /* OperationType: "data" for PutRecords, "control" for others */
};

/*
 * Evaluates the rule set. Returns 0 with the endpoint URL in url; -EINVAL with the rule
 * set's error message in err (word for word, e.g. "Invalid Configuration: Missing
 * Region"); -ENAMETOOLONG when the URL does not fit in url.
 */
int endpoint_resolve(const struct endpoint_params *p, char *url, size_t urllen, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#define ENDPOINT_HOST_MAX 256
#define ENDPOINT_PATH_MAX 512

/* What a request to an endpoint URL needs. */
struct endpoint_url {
	bool https;
	char host[ENDPOINT_HOST_MAX];   /* the host alone: name, IPv4, or IPv6 without brackets */
	char authority[ENDPOINT_HOST_MAX + 8]; /* the Host header: host[:port], default port left out */
	char path[ENDPOINT_PATH_MAX];   /* absolute, dot segments and empty segments removed; "/" if none */
};

/*
 * Splits an http:// or https:// URL (scheme case-insensitive). The path is normalised the
 * way SigV4 normalises it for every service but S3 ("." and ".." segments and empty
 * segments removed, a trailing "/" kept), so the path sent and the path signed are the
 * same string. Returns 0, or -EINVAL with the reason in err: another scheme, no host,
 * user info ("user@"), a query or fragment, a character that a request line cannot hold,
 * a bad port; -ENAMETOOLONG when a part does not fit.
 */
int endpoint_url_parse(const char *url, struct endpoint_url *u, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* True for localhost (and *.localhost), 127.0.0.0/8 and ::1: traffic that stays on the machine. */
bool endpoint_host_is_loopback(const char *host);

/* isValidHostLabel(s, false): 1-63 characters of [A-Za-z0-9-], the first not "-". */
bool endpoint_host_label_valid(const char *s);

#endif
