/*
 * The dropped-summary event. Whatever the extension had to give up on is counted;
 * once Kinesis accepts records again the counts not yet reported are delivered into
 * the stream as one telemetry-shaped event:
 *
 *   {"time":"2026-01-01T00:00:00.000Z","type":"extension.kte.dropped",
 *    "record":{"sinceTime":"...","eventsTooLarge":0,"eventsRejected":0,...}}
 *
 * Each count is the increase since the previous summary (sinceTime: when that one was
 * built, or the dispatcher's start). See docs/internals/dispatcher.md for the fields.
 */
#ifndef KTE_DROPPED_H
#define KTE_DROPPED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"
#include "ring.h"

enum drop_kind {
	DROP_TOO_LARGE = 0,     /* dispatcher: event larger than a Kinesis record */
	DROP_REJECTED,          /* dispatcher: in a request Kinesis rejected as invalid */
	DROP_RING_REJECTED,     /* ring: records refused because the ring was full */
	DROP_RING_ABANDONED,    /* ring: reserved by a writer that died */
	DROP_RING_CORRUPT,      /* ring: records dropped by a corruption repair or reset */
	DROP_LISTENER_TOO_LARGE,        /* listener: 413 bodies */
	DROP_LISTENER_OVERSIZED,        /* listener: single events too large for a record */
	DROP_LISTENER_RING_FULL,        /* listener: 503 answers (Lambda retries those) */
	DROP_LISTENER_BAD_REQUEST,      /* listener: 400 bodies */
	DROP_LAMBDA_LOGS_DROPPED,       /* Lambda's own platform.logsDropped droppedRecords */
	DROP_KINDS
};

struct drop_counts {
	uint64_t v[DROP_KINDS];
};

/* Field name of each kind in the summary record. */
const char *dropped_name(enum drop_kind k);

/* Collects the cumulative counts: local ones (too large, rejected) plus ring and control. */
void dropped_collect(struct drop_counts *out, const struct drop_counts *local, const struct ring *r,
    const struct control *ctl);

/* True if cur holds any count above base. */
bool dropped_any(const struct drop_counts *cur, const struct drop_counts *base);

/*
 * Writes the summary of cur - base into buf (NUL-terminated), stamped now_ms (epoch)
 * and since_ms. Returns its length, or -ENOSPC.
 */
int dropped_format(char *buf, size_t len, const struct drop_counts *cur, const struct drop_counts *base,
    uint64_t now_ms, uint64_t since_ms) __attribute__((warn_unused_result));

#endif
