/*
 * Flush policy decisions: what the controller does with each INVOKE so that the
 * dispatcher sends at the right moments relative to invocations and freezes.
 * Pure logic (no I/O, times passed in), see docs/internals/flush.md for the policies.
 */
#ifndef KTE_CONTROLLER_FLUSH_H
#define KTE_CONTROLLER_FLUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/*
 * Adaptive: `end` for the first FLUSH_ADAPTIVE_WARMUP invocations; then
 * `continuous` once the mean interval between the last FLUSH_ADAPTIVE_WINDOW
 * INVOKEs drops below FLUSH_ADAPTIVE_FAST_MS, and back to `end` when it rises
 * above FLUSH_ADAPTIVE_SLOW_MS (hysteresis, so a jittery rate does not flap).
 */
#define FLUSH_ADAPTIVE_WARMUP   10
#define FLUSH_ADAPTIVE_WINDOW   10
#define FLUSH_ADAPTIVE_FAST_MS  1000
#define FLUSH_ADAPTIVE_SLOW_MS  2000
/* periodic: flush before the interval is up when the ring is fuller than this */
#define FLUSH_RING_HIGH_PCT     50
/* end: late flushes in a row after which `end` stops waiting (see flush_end_result) */
#define FLUSH_LATE_LIMIT        2

struct flush_state {
	enum flush_policy configured;
	enum flush_policy effective;       /* END, PERIODIC or CONTINUOUS */
	uint32_t interval_ms;              /* periodic: at most one flush per interval */
	uint64_t invocations;
	uint64_t last_invoke_ms;           /* monotonic ms of the last INVOKE, 0 = none */
	uint64_t intervals[FLUSH_ADAPTIVE_WINDOW];
	uint32_t n_intervals;
	uint64_t last_flush_ms;            /* periodic: last flush requested, 0 = never */
	bool runtime_done_missed;          /* a runtimeDone wait ran out: stop waiting for it ... */
	uint64_t missed_at_count;          /* ... until runtime_done_count moves past this */
	uint32_t late_streak;              /* consecutive `end` flushes that ran out of budget */
	bool flush_slow;                   /* FLUSH_LATE_LIMIT of them: stop waiting until one completes */
};

/* What the controller knows at an INVOKE. */
struct flush_inputs {
	uint64_t now_ms;                   /* monotonic */
	bool runtime_done_usable;          /* platform.runtimeDone can arrive at all (subscribed with
	                                      platform events, listener alive) */
	uint64_t runtime_done_count;       /* the listener's count now */
	bool ring_high;                    /* ring more than FLUSH_RING_HIGH_PCT full */
	bool last_flush_done;              /* the last flush requested has completed since */
};

/* What to do for one INVOKE. */
struct flush_plan {
	bool request_flush;                /* ask the dispatcher to send now, without waiting */
	bool wait_runtime_done;            /* wait for this invocation's platform.runtimeDone ... */
	bool wait_flush;                   /* ... then request a flush and wait for it, in budget */
	bool hold_sending;                 /* value for ctl->hold_sending until the next INVOKE */
	bool changed;                      /* the effective policy changed with this INVOKE */
};

void flush_init(struct flush_state *f, enum flush_policy policy, uint32_t interval_ms);

/* Decides what to do for an INVOKE. */
void flush_on_invoke(struct flush_state *f, const struct flush_inputs *in, struct flush_plan *plan);

/*
 * An `end` flush completed within its budget, or not. After FLUSH_LATE_LIMIT late
 * ones in a row (Kinesis hanging without failing, so the circuit stays closed),
 * `end` stops waiting at all until a flush is seen completed again: a slow back
 * end must not add the whole budget to every invocation.
 */
void flush_end_result(struct flush_state *f, bool in_budget);

/* A runtimeDone wait ran out at runtime_done_count: stop waiting until it moves. */
void flush_runtime_done_missed(struct flush_state *f, uint64_t runtime_done_count);

/* Mean of the recorded INVOKE intervals in ms (0 if none). */
uint64_t flush_mean_interval(const struct flush_state *f);

/*
 * The latest epoch-ms time a wait that starts at now may last: now + budget_ms, but
 * never past deadline_ms - margin_ms (and never before now).
 */
int64_t flush_wait_until(int64_t now, int64_t deadline_ms, uint32_t margin_ms, uint32_t budget_ms);

#endif
