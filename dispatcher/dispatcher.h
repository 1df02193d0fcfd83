/*
 * The dispatcher process: drains the ring into Kinesis PutRecords, releasing ring
 * space only after Kinesis acknowledged the records.
 */
#ifndef KTE_DISPATCHER_H
#define KTE_DISPATCHER_H

#include "config.h"
#include "control.h"
#include "ring.h"

struct dispatcher_args {
	const struct kte_config *cfg;
	struct ring *ring;
	struct control *ctl;
	const struct control_fds *fds;
};

/*
 * Runs the dispatcher in the calling (forked) process until SIGTERM, the parent's
 * death, or the shutdown deadline in ctl. Resumes from the first unreleased record.
 * Returns the process exit code.
 */
int dispatcher_main(const struct dispatcher_args *a);

#endif
