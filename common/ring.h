/*
 * A multi-producer, single-consumer ring of variable-length records in shared
 * memory (a memfd mapped MAP_SHARED), with at-least-once delivery across crashes.
 *
 * Writers (listener threads, any process) reserve space under a robust
 * process-shared mutex, fill it without the lock, then commit. The reader
 * (dispatcher) peeks committed records in order and releases them only when told;
 * released space is what writers may reuse. A reader that restarts resumes at the
 * first unreleased record. A writer that dies leaves its reservations RESERVED;
 * ring_recover() turns them into skipped records. See docs/internals/ring.md.
 *
 * Only offsets live in shared memory. Every length read from it is validated.
 */
#ifndef KTE_RING_H
#define KTE_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define RING_MAGIC        0x314e49524554454bull /* "KTERING1" little-endian */
#define RING_VERSION      2u
#define RING_ALIGN        16u
#define RING_RECORD_HDR   32u
#define RING_MIN_CAPACITY 4096u

struct ring_header;

/*
 * Per-record metadata a writer may attach (ring_writev_meta_wait): what the listener
 * learnt while validating the event, so the reader need not parse it again.
 */
#define RING_META_VALID   0x01u     /* type and requestId span were given */
#define RING_META_ARRIVAL 0x02u     /* arrival_ms was stamped */
#define RING_RID_MAX      256u      /* longest requestId span carried */

struct ring_meta {
	uint32_t rid_off;       /* requestId's raw bytes: offset in the payload... */
	uint16_t rid_len;       /* ...and length; 0 when the event has none */
	uint8_t type;           /* enum event_type (common/event_type.h); not checked by the ring */
	uint8_t flags;          /* RING_META_*; on peek only what passed validation */
};

/* Bytes a record of len payload bytes takes in the ring: header plus payload, aligned. */
static inline uint64_t
ring_record_size(uint64_t len)
{
	return (RING_RECORD_HDR + len + RING_ALIGN - 1) & ~(uint64_t)(RING_ALIGN - 1);
}

/* Process-local handle. The mapping and fds are shared; rd (the read cursor) is not. */
struct ring {
	struct ring_header *hdr;
	uint8_t *data;
	uint64_t capacity;      /* bytes of record space, a multiple of RING_ALIGN */
	size_t map_len;
	int memfd;
	int data_efd;           /* writers -> reader: records committed */
	int space_efd;          /* reader -> writers: space released */
	uint64_t rd;            /* reader: absolute position of the next record to peek */
	uint64_t skip_from;     /* reader: a corrupted span [skip_from, skip_to) not yet released */
	uint64_t skip_to;       /* (skip_from == skip_to: none) */
	/*
	 * Reader's own copies, trusted over shared memory: tail is written only by the
	 * reader, so a shared tail that differs from rd_tail was scribbled.
	 */
	uint64_t rd_tail;       /* reader: tail as it last stored it */
	uint64_t rd_records;    /* reader: committed records peeked and not released yet */
	bool rd_synced;         /* reader: rd_tail is known (false in a new reader until it looks) */
	uint32_t max_record;    /* local copy: the shared one is only checked against it */
	uint64_t created_ms;    /* local copy of the creation time (arrival_ms origin) */
};

/* One record seen by the reader. data points into the mapping, valid until released. */
struct ring_record {
	const uint8_t *data;
	uint32_t len;
	uint64_t pos;           /* absolute position of its header */
	uint64_t next;          /* absolute position after it: pass to ring_release() */
	/*
	 * The writer's metadata, copied out and validated: flags lacks RING_META_VALID
	 * when none was given or rid_off + rid_len would leave the payload.
	 */
	struct ring_meta meta;
	uint32_t arrival_ms;    /* RING_META_ARRIVAL: ms after ring_created_ms() it was written */
};

struct ring_stats {
	uint64_t written_records, written_bytes;     /* accepted (reserved) by ring_writev */
	uint64_t released_records, released_bytes;
	uint64_t rejected_records, rejected_bytes;   /* refused because the ring was full */
	uint64_t abandoned_records;                  /* of those, never committed: writer died */
	uint64_t corrupt_detected;                   /* inconsistencies found (each repaired) */
	uint64_t corrupt_records;                    /* records dropped by those repairs */
	uint64_t resets;                             /* repairs and resets done */
	uint64_t head, tail;                         /* bytes in use = head - tail */
	uint64_t capacity;
};

/*
 * Creates the ring: a memfd of header + capacity bytes (capacity is rounded down to
 * a multiple of 4096, at least RING_MIN_CAPACITY), mapped MAP_SHARED, and its two
 * eventfds. Call before forking the writer and reader. Returns 0 or -errno.
 */
int ring_create(struct ring *r, uint64_t capacity) __attribute__((warn_unused_result));

/*
 * Maps an existing ring from its memfd (e.g. after exec) and validates the header:
 * magic, version, sizes, and head/tail consistency. Returns 0, -EPROTO on a bad or
 * corrupted header, or -errno. The eventfds are given by the caller (-1 if unused).
 */
int ring_attach(struct ring *r, int memfd, int data_efd, int space_efd)
    __attribute__((warn_unused_result));

/*
 * Re-validates the shared header of an already mapped ring against the process's own
 * copies (magic, version, sizes) and head/tail consistency. Returns 0 or -EPROTO.
 * Reads only the header: safe whatever another process wrote.
 */
int ring_check(const struct ring *r) __attribute__((warn_unused_result));

/*
 * Supervisor, when no reader is running (the reader died) and ring_check failed:
 * empties the ring (head = tail at a plausible position), restores the constant
 * header fields, and counts what it held as dropped (corrupt_records). Repairs the
 * writers' lock if it cannot be taken within a bound. Returns the records dropped.
 * A reader resets on its own (ring_peek -> -EBADMSG -> ring_skip_corrupt).
 */
uint64_t ring_reset(struct ring *r);

/* Unmaps and closes the fds (the creator's call frees the memory when the last user goes). */
void ring_close(struct ring *r);

/* Largest payload a single record may hold. */
uint32_t ring_max_record(const struct ring *r);

/* CLOCK_MONOTONIC ms (now_mono_ms) when the ring was created: the origin of arrival_ms. */
uint64_t ring_created_ms(const struct ring *r);

/*
 * Writes n records atomically as a group: either all are reserved or none are.
 * Returns 0, -ENOSPC when the free space is short (counted as rejected),
 * -EMSGSIZE when one record or the group can never fit, -EINVAL for n == 0.
 * Thread- and process-safe. Wakes the reader only when it may be asleep.
 */
int ring_writev(struct ring *r, const struct iovec *recs, size_t n) __attribute__((warn_unused_result));
int ring_write(struct ring *r, const void *data, size_t len) __attribute__((warn_unused_result));

/*
 * Like ring_writev, but when the ring is full waits up to timeout_ms for the reader
 * to release space before giving up with -ENOSPC (counted once).
 */
int ring_writev_wait(struct ring *r, const struct iovec *recs, size_t n, int timeout_ms)
    __attribute__((warn_unused_result));

/*
 * Same, but also gives up (with -ENOSPC, counted once) as soon as *cancel becomes
 * non-zero, checked at least every 5 ms: a stopping writer does not sit out the wait.
 */
int ring_writev_wait_cancel(struct ring *r, const struct iovec *recs, size_t n, int timeout_ms,
    const _Atomic int *cancel) __attribute__((warn_unused_result));

/*
 * Same, with metadata for each record (meta[i] for recs[i]; flags are set by the ring)
 * and every record stamped with the time of the call (arrival_ms). A span that does
 * not fit its record is stored as no metadata.
 */
int ring_writev_meta_wait(struct ring *r, const struct iovec *recs, const struct ring_meta *meta,
    size_t n, int timeout_ms, const _Atomic int *cancel) __attribute__((warn_unused_result));

/*
 * Bytes a group of records of these lengths needs, in the worst case of wrap
 * padding: lets a writer decide up front whether a batch can ever fit.
 */
uint64_t ring_space_needed(const struct iovec *recs, size_t n);

/*
 * Reader: returns the next committed record after the cursor and advances the
 * cursor. Returns 0, -EAGAIN when none is committed yet, -EBADMSG when the record
 * at the cursor is corrupted or head/tail are inconsistent (see ring_skip_corrupt).
 * Single reader only.
 */
int ring_peek(struct ring *r, struct ring_record *rec) __attribute__((warn_unused_result));

/* Reader: moves the cursor back to the first unreleased record (resend after a failure). */
void ring_rewind(struct ring *r);
/* Reader: the cursor position, and the position of the first unreleased record. */
uint64_t ring_cursor(const struct ring *r);
uint64_t ring_tail(const struct ring *r);
/* True when no committed or reserved record lies beyond the released position. */
bool ring_empty(const struct ring *r);

/*
 * Reader: releases every record before position upto (a ring_record.next value at
 * or before the cursor) so writers may reuse the space. Returns 0, or -EINVAL if
 * upto is out of range or not a record boundary. A record header rewritten after
 * it was peeked does not stop the release (counted in corrupt_detected).
 */
int ring_release(struct ring *r, uint64_t upto) __attribute__((warn_unused_result));

/*
 * Reader, after -EBADMSG: drops everything from the cursor to the current head (or,
 * if head itself is implausible, sets head back to the cursor), restores the shared
 * tail and the constant header fields from the reader's copies, and counts the
 * records dropped in corrupt_records, so the ring can carry on. Returns the bytes
 * dropped. Records peeked before the corruption stay unreleased until ring_release
 * passes them; the dropped span is then released with them. A second corruption
 * before that releases everything up to the head, peeked records included (counted).
 */
uint64_t ring_skip_corrupt(struct ring *r);

/*
 * Reader: prepares to sleep. Returns true if a committed record is already waiting
 * (do not sleep); otherwise the next commit will signal data_efd, so poll it.
 */
bool ring_reader_arm(struct ring *r);

/* Reader: sleeps until a record is committed or timeout_ms passes. Returns 1, 0 or -errno. */
int ring_reader_wait(struct ring *r, int timeout_ms);

/*
 * Supervisor: after a writer process died (call it after reaping the process and
 * before starting its replacement, so the pid cannot be reused), turns the records
 * it had reserved but not committed into skipped ones, repairs the lock if it died
 * holding it, restores the constant header fields, and always wakes the reader (the
 * dead writer may have taken a wake-up with it). Returns the number of records
 * abandoned. Walks only a plausible tail..head and stops at the first invalid
 * record (the reader then finds it and repairs): bounded, never reads outside the
 * data area, whatever another process wrote (check with ring_check first).
 */
uint64_t ring_recover(struct ring *r, pid_t dead_pid);

/* A consistent-enough snapshot of the counters (each read atomically). */
void ring_stats(const struct ring *r, struct ring_stats *st);

#endif
