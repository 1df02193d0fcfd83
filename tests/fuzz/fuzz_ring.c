/*
 * libFuzzer: the reader's and the supervisor's side of the ring against arbitrary
 * shared memory. The input becomes the record area, head, tail, a pid and, when its
 * mode byte says so, raw (implausible) positions and scribbled constant header
 * fields; the reader then peeks, releases, skips corruption and the supervisor
 * recovers, as the dispatcher and the controller would. Every record handed out must
 * lie inside the data area, its metadata span inside the record; the loop ends; and
 * afterwards the ring is consistent again: a value taken from shared memory is never
 * followed unchecked.
 *
 * Input: u64 head, u64 tail, u32 pid, u8 mode, 40 bytes of header (offsets 0..40,
 * used when mode & 2), then the data area (zero-padded).
 *   mode & 1: head and tail stored as given (any value), else made plausible
 *   mode & 2: the constant header fields (magic..max_record) overwritten
 *   mode & 4: the reader is new (has not looked yet), else it trusts the given tail
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

#define CAPACITY 8192u
#define OFF_HEAD 128   /* documented in docs/internals/ring.md, checked by check_ring.c */
#define OFF_TAIL 192
#define CONSTANTS 40   /* magic, version, header_size, capacity, map_size, max_record */
#define PREFIX   (8 + 8 + 4 + 1 + CONSTANTS)

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n);

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	static struct ring r;
	static uint8_t constants[CONSTANTS];
	static int ready;
	struct ring_record rec;
	uint64_t head, tail;
	uint32_t pid;
	uint8_t mode;
	int i;

	if (!ready) {
		if (ring_create(&r, CAPACITY) != 0)
			abort();
		memcpy(constants, r.hdr, CONSTANTS);
		ready = 1;
	}
	if (n < PREFIX)
		return 0;
	memcpy(&head, in, 8);
	memcpy(&tail, in + 8, 8);
	memcpy(&pid, in + 16, 4);
	mode = in[20];
	if (!(mode & 1)) {
		/* Aligned positions at most a ring apart: any lap, any distance. */
		tail &= ((1ull << 40) - 1) & ~(uint64_t)(RING_ALIGN - 1);
		head = tail + (head % (CAPACITY / RING_ALIGN + 1)) * RING_ALIGN;
	}
	memcpy(r.hdr, (mode & 2) ? in + 21 : constants, CONSTANTS);
	in += PREFIX;
	n -= PREFIX;
	memset(r.data, 0, CAPACITY);
	memcpy(r.data, in, n < CAPACITY ? n : CAPACITY);
	memcpy((uint8_t *)r.hdr + OFF_HEAD, &head, 8);
	memcpy((uint8_t *)r.hdr + OFF_TAIL, &tail, 8);
	/* The reader as it was before the scribble: new, or at a tail it stored itself. */
	r.skip_from = r.skip_to = 0;
	r.rd_records = 0;
	if (mode & 4) {
		r.rd_synced = false;
	} else {
		r.rd_synced = true;
		r.rd = r.rd_tail = tail & ((1ull << 40) - 1) & ~(uint64_t)(RING_ALIGN - 1);
	}
	/* The supervisor, after a child died: must not crash whatever it finds. */
	(void)ring_check(&r);
	if (ring_recover(&r, (pid_t)pid) > CAPACITY / RING_ALIGN)
		abort();
	for (i = 0; i < 1000; i++) {
		int rc = ring_peek(&r, &rec);

		if (rc == 0) {
			uint64_t off = rec.pos % CAPACITY;
			volatile uint8_t sink = 0;

			if (rec.data != r.data + off + RING_RECORD_HDR || off + RING_RECORD_HDR + rec.len > CAPACITY ||
			    rec.next <= rec.pos || rec.len > ring_max_record(&r))
				abort();
			if ((rec.meta.flags & RING_META_VALID) &&
			    ((uint64_t)rec.meta.rid_off + rec.meta.rid_len > rec.len || rec.meta.rid_len > RING_RID_MAX))
				abort();
			for (uint32_t k = 0; k < rec.len; k++)
				sink ^= rec.data[k];
			(void)sink;
			if ((i & 3) == 0 && ring_release(&r, rec.next) != 0)
				abort();
		} else if (rc == -EBADMSG) {
			(void)ring_skip_corrupt(&r);
		} else if (rc == -EAGAIN) {
			if (ring_recover(&r, (pid_t)pid) == 0)
				break;
		} else {
			abort();
		}
	}
	if (i == 1000)
		abort();        /* bounded: each record, repair or recovery moves the reader on */
	/* Everything peeked was validated, so releasing up to the cursor must work. */
	if (ring_release(&r, ring_cursor(&r)) != 0)
		abort();
	if (ring_check(&r) != 0)
		abort();
	return 0;
}
