#include "controller/pressure.h"

bool
pressure_high(uint64_t used, uint64_t capacity)
{
	return capacity > 0 && used * 100 > capacity * PRESSURE_HIGH_PCT;
}

bool
pressure_low(uint64_t used, uint64_t capacity)
{
	return capacity == 0 || (used * 100 <= capacity * PRESSURE_LOW_PCT && used <= PRESSURE_LOW_MAX_BYTES);
}

uint64_t
pressure_low_mark(uint64_t capacity, uint64_t drained, uint64_t elapsed_ms)
{
	uint64_t mark = capacity * PRESSURE_LOW_PCT / 100, paced;

	if (mark > PRESSURE_LOW_MAX_BYTES)
		mark = PRESSURE_LOW_MAX_BYTES;
	if (elapsed_ms >= PRESSURE_RATE_MIN_MS) {
		paced = drained / elapsed_ms * PRESSURE_DRAIN_TARGET_MS;
		if (paced < PRESSURE_LOW_MIN_BYTES)
			paced = PRESSURE_LOW_MIN_BYTES;
		if (paced < mark)
			mark = paced;
	}
	return mark;
}

bool
pressure_watch(uint64_t used, uint64_t expected, uint64_t capacity)
{
	return pressure_high(used + expected, capacity);
}

unsigned
pressure_pct(uint64_t used, uint64_t capacity)
{
	if (capacity == 0)
		return 0;
	return used >= capacity ? 100u : (unsigned)(used * 100 / capacity);
}

bool
pressure_log_due(struct pressure_log *p, uint64_t now_ms, uint64_t held_ms, uint64_t *holds,
    uint64_t *ms)
{
	if (p->last_ms != 0 && now_ms - p->last_ms < PRESSURE_LOG_INTERVAL_MS) {
		p->quiet_holds++;
		p->quiet_ms += held_ms;
		return false;
	}
	*holds = p->quiet_holds + 1;
	*ms = p->quiet_ms + held_ms;
	p->quiet_holds = p->quiet_ms = 0;
	p->last_ms = now_ms == 0 ? 1 : now_ms;
	return true;
}
