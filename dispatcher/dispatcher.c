/*
 * The dispatcher's main loop: a pipeline of Kinesis records between the ring and PutRecords.
 *
 *   fill:     ring_peek events into a slot (a batch of encoded records) while fewer than
 *             one request's worth of records waits to be sent
 *   compose:  a request takes the pending records of every slot, oldest first, within
 *             500 records / max_request bytes: records that failed inside a 200 answer go
 *             out again at once, together with new ones (as the KPL does)
 *   settle:   each record is accepted, pending again (failed), or dropped (rejected);
 *             release_acknowledged() gives back the ring space of the acknowledged prefix
 *
 * One request in flight (a second one is not built: see docs/internals/dispatcher.md);
 * while it is, the next slot is filled and encoded, so encoding overlaps the round trip. Ring space is released only up to the first event of
 * the earliest unsettled record: a crash or restart resumes from there (at-least-once).
 *
 * The sending state (enum ds_state) changes only in ds_step(): backoff grows only when a
 * request made no progress; a request rejected as invalid is bisected (struct bisect) to
 * find the record Kinesis refuses.
 */
#include "dispatcher.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "batch.h"
#include "dropped.h"
#include "kinesis_client.h"
#include "latency.h"
#include "log.h"
#include "notify.h"
#include "pkey.h"
#include "reply.h"

#define REQUEST_TIMEOUT_MS  10000L  /* a PutRecords round trip is ~10-50 ms; a freeze ends it */
#define DEADLINE_SAFETY_MS  10      /* stop this long before the controller's deadline */
#define SHUTDOWN_RETRY_MS   100     /* backoff ceiling while the deadline runs */
#define POLL_CAP_MS         500     /* re-check the parent and the deadline this often */
#define KEEP_IDLE_BYTES     (256u << 10) /* buffers kept across idle periods */
#define DROP_LOG_EVERY_MS   10000
#define SUMMARY_EVERY_MS    10000   /* at most one drop summary per interval (but the first at once) */

/*
 * Slots of encoded records. Memory is bounded by can_fill() (less than one request's worth
 * pending before another slot is filled), not by their number; there are enough for
 * records failing again and again while small slots keep arriving.
 */
#define NSLOTS              16
#define NSLOTS_KEPT_IDLE    2       /* slots whose buffers are kept across idle periods */
#define FAIL_LOG_EVERY_MS   10000   /* at most one "failing" warning per interval */
#define BISECT_STACK        32      /* ranges still to try: 2 per level of a 500-record split */
#define BISECT_CONDEMN_MAX  3       /* single records rejected, none accepted: a configuration error */
#define SHRINK_MAX          5       /* after timeouts requests carry down to 1/32 of the limits */
#define REGROW_AFTER        8       /* requests in a row that made progress before doubling again */

static volatile sig_atomic_t stop_signal;

/* Encoded records and the ring range their events came from. */
struct slot {
	struct batch b;
	uint64_t end;                   /* ring position after its last event; 0: no ring event */
	bool taken;                     /* some of its records went into a request */
	/*
	 * For the arrival -> acknowledgement latency (common/latency.h): mono ms the batch's
	 * first event arrived (the ring record's arrival stamp, written by the listener; when
	 * the dispatcher took it from the ring for records without one), and the events of it
	 * Kinesis acknowledged.
	 */
	uint64_t arrival_ms;
	uint64_t acked;
};

/* A record of a slot: slot index in d->slot[], record index in its batch. */
struct rec_ref {
	uint16_t slot;
	uint16_t krec;
};

/*
 * The sending state. Requests go out while DS_READY (as soon as records are pending);
 * DS_BACKOFF and DS_OPEN hold the next request until not_before. Changed only by ds_step.
 */
enum ds_state {
	DS_READY = 0,   /* the last request made progress (or none failed yet) */
	DS_BACKOFF,     /* the last request made no progress: retry after a growing backoff */
	DS_OPEN,        /* a configuration error (or the circuit opened): probe at not_before */
};

enum ds_event {
	EV_PROGRESS,    /* a reply accepted at least one record */
	EV_RETRYABLE,   /* nothing accepted, a retry may help: HTTP 5xx, throttled, connection */
	EV_EXPIRED,     /* credentials expired: re-sign and retry at once, once */
	EV_CONFIG,      /* no retry helps soon: access, not found, signing, every record rejected */
	EV_DEADLINE,    /* the shutdown deadline is set: a backoff must not outlast it */
	EV_NO_CREDENTIALS, /* no usable credentials yet: wait for the provider's next try */
};

/*
 * Bisection of a request Kinesis rejected as invalid (InvalidArgumentException,
 * ValidationException, HTTP 413): its records are split in halves and each half sent
 * alone, depth first, until the rejected record(s) stand alone. A record rejected alone
 * is dropped once some other record was accepted meanwhile (the rejection is about that
 * record); when single records are rejected and none is accepted, the rejection is about
 * the configuration: the records are kept and the circuit opens, as for AccessDenied.
 */
struct bisect {
	struct rec_ref refs[BATCH_MAX_RECORDS];
	unsigned n;                     /* 0: no bisection under way */
	unsigned lo[BISECT_STACK], hi[BISECT_STACK];
	unsigned depth;                 /* ranges [lo, hi) of refs still to send alone; top last */
	uint64_t accepted;              /* records accepted since it started */
	struct rec_ref condemned[BISECT_CONDEMN_MAX];
	unsigned ncondemned;            /* rejected alone while nothing was accepted yet */
};

struct dispatcher {
	const struct kte_config *cfg;
	struct ring *ring;
	struct control *ctl;
	const struct control_fds *fds;
	struct kinesis_client *kc;      /* NULL: shipping impossible, discard */
	struct pkey_state pk;
	struct slot slot[NSLOTS];
	unsigned first, nslots;         /* live slots: slot[(first + i) % NSLOTS], oldest first */
	uint64_t released;              /* ring position released so far */

	struct rec_ref req[BATCH_MAX_RECORDS];  /* records of the request in flight, in body order */
	unsigned nreq;
	char *wire;                     /* body of a request that is not one whole slot */
	size_t wire_cap;

	enum ds_state state;
	unsigned attempt;               /* requests in a row that made no progress */
	uint64_t not_before;            /* mono ms: no request before this */
	uint64_t fail_log_ms;           /* mono ms of the last "failing" warning */
	struct bisect bis;
	struct backoff_rng rng;
	struct circuit cb;
	/*
	 * A request that timed out was too large for how fast Kinesis takes data now: the
	 * next ones carry half the records and bytes (1/2^shrink of the limits), doubling again
	 * after REGROW_AFTER requests in a row that made progress. A slow stream then keeps
	 * moving instead of failing request after request until the circuit opens.
	 */
	unsigned shrink;
	unsigned regrow;
	long req_timeout_ms;            /* the request in flight's timeout (less near the deadline) */

	struct ring_record carry;       /* a peeked event that did not fit the last slot (data != NULL) */
	bool drained;                   /* a peek found nothing more since the last wake-up */

	uint64_t flush_pending;         /* flush_requested value being worked on, 0 none */
	uint64_t flush_target;          /* ring head when it was seen */

	struct drop_counts local;       /* too large, rejected */
	struct drop_counts reported;    /* counts already delivered in a summary */
	struct drop_counts summary_counts; /* counts in the summary in flight */
	uint64_t summary_since_ms;
	uint64_t summary_built_ms;
	uint64_t summary_sent_ms;       /* mono ms the last summary was accepted */
	bool summary_pending;           /* a summary rides in a live slot */
	char summary[1024];

	uint64_t drop_log_ms;
	uint64_t drop_log_quiet;        /* drops not logged since drop_log_ms */
	bool restored;                  /* a SnapStart restore was handled */

	uint8_t status[BATCH_MAX_RECORDS];
};

_Static_assert(DROP_KINDS <= CONTROL_DROP_KINDS, "struct dispatcher_drops is too small");

static struct slot *
slot_at(struct dispatcher *d, unsigned i)
{
	return &d->slot[(d->first + i) % NSLOTS];
}

static struct batch_krec *
ref_krec(struct dispatcher *d, struct rec_ref r)
{
	return &d->slot[r.slot].b.krec[r.krec];
}

static void
on_signal(int sig)
{
	stop_signal = sig;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;      /* no SA_RESTART: poll returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

static bool
shutting_down(const struct dispatcher *d)
{
	return atomic_load(&d->ctl->shutdown_deadline_ms) != 0;
}

/* Epoch ms at which to stop, or 0 when there is no deadline. */
static int64_t
stop_at_ms(const struct dispatcher *d)
{
	int64_t dl = atomic_load(&d->ctl->shutdown_deadline_ms);

	return dl == 0 ? 0 : dl - DEADLINE_SAFETY_MS;
}

static void
publish_health(struct dispatcher *d)
{
	atomic_store(&d->ctl->kinesis_healthy, d->cb.open ? 0u : 1u);
	atomic_store(&d->ctl->consecutive_failures, d->cb.consecutive);
}

static void
count_drop(struct dispatcher *d, enum drop_kind kind, uint64_t events, uint64_t bytes, const char *why)
{
	uint64_t now = now_mono_ms();

	d->local.v[kind] += events;
	d->ctl->drops.counted[kind] = d->local.v[kind];
	atomic_fetch_add(&d->ctl->dispatcher.events_dropped, events);
	atomic_fetch_add(&d->ctl->dispatcher.bytes_dropped, bytes);
	if (d->drop_log_ms == 0 || now - d->drop_log_ms >= DROP_LOG_EVERY_MS) {
		log_warnx("dropped %" PRIu64 " event(s), %" PRIu64 " bytes: %s%s", events, bytes, why,
		    d->drop_log_quiet ? " (more drops since the last such line)" : "");
		d->drop_log_ms = now;
		d->drop_log_quiet = 0;
	} else
		d->drop_log_quiet += events;
}

/* Summary bookkeeping for records that were just settled. */
static void
summary_settled(struct dispatcher *d, const struct batch_settled *st)
{
	if (st->summary_ok) {
		d->reported = d->summary_counts;
		d->summary_since_ms = d->summary_built_ms;
		d->summary_sent_ms = now_mono_ms();
		d->summary_pending = false;
		memcpy(d->ctl->drops.reported, d->reported.v, sizeof(d->reported.v));
		d->ctl->drops.reported_ms = d->summary_since_ms;
	} else if (st->summary_dropped)
		d->summary_pending = false;
}

/*
 * The one place where acknowledged (or given-up) records are counted and their ring
 * space released: adds what st settled to the counters, then releases the ring up to the
 * first event of the earliest unsettled record and frees the slots fully settled.
 */
static void
release_acknowledged(struct dispatcher *d, const struct batch_settled *st)
{
	struct dispatcher_counters *c = &d->ctl->dispatcher;
	int rc;

	if (st != NULL) {
		atomic_fetch_add(&c->records_sent, st->records_ok);
		atomic_fetch_add(&c->events_sent, st->events_ok);
		atomic_fetch_add(&c->bytes_sent, st->bytes_ok);
		summary_settled(d, st);
	}
	while (d->nslots > 0) {
		struct slot *sl = slot_at(d, 0);
		bool done = !batch_unsettled(&sl->b);
		uint64_t pos = sl->end == 0 ? 0 : batch_release_pos(&sl->b, sl->end);

		if (pos > d->released) {
			struct ring_stats rs;

			ring_stats(d->ring, &rs);
			latency_ring_used(d->ctl, rs.head - rs.tail);
			if ((rc = ring_release(d->ring, pos)) < 0)
				log_warnx("ring_release(%" PRIu64 "): %s", pos, strerror(-rc));
			d->released = pos;
		}
		if (!done)
			break;
		latency_record(d->ctl, now_mono_ms() - sl->arrival_ms, sl->acked);
		d->first = (d->first + 1) % NSLOTS;
		d->nslots--;
	}
}

/*
 * After a SnapStart restore, environments restored from one snapshot share the random
 * state, the sockets and the credentials of init: draw new seeds (partition keys, jitter),
 * connect afresh and fetch fresh credentials, once per process. Two signals, whichever
 * comes first: platform.restoreStart passing through the ring (it comes before anything
 * else after the restore, so no request is sent on the snapshot's connection), and the
 * controller's restore_count (the first INVOKE of a snap-start environment), which cannot
 * be filtered out or lost. A dispatcher started after a restore reseeds needlessly, which
 * costs nothing.
 */
static void
on_restore(struct dispatcher *d, const char *why)
{
	if (d->restored)
		return;
	d->restored = true;
	backoff_rng_init(&d->rng);
	pkey_reseed(&d->pk);
	if (d->kc != NULL)
		kinesis_client_after_restore(d->kc);
	log_info("SnapStart restore (%s): random sources reseeded, connections and credentials renewed",
	    why);
}

/* Whether rec is platform.restoreStart: small events only, a cheap search first. */
static bool
is_restore_start(const struct ring_record *rec)
{
	static const char type[] = "platform.restoreStart";
	const uint8_t *t, *rid;
	size_t tl, rl;

	if (rec->len > 4096 || memmem(rec->data, rec->len, type, sizeof(type) - 1) == NULL)
		return false;
	return pkey_scan_event(rec->data, rec->len, &t, &tl, &rid, &rl) == 0 && t != NULL &&
	    tl == sizeof(type) - 1 && memcmp(t, type, tl) == 0;
}

/* Next event: the carried one, or a fresh peek. 0, -EAGAIN, or -errno. */
static int
next_event(struct dispatcher *d, struct ring_record *rec)
{
	uint64_t skipped;
	int rc;

	if (d->carry.data != NULL) {
		*rec = d->carry;
		d->carry.data = NULL;
		return 0;
	}
	for (;;) {
		rc = ring_peek(d->ring, rec);
		if (rc != -EBADMSG)
			return rc;
		skipped = ring_skip_corrupt(d->ring);
		log_warnx("ring corruption detected: skipped %" PRIu64 " bytes", skipped);
	}
}

/* Puts the dropped summary first in a new batch if there is anything to report. */
static void
add_summary(struct dispatcher *d, struct slot *sl)
{
	struct drop_counts cur;
	uint64_t now = now_epoch_ms();
	int n, rc;

	if (d->cb.open || d->summary_pending)
		return;
	/* While the ring overflows every request would carry one: pace them, except at shutdown. */
	if (d->summary_sent_ms != 0 && now_mono_ms() - d->summary_sent_ms < SUMMARY_EVERY_MS &&
	    !shutting_down(d))
		return;
	dropped_collect(&cur, &d->local, d->ring, d->ctl);
	if (!dropped_any(&cur, &d->reported))
		return;
	n = dropped_format(d->summary, sizeof(d->summary), &cur, &d->reported, now, d->summary_since_ms);
	if (n < 0)
		return;
	/* Not a ring event: it never holds back the release of the ring. */
	rc = batch_add_at(&sl->b, (const uint8_t *)d->summary, (size_t)n, true, UINT64_MAX);
	if (rc == BATCH_ADDED) {
		d->summary_counts = cur;
		d->summary_built_ms = now;
		d->summary_pending = true;
	}
}

/* Over half full: hold_sending yields, as the controller would flush at the next INVOKE. */
static bool
ring_high(const struct dispatcher *d)
{
	struct ring_stats st;

	ring_stats(d->ring, &st);
	return st.head - st.tail > st.capacity / 2;
}

/*
 * Whether new events may be taken: not while the periodic policy holds sending, unless
 * the ring is over half full (during one long invocation no INVOKE comes to flush it,
 * and a full ring makes the listener refuse batches).
 */
static bool
may_fill(const struct dispatcher *d)
{
	if (atomic_load(&d->ctl->hold_sending) && d->flush_pending == 0 && !shutting_down(d) &&
	    !ring_high(d))
		return false;
	return true;
}

/* Records (and Kinesis bytes) waiting to be sent, in flight not counted. */
static unsigned
unsent(struct dispatcher *d, uint64_t *bytes)
{
	unsigned n = 0;

	*bytes = 0;
	for (unsigned s = 0; s < d->nslots; s++) {
		struct batch *b = &slot_at(d, s)->b;

		for (unsigned i = 0; i < b->nkrec; i++)
			if (b->krec[i].state == KREC_PENDING) {
				n++;
				*bytes += b->krec[i].kin_bytes;
			}
	}
	return n;
}

/* Whether another slot may be filled: one is free and less than a request's worth waits. */
static bool
can_fill(struct dispatcher *d)
{
	uint64_t bytes;

	/* Not while bisecting: a recycled slot would put new records into its ranges. */
	if (d->nslots == NSLOTS || d->bis.n > 0 || !may_fill(d))
		return false;
	/*
	 * Not while the newest slot waits for its first request: events arriving meanwhile
	 * join the next slot, filled when that request goes out, instead of many small slots
	 * (small records, for ndjson and kpl).
	 */
	if (d->nslots > 0 && !slot_at(d, d->nslots - 1)->taken)
		return false;
	return unsent(d, &bytes) < BATCH_MAX_RECORDS && bytes < d->cfg->max_request_bytes;
}

/* Fills the next free slot from the ring (after the carried event). */
static void
fill(struct dispatcher *d)
{
	struct slot *sl = slot_at(d, d->nslots);
	struct ring_record rec;
	int rc;

	batch_reset(&sl->b, SIZE_MAX);
	sl->end = 0;
	sl->taken = false;
	sl->acked = 0;
	sl->arrival_ms = now_mono_ms();
	add_summary(d, sl);
	for (;;) {
		rc = next_event(d, &rec);
		if (rc == -EAGAIN) {
			d->drained = true;
			break;
		}
		if (rc < 0) {
			log_warnx("ring_peek: %s", strerror(-rc));
			d->drained = true;
			break;
		}
		if (!d->restored && is_restore_start(&rec))
			on_restore(d, "platform.restoreStart");
		pkey_hint(&d->pk, &rec);        /* the listener's metadata: no second parse */
		if (sl->end == 0 && (rec.meta.flags & RING_META_ARRIVAL) &&
		    ring_created_ms(d->ring) + rec.arrival_ms <= sl->arrival_ms)
			sl->arrival_ms = ring_created_ms(d->ring) + rec.arrival_ms;
		rc = batch_add_at(&sl->b, rec.data, rec.len, false, rec.pos);
		if (rc == BATCH_ADDED) {
			sl->end = rec.next;
		} else if (rc == BATCH_TOO_LARGE) {
			sl->end = rec.next;
			count_drop(d, DROP_TOO_LARGE, 1, rec.len, "event larger than a Kinesis record "
			    "(KTE_MAX_RECORD_BYTES)");
		} else {
			/* Full, or out of memory: this event starts the next slot. */
			d->carry = rec;
			if (rc < 0)
				log_warnx("batch: out of memory; sending what fits");
			break;
		}
	}
	if (sl->b.nkrec > 0 && (rc = batch_finish(&sl->b)) < 0) {
		struct batch_settled st = { 0 };

		log_warnx("cannot encode a PutRecords request: %s", strerror(-rc));
		batch_drop_pending(&sl->b, &st);
		summary_settled(d, &st);
		count_drop(d, DROP_REJECTED, st.events_dropped, st.bytes_dropped, "encoding failed");
	}
	if (sl->end != 0 || sl->b.nkrec > 0) {
		d->nslots++;
		release_acknowledged(d, NULL);  /* a slot of dropped events only is settled already */
	}
}

/* Fills slots while allowed and the ring has events. */
static void
fill_more(struct dispatcher *d)
{
	while ((d->carry.data != NULL || !d->drained) && can_fill(d)) {
		unsigned before = d->nslots;
		uint64_t released = d->released;

		fill(d);
		if (d->nslots == before && d->released == released && d->carry.data == NULL)
			break;
	}
}

/* Drains the ring without sending (no usable destination). */
static void
discard(struct dispatcher *d)
{
	struct ring_record rec;
	uint64_t n = 0, bytes = 0, end = 0;

	while (next_event(d, &rec) == 0) {
		n++;
		bytes += rec.len;
		end = rec.next;
	}
	d->drained = true;
	if (n > 0) {
		if (ring_release(d->ring, end) < 0)
			log_warnx("ring_release failed");
		d->released = end;
		count_drop(d, DROP_REJECTED, n, bytes, "no usable Kinesis destination");
	}
}

/* ---- the sending state ---- */

static void
on_success(struct dispatcher *d)
{
	uint64_t failures = d->cb.consecutive;

	if (circuit_success(&d->cb))
		log_info("Kinesis accepts records again after %" PRIu64 " failed request(s): circuit closed",
		    failures);
	atomic_store(&d->ctl->last_success_ms, now_mono_ms());
	publish_health(d);
}

static void
on_failure(struct dispatcher *d, bool hard, const struct reply_result *res)
{
	if (circuit_failure(&d->cb, hard))
		log_warnx("Kinesis failing (%s, HTTP %ld), circuit open: flushes stop waiting for it",
		    res->code[0] ? res->code : reply_outcome_name(res->outcome), res->http_status);
	publish_health(d);
}

static void
log_failure(struct dispatcher *d, const struct reply_result *res, bool config)
{
	uint64_t now = now_mono_ms();

	if (d->fail_log_ms != 0 && now - d->fail_log_ms < FAIL_LOG_EVERY_MS)
		return;
	d->fail_log_ms = now;
	if (config)
		log_error("Kinesis refused PutRecords: %s: %s (HTTP %ld); keeping the records, next attempt in "
		    "%u ms", res->code[0] ? res->code : "error", res->message, res->http_status,
		    d->cfg->circuit_probe_ms);
	else
		log_warnx("PutRecords made no progress (HTTP %ld%s%s%s%s); retrying with backoff",
		    res->http_status, res->code[0] ? ", " : "", res->code, res->message[0] ? ": " : "",
		    res->message);
}

/* Sets not_before after a request that made no progress; min_delay for a probe. */
static void
schedule_retry(struct dispatcher *d, uint64_t min_delay)
{
	uint64_t delay;

	d->attempt++;
	delay = backoff_delay_ms(d->attempt, d->cfg->retry_base_ms, d->cfg->retry_max_ms,
	    backoff_rand01(&d->rng));
	if (delay < min_delay)
		delay = min_delay;
	if (shutting_down(d) && delay > SHUTDOWN_RETRY_MS && min_delay == 0)
		delay = SHUTDOWN_RETRY_MS;
	d->not_before = now_mono_ms() + delay;
}

/* The transition function of the sending state. res may be NULL for EV_DEADLINE. */
static void
ds_step(struct dispatcher *d, enum ds_event ev, const struct reply_result *res)
{
	uint64_t now = now_mono_ms();

	switch (ev) {
	case EV_PROGRESS:
		/* Partial success included: the stream moves, do not slow it down. */
		on_success(d);
		d->state = DS_READY;
		d->attempt = 0;
		d->not_before = 0;
		return;
	case EV_RETRYABLE:
		on_failure(d, false, res);
		/*
		 * A lone transient failure (5xx, a dropped connection) right after a request that
		 * made progress is retried at once: one stray 500 in ten must not stall a healthy
		 * stream for a backoff. A second one in a row backs off; throttling always does.
		 */
		if (d->state == DS_READY && d->attempt == 0 && res != NULL && res->outcome == REPLY_RETRY) {
			d->attempt = 1;
			d->not_before = 0;
			return;
		}
		log_failure(d, res, false);
		d->state = DS_BACKOFF;
		schedule_retry(d, 0);
		return;
	case EV_EXPIRED:
		on_failure(d, false, res);
		if (d->state == DS_READY && d->attempt == 0) {
			d->attempt = 1;         /* the retry goes out at once, re-signed */
			return;
		}
		d->state = DS_BACKOFF;
		schedule_retry(d, 0);
		return;
	case EV_CONFIG:
		on_failure(d, true, res);
		log_failure(d, res, true);
		d->state = DS_OPEN;
		schedule_retry(d, d->cfg->circuit_probe_ms);
		return;
	case EV_NO_CREDENTIALS:
		/*
		 * The provider logs its fetch failures once per series. A failing endpoint opens
		 * the circuit at once, like AccessDenied, so invocations are not held; the short
		 * wait after a rejection does not.
		 */
		on_failure(d, kinesis_client_credentials_failing(d->kc), res);
		d->state = DS_BACKOFF;
		schedule_retry(d, 0);
		if (d->not_before < now + (uint64_t)kinesis_client_credentials_retry_ms(d->kc))
			d->not_before = now + (uint64_t)kinesis_client_credentials_retry_ms(d->kc);
		return;
	case EV_DEADLINE:
		/* A backoff scheduled before the deadline was set may end after it: bring it forward. */
		if (d->state == DS_BACKOFF && d->not_before > now + SHUTDOWN_RETRY_MS)
			d->not_before = now + SHUTDOWN_RETRY_MS;
		return;
	}
}

/* ---- requests ---- */

static bool
take(struct dispatcher *d, struct rec_ref r, uint64_t *kin)
{
	struct batch_krec *k = ref_krec(d, r);

	if (k->state != KREC_PENDING)
		return true;
	if (d->nreq == ((unsigned)BATCH_MAX_RECORDS >> d->shrink) ||
	    (d->nreq > 0 && *kin + k->kin_bytes > (d->cfg->max_request_bytes >> d->shrink)))
		return false;
	*kin += k->kin_bytes;
	d->req[d->nreq++] = r;
	return true;
}

/*
 * Chooses the records of the next request: the top range of a bisection, or the pending
 * records of every slot, oldest first. Returns how many.
 */
static unsigned
compose(struct dispatcher *d)
{
	uint64_t kin = 0;

	d->nreq = 0;
	while (d->bis.depth > 0) {
		unsigned top = d->bis.depth - 1;

		for (unsigned j = d->bis.lo[top]; j < d->bis.hi[top]; j++)
			(void)take(d, d->bis.refs[j], &kin);
		if (d->nreq > 0)
			return d->nreq;
		d->bis.depth--;         /* settled meanwhile (a shutdown, a drop) */
	}
	for (unsigned s = 0; s < d->nslots; s++) {
		struct slot *sl = slot_at(d, s);
		uint16_t idx = (uint16_t)(sl - d->slot);

		for (unsigned i = 0; i < sl->b.nkrec; i++)
			if (!take(d, (struct rec_ref){ idx, (uint16_t)i }, &kin))
				return d->nreq;
	}
	return d->nreq;
}

/* The request body for d->req: a whole slot's body as encoded, or a copy of the segments. */
static int
body_of(struct dispatcher *d, const char **body, size_t *len)
{
	struct batch *b0 = &d->slot[d->req[0].slot].b;
	size_t need = b0->prefix_len + 2, pos;
	bool whole = d->nreq == b0->nkrec;
	char *p;

	for (unsigned i = 0; i < d->nreq; i++) {
		need += ref_krec(d, d->req[i])->seg_len + 1;
		whole &= d->req[i].slot == d->req[0].slot && d->req[i].krec == i;
	}
	if (whole) {
		*body = b0->body;
		*len = b0->len;
		return 0;
	}
	if (need > d->wire_cap) {
		if ((p = realloc(d->wire, need)) == NULL)
			return -ENOMEM;
		d->wire = p;
		d->wire_cap = need;
	}
	memcpy(d->wire, b0->stream_prefix, b0->prefix_len);
	pos = b0->prefix_len;
	for (unsigned i = 0; i < d->nreq; i++) {
		const struct batch *b = &d->slot[d->req[i].slot].b;
		const struct batch_krec *k = &b->krec[d->req[i].krec];

		if (i > 0)
			d->wire[pos++] = ',';
		memcpy(d->wire + pos, b->body + k->seg_off, k->seg_len);
		pos += k->seg_len;
	}
	memcpy(d->wire + pos, "]}", 2);
	*body = d->wire;
	*len = pos + 2;
	return 0;
}

/* Marks the request's records pending again (not sent, or failed as a whole). */
static void
req_unsend(struct dispatcher *d)
{
	for (unsigned i = 0; i < d->nreq; i++) {
		struct batch_krec *k = ref_krec(d, d->req[i]);

		if (k->state == KREC_INFLIGHT)
			k->state = KREC_PENDING;
	}
}

static void
send_request(struct dispatcher *d)
{
	long timeout = REQUEST_TIMEOUT_MS;
	int64_t stop = stop_at_ms(d);
	const char *body;
	size_t len;
	int rc;

	if (stop != 0) {
		int64_t left = stop - (int64_t)now_epoch_ms();

		if (left <= 0)
			return;
		if (left < timeout)
			timeout = (long)left;
	}
	if (compose(d) == 0)
		return;
	rc = body_of(d, &body, &len);
	if (rc == 0)
		rc = kinesis_client_start(d->kc, body, len, timeout);
	d->req_timeout_ms = timeout;
	if (rc == -EAGAIN) {
		struct reply_result res = { .outcome = REPLY_RETRY, .code = "CredentialsUnavailable" };

		d->nreq = 0;
		ds_step(d, EV_NO_CREDENTIALS, &res);
		return;
	}
	if (rc < 0) {
		/* Signing failed (no credentials) or no memory: nothing a quick retry fixes. */
		struct reply_result res = { .outcome = REPLY_CONFIG };

		snprintf(res.code, sizeof(res.code), "%s", rc == -EINVAL ? "MissingCredentials" : "LocalError");
		snprintf(res.message, sizeof(res.message), "cannot sign or start a PutRecords request: %s%s",
		    strerror(-rc), rc == -EINVAL ? " (no AWS credentials: see \"Which credentials are used\" in "
		    "docs/configuration.md)" : "");
		d->nreq = 0;
		ds_step(d, EV_CONFIG, &res);
		return;
	}
	for (unsigned i = 0; i < d->nreq; i++) {
		ref_krec(d, d->req[i])->state = KREC_INFLIGHT;
		d->slot[d->req[i].slot].taken = true;
	}
	atomic_fetch_add(&d->ctl->dispatcher.requests, 1);
}

/* ---- bisection ---- */

static void
bisect_push(struct bisect *bs, unsigned lo, unsigned hi)
{
	if (bs->depth < BISECT_STACK) {
		bs->lo[bs->depth] = lo;
		bs->hi[bs->depth] = hi;
		bs->depth++;
	}
}

/* Gives up on one record Kinesis rejects alone while it accepts others. */
static void
drop_rejected(struct dispatcher *d, struct rec_ref r, const struct reply_result *res)
{
	struct batch_settled st = { 0 };
	char why[384];

	if (ref_krec(d, r)->state != KREC_PENDING)
		return;
	batch_settle(&d->slot[r.slot].b, r.krec, KREC_DROPPED, &st);
	snprintf(why, sizeof(why), "a record Kinesis rejects (%s: %.100s)", res->code[0] ? res->code : "HTTP 413",
	    res->message);
	count_drop(d, DROP_REJECTED, st.events_dropped, st.bytes_dropped, why);
	release_acknowledged(d, &st);
}

static void
bisect_accepted(struct dispatcher *d, uint64_t records_ok, const struct reply_result *res)
{
	struct bisect *bs = &d->bis;

	if (bs->n == 0)
		return;
	bs->accepted += records_ok;
	if (bs->depth > 0)
		bs->depth--;            /* the top range went out and got an answer */
	if (bs->accepted > 0) {
		for (unsigned i = 0; i < bs->ncondemned; i++)
			drop_rejected(d, bs->condemned[i], res);
		bs->ncondemned = 0;
	}
	if (bs->depth == 0)
		bs->n = 0;
}

/* A request was rejected as invalid: bisect it, or go on with the bisection under way. */
static void
bisect_rejected(struct dispatcher *d, const struct reply_result *res)
{
	struct bisect *bs = &d->bis;
	unsigned lo, hi;

	req_unsend(d);
	atomic_fetch_add(&d->ctl->dispatcher.request_failures, 1);
	if (bs->n == 0) {
		memcpy(bs->refs, d->req, d->nreq * sizeof(d->req[0]));
		bs->n = d->nreq;
		bs->accepted = 0;
		bs->ncondemned = 0;
		bs->depth = 0;
		lo = 0;
		hi = d->nreq;
		log_warnx("Kinesis rejected a request of %u records (%s: %s, HTTP %ld): splitting it to find "
		    "the record(s) it refuses", d->nreq, res->code[0] ? res->code : "error", res->message,
		    res->http_status);
	} else {
		bs->depth--;
		lo = bs->lo[bs->depth];
		hi = bs->hi[bs->depth];
	}
	if (hi - lo > 1) {
		unsigned mid = lo + (hi - lo) / 2;

		bisect_push(bs, mid, hi);       /* the first half goes first */
		bisect_push(bs, lo, mid);
	} else if (bs->accepted > 0)
		drop_rejected(d, bs->refs[lo], res);
	else if (bs->ncondemned < BISECT_CONDEMN_MAX)
		bs->condemned[bs->ncondemned++] = bs->refs[lo];
	if (bs->ncondemned == BISECT_CONDEMN_MAX) {
		/* Rejected one by one, nothing accepted: the configuration, not a record. */
		log_error("Kinesis rejects every record sent alone (%s: %s): a configuration error; keeping "
		    "the records", res->code[0] ? res->code : "error", res->message);
		bs->n = bs->depth = bs->ncondemned = 0;
		ds_step(d, EV_CONFIG, res);
		return;
	}
	if (bs->depth == 0 && bs->ncondemned > 0) {
		/*
		 * Too few records to tell a bad record from a bad configuration: keep them and
		 * try again after a backoff, with whatever arrived meanwhile.
		 */
		bs->n = bs->ncondemned = 0;
		ds_step(d, EV_RETRYABLE, res);
		return;
	}
	if (bs->depth == 0)
		bs->n = 0;
}

/* ---- replies ---- */

/* Request size after a reply: halved after a timeout, doubled back after steady progress. */
static void
adapt_request_size(struct dispatcher *d, const struct reply_result *res, unsigned nsent, bool progress)
{
	if (res->outcome == REPLY_RETRY && strcmp(res->code, "Timeout") == 0) {
		d->regrow = 0;
		/* A request cut short by the shutdown deadline says nothing about the stream. */
		if (nsent > 1 && d->shrink < SHRINK_MAX && d->req_timeout_ms >= REQUEST_TIMEOUT_MS) {
			d->shrink++;
			log_warnx("PutRecords of %u records timed out: Kinesis takes data slowly; requests now carry "
			    "at most %u records, %u bytes", nsent, (unsigned)BATCH_MAX_RECORDS >> d->shrink,
			    d->cfg->max_request_bytes >> d->shrink);
		}
		return;
	}
	if (!progress || d->shrink == 0 || ++d->regrow < REGROW_AFTER)
		return;
	d->regrow = 0;
	if (--d->shrink == 0)
		log_info("PutRecords back to full size (%u records, %u bytes)", BATCH_MAX_RECORDS,
		    d->cfg->max_request_bytes);
}

static void
handle_reply(struct dispatcher *d, const struct kinesis_response *resp)
{
	struct reply_result res;
	struct batch_settled st = { 0 };
	struct dispatcher_counters *c = &d->ctl->dispatcher;
	unsigned nsent = d->nreq;

	atomic_fetch_add(&c->wire_bytes, resp->wire_bytes);
	reply_parse(resp->http_status, resp->transport_err, resp->transport_msg, resp->error_type,
	    resp->body, resp->body_len, nsent, d->status, &res);
	log_debug("PutRecords: %u records, HTTP %ld, %s, %" PRIu64 " us", nsent, resp->http_status,
	    reply_outcome_name(res.outcome), resp->elapsed_us);

	switch (res.outcome) {
	case REPLY_OK:
	case REPLY_PARTIAL:
		for (unsigned i = 0; i < nsent; i++) {
			struct rec_ref r = d->req[i];

			if (d->status[i] == 0) {
				batch_settle(&d->slot[r.slot].b, r.krec, KREC_ACCEPTED, &st);
				d->slot[r.slot].acked += ref_krec(d, r)->events;
			} else {
				ref_krec(d, r)->state = KREC_PENDING;   /* rejoins the queue */
				st.records_failed++;
			}
		}
		atomic_fetch_add(&c->records_retried, st.records_failed);
		release_acknowledged(d, &st);
		bisect_accepted(d, st.records_ok, &res);
		adapt_request_size(d, &res, nsent, st.records_ok > 0);
		ds_step(d, st.records_ok > 0 ? EV_PROGRESS : EV_RETRYABLE, &res);
		break;
	case REPLY_RETRY:
	case REPLY_THROTTLED:
		req_unsend(d);
		atomic_fetch_add(&c->request_failures, 1);
		adapt_request_size(d, &res, nsent, false);
		ds_step(d, EV_RETRYABLE, &res);
		break;
	case REPLY_EXPIRED:
		req_unsend(d);
		atomic_fetch_add(&c->request_failures, 1);
		kinesis_client_invalidate_credentials(d->kc);
		ds_step(d, EV_EXPIRED, &res);
		break;
	case REPLY_CONFIG:
		req_unsend(d);
		atomic_fetch_add(&c->request_failures, 1);
		if (strcmp(res.code, "UnrecognizedClientException") == 0 ||
		    strcmp(res.code, "InvalidSignatureException") == 0)
			kinesis_client_invalidate_credentials(d->kc);   /* rotated keys: fetch afresh */
		ds_step(d, EV_CONFIG, &res);
		break;
	case REPLY_INVALID:
		bisect_rejected(d, &res);
		break;
	}
	d->nreq = 0;
}

/* Takes note of a new flush request and answers the pending one when it is satisfied. */
static void
update_flush(struct dispatcher *d)
{
	uint64_t req = atomic_load(&d->ctl->flush_requested);
	struct ring_stats st;
	bool done;

	if (req > atomic_load(&d->ctl->flush_completed) && req != d->flush_pending) {
		ring_stats(d->ring, &st);
		d->flush_pending = req;
		d->flush_target = st.head;
		d->drained = false;     /* only a peek after the request proves the ring empty */
	}
	if (d->flush_pending == 0)
		return;
	done = d->cb.open || d->kc == NULL || ring_tail(d->ring) >= d->flush_target ||
	    (d->nslots == 0 && d->carry.data == NULL && d->drained &&
	    ring_tail(d->ring) == ring_cursor(d->ring));
	if (!done)
		return;
	atomic_store(&d->ctl->flush_completed, d->flush_pending);
	d->flush_pending = 0;
	notify_signal(d->fds->to_controller);
}

/*
 * The events not released yet, from the ring's counters: written - released -
 * abandoned (reservations of a writer that died). Never a walk of what is left: at the
 * deadline a large backlog would take seconds to page through (a 256 MiB ring, most of
 * it never touched by this process) and the controller must exit before the deadline.
 */
static void
count_unreleased(struct dispatcher *d, uint64_t *events, uint64_t *bytes)
{
	struct ring_stats st;

	ring_stats(d->ring, &st);
	*events = st.written_records > st.released_records ? st.written_records - st.released_records : 0;
	*events = *events > st.abandoned_records ? *events - st.abandoned_records : 0;
	/* Records dropped by a corruption repair are no longer in the ring either. */
	*events = *events > st.corrupt_records ? *events - st.corrupt_records : 0;
	*bytes = st.written_bytes > st.released_bytes ? st.written_bytes - st.released_bytes : 0;
	if (*events == 0)
		*bytes = 0;
}

/* At the deadline: give up what is left, say so, and let the controller go. */
static void
finish_shutdown(struct dispatcher *d, const char *why)
{
	uint64_t left, bytes, dropped;

	if (d->kc != NULL && kinesis_client_busy(d->kc))
		kinesis_client_abort(d->kc);
	count_unreleased(d, &left, &bytes);
	if (left > 0) {
		atomic_fetch_add(&d->ctl->dispatcher.events_dropped, left);
		atomic_fetch_add(&d->ctl->dispatcher.bytes_dropped, bytes);
		atomic_store(&d->ctl->dispatcher.events_left, left);
		log_warnx("%s: %" PRIu64 " event(s), %" PRIu64 " bytes not delivered to Kinesis", why, left,
		    bytes);
	} else if ((dropped = atomic_load(&d->ctl->dispatcher.events_dropped)) == 0)
		log_info("%s: everything received was delivered", why);
	else
		log_info("%s: nothing left to send; %" PRIu64 " event(s) were given up earlier (counted in "
		    "extension.kte.dropped)", why, dropped);
	atomic_store(&d->ctl->flush_completed, atomic_load(&d->ctl->flush_requested));
	atomic_store(&d->ctl->dispatcher_idle, 1);
	notify_signal(d->fds->to_controller);
}

static bool
has_unsent(struct dispatcher *d)
{
	uint64_t bytes;

	return unsent(d, &bytes) > 0;
}

/* Whether the next slot may be filled now: idle, or the current body is on the wire. */
static bool
may_prepare(struct dispatcher *d)
{
	return d->kc != NULL && (!kinesis_client_busy(d->kc) || kinesis_client_body_sent(d->kc)) &&
	    can_fill(d);
}

static int
wait_timeout(struct dispatcher *d, bool data_waiting)
{
	uint64_t now = now_mono_ms();
	int64_t stop = stop_at_ms(d);
	int64_t t = POLL_CAP_MS, ready = d->not_before > now ? (int64_t)(d->not_before - now) : 0;

	if (data_waiting && may_prepare(d))
		t = 0;
	else if (d->kc != NULL && !kinesis_client_busy(d->kc) && has_unsent(d))
		t = ready;
	if (t > POLL_CAP_MS)
		t = POLL_CAP_MS;
	if (stop != 0) {
		int64_t left = stop - (int64_t)now_epoch_ms();

		if (left < t)
			t = left < 0 ? 0 : left;
	}
	return (int)t;
}

static void
step_send(struct dispatcher *d)
{
	if (d->kc == NULL) {
		discard(d);
		return;
	}
	/* Encode ahead: while idle, or while the request's body is on the wire. */
	if (may_prepare(d))
		fill_more(d);
	if (!kinesis_client_busy(d->kc)) {
		if (now_mono_ms() >= d->not_before && has_unsent(d))
			send_request(d);
		else if (d->nslots == 0 && d->drained) {
			for (unsigned i = 0; i < NSLOTS; i++)
				batch_reset(&d->slot[i].b, i < NSLOTS_KEPT_IDLE ? KEEP_IDLE_BYTES : 0);
			if (d->wire_cap > KEEP_IDLE_BYTES) {
				free(d->wire);
				d->wire = NULL;
				d->wire_cap = 0;
			}
		}
	}
}

int
dispatcher_main(const struct dispatcher_args *a)
{
	struct dispatcher *d;
	struct kinesis_response resp;
	struct pollfd pfd[2];
	pid_t parent = getppid();
	int rc, exit_code = 0;

	log_init("dispatcher", (enum log_level)a->cfg->log_level);
	install_signals();
	/*
	 * Request bodies reach megabytes in a burst. A fixed mmap threshold keeps glibc from
	 * raising it after the first free, so those buffers go back to the kernel when idle.
	 */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		log_warn("calloc");
		return 1;
	}
	d->cfg = a->cfg;
	d->ring = a->ring;
	d->ctl = a->ctl;
	d->fds = a->fds;
	/* A restart carries on with the drop accounting of the process before it. */
	memcpy(d->local.v, d->ctl->drops.counted, sizeof(d->local.v));
	memcpy(d->reported.v, d->ctl->drops.reported, sizeof(d->reported.v));
	d->summary_since_ms = d->ctl->drops.reported_ms != 0 ? d->ctl->drops.reported_ms : now_epoch_ms();
	backoff_rng_init(&d->rng);
	pkey_init(&d->pk, a->cfg, getenv("AWS_LAMBDA_FUNCTION_NAME"));
	for (int i = 0; i < NSLOTS; i++)
		if (batch_init(&d->slot[i].b, a->cfg, &d->pk) < 0) {
			log_warnx("cannot set up request buffers");
			for (int j = 0; j < i; j++)
				batch_cleanup(&d->slot[j].b);
			free(d);
			return 1;
		}
	if (!a->cfg->shipping_enabled)
		log_warnx("no usable Kinesis destination: events are counted and discarded");
	else if ((d->kc = kinesis_client_new(a->cfg)) == NULL)
		log_warn("cannot set up the Kinesis client: events are counted and discarded");
	else
		log_info("shipping to %s%s%s as %s", kinesis_client_url(d->kc),
		    a->cfg->stream_name[0] ? " stream " : "", a->cfg->stream_name,
		    config_format_name(d->slot[0].b.format));
	publish_health(d);
	ring_rewind(d->ring);           /* resume at the first unreleased record */
	d->released = ring_tail(d->ring);

	for (;;) {
		int64_t stop;
		bool data_waiting;

		if (stop_signal != 0 || getppid() != parent) {
			if (shutting_down(d))
				finish_shutdown(d, "stopped during shutdown");
			else
				log_info("%s: exiting", stop_signal ? "signalled" : "parent gone");
			break;
		}
		stop = stop_at_ms(d);
		if (stop != 0 && (int64_t)now_epoch_ms() >= stop) {
			finish_shutdown(d, "shutdown deadline");
			break;
		}
		if (stop != 0)
			ds_step(d, EV_DEADLINE, NULL);
		if (!d->restored && atomic_load(&d->ctl->restore_count) > 0)
			on_restore(d, "first invocation");
		update_flush(d);
		step_send(d);
		update_flush(d);
		atomic_store(&d->ctl->dispatcher_idle,
		    (d->kc == NULL || !kinesis_client_busy(d->kc)) && d->nslots == 0 &&
		    d->drained && d->carry.data == NULL ? 1u : 0u);

		/* Ask the writers for a wake-up only when new data would be acted on. */
		data_waiting = d->carry.data != NULL;
		if (d->kc == NULL || can_fill(d))
			data_waiting |= ring_reader_arm(d->ring);
		if (data_waiting)
			d->drained = false;
		pfd[0] = (struct pollfd){ .fd = d->ring->data_efd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = d->fds->to_dispatcher, .events = POLLIN };
		if (d->kc == NULL) {
			rc = poll(pfd, 2, data_waiting ? 0 : wait_timeout(d, data_waiting));
			rc = rc < 0 && errno != EINTR ? -errno : 0;
		} else
			rc = kinesis_client_wait(d->kc, pfd, 2, wait_timeout(d, data_waiting), &resp);
		if (rc < 0) {
			log_warnx("wait: %s", strerror(-rc));
			exit_code = 1;
			break;
		}
		if (pfd[0].revents & POLLIN) {
			notify_drain(pfd[0].fd);
			d->drained = false;
		}
		if (pfd[1].revents & POLLIN)
			notify_drain(pfd[1].fd);
		if (rc == 1)
			handle_reply(d, &resp);
	}
	kinesis_client_free(d->kc);
	for (int i = 0; i < NSLOTS; i++)
		batch_cleanup(&d->slot[i].b);
	free(d->wire);
	free(d);
	return exit_code;
}
