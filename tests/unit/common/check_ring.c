/*
 * The ring over real shared memory between real processes: the ring is created
 * before fork(), writers and readers are forked children (or the test process),
 * and every record carries its writer, its sequence number, its length and a
 * checksum that the reader verifies. Processes synchronise through pipes and
 * waitpid(), never through sleeps.
 *
 * Crashes are made deterministic without any hook in ring.c: a writer whose
 * payload source is a PROT_NONE page faults inside ring_writev() after reserving
 * and before committing; a writer that made the page at the head PROT_NONE in
 * its own mapping faults while writing a record header, i.e. while it holds the
 * writers' lock. Its SIGSEGV handler tells the parent and waits to be SIGKILLed.
 *
 * Iteration counts shrink under valgrind (KTE_UNDER_VALGRIND=1) and ASan.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "notify.h"
#include "ring.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef VALGRIND_DISABLE_ERROR_REPORTING
#define VALGRIND_DISABLE_ERROR_REPORTING
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Offsets in the shared header and record header, as documented in docs/internals/ring.md. */
#define HDR_OFF_MAGIC       0
#define HDR_OFF_VERSION     8
#define HDR_OFF_HEADER_SIZE 12
#define HDR_OFF_CAPACITY    16
#define HDR_OFF_MAP_SIZE    24
#define HDR_OFF_MAX_RECORD  32
#define HDR_OFF_HEAD        128
#define HDR_OFF_TAIL        192
#define HDR_OFF_READER_WAITING 256
#define REC_OFF_STATE       0
#define REC_OFF_LEN         4
#define REC_OFF_CHECK       12
#define REC_OFF_RID_OFF     16
#define REC_OFF_RID_LEN     20
#define REC_OFF_TYPE        22
#define REC_OFF_FLAGS       23
#define REC_OFF_ARRIVAL     24

#define TAG_SIZE   16u          /* writer, seq, len, checksum at the start of a record */
#define END_WRITER 0xffffffffu  /* a record from this writer tells the reader to stop */
#define MAX_WRITERS 4096

static int under_valgrind;

static void poke32(void *base, size_t off, uint32_t v);

/* Scales an iteration count down under valgrind (/100) and ASan (/8). */
static uint64_t
scaled(uint64_t n)
{
	if (under_valgrind)
		n /= 100;
	else if (UNDER_ASAN)
		n /= 8;
	return n < 1 ? 1 : n;
}

/* Timeout for waits that only expire when something is broken. */
static int
patience_ms(void)
{
	return under_valgrind ? 120000 : 20000;
}

/* ---- record contents ---------------------------------------------------- */

static uint8_t pattern[16384];

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static void
pattern_init(void)
{
	for (size_t i = 0; i < sizeof(pattern); i += 8) {
		uint64_t v = mix64(i + 1);

		memcpy(pattern + i, &v, 8);
	}
}

/* Position-sensitive checksum, 8 bytes at a time. */
static uint32_t
checksum(const uint8_t *p, size_t n, uint32_t seed)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static const uint8_t *
pattern_for(uint32_t writer, uint32_t seq)
{
	return pattern + (mix64(((uint64_t)writer << 32) | seq) % 8192);
}

/*
 * Fills buf with the record (writer, seq) of len bytes: a tag (when len >= 16)
 * followed by pattern bytes chosen by (writer, seq).
 */
static void
rec_fill(uint8_t *buf, uint32_t writer, uint32_t seq, uint32_t len)
{
	uint32_t tag[4];

	memcpy(buf, pattern_for(writer, seq), len);
	if (len < TAG_SIZE)
		return;
	tag[0] = writer;
	tag[1] = seq;
	tag[2] = len;
	tag[3] = checksum(buf + TAG_SIZE, len - TAG_SIZE, writer ^ (seq * 2654435761u) ^ len);
	memcpy(buf, tag, sizeof(tag));
}

/*
 * Verifies a tagged record (len >= 16): tag consistent, checksum right and the
 * body exactly the pattern. Returns 0 and the writer and seq, or -1.
 */
static int
rec_verify(const uint8_t *p, uint32_t len, uint32_t *writer, uint32_t *seq)
{
	uint32_t tag[4];

	if (len < TAG_SIZE)
		return -1;
	memcpy(tag, p, sizeof(tag));
	if (tag[2] != len)
		return -1;
	if (tag[3] != checksum(p + TAG_SIZE, len - TAG_SIZE, tag[0] ^ (tag[1] * 2654435761u) ^ len))
		return -1;
	if (tag[0] != END_WRITER &&
	    memcmp(p + TAG_SIZE, pattern_for(tag[0], tag[1]) + TAG_SIZE, len - TAG_SIZE) != 0)
		return -1;
	*writer = tag[0];
	*seq = tag[1];
	return 0;
}

/* Record sizes 0..4096, mostly small, some large, some under a tag's size. */
static uint32_t
size_for(uint32_t writer, uint32_t seq, uint32_t min)
{
	uint64_t h = mix64(((uint64_t)writer << 32) ^ seq ^ 0x5bd1e995);
	uint32_t len;

	if (h % 64 == 0)
		len = (uint32_t)((h >> 8) % 16);                /* 0..15, 0 included */
	else if (h % 16 == 1)
		len = 2048 + (uint32_t)((h >> 8) % 2049);       /* up to 4096 */
	else
		len = 16 + (uint32_t)((h >> 8) % 497);
	return len < min ? min : len;
}

/* ---- processes ---------------------------------------------------------- */

/* A child's failure: one line on stderr, exit status 1. */
static void child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
child_fail(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		_exit(2);
	_exit(1);
}

/* Forks a child that runs fn(arg) and exits 0; it dies with the test process. */
static pid_t
spawn(void (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn(arg);
		_exit(0);
	}
	return pid;
}

static void
wait_exit_ok(pid_t pid, const char *what)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status 0x%x", what, status);
}

static void
kill_and_reap(pid_t pid)
{
	int status;

	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void
pipe_put(int fd, const void *buf, size_t n)
{
	if (write(fd, buf, n) != (ssize_t)n)
		child_fail("pipe write: %s", strerror(errno));
}

/* Reads exactly n bytes, waiting at most patience_ms(). Returns 0, or -1 on EOF/timeout. */
static int
pipe_get(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t k;

		if (poll(&p, 1, patience_ms()) <= 0)
			return -1;
		k = read(fd, (uint8_t *)buf + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* Writes one record, waiting while the ring is full; a child fails on any error. */
static void
write_rec(struct ring *r, uint32_t writer, uint32_t seq, uint32_t len, uint8_t *buf)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };
	int rc;

	rec_fill(buf, writer, seq, len);
	rc = ring_writev_wait(r, &v, 1, patience_ms());
	if (rc != 0)
		child_fail("writer %u seq %u: ring_writev_wait: %s", writer, seq, strerror(-rc));
}

/* ---- the reader process ------------------------------------------------- */

struct reader_args {
	struct ring *r;
	int report_fd;              /* the reader writes a struct reader_report here at the end */
	uint64_t expect;            /* stop after this many records (0: stop at END_WRITER) */
	int single_writer;          /* records are writer 0, seq 0.., sizes from size_for() */
	uint32_t release_every;     /* release after this many records (and whenever idle) */
	int count_signals;          /* wait with ring_reader_arm + poll + notify_drain to count */
};

struct reader_report {
	uint64_t records, bytes, signals, sleeps, arms, max_writer;
};

static void
reader_main(void *arg)
{
	struct reader_args *a = arg;
	struct ring *r = a->r;
	static uint32_t next_seq[MAX_WRITERS];
	struct reader_report rep = { 0 };
	struct ring_record rec;
	uint64_t last_next = 0, unreleased = 0;
	uint32_t writer, seq;
	int rc;

	ring_rewind(r);
	for (;;) {
		rc = ring_peek(r, &rec);
		if (rc == -EAGAIN) {
			if (unreleased != 0 && ring_release(r, last_next) != 0)
				child_fail("reader: ring_release(%" PRIu64 ") failed", last_next);
			unreleased = 0;
			if (a->count_signals) {
				struct pollfd p = { .fd = r->data_efd, .events = POLLIN };

				rep.arms++;
				if (ring_reader_arm(r))
					continue;
				rep.sleeps++;
				if (poll(&p, 1, patience_ms()) != 1)
					child_fail("reader: no wake-up in %d ms after %" PRIu64 " records",
					    patience_ms(), rep.records);
				rep.signals += notify_drain(r->data_efd);
			} else {
				rc = ring_reader_wait(r, patience_ms());
				if (rc == 0)
					child_fail("reader: no wake-up in %d ms after %" PRIu64 " records",
					    patience_ms(), rep.records);
			}
			continue;
		}
		if (rc != 0)
			child_fail("reader: ring_peek: %s after %" PRIu64 " records", strerror(-rc),
			    rep.records);
		if (a->single_writer) {
			uint32_t want = size_for(0, (uint32_t)rep.records, 0);

			seq = (uint32_t)rep.records;
			writer = 0;
			if (rec.len != want)
				child_fail("reader: record %u has %u bytes, want %u", seq, rec.len, want);
			if (want < TAG_SIZE) {
				if (memcmp(rec.data, pattern_for(0, seq), want) != 0)
					child_fail("reader: short record %u corrupted", seq);
			} else if (rec_verify(rec.data, rec.len, &writer, &seq) != 0 || writer != 0 ||
			    seq != (uint32_t)rep.records) {
				child_fail("reader: record %" PRIu64 " torn or out of order (writer %u seq %u)",
				    rep.records, writer, seq);
			}
		} else {
			if (rec_verify(rec.data, rec.len, &writer, &seq) != 0)
				child_fail("reader: record %" PRIu64 " (%u bytes at %" PRIu64 ") is torn",
				    rep.records, rec.len, rec.pos);
			if (writer == END_WRITER)
				break;
			if (writer >= MAX_WRITERS)
				child_fail("reader: writer %u out of range", writer);
			if (seq != next_seq[writer])
				child_fail("reader: writer %u: seq %u, want %u", writer, seq, next_seq[writer]);
			next_seq[writer]++;
			if (writer > rep.max_writer)
				rep.max_writer = writer;
		}
		rep.records++;
		rep.bytes += rec.len;
		last_next = rec.next;
		if (++unreleased >= a->release_every) {
			if (ring_release(r, last_next) != 0)
				child_fail("reader: ring_release failed");
			unreleased = 0;
		}
		if (a->expect != 0 && rep.records == a->expect)
			break;
	}
	if (ring_release(r, ring_cursor(r)) != 0)
		child_fail("reader: final ring_release failed");
	pipe_put(a->report_fd, &rep, sizeof(rep));
}

/* Starts a reader; returns its pid and the read end of its report pipe in *fd. */
static pid_t
reader_start(struct reader_args *a, int *fd)
{
	int p[2];
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	a->report_fd = p[1];
	pid = spawn(reader_main, a);
	close(p[1]);
	*fd = p[0];
	return pid;
}

static void
reader_finish(pid_t pid, int fd, struct reader_report *rep)
{
	int got = pipe_get(fd, rep, sizeof(*rep));

	close(fd);
	wait_exit_ok(pid, "reader");
	ck_assert_int_eq(got, 0);
}

static void
write_end_marker(struct ring *r)
{
	uint8_t buf[64];
	struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };

	rec_fill(buf, END_WRITER, 0, sizeof(buf));
	ck_assert_int_eq(ring_writev_wait(r, &v, 1, patience_ms()), 0);
}

/* ---- one writer, one reader: millions of records, wrap-around ------------ */

struct writer_args {
	struct ring *r;
	uint32_t writer;            /* first writer id; threads use writer + i */
	uint32_t threads;
	uint64_t count;             /* records per thread */
	uint32_t min_len;
	uint32_t max_group;         /* > 1: ring_writev groups of 1..max_group records */
	int single_writer;          /* sizes from size_for(0, seq, 0) */
};

struct thread_args {
	struct writer_args *w;
	uint32_t writer;
};

static void *
writer_thread(void *arg)
{
	struct thread_args *t = arg;
	struct writer_args *w = t->w;
	uint8_t *bufs = malloc(8 * 4096);
	struct iovec v[8];
	uint64_t seq = 0;

	if (bufs == NULL)
		child_fail("malloc");
	while (seq < w->count) {
		uint32_t n = 1, i;
		int rc;

		if (w->max_group > 1)
			n = 1 + (uint32_t)(mix64(seq ^ t->writer) % w->max_group);
		if (n > w->count - seq)
			n = (uint32_t)(w->count - seq);
		for (i = 0; i < n; i++) {
			uint32_t s = (uint32_t)(seq + i);
			uint32_t len = w->single_writer ? size_for(0, s, 0) : size_for(t->writer, s, w->min_len);

			v[i].iov_base = bufs + i * 4096;
			v[i].iov_len = len;
			rec_fill(v[i].iov_base, t->writer, s, len);
		}
		rc = ring_writev_wait(w->r, v, n, patience_ms());
		if (rc != 0)
			child_fail("writer %u: ring_writev_wait(%u records): %s", t->writer, n, strerror(-rc));
		seq += n;
	}
	free(bufs);
	return NULL;
}

static void
writer_main(void *arg)
{
	struct writer_args *w = arg;
	pthread_t tid[16];
	struct thread_args ta[16];

	for (uint32_t i = 0; i < w->threads; i++) {
		ta[i].w = w;
		ta[i].writer = w->writer + i;
		if (pthread_create(&tid[i], NULL, writer_thread, &ta[i]) != 0)
			child_fail("pthread_create");
	}
	for (uint32_t i = 0; i < w->threads; i++)
		pthread_join(tid[i], NULL);
}

START_TEST(test_one_writer_one_reader_millions)
{
	struct ring r;
	struct ring_stats st;
	struct reader_report rep;
	uint64_t n = scaled(2000000);
	struct reader_args ra = { .r = &r, .expect = n, .single_writer = 1, .release_every = 32 };
	struct writer_args wa = { .r = &r, .writer = 0, .threads = 1, .count = n, .single_writer = 1 };
	pid_t reader, writer;
	int fd;

	ck_assert_int_eq(ring_create(&r, 256 << 10), 0);
	reader = reader_start(&ra, &fd);
	writer = spawn(writer_main, &wa);
	wait_exit_ok(writer, "writer");
	reader_finish(reader, fd, &rep);

	ring_stats(&r, &st);
	ck_assert_uint_eq(rep.records, n);
	ck_assert_uint_eq(st.written_records, n);
	ck_assert_uint_eq(st.released_records, n);
	ck_assert_uint_eq(st.written_bytes, rep.bytes);
	ck_assert_uint_eq(st.released_bytes, rep.bytes);
	ck_assert_uint_eq(st.abandoned_records, 0);
	ck_assert_uint_eq(st.corrupt_detected, 0);
	/* The ring went round many times. */
	ck_assert_uint_gt(st.head / st.capacity, under_valgrind ? 2 : 100);
	ck_assert(ring_empty(&r));
	ck_assert_int_eq(ring_check(&r), 0);
	ring_close(&r);
}
END_TEST

/* ---- several writers: threads, processes, groups ------------------------- */

static void
run_writers(uint32_t procs, uint32_t threads, uint64_t per_thread, uint32_t max_group,
    uint64_t capacity)
{
	struct ring r;
	struct ring_stats st;
	struct reader_report rep;
	uint64_t total = (uint64_t)procs * threads * per_thread;
	struct reader_args ra = { .r = &r, .expect = total, .release_every = 16 };
	struct writer_args wa[8];
	pid_t reader, writers[8];
	int fd;

	ck_assert_int_le(procs, 8);
	ck_assert_int_eq(ring_create(&r, capacity), 0);
	reader = reader_start(&ra, &fd);
	for (uint32_t p = 0; p < procs; p++) {
		wa[p] = (struct writer_args){ .r = &r, .writer = p * 16, .threads = threads,
			.count = per_thread, .min_len = TAG_SIZE, .max_group = max_group };
		writers[p] = spawn(writer_main, &wa[p]);
	}
	for (uint32_t p = 0; p < procs; p++)
		wait_exit_ok(writers[p], "writer");
	reader_finish(reader, fd, &rep);

	ring_stats(&r, &st);
	ck_assert_uint_eq(rep.records, total);
	ck_assert_uint_eq(st.written_records, total);
	ck_assert_uint_eq(st.released_records, total);
	ck_assert_uint_eq(st.released_bytes, st.written_bytes);
	ck_assert(ring_empty(&r));
	ring_close(&r);
}

START_TEST(test_four_writer_threads)
{
	run_writers(1, 4, scaled(250000), 1, 128 << 10);
}
END_TEST

START_TEST(test_writer_processes_and_threads_groups)
{
	/* Three processes of two threads, writing groups of 1..8 records. */
	run_writers(3, 2, scaled(100000), 8, 64 << 10);
}
END_TEST

/* ---- writers killed at random moments ------------------------------------ */

struct hard_writer_args {
	struct ring *r;
	uint32_t writer;            /* threads use writer and writer + 1 */
};

static void *
hard_writer_thread(void *arg)
{
	struct thread_args *t = arg;
	uint8_t buf[4096];

	for (uint32_t seq = 0;; seq++)
		write_rec(t->w->r, t->writer, seq, size_for(t->writer, seq, TAG_SIZE), buf);
	return NULL;
}

/* Two threads writing as fast as they can until SIGKILL. */
static void
hard_writer_main(void *arg)
{
	struct writer_args *w = arg;
	struct thread_args ta[2] = { { w, w->writer }, { w, w->writer + 1 } };
	pthread_t tid;

	if (pthread_create(&tid, NULL, hard_writer_thread, &ta[1]) != 0)
		child_fail("pthread_create");
	hard_writer_thread(&ta[0]);
}

START_TEST(test_writers_killed_at_random)
{
	struct ring r;
	struct ring_stats st;
	struct reader_report rep;
	struct reader_args ra = { .r = &r, .release_every = 8 };
	uint64_t rounds = scaled(300), abandoned = 0;
	pid_t reader;
	int fd;

	if (rounds > MAX_WRITERS / 2 - 1)
		rounds = MAX_WRITERS / 2 - 1;
	ck_assert_int_eq(ring_create(&r, 1 << 20), 0);
	reader = reader_start(&ra, &fd);
	for (uint64_t i = 0; i < rounds; i++) {
		struct writer_args wa = { .r = &r, .writer = (uint32_t)i * 2 };
		uint64_t target, deadline = now_mono_ms() + (uint64_t)patience_ms();
		pid_t w;

		ring_stats(&r, &st);
		/* Kill after a pseudo-random number of records: 1..1500 more. */
		target = st.written_records + 1 + mix64(i) % 1500;
		w = spawn(hard_writer_main, &wa);
		do {
			ck_assert_msg(now_mono_ms() < deadline, "round %" PRIu64 ": writer made no progress", i);
			sched_yield();
			ring_stats(&r, &st);
		} while (st.written_records < target);
		kill_and_reap(w);
		/* The supervisor's part: whatever it had reserved becomes skippable. */
		abandoned += ring_recover(&r, w);
	}
	/* A last writer (this process) proves the lock is free and the reader is not stuck. */
	write_end_marker(&r);
	reader_finish(reader, fd, &rep);

	ring_stats(&r, &st);
	ck_assert_uint_eq(st.abandoned_records, abandoned);
	ck_assert_uint_le(abandoned, 2 * rounds);
	/*
	 * Every accepted record was either seen (the end marker included) or
	 * abandoned; only a death between counting and publishing a reservation,
	 * under the lock, could make the count exceed that.
	 */
	ck_assert_uint_ge(st.written_records, rep.records + 1 + abandoned);
	ck_assert_uint_le(st.written_records, rep.records + 1 + abandoned + rounds);
	ck_assert_uint_eq(st.corrupt_detected, 0);
	ck_assert(ring_empty(&r));
	if (rounds >= 100)
		ck_assert_msg(abandoned > 0, "no writer was ever killed mid-write in %" PRIu64 " rounds",
		    rounds);
	fprintf(stderr, "writers killed: %" PRIu64 ", reservations abandoned: %" PRIu64
	    ", records verified: %" PRIu64 "\n", rounds, abandoned, rep.records);
	ring_close(&r);
}
END_TEST

/* ---- deterministic crashes: a fault inside ring_writev ------------------- */

static int fault_fd = -1;        /* the child's pipe to the parent */
static char fault_tag;

static void
on_fault(int sig)
{
	(void)sig;
	if (write(fault_fd, &fault_tag, 1) < 0)
		_exit(3);
	for (;;)
		pause();
}

static void
install_fault_handler(int fd, char tag)
{
	struct sigaction sa;

	/* The fault to come is the point: valgrind need not report it. */
	VALGRIND_DISABLE_ERROR_REPORTING;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sigemptyset(&sa.sa_mask);
	fault_fd = fd;
	fault_tag = tag;
	if (sigaction(SIGSEGV, &sa, NULL) != 0 || sigaction(SIGBUS, &sa, NULL) != 0)
		child_fail("sigaction");
}

struct crash_args {
	struct ring *r;
	int fd;                     /* to the parent */
	uint32_t writer;
	uint32_t before;            /* records written normally first */
};

/* Writes `before` records, then a group whose second payload cannot be read. */
static void
crash_after_reserve_main(void *arg)
{
	struct crash_args *c = arg;
	uint8_t buf[4096];
	struct iovec v[2];
	void *bad;

	for (uint32_t s = 0; s < c->before; s++)
		write_rec(c->r, c->writer, s, 100, buf);
	bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bad == MAP_FAILED)
		child_fail("mmap");
	rec_fill(buf, c->writer, c->before, 200);
	v[0] = (struct iovec){ .iov_base = buf, .iov_len = 200 };
	v[1] = (struct iovec){ .iov_base = bad, .iov_len = 300 };
	install_fault_handler(c->fd, 'R');
	(void)!ring_writev(c->r, v, 2);
	child_fail("ring_writev read an unreadable payload");
}

/* Makes the page at the head unwritable in this process, then writes: it faults under the lock. */
static void
crash_holding_lock_main(void *arg)
{
	struct crash_args *c = arg;
	struct ring_stats st;
	uint8_t buf[128];
	uintptr_t page;

	for (uint32_t s = 0; s < c->before; s++)
		write_rec(c->r, c->writer, s, 100, buf);
	ring_stats(c->r, &st);
	page = (uintptr_t)(c->r->data + st.head % st.capacity) & ~(uintptr_t)4095;
	if (mprotect((void *)page, 4096, PROT_READ) != 0)
		child_fail("mprotect: %s", strerror(errno));
	install_fault_handler(c->fd, 'L');
	rec_fill(buf, c->writer, c->before, 100);
	(void)!ring_write(c->r, buf, 100);
	child_fail("ring_write wrote through a read-only page");
}

/* Starts a crashing writer and waits until it is stuck in its fault handler. */
static pid_t
crash_start(void (*fn)(void *), struct crash_args *c, char want)
{
	int p[2];
	char tag = 0;
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	c->fd = p[1];
	pid = spawn(fn, c);
	close(p[1]);
	ck_assert_int_eq(pipe_get(p[0], &tag, 1), 0);
	ck_assert_int_eq(tag, want);
	close(p[0]);
	return pid;
}

/* Peeks the next record and checks it is (writer, seq). */
static void
expect_record(struct ring *r, uint32_t writer, uint32_t seq)
{
	struct ring_record rec;
	uint32_t w, s;

	ck_assert_int_eq(ring_peek(r, &rec), 0);
	ck_assert_int_eq(rec_verify(rec.data, rec.len, &w, &s), 0);
	ck_assert_uint_eq(w, writer);
	ck_assert_uint_eq(s, seq);
}

struct plain_writer_args {
	struct ring *r;
	uint32_t writer, count;
};

static void
plain_writer_main(void *arg)
{
	struct plain_writer_args *a = arg;
	uint8_t buf[256];

	for (uint32_t s = 0; s < a->count; s++)
		write_rec(a->r, a->writer, s, 64 + s, buf);
}

START_TEST(test_writer_killed_after_reserve)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats st;
	struct crash_args c = { .r = &r, .writer = 1, .before = 10 };
	struct plain_writer_args b = { .r = &r, .writer = 2, .count = 10 };
	pid_t dead;

	ck_assert_int_eq(ring_create(&r, 16 << 10), 0);
	dead = crash_start(crash_after_reserve_main, &c, 'R');
	kill_and_reap(dead);
	/* A new writer carries on; its records queue behind the dead one's reservation. */
	wait_exit_ok(spawn(plain_writer_main, &b), "writer 2");

	for (uint32_t s = 0; s <= 10; s++)  /* the group's first record was committed */
		expect_record(&r, 1, s);
	ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);  /* the torn one is not visible */
	ck_assert(!ring_reader_arm(&r));                   /* nor does it wake the reader */
	ck_assert_uint_eq(ring_recover(&r, dead + 100000), 0); /* another pid: nothing */
	ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
	(void)notify_drain(r.data_efd);
	ck_assert_uint_eq(ring_recover(&r, dead), 1);
	ck_assert_uint_eq(notify_drain(r.data_efd), 1);    /* recovery wakes the reader */
	for (uint32_t s = 0; s < 10; s++)
		expect_record(&r, 2, s);
	ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
	ck_assert_int_eq(ring_release(&r, ring_cursor(&r)), 0);
	ck_assert(ring_empty(&r));
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.abandoned_records, 1);
	ck_assert_uint_eq(st.released_records, 21);
	ck_assert_uint_eq(ring_recover(&r, dead), 0);      /* idempotent */
	ring_close(&r);
}
END_TEST

static void
check_lock_repaired(int recover_first)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats before, after;
	struct crash_args c = { .r = &r, .writer = 1, .before = 5 };
	struct plain_writer_args b = { .r = &r, .writer = 2, .count = 20 };
	pid_t dead;

	ck_assert_int_eq(ring_create(&r, 16 << 10), 0);
	dead = crash_start(crash_holding_lock_main, &c, 'L');
	ring_stats(&r, &before);
	kill_and_reap(dead);
	/* It died holding the writers' lock; nothing of its last write is visible. */
	if (recover_first)
		ck_assert_uint_eq(ring_recover(&r, dead), 0);
	/* The next writer gets the lock (EOWNERDEAD, repaired) instead of blocking forever. */
	wait_exit_ok(spawn(plain_writer_main, &b), "writer after the dead lock holder");
	ck_assert_int_eq(ring_write(&r, "x", 1), 0);   /* and the lock is fine afterwards */
	ring_stats(&r, &after);
	/* The head moved by exactly the 21 new records: the dead writer's reservation never landed. */
	{
		uint64_t want = ring_record_size(1);    /* the 1-byte record */

		for (uint32_t s = 0; s < 20; s++)
			want += (RING_RECORD_HDR + 64 + s + RING_ALIGN - 1) & ~(uint64_t)(RING_ALIGN - 1);
		ck_assert_uint_eq(after.head - before.head, want);
		ck_assert_uint_eq(after.written_records - before.written_records, 21);
	}
	for (uint32_t s = 0; s < 5; s++)
		expect_record(&r, 1, s);
	for (uint32_t s = 0; s < 20; s++)
		expect_record(&r, 2, s);
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_uint_eq(rec.len, 1);
	ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
	ck_assert_uint_eq(ring_recover(&r, dead), 0);
	ck_assert_int_eq(ring_check(&r), 0);
	ring_close(&r);
}

START_TEST(test_writer_killed_holding_lock)
{
	check_lock_repaired(0);
}
END_TEST

START_TEST(test_writer_killed_holding_lock_recover_first)
{
	check_lock_repaired(1);
}
END_TEST

/*
 * A writer that took the reader's wake-up (cleared reader_waiting) and died
 * before writing the eventfd: later commits do not signal, since the flag is
 * clear, so the supervisor's ring_recover must wake the reader whatever it finds.
 */
START_TEST(test_writer_killed_before_signalling)
{
	struct ring r;
	struct ring_record rec;
	pid_t dead;

	ck_assert_int_eq(ring_create(&r, 16 << 10), 0);
	dead = spawn(plain_writer_main, &(struct plain_writer_args){ .r = &r, .writer = 1, .count = 0 });
	wait_exit_ok(dead, "writer");
	ck_assert(!ring_reader_arm(&r));                 /* the reader goes to sleep */
	poke32(r.hdr, HDR_OFF_READER_WAITING, 0);        /* the dead writer's exchange */
	ck_assert_int_eq(ring_write(&r, "late", 4), 0);  /* a live writer: no signal due */
	ck_assert_uint_eq(notify_drain(r.data_efd), 0);  /* (also proves the offset right) */
	ck_assert_uint_eq(ring_recover(&r, dead), 0);    /* nothing abandoned, but... */
	ck_assert_uint_eq(notify_drain(r.data_efd), 1);  /* ...the reader is woken */
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_uint_eq(rec.len, 4);
	ring_close(&r);
}
END_TEST

/* ---- reader killed before releasing --------------------------------------- */

struct dying_reader_args {
	struct ring *r;
	int fd;
	uint32_t peek, release;
};

static void
dying_reader_main(void *arg)
{
	struct dying_reader_args *a = arg;
	struct ring_record rec;
	uint64_t release_at = 0;
	char c = 'P';

	ring_rewind(a->r);
	for (uint32_t i = 0; i < a->peek; i++) {
		uint32_t w, s;

		if (ring_peek(a->r, &rec) != 0 || rec_verify(rec.data, rec.len, &w, &s) != 0 || s != i)
			child_fail("dying reader: record %u", i);
		if (i + 1 == a->release)
			release_at = rec.next;
	}
	if (release_at != 0 && ring_release(a->r, release_at) != 0)
		child_fail("dying reader: release");
	pipe_put(a->fd, &c, 1);
	for (;;)
		pause();
}

struct fresh_reader_args {
	int memfd;
	uint32_t first, last;
};

/* A restarted reader: attaches from the memfd alone, as after exec. */
static void
fresh_reader_main(void *arg)
{
	struct fresh_reader_args *a = arg;
	struct ring r;
	struct ring_record rec;
	int rc = ring_attach(&r, dup(a->memfd), -1, -1);

	if (rc != 0)
		child_fail("ring_attach: %s", strerror(-rc));
	for (uint32_t i = a->first; i < a->last; i++) {
		uint32_t w, s;

		if (ring_peek(&r, &rec) != 0 || rec_verify(rec.data, rec.len, &w, &s) != 0 || s != i)
			child_fail("fresh reader: record %u missing or wrong", i);
	}
	if (ring_peek(&r, &rec) != -EAGAIN)
		child_fail("fresh reader: extra record");
	if (ring_release(&r, ring_cursor(&r)) != 0)
		child_fail("fresh reader: release");
	ring_close(&r);
}

START_TEST(test_reader_killed_before_release)
{
	struct ring r;
	struct ring_stats st;
	struct dying_reader_args d = { .r = &r, .peek = 100, .release = 30 };
	struct fresh_reader_args f = { .first = 30, .last = 100 };
	uint8_t buf[512];
	char c = 0;
	int p[2];
	pid_t pid;

	ck_assert_int_eq(ring_create(&r, 64 << 10), 0);
	for (uint32_t s = 0; s < 100; s++)
		write_rec(&r, 7, s, size_for(7, s, TAG_SIZE) % 500 + TAG_SIZE, buf);
	ck_assert_int_eq(pipe(p), 0);
	d.fd = p[1];
	pid = spawn(dying_reader_main, &d);
	ck_assert_int_eq(pipe_get(p[0], &c, 1), 0);
	kill_and_reap(pid);
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.released_records, 30);

	/* A fresh process resumes at the first unreleased record: 30, not 100. */
	f.memfd = r.memfd;
	wait_exit_ok(spawn(fresh_reader_main, &f), "fresh reader");
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.released_records, 100);
	ck_assert(ring_empty(&r));
	close(p[0]);
	close(p[1]);
	ring_close(&r);
}
END_TEST

START_TEST(test_rewind_resends_unreleased)
{
	struct ring r;
	struct ring_record rec;
	uint8_t buf[256];
	uint64_t mid = 0;

	ck_assert_int_eq(ring_create(&r, 8192), 0);
	for (uint32_t s = 0; s < 10; s++)
		write_rec(&r, 3, s, 40 + s, buf);
	for (uint32_t s = 0; s < 10; s++) {
		expect_record(&r, 3, s);
		if (s == 3)
			mid = ring_cursor(&r);
	}
	ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
	ck_assert_int_eq(ring_release(&r, mid), 0);
	ck_assert_uint_eq(ring_tail(&r), mid);
	ring_rewind(&r);                 /* e.g. Kinesis failed: send again */
	ck_assert_uint_eq(ring_cursor(&r), mid);
	for (uint32_t s = 4; s < 10; s++)
		expect_record(&r, 3, s);
	/* Releases must land on record boundaries within what was peeked. */
	ck_assert_int_eq(ring_release(&r, mid - 16), -EINVAL);
	ck_assert_int_eq(ring_release(&r, ring_cursor(&r) + 16), -EINVAL);
	ck_assert_int_eq(ring_release(&r, mid + 16), -EINVAL);
	ck_assert_int_eq(ring_release(&r, mid + 1), -EINVAL);
	ck_assert_int_eq(ring_release(&r, ring_cursor(&r)), 0);
	ck_assert(ring_empty(&r));
	ring_close(&r);
}
END_TEST

/* ---- full ring ------------------------------------------------------------ */

/* Payload of the records that fill a 16 KiB ring exactly: 1024 bytes each with the header. */
#define FILL_LEN (1024 - RING_RECORD_HDR)

START_TEST(test_full_is_immediate_and_counted)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats st;
	uint8_t buf[FILL_LEN];
	struct iovec v[3];
	uint64_t t0;
	int n = 0;

	memset(buf, 'f', sizeof(buf));
	ck_assert_int_eq(ring_create(&r, 16384), 0);
	while (ring_write(&r, buf, sizeof(buf)) == 0)   /* header + payload = 1024 bytes each */
		n++;
	ck_assert_int_eq(n, 16);
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.rejected_records, 1);
	ck_assert_uint_eq(st.rejected_bytes, FILL_LEN);
	ck_assert_uint_eq(st.head - st.tail, 16384);
	ck_assert_int_eq(ring_write(&r, "", 0), -ENOSPC);   /* not even a bare header fits */

	/* A group: rejected as a whole, counted per record. */
	for (int i = 0; i < 3; i++)
		v[i] = (struct iovec){ .iov_base = buf, .iov_len = 10 };
	ck_assert_int_eq(ring_writev(&r, v, 3), -ENOSPC);
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.rejected_records, 1 + 1 + 3);
	ck_assert_uint_eq(st.rejected_bytes, FILL_LEN + 0 + 30);

	/* A bounded wait with nobody releasing: -ENOSPC after the timeout, counted once. */
	t0 = now_mono_ms();
	ck_assert_int_eq(ring_writev_wait(&r, v, 3, 50), -ENOSPC);
	ck_assert_uint_ge(now_mono_ms() - t0, 50);
	ck_assert_uint_lt(now_mono_ms() - t0, 10000);
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.rejected_records, 5 + 3);
	ck_assert_uint_eq(st.written_records, 16);

	/* Nothing was overwritten. */
	for (int i = 0; i < 16; i++) {
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_uint_eq(rec.len, FILL_LEN);
		ck_assert(memcmp(rec.data, buf, FILL_LEN) == 0);
	}
	ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
	ring_close(&r);
}
END_TEST

struct waiter_args {
	struct ring *r;
	int fd;
};

static void
waiting_writer_main(void *arg)
{
	struct waiter_args *a = arg;
	uint8_t buf[FILL_LEN];
	struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
	char c = 'W';
	int rc;

	memset(buf, 'w', sizeof(buf));
	if ((rc = ring_write(a->r, buf, sizeof(buf))) != -ENOSPC)
		child_fail("the ring should be full: %d", rc);
	pipe_put(a->fd, &c, 1);
	if ((rc = ring_writev_wait(a->r, &v, 1, patience_ms())) != 0)
		child_fail("ring_writev_wait: %s", strerror(-rc));
}

START_TEST(test_full_wait_then_success)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats st;
	struct waiter_args a = { .r = &r };
	uint8_t buf[FILL_LEN];
	char c = 0;
	int p[2];
	pid_t pid;

	memset(buf, 'f', sizeof(buf));
	ck_assert_int_eq(ring_create(&r, 16384), 0);
	while (ring_write(&r, buf, sizeof(buf)) == 0)
		;
	ck_assert_int_eq(pipe(p), 0);
	a.fd = p[1];
	pid = spawn(waiting_writer_main, &a);
	ck_assert_int_eq(pipe_get(p[0], &c, 1), 0);
	/* The writer is (about to be) waiting: release one record. */
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_int_eq(ring_release(&r, rec.next), 0);
	wait_exit_ok(pid, "waiting writer");
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.written_records, 17);
	ck_assert_uint_eq(st.rejected_records, 2);      /* the fill's last try, the child's probe */
	for (int i = 0; i < 15; i++)
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_uint_eq(rec.data[0], 'w');
	close(p[0]);
	close(p[1]);
	ring_close(&r);
}
END_TEST

struct cancel_args {
	struct ring *r;
	_Atomic int *cancel;
	int rc;
};

static void *
cancelled_writer_main(void *arg)
{
	struct cancel_args *a = arg;
	struct iovec v = { .iov_base = (void *)"late", .iov_len = 4 };

	/* An hour's wait: only the cancel flag can end it inside the test's timeout. */
	a->rc = ring_writev_wait_cancel(a->r, &v, 1, 3600 * 1000, a->cancel);
	return NULL;
}

START_TEST(test_full_wait_cancelled)
{
	struct ring r;
	struct ring_stats st;
	struct iovec v;
	uint8_t buf[FILL_LEN];
	_Atomic int cancel = 1;
	struct cancel_args a = { .r = &r, .cancel = &cancel };
	pthread_t t;
	uint64_t rejected;

	memset(buf, 'f', sizeof(buf));
	ck_assert_int_eq(ring_create(&r, 16384), 0);
	while (ring_write(&r, buf, sizeof(buf)) == 0)
		;
	ring_stats(&r, &st);
	rejected = st.rejected_records;
	/* Already cancelled: gives up at once. */
	v.iov_base = buf;
	v.iov_len = 16;
	ck_assert_int_eq(ring_writev_wait_cancel(&r, &v, 1, 3600 * 1000, &cancel), -ENOSPC);
	/* Cancelled while waiting. */
	atomic_store(&cancel, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, cancelled_writer_main, &a), 0);
	atomic_store(&cancel, 1);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(a.rc, -ENOSPC);
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.rejected_records, rejected + 2);   /* each give-up counted once */
	ring_close(&r);
}
END_TEST

/* ---- group writes ---------------------------------------------------------- */

START_TEST(test_group_all_or_nothing)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats st;
	uint8_t buf[8][600];
	struct iovec v[8];
	uint64_t head;

	ck_assert_int_eq(ring_create(&r, 8192), 0);
	for (int i = 0; i < 8; i++) {
		memset(buf[i], 'a' + i, sizeof(buf[i]));
		v[i] = (struct iovec){ .iov_base = buf[i], .iov_len = 500 + (size_t)i };
	}
	ck_assert_int_eq(ring_writev(&r, v, 0), -EINVAL);
	ck_assert_int_eq(ring_writev(&r, v, 8), 0);       /* 8 x 528 = 4224 bytes */
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_uint_eq(rec.len, 500 + i);
		ck_assert_uint_eq(rec.data[0], 'a' + i);
	}
	/* 3968 bytes free: a second group of 4224 is refused whole. */
	ring_stats(&r, &st);
	head = st.head;
	ck_assert_int_eq(ring_writev(&r, v, 8), -ENOSPC);
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.head, head);
	ck_assert_uint_eq(st.rejected_records, 8);
	ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
	/* Release; the next group wraps: a pad record, then the group, in order. */
	ck_assert_int_eq(ring_release(&r, ring_cursor(&r)), 0);
	ck_assert_int_eq(ring_writev(&r, v, 8), 0);
	ring_stats(&r, &st);
	ck_assert_uint_gt(st.head, st.capacity);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_uint_eq(rec.len, 500 + i);
		ck_assert(memcmp(rec.data, buf[i], rec.len) == 0);
		ck_assert_uint_eq(rec.pos % RING_ALIGN, 0);
		ck_assert_uint_le(rec.pos % st.capacity + RING_RECORD_HDR + rec.len, st.capacity);
	}
	ck_assert_int_eq(ring_release(&r, ring_cursor(&r)), 0);
	ck_assert(ring_empty(&r));

	/* A group that can never fit, and a single record over the limit. */
	for (int i = 0; i < 8; i++)
		v[i].iov_len = ring_max_record(&r);
	ck_assert_int_eq(ring_writev(&r, v, 8), -EMSGSIZE);
	ck_assert_int_eq(ring_write(&r, buf[0], ring_max_record(&r) + 1), -EMSGSIZE);
	ck_assert_uint_ge(ring_space_needed(v, 8), 8 * (uint64_t)ring_max_record(&r));
	ck_assert_uint_eq(ring_space_needed(v, 0), 0);
	ck_assert_int_eq(ring_write(&r, buf[0], ring_max_record(&r) > 600 ? 600 : 1), 0);
	ring_close(&r);
}
END_TEST

/* ---- corruption ------------------------------------------------------------ */

static void
poke32(void *base, size_t off, uint32_t v)
{
	memcpy((uint8_t *)base + off, &v, 4);
}

static void
poke64(void *base, size_t off, uint64_t v)
{
	memcpy((uint8_t *)base + off, &v, 8);
}

static uint64_t
peek64(const void *base, size_t off)
{
	uint64_t v;

	memcpy(&v, (const uint8_t *)base + off, 8);
	return v;
}

/* Returns what ring_attach says about the ring's memfd (and checks ring_check agrees). */
static int
attach_result(struct ring *r)
{
	struct ring a;
	int rc = ring_attach(&a, dup(r->memfd), -1, -1);

	ck_assert_int_eq(ring_check(r), rc == 0 ? 0 : -EPROTO);
	if (rc == 0)
		ring_close(&a);
	return rc;
}

START_TEST(test_corrupt_header)
{
	struct ring r;
	struct ring_stats st;
	uint8_t saved[256];
	struct {
		size_t off;
		int width;
		uint64_t value;
		const char *what;
	} cases[] = {
		{ HDR_OFF_MAGIC, 64, 0x1234, "magic" },
		{ HDR_OFF_VERSION, 32, RING_VERSION + 1, "version" },
		{ HDR_OFF_HEADER_SIZE, 32, 8192, "header size" },
		{ HDR_OFF_CAPACITY, 64, 1 << 20, "capacity larger than the mapping" },
		{ HDR_OFF_CAPACITY, 64, 4096, "capacity smaller than the mapping" },
		{ HDR_OFF_MAP_SIZE, 64, 1ull << 40, "map size" },
		{ HDR_OFF_MAX_RECORD, 32, 0, "max record 0" },
		{ HDR_OFF_MAX_RECORD, 32, 0xffffffffu, "max record huge" },
		{ HDR_OFF_HEAD, 64, 0, "head < tail" },
		{ HDR_OFF_HEAD, 64, 1 << 20, "head - tail > capacity" },
		{ HDR_OFF_HEAD, 64, 680, "head misaligned" },
		{ HDR_OFF_TAIL, 64, 232, "tail misaligned" },
	};

	memset(saved, 's', sizeof(saved));
	ck_assert_int_eq(ring_create(&r, 16384), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ring_write(&r, saved, 200), 0);
	ck_assert_int_eq(ring_release(&r, 0), 0);
	{
		struct ring_record rec;

		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_int_eq(ring_release(&r, rec.next), 0);
	}
	/* The documented offsets are the real ones. */
	ring_stats(&r, &st);
	ck_assert_uint_eq(peek64(r.hdr, HDR_OFF_MAGIC), RING_MAGIC);
	ck_assert_uint_eq(peek64(r.hdr, HDR_OFF_HEAD), st.head);
	ck_assert_uint_eq(peek64(r.hdr, HDR_OFF_TAIL), st.tail);
	ck_assert_uint_eq(peek64(r.hdr, HDR_OFF_CAPACITY), st.capacity);
	ck_assert_uint_gt(st.tail, 0);
	ck_assert_int_eq(attach_result(&r), 0);

	memcpy(saved, r.hdr, sizeof(saved));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].width == 64)
			poke64(r.hdr, cases[i].off, cases[i].value);
		else
			poke32(r.hdr, cases[i].off, (uint32_t)cases[i].value);
		ck_assert_msg(attach_result(&r) == -EPROTO, "not detected: %s", cases[i].what);
		memcpy(r.hdr, saved, sizeof(saved));
		ck_assert_int_eq(attach_result(&r), 0);
	}

	/* A memfd too short for a header, and one whose size no longer matches. */
	{
		struct ring a;
		int fd = memfd_create("short", 0);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(ftruncate(fd, 100), 0);
		ck_assert_int_eq(ring_attach(&a, fd, -1, -1), -EPROTO);
		ck_assert_int_eq(ftruncate(fd, 0), 0);
		ck_assert_int_eq(ring_attach(&a, fd, -1, -1), -EPROTO);
		close(fd);
	}
	ring_close(&r);
}
END_TEST

START_TEST(test_corrupt_record)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats st;
	uint8_t buf[300];
	struct {
		size_t off;
		uint32_t value;
		const char *what;
	} cases[] = {
		{ REC_OFF_LEN, 200, "length changed (check mismatch)" },
		{ REC_OFF_CHECK, 0, "check word" },
		{ REC_OFF_STATE, 0, "state EMPTY" },
		{ REC_OFF_STATE, 9, "state out of range" },
	};

	memset(buf, 'c', sizeof(buf));
	ck_assert_int_eq(ring_create(&r, 8192), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *h;
		uint64_t dropped;

		ck_assert_int_eq(ring_write(&r, buf, 100), 0);
		ck_assert_int_eq(ring_write(&r, buf, 100), 0);
		ring_stats(&r, &st);
		h = r.data + ring_cursor(&r) % st.capacity;
		poke32(h, cases[i].off, cases[i].value);
		ck_assert_msg(ring_peek(&r, &rec) == -EBADMSG, "not detected: %s", cases[i].what);
		ck_assert_msg(ring_reader_arm(&r), "arm must not sleep on: %s", cases[i].what);
		dropped = ring_skip_corrupt(&r);
		ck_assert_uint_eq(dropped, 2 * ring_record_size(100));
		ck_assert(ring_empty(&r));
		ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
		/* The ring carries on. */
		ck_assert_int_eq(ring_write(&r, buf, 50), 0);
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_uint_eq(rec.len, 50);
		ck_assert_int_eq(ring_release(&r, rec.next), 0);
	}

	/* A length that is self-consistent but too large, or runs past the head. */
	{
		uint8_t *h;
		uint32_t len;

		ck_assert_int_eq(ring_write(&r, buf, 100), 0);
		h = r.data + ring_cursor(&r) % r.capacity;
		len = ring_max_record(&r) + 1;
		poke32(h, REC_OFF_LEN, len);
		poke32(h, REC_OFF_CHECK, ~len);
		ck_assert_int_eq(ring_peek(&r, &rec), -EBADMSG);
		len = 200;
		poke32(h, REC_OFF_LEN, len);
		poke32(h, REC_OFF_CHECK, ~len);
		ck_assert_int_eq(ring_peek(&r, &rec), -EBADMSG);
		ck_assert_uint_eq(ring_skip_corrupt(&r), ring_record_size(100));
	}
	/* A pad record that does not reach the end of the buffer. */
	{
		uint8_t *h;

		ck_assert_int_eq(ring_write(&r, buf, 100), 0);
		h = r.data + ring_cursor(&r) % r.capacity;
		poke32(h, REC_OFF_STATE, 3);
		ck_assert_int_eq(ring_peek(&r, &rec), -EBADMSG);
		ck_assert_uint_eq(ring_skip_corrupt(&r), ring_record_size(100));
	}
	ring_stats(&r, &st);
	ck_assert_uint_ge(st.corrupt_detected, 7);
	ck_assert_int_eq(ring_check(&r), 0);
	ring_close(&r);
}
END_TEST

/* ---- a corrupt writer ---------------------------------------------------------- */

#define HDR_OFF_LOCK        40
#define HDR_OFF_COUNTERS_END 512        /* end of the counters' cache lines */
#define SCR_CAPACITY        65536u
#define SCR_RECORDS         20u
#define SCR_PEEKED          5u
#define SCR_STEPS           10000       /* reader calls allowed to get back to normal */

enum scribble {
	SCR_HEAD_BEYOND_CAPACITY, SCR_TAIL_BEYOND_HEAD, SCR_TAIL_CAP4_HEAD_CAP64, SCR_LEN_AFTER_PEEK,
	SCR_LEN_HUGE, SCR_CHECK_WRONG, SCR_RANDOM_HEADER, SCR_DIE_HOLDING_LOCK, SCR_HEAD_OVER_STALE_LAP,
	SCR_KINDS
};

static const char *const scribble_name[SCR_KINDS] = {
	"head beyond capacity", "tail beyond head", "tail = capacity - 4, head = capacity + 64",
	"record length rewritten after peek", "record length huge", "check field wrong",
	"random bytes over the header fields", "writer dying mid-scribble",
	"head moved half a ring on, over valid records of the previous lap",
};

/* A PROT_NONE page right after the mapping, so a read past it faults (if the address is free). */
static void
guard_after(const struct ring *r)
{
	void *want = (uint8_t *)r->hdr + r->map_len;

	(void)mmap(want, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
}

/* In the child: writes pattern p over the ring; `peeked` is the first record the reader peeked. */
static void
scribble(struct ring *r, enum scribble p, uint64_t peeked, uint64_t seed)
{
	uint8_t *h = (uint8_t *)r->hdr, *cur = r->data + ring_cursor(r) % r->capacity;
	uint64_t head = peek64(h, HDR_OFF_HEAD), tail = peek64(h, HDR_OFF_TAIL);

	switch (p) {
	case SCR_HEAD_BEYOND_CAPACITY:
		poke64(h, HDR_OFF_HEAD, tail + r->capacity + 4096);
		break;
	case SCR_TAIL_BEYOND_HEAD:
		poke64(h, HDR_OFF_TAIL, head + 64);
		break;
	case SCR_TAIL_CAP4_HEAD_CAP64:
		poke64(h, HDR_OFF_TAIL, r->capacity - 4);
		poke64(h, HDR_OFF_HEAD, r->capacity + 64);
		break;
	case SCR_LEN_AFTER_PEEK:
		/* Self-consistent (check matches) but wrong: a release walk would land mid-payload. */
		poke32(r->data + peeked % r->capacity, REC_OFF_LEN, 48);
		poke32(r->data + peeked % r->capacity, REC_OFF_CHECK, ~48u);
		break;
	case SCR_LEN_HUGE:
		poke32(cur, REC_OFF_LEN, 0x7ffffff0u);
		poke32(cur, REC_OFF_CHECK, ~0x7ffffff0u);
		break;
	case SCR_CHECK_WRONG:
		poke32(cur, REC_OFF_CHECK, 12345);
		break;
	case SCR_RANDOM_HEADER:
		/* Every field but the lock word (a process that writes the mutex can stop writers). */
		for (size_t off = 0; off < HDR_OFF_COUNTERS_END; off += 8) {
			if (off >= HDR_OFF_LOCK && off < HDR_OFF_HEAD)
				continue;
			seed = mix64(seed + off);
			poke64(h, off, seed);
		}
		break;
	case SCR_DIE_HOLDING_LOCK:
		/* As a writer would, then killed halfway through its scribble. */
		if (pthread_mutex_lock((pthread_mutex_t *)(void *)(h + HDR_OFF_LOCK)) != 0)
			_exit(3);
		poke64(h, HDR_OFF_HEAD, head * 7 + 3);
		raise(SIGKILL);
		break;
	case SCR_HEAD_OVER_STALE_LAP:
		/* Plausible (aligned, within a ring of the tail): only the records there can tell. */
		poke64(h, HDR_OFF_HEAD, head + r->capacity / 2);
		break;
	case SCR_KINDS:
		break;
	}
}

/* The reader as the dispatcher drives it, bounded. Returns the records delivered. */
static uint64_t
reader_drain(struct ring *r, int *steps)
{
	struct ring_record rec;
	uint64_t n = 0;

	for (*steps = 0; *steps < SCR_STEPS; (*steps)++) {
		int rc = ring_peek(r, &rec);

		if (rc == 0) {
			ck_assert_ptr_eq(rec.data, r->data + rec.pos % r->capacity + RING_RECORD_HDR);
			ck_assert_uint_le(rec.pos % r->capacity + RING_RECORD_HDR + rec.len, r->capacity);
			n++;
		} else if (rc == -EBADMSG)
			(void)ring_skip_corrupt(r);
		else {
			ck_assert_int_eq(rc, -EAGAIN);
			break;
		}
	}
	return n;
}

/* After any repair the ring carries records again, intact and in order. */
static void
ring_carries_on(struct ring *r, uint32_t writer)
{
	uint8_t buf[512];

	for (uint32_t s = 0; s < 10; s++) {
		rec_fill(buf, writer, s, 64 + s * 8);
		ck_assert_int_eq(ring_write(r, buf, 64 + s * 8), 0);
	}
	for (uint32_t s = 0; s < 10; s++)
		expect_record(r, writer, s);
	ck_assert_int_eq(ring_release(r, ring_cursor(r)), 0);
	ck_assert(ring_empty(r));
	ck_assert_int_eq(ring_check(r), 0);
}

/*
 * A child process scribbles on the ring (header fields, record lengths) while the
 * reader has records in flight. The supervisor's calls and the reader's survive it
 * within a bounded number of calls, every record written is either delivered or
 * counted as dropped, and writing and reading carry on.
 */
START_TEST(test_scribbler_child)
{
	for (int p = 0; p < SCR_KINDS; p++) {
		for (uint64_t seed = 1; seed <= (p == SCR_RANDOM_HEADER ? 4u : 1u); seed++) {
			struct ring r;
			struct ring_record rec, first = { 0 };
			struct ring_stats st;
			uint8_t buf[512] = { 0 };	/* the wrap-around writes send it as is */
			uint64_t delivered = 0;
			int steps, status;
			pid_t child;

			ck_assert_int_eq(ring_create(&r, SCR_CAPACITY), 0);
			guard_after(&r);
			/* Wrap once so positions are not small numbers. */
			for (uint32_t i = 0; i < 200; i++) {
				ck_assert_int_eq(ring_write(&r, buf, 400), 0);
				ck_assert_int_eq(ring_peek(&r, &rec), 0);
				ck_assert_int_eq(ring_release(&r, rec.next), 0);
			}
			for (uint32_t i = 0; i < SCR_RECORDS; i++) {
				rec_fill(buf, 7, i, 100 + i);
				ck_assert_int_eq(ring_write(&r, buf, 100 + i), 0);
			}
			for (uint32_t i = 0; i < SCR_PEEKED; i++) {
				ck_assert_int_eq(ring_peek(&r, &rec), 0);
				if (i == 1)
					first = rec;
				delivered++;
			}
			child = fork();
			ck_assert_int_ge(child, 0);
			if (child == 0) {
				scribble(&r, (enum scribble)p, first.pos, seed);
				_exit(0);
			}
			ck_assert_int_eq(waitpid(child, &status, 0), child);

			/* The supervisor after the child died: check, then recover; neither may crash. */
			if (p != SCR_LEN_AFTER_PEEK && p != SCR_LEN_HUGE && p != SCR_CHECK_WRONG &&
			    p != SCR_HEAD_OVER_STALE_LAP)
				ck_assert_msg(ring_check(&r) == -EPROTO, "ring_check missed: %s",
				    scribble_name[p]);
			ck_assert_uint_eq(ring_recover(&r, child), 0);

			/* The reader: bounded, never outside the data area. */
			delivered += reader_drain(&r, &steps);
			ck_assert_msg(steps < SCR_STEPS, "reader loops on: %s", scribble_name[p]);
			ck_assert_msg(ring_release(&r, ring_cursor(&r)) == 0, "release fails after: %s",
			    scribble_name[p]);
			ck_assert_msg(ring_release(&r, ring_cursor(&r)) == 0, "second release after: %s",
			    scribble_name[p]);

			ring_stats(&r, &st);
			ck_assert_msg(st.corrupt_detected > 0, "not detected: %s", scribble_name[p]);
			if (p != SCR_RANDOM_HEADER) {
				/* Every record: delivered, or counted as dropped. */
				ck_assert_msg(st.written_records == st.released_records + st.corrupt_records +
				    st.abandoned_records, "%s: written %" PRIu64 ", released %" PRIu64
				    ", dropped %" PRIu64, scribble_name[p], st.written_records,
				    st.released_records, st.corrupt_records);
				ck_assert_uint_eq(st.written_records, 200 + SCR_RECORDS);
				if (p == SCR_LEN_AFTER_PEEK)
					ck_assert_uint_eq(delivered, SCR_RECORDS);
				else
					ck_assert_msg(st.corrupt_records == SCR_RECORDS - delivered,
					    "%s: %" PRIu64 " delivered, %" PRIu64 " counted dropped",
					    scribble_name[p], delivered, st.corrupt_records);
			}
			ring_carries_on(&r, 8);
			ring_close(&r);
		}
	}
}
END_TEST

/*
 * The case with no reader running (the dispatcher died too): the supervisor
 * finds the ring inconsistent, resets it and counts what it held; a new reader
 * process then gets what is written next.
 */
START_TEST(test_scribbler_reader_dead)
{
	struct ring r;
	struct ring_stats st;
	uint8_t buf[512];
	int status;
	pid_t child, reader;

	ck_assert_int_eq(ring_create(&r, SCR_CAPACITY), 0);
	guard_after(&r);
	for (uint32_t i = 0; i < SCR_RECORDS; i++)
		ck_assert_int_eq(ring_write(&r, buf, 100), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		scribble(&r, SCR_TAIL_CAP4_HEAD_CAP64, 0, 0);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_int_eq(ring_check(&r), -EPROTO);
	ck_assert_uint_eq(ring_reset(&r), SCR_RECORDS);
	ck_assert_int_eq(ring_check(&r), 0);
	ck_assert_uint_eq(ring_recover(&r, child), 0);
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.corrupt_records, SCR_RECORDS);
	ck_assert_uint_eq(st.resets, 1);

	for (uint32_t s = 0; s < 10; s++) {
		rec_fill(buf, 9, s, 80);
		ck_assert_int_eq(ring_write(&r, buf, 80), 0);
	}
	reader = fork();
	ck_assert_int_ge(reader, 0);
	if (reader == 0) {
		struct ring_record rec;
		uint32_t w, sq;

		ring_rewind(&r);
		for (uint32_t s = 0; s < 10; s++)
			if (ring_peek(&r, &rec) != 0 || rec_verify(rec.data, rec.len, &w, &sq) != 0 || w != 9 ||
			    sq != s)
				_exit(1);
		_exit(ring_peek(&r, &rec) == -EAGAIN && ring_release(&r, ring_cursor(&r)) == 0 ? 0 : 2);
	}
	ck_assert_int_eq(waitpid(reader, &status, 0), reader);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert(ring_empty(&r));
	ring_close(&r);
}
END_TEST

/*
 * A head moved forward within a ring is plausible; what lies there are records of the
 * previous lap, valid in every other respect. Each header carries its own position, so
 * they are found stale and never delivered again.
 */
START_TEST(test_stale_lap_not_delivered)
{
	struct ring r;
	struct ring_record rec;
	struct ring_stats st;
	uint8_t buf[512 - RING_RECORD_HDR];
	uint64_t delivered = 0;
	int steps, status;
	pid_t child;

	ck_assert_int_eq(ring_create(&r, SCR_CAPACITY), 0);
	/* A lap and a half of 512-byte records: the second half of the ring holds the first lap's. */
	for (uint32_t i = 0; i < SCR_CAPACITY / 512 * 3 / 2; i++) {
		rec_fill(buf, 1, i, sizeof(buf));
		ck_assert_int_eq(ring_write(&r, buf, sizeof(buf)), 0);
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_int_eq(ring_release(&r, rec.next), 0);
	}
	for (uint32_t i = 0; i < 5; i++) {
		rec_fill(buf, 2, i, sizeof(buf));
		ck_assert_int_eq(ring_write(&r, buf, sizeof(buf)), 0);
	}
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		poke64(r.hdr, HDR_OFF_HEAD, peek64(r.hdr, HDR_OFF_HEAD) + 16 * 512);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_int_eq(ring_check(&r), 0);            /* plausible positions */
	for (steps = 0; steps < SCR_STEPS; steps++) {
		int rc = ring_peek(&r, &rec);
		uint32_t w, sq;

		if (rc == 0) {
			ck_assert_int_eq(rec_verify(rec.data, rec.len, &w, &sq), 0);
			ck_assert_msg(w == 2, "a record of the previous lap delivered again (writer %u seq %u)", w, sq);
			delivered++;
		} else if (rc == -EBADMSG)
			(void)ring_skip_corrupt(&r);
		else
			break;
	}
	ck_assert_uint_eq(delivered, 5);
	ck_assert_int_eq(ring_release(&r, ring_cursor(&r)), 0);
	ring_stats(&r, &st);
	ck_assert_uint_ge(st.corrupt_detected, 1);
	ck_assert_uint_eq(st.written_records, st.released_records + st.corrupt_records);
	ring_carries_on(&r, 3);
	ring_close(&r);
}
END_TEST

/* A scribbled mutex (the one field the scribbler above spares): the supervisor's calls still return. */
START_TEST(test_scribbled_lock_bounded)
{
	struct ring r;
	uint8_t junk[HDR_OFF_HEAD - HDR_OFF_LOCK];

	ck_assert_int_eq(ring_create(&r, SCR_CAPACITY), 0);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)mix64(i);
	memcpy((uint8_t *)r.hdr + HDR_OFF_LOCK, junk, sizeof(junk));
	ck_assert_uint_eq(ring_recover(&r, 12345), 0);      /* within the lock bound, then repaired */
	ring_carries_on(&r, 10);
	ring_close(&r);
}
END_TEST

/* ---- per-record metadata ------------------------------------------------------ */

/*
 * The writer's metadata comes back on peek, at the documented offsets; a span that
 * does not fit its record is stored as none; a span rewritten in shared memory after
 * the commit is dropped on peek, never handed out.
 */
START_TEST(test_metadata)
{
	struct ring r;
	struct ring_record rec;
	char ev[128] = "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"abc-123\"}}";
	struct iovec v[4];
	struct ring_meta m[4] = {
		{ 0, 0, 2, 0 },                         /* span filled in below */
		{ 50, 20, 7, 0 },                       /* past the end of its record */
		{ 0, RING_RID_MAX + 1, 7, 0 },          /* longer than any requestId */
		{ 0, 0, 8, 0 },                         /* no requestId */
	};
	uint64_t t0, t1;
	const uint8_t *h;

	ck_assert_int_eq(ring_create(&r, 8192), 0);
	m[0].rid_off = (uint32_t)(strstr(ev, "abc-123") - ev);
	m[0].rid_len = 7;
	for (int i = 0; i < 4; i++)
		v[i] = (struct iovec){ ev, i == 1 ? 60 : strlen(ev) };   /* [1]: 60 < 50 + 20 */
	t0 = now_mono_ms();
	ck_assert_int_eq(ring_writev_meta_wait(&r, v, m, 4, 100, NULL), 0);
	t1 = now_mono_ms();
	ck_assert_int_eq(ring_write(&r, ev, strlen(ev)), 0);

	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	h = rec.data - RING_RECORD_HDR;
	ck_assert_uint_eq(rec.meta.flags, RING_META_VALID | RING_META_ARRIVAL);
	ck_assert_uint_eq(rec.meta.type, 2);
	ck_assert_uint_eq(rec.meta.rid_len, 7);
	ck_assert(memcmp(rec.data + rec.meta.rid_off, "abc-123", 7) == 0);
	ck_assert_uint_ge(rec.arrival_ms, t0 - ring_created_ms(&r));
	ck_assert_uint_le(rec.arrival_ms, t1 - ring_created_ms(&r));
	/* The documented layout. */
	ck_assert_uint_eq(*(const uint32_t *)(const void *)(h + REC_OFF_RID_OFF), rec.meta.rid_off);
	ck_assert_uint_eq(*(const uint16_t *)(const void *)(h + REC_OFF_RID_LEN), 7);
	ck_assert_uint_eq(h[REC_OFF_TYPE], 2);
	ck_assert_uint_eq(h[REC_OFF_FLAGS], RING_META_VALID | RING_META_ARRIVAL);
	ck_assert_uint_eq(*(const uint32_t *)(const void *)(h + REC_OFF_ARRIVAL), rec.arrival_ms);

	for (int i = 1; i < 3; i++) {
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_uint_eq(rec.meta.flags, RING_META_ARRIVAL);      /* span refused: no metadata */
		ck_assert_uint_eq(rec.meta.rid_len, 0);
	}
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_uint_eq(rec.meta.flags, RING_META_VALID | RING_META_ARRIVAL);
	ck_assert_uint_eq(rec.meta.type, 8);
	ck_assert_uint_eq(rec.meta.rid_len, 0);
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_uint_eq(rec.meta.flags, 0);                           /* plain ring_write */
	ck_assert_int_eq(ring_release(&r, rec.next), 0);

	/* Rewritten after the commit (hostile shared memory): dropped on peek. */
	ck_assert_int_eq(ring_writev_meta_wait(&r, v, m, 1, 100, NULL), 0);
	poke32(r.data + ring_cursor(&r) % r.capacity, REC_OFF_RID_OFF, 0xfffffff0u);
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_uint_eq(rec.meta.flags & RING_META_VALID, 0);
	ck_assert_uint_eq(rec.meta.rid_off, 0);
	ck_assert_int_eq(ring_release(&r, rec.next), 0);
	ring_close(&r);
}
END_TEST

/* A PAD in the last RING_ALIGN bytes (less than a record header) fits and is skipped. */
START_TEST(test_pad_smaller_than_header)
{
	struct ring r;
	struct ring_record rec;
	uint8_t buf[64];
	uint32_t n = 0;

	memset(buf, 'p', sizeof(buf));
	ck_assert_int_eq(ring_create(&r, 4096), 0);
	ck_assert_uint_eq(ring_record_size(16) % RING_ALIGN, 0);
	/* Records of 48 bytes: 85 of them leave exactly 16 bytes at the end. */
	while (ring_cursor(&r) + ring_record_size(16) <= r.capacity - RING_ALIGN) {
		ck_assert_int_eq(ring_write(&r, buf, 16), 0);
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_int_eq(ring_release(&r, rec.next), 0);
		n++;
	}
	ck_assert_uint_eq(r.capacity - ring_cursor(&r), RING_ALIGN);
	for (int i = 0; i < 3; i++) {
		buf[0] = (uint8_t)i;
		ck_assert_int_eq(ring_write(&r, buf, 40), 0);
		ck_assert_int_eq(ring_peek(&r, &rec), 0);
		ck_assert_uint_eq(rec.len, 40);
		ck_assert_uint_eq(rec.data[0], (uint8_t)i);
		ck_assert_int_eq(ring_release(&r, rec.next), 0);
	}
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(ring_check(&r), 0);
	ring_close(&r);
}
END_TEST

/* ring_check and ring_stats on a busy ring: never a false alarm, never head < tail. */
/* Records peeked before a corruption stay unreleased (in flight) until released. */
START_TEST(test_skip_corrupt_keeps_peeked)
{
	struct ring r;
	struct ring_record a, b, rec;
	struct ring_stats st;
	uint8_t buf[100];
	uint8_t *h;

	memset(buf, 'k', sizeof(buf));
	ck_assert_int_eq(ring_create(&r, 8192), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ring_write(&r, buf, 16), 0);
	ck_assert_int_eq(ring_peek(&r, &a), 0);
	ck_assert_int_eq(ring_peek(&r, &b), 0);
	h = r.data + ring_cursor(&r) % r.capacity;
	poke32(h, REC_OFF_CHECK, 12345);
	ck_assert_int_eq(ring_peek(&r, &rec), -EBADMSG);
	ck_assert_uint_eq(ring_skip_corrupt(&r), ring_record_size(16));
	/* The two peeked records are still held: writers cannot reuse their space yet. */
	ck_assert_uint_eq(ring_tail(&r), a.pos);
	ck_assert(memcmp(a.data, buf, 16) == 0 && memcmp(b.data, buf, 16) == 0);
	ck_assert_int_eq(ring_release(&r, a.next), 0);
	ck_assert_int_eq(ring_release(&r, b.next), 0);
	/* Releasing up to the corrupted span releases it too. */
	ck_assert(ring_empty(&r));
	ring_stats(&r, &st);
	ck_assert_uint_eq(st.released_records, 2);
	ck_assert_int_eq(ring_write(&r, buf, 20), 0);
	ck_assert_int_eq(ring_peek(&r, &rec), 0);
	ck_assert_uint_eq(rec.len, 20);
	ck_assert_int_eq(ring_release(&r, rec.next), 0);
	ring_close(&r);
}
END_TEST

START_TEST(test_check_while_busy)
{
	struct ring r;
	struct reader_report rep;
	uint64_t n = scaled(2000000), checks = 0, false_alarms = 0;
	struct reader_args ra = { .r = &r, .expect = n, .release_every = 1 };
	struct writer_args wa = { .r = &r, .threads = 1, .count = n, .min_len = TAG_SIZE };
	pid_t reader, writer;
	int fd, status;

	ck_assert_int_eq(ring_create(&r, 64 << 10), 0);
	reader = reader_start(&ra, &fd);
	writer = spawn(writer_main, &wa);
	while (waitpid(writer, &status, WNOHANG) == 0) {
		for (int i = 0; i < 1000; i++, checks++) {
			struct ring_stats st;

			if (ring_check(&r) != 0)
				false_alarms++;
			ring_stats(&r, &st);
			if (st.head < st.tail)   /* "bytes in use" would underflow */
				false_alarms++;
		}
	}
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	reader_finish(reader, fd, &rep);
	ck_assert_msg(false_alarms == 0, "ring_check failed %" PRIu64 " times in %" PRIu64 " checks",
	    false_alarms, checks);
	ring_close(&r);
}
END_TEST

/* ---- eventfd coalescing ----------------------------------------------------- */

START_TEST(test_wakeups_coalesce)
{
	struct ring r;
	struct ring_record rec;

	ck_assert_int_eq(ring_create(&r, 1 << 20), 0);
	/* Reader awake (not armed): a thousand commits, not one signal. */
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(ring_write(&r, "abc", 3), 0);
	ck_assert_uint_eq(notify_drain(r.data_efd), 0);
	/* Records are waiting: arming says so instead of sleeping. */
	ck_assert(ring_reader_arm(&r));
	while (ring_peek(&r, &rec) == 0)
		;
	ck_assert_int_eq(ring_release(&r, ring_cursor(&r)), 0);
	/* Reader asleep: the first commit signals, the next 999 do not. */
	ck_assert(!ring_reader_arm(&r));
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(ring_write(&r, "abc", 3), 0);
	ck_assert_uint_eq(notify_drain(r.data_efd), 1);
	ck_assert_int_eq(ring_reader_wait(&r, 0), 1);   /* records pending: no sleep */
	ring_close(&r);
}
END_TEST

START_TEST(test_wakeups_across_processes)
{
	struct ring r;
	struct ring_stats st;
	struct reader_report rep;
	uint64_t n = scaled(500000);
	struct reader_args ra = { .r = &r, .expect = n, .single_writer = 1, .release_every = 64,
		.count_signals = 1 };
	struct writer_args wa = { .r = &r, .threads = 1, .count = n, .single_writer = 1 };
	pid_t reader;
	int fd;

	ck_assert_int_eq(ring_create(&r, 1 << 20), 0);
	reader = reader_start(&ra, &fd);
	wait_exit_ok(spawn(writer_main, &wa), "writer");
	reader_finish(reader, fd, &rep);
	ring_stats(&r, &st);
	ck_assert_uint_eq(rep.records, n);
	/* At most one signal per arming (no lost wake-up: the reader would have timed out). */
	ck_assert_uint_le(rep.signals, rep.arms);
	/* How much coalescing happens here depends on scheduling: report it, do not judge it. */
	fprintf(stderr, "wake-ups: %" PRIu64 " records, %" PRIu64 " reader sleeps, %" PRIu64
	    " eventfd signals\n", rep.records, rep.sleeps, rep.signals);
	ring_close(&r);
}
END_TEST

struct burst_args {
	struct ring *r;
	int cmd_fd, done_fd;
	uint32_t burst;
};

/* Writes a burst of records each time the parent asks, then says so. */
static void
burst_writer_main(void *arg)
{
	struct burst_args *a = arg;
	uint8_t buf[256];
	uint32_t seq = 0;
	char c;

	while (pipe_get(a->cmd_fd, &c, 1) == 0 && c == 'w') {
		for (uint32_t i = 0; i < a->burst; i++, seq++)
			write_rec(a->r, 5, seq, 16 + seq % 200, buf);
		pipe_put(a->done_fd, &c, 1);
	}
}

START_TEST(test_wakeups_coalesce_across_processes)
{
	struct ring r;
	struct ring_record rec;
	struct burst_args a = { .r = &r, .burst = 1000 };
	int cmd[2], done[2];
	uint32_t seq = 0;
	char c = 'w';
	pid_t pid;

	ck_assert_int_eq(ring_create(&r, 1 << 20), 0);
	ck_assert_int_eq(pipe(cmd), 0);
	ck_assert_int_eq(pipe(done), 0);
	a.cmd_fd = cmd[0];
	a.done_fd = done[1];
	pid = spawn(burst_writer_main, &a);
	for (int round = 0; round < 5; round++) {
		struct pollfd p = { .fd = r.data_efd, .events = POLLIN };

		/* Reader awake: a burst from another process costs no signal at all. */
		ck_assert_int_eq(write(cmd[1], &c, 1), 1);
		ck_assert_int_eq(pipe_get(done[0], &c, 1), 0);
		ck_assert_uint_eq(notify_drain(r.data_efd), 0);
		for (uint32_t i = 0; i < a.burst; i++)
			expect_record(&r, 5, seq++);
		ck_assert_int_eq(ring_release(&r, ring_cursor(&r)), 0);
		/* Reader asleep: the whole burst wakes it once. */
		ck_assert(!ring_reader_arm(&r));
		ck_assert_int_eq(write(cmd[1], &c, 1), 1);
		ck_assert_int_eq(poll(&p, 1, patience_ms()), 1);
		ck_assert_int_eq(pipe_get(done[0], &c, 1), 0);
		ck_assert_uint_eq(notify_drain(r.data_efd), 1);
		for (uint32_t i = 0; i < a.burst; i++)
			expect_record(&r, 5, seq++);
		ck_assert_int_eq(ring_peek(&r, &rec), -EAGAIN);
		ck_assert_int_eq(ring_release(&r, ring_cursor(&r)), 0);
	}
	c = 'q';
	ck_assert_int_eq(write(cmd[1], &c, 1), 1);
	wait_exit_ok(pid, "burst writer");
	close(cmd[0]);
	close(cmd[1]);
	close(done[0]);
	close(done[1]);
	ring_close(&r);
}
END_TEST

/* ---- suite ----------------------------------------------------------------- */

static Suite *
ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc;

	tc = tcase_create("transfer");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_one_writer_one_reader_millions);
	tcase_add_test(tc, test_four_writer_threads);
	tcase_add_test(tc, test_writer_processes_and_threads_groups);
	suite_add_tcase(s, tc);

	tc = tcase_create("crash");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_writers_killed_at_random);
	tcase_add_test(tc, test_writer_killed_after_reserve);
	tcase_add_test(tc, test_writer_killed_holding_lock);
	tcase_add_test(tc, test_writer_killed_holding_lock_recover_first);
	tcase_add_test(tc, test_writer_killed_before_signalling);
	tcase_add_test(tc, test_reader_killed_before_release);
	tcase_add_test(tc, test_rewind_resends_unreleased);
	suite_add_tcase(s, tc);

	tc = tcase_create("full");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_full_is_immediate_and_counted);
	tcase_add_test(tc, test_full_wait_then_success);
	tcase_add_test(tc, test_full_wait_cancelled);
	tcase_add_test(tc, test_group_all_or_nothing);
	suite_add_tcase(s, tc);

	tc = tcase_create("corruption");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_corrupt_header);
	tcase_add_test(tc, test_corrupt_record);
	tcase_add_test(tc, test_check_while_busy);
	tcase_add_test(tc, test_skip_corrupt_keeps_peeked);
	tcase_add_test(tc, test_scribbler_child);
	tcase_add_test(tc, test_scribbler_reader_dead);
	tcase_add_test(tc, test_scribbled_lock_bounded);
	tcase_add_test(tc, test_stale_lap_not_delivered);
	tcase_add_test(tc, test_metadata);
	tcase_add_test(tc, test_pad_smaller_than_header);
	suite_add_tcase(s, tc);

	tc = tcase_create("wakeups");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_wakeups_coalesce);
	tcase_add_test(tc, test_wakeups_coalesce_across_processes);
	tcase_add_test(tc, test_wakeups_across_processes);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	const char *v = getenv("KTE_UNDER_VALGRIND");
	SRunner *sr;
	int failed;

	under_valgrind = v != NULL && strcmp(v, "1") == 0;
	pattern_init();
	sr = srunner_create(ring_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
