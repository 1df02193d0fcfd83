/*
 * Arrival -> acknowledgement latency of telemetry events, kept in the control block as a
 * fixed log-scale histogram so that the dispatcher records it with one atomic add per
 * released batch and the controller derives p50/max over any interval from two readings.
 *
 * Buckets: 0..3 ms exactly, then four per power of two (each about 19% wide), the last one
 * open-ended (from 2^21 ms, about 35 minutes).
 */
#ifndef KTE_LATENCY_H
#define KTE_LATENCY_H

#include <stdint.h>

#include "control.h"

/* The bucket of a latency of ms milliseconds. */
unsigned latency_bucket(uint64_t ms);
/* Lowest and highest latency a bucket holds (the last bucket's high is UINT64_MAX). */
uint64_t latency_bucket_low(unsigned b);
uint64_t latency_bucket_high(unsigned b);

/*
 * Dispatcher, when it releases acknowledged events: events of them waited ms since their
 * arrival. Also keeps the window's maximum. Single writer: the dispatcher process.
 */
void latency_record(struct control *ctl, uint64_t ms, uint64_t events);

/* Dispatcher, before releasing ring space: bytes in use now, for the window's high-water. */
void latency_ring_used(struct control *ctl, uint64_t bytes);

/*
 * The q-quantile (0 < q <= 1) of a histogram of counts (LATENCY_BUCKETS entries, e.g. the
 * difference of two readings): the high bound of the bucket holding it, capped at max_ms
 * (the observed maximum). Returns 0 for an empty histogram.
 */
uint64_t latency_quantile(const uint64_t *counts, double q, uint64_t max_ms);

#endif
