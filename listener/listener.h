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

/*
 * Runs the listener in the calling (forked) process until SIGTERM or the parent's
 * death. Sets ctl->listener_ready and signals fds->to_controller once accepting.
 * Returns the process exit code.
 */
int listener_main(const struct listener_args *a);

#endif
