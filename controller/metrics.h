/*
 * The extension's own metrics, written to stdout as CloudWatch embedded metric format
 * (EMF) lines: Lambda sends extension output to CloudWatch Logs, which turns each line into
 * metrics with no API call and no permission. One line at most per KTE_METRICS_INTERVAL_MS,
 * written at an INVOKE once the interval has passed, and a last one at SHUTDOWN; each
 * carries what changed since the line before (counts), or the interval's p50/max (latency,
 * ring high-water). See docs/operations.md for the metrics.
 */
#ifndef KTE_METRICS_H
#define KTE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "control.h"
#include "ring.h"

/* Cumulative counters read from the control block at one moment. */
struct metrics_sample {
	uint64_t received, sent, records_sent, bytes_sent, retried;
	uint64_t dropped_lambda, dropped_too_large, dropped_rejected, dropped_shutdown;
	uint64_t hold_count, hold_ms;
	uint64_t latency[LATENCY_BUCKETS];
};

/* What one line reports. */
struct metrics_values {
	uint64_t invocations;
	uint64_t received, sent, records_sent, bytes_sent, retried;
	uint64_t dropped_lambda, dropped_too_large, dropped_rejected, dropped_shutdown;
	uint64_t acked;                 /* events behind the latency figures; 0: none reported */
	uint64_t ack_p50_ms, ack_max_ms;
	uint64_t ring_hw_bytes, ring_capacity;
	uint64_t hold_count, hold_ms;
};

struct metrics {
	bool enabled;
	char ns[256];
	char function[141];             /* the FunctionName dimension */
	uint64_t interval_ms;
	uint64_t last_ms;               /* monotonic ms of the last line (or of metrics_init) */
	uint64_t invocations;           /* since the last line */
	struct metrics_sample last;
	/* what was written, for the shutdown log line and the benchmark */
	uint64_t lines, bytes;
};

/* Sets m up from cfg (KTE_METRICS*) and the function name (NULL or "": "unknown"). */
void metrics_init(struct metrics *m, const struct kte_config *cfg, const char *function, uint64_t now_ms);

/* Reads the cumulative counters. Safe while the children run (atomics). */
void metrics_sample(const struct control *ctl, struct metrics_sample *s);

/* cur - prev into v (counts, latency p50/max from the histogram difference). */
void metrics_delta(const struct metrics_sample *cur, const struct metrics_sample *prev,
    uint64_t window_max_ms, struct metrics_values *v);

/*
 * Writes one EMF line (JSON object and '\n', NUL-terminated) into buf: namespace ns,
 * dimension sets [FunctionName] and [] (per function, and across all functions), timestamp
 * ts_ms (epoch). Returns its length, or -ENOSPC when buf is too small.
 */
int metrics_format(char *buf, size_t len, const char *ns, const char *function, uint64_t ts_ms,
    const struct metrics_values *v) __attribute__((warn_unused_result));

/*
 * Counts an invocation and, when final or once the interval has passed, writes a line of
 * what changed since the last one to fd (one write). Returns 1 when a line was written, 0
 * when none was due (or metrics are off), -errno on a write error. Controller only.
 */
int metrics_emit(struct metrics *m, struct control *ctl, struct ring *ring, int fd, bool invocation,
    bool final, uint64_t now_ms) __attribute__((warn_unused_result));

#endif
