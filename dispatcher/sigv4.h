/*
 * AWS Signature Version 4 (header signing) with OpenSSL libcrypto.
 *
 * Two entry points:
 *  - sigv4_sign_kinesis(): what the dispatcher calls for every PutRecords attempt
 *    (every retry is re-signed with the current time);
 *  - sigv4_sign(): the generic signer (any method, path, query, headers, service),
 *    which also returns the canonical request and the string to sign; the unit
 *    tests run it over the official suite (tests/data/sigv4-suite).
 *
 * Secrets (secret key, session token, derived keys, signatures' inputs) are never
 * logged by this module; buffers that held them are wiped with explicit_bzero.
 * Nothing here is shared between threads or processes: each caller owns its
 * credentials and its key cache.
 */
#ifndef KTE_SIGV4_H
#define KTE_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct sigv4_credentials {
	char access_key_id[128];
	char secret_access_key[256];
	char session_token[4096];       /* "" = none */
};

/*
 * Fills c from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (an
 * empty variable counts as unset). Returns 0, -ENOENT when the key id or the secret
 * is missing, or -ENAMETOOLONG when a value does not fit (c is wiped on failure).
 * Not thread-safe (reads environ).
 */
int sigv4_credentials_load(struct sigv4_credentials *c) __attribute__((warn_unused_result));

/* Wipes every byte of c (explicit_bzero). */
void sigv4_credentials_wipe(struct sigv4_credentials *c);

/*
 * The derived signing key, cached per (date, region, service, access key id): the
 * four HMACs of the derivation run once a day instead of once a request. Zero-
 * initialise it (`struct sigv4_key_cache k = {0};`) and wipe it when done.
 * A new access key id (credentials rotated) or a new day re-derives the key.
 */
struct sigv4_key_cache {
	uint8_t key[32];
	char date[9];                   /* YYYYMMDD */
	char region[64];
	char service[64];
	char access_key_id[128];
	bool valid;
	uint64_t derivations;           /* times the key was derived: for tests and stats */
};

/* Wipes the cached key and its identity (explicit_bzero); derivations is reset too. */
void sigv4_key_cache_wipe(struct sigv4_key_cache *k);

/* Headers of a Kinesis request that depend on the signature. */
struct sigv4_kinesis_headers {
	char amz_date[17];              /* X-Amz-Date value: YYYYMMDD'T'HHMMSS'Z' */
	char authorization[768];        /* Authorization value */
};

#define SIGV4_KINESIS_CONTENT_TYPE "application/x-amz-json-1.1"

/*
 * Signs a Kinesis JSON 1.1 request (POST /, no query) for service "kinesis". The
 * signed headers are content-type (SIGV4_KINESIS_CONTENT_TYPE), host (exactly the
 * Host header that will be sent, with ":port" when not the scheme's default),
 * x-amz-date, x-amz-security-token (only when cred->session_token is not "") and
 * x-amz-target (e.g. "Kinesis_20131202.PutRecords"). The caller sends those headers
 * with these values, plus X-Amz-Security-Token when there is a token.
 * cache may be NULL (the key is then derived every time).
 * Returns 0, -EINVAL (missing credentials or arguments), -ENAMETOOLONG (a value too
 * long for out) or -ENOMEM / -EIO (libcrypto failure).
 */
int sigv4_sign_kinesis(struct sigv4_key_cache *cache, const struct sigv4_credentials *cred,
    const char *region, const char *host, const char *amz_target, const void *body,
    size_t body_len, time_t now, struct sigv4_kinesis_headers *out)
    __attribute__((warn_unused_result));

/*
 * The same for an endpoint whose URL has a path: path is the path sent on the request
 * line (absolute, normalised: endpoint_url_parse gives it), and the canonical URI is
 * built from it, so a verifier sees the signature of the request it received.
 * sigv4_sign_kinesis() is this with path "/". Same returns; -EINVAL if path is not absolute.
 */
int sigv4_sign_kinesis_path(struct sigv4_key_cache *cache, const struct sigv4_credentials *cred,
    const char *region, const char *host, const char *path, const char *amz_target, const void *body,
    size_t body_len, time_t now, struct sigv4_kinesis_headers *out)
    __attribute__((warn_unused_result));

/* One request header for the generic signer; names are case-insensitive, repeats allowed. */
struct sigv4_header {
	const char *name;
	const char *value;              /* may hold runs of spaces/tabs/newlines: collapsed to one space */
};

struct sigv4_request {
	const char *method;             /* "GET", "POST" */
	const char *path;               /* as on the request line, e.g. "/" or "/a b/": URI-encoded here */
	const char *query;              /* without '?'; NULL or "" = none; %XX escapes decoded and re-encoded */
	const struct sigv4_header *headers;  /* must contain host; x-amz-date and the token are added */
	size_t n_headers;
	const void *body;
	size_t body_len;
};

struct sigv4_params {
	const char *region;
	const char *service;
	time_t now;
	bool normalize_path;            /* remove "." and ".." segments and empty segments (not for S3) */
	bool sign_body;                 /* add and sign x-amz-content-sha256 */
	bool omit_session_token;        /* the token header is added after signing, unsigned */
};

/* Result of sigv4_sign(); free the strings with sigv4_signed_cleanup(). */
struct sigv4_signed {
	char amz_date[17];
	char signature[65];             /* lowercase hex */
	char payload_hash[65];          /* hex SHA-256 of the body (x-amz-content-sha256 when signed) */
	char *canonical_request;        /* heap, NUL-terminated */
	char *string_to_sign;           /* heap */
	char *signed_headers;           /* heap: "host;x-amz-date" */
	char *authorization;            /* heap: the Authorization header value */
};

/*
 * Signs req. cache may be NULL. On success out owns four heap strings (release them
 * with sigv4_signed_cleanup, which wipes them first: the canonical request may hold
 * a session token). Returns 0, -EINVAL or -ENOMEM / -EIO; out is then empty.
 */
int sigv4_sign(struct sigv4_key_cache *cache, const struct sigv4_credentials *cred,
    const struct sigv4_request *req, const struct sigv4_params *p, struct sigv4_signed *out)
    __attribute__((warn_unused_result));

/* Wipes and frees the strings of s; safe on a zeroed or already cleaned struct. */
void sigv4_signed_cleanup(struct sigv4_signed *s);

/* Formats now as x-amz-date (YYYYMMDD'T'HHMMSS'Z', UTC). Returns 0 or -EINVAL. */
int sigv4_amz_date(time_t now, char out[17]) __attribute__((warn_unused_result));

/* Hex SHA-256 of data into out (65 bytes with NUL). Returns 0 or -EIO. */
int sigv4_sha256_hex(const void *data, size_t len, char out[65]) __attribute__((warn_unused_result));

#endif
