/*
 * The HTTP side of PutRecords: one libcurl easy handle driven by a multi handle, so
 * the connection is reused (keep-alive, TCP_NODELAY) and the dispatcher can poll its
 * own eventfds while a request is in flight. TLS is verified against a CA bundle
 * found on Amazon Linux or Debian (KTE_CA_BUNDLE overrides). Every request is signed
 * (SigV4) when it starts, so a retry after a freeze carries a fresh signature.
 * libcurl types stay inside kinesis_client.c. Process-local, not thread-safe.
 */
#ifndef KTE_KINESIS_CLIENT_H
#define KTE_KINESIS_CLIENT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct kinesis_client;

/* What a finished request produced; valid until the next start. */
struct kinesis_response {
	int transport_err;      /* 0, or -errno: no HTTP reply (connection, timeout, TLS) */
	const char *transport_msg;
	long http_status;
	const char *error_type; /* x-amzn-ErrorType header, "" if none */
	const char *body;
	size_t body_len;
	uint64_t wire_bytes;    /* request header + body bytes sent */
	uint64_t elapsed_us;
};

/*
 * Sends to cfg->endpoint_url (chosen by config: common/endpoint.h), its path normalised
 * and signed as sent; finds the CA bundle and sets up the credentials provider
 * (credentials.h; nothing is fetched before the first request).
 * Returns the client or NULL (errno set); free with kinesis_client_free.
 */
struct kinesis_client *kinesis_client_new(const struct kte_config *cfg)
    __attribute__((warn_unused_result));
/* Aborts a request in flight, wipes the credentials and signing key, frees kc; NULL-safe. */
void kinesis_client_free(struct kinesis_client *kc);

/* The endpoint URL in use (for log lines). */
const char *kinesis_client_url(const struct kinesis_client *kc);

/*
 * Signs and starts a PutRecords request with this body (borrowed until the request
 * completes) and a total timeout. Returns 0, -EBUSY if one is in flight, -EAGAIN when
 * no credentials are usable yet (a fetch failed or is rate-limited), -EINVAL when there
 * is no credentials source at all, -errno.
 */
int kinesis_client_start(struct kinesis_client *kc, const char *body, size_t len, long timeout_ms)
    __attribute__((warn_unused_result));

/*
 * Waits up to timeout_ms for the transfer's sockets or any of the extra fds (their
 * revents are filled), then drives the transfer. Returns 1 when the request has
 * finished (*resp filled), 0 otherwise, -errno on a libcurl failure.
 */
int kinesis_client_wait(struct kinesis_client *kc, struct pollfd *extra, unsigned nextra,
    int timeout_ms, struct kinesis_response *resp) __attribute__((warn_unused_result));

/* True while a request is in flight. */
bool kinesis_client_busy(const struct kinesis_client *kc);

/* True once the whole body of the request in flight has been handed to the kernel. */
bool kinesis_client_body_sent(const struct kinesis_client *kc);

/* Abandons the request in flight (its connection is closed). */
void kinesis_client_abort(struct kinesis_client *kc);

/*
 * Kinesis rejected the credentials (ExpiredTokenException, an unrecognised key): the
 * provider fetches fresh ones before the next request (container credentials; see
 * credentials.h). kinesis_client_start then returns -EAGAIN until some are usable, for
 * kinesis_client_credentials_retry_ms().
 */
void kinesis_client_invalidate_credentials(struct kinesis_client *kc);

/* True while the credentials endpoint fails (not merely the rate limit after a rejection). */
bool kinesis_client_credentials_failing(const struct kinesis_client *kc);

/* Milliseconds until credentials may be usable again after -EAGAIN (0: now). */
int64_t kinesis_client_credentials_retry_ms(const struct kinesis_client *kc);

/*
 * The next request opens a new connection: every kept-alive one is closed first (after
 * a SnapStart restore the snapshot's sockets are dead or shared). The request in flight,
 * if any, is left alone.
 */
void kinesis_client_reconnect(struct kinesis_client *kc);

/*
 * After a SnapStart restore: reconnect, and fetch fresh container credentials before the
 * next request (environment credentials stay as they are).
 */
void kinesis_client_after_restore(struct kinesis_client *kc);

#endif
