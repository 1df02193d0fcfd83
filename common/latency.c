#include "latency.h"

#include <stdatomic.h>

unsigned
latency_bucket(uint64_t ms)
{
	unsigned e, b;

	if (ms < 4)
		return (unsigned)ms;
	e = 63u - (unsigned)__builtin_clzll(ms);         /* 2^e <= ms < 2^(e+1), e >= 2 */
	b = (e - 1) * 4 + (unsigned)((ms >> (e - 2)) & 3);
	return b < LATENCY_BUCKETS ? b : LATENCY_BUCKETS - 1;
}

uint64_t
latency_bucket_low(unsigned b)
{
	unsigned e;

	if (b < 4)
		return b;
	e = b / 4 + 1;
	return (uint64_t)(4 + b % 4) << (e - 2);
}

uint64_t
latency_bucket_high(unsigned b)
{
	if (b >= LATENCY_BUCKETS - 1)
		return UINT64_MAX;
	return latency_bucket_low(b + 1) - 1;
}

/* Starts the window's maxima afresh once the controller has begun a new window. */
static void
latency_window(struct latency_hist *h, uint64_t window)
{
	if (atomic_load_explicit(&h->window, memory_order_relaxed) == window)
		return;
	atomic_store_explicit(&h->max_ms, 0, memory_order_relaxed);
	atomic_store_explicit(&h->ring_hw_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&h->window, window, memory_order_release);
}

void
latency_record(struct control *ctl, uint64_t ms, uint64_t events)
{
	struct latency_hist *h = &ctl->latency;

	if (events == 0)
		return;
	latency_window(h, atomic_load(&ctl->metrics_window));
	/* One writer: plain load/store suffices for the maximum. */
	if (ms > atomic_load_explicit(&h->max_ms, memory_order_relaxed))
		atomic_store_explicit(&h->max_ms, ms, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->bucket[latency_bucket(ms)], events, memory_order_relaxed);
}

void
latency_ring_used(struct control *ctl, uint64_t bytes)
{
	struct latency_hist *h = &ctl->latency;

	latency_window(h, atomic_load(&ctl->metrics_window));
	if (bytes > atomic_load_explicit(&h->ring_hw_bytes, memory_order_relaxed))
		atomic_store_explicit(&h->ring_hw_bytes, bytes, memory_order_relaxed);
}

uint64_t
latency_quantile(const uint64_t *counts, double q, uint64_t max_ms)
{
	uint64_t total = 0, seen = 0, rank, hi;

	for (unsigned b = 0; b < LATENCY_BUCKETS; b++)
		total += counts[b];
	if (total == 0)
		return 0;
	/* The rank of the quantile, 1-based: the smallest count that reaches q of the total. */
	rank = (uint64_t)(q * (double)total + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > total)
		rank = total;
	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		seen += counts[b];
		if (seen >= rank) {
			hi = latency_bucket_high(b);
			return hi < max_ms ? hi : max_ms;
		}
	}
	return max_ms;
}
