#include "controller/flush.h"

#include <string.h>

void
flush_init(struct flush_state *f, enum flush_policy policy, uint32_t interval_ms)
{
	memset(f, 0, sizeof(*f));
	f->configured = policy;
	f->interval_ms = interval_ms;
	f->effective = policy == FLUSH_ADAPTIVE ? FLUSH_END : policy;
}

uint64_t
flush_mean_interval(const struct flush_state *f)
{
	uint64_t sum = 0;

	if (f->n_intervals == 0)
		return 0;
	for (uint32_t i = 0; i < f->n_intervals; i++)
		sum += f->intervals[i];
	return sum / f->n_intervals;
}

static void
flush_record_interval(struct flush_state *f, uint64_t now_ms)
{
	if (f->last_invoke_ms != 0 && now_ms >= f->last_invoke_ms) {
		if (f->n_intervals < FLUSH_ADAPTIVE_WINDOW)
			f->intervals[f->n_intervals++] = now_ms - f->last_invoke_ms;
		else {
			memmove(f->intervals, f->intervals + 1, sizeof(f->intervals) - sizeof(f->intervals[0]));
			f->intervals[FLUSH_ADAPTIVE_WINDOW - 1] = now_ms - f->last_invoke_ms;
		}
	}
	f->last_invoke_ms = now_ms;
}

static enum flush_policy
flush_adapt(struct flush_state *f)
{
	uint64_t mean;

	if (f->invocations <= FLUSH_ADAPTIVE_WARMUP || f->n_intervals < FLUSH_ADAPTIVE_WINDOW)
		return FLUSH_END;
	mean = flush_mean_interval(f);
	if (f->effective == FLUSH_END && mean < FLUSH_ADAPTIVE_FAST_MS)
		return FLUSH_CONTINUOUS;
	if (f->effective == FLUSH_CONTINUOUS && mean > FLUSH_ADAPTIVE_SLOW_MS)
		return FLUSH_END;
	return f->effective;
}

void
flush_on_invoke(struct flush_state *f, const struct flush_inputs *in, struct flush_plan *plan)
{
	enum flush_policy before = f->effective;
	uint64_t now_ms = in->now_ms;

	memset(plan, 0, sizeof(*plan));
	f->invocations++;
	flush_record_interval(f, now_ms);
	if (f->runtime_done_missed && in->runtime_done_count != f->missed_at_count)
		f->runtime_done_missed = false;
	if (f->flush_slow && in->last_flush_done) {
		f->flush_slow = false;
		f->late_streak = 0;
	}
	if (f->configured == FLUSH_ADAPTIVE)
		f->effective = flush_adapt(f);
	plan->changed = f->effective != before;

	switch (f->effective) {
	case FLUSH_END:
		/*
		 * Without a runtimeDone to wait for there is no "end" to flush at: the
		 * dispatcher sends as data arrives (as in continuous) and nothing waits.
		 */
		plan->wait_runtime_done = in->runtime_done_usable && !f->runtime_done_missed &&
		    !f->flush_slow;
		plan->wait_flush = plan->wait_runtime_done;
		break;
	case FLUSH_PERIODIC:
		plan->hold_sending = true;
		if (f->last_flush_ms == 0 || now_ms - f->last_flush_ms >= f->interval_ms || in->ring_high) {
			plan->request_flush = true;
			f->last_flush_ms = now_ms;
		}
		break;
	case FLUSH_CONTINUOUS:
	case FLUSH_ADAPTIVE:
		break;
	}
}

void
flush_end_result(struct flush_state *f, bool in_budget)
{
	if (in_budget) {
		f->late_streak = 0;
		return;
	}
	if (++f->late_streak >= FLUSH_LATE_LIMIT)
		f->flush_slow = true;
}

void
flush_runtime_done_missed(struct flush_state *f, uint64_t runtime_done_count)
{
	f->runtime_done_missed = true;
	f->missed_at_count = runtime_done_count;
}

int64_t
flush_wait_until(int64_t now, int64_t deadline_ms, uint32_t margin_ms, uint32_t budget_ms)
{
	int64_t until = now + (int64_t)budget_ms;

	if (until > deadline_ms - (int64_t)margin_ms)
		until = deadline_ms - (int64_t)margin_ms;
	return until < now ? now : until;
}
