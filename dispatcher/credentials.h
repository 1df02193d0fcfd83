/*
 * Where the dispatcher's AWS credentials come from, in the order of the SDKs' default
 * chain restricted to what Lambda provides:
 *   1. the environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN;
 *      empty = unset). Read once: Lambda never changes a running process's environment.
 *   2. the container credentials provider (SnapStart, ECS, EKS Pod Identity):
 *      AWS_CONTAINER_CREDENTIALS_FULL_URI (or _RELATIVE_URI, on 169.254.170.2), fetched with
 *      `Authorization:` from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (re-read each fetch) or
 *      AWS_CONTAINER_AUTHORIZATION_TOKEN; the reply is JSON {AccessKeyId, SecretAccessKey,
 *      Token, Expiration}. Refreshed before Expiration, at once (rate-limited) after
 *      credentials_invalidate(); a failed fetch keeps what is held and retries with backoff.
 * Fetches are synchronous (libcurl easy, short timeouts: the endpoint is local) and use a
 * fresh connection each time. Secrets are never logged and are wiped when replaced.
 * Process-local, not thread-safe. libcurl and json-c stay inside credentials.c.
 */
#ifndef KTE_CREDENTIALS_H
#define KTE_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sigv4.h"

#define CREDENTIALS_MAX_REPLY       (64u << 10)   /* a real reply is < 2 KiB */
#define CREDENTIALS_ADVANCE_MS      (5 * 60 * 1000) /* refresh this long before Expiration ... */
#define CREDENTIALS_MIN_REFETCH_MS  1000          /* ... but fetch at most once a second on demand */
#define CREDENTIALS_RETRY_BASE_MS   500           /* failed fetches: 0.5 s, 1 s, 2 s ... */
#define CREDENTIALS_RETRY_MAX_MS    30000         /* ... at most 30 s apart */
#define CREDENTIALS_CONNECT_MS      1000L
#define CREDENTIALS_TIMEOUT_MS      3000L

enum credentials_source {
	CREDENTIALS_NONE = 0,
	CREDENTIALS_ENV,
	CREDENTIALS_CONTAINER,
};

struct credentials_provider;

/*
 * Chooses the source from the environment (see above). Returns the provider, or NULL
 * with errno set: ENOENT (no source at all: err says what is missing), EPERM (a container
 * URI that the SDKs refuse: plain http to a host that is neither loopback nor the
 * ECS/EKS link-local address), EINVAL/ENAMETOOLONG (malformed values), ENOMEM.
 * err (may be NULL) receives a one-line reason without secrets. Free with
 * credentials_provider_free. Nothing is fetched yet.
 */
struct credentials_provider *credentials_provider_new(char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Wipes what the provider holds and frees it; NULL-safe. */
void credentials_provider_free(struct credentials_provider *p);

enum credentials_source credentials_source(const struct credentials_provider *p);
/* "environment" or "container"; for log lines. */
const char *credentials_source_name(const struct credentials_provider *p);

/*
 * Copies usable credentials into *out for a request signed at now_ms (Unix epoch ms),
 * fetching first when a refresh is due. Returns 0; -EAGAIN when none are usable now (a
 * fetch failed or is rate-limited and the held ones are expired or were rejected:
 * credentials_retry_at() says when to ask again); -ENOENT for a provider without a source.
 * A fetch failure with still-valid credentials held returns those (0).
 */
int credentials_get(struct credentials_provider *p, int64_t now_ms, struct sigv4_credentials *out)
    __attribute__((warn_unused_result));

/*
 * Kinesis rejected the held credentials (ExpiredToken, unrecognised key): they are not
 * used again, and the next credentials_get fetches fresh ones (no sooner than
 * CREDENTIALS_MIN_REFETCH_MS after the last fetch). Also called after a SnapStart restore.
 * Environment credentials cannot be refreshed: a warning says so, once.
 */
void credentials_invalidate(struct credentials_provider *p, int64_t now_ms);

/*
 * Bounds the next fetches to timeout_ms in all (never above CREDENTIALS_TIMEOUT_MS; at
 * least 1 ms): the caller's own deadline (SHUTDOWN) must not pass while a fetch hangs.
 */
void credentials_set_fetch_timeout(struct credentials_provider *p, long timeout_ms);

/* Epoch ms at which credentials_get may succeed again after -EAGAIN (<= now: at once). */
int64_t credentials_retry_at(const struct credentials_provider *p);

/* True while fetches fail (a series of failures that no success has ended yet). */
bool credentials_failing(const struct credentials_provider *p);

/* Number of fetches attempted (container source); for tests and stats. */
uint64_t credentials_fetches(const struct credentials_provider *p);

/* ---- pure pieces, exposed for the unit tests ---- */

/*
 * Parses a container credentials reply. Returns 0 with *out and *expiration_ms (epoch
 * ms) set; -E2BIG for a body over CREDENTIALS_MAX_REPLY; -EINVAL when it is not a JSON
 * object, AccessKeyId or SecretAccessKey is missing/empty/not a string, or Expiration is
 * missing or not ISO 8601; -ENAMETOOLONG when a value does not fit. Token is optional.
 * *out is wiped on failure.
 */
int credentials_parse_reply(const char *body, size_t len, struct sigv4_credentials *out,
    int64_t *expiration_ms) __attribute__((warn_unused_result));

/* Parses "2026-12-04T18:00:00Z" (fraction and +hh:mm/-hh:mm offsets accepted). 0 or -EINVAL. */
int credentials_parse_time(const char *s, int64_t *epoch_ms) __attribute__((warn_unused_result));

/*
 * When credentials fetched at fetched_ms and expiring at expiration_ms should be
 * refreshed: CREDENTIALS_ADVANCE_MS before Expiration, or halfway through a shorter
 * lifetime (so short-lived keys are renewed while still valid).
 */
int64_t credentials_refresh_at(int64_t fetched_ms, int64_t expiration_ms);

/* Delay before fetch attempt number failures+1 after that many failures in a row. */
int64_t credentials_retry_delay(unsigned failures);

/* 0 if the SDKs would fetch from uri; -EPERM (http, host not allowed) or -EINVAL. */
int credentials_uri_allowed(const char *uri) __attribute__((warn_unused_result));

/*
 * The Authorization value: the contents of the file named by
 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (trailing CR/LF and blanks trimmed), else
 * AWS_CONTAINER_AUTHORIZATION_TOKEN, else "". Returns 0, -errno (file unreadable),
 * -ENAMETOOLONG, or -EINVAL (the token holds CR/LF: not a header value).
 */
int credentials_auth_token(char *out, size_t outlen) __attribute__((warn_unused_result));

#endif
