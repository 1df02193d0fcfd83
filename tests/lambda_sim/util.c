/* lambda-sim: clocks, ids, percentiles, the stderr log. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double epoch_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

int cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, double mono_ms)
{
	struct timespec ts;

	if (mono_ms <= now_ms())
		return ETIMEDOUT;
	ts.tv_sec = (time_t)(mono_ms / 1000);
	ts.tv_nsec = (long)((mono_ms - (double)ts.tv_sec * 1000) * 1e6);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_cond_timedwait(cv, mu, &ts);
}

void iso_time(char *buf, size_t len, double epoch)
{
	time_t s = (time_t)(epoch / 1000);
	int ms = (int)(epoch - (double)s * 1000);
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms < 0 ? 0 : ms > 999 ? 999 : ms);
}

static void rand_bytes(unsigned char *b, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = getrandom(b + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			/* no entropy source: fall back to a weak generator, ids only need to be unique */
			for (; got < n; got++)
				b[got] = (unsigned char)random();
			return;
		}
		got += (size_t)r;
	}
}

void uuid_v4(char out[37])
{
	unsigned char b[16];

	rand_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
	         b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
}

void rand_hex(char *out, size_t nhex)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[64];
	size_t i;

	if (nhex > 128)
		nhex = 128;
	rand_bytes(b, (nhex + 1) / 2);
	for (i = 0; i < nhex; i++)
		out[i] = hex[(b[i / 2] >> ((i & 1) * 4)) & 0xf];
	out[nhex] = '\0';
}

void dlist_add(struct dlist *l, double v)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		double *nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return;
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double dlist_pct(const struct dlist *l, double pct)
{
	double *c, r;
	size_t rank;

	if (!l->n)
		return 0;
	c = malloc(l->n * sizeof(*c));
	if (!c)
		return 0;
	memcpy(c, l->v, l->n * sizeof(*c));
	qsort(c, l->n, sizeof(*c), cmp_double);
	rank = (size_t)ceil(pct / 100.0 * (double)l->n);
	if (rank < 1)
		rank = 1;
	if (rank > l->n)
		rank = l->n;
	r = c[rank - 1];
	free(c);
	return r;
}

double dlist_max(const struct dlist *l)
{
	double m = 0;
	size_t i;

	for (i = 0; i < l->n; i++)
		if (l->v[i] > m)
			m = l->v[i];
	return m;
}

void dlist_free(struct dlist *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

void sim_logf(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&g.out_mu);
	fputs("[lambda-sim] ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&g.out_mu);
}
