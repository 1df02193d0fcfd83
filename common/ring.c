/*
 * Shared-memory ring: see ring.h for the contract and docs/internals/ring.md for the layout,
 * the memory ordering and the crash-recovery argument.
 */
#include "ring.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "notify.h"

enum rec_state {
	REC_EMPTY = 0,          /* never valid between tail and head */
	REC_RESERVED = 1,       /* space taken, payload being written */
	REC_COMMITTED = 2,      /* payload complete, visible to the reader */
	REC_PAD = 3,            /* filler up to the end of the buffer: records never wrap */
	REC_ABANDONED = 4,      /* reserved by a writer that died: skipped */
};

/* Every record starts with this 32-byte header at a 16-byte aligned offset. */
struct rec_hdr {
	_Atomic uint32_t state;
	uint32_t len;           /* payload bytes */
	uint32_t pid;           /* writer process, for recovery */
	uint32_t check;         /* ~len: a corrupted length is detected, not followed */
	uint64_t meta;          /* struct ring_meta: rid_off, rid_len, type, flags (one load) */
	uint32_t arrival_ms;    /* ms after created_ms */
	uint32_t pos_lo;        /* low 32 bits of its own position: a header left from an earlier lap fails */
};

_Static_assert(sizeof(struct rec_hdr) == RING_RECORD_HDR, "record header size");

/*
 * A PAD fills the end of the data area, which may be as little as RING_ALIGN bytes:
 * it uses only the first PAD_HDR bytes of a header (state, len, pid, check) and its
 * len counts the bytes after those.
 */
#define PAD_HDR 16u

/* Footprint of a record in state st with length l (PADs: see PAD_HDR). */
static inline uint64_t
rec_size(uint32_t st, uint32_t l)
{
	return st == REC_PAD ? (uint64_t)l + PAD_HDR : ring_record_size(l);
}
_Static_assert(sizeof(struct ring_meta) == 8, "ring_meta packs into rec_hdr.meta");

struct ring_header {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;   /* offset of the data area */
	uint64_t capacity;
	uint64_t map_size;
	uint32_t max_record;
	uint32_t reserved0;
	pthread_mutex_t lock;   /* robust, process-shared: held only to reserve space */

	alignas(64) _Atomic uint64_t head;  /* end of reserved space (absolute bytes, never wraps) */
	alignas(64) _Atomic uint64_t tail;  /* start of unreleased space */
	alignas(64) _Atomic uint32_t reader_waiting;
	_Atomic uint32_t writers_waiting;

	alignas(64) _Atomic uint64_t written_records, written_bytes;
	_Atomic uint64_t rejected_records, rejected_bytes;
	_Atomic uint64_t abandoned_records, corrupt_detected;
	alignas(64) _Atomic uint64_t released_records, released_bytes;
	alignas(64) _Atomic uint64_t corrupt_records, resets;
	uint64_t created_ms;    /* CLOCK_MONOTONIC ms at creation: origin of arrival_ms */
};

#define HEADER_SIZE ((sizeof(struct ring_header) + 4095u) & ~(size_t)4095u)

/* Positions beyond this are taken as scribbled: 2^62 bytes is centuries of writing. */
#define POS_LIMIT (1ull << 62)
/*
 * Supervisor and reader wait at most this long for the writers' lock: a writer holds it
 * for a few stores, so only a stopped holder or a lock that is no lock any more lasts it.
 */
#define LOCK_BOUND_MS 5000

/*
 * One load of a header word another process may be rewriting: the value checked is
 * the value used (a plain read could be repeated by the compiler).
 */
static inline uint32_t
ld32(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline struct rec_hdr *
rec_at(const struct ring *r, uint64_t pos)
{
	return (struct rec_hdr *)(void *)(r->data + (pos % r->capacity));
}

/*
 * getpid() is a system call (glibc no longer caches it) and every reservation
 * records its writer's pid: cache it per process, forgetting it in a fork's child.
 */
static _Atomic pid_t ring_pid;
static pthread_once_t ring_pid_once = PTHREAD_ONCE_INIT;

static void
ring_pid_forget(void)
{
	atomic_store_explicit(&ring_pid, 0, memory_order_relaxed);
}

static void
ring_pid_register(void)
{
	pthread_atfork(NULL, NULL, ring_pid_forget);
}

static uint32_t
ring_getpid(void)
{
	pid_t pid;

	pthread_once(&ring_pid_once, ring_pid_register);
	pid = atomic_load_explicit(&ring_pid, memory_order_relaxed);
	if (pid == 0) {
		pid = getpid();
		atomic_store_explicit(&ring_pid, pid, memory_order_relaxed);
	}
	return (uint32_t)pid;
}

/* Takes the writers' lock; repairs it if its previous holder died (EOWNERDEAD). */
static int
ring_lock(struct ring *r)
{
	int rc = pthread_mutex_lock(&r->hdr->lock);

	if (rc == EOWNERDEAD) {
		/*
		 * The dead holder stored head last, so the shared state is either
		 * before or after its reservation, never in between: consistent.
		 */
		pthread_mutex_consistent(&r->hdr->lock);
		rc = 0;
	}
	return -rc;
}

static void
ring_unlock(struct ring *r)
{
	pthread_mutex_unlock(&r->hdr->lock);
}

static int
ring_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t attr;
	int rc;

	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	rc = pthread_mutex_init(m, &attr);
	pthread_mutexattr_destroy(&attr);
	return -rc;
}

/*
 * The lock for the supervisor and the reader, who must not hang whatever a child
 * wrote: a lock not free within LOCK_BOUND_MS (writers hold it for a few stores) or
 * not a lock any more (scribbled) is initialised again and taken. Last resort: a
 * writer really stuck inside it would then race the new holder.
 */
static void
ring_lock_bounded(struct ring *r)
{
	struct timespec ts;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += LOCK_BOUND_MS / 1000;
	ts.tv_nsec += (long)(LOCK_BOUND_MS % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	rc = pthread_mutex_timedlock(&r->hdr->lock, &ts);
	if (rc == EOWNERDEAD) {
		pthread_mutex_consistent(&r->hdr->lock);
		return;
	}
	if (rc == 0)
		return;
	atomic_fetch_add_explicit(&r->hdr->corrupt_detected, 1, memory_order_relaxed);
	if (ring_mutex_init(&r->hdr->lock) == 0 && pthread_mutex_lock(&r->hdr->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&r->hdr->lock);
}

/* Aligned, ordered, at most a ring apart, and far from overflowing. */
static inline bool
pos_plausible(const struct ring *r, uint64_t head, uint64_t tail)
{
	return ((head | tail) % RING_ALIGN) == 0 && tail <= head && head - tail <= r->capacity &&
	    head < POS_LIMIT;
}

/* The fields nobody writes after ring_create, from this process's own copies. */
static void
header_restore(struct ring *r)
{
	struct ring_header *h = r->hdr;

	if (h->magic != RING_MAGIC)
		h->magic = RING_MAGIC;
	if (h->version != RING_VERSION)
		h->version = RING_VERSION;
	if (h->header_size != HEADER_SIZE)
		h->header_size = HEADER_SIZE;
	if (h->capacity != r->capacity)
		h->capacity = r->capacity;
	if (h->map_size != r->map_len)
		h->map_size = r->map_len;
	if (h->max_record != r->max_record)
		h->max_record = r->max_record;
	if (h->created_ms != r->created_ms)
		h->created_ms = r->created_ms;
}

static uint64_t
sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/*
 * Records committed or reserved between tail and head, from the counters (which a
 * scribbler may have changed too: clamped to what the ring can hold).
 */
static uint64_t
ring_pending_records(const struct ring *r)
{
	struct ring_header *h = r->hdr;
	uint64_t p = atomic_load_explicit(&h->written_records, memory_order_relaxed);

	p = sat_sub(p, atomic_load_explicit(&h->released_records, memory_order_relaxed));
	p = sat_sub(p, atomic_load_explicit(&h->abandoned_records, memory_order_relaxed));
	p = sat_sub(p, atomic_load_explicit(&h->corrupt_records, memory_order_relaxed));
	return p < r->capacity / RING_ALIGN ? p : r->capacity / RING_ALIGN;
}

/*
 * head and tail move while we look: read tail, head, tail again. Both only grow
 * and, at every instant, tail <= head <= tail + capacity, so on a sound ring
 * tail1 <= head <= tail2 + capacity always holds (reading head then tail once
 * could see a tail released past the head read: a false alarm).
 */
static int
positions_valid(const struct ring_header *h, uint64_t capacity)
{
	uint64_t head, tail;

	tail = atomic_load_explicit(&h->tail, memory_order_acquire);
	head = atomic_load_explicit(&h->head, memory_order_acquire);
	if (head < tail || tail % RING_ALIGN != 0 || head % RING_ALIGN != 0 || head >= POS_LIMIT)
		return 0;
	tail = atomic_load_explicit(&h->tail, memory_order_acquire);
	if (head > tail && head - tail > capacity)
		return 0;
	return 1;
}

static int
header_valid(const struct ring_header *h, uint64_t map_size)
{
	if (h->magic != RING_MAGIC || h->version != RING_VERSION || h->header_size != HEADER_SIZE)
		return 0;
	if (h->map_size != map_size || h->capacity + h->header_size != map_size)
		return 0;
	if (h->capacity < RING_MIN_CAPACITY || h->capacity % 4096 != 0)
		return 0;
	if (h->max_record == 0 || ring_record_size(h->max_record) > h->capacity / 2)
		return 0;
	return positions_valid(h, h->capacity);
}

int
ring_create(struct ring *r, uint64_t capacity)
{
	struct ring_header *h;
	int rc;

	memset(r, 0, sizeof(*r));
	r->memfd = r->data_efd = r->space_efd = -1;
	capacity &= ~(uint64_t)4095;
	if (capacity < RING_MIN_CAPACITY)
		capacity = RING_MIN_CAPACITY;
	r->map_len = HEADER_SIZE + capacity;
	r->capacity = capacity;

	r->memfd = memfd_create("kte-ring", MFD_CLOEXEC);
	if (r->memfd < 0)
		return -errno;
	if (ftruncate(r->memfd, (off_t)r->map_len) < 0)
		goto fail_errno;
	h = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	if (h == MAP_FAILED)
		goto fail_errno;
	r->hdr = h;
	r->data = (uint8_t *)h + HEADER_SIZE;

	h->magic = RING_MAGIC;
	h->version = RING_VERSION;
	h->header_size = HEADER_SIZE;
	h->capacity = capacity;
	h->map_size = r->map_len;
	/* A quarter of the ring, so one huge record cannot starve everyone else. */
	h->max_record = (uint32_t)((capacity / 4 > UINT32_MAX ? UINT32_MAX : capacity / 4) -
	    RING_RECORD_HDR);
	r->max_record = h->max_record;
	h->created_ms = r->created_ms = now_mono_ms();
	rc = ring_mutex_init(&h->lock);
	if (rc != 0) {
		ring_close(r);
		return rc;
	}
	if ((r->data_efd = notify_new()) < 0 || (r->space_efd = notify_new()) < 0) {
		rc = r->data_efd < 0 ? r->data_efd : r->space_efd;
		ring_close(r);
		return rc;
	}
	return 0;

fail_errno:
	rc = -errno;
	ring_close(r);
	return rc;
}

int
ring_attach(struct ring *r, int memfd, int data_efd, int space_efd)
{
	struct ring_header *h;
	struct stat st;
	int ok;

	memset(r, 0, sizeof(*r));
	r->memfd = r->data_efd = r->space_efd = -1;
	if (fstat(memfd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < HEADER_SIZE + RING_MIN_CAPACITY)
		return -EPROTO;
	h = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (h == MAP_FAILED)
		return -errno;
	ok = header_valid(h, (uint64_t)st.st_size);
	if (!ok) {
		munmap(h, (size_t)st.st_size);
		return -EPROTO;
	}
	r->hdr = h;
	r->data = (uint8_t *)h + HEADER_SIZE;
	r->capacity = h->capacity;
	r->map_len = (size_t)st.st_size;
	r->memfd = memfd;
	r->data_efd = data_efd;
	r->space_efd = space_efd;
	r->max_record = h->max_record;
	r->created_ms = h->created_ms;
	r->rd = r->rd_tail = atomic_load_explicit(&h->tail, memory_order_acquire);
	r->rd_synced = true;
	return 0;
}

int
ring_check(const struct ring *r)
{
	const struct ring_header *h = r->hdr;

	if (h->magic != RING_MAGIC || h->version != RING_VERSION || h->header_size != HEADER_SIZE ||
	    h->capacity != r->capacity || h->map_size != r->map_len || h->max_record != r->max_record)
		return -EPROTO;
	return positions_valid(h, r->capacity) ? 0 : -EPROTO;
}

void
ring_close(struct ring *r)
{
	if (r->hdr != NULL)
		munmap(r->hdr, r->map_len);
	if (r->memfd >= 0)
		close(r->memfd);
	if (r->data_efd >= 0)
		close(r->data_efd);
	if (r->space_efd >= 0)
		close(r->space_efd);
	memset(r, 0, sizeof(*r));
	r->memfd = r->data_efd = r->space_efd = -1;
}

uint32_t
ring_max_record(const struct ring *r)
{
	return r->max_record;
}

uint64_t
ring_created_ms(const struct ring *r)
{
	return r->created_ms;
}

uint64_t
ring_space_needed(const struct iovec *recs, size_t n)
{
	uint64_t total = 0, largest = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t sz = ring_record_size(recs[i].iov_len);

		total += sz;
		if (sz > largest)
			largest = sz;
	}
	/* At most one wrap per group, costing less than the largest record. */
	return n == 0 ? 0 : total + largest - RING_ALIGN;
}

static void
ring_wake_reader(struct ring *r)
{
	/* Pairs with the fence in ring_reader_arm: commit, then look for a sleeper. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&r->hdr->reader_waiting, memory_order_relaxed) &&
	    atomic_exchange(&r->hdr->reader_waiting, 0))
		notify_signal(r->data_efd);
}

/* The metadata word of record i: a span outside the payload is stored as none. */
static inline uint64_t
meta_word(const struct iovec *rec, const struct ring_meta *meta, bool stamped)
{
	struct ring_meta m = { 0, 0, 0, stamped ? RING_META_ARRIVAL : 0 };
	uint64_t w;

	if (meta != NULL && meta->rid_len <= RING_RID_MAX &&
	    (uint64_t)meta->rid_off + meta->rid_len <= rec->iov_len) {
		m.rid_off = meta->rid_off;
		m.rid_len = meta->rid_len;
		m.type = meta->type;
		m.flags |= RING_META_VALID;
	}
	memcpy(&w, &m, sizeof(w));
	return w;
}

/*
 * One attempt. meta (or NULL) gives each record's metadata; arrival, when stamped,
 * is the ms since creation to store in every record.
 */
static int
ring_writev_once(struct ring *r, const struct iovec *recs, const struct ring_meta *meta, size_t n,
    int count_rejects, bool stamped, uint32_t arrival)
{
	struct ring_header *h = r->hdr;
	uint64_t head, tail, pos, bytes = 0, pad_pos = 0, pad_len = 0;
	uint32_t pid = ring_getpid();
	int rc;

	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (recs[i].iov_len > r->max_record)
			return -EMSGSIZE;
		bytes += recs[i].iov_len;
	}
	if (ring_space_needed(recs, n) > r->capacity)
		return -EMSGSIZE;

	if ((rc = ring_lock(r)) < 0)
		return rc;
	head = atomic_load_explicit(&h->head, memory_order_relaxed);
	tail = atomic_load_explicit(&h->tail, memory_order_acquire);
	if (!pos_plausible(r, head, tail)) {
		/* Scribbled: never reserve from it. The reader repairs it; wake it and wait like full. */
		ring_unlock(r);
		notify_signal(r->data_efd);
		if (count_rejects) {
			atomic_fetch_add_explicit(&h->rejected_records, n, memory_order_relaxed);
			atomic_fetch_add_explicit(&h->rejected_bytes, bytes, memory_order_relaxed);
		}
		return -ENOSPC;
	}
	pos = head;
	for (size_t i = 0; i < n; i++) {
		uint64_t sz = ring_record_size(recs[i].iov_len), off = pos % r->capacity;

		if (off + sz > r->capacity) {
			pad_pos = pos;
			pad_len = r->capacity - off;
			pos += pad_len;
		}
		pos += sz;
	}
	if (pos - tail > r->capacity) {
		ring_unlock(r);
		if (count_rejects) {
			atomic_fetch_add_explicit(&h->rejected_records, n, memory_order_relaxed);
			atomic_fetch_add_explicit(&h->rejected_bytes, bytes, memory_order_relaxed);
		}
		return -ENOSPC;
	}

	/* Headers first, head last: a writer dying here leaves nothing visible. */
	pos = head;
	for (size_t i = 0; i < n; i++) {
		struct rec_hdr *rh;

		if (pad_len != 0 && pos == pad_pos) {
			rh = rec_at(r, pos);
			rh->len = (uint32_t)(pad_len - PAD_HDR);
			rh->pid = pid;
			rh->check = ~rh->len;
			atomic_store_explicit(&rh->state, REC_PAD, memory_order_relaxed);
			pos += pad_len;
		}
		rh = rec_at(r, pos);
		rh->len = (uint32_t)recs[i].iov_len;
		rh->pid = pid;
		rh->check = ~rh->len;
		rh->pos_lo = (uint32_t)pos;
		atomic_store_explicit(&rh->state, REC_RESERVED, memory_order_relaxed);
		pos += ring_record_size(recs[i].iov_len);
	}
	/* Counted under the lock (no atomic read-modify-write); see ring_stats. */
	atomic_store_explicit(&h->written_records,
	    atomic_load_explicit(&h->written_records, memory_order_relaxed) + n, memory_order_relaxed);
	atomic_store_explicit(&h->written_bytes,
	    atomic_load_explicit(&h->written_bytes, memory_order_relaxed) + bytes, memory_order_relaxed);
	atomic_store_explicit(&h->head, pos, memory_order_release);
	ring_unlock(r);

	/* Payloads without the lock; each record becomes visible with its own release store. */
	pos = head;
	for (size_t i = 0; i < n; i++) {
		struct rec_hdr *rh;

		if (pad_len != 0 && pos == pad_pos)
			pos += pad_len;
		rh = rec_at(r, pos);
		rh->meta = meta_word(&recs[i], meta != NULL ? &meta[i] : NULL, stamped);
		rh->arrival_ms = arrival;
		if (recs[i].iov_len != 0)
			memcpy((uint8_t *)rh + RING_RECORD_HDR, recs[i].iov_base, recs[i].iov_len);
		atomic_store_explicit(&rh->state, REC_COMMITTED, memory_order_release);
		pos += ring_record_size(recs[i].iov_len);
	}
	ring_wake_reader(r);
	return 0;
}

int
ring_writev(struct ring *r, const struct iovec *recs, size_t n)
{
	return ring_writev_once(r, recs, NULL, n, 1, false, 0);
}

int
ring_write(struct ring *r, const void *data, size_t len)
{
	struct iovec v = { .iov_base = (void *)(uintptr_t)data, .iov_len = len };

	return ring_writev_once(r, &v, NULL, 1, 1, false, 0);
}

int
ring_writev_wait(struct ring *r, const struct iovec *recs, size_t n, int timeout_ms)
{
	return ring_writev_wait_cancel(r, recs, n, timeout_ms, NULL);
}

/* The wait loop of both waiting writers; stamps with the time of the call (read anyway). */
static int
ring_writev_wait_loop(struct ring *r, const struct iovec *recs, const struct ring_meta *meta, size_t n,
    int timeout_ms, const _Atomic int *cancel)
{
	uint64_t start = now_mono_ms(), deadline = start + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	uint32_t arrival = (uint32_t)(start - r->created_ms);
	int rc;

	for (;;) {
		uint64_t now;

		rc = ring_writev_once(r, recs, meta, n, 0, true, arrival);
		if (rc != -ENOSPC)
			return rc;
		now = now_mono_ms();
		if (now >= deadline || (cancel != NULL && atomic_load(cancel)))
			break;
		atomic_fetch_add(&r->hdr->writers_waiting, 1);
		/*
		 * Pairs with the fence in ring_release: either the reader sees us
		 * waiting and signals, or this second try sees its new tail.
		 */
		atomic_thread_fence(memory_order_seq_cst);
		rc = ring_writev_once(r, recs, meta, n, 0, true, arrival);
		if (rc != -ENOSPC) {
			atomic_fetch_sub(&r->hdr->writers_waiting, 1);
			return rc;
		}
		/*
		 * Short naps: several writers share one eventfd and only one drains
		 * each wake-up, so the others re-check on their own soon after.
		 */
		notify_wait(r->space_efd, (int)(deadline - now < 5 ? deadline - now : 5));
		atomic_fetch_sub(&r->hdr->writers_waiting, 1);
	}
	return ring_writev_once(r, recs, meta, n, 1, true, arrival);
}

int
ring_writev_wait_cancel(struct ring *r, const struct iovec *recs, size_t n, int timeout_ms,
    const _Atomic int *cancel)
{
	return ring_writev_wait_loop(r, recs, NULL, n, timeout_ms, cancel);
}

int
ring_writev_meta_wait(struct ring *r, const struct iovec *recs, const struct ring_meta *meta, size_t n,
    int timeout_ms, const _Atomic int *cancel)
{
	return ring_writev_wait_loop(r, recs, meta, n, timeout_ms, cancel);
}

/*
 * Validates the header at pos (between cursor and head) and returns its state and
 * size, or -EBADMSG. Never follows a length it has not checked.
 */
static int
rec_inspect(const struct ring *r, uint64_t pos, uint64_t head, uint32_t *state, uint64_t *size,
    uint32_t *len)
{
	const struct rec_hdr *rh = rec_at(r, pos);
	uint64_t off = pos % r->capacity, sz;
	uint32_t st, l;

	st = atomic_load_explicit(&rh->state, memory_order_acquire);
	l = ld32(&rh->len);
	/* A record's header says where it is (PADs, 16 bytes, have no room to): stale laps fail. */
	if (st != REC_PAD && ld32(&rh->pos_lo) != (uint32_t)pos)
		return -EBADMSG;
	if (st == REC_RESERVED) {
		*state = st;
		return 0;
	}
	if (ld32(&rh->check) != ~l || (st != REC_PAD && l > r->max_record))
		return -EBADMSG;
	sz = rec_size(st, l);
	if (sz % RING_ALIGN != 0 || off + sz > r->capacity || pos + sz > head)
		return -EBADMSG;
	if (st != REC_COMMITTED && st != REC_PAD && st != REC_ABANDONED)
		return -EBADMSG;
	if (st == REC_PAD && off + sz != r->capacity)
		return -EBADMSG;
	*state = st;
	*size = sz;
	*len = l;
	return 0;
}

/*
 * Copies a committed record's metadata out with one load and validates the copy:
 * the requestId span must lie inside the payload, or there is no metadata.
 */
static inline void
rec_meta(const struct rec_hdr *rh, uint32_t len, struct ring_record *rec)
{
	uint64_t w = __atomic_load_n(&rh->meta, __ATOMIC_RELAXED);
	struct ring_meta m;

	memcpy(&m, &w, sizeof(m));
	if ((m.flags & RING_META_VALID) &&
	    (m.rid_len > RING_RID_MAX || (uint64_t)m.rid_off + m.rid_len > len)) {
		m.rid_off = m.rid_len = 0;
		m.type = 0;
		m.flags &= (uint8_t)~RING_META_VALID;
	}
	m.flags &= RING_META_VALID | RING_META_ARRIVAL;
	rec->meta = m;
	rec->arrival_ms = (m.flags & RING_META_ARRIVAL) ? ld32(&rh->arrival_ms) : 0;
}

/* The cursor never enters a corrupted span waiting for release (after a rewind). */
static inline void
ring_cursor_skip(struct ring *r)
{
	if (r->skip_from != r->skip_to && r->rd == r->skip_from)
		r->rd = r->skip_to;
}

static void
reader_forget(struct ring *r, uint64_t pos)
{
	r->rd = r->rd_tail = pos;
	r->rd_records = 0;
	r->skip_from = r->skip_to = 0;
	r->rd_synced = true;
}

/*
 * Empties the ring at a plausible position under the lock: used when no reader has
 * trusted copies to repair from. Returns the records dropped.
 */
static uint64_t
ring_reset_locked(struct ring *r)
{
	struct ring_header *h = r->hdr;
	uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
	uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire), at = 0, lost;

	/* The furthest plausible position, so that new records land past any still being copied. */
	if (head % RING_ALIGN == 0 && head < POS_LIMIT)
		at = head;
	if (tail % RING_ALIGN == 0 && tail < POS_LIMIT && tail > at)
		at = tail;
	lost = ring_pending_records(r);
	header_restore(r);
	atomic_store_explicit(&h->tail, at, memory_order_release);
	atomic_store_explicit(&h->head, at, memory_order_release);
	atomic_fetch_add_explicit(&h->corrupt_records, lost, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->resets, 1, memory_order_relaxed);
	return lost;
}

uint64_t
ring_reset(struct ring *r)
{
	uint64_t lost;

	ring_lock_bounded(r);
	lost = ring_reset_locked(r);
	ring_unlock(r);
	notify_signal(r->space_efd);
	notify_signal(r->data_efd);
	return lost;
}

/*
 * A reader that has not looked yet (a new process): take the shared tail if it is
 * plausible, else reset the ring, which only the sole reader may do while writers run.
 */
static void
reader_sync(struct ring *r)
{
	uint64_t tail, head;

	tail = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
	head = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
	if (!pos_plausible(r, head, tail)) {
		atomic_fetch_add_explicit(&r->hdr->corrupt_detected, 1, memory_order_relaxed);
		ring_lock_bounded(r);
		ring_reset_locked(r);
		tail = atomic_load_explicit(&r->hdr->tail, memory_order_relaxed);
		ring_unlock(r);
		notify_signal(r->space_efd);
	}
	reader_forget(r, tail);
}

/*
 * The reader's check of the shared positions against its own copies: head aligned,
 * not behind the cursor, at most a ring ahead of the tail the reader stored last, and
 * the shared tail still that one. Cheap: three loads of lines the reader reads anyway.
 */
static inline bool
reader_positions_ok(const struct ring *r, uint64_t head)
{
	return head % RING_ALIGN == 0 && head >= r->rd && head - r->rd_tail <= r->capacity &&
	    atomic_load_explicit(&r->hdr->tail, memory_order_relaxed) == r->rd_tail;
}

int
ring_peek(struct ring *r, struct ring_record *rec)
{
	if (!r->rd_synced)
		reader_sync(r);
	for (;;) {
		uint64_t head = atomic_load_explicit(&r->hdr->head, memory_order_acquire), size = 0;
		uint32_t state = 0, len = 0;

		ring_cursor_skip(r);
		if (!reader_positions_ok(r, head) ||
		    (r->rd < head && rec_inspect(r, r->rd, head, &state, &size, &len) < 0)) {
			atomic_fetch_add_explicit(&r->hdr->corrupt_detected, 1, memory_order_relaxed);
			return -EBADMSG;
		}
		if (r->rd >= head)
			return -EAGAIN;
		if (state == REC_RESERVED)
			return -EAGAIN;
		if (state != REC_COMMITTED) {
			r->rd += size;
			continue;
		}
		rec->data = (const uint8_t *)rec_at(r, r->rd) + RING_RECORD_HDR;
		rec->len = len;
		rec_meta(rec_at(r, r->rd), len, rec);
		rec->pos = r->rd;
		rec->next = r->rd + size;
		r->rd += size;
		r->rd_records++;
		return 0;
	}
}

void
ring_rewind(struct ring *r)
{
	/* The reader's own tail, not the shared one: that one may have been scribbled. */
	if (!r->rd_synced)
		reader_sync(r);
	r->rd = r->rd_tail;
	r->rd_records = 0;
}


uint64_t
ring_cursor(const struct ring *r)
{
	return r->rd;
}

uint64_t
ring_tail(const struct ring *r)
{
	if (r->rd_synced)
		return r->rd_tail;
	return atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
}

bool
ring_empty(const struct ring *r)
{
	return atomic_load_explicit(&r->hdr->head, memory_order_acquire) ==
	    atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
}

/*
 * A header the cursor passed, seen again on release: still sound and inside the part
 * the cursor passed? (A child may have rewritten it since it was peeked.)
 */
static bool
rec_still_valid(const struct ring *r, uint64_t pos, uint32_t *state, uint64_t *size, uint32_t *len)
{
	const struct rec_hdr *rh = rec_at(r, pos);
	uint32_t st = atomic_load_explicit(&rh->state, memory_order_relaxed), l = ld32(&rh->len);
	uint64_t sz = rec_size(st, l);

	if (st != REC_COMMITTED && st != REC_PAD && st != REC_ABANDONED)
		return false;
	if (ld32(&rh->check) != ~l || sz % RING_ALIGN != 0 || pos % r->capacity + sz > r->capacity ||
	    pos + sz > r->rd)
		return false;
	if (st != REC_PAD && (ld32(&rh->pos_lo) != (uint32_t)pos || l > r->max_record))
		return false;
	*state = st;
	*size = sz;
	*len = l;
	return true;
}

/*
 * Committed records in [from, to) (to <= the cursor), skipping the corrupted span, by
 * their headers. Returns false if one of them no longer validates.
 */
static bool
count_span(const struct ring *r, uint64_t from, uint64_t to, uint64_t *records, uint64_t *bytes)
{
	uint64_t pos, size;
	uint32_t st, len;

	*records = *bytes = 0;
	for (pos = from; pos < to; pos += size) {
		if (pos == r->skip_from && r->skip_from != r->skip_to) {
			size = r->skip_to - pos;        /* a corrupted span: its headers are not to be read */
			continue;
		}
		if (!rec_still_valid(r, pos, &st, &size, &len))
			return false;
		if (st == REC_COMMITTED) {
			(*records)++;
			*bytes += len;
		}
	}
	return pos == to;
}

int
ring_release(struct ring *r, uint64_t upto)
{
	struct ring_header *h = r->hdr;
	uint64_t tail, pos, records = 0, bytes = 0;
	bool sound = true;

	if (!r->rd_synced)
		reader_sync(r);
	tail = r->rd_tail;
	if (upto < tail || upto > r->rd || upto % RING_ALIGN != 0)
		return -EINVAL;
	/* Count what is released, re-checking each header: these were validated when peeked. */
	for (pos = tail; pos < upto;) {
		uint64_t size;
		uint32_t st, len;

		if (pos == r->skip_from && r->skip_from != r->skip_to) {
			pos = r->skip_to;       /* a corrupted span: its headers are not to be read */
			continue;
		}
		if (!rec_still_valid(r, pos, &st, &size, &len)) {
			/* Rewritten since: upto is the caller's, checked above; release to it anyway. */
			sound = false;
			break;
		}
		if (st == REC_COMMITTED) {
			records++;
			bytes += len;
		}
		pos += size;
	}
	if (sound && pos != upto)
		return -EINVAL;
	if (!sound) {
		uint64_t after, after_bytes;

		atomic_fetch_add_explicit(&h->corrupt_detected, 1, memory_order_relaxed);
		/* Exact if the peeked records after upto are intact: all peeked, less those. */
		if (upto == r->rd)
			records = r->rd_records;
		else if (count_span(r, upto, r->rd, &after, &after_bytes))
			records = sat_sub(r->rd_records, after);
	}
	if (r->skip_from != r->skip_to && upto >= r->skip_from) {
		/* Released up to (or past) the corrupted span: it goes too. */
		if (upto < r->skip_to)
			upto = r->skip_to;
		r->skip_from = r->skip_to = 0;
	}
	r->rd_records = sat_sub(r->rd_records, records);
	r->rd_tail = upto;
	/* Release: the reader's reads of these payloads happen before writers reuse them. */
	atomic_store_explicit(&h->tail, upto, memory_order_release);
	atomic_fetch_add_explicit(&h->released_records, records, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->released_bytes, bytes, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&h->writers_waiting, memory_order_relaxed) != 0)
		notify_signal(r->space_efd);
	return 0;
}

uint64_t
ring_skip_corrupt(struct ring *r)
{
	struct ring_header *h = r->hdr;
	uint64_t head, dropped, lost;

	if (!r->rd_synced)
		reader_sync(r);
	ring_lock_bounded(r);
	header_restore(r);
	head = atomic_load_explicit(&h->head, memory_order_acquire);
	/* A head that cannot be right is not followed: the cursor becomes the head. */
	if (head % RING_ALIGN != 0 || head < r->rd || head - r->rd_tail > r->capacity)
		head = r->rd;
	dropped = head - r->rd;
	/* Records between the cursor and head, counted from the counters (peeked ones excluded). */
	lost = sat_sub(ring_pending_records(r), r->rd_records);
	if (r->rd == r->rd_tail || r->skip_from != r->skip_to) {
		/* Nothing peeked is waiting for release (or a second corruption): release all. */
		lost += r->rd_records;
		reader_forget(r, head);
	} else {
		/* Keep the peeked records until Kinesis acknowledged them; skip the rest. */
		if (head != r->rd) {
			r->skip_from = r->rd;
			r->skip_to = head;
		}
		r->rd = head;
	}
	atomic_store_explicit(&h->tail, r->rd_tail, memory_order_release);
	atomic_store_explicit(&h->head, head, memory_order_release);
	atomic_fetch_add_explicit(&h->corrupt_records, lost, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->resets, 1, memory_order_relaxed);
	ring_unlock(r);
	notify_signal(r->space_efd);
	return dropped;
}

bool
ring_reader_arm(struct ring *r)
{
	uint64_t head, size;
	uint32_t state = REC_RESERVED, len;

	if (!r->rd_synced)
		reader_sync(r);
	atomic_store(&r->hdr->reader_waiting, 1);
	atomic_thread_fence(memory_order_seq_cst);
	head = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
	/* Inconsistent positions or a bad record: do not sleep, peek (which reports it). */
	if (!reader_positions_ok(r, head) || (r->rd < head &&
	    (rec_inspect(r, r->rd, head, &state, &size, &len) < 0 || state != REC_RESERVED))) {
		atomic_store(&r->hdr->reader_waiting, 0);
		return true;
	}
	return false;
}

int
ring_reader_wait(struct ring *r, int timeout_ms)
{
	if (ring_reader_arm(r))
		return 1;
	return notify_wait(r->data_efd, timeout_ms);
}

uint64_t
ring_recover(struct ring *r, pid_t dead_pid)
{
	uint64_t head, tail, pos, size = 0, abandoned = 0;
	uint32_t state, len;

	ring_lock_bounded(r);
	header_restore(r);
	head = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
	tail = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
	/* Implausible positions are not walked: the reader (or ring_reset) deals with them. */
	if (!pos_plausible(r, head, tail))
		head = tail;
	/* Aligned start, each step at least RING_ALIGN, head at most a ring away: bounded. */
	for (pos = tail; pos < head; pos += size) {
		struct rec_hdr *rh = rec_at(r, pos);

		state = 0;
		if (atomic_load_explicit(&rh->state, memory_order_acquire) == REC_RESERVED) {
			/* Reserved records were validated by their writer; check before trusting. */
			len = ld32(&rh->len);
			size = ring_record_size(len);
			if (ld32(&rh->check) != ~len || ld32(&rh->pos_lo) != (uint32_t)pos || len > r->max_record ||
			    pos % r->capacity + size > r->capacity ||
			    pos + size > head)
				break;
			if (rh->pid == (uint32_t)dead_pid) {
				atomic_store_explicit(&rh->state, REC_ABANDONED, memory_order_release);
				abandoned++;
			}
			continue;
		}
		if (rec_inspect(r, pos, head, &state, &size, &len) < 0)
			break;
	}
	ring_unlock(r);
	if (abandoned != 0)
		atomic_fetch_add_explicit(&r->hdr->abandoned_records, abandoned, memory_order_relaxed);
	/*
	 * Wake the reader even if nothing was abandoned: the dead writer may have
	 * cleared reader_waiting and died before writing the eventfd, after which
	 * no commit signals (the flag is clear) and the reader would sleep on.
	 */
	notify_signal(r->data_efd);
	return abandoned;
}

void
ring_stats(const struct ring *r, struct ring_stats *st)
{
	struct ring_header *h = r->hdr;

	st->written_records = atomic_load_explicit(&h->written_records, memory_order_relaxed);
	st->written_bytes = atomic_load_explicit(&h->written_bytes, memory_order_relaxed);
	st->released_records = atomic_load_explicit(&h->released_records, memory_order_relaxed);
	st->released_bytes = atomic_load_explicit(&h->released_bytes, memory_order_relaxed);
	st->rejected_records = atomic_load_explicit(&h->rejected_records, memory_order_relaxed);
	st->rejected_bytes = atomic_load_explicit(&h->rejected_bytes, memory_order_relaxed);
	st->abandoned_records = atomic_load_explicit(&h->abandoned_records, memory_order_relaxed);
	st->corrupt_detected = atomic_load_explicit(&h->corrupt_detected, memory_order_relaxed);
	st->corrupt_records = atomic_load_explicit(&h->corrupt_records, memory_order_relaxed);
	st->resets = atomic_load_explicit(&h->resets, memory_order_relaxed);
	/* Tail first: both only grow, so the snapshot never has head < tail (see header_valid). */
	st->tail = atomic_load_explicit(&h->tail, memory_order_acquire);
	st->head = atomic_load_explicit(&h->head, memory_order_acquire);
	st->capacity = r->capacity;
}
