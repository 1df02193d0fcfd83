#include "backoff.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint64_t
backoff_delay_ms(unsigned attempt, uint32_t base_ms, uint32_t cap_ms, double rand01)
{
	uint64_t ceiling = base_ms;

	if (attempt == 0)
		return 0;
	for (unsigned i = 1; i < attempt && ceiling < cap_ms; i++)
		ceiling *= 2;
	if (ceiling > cap_ms)
		ceiling = cap_ms;
	if (rand01 < 0)
		rand01 = 0;
	if (rand01 >= 1)
		rand01 = 0.999999;
	return (uint64_t)(rand01 * (double)ceiling);
}

void
backoff_rng_init(struct backoff_rng *r)
{
	if (getrandom(&r->s, sizeof(r->s), GRND_NONBLOCK) != sizeof(r->s))
		r->s = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
	if (r->s == 0)
		r->s = 0x9E3779B97F4A7C15ull;
}

double
backoff_rand01(struct backoff_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return (double)((r->s * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

bool
circuit_success(struct circuit *c)
{
	bool was = c->open;

	c->consecutive = 0;
	c->open = false;
	return was;
}

bool
circuit_failure(struct circuit *c, bool hard)
{
	bool was = c->open;

	c->consecutive++;
	if (hard || c->consecutive >= CIRCUIT_OPEN_AFTER)
		c->open = true;
	return !was && c->open;
}
