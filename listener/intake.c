#include "intake.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "batch_split.h"
#include "event_type.h"
#include "log.h"
#include "notify.h"

struct collect_ctx {
	const struct intake *in;
	struct intake_scratch *w;
	bool filtering;
	size_t largest_dropped;
};

int
intake_init(struct intake *in, const struct kte_config *cfg, struct ring *ring, struct control *ctl,
    int notify_fd, int ring_wait_ms)
{
	uint32_t limit = cfg->max_record_bytes > INTAKE_KEY_RESERVE ?
	    cfg->max_record_bytes - INTAKE_KEY_RESERVE : cfg->max_record_bytes;

	memset(in, 0, sizeof(*in));
	in->ring = ring;
	in->ctl = ctl;
	in->notify_fd = notify_fd;
	in->ring_wait_ms = ring_wait_ms > 0 ? ring_wait_ms : INTAKE_RING_WAIT_MS;
	in->max_event = ring_max_record(ring) < limit ? ring_max_record(ring) : limit;
	return filter_init(&in->filter, cfg);
}

void
intake_scratch_cleanup(struct intake_scratch *w)
{
	free(w->iov);
	free(w->meta);
	memset(w, 0, sizeof(*w));
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The event's type code for the ring metadata. */
static uint8_t
event_type_of(const struct batch_event *ev)
{
	static const char platform[] = "platform.";

	if (ev->len == 0 || ev->data[0] != '{')
		return EVENT_TYPE_NOT_OBJECT;
	switch (ev->kind) {
	case EVENT_RUNTIME_DONE:
		return EVENT_TYPE_RUNTIME_DONE;
	case EVENT_REPORT:
		return EVENT_TYPE_REPORT;
	case EVENT_LOGS_DROPPED:
		return EVENT_TYPE_LOGS_DROPPED;
	case EVENT_FUNCTION:
		return EVENT_TYPE_FUNCTION;
	case EVENT_EXTENSION:
		return EVENT_TYPE_EXTENSION;
	case EVENT_OTHER:
		break;
	}
	if (ev->type == NULL || ev->type_len < sizeof(platform) - 1 ||
	    memcmp(ev->type, platform, sizeof(platform) - 1) != 0)
		return EVENT_TYPE_OTHER;
	if (ev->type_len == 14 && memcmp(ev->type, "platform.start", 14) == 0)
		return EVENT_TYPE_PLATFORM_START;
	return EVENT_TYPE_PLATFORM_OTHER;
}

/*
 * What the dispatcher needs from the event, found while it was validated: its type
 * and where its record.requestId lies (none if absent, escaped or over RING_RID_MAX:
 * such an id is no partition key anyway).
 */
static struct ring_meta
event_meta(const struct batch_event *ev)
{
	struct ring_meta m = { 0, 0, event_type_of(ev), 0 };

	if (ev->request_id != NULL && !ev->request_id_escaped && ev->request_id_len > 0 &&
	    ev->request_id_len <= RING_RID_MAX && ev->request_id >= ev->data &&
	    ev->request_id + ev->request_id_len <= ev->data + ev->len) {
		m.rid_off = (uint32_t)(ev->request_id - ev->data);
		m.rid_len = (uint16_t)ev->request_id_len;
	}
	return m;
}

/* Called by the splitter for each element: tallies, filters, and collects the span. */
static int
collect(void *ctx, const struct batch_event *ev)
{
	struct collect_ctx *c = ctx;
	struct intake_scratch *w = c->w;

	switch (ev->kind) {
	case EVENT_RUNTIME_DONE:
		w->runtime_done++;
		break;
	case EVENT_REPORT:
		w->reports++;
		break;
	case EVENT_LOGS_DROPPED:
		w->logs_dropped = sat_add(w->logs_dropped, ev->dropped_records);
		break;
	default:
		break;
	}
	if (c->filtering && filter_drop(&c->in->filter, ev)) {
		w->filtered++;
		return 0;
	}
	if (ev->len > c->in->max_event) {
		w->oversized++;
		if (ev->len > c->largest_dropped)
			c->largest_dropped = ev->len;
		return 0;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap == 0 ? 1024 : w->cap * 2;
		struct iovec *v = realloc(w->iov, cap * sizeof(*v));
		struct ring_meta *m;

		if (v != NULL)
			w->iov = v;
		m = v != NULL ? realloc(w->meta, cap * sizeof(*m)) : NULL;
		if (m == NULL) {
			w->error = -ENOMEM;
			return -ENOMEM;
		}
		w->meta = m;
		w->cap = cap;
	}
	w->iov[w->n].iov_base = (void *)(uintptr_t)ev->data;
	w->iov[w->n].iov_len = ev->len;
	w->meta[w->n] = event_meta(ev);
	w->n++;
	w->bytes += ev->len;
	return 0;
}

/*
 * A batch larger than the whole ring goes in as several groups of at most half the
 * ring each. If a later group then finds no space, the earlier ones stay in the ring
 * and the whole batch is refused: the Telemetry API's retry duplicates them. Only a
 * ring smaller than two batches can get here (the default 8 MiB ring holds 8).
 */
static int
write_chunked(const struct intake *in, struct iovec *iov, const struct ring_meta *meta, size_t n,
    int *chunks)
{
	uint64_t half = in->ring->capacity / 2;
	size_t i = 0;
	int rc;

	while (i < n) {
		size_t j = i;
		uint64_t acc = 0;

		do {
			acc += ring_record_size(iov[j].iov_len);
			j++;
		} while (j < n && acc + ring_record_size(iov[j].iov_len) <= half);
		rc = ring_writev_meta_wait(in->ring, iov + i, meta + i, j - i, in->ring_wait_ms, in->cancel);
		if (rc != 0)
			return rc;
		(*chunks)++;
		i = j;
	}
	return 0;
}

/* At most one line per RING_FULL_WARN_MS, however many batches are refused. */
#define RING_FULL_WARN_MS 10000

static void
ring_full_warn(struct listener_counters *lc)
{
	static _Atomic uint64_t last_ms;
	uint64_t now = now_mono_ms(), prev = atomic_load_explicit(&last_ms, memory_order_relaxed);

	if (prev != 0 && now - prev < RING_FULL_WARN_MS)
		return;
	if (!atomic_compare_exchange_strong(&last_ms, &prev, now))
		return;
	log_warnx("ring full: answering 503 so that Lambda retries (%" PRIu64 " batches so far)",
	    atomic_load_explicit(&lc->ring_full, memory_order_relaxed));
}

int
intake_batch(const struct intake *in, struct intake_scratch *w, const uint8_t *body, size_t len,
    struct intake_result *res)
{
	struct collect_ctx c = { .in = in, .w = w, .filtering = filter_active(&in->filter) };
	struct batch_split_error err = { 0, NULL };
	struct listener_counters *lc = &in->ctl->listener;
	int rc;

	memset(res, 0, sizeof(*res));
	w->n = 0;
	w->bytes = w->filtered = w->oversized = w->runtime_done = w->reports = w->logs_dropped = 0;
	w->error = 0;

	rc = batch_split(body, len, collect, &c, &res->events, &err);
	if (rc != 0) {
		if (rc == -ENOMEM || w->error != 0) {
			res->status = 500;
			res->why = "out of memory";
			return res->status;
		}
		res->status = 400;
		res->why = rc == -ENODATA ? "empty body" : rc == -EPROTOTYPE ? "not a JSON array" :
		    err.what != NULL ? err.what : "invalid JSON";
		res->error_offset = err.offset;
		atomic_fetch_add_explicit(&lc->bad_request, 1, memory_order_relaxed);
		return res->status;
	}

	if (w->n > 0) {
		if (ring_space_needed(w->iov, w->n) <= in->ring->capacity) {
			rc = ring_writev_meta_wait(in->ring, w->iov, w->meta, w->n, in->ring_wait_ms,
			    in->cancel);
			res->chunks = rc == 0;
		} else
			rc = write_chunked(in, w->iov, w->meta, w->n, &res->chunks);
		if (rc == -ENOSPC) {
			res->status = 503;
			res->why = "ring full";
			atomic_fetch_add_explicit(&lc->ring_full, 1, memory_order_relaxed);
			ring_full_warn(lc);
			return res->status;
		}
		if (rc != 0) {
			res->status = 500;
			res->why = "ring write failed";
			log_warnx("ring write of %zu events failed: %s", w->n, strerror(-rc));
			return res->status;
		}
	}
	res->written = w->n;
	res->status = 200;

	if (w->oversized > 0)
		log_warnx("dropped %" PRIu64 " event(s) larger than the %" PRIu32 "-byte record limit "
		    "(largest %zu bytes)", w->oversized, in->max_event, c.largest_dropped);
	atomic_fetch_add_explicit(&lc->requests, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&lc->events, w->n, memory_order_relaxed);
	atomic_fetch_add_explicit(&lc->bytes, w->bytes, memory_order_relaxed);
	if (w->filtered > 0)
		atomic_fetch_add_explicit(&lc->filtered, w->filtered, memory_order_relaxed);
	if (w->oversized > 0)
		atomic_fetch_add_explicit(&lc->oversized_dropped, w->oversized, memory_order_relaxed);
	if (w->logs_dropped > 0)
		atomic_fetch_add_explicit(&lc->logs_dropped_records, w->logs_dropped, memory_order_relaxed);
	if (w->reports > 0)
		atomic_fetch_add_explicit(&in->ctl->report_count, w->reports, memory_order_relaxed);
	if (w->runtime_done > 0) {
		/* After the events are in the ring: the controller's `end` flush waits for this. */
		atomic_fetch_add_explicit(&in->ctl->runtime_done_count, w->runtime_done, memory_order_release);
		if (in->notify_fd >= 0)
			notify_signal(in->notify_fd);
	}
	return res->status;
}
