/*
 * The cold start floor: the least a Lambda extension that ships telemetry must do before its first
 * event/next, and nothing else. Built statically (no loader, no libraries), it registers for INVOKE and
 * SHUTDOWN, opens a listening socket, subscribes it to the Telemetry API, and calls event/next; then it
 * answers every telemetry POST with 200 and calls next again after each INVOKE, until SHUTDOWN.
 * tests/bench/bench_cold_start.sh starts it and the extension alternately in the Lambda simulator and
 * reports the extension's exec -> first next as a difference to this program's.
 *
 * One process, one thread, poll(): the Runtime API connection (one request at a time, a new connection
 * each) and the telemetry connections the simulator opens. HTTP is parsed only as far as the simulator's
 * replies and POSTs need (Content-Length bodies).
 *
 *   floor_extension            (AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT, as Lambda sets it)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 16
#define BUF_BYTES (2 * 1024 * 1024)   /* a telemetry batch is at most 1 MiB (maxBytes) */

struct conn {
	int fd;
	size_t len;
	char *buf;
};

static struct sockaddr_in api_addr;
static char api_host[64];
static char ext_id[128];
static const char *ext_name;    /* Lambda wants the file name of the executable */

static void
die(const char *what)
{
	fprintf(stderr, "floor_extension: %s: %s\n", what, errno ? strerror(errno) : "failed");
	exit(1);
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The length of a complete HTTP message at the start of buf (headers + Content-Length body), or 0. */
static size_t
http_complete(const char *buf, size_t len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	const char *p;
	size_t head, body = 0;

	if (end == NULL)
		return 0;
	head = (size_t)(end - buf) + 4;
	for (p = buf; p < end; p++) {
		if ((p == buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0) {
			body = strtoul(p + 15, NULL, 10);
			break;
		}
	}
	return len - head >= body ? head + body : 0;
}

/* Copies the value of header name (without the colon) from the message head, or fails. */
static int
http_header(const char *msg, const char *name, char *out, size_t outlen)
{
	const char *end = strstr(msg, "\r\n\r\n"), *p;
	size_t nl = strlen(name), vl;

	for (p = msg; p != NULL && p < end; p = strstr(p, "\r\n")) {
		p += p == msg ? 0 : 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			p += strspn(p, " \t");
			vl = strcspn(p, "\r\n");
			if (vl >= outlen)
				return -1;
			memcpy(out, p, vl);
			out[vl] = '\0';
			return 0;
		}
	}
	return -1;
}

/* Sends one request to the Runtime API on a new connection; returns the connection. */
static int
api_send(const char *method, const char *path, const char *body)
{
	char req[2048];
	int fd, one = 1, n;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&api_addr, sizeof(api_addr)) != 0)
		die("connect to the Runtime API");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	n = snprintf(req, sizeof(req),
	    "%s %s HTTP/1.1\r\nHost: %s\r\n%s: %s\r\nContent-Length: %zu\r\n\r\n%s", method, path,
	    api_host, ext_id[0] ? "Lambda-Extension-Identifier" : "Lambda-Extension-Name",
	    ext_id[0] ? ext_id : ext_name, body ? strlen(body) : 0, body ? body : "");
	if (n < 0 || (size_t)n >= sizeof(req) || write_all(fd, req, (size_t)n) != 0)
		die("request to the Runtime API");
	return fd;
}

/* Reads the reply on fd into c (blocking); returns its HTTP status. */
static int
api_reply(int fd, struct conn *c)
{
	c->len = 0;
	while (http_complete(c->buf, c->len) == 0) {
		ssize_t r = read(fd, c->buf + c->len, BUF_BYTES - 1 - c->len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("reply from the Runtime API");
		c->len += (size_t)r;
		c->buf[c->len] = '\0';
	}
	return atoi(c->buf + 9);
}

/* Serves what arrived on a telemetry connection: 200 for every complete request. Fails on EOF/error. */
static int
serve(struct conn *c)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	ssize_t r = read(c->fd, c->buf + c->len, BUF_BYTES - 1 - c->len);
	size_t n;

	if (r <= 0)
		return r < 0 && errno == EINTR ? 0 : -1;
	c->len += (size_t)r;
	c->buf[c->len] = '\0';
	while ((n = http_complete(c->buf, c->len)) > 0) {
		if (write_all(c->fd, ok, sizeof(ok) - 1) != 0)
			return -1;
		memmove(c->buf, c->buf + n, c->len - n);
		c->len -= n;
		c->buf[c->len] = '\0';
	}
	return c->len < BUF_BYTES - 1 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
	struct conn conns[MAX_CONNS], reply = { .fd = -1 };
	struct sockaddr_in la = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t lalen = sizeof(la);
	char body[512], *colon;
	int lfd, nfd, i;

	(void)argc;
	ext_name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	signal(SIGPIPE, SIG_IGN);
	if (api == NULL || (colon = strrchr(api, ':')) == NULL || (size_t)(colon - api) >= sizeof(api_host)) {
		errno = EINVAL;
		die("AWS_LAMBDA_RUNTIME_API must be IPv4:PORT");
	}
	memcpy(api_host, api, (size_t)(colon - api));
	api_addr.sin_family = AF_INET;
	api_addr.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, api_host, &api_addr.sin_addr) != 1) {
		errno = EINVAL;
		die("AWS_LAMBDA_RUNTIME_API must be IPv4:PORT");
	}
	if ((reply.buf = malloc(BUF_BYTES)) == NULL)
		die("malloc");

	nfd = api_send("POST", "/2020-01-01/extension/register", "{\"events\":[\"INVOKE\",\"SHUTDOWN\"]}");
	if (api_reply(nfd, &reply) != 200 || http_header(reply.buf, "Lambda-Extension-Identifier", ext_id,
	    sizeof(ext_id)) != 0) {
		fprintf(stderr, "floor_extension: register refused: %.300s\n", reply.buf);
		exit(1);
	}
	close(nfd);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&la, sizeof(la)) != 0 || listen(lfd, 16) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&la, &lalen) != 0)
		die("telemetry listener");
	snprintf(body, sizeof(body), "{\"schemaVersion\":\"2025-01-29\",\"types\":[\"platform\",\"function\"],"
	    "\"buffering\":{\"maxItems\":1000,\"maxBytes\":262144,\"timeoutMs\":25},"
	    "\"destination\":{\"protocol\":\"HTTP\",\"URI\":\"http://sandbox.localdomain:%u\"}}",
	    ntohs(la.sin_port));
	nfd = api_send("PUT", "/2022-07-01/telemetry", body);
	if (api_reply(nfd, &reply) != 200)
		die("telemetry subscription");
	close(nfd);

	for (i = 0; i < MAX_CONNS; i++)
		conns[i] = (struct conn){ .fd = -1 };
	nfd = api_send("GET", "/2020-01-01/extension/event/next", NULL);
	reply.fd = nfd;
	reply.len = 0;
	for (;;) {
		struct pollfd p[MAX_CONNS + 2];
		int n = 0, k;

		p[n++] = (struct pollfd){ .fd = nfd, .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (i = 0; i < MAX_CONNS; i++)
			p[n++] = (struct pollfd){ .fd = conns[i].fd, .events = POLLIN };
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p[0].revents) {
			ssize_t r = read(nfd, reply.buf + reply.len, BUF_BYTES - 1 - reply.len);

			if (r <= 0)
				die("event/next");
			reply.len += (size_t)r;
			reply.buf[reply.len] = '\0';
			if (http_complete(reply.buf, reply.len) > 0) {
				if (atoi(reply.buf + 9) != 200)
					die("event/next refused");
				close(nfd);
				if (strstr(reply.buf, "\"SHUTDOWN\"") != NULL)
					return 0;
				nfd = api_send("GET", "/2020-01-01/extension/event/next", NULL);
				reply.len = 0;
			}
		}
		if (p[1].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			for (k = 0; fd >= 0 && k < MAX_CONNS && conns[k].fd >= 0; k++)
				;
			if (fd >= 0 && k < MAX_CONNS && (conns[k].buf = malloc(BUF_BYTES)) != NULL)
				conns[k] = (struct conn){ .fd = fd, .buf = conns[k].buf };
			else if (fd >= 0)
				close(fd);
		}
		for (i = 0; i < MAX_CONNS; i++) {
			if (conns[i].fd >= 0 && p[2 + i].revents && serve(&conns[i]) != 0) {
				close(conns[i].fd);
				free(conns[i].buf);
				conns[i] = (struct conn){ .fd = -1 };
			}
		}
	}
}
