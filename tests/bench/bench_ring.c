/*
 * Ring throughput across two processes: a writer process (1 or 4 threads) and a
 * reader process that peeks every record, reads all its bytes and releases in
 * batches, over the default 8 MiB ring. Each figure is the median of RUNS runs;
 * time runs from releasing the writers until the reader has seen the last record.
 *
 *   bench_ring [runs]    env BENCH_RING_SCALE=0.1 shortens every run,
 *                        BENCH_RING_ONLY=size,threads,group runs one line
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "notify.h"
#include "ring.h"

#define RING_BYTES (8u << 20)
#define MAX_RUNS   9

struct bench {
	uint32_t size;              /* payload bytes per record */
	uint32_t threads;           /* writer threads in the writer process */
	uint32_t group;             /* records per ring_writev call */
	uint64_t per_thread;        /* records per thread */
};

struct writer_ctx {
	struct ring *r;
	const struct bench *b;
	int go_fd;
};

static void
die(const char *what, int err)
{
	fprintf(stderr, "bench_ring: %s: %s\n", what, strerror(err));
	_exit(1);
}

static void *
writer_thread(void *arg)
{
	struct writer_ctx *w = arg;
	const struct bench *b = w->b;
	struct iovec v[64];
	uint8_t *buf = malloc(b->size + 8);
	char c;

	if (buf == NULL)
		die("malloc", ENOMEM);
	memset(buf, 'b', b->size + 8);
	for (uint32_t i = 0; i < b->group; i++)
		v[i] = (struct iovec){ .iov_base = buf, .iov_len = b->size };
	if (read(w->go_fd, &c, 1) != 1)
		die("go", errno);
	for (uint64_t n = 0; n < b->per_thread; n += b->group) {
		uint64_t k = b->per_thread - n < b->group ? b->per_thread - n : b->group;
		int rc;

		memcpy(buf, &n, sizeof(n));    /* the record changes, as real ones do */
		if (k == 1)
			rc = ring_write(w->r, buf, b->size);
		else
			rc = ring_writev(w->r, v, k);
		if (rc == -ENOSPC)
			rc = ring_writev_wait(w->r, v, k, 10000);
		if (rc != 0)
			die("ring_writev", -rc);
	}
	free(buf);
	return NULL;
}

static void
writer_main(struct ring *r, const struct bench *b, int go_fd)
{
	struct writer_ctx w = { r, b, go_fd };
	pthread_t tid[16];

	for (uint32_t i = 0; i < b->threads; i++)
		if (pthread_create(&tid[i], NULL, writer_thread, &w) != 0)
			die("pthread_create", EAGAIN);
	for (uint32_t i = 0; i < b->threads; i++)
		pthread_join(tid[i], NULL);
}

static uint64_t
read_all(const uint8_t *p, uint32_t len)
{
	uint64_t x = 0, w;
	uint32_t i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		x ^= w;
	}
	for (; i < len; i++)
		x ^= p[i];
	return x;
}

static void
reader_main(struct ring *r, uint64_t total)
{
	struct ring_record rec;
	uint64_t seen = 0, sum = 0, unreleased = 0;

	while (seen < total) {
		int rc = ring_peek(r, &rec);

		if (rc == 0) {
			/* Read every byte, as the dispatcher will (it base64-encodes them). */
			sum += read_all(rec.data, rec.len);
			seen++;
			if (++unreleased == 256) {
				if (ring_release(r, rec.next) != 0)
					die("ring_release", EINVAL);
				unreleased = 0;
			}
			continue;
		}
		if (rc != -EAGAIN)
			die("ring_peek", -rc);
		if (unreleased != 0) {
			if (ring_release(r, ring_cursor(r)) != 0)
				die("ring_release", EINVAL);
			unreleased = 0;
		}
		if (ring_reader_wait(r, 10000) == 0)
			die("reader stalled", ETIMEDOUT);
	}
	if (ring_release(r, ring_cursor(r)) != 0)
		die("ring_release", EINVAL);
	if (sum == 1)   /* keep the reads */
		fputc('\n', stderr);
}

/* One run; returns seconds, or a negative value on failure. */
static double
run_once(const struct bench *b)
{
	struct ring r;
	struct ring_stats st;
	uint64_t total = (uint64_t)b->threads * b->per_thread, t0, t1;
	int go[2], status, rc;
	pid_t reader, writer;
	char gos[16];

	if ((rc = ring_create(&r, RING_BYTES)) != 0)
		die("ring_create", -rc);
	if (pipe(go) != 0)
		die("pipe", errno);
	reader = fork();
	if (reader == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		reader_main(&r, total);
		_exit(0);
	}
	writer = fork();
	if (writer == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		writer_main(&r, b, go[0]);
		_exit(0);
	}
	memset(gos, 'g', sizeof(gos));
	t0 = now_mono_us();
	if (write(go[1], gos, b->threads) != (ssize_t)b->threads)
		die("go", errno);
	if (waitpid(reader, &status, 0) != reader || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	t1 = now_mono_us();
	if (waitpid(writer, &status, 0) != writer || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	ring_stats(&r, &st);
	if (st.written_records != total || st.released_records != total || st.head != st.tail)
		return -1;
	close(go[0]);
	close(go[1]);
	ring_close(&r);
	return (double)(t1 - t0) / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	static const uint32_t sizes[] = { 64, 512, 4096 };
	static const uint32_t threads[] = { 1, 4 };
	static const uint32_t groups[] = { 1, 16 };
	const char *sc = getenv("BENCH_RING_SCALE"), *only = getenv("BENCH_RING_ONLY");
	double scale = sc != NULL ? atof(sc) : 1.0;
	int runs = argc > 1 ? atoi(argv[1]) : 5;

	if (runs < 1 || runs > MAX_RUNS)
		runs = 5;
	if (scale <= 0)
		scale = 1.0;
	printf("ring across processes: writer process -> reader process, %u MiB ring, median of %d runs\n",
	    RING_BYTES >> 20, runs);
	printf("%8s %8s %6s %12s %14s %10s %12s\n", "record", "threads", "group", "records",
	    "records/s", "MB/s", "ns/record");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++)
			for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
				/* About 1 GB or 8 M records per run, whichever comes first. */
				uint64_t total = (uint64_t)(scale * (sizes[s] <= 64 ? 8e6 :
				    1e9 / sizes[s]));
				struct bench b = { sizes[s], threads[t], groups[g], total / threads[t] };
				double secs[MAX_RUNS], med, rps;

				char name[32];

				snprintf(name, sizeof(name), "%u,%u,%u", b.size, b.threads, b.group);
				if (only != NULL && strcmp(only, name) != 0)
					continue;
				if (b.per_thread < b.group)
					b.per_thread = b.group;
				for (int i = 0; i < runs; i++) {
					secs[i] = run_once(&b);
					if (secs[i] < 0) {
						fprintf(stderr, "bench_ring: run failed\n");
						return 1;
					}
				}
				qsort(secs, (size_t)runs, sizeof(double), cmp_double);
				med = secs[runs / 2];
				rps = (double)(b.per_thread * b.threads) / med;
				printf("%8u %8u %6u %12" PRIu64 " %14.0f %10.0f %12.1f\n", b.size, b.threads,
				    b.group, b.per_thread * b.threads, rps, rps * b.size / 1e6, 1e9 / rps);
				fflush(stdout);
			}
	return 0;
}
