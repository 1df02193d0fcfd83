/*
 * One PutRecords request being assembled from telemetry events: the Kinesis records
 * (per KTE_RECORD_FORMAT), their partition keys, the JSON body, and the state of each
 * record across partial failures. Enforces the limits as events are added, so a
 * finished batch never breaks one: at most BATCH_MAX_RECORDS records, each at most
 * max_record bytes and all at most max_request bytes, data plus partition key.
 *
 * Formats:
 *   event   one event per Kinesis record, its bytes unchanged.
 *   ndjson  consecutive events joined by '\n' (raw CR/LF inside an event, which valid
 *           JSON only allows as whitespace, become spaces); key of the first event.
 *   kpl     KPL aggregated records; only events with the same partition key share one.
 *
 * KTE_COMPRESSION=gzip (event and ndjson): each record's data is a gzip member. The
 * limits hold for the compressed size. ndjson records are compressed as events are
 * added; a record takes an event while an upper bound of its final size fits (the exact
 * size at the last sync flush plus compressBound() of what came after), and a sync flush
 * makes the bound exact again when it gets close, so records fill to within a few KiB.
 *
 * Event data is referenced, not copied (kpl) or encoded at once (event, ndjson): the
 * caller keeps events alive (unreleased in the ring) until the batch is settled.
 * Process-local, not thread-safe.
 */
#ifndef KTE_BATCH_H
#define KTE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "pkey.h"

#define BATCH_MAX_RECORDS 500

enum batch_add_result {
	BATCH_ADDED = 0,        /* the event is in the batch */
	BATCH_FULL,             /* not added: send this batch first, then add it to the next */
	BATCH_TOO_LARGE,        /* not added: larger than a record can ever be; drop it */
};

/* PENDING: to be sent (again); INFLIGHT: in the request on the wire. */
enum krec_state { KREC_PENDING = 0, KREC_ACCEPTED, KREC_DROPPED, KREC_INFLIGHT };

struct batch_krec {
	size_t seg_off, seg_len;    /* its {"Data":...} object in the body */
	uint32_t data_len;          /* bytes of Data before base64 */
	uint32_t kin_bytes;         /* data + partition key, as Kinesis counts them */
	uint32_t events;            /* telemetry events it carries */
	uint32_t key_off, key_len;  /* kpl: its key in the key arena */
	uint32_t first_ev;          /* kpl: its events in ev[] once grouped */
	uint64_t event_bytes;       /* payload bytes of those events */
	uint64_t ring_first;        /* ring position of its first event (batch_add_at) */
	uint8_t state;              /* enum krec_state */
	bool summary;               /* carries the dropped-summary event */
};

struct batch_event {            /* kpl: events waiting for their aggregate */
	const uint8_t *data;
	uint32_t len;
	uint32_t krec;
};

/* Totals of what one reply (or a drop) settled. */
struct batch_settled {
	uint64_t records_ok, events_ok, bytes_ok;
	uint64_t records_failed;                   /* to be resent */
	uint64_t records_dropped, events_dropped, bytes_dropped;
	bool summary_ok, summary_dropped;
};

struct batch {
	/* settings */
	enum record_format format;
	uint32_t max_record, max_request;
	struct pkey_state *pk;

	/* the request body */
	char *body;
	size_t len, cap;
	size_t prefix_len;          /* {"StreamName":...,"Records":[ */
	bool finished;              /* body complete (closing brackets written) */
	uint64_t add_pos;           /* ring position of the event being added */

	/* records */
	struct batch_krec krec[BATCH_MAX_RECORDS];
	unsigned nkrec;
	uint64_t kin_total;         /* sum of kin_bytes, the request size Kinesis counts */
	unsigned sent_idx[BATCH_MAX_RECORDS];  /* krec index of each record in the body, in order */
	unsigned nsent;

	/* ndjson: the open record (the last krec) is being base64-encoded into the body */
	bool open;
	char open_key[PKEY_MAX + 1];
	size_t open_key_len;
	uint8_t b64_carry[3];
	unsigned b64_ncarry;

	/* gzip: the record being compressed (zlib stays inside batch.c) */
	bool gzip;
	void *zs;                   /* z_stream, allocated on first use */
	uint8_t *gz;                /* its compressed bytes so far */
	size_t gz_len, gz_cap;
	size_t gz_flushed;          /* gz_len at the last sync flush (exact up to there) */
	size_t gz_unflushed;        /* input bytes since then */

	/* kpl */
	struct batch_event *ev;
	size_t nev, ev_cap;
	char *keys;                 /* key arena */
	size_t keys_len, keys_cap;
	int32_t slot_krec[1024];    /* open aggregate per key hash (-1 none) */
	uint32_t slot_hash[1024];
	uint8_t *scratch;           /* one encoded aggregate */
	size_t scratch_cap;

	char stream_prefix[CONFIG_STR_MAX * 2 + 200];
};

/* Prepares b for cfg's format, limits and stream; pk is borrowed. Returns 0 or -ENOMEM. */
int batch_init(struct batch *b, const struct kte_config *cfg, struct pkey_state *pk)
    __attribute__((warn_unused_result));
/* Frees b's buffers and zeroes it (safe after a failed batch_init). */
void batch_cleanup(struct batch *b);

/* Empties b for the next request; frees buffers grown beyond keep_bytes. */
void batch_reset(struct batch *b, size_t keep_bytes);

/*
 * Adds one event (its JSON bytes). summary marks the dropped-summary event. Returns a
 * batch_add_result, or -ENOMEM. Never adds to a finished batch (returns BATCH_FULL).
 */
int batch_add(struct batch *b, const uint8_t *ev, size_t len, bool summary)
    __attribute__((warn_unused_result));

/* batch_add for the ring event at position pos (kept as the record's ring_first). */
int batch_add_at(struct batch *b, const uint8_t *ev, size_t len, bool summary, uint64_t pos)
    __attribute__((warn_unused_result));

/* Closes the body: encodes kpl aggregates, writes the closing brackets. 0 or -errno. */
int batch_finish(struct batch *b) __attribute__((warn_unused_result));

/* True when the batch holds records not yet accepted or dropped. */
bool batch_pending(const struct batch *b);
/* Records in the current body (valid after batch_finish). */
static inline unsigned batch_nsent(const struct batch *b) { return b->nsent; }

/*
 * Applies the per-record outcome of the last send (status[i] for the i-th record of
 * the body: 0 accepted, non-zero failed) and, if records remain, rewrites the body to
 * hold only them, in order. Adds the totals to *st.
 */
void batch_apply(struct batch *b, const uint8_t *status, unsigned n, struct batch_settled *st);

/* Settles record i (accepted or dropped) and adds it to *st. */
void batch_settle(struct batch *b, unsigned i, enum krec_state state, struct batch_settled *st);

/* True while some record is pending or in flight. */
bool batch_unsettled(const struct batch *b);

/*
 * Ring position up to which the batch's events may be released: the first event of the
 * earliest unsettled record, or end when every record is settled.
 */
uint64_t batch_release_pos(const struct batch *b, uint64_t end);

/* Gives up on every pending record (a non-retryable reject). Adds the totals to *st. */
void batch_drop_pending(struct batch *b, struct batch_settled *st);

/* Encoded base64 length of n bytes. */
static inline size_t batch_b64_len(size_t n) { return (n + 2) / 3 * 4; }

#endif
