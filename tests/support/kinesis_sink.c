#include "kinesis_sink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define SINK_MAX_CONN 32

struct sink {
	int fd;
	sink_handler h;
	void *ctx;
	pthread_t accept_thread;
	pthread_mutex_t lock;
	int conns[SINK_MAX_CONN];
	pthread_t threads[SINK_MAX_CONN];
	bool used[SINK_MAX_CONN];
	atomic_bool stopping;
	atomic_uint_fast64_t requests;
	atomic_uint seq;
};

struct conn_arg {
	struct sink *s;
	int slot;
	int fd;
};

int
sink_listen(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

char *
sink_putrecords_reply(unsigned n, const uint8_t *failed, const char *error_code)
{
	size_t cap = 64 + (size_t)n * 160, off = 0;
	char *b = malloc(cap);
	unsigned nf = 0;

	if (b == NULL)
		return NULL;
	for (unsigned i = 0; failed != NULL && i < n; i++)
		nf += failed[i] != 0;
	off += (size_t)snprintf(b + off, cap - off, "{\"FailedRecordCount\":%u,\"Records\":[", nf);
	for (unsigned i = 0; i < n; i++) {
		if (failed != NULL && failed[i])
			off += (size_t)snprintf(b + off, cap - off, "%s{\"ErrorCode\":\"%s\",\"ErrorMessage\":"
			    "\"Rate exceeded for shard shardId-000000000000\"}", i ? "," : "",
			    error_code ? error_code : "ProvisionedThroughputExceededException");
		else
			off += (size_t)snprintf(b + off, cap - off, "%s{\"SequenceNumber\":"
			    "\"4959%016u\",\"ShardId\":\"shardId-000000000000\"}", i ? "," : "", i);
	}
	snprintf(b + off, cap - off, "]}");
	return b;
}

static const char *
status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 413: return "Request Entity Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Finds header name (lowercase, with ':') in [h, end); copies its trimmed value into out. */
static void
header(const char *h, const char *end, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);

	out[0] = '\0';
	for (const char *p = h; p < end;) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl;

			while (v < eol && *v == ' ')
				v++;
			snprintf(out, outlen, "%.*s", (int)(eol - v), v);
			return;
		}
		p = eol + 2;
	}
}

static unsigned
count_records(const char *body, size_t len)
{
	unsigned n = 0;
	const char *p = body, *end = body + len;

	while ((p = memmem(p, (size_t)(end - p), "\"Data\":", 7)) != NULL) {
		n++;
		p += 7;
	}
	return n;
}

/* Serves requests on one connection until it closes. */
static void
serve_conn(struct sink *s, int fd)
{
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	char target[128], auth[1024], date[64], token[4096], host[256], ctype[128], clen[32];
	char method[16], path[1024];
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (buf != NULL && !atomic_load(&s->stopping)) {
		char *hdr_end, *body;
		size_t hlen, blen, total;
		struct sink_request req;
		struct sink_reply rep;
		char head[512];
		const char *rbody;
		char *def = NULL;
		int status, n;

		while ((hdr_end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
			ssize_t r;

			if (len == cap && (buf = realloc(buf, cap *= 2)) == NULL)
				return;
			r = recv(fd, buf + len, cap - len, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				goto out;
			len += (size_t)r;
		}
		hlen = (size_t)(hdr_end - buf) + 4;
		header(buf, hdr_end + 2, "content-length:", clen, sizeof(clen));
		blen = (size_t)strtoull(clen, NULL, 10);
		total = hlen + blen;
		while (len < total) {
			ssize_t r;

			if (total > cap) {
				while (cap < total)
					cap *= 2;
				if ((buf = realloc(buf, cap)) == NULL)
					return;
			}
			r = recv(fd, buf + len, cap - len, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				goto out;
			len += (size_t)r;
		}
		hdr_end = buf + hlen - 4;
		header(buf, hdr_end + 2, "x-amz-target:", target, sizeof(target));
		header(buf, hdr_end + 2, "authorization:", auth, sizeof(auth));
		header(buf, hdr_end + 2, "x-amz-date:", date, sizeof(date));
		header(buf, hdr_end + 2, "x-amz-security-token:", token, sizeof(token));
		header(buf, hdr_end + 2, "host:", host, sizeof(host));
		header(buf, hdr_end + 2, "content-type:", ctype, sizeof(ctype));
		body = buf + hlen;
		if (sscanf(buf, "%15s %1023s", method, path) != 2)
			method[0] = path[0] = '\0';
		req = (struct sink_request){ .seq = atomic_fetch_add(&s->seq, 1) + 1, .target = target,
		    .authorization = auth, .amz_date = date, .security_token = token, .host = host,
		    .content_type = ctype, .body = body, .body_len = blen,
		    .nrecords = count_records(body, blen), .method = method, .path = path };
		memset(&rep, 0, sizeof(rep));
		if (s->h != NULL)
			s->h(s->ctx, &req, &rep);
		atomic_fetch_add(&s->requests, 1);
		if (rep.delay_ms > 0)
			poll(NULL, 0, (int)rep.delay_ms);
		if (rep.drop) {
			free(rep.body_alloc);
			goto out;
		}
		status = rep.status ? rep.status : 200;
		rbody = rep.body_alloc ? rep.body_alloc : rep.body;
		if (rbody == NULL)
			rbody = status == 200 ? (def = sink_putrecords_reply(req.nrecords, NULL, NULL)) : "{}";
		n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: application/x-amz-json-1.1\r\n"
		    "x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n%s%s%sContent-Length: %zu\r\n\r\n",
		    status, status_text(status), rep.error_type ? "x-amzn-ErrorType: " : "",
		    rep.error_type ? rep.error_type : "", rep.error_type ? "\r\n" : "", strlen(rbody));
		if (write_all(fd, head, (size_t)n) < 0 || write_all(fd, rbody, strlen(rbody)) < 0) {
			free(def);
			free(rep.body_alloc);
			goto out;
		}
		free(def);
		free(rep.body_alloc);
		memmove(buf, buf + total, len - total);
		len -= total;
	}
out:
	free(buf);
}

static void *
conn_main(void *p)
{
	struct conn_arg *a = p;

	serve_conn(a->s, a->fd);
	pthread_mutex_lock(&a->s->lock);
	close(a->fd);
	a->s->conns[a->slot] = -1;
	pthread_mutex_unlock(&a->s->lock);
	free(a);
	return NULL;
}

static void *
accept_main(void *p)
{
	struct sink *s = p;

	while (!atomic_load(&s->stopping)) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC), slot = -1;
		struct conn_arg *a;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		pthread_mutex_lock(&s->lock);
		for (int i = 0; i < SINK_MAX_CONN && slot < 0; i++)
			if (s->conns[i] < 0) {
				/* Reap the thread that last used this slot. */
				if (s->used[i])
					pthread_join(s->threads[i], NULL);
				slot = i;
			}
		if (slot < 0 || (a = malloc(sizeof(*a))) == NULL) {
			pthread_mutex_unlock(&s->lock);
			close(fd);
			continue;
		}
		*a = (struct conn_arg){ s, slot, fd };
		s->conns[slot] = fd;
		s->used[slot] = pthread_create(&s->threads[slot], NULL, conn_main, a) == 0;
		if (!s->used[slot]) {
			s->conns[slot] = -1;
			close(fd);
			free(a);
		}
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

struct sink *
sink_start(sink_handler h, void *ctx, uint16_t *port)
{
	struct sink *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->h = h;
	s->ctx = ctx;
	pthread_mutex_init(&s->lock, NULL);
	for (int i = 0; i < SINK_MAX_CONN; i++)
		s->conns[i] = -1;
	if ((s->fd = sink_listen(port)) < 0 || pthread_create(&s->accept_thread, NULL, accept_main, s) != 0) {
		if (s->fd >= 0)
			close(s->fd);
		free(s);
		return NULL;
	}
	return s;
}

void
sink_stop(struct sink *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->stopping, true);
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->accept_thread, NULL);
	close(s->fd);
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < SINK_MAX_CONN; i++)
		if (s->conns[i] >= 0)
			shutdown(s->conns[i], SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < SINK_MAX_CONN; i++)
		if (s->used[i])
			pthread_join(s->threads[i], NULL);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

uint64_t
sink_requests(const struct sink *s)
{
	return atomic_load(&s->requests);
}

void
sink_serve(int fd, sink_handler h, void *ctx)
{
	struct sink s;

	memset(&s, 0, sizeof(s));
	s.fd = fd;
	s.h = h;
	s.ctx = ctx;
	pthread_mutex_init(&s.lock, NULL);
	for (int i = 0; i < SINK_MAX_CONN; i++)
		s.conns[i] = -1;
	accept_main(&s);
	_exit(0);
}
