/*
 * Push back (docs/pressure.md): before calling event/next, the controller holds while
 * the ring is above its high-water mark, until it falls to the low-water mark or the
 * invocation's deadline. Lambda is not frozen meanwhile, so it keeps delivering the
 * function's telemetry instead of dropping it; the function pays in post-runtime
 * duration. Pure logic here (fill levels and times passed in); the waiting is main.c's.
 */
#ifndef KTE_CONTROLLER_PRESSURE_H
#define KTE_CONTROLLER_PRESSURE_H

#include <stdbool.h>
#include <stdint.h>

#define PRESSURE_HIGH_PCT        50     /* hold next above this fill ... */
#define PRESSURE_LOW_PCT         25     /* ... until at or below this one ... */
/*
 * ... and at most this many bytes: SHUTDOWN comes without warning and leaves about a
 * second to send what the ring holds; a shard takes 1 MB/s.
 */
#define PRESSURE_LOW_MAX_BYTES   (1u << 20)
/*
 * ... and at most what Kinesis, at the pace measured during the hold, takes in this
 * long: a throttled or slow stream drains far less than a shard's 1 MB/s, and the
 * final flush at SHUTDOWN must still empty the ring in time. The pace is measured
 * only after PRESSURE_RATE_MIN_MS of holding; below PRESSURE_LOW_MIN_BYTES the mark
 * never goes.
 */
#define PRESSURE_DRAIN_TARGET_MS 500
#define PRESSURE_RATE_MIN_MS     200
#define PRESSURE_LOW_MIN_BYTES   (64u << 10)
#define PRESSURE_LOG_INTERVAL_MS 10000  /* at most one hold line per interval */
/*
 * A hold ends this long (or KTE_SHUTDOWN_MARGIN_MS, if larger) before the invocation's
 * deadlineMs: the extension's post-runtime time counts toward the function's timeout,
 * and an invocation that is not back in next by then times out (an error for the caller).
 */
#define PRESSURE_DEADLINE_MARGIN_MS 500

struct pressure_log {
	uint64_t last_ms;                   /* monotonic ms of the last hold line, 0 = none yet */
	uint64_t quiet_holds;               /* holds since that line that were not logged */
	uint64_t quiet_ms;                  /* and their total time */
};

/* Ring fill above the high-water mark: hold next. */
bool pressure_high(uint64_t used, uint64_t capacity);
/* Ring fill at or below the low-water mark (PRESSURE_LOW_PCT, at most PRESSURE_LOW_MAX_BYTES). */
bool pressure_low(uint64_t used, uint64_t capacity);
/*
 * The low-water mark in bytes, given what the dispatcher released (drained bytes) in
 * the elapsed_ms of the hold so far: pressure_low's mark, lowered to what that pace
 * sends in PRESSURE_DRAIN_TARGET_MS (not below PRESSURE_LOW_MIN_BYTES) once
 * elapsed_ms >= PRESSURE_RATE_MIN_MS.
 */
uint64_t pressure_low_mark(uint64_t capacity, uint64_t drained, uint64_t elapsed_ms);
/*
 * Whether the ring may cross the high-water mark during this invocation: used now plus
 * what the last invocation brought (expected). Then the controller waits for this
 * invocation's platform.runtimeDone before deciding, whatever the flush policy: a check
 * at INVOKE, before the function logged anything, would let a burst through unseen.
 */
bool pressure_watch(uint64_t used, uint64_t expected, uint64_t capacity);
/* Fill in percent (0..100), for log lines. */
unsigned pressure_pct(uint64_t used, uint64_t capacity);

/*
 * A hold of held_ms ended at now_ms. Returns true when it should be logged now; then
 * *holds and *ms say how many holds (this one included) and how much time the line
 * covers. Otherwise the hold is remembered for the next line.
 */
bool pressure_log_due(struct pressure_log *p, uint64_t now_ms, uint64_t held_ms, uint64_t *holds,
    uint64_t *ms);

#endif
