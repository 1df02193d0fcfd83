/*
 * Intake: one Telemetry API batch (a POST body) into the ring. Splits and validates
 * the body in one pass, applies the filters, drops single events too large for a
 * record, and writes the rest as one ring group, so a batch is all in the ring or
 * not at all. Updates the listener counters and tells the controller about
 * platform.runtimeDone. Independent of HTTP, so tests and the fuzzer drive it directly.
 */
#ifndef KTE_LISTENER_INTAKE_H
#define KTE_LISTENER_INTAKE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config.h"
#include "control.h"
#include "filter.h"
#include "ring.h"

/* Bytes of a Kinesis record kept free for the partition key (at most 256 bytes). */
#define INTAKE_KEY_RESERVE 256u
/* Default bounded wait for ring space before answering 503. */
#define INTAKE_RING_WAIT_MS 1000

/* Shared by all worker threads; read-only once initialised. */
struct intake {
	struct ring *ring;
	struct control *ctl;
	int notify_fd;              /* control_fds.to_controller, or -1 */
	struct listener_filter filter;
	uint32_t max_event;         /* largest event accepted, bytes */
	int ring_wait_ms;
	const _Atomic int *cancel;  /* non-zero: stop waiting for ring space (listener stopping) */
};

/* Per-thread scratch reused across batches (the arrays grow once and stay). */
struct intake_scratch {
	struct iovec *iov;
	struct ring_meta *meta;     /* metadata of iov[i], cap entries too */
	size_t n, cap;
	uint64_t bytes, filtered, oversized, runtime_done, reports, logs_dropped;
	int error;                  /* -ENOMEM from the collector */
};

/* What happened to one batch, for the caller's reply and tests. */
struct intake_result {
	int status;                 /* HTTP status: 200, 400, 500 or 503 */
	size_t events;              /* elements in the batch */
	size_t written;             /* events written into the ring */
	const char *why;            /* short reason for a non-200, static text */
	size_t error_offset;        /* where invalid JSON was found */
	int chunks;                 /* ring groups used (1 unless the batch exceeds the ring) */
};

/*
 * Sets up in. ring_wait_ms <= 0 selects INTAKE_RING_WAIT_MS. Returns 0, or -EINVAL
 * when KTE_DROP_TYPES has a bad entry (in is usable anyway; the caller logs it).
 */
int intake_init(struct intake *in, const struct kte_config *cfg, struct ring *ring,
    struct control *ctl, int notify_fd, int ring_wait_ms) __attribute__((warn_unused_result));

/*
 * Takes one batch: fills res and returns res->status. 200 means every kept event is
 * committed to the ring (the body buffer may be reused at once). Thread-safe across
 * threads with distinct scratch; process-safe through the ring.
 */
int intake_batch(const struct intake *in, struct intake_scratch *w, const uint8_t *body, size_t len,
    struct intake_result *res);

/* Frees the scratch's buffers and zeroes it (reusable). Call from the thread that owns it. */
void intake_scratch_cleanup(struct intake_scratch *w);

#endif
