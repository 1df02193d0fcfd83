/*
 * A small HTTP/1.1 client for the Lambda Runtime API (Extensions API 2020-01-01 and
 * the Telemetry API subscription) over one plain, kept-alive TCP socket. No libcurl:
 * the controller must start in a few milliseconds.
 *
 * Calls are blocking with a timeout, except event/next, which is split into
 * ext_api_next_send() and ext_api_next_recv() so that the controller can poll the
 * socket together with its signal and eventfd descriptors while it waits.
 * Single-threaded; one request at a time.
 */
#ifndef KTE_CONTROLLER_EXTENSIONS_API_H
#define KTE_CONTROLLER_EXTENSIONS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "controller/http.h"

#define EXT_API_BUF      65536
#define EXT_API_TIMEOUT_MS 2000   /* for everything but event/next; init has 10 s in all */

enum ext_event_type { EXT_EVENT_INVOKE = 1, EXT_EVENT_SHUTDOWN };

/* One event from event/next. */
struct ext_event {
	enum ext_event_type type;
	int64_t deadline_ms;          /* epoch ms */
	char request_id[128];         /* INVOKE */
	char reason[32];              /* SHUTDOWN: spindown, timeout, failure (lowercase as sent) */
};

struct ext_api {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[256];               /* AWS_LAMBDA_RUNTIME_API, for the Host header */
	int fd;                       /* -1 while not connected */
	bool reused;                  /* the connection already served a response */
	bool resent;                  /* the request in flight was resent once already */
	char id[HTTP_ID_MAX];         /* Lambda-Extension-Identifier after register */
	char req[8192];               /* the request in flight, kept to resend once */
	size_t req_len;
	size_t len;                   /* bytes of response in buf */
	char buf[EXT_API_BUF];
};

/* A complete reply: status and body (NUL-terminated copy inside the ext_api buffer). */
struct ext_reply {
	int status;
	const char *body;
	size_t body_len;
	char error_type[128];         /* errorType of a JSON error body, "" if none */
};

/*
 * Resolves host:port (AWS_LAMBDA_RUNTIME_API; IPv4, [IPv6] or a name). Does not
 * connect. Returns 0, -EINVAL for a malformed value, -EHOSTUNREACH if unresolvable.
 */
int ext_api_init(struct ext_api *api, const char *runtime_api) __attribute__((warn_unused_result));
/* Closes the socket. */
void ext_api_close(struct ext_api *api);

/*
 * Registers for the given events ("INVOKE","SHUTDOWN" or "SHUTDOWN" only, as a JSON
 * array text) under name. On a 200 stores the identifier. Returns 0 when a reply
 * was received (check reply->status), or -errno for transport failures.
 */
int ext_api_register(struct ext_api *api, const char *name, const char *events_json,
    struct ext_reply *reply) __attribute__((warn_unused_result));

/* PUT /2022-07-01/telemetry with body. Returns 0 when a reply arrived, or -errno. */
int ext_api_subscribe(struct ext_api *api, const char *body, size_t len, struct ext_reply *reply)
    __attribute__((warn_unused_result));

/*
 * Reports an error: phase is "init" or "exit"; error_type like "Extension.ConfigInvalid".
 * The message goes into the JSON body (escaped). Returns 0 when the API answered 202.
 */
int ext_api_report_error(struct ext_api *api, const char *phase, const char *error_type,
    const char *message) __attribute__((warn_unused_result));

/* Sends GET event/next. Returns 0 or -errno. Then poll ext_api_fd() for POLLIN. */
int ext_api_next_send(struct ext_api *api) __attribute__((warn_unused_result));
/* The socket to poll while an event/next is outstanding. */
int ext_api_fd(const struct ext_api *api);
/*
 * Reads what is available. Returns 0 with the reply when complete, -EAGAIN when more
 * is to come, or -errno (the connection is then closed; one silent resend happens
 * here first if a reused keep-alive connection turned out dead before any reply).
 */
int ext_api_next_recv(struct ext_api *api, struct ext_reply *reply) __attribute__((warn_unused_result));

/*
 * Parses an event/next body. Returns 0, -EPROTO for invalid JSON or missing fields,
 * -ENOTSUP for an unknown eventType.
 */
int ext_event_parse(const char *body, size_t len, struct ext_event *ev) __attribute__((warn_unused_result));

/* Copies errorType out of a JSON error body into out ("" if absent or not JSON). */
void ext_error_type(const char *body, size_t len, char *out, size_t outlen);

/* Writes s as a JSON string body (without quotes) into out; returns 0 or -ENOSPC. */
int json_escape(const char *s, char *out, size_t outlen) __attribute__((warn_unused_result));

#endif
