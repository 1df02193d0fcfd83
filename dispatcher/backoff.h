/*
 * Retry timing and the circuit breaker.
 *
 * Backoff is exponential with full jitter (the SDKs' standard mode):
 *   delay = rand(0,1) * min(base * 2^(attempt-1), cap)
 * with base and cap from KTE_RETRY_BASE_MS (50) and KTE_RETRY_MAX_MS (20000).
 * The circuit opens after CIRCUIT_OPEN_AFTER consecutive failed requests, or at once
 * on an error no retry can fix (access, not found, invalid request), after which the
 * dispatcher tries again only every KTE_CIRCUIT_PROBE_MS (30000); while it is open the
 * controller stops waiting for flushes. Any accepted record closes it. Process-local.
 */
#ifndef KTE_BACKOFF_H
#define KTE_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

#define CIRCUIT_OPEN_AFTER  3u

/* rand01 in [0,1). Returns the delay in ms for attempt (1 = first retry). */
uint64_t backoff_delay_ms(unsigned attempt, uint32_t base_ms, uint32_t cap_ms, double rand01);

/* A small PRNG for jitter (not for secrets). */
struct backoff_rng {
	uint64_t s;
};
/* Seeds r from getrandom(); called again after a SnapStart restore (see pkey_reseed). */
void backoff_rng_init(struct backoff_rng *r);
double backoff_rand01(struct backoff_rng *r);

struct circuit {
	uint64_t consecutive;   /* failed requests in a row */
	bool open;
};

/* Records an accepted request; returns true if the circuit was open (now closed). */
bool circuit_success(struct circuit *c);
/* Records a failure; hard opens at once. Returns true if the circuit just opened. */
bool circuit_failure(struct circuit *c, bool hard);

#endif
