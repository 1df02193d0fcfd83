#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dispatcher/dropped.h"
#include "latency.h"
#include "notify.h"

#define METRICS_LINE_MAX 4096

void
metrics_init(struct metrics *m, const struct kte_config *cfg, const char *function, uint64_t now_ms)
{
	memset(m, 0, sizeof(*m));
	m->enabled = cfg->metrics;
	m->interval_ms = cfg->metrics_interval_ms;
	snprintf(m->ns, sizeof(m->ns), "%s", cfg->metrics_namespace);
	snprintf(m->function, sizeof(m->function), "%s",
	    function != NULL && *function != '\0' ? function : "unknown");
	m->last_ms = now_ms;
}

static uint64_t
load_plain(const uint64_t *p)
{
	/* Fields the dispatcher writes as plain integers (struct dispatcher_drops). */
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void
metrics_sample(const struct control *ctl, struct metrics_sample *s)
{
	const struct listener_counters *l = &ctl->listener;
	const struct dispatcher_counters *d = &ctl->dispatcher;

	s->received = atomic_load(&l->events);
	s->sent = atomic_load(&d->events_sent);
	s->records_sent = atomic_load(&d->records_sent);
	s->bytes_sent = atomic_load(&d->bytes_sent);
	s->retried = atomic_load(&d->records_retried);
	s->dropped_lambda = atomic_load(&l->logs_dropped_records);
	/* Too large: single events the listener could not fit a record, or the dispatcher a request. */
	s->dropped_too_large = atomic_load(&l->oversized_dropped) + load_plain(&ctl->drops.counted[DROP_TOO_LARGE]);
	s->dropped_rejected = load_plain(&ctl->drops.counted[DROP_REJECTED]);
	s->dropped_shutdown = atomic_load(&d->events_left);
	/* Post-runtime time the extension added: the `end` flush waits and the push back's holds. */
	s->hold_count = atomic_load(&ctl->next_hold_count) + atomic_load(&ctl->pressure.holds);
	s->hold_ms = atomic_load(&ctl->next_hold_ms) + atomic_load(&ctl->pressure.hold_ms);
	for (unsigned b = 0; b < LATENCY_BUCKETS; b++)
		s->latency[b] = atomic_load(&ctl->latency.bucket[b]);
}

/* Counters only grow; a smaller reading (never expected) reports 0, not a huge number. */
static uint64_t
delta(uint64_t cur, uint64_t prev)
{
	return cur > prev ? cur - prev : 0;
}

void
metrics_delta(const struct metrics_sample *cur, const struct metrics_sample *prev, uint64_t window_max_ms,
    struct metrics_values *v)
{
	uint64_t hist[LATENCY_BUCKETS], floor_ms = 0;

	memset(v, 0, sizeof(*v));
	v->received = delta(cur->received, prev->received);
	v->sent = delta(cur->sent, prev->sent);
	v->records_sent = delta(cur->records_sent, prev->records_sent);
	v->bytes_sent = delta(cur->bytes_sent, prev->bytes_sent);
	v->retried = delta(cur->retried, prev->retried);
	v->dropped_lambda = delta(cur->dropped_lambda, prev->dropped_lambda);
	v->dropped_too_large = delta(cur->dropped_too_large, prev->dropped_too_large);
	v->dropped_rejected = delta(cur->dropped_rejected, prev->dropped_rejected);
	v->dropped_shutdown = delta(cur->dropped_shutdown, prev->dropped_shutdown);
	v->hold_count = delta(cur->hold_count, prev->hold_count);
	v->hold_ms = delta(cur->hold_ms, prev->hold_ms);
	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		hist[b] = delta(cur->latency[b], prev->latency[b]);
		v->acked += hist[b];
		if (hist[b] > 0)
			floor_ms = latency_bucket_low(b);
	}
	if (v->acked == 0)
		return;
	/* The window's maximum may have been restarted late; it is never below the top bucket. */
	v->ack_max_ms = window_max_ms > floor_ms ? window_max_ms : floor_ms;
	v->ack_p50_ms = latency_quantile(hist, 0.5, v->ack_max_ms);
}

/* A bounded writer: on overflow pos passes len and the result is refused at the end. */
struct out {
	char *buf;
	size_t len, pos;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->pos < o->len ? o->buf + o->pos : NULL, o->pos < o->len ? o->len - o->pos : 0, fmt, ap);
	va_end(ap);
	o->pos += n > 0 ? (size_t)n : 0;
}

/* A JSON string; namespace and function name are checked, but escape anyway. */
static void
out_string(struct out *o, const char *s)
{
	out_printf(o, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			out_printf(o, "\\%c", c);
		else if (c < 0x20)
			out_printf(o, "\\u%04x", c);
		else
			out_printf(o, "%c", c);
	}
	out_printf(o, "\"");
}

struct metric_def {
	const char *name;
	const char *unit;
	uint64_t value;
	bool present;
};

int
metrics_format(char *buf, size_t len, const char *ns, const char *function, uint64_t ts_ms,
    const struct metrics_values *v)
{
	uint64_t dropped = v->dropped_lambda + v->dropped_too_large + v->dropped_rejected + v->dropped_shutdown;
	uint64_t fill_pct = v->ring_capacity ? (v->ring_hw_bytes * 100 + v->ring_capacity - 1) / v->ring_capacity : 0;
	const struct metric_def defs[] = {
		{ "Invocations", "Count", v->invocations, true },
		{ "EventsReceived", "Count", v->received, true },
		{ "EventsSent", "Count", v->sent, true },
		{ "RecordsSent", "Count", v->records_sent, true },
		{ "BytesSent", "Bytes", v->bytes_sent, true },
		{ "RecordsRetried", "Count", v->retried, true },
		{ "EventsDropped", "Count", dropped, true },
		{ "DroppedByLambda", "Count", v->dropped_lambda, true },
		{ "DroppedTooLarge", "Count", v->dropped_too_large, true },
		{ "DroppedRejected", "Count", v->dropped_rejected, true },
		{ "DroppedAtShutdown", "Count", v->dropped_shutdown, true },
		/* No events acknowledged: no latency, rather than a 0 that would pull averages down. */
		{ "AckLatencyP50", "Milliseconds", v->ack_p50_ms, v->acked > 0 },
		{ "AckLatencyMax", "Milliseconds", v->ack_max_ms, v->acked > 0 },
		{ "RingHighWater", "Percent", fill_pct, true },
		{ "RingHighWaterBytes", "Bytes", v->ring_hw_bytes, true },
		{ "NextHolds", "Count", v->hold_count, true },
		{ "NextHoldTime", "Milliseconds", v->hold_ms, true },
	};
	const size_t n = sizeof(defs) / sizeof(defs[0]);
	struct out o = { buf, len, 0 };
	bool first = true;

	_Static_assert(sizeof(defs) / sizeof(defs[0]) <= 100, "EMF allows 100 metrics per directive");
	out_printf(&o, "{\"_aws\":{\"Timestamp\":%" PRIu64 ",\"CloudWatchMetrics\":[{\"Namespace\":", ts_ms);
	out_string(&o, ns);
	out_printf(&o, ",\"Dimensions\":[[\"FunctionName\"],[]],\"Metrics\":[");
	for (size_t i = 0; i < n; i++) {
		if (!defs[i].present)
			continue;
		out_printf(&o, "%s{\"Name\":\"%s\",\"Unit\":\"%s\"}", first ? "" : ",", defs[i].name, defs[i].unit);
		first = false;
	}
	out_printf(&o, "]}]},\"FunctionName\":");
	out_string(&o, function);
	for (size_t i = 0; i < n; i++)
		if (defs[i].present)
			out_printf(&o, ",\"%s\":%" PRIu64, defs[i].name, defs[i].value);
	out_printf(&o, "}\n");
	if (o.pos >= len)
		return -ENOSPC;
	return (int)o.pos;
}

/* Takes the window's maxima and starts a new window (the dispatcher restarts them lazily). */
static void
metrics_window_take(struct control *ctl, struct ring *ring, uint64_t *max_ms, uint64_t *hw_bytes)
{
	uint64_t w = atomic_load(&ctl->metrics_window);
	struct ring_stats st;

	*max_ms = *hw_bytes = 0;
	if (atomic_load_explicit(&ctl->latency.window, memory_order_acquire) == w) {
		*max_ms = atomic_load(&ctl->latency.max_ms);
		*hw_bytes = atomic_load(&ctl->latency.ring_hw_bytes);
	}
	/* What is in use now counts too: the ring may have filled since the last release. */
	ring_stats(ring, &st);
	if (st.head - st.tail > *hw_bytes)
		*hw_bytes = st.head - st.tail;
	atomic_store(&ctl->metrics_window, w + 1);
}

int
metrics_emit(struct metrics *m, struct control *ctl, struct ring *ring, int fd, bool invocation, bool final,
    uint64_t now_ms)
{
	struct metrics_sample cur;
	struct metrics_values v;
	char line[METRICS_LINE_MAX];
	uint64_t max_ms, hw;
	ssize_t w;
	int n;

	if (!m->enabled)
		return 0;
	if (invocation)
		m->invocations++;
	if (!final && now_ms - m->last_ms < m->interval_ms)
		return 0;
	metrics_sample(ctl, &cur);
	metrics_window_take(ctl, ring, &max_ms, &hw);
	metrics_delta(&cur, &m->last, max_ms, &v);
	v.ring_hw_bytes = hw;
	v.ring_capacity = ring->capacity;
	v.invocations = m->invocations;
	n = metrics_format(line, sizeof(line), m->ns, m->function, now_epoch_ms(), &v);
	if (n < 0)
		return n;
	m->last = cur;
	m->last_ms = now_ms;
	m->invocations = 0;
	/* One write of one line: Lambda turns each stdout line into one log event. */
	do
		w = write(fd, line, (size_t)n);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return -errno;
	m->lines++;
	m->bytes += (uint64_t)w;
	return 1;
}
