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
#define LISTENER_THREADS 6

/* The largest POST body accepted: 2 x cfg->buffer_max_bytes + LISTENER_BODY_SLACK. */
size_t listener_body_limit(const struct kte_config *cfg);

/*
 * Runs the listener in the calling (forked) process until SIGTERM or the parent's
 * death. Sets ctl->listener_ready and signals fds->to_controller once accepting.
 * Returns the process exit code.
 */
int listener_main(const struct listener_args *a);

/*
 * listener_main with the bounded wait for ring space (before answering 503) set
 * to ring_wait_ms; <= 0 selects INTAKE_RING_WAIT_MS (1 s). For tests and benches.
 */
int listener_run(const struct listener_args *a, int ring_wait_ms);

#endif
