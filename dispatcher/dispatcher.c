/*
 * The dispatcher's main loop: a small state machine around one PutRecords request.
 *
 *   fill:    ring_peek events into a batch until a limit or the backlog ends
 *   send:    sign and start the request (curl multi, non-blocking)
 *   wait:    poll curl's sockets, the ring's data eventfd and the controller's eventfd
 *   settle:  apply the reply; resend failed records after a backoff; once every record
 *            of the batch is accepted (or given up), release its ring space
 *
 * One request in flight; while it is, the next batch is filled and encoded in the other
 * slot, so encoding overlaps the round trip. Batches are sent and settled strictly in
 * ring order, and a batch's ring space is released only once all its records were
 * accepted (or given up): a crash or restart resumes from the first unreleased record
 * (at-least-once).
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

static volatile sig_atomic_t stop_signal;

/* A batch and the ring range it covers. */
struct slot {
	struct batch b;
	bool live;                      /* filled, not yet settled and released */
	bool ring;                      /* covers ring events up to end */
	uint64_t end;
	/*
	 * For the arrival -> acknowledgement latency (common/latency.h): mono ms the batch's
	 * first event arrived (the ring record's arrival stamp, written by the listener; when
	 * the dispatcher took it from the ring for records without one), and the events of it
	 * Kinesis acknowledged.
	 */
	uint64_t arrival_ms;
	uint64_t acked;
};

struct dispatcher {
	const struct kte_config *cfg;
	struct ring *ring;
	struct control *ctl;
	const struct control_fds *fds;
	struct kinesis_client *kc;      /* NULL: shipping impossible, discard */
	struct pkey_state pk;
	struct slot slot[2];
	unsigned cur;                   /* slot[cur] is sent; slot[cur ^ 1] is prepared meanwhile */
	struct backoff_rng rng;
	struct circuit cb;

	unsigned attempt;               /* failed sends of the current batch in a row */
	uint64_t not_before;            /* mono ms: no request before this */
	bool backoff_hard;              /* not_before is a circuit probe, not a retryable backoff */
	enum reply_outcome last_outcome;
	bool carry_valid;               /* a peeked event that did not fit the last batch */
	struct ring_record carry;
	bool drained;                   /* a peek found nothing more since the last wake-up */

	uint64_t flush_pending;         /* flush_requested value being worked on, 0 none */
	uint64_t flush_target;          /* ring head when it was seen */

	struct drop_counts local;       /* too large, rejected */
	struct drop_counts reported;    /* counts already delivered in a summary */
	struct drop_counts summary_counts; /* counts in the summary of the live batch */
	uint64_t summary_since_ms;
	uint64_t summary_built_ms;
	uint64_t summary_sent_ms;       /* mono ms the last summary was accepted */
	bool summary_pending;           /* a summary rides in a live batch */
	char summary[1024];

	uint64_t drop_log_ms;
	uint64_t drop_log_quiet;        /* drops not logged since drop_log_ms */
	bool problem_logged;            /* a failure series has been logged */
	bool restored;                  /* a SnapStart restore was handled */

	uint8_t status[BATCH_MAX_RECORDS];
};

_Static_assert(DROP_KINDS <= CONTROL_DROP_KINDS, "struct dispatcher_drops is too small");

#define CUR(d)  (&(d)->slot[(d)->cur])
#define NEXT(d) (&(d)->slot[(d)->cur ^ 1])

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

/* Extends the slot's ring range to end after rec. */
static void
cover(struct slot *sl, const struct ring_record *rec)
{
	sl->end = rec->next;
	sl->ring = true;
}

/* The current batch is settled: give its ring space back. */
static void
release_current(struct dispatcher *d)
{
	struct slot *sl = CUR(d);
	int rc;

	if (sl->ring) {
		struct ring_stats st;

		ring_stats(d->ring, &st);
		latency_ring_used(d->ctl, st.head - st.tail);
	}
	latency_record(d->ctl, now_mono_ms() - sl->arrival_ms, sl->acked);
	if (sl->ring && (rc = ring_release(d->ring, sl->end)) < 0)
		log_warnx("ring_release(%" PRIu64 "): %s", sl->end, strerror(-rc));
	sl->ring = false;
	sl->live = false;
	d->attempt = 0;
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

	if (d->carry_valid) {
		*rec = d->carry;
		d->carry_valid = false;
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
	rc = batch_add(&sl->b, (const uint8_t *)d->summary, (size_t)n, true);
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
 * Whether new batches may be started: not while the periodic policy holds sending,
 * unless the ring is over half full (during one long invocation no INVOKE comes to
 * flush it, and a full ring makes the listener refuse batches).
 */
static bool
may_fill(const struct dispatcher *d)
{
	if (atomic_load(&d->ctl->hold_sending) && d->flush_pending == 0 && !shutting_down(d) &&
	    !ring_high(d))
		return false;
	return true;
}

/*
 * Fills a batch in sl from the ring (after the carried event). sl is live afterwards if
 * it covers anything: records to send, or only dropped events (settled at once when
 * it becomes current).
 */
static void
fill(struct dispatcher *d, struct slot *sl)
{
	struct ring_record rec;
	int rc;

	batch_reset(&sl->b, SIZE_MAX);
	sl->ring = false;
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
		if (!sl->ring && (rec.meta.flags & RING_META_ARRIVAL) &&
		    ring_created_ms(d->ring) + rec.arrival_ms <= sl->arrival_ms)
			sl->arrival_ms = ring_created_ms(d->ring) + rec.arrival_ms;
		rc = batch_add(&sl->b, rec.data, rec.len, false);
		if (rc == BATCH_ADDED) {
			cover(sl, &rec);
		} else if (rc == BATCH_TOO_LARGE) {
			cover(sl, &rec);
			count_drop(d, DROP_TOO_LARGE, 1, rec.len, "event larger than a Kinesis record "
			    "(KTE_MAX_RECORD_BYTES)");
		} else {
			/* Full, or out of memory: this event starts the next batch. */
			d->carry = rec;
			d->carry_valid = true;
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
	sl->live = sl->ring || batch_pending(&sl->b);
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
		count_drop(d, DROP_REJECTED, n, bytes, "no usable Kinesis destination");
	}
}

static void on_failure(struct dispatcher *d, bool hard, const struct reply_result *res);
static void schedule_retry(struct dispatcher *d, uint64_t min_delay);

static void
send_batch(struct dispatcher *d)
{
	long timeout = REQUEST_TIMEOUT_MS;
	int64_t stop = stop_at_ms(d);
	int rc;

	if (stop != 0) {
		int64_t left = stop - (int64_t)now_epoch_ms();

		if (left <= 0)
			return;
		if (left < timeout)
			timeout = (long)left;
	}
	rc = kinesis_client_start(d->kc, CUR(d)->b.body, CUR(d)->b.len, timeout);
	if (rc == -EAGAIN) {
		/*
		 * No usable credentials yet (the provider logs its fetch failures once per series).
		 * A failing endpoint opens the circuit at once, like AccessDenied, so invocations
		 * are not held; the short wait after a rejection does not.
		 */
		struct reply_result res = { .outcome = REPLY_RETRY, .code = "CredentialsUnavailable" };
		uint64_t wait = (uint64_t)kinesis_client_credentials_retry_ms(d->kc);

		on_failure(d, kinesis_client_credentials_failing(d->kc), &res);
		schedule_retry(d, 0);
		if (d->not_before < now_mono_ms() + wait)
			d->not_before = now_mono_ms() + wait;
		return;
	}
	if (rc < 0) {
		/* Signing failed (no credentials) or no memory: nothing a quick retry fixes. */
		struct reply_result res = { .outcome = REPLY_CONFIG };

		snprintf(res.code, sizeof(res.code), "%s", rc == -EINVAL ? "MissingCredentials" : "LocalError");
		if (!d->problem_logged) {
			log_error("cannot sign or start a PutRecords request: %s%s", strerror(-rc),
			    rc == -EINVAL ? " (no AWS credentials: see \"Which credentials are used\" in "
			    "docs/configuration.md)" : "");
			d->problem_logged = true;
		}
		on_failure(d, true, &res);
		schedule_retry(d, d->cfg->circuit_probe_ms);
		return;
	}
	atomic_fetch_add(&d->ctl->dispatcher.requests, 1);
}

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
	d->backoff_hard = min_delay != 0;
}

static void
on_success(struct dispatcher *d)
{
	uint64_t failures = d->cb.consecutive;

	if (circuit_success(&d->cb))
		log_info("Kinesis accepts records again after %" PRIu64 " failed request(s): circuit closed",
		    failures);
	d->problem_logged = false;
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
handle_reply(struct dispatcher *d, const struct kinesis_response *resp)
{
	struct reply_result res;
	struct batch_settled st = { 0 };
	struct batch *b = &CUR(d)->b;
	unsigned nsent = batch_nsent(b);
	struct dispatcher_counters *c = &d->ctl->dispatcher;

	atomic_fetch_add(&c->wire_bytes, resp->wire_bytes);
	reply_parse(resp->http_status, resp->transport_err, resp->transport_msg, resp->error_type,
	    resp->body, resp->body_len, nsent, d->status, &res);
	d->last_outcome = res.outcome;
	log_debug("PutRecords: %u records, %zu bytes, HTTP %ld, %s, %" PRIu64 " us", nsent,
	    b->len, resp->http_status, reply_outcome_name(res.outcome), resp->elapsed_us);

	switch (res.outcome) {
	case REPLY_OK:
	case REPLY_PARTIAL:
		batch_apply(b, d->status, nsent, &st);
		atomic_fetch_add(&c->records_sent, st.records_ok);
		atomic_fetch_add(&c->events_sent, st.events_ok);
		CUR(d)->acked += st.events_ok;
		atomic_fetch_add(&c->bytes_sent, st.bytes_ok);
		atomic_fetch_add(&c->records_retried, st.records_failed);
		summary_settled(d, &st);
		if (st.records_ok > 0)
			on_success(d);
		if (!batch_pending(b)) {
			release_current(d);
			return;
		}
		if (st.records_ok == 0) {
			/* Nothing got through: the stream or shard is saturated or broken. */
			on_failure(d, false, &res);
			if (!d->problem_logged) {
				log_warnx("PutRecords: all %u records failed (%s: %s); retrying with backoff",
				    nsent, res.code, res.message);
				d->problem_logged = true;
			}
		}
		schedule_retry(d, 0);
		return;
	case REPLY_RETRY:
	case REPLY_THROTTLED:
		atomic_fetch_add(&c->request_failures, 1);
		on_failure(d, false, &res);
		if (!d->problem_logged) {
			log_warnx("PutRecords failed (HTTP %ld%s%s%s%s); retrying with backoff",
			    res.http_status, res.code[0] ? ", " : "", res.code, res.message[0] ? ": " : "",
			    res.message);
			d->problem_logged = true;
		}
		schedule_retry(d, 0);
		return;
	case REPLY_EXPIRED:
		atomic_fetch_add(&c->request_failures, 1);
		kinesis_client_invalidate_credentials(d->kc);
		on_failure(d, false, &res);
		if (d->attempt == 0)
			d->attempt = 1;         /* the retry goes out at once, re-signed */
		else
			schedule_retry(d, 0);
		return;
	case REPLY_CONFIG:
		atomic_fetch_add(&c->request_failures, 1);
		if (strcmp(res.code, "UnrecognizedClientException") == 0 ||
		    strcmp(res.code, "InvalidSignatureException") == 0)
			kinesis_client_invalidate_credentials(d->kc);   /* rotated keys: fetch afresh */
		if (!d->problem_logged) {
			log_error("Kinesis refused PutRecords: %s: %s (HTTP %ld); keeping the records, "
			    "next attempt in %u ms", res.code[0] ? res.code : "error", res.message,
			    res.http_status, d->cfg->circuit_probe_ms);
			d->problem_logged = true;
		}
		on_failure(d, true, &res);
		schedule_retry(d, d->cfg->circuit_probe_ms);
		return;
	case REPLY_INVALID:
		atomic_fetch_add(&c->request_failures, 1);
		log_error("Kinesis rejected PutRecords as invalid: %s: %s (HTTP %ld); dropping its %u "
		    "records", res.code[0] ? res.code : "error", res.message, res.http_status, nsent);
		batch_drop_pending(b, &st);
		summary_settled(d, &st);
		if (st.events_dropped > 0)
			count_drop(d, DROP_REJECTED, st.events_dropped, st.bytes_dropped,
			    "rejected by Kinesis as invalid");
		on_failure(d, true, &res);
		release_current(d);
		d->attempt = 0;
		schedule_retry(d, d->cfg->circuit_probe_ms);
		return;
	}
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
	    (!CUR(d)->live && !NEXT(d)->live && !d->carry_valid && d->drained &&
	    ring_tail(d->ring) == ring_cursor(d->ring));
	if (!done)
		return;
	atomic_store(&d->ctl->flush_completed, d->flush_pending);
	d->flush_pending = 0;
	notify_signal(d->fds->to_controller);
}

/*
 * Counts the committed events not released yet by peeking them all again from the
 * first unreleased one (the process is about to exit: the cursor no longer matters).
 * Unlike written - released from ring_stats, this leaves out reservations of a writer
 * that died (counted as ringAbandoned) and what a corruption skip dropped.
 */
static void
count_unreleased(struct dispatcher *d, uint64_t *events, uint64_t *bytes)
{
	struct ring_record rec;

	*events = *bytes = 0;
	ring_rewind(d->ring);
	while (ring_peek(d->ring, &rec) == 0) {
		(*events)++;
		*bytes += rec.len;
	}
}

/* At the deadline: give up what is left, say so, and let the controller go. */
static void
finish_shutdown(struct dispatcher *d, const char *why)
{
	uint64_t left, bytes;

	if (d->kc != NULL && kinesis_client_busy(d->kc))
		kinesis_client_abort(d->kc);
	count_unreleased(d, &left, &bytes);
	if (left > 0) {
		atomic_fetch_add(&d->ctl->dispatcher.events_dropped, left);
		atomic_fetch_add(&d->ctl->dispatcher.bytes_dropped, bytes);
		atomic_store(&d->ctl->dispatcher.events_left, left);
		log_warnx("%s: %" PRIu64 " event(s), %" PRIu64 " bytes not delivered to Kinesis", why, left,
		    bytes);
	} else
		log_info("%s: everything received was delivered", why);
	atomic_store(&d->ctl->flush_completed, atomic_load(&d->ctl->flush_requested));
	atomic_store(&d->ctl->dispatcher_idle, 1);
	notify_signal(d->fds->to_controller);
}

/* Whether the next batch may be prepared now: the current request's body is on the wire. */
static bool
may_prepare(const struct dispatcher *d)
{
	return d->kc != NULL && kinesis_client_busy(d->kc) && !NEXT(d)->live && may_fill(d) &&
	    kinesis_client_body_sent(d->kc);
}

static int
wait_timeout(struct dispatcher *d, bool data_waiting)
{
	uint64_t now = now_mono_ms();
	int64_t stop = stop_at_ms(d);
	int64_t t = POLL_CAP_MS, ready = d->not_before > now ? (int64_t)(d->not_before - now) : 0;

	if (d->kc != NULL && !kinesis_client_busy(d->kc)) {
		if (CUR(d)->live || NEXT(d)->live || (may_fill(d) && data_waiting))
			t = ready;
	} else if (data_waiting && may_prepare(d))
		t = 0;
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
	uint64_t now = now_mono_ms();
	struct slot *c;

	if (d->kc == NULL) {
		discard(d);
		return;
	}
	if (!kinesis_client_busy(d->kc)) {
		/* Settle a batch with nothing left to send; bring the prepared one forward. */
		for (;;) {
			c = CUR(d);
			if (c->live && !batch_pending(&c->b))
				release_current(d);
			else if (!c->live && NEXT(d)->live) {
				d->cur ^= 1;
				d->attempt = 0;
			} else
				break;
		}
		if (!c->live && may_fill(d) && now >= d->not_before) {
			fill(d, c);
			if (c->live && !batch_pending(&c->b))
				release_current(d);
		}
		if (c->live && now >= d->not_before)
			send_batch(d);
		else if (!c->live && d->drained) {
			batch_reset(&d->slot[0].b, KEEP_IDLE_BYTES);
			batch_reset(&d->slot[1].b, KEEP_IDLE_BYTES);
		}
	}
	/* While the request is on the wire, encode the next one: it overlaps the round trip. */
	if ((d->carry_valid || !d->drained) && may_prepare(d))
		fill(d, NEXT(d));
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
	for (int i = 0; i < 2; i++)
		if (batch_init(&d->slot[i].b, a->cfg, &d->pk) < 0) {
			log_warnx("cannot set up request buffers");
			batch_cleanup(&d->slot[0].b);
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
		/* A backoff scheduled before the deadline was set may end after it: bring it forward. */
		if (stop != 0 && !d->backoff_hard && d->not_before > now_mono_ms() + SHUTDOWN_RETRY_MS)
			d->not_before = now_mono_ms() + SHUTDOWN_RETRY_MS;
		if (!d->restored && atomic_load(&d->ctl->restore_count) > 0)
			on_restore(d, "first invocation");
		update_flush(d);
		step_send(d);
		update_flush(d);
		atomic_store(&d->ctl->dispatcher_idle,
		    (d->kc == NULL || !kinesis_client_busy(d->kc)) && !CUR(d)->live && !NEXT(d)->live &&
		    d->drained && !d->carry_valid ? 1u : 0u);

		/* Ask the writers for a wake-up only when new data would be acted on. */
		data_waiting = d->carry_valid;
		if (d->kc == NULL || (!NEXT(d)->live && may_fill(d) &&
		    (!CUR(d)->live || kinesis_client_busy(d->kc))))
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
	batch_cleanup(&d->slot[0].b);
	batch_cleanup(&d->slot[1].b);
	free(d);
	return exit_code;
}
