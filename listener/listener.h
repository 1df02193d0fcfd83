/*
 * The listener process: a civetweb server receiving Telemetry API batches and
 * writing each event into the ring as one record.
 */
#ifndef KTE_LISTENER_H
#define KTE_LISTENER_H

#include "config.h"
#include "control.h"
#include "ring.h"

struct listener_args {
	const struct kte_config *cfg;
	struct ring *ring;
	struct control *ctl;
	const struct control_fds *fds;
};

/* Paths a Telemetry API subscription may name (http://HOST:PORT/ or .../telemetry). */
#define LISTENER_PATH "/telemetry"
/* Slack added to 2 x maxBytes for the body limit (JSON framing of the batch). */
#define LISTENER_BODY_SLACK (64u * 1024u)
/*
 * civetweb worker threads: one per open connection. Lambda uses one or two; the rest
 * is room for connections held without progress (each for at most the deadlines
 * below, and shed when workers run short). Not more: every thread has to be scheduled
 * to exit when the process ends, which on a loaded machine eats into the 200 ms the
 * controller gives a stop (measured: 16-20 ms median with 12, 30-40 ms with 32).
 */
#define LISTENER_THREADS 16
/* Fewer free workers than this: connections waiting for a request are closed (LISTENER_SHED_MS). */
#define LISTENER_SPARE_WORKERS 4
/* ... after waiting that long for one (a client sends its request as soon as it connects). */
#define LISTENER_SHED_MS 100
/* ... and so are bodies still arriving after this long (408), well before their deadline. */
#define LISTENER_SHED_BODY_MS 500
/* Accepted connections queued for a worker (civetweb's connection_queue), and the listen backlog. */
#define LISTENER_BACKLOG 128
/* Request line and headers, in total, from taking the connection (request_timeout_ms). */
#define LISTENER_HEADER_MS 1000
/* The body, in total, from the end of the headers: 408 after. Bodies are a few MiB at most. */
#define LISTENER_BODY_MS 2000
/* A kept-alive connection may wait this long for its next request (keep_alive_timeout_ms). */
#define LISTENER_KEEPALIVE_MS 2000
/* After an error reply, the rest of a body is read and discarded for at most this long / this much. */
#define LISTENER_DRAIN_MS 1000
#define LISTENER_DRAIN_MAX (64u << 20)

/* The largest POST body accepted: 2 x cfg->buffer_max_bytes + LISTENER_BODY_SLACK. */
size_t listener_body_limit(const struct kte_config *cfg);

/*
 * Runs the listener in the calling (forked) process until SIGTERM or the parent's
 * death. Sets ctl->listener_ready and signals fds->to_controller once accepting.
 * Returns the process exit code.
 */
int listener_main(const struct listener_args *a);

/*
 * listener_main with the wait for ring space (before answering 503) set to
 * ring_wait_ms. <= 0 selects the configured policy: KTE_OVERFLOW=wait holds a POST
 * until there is space or the listener stops; drop waits INTAKE_RING_WAIT_MS (1 s).
 * For tests and benches.
 */
int listener_run(const struct listener_args *a, int ring_wait_ms);

#endif
