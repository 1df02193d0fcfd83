/*
 * kinesis_sink: a small, fast HTTP/1.1 server that plays Kinesis PutRecords for tests
 * and benchmarks. By default it answers every request with a success reply holding
 * one entry per record; a handler can script anything else (errors, partial failures,
 * dropped connections, delays). Keep-alive, one thread per connection, loopback only,
 * ephemeral port.
 */
#ifndef KTE_KINESIS_SINK_H
#define KTE_KINESIS_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sink_request {
	unsigned seq;                   /* 1, 2, ... in arrival order */
	const char *target;             /* X-Amz-Target, "" if absent (likewise below) */
	const char *authorization;
	const char *amz_date;
	const char *security_token;
	const char *host;
	const char *content_type;
	const char *body;
	size_t body_len;
	unsigned nrecords;              /* "Data" entries in the body */
	const char *method;             /* from the request line, e.g. "POST" */
	const char *path;               /* from the request line, as received, e.g. "/" */
};

struct sink_reply {
	int status;                     /* 0 = 200 with the default success body */
	const char *error_type;         /* x-amzn-ErrorType header, or NULL */
	const char *body;               /* NULL = default for the status */
	char *body_alloc;               /* or a malloc'd body the sink frees */
	bool drop;                      /* close the connection without answering */
	unsigned delay_ms;              /* wait before answering */
};

/* Called on a sink thread for every request; rep arrives zeroed. Must be thread-safe. */
typedef void (*sink_handler)(void *ctx, const struct sink_request *req, struct sink_reply *rep);

struct sink;

/* Starts a sink thread on 127.0.0.1:<ephemeral>. h may be NULL. Returns NULL on failure. */
struct sink *sink_start(sink_handler h, void *ctx, uint16_t *port);
/* Stops it, closes every connection and frees it. */
void sink_stop(struct sink *s);
/* Requests answered so far. */
uint64_t sink_requests(const struct sink *s);

/* Binds a listening socket on 127.0.0.1:0; returns the fd (port in *port) or -errno. */
int sink_listen(uint16_t *port);
/* Serves fd forever in the calling process (for a forked sink process). */
void sink_serve(int fd, sink_handler h, void *ctx) __attribute__((noreturn));

/*
 * Builds a PutRecords reply body for n records, where failed[i] != 0 marks record i as
 * failed with error_code (NULL failed = all accepted). Returns a malloc'd string.
 */
char *sink_putrecords_reply(unsigned n, const uint8_t *failed, const char *error_code);

#endif
