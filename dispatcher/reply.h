/*
 * PutRecords replies: what Kinesis (or the network) said, reduced to one decision.
 * json-c stays inside reply.c.
 */
#ifndef KTE_REPLY_H
#define KTE_REPLY_H

#include <stddef.h>
#include <stdint.h>

enum reply_outcome {
	REPLY_OK = 0,           /* every record accepted */
	REPLY_PARTIAL,          /* some records failed (status[] says which): resend those */
	REPLY_RETRY,            /* the whole request failed transiently: 5xx, connection, timeout */
	REPLY_THROTTLED,        /* the whole request was throttled */
	REPLY_EXPIRED,          /* credentials expired: reload them, re-sign, retry */
	REPLY_CONFIG,           /* access denied, stream not found, KMS state, unknown 4xx, TLS
	                           certificate not trusted:
	                           keep the records, open the circuit, retry much later */
	REPLY_INVALID,          /* the request itself is invalid: retrying it cannot help */
};

struct reply_result {
	enum reply_outcome outcome;
	long http_status;
	unsigned failed;        /* records failed (REPLY_PARTIAL) */
	unsigned throttled;     /* of which throttled */
	char code[96];          /* AWS error code (bare), or the first per-record ErrorCode */
	char message[256];      /* its message, or the transport error */
};

/*
 * Decides what a finished request means. transport_err is 0 when an HTTP reply
 * arrived, else -errno (-ETIMEDOUT, -ECONNREFUSED, ...) with transport_msg describing
 * it. error_type is the x-amzn-ErrorType header or NULL. For a 200 reply, status[i]
 * (n entries, the records sent in order) is set to 0 for accepted records and 1 for
 * failed ones; a 200 reply that cannot be parsed or does not hold n records counts as
 * REPLY_RETRY. Fills *res; never fails.
 */
void reply_parse(long http_status, int transport_err, const char *transport_msg,
    const char *error_type, const char *body, size_t len, unsigned n, uint8_t *status,
    struct reply_result *res);

/* Classifies a bare AWS error code with its HTTP status. */
enum reply_outcome reply_classify(const char *code, long http_status);

/* Reduces "aws.protocol#Code:http://..." to "Code". */
void reply_bare_code(const char *in, size_t in_len, char *out, size_t outlen);

const char *reply_outcome_name(enum reply_outcome o);

#endif
