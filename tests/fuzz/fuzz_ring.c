/*
 * libFuzzer: the reader's side of the ring against arbitrary shared memory.
 * The input becomes the record area plus head, tail and a pid; the reader then
 * peeks, releases, skips corruption and recovers as the dispatcher would. Every
 * record it is handed must lie inside the data area: a length taken from shared
 * memory is never followed unchecked.
 *
 * Input: u64 head, u64 tail, u32 pid, then the data area (zero-padded).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

#define CAPACITY 8192u
#define OFF_HEAD 128   /* documented in docs/internals/ring.md, checked by check_ring.c */
#define OFF_TAIL 192

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n);

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	static struct ring r;
	static int ready;
	struct ring_record rec;
	uint64_t head, tail;
	uint32_t pid;

	if (!ready) {
		if (ring_create(&r, CAPACITY) != 0)
			abort();
		ready = 1;
	}
	if (n < 20)
		return 0;
	memcpy(&head, in, 8);
	memcpy(&tail, in + 8, 8);
	memcpy(&pid, in + 16, 4);
	in += 20;
	n -= 20;
	/* Aligned positions at most a ring apart, as ring_check demands: any lap, any distance. */
	tail &= ((1ull << 40) - 1) & ~(uint64_t)(RING_ALIGN - 1);
	head = tail + (head % (CAPACITY / RING_ALIGN + 1)) * RING_ALIGN;
	memset(r.data, 0, CAPACITY);
	memcpy(r.data, in, n < CAPACITY ? n : CAPACITY);
	memcpy((uint8_t *)r.hdr + OFF_HEAD, &head, 8);
	memcpy((uint8_t *)r.hdr + OFF_TAIL, &tail, 8);
	if (ring_check(&r) != 0)
		return 0;
	ring_rewind(&r);
	for (int i = 0; i < 1000; i++) {
		int rc = ring_peek(&r, &rec);

		if (rc == 0) {
			uint64_t off = rec.pos % CAPACITY;
			volatile uint8_t sink = 0;

			if (rec.data != r.data + off + RING_RECORD_HDR || off + RING_RECORD_HDR + rec.len > CAPACITY ||
			    rec.next <= rec.pos || rec.next > head || rec.len > ring_max_record(&r))
				abort();
			for (uint32_t k = 0; k < rec.len; k++)
				sink ^= rec.data[k];
			(void)sink;
			if ((i & 3) == 0 && ring_release(&r, rec.next) != 0)
				abort();
		} else if (rc == -EBADMSG) {
			ring_skip_corrupt(&r);
		} else if (rc == -EAGAIN) {
			if (ring_recover(&r, (pid_t)pid) == 0)
				break;
		} else {
			abort();
		}
	}
	/* Everything peeked was validated, so releasing up to the cursor must work. */
	if (ring_release(&r, ring_cursor(&r)) != 0)
		abort();
	if (ring_check(&r) != 0)
		abort();
	return 0;
}
