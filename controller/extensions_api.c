#include "controller/extensions_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "notify.h"

int
ext_api_init(struct ext_api *api, const char *runtime_api)
{
	char host[256];
	const char *colon, *h = runtime_api;
	size_t hlen;
	unsigned long port;
	char *end;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&api->addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&api->addr;

	memset(api, 0, sizeof(*api));
	api->fd = -1;
	if (runtime_api == NULL || *runtime_api == '\0' || strlen(runtime_api) >= sizeof(api->host))
		return -EINVAL;
	snprintf(api->host, sizeof(api->host), "%s", runtime_api);

	if (*h == '[') {
		const char *rb = strchr(h, ']');

		if (rb == NULL || rb[1] != ':')
			return -EINVAL;
		h++;
		hlen = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		if ((colon = strrchr(h, ':')) == NULL)
			return -EINVAL;
		hlen = (size_t)(colon - h);
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || port == 0 || port > 65535 || errno != 0)
		return -EINVAL;

	/* Numeric addresses (what Lambda gives: 127.0.0.1:9001) need no resolver. */
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		api->addrlen = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		api->addrlen = sizeof(*in6);
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;

		if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
			return -EHOSTUNREACH;
		memcpy(&api->addr, res->ai_addr, res->ai_addrlen);
		api->addrlen = res->ai_addrlen;
		if (res->ai_family == AF_INET)
			in4->sin_port = htons((uint16_t)port);
		else
			in6->sin6_port = htons((uint16_t)port);
		freeaddrinfo(res);
	}
	return 0;
}

void
ext_api_close(struct ext_api *api)
{
	if (api->fd >= 0)
		close(api->fd);
	api->fd = -1;
	api->reused = false;
}

int
ext_api_fd(const struct ext_api *api)
{
	return api->fd;
}

static int
api_connect(struct ext_api *api)
{
	int one = 1;

	api->fd = socket(api->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (api->fd < 0)
		return -errno;
	while (connect(api->fd, (struct sockaddr *)&api->addr, api->addrlen) < 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		ext_api_close(api);
		return -e;
	}
	setsockopt(api->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	api->reused = false;
	return 0;
}

/* True when a kept-alive connection was closed by the server while idle. */
static bool
api_conn_dead(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

	return poll(&p, 1, 0) != 0;
}

static int
api_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Sends api->req on the kept-alive connection, or a new one. */
static int
api_send(struct ext_api *api)
{
	int rc;

	if (api->fd >= 0 && api->reused && api_conn_dead(api->fd))
		ext_api_close(api);
	for (int attempt = 0; attempt < 2; attempt++) {
		bool was_reused;

		if (api->fd < 0 && (rc = api_connect(api)) != 0)
			return rc;
		was_reused = api->reused;
		api->len = 0;
		api->resent = false;
		rc = api_write_all(api->fd, api->req, api->req_len);
		if (rc == 0)
			return 0;
		ext_api_close(api);
		if (!was_reused)
			return rc;
	}
	return -ECONNRESET;
}

static int
api_request(struct ext_api *api, const char *method, const char *path, const char *headers,
    const char *body, size_t bodylen)
{
	int n = http_format_request(api->req, sizeof(api->req), method, path, api->host, headers, body,
	    bodylen);

	if (n < 0)
		return n;
	api->req_len = (size_t)n;
	return api_send(api);
}

/*
 * One non-blocking read and parse. Returns 0 when the reply is complete, -EAGAIN,
 * or -errno (connection closed).
 */
static int
api_recv_step(struct ext_api *api, struct ext_reply *reply)
{
	struct http_response r;
	ssize_t n;
	bool eof = false;
	int rc;

	n = recv(api->fd, api->buf + api->len, sizeof(api->buf) - 1 - api->len, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return -EAGAIN;
		rc = -errno;
		goto dead;
	}
	if (n == 0)
		eof = true;
	api->len += (size_t)n;
	if (eof && api->len == 0) {
		rc = -ECONNRESET;
		goto dead;
	}
	rc = http_parse_response(api->buf, api->len, eof, &r);
	if (rc == -EAGAIN) {
		if (api->len >= sizeof(api->buf) - 1) {
			ext_api_close(api);
			return -EMSGSIZE;
		}
		return -EAGAIN;
	}
	if (rc != 0) {
		ext_api_close(api);
		return rc;
	}
	api->buf[r.body_off + r.body_len] = '\0';
	reply->status = r.status;
	reply->body = api->buf + r.body_off;
	reply->body_len = r.body_len;
	reply->error_type[0] = '\0';
	if (r.status != 200)
		ext_error_type(reply->body, reply->body_len, reply->error_type, sizeof(reply->error_type));
	if (r.ext_id[0] != '\0' && api->id[0] == '\0')
		snprintf(api->id, sizeof(api->id), "%s", r.ext_id);
	if (!r.keep_alive || r.total_len != api->len)
		ext_api_close(api);
	else
		api->reused = true;
	return 0;

dead:
	/*
	 * A kept-alive connection the server dropped before answering: the request
	 * never reached a handler, so resend it once on a fresh connection.
	 */
	if (api->reused && api->len == 0 && !api->resent) {
		api->resent = true;
		ext_api_close(api);
		if (api_connect(api) == 0 && api_write_all(api->fd, api->req, api->req_len) == 0)
			return -EAGAIN;
	}
	ext_api_close(api);
	return rc;
}

/* Waits for the complete reply to the request just sent, at most timeout_ms. */
static int
api_wait_reply(struct ext_api *api, struct ext_reply *reply, int timeout_ms)
{
	uint64_t deadline = now_mono_ms() + (uint64_t)timeout_ms;
	int rc;

	for (;;) {
		struct pollfd p = { .fd = api->fd, .events = POLLIN };
		uint64_t now = now_mono_ms();

		if (now >= deadline) {
			ext_api_close(api);
			return -ETIMEDOUT;
		}
		rc = poll(&p, 1, (int)(deadline - now));
		if (rc < 0 && errno != EINTR) {
			rc = -errno;
			ext_api_close(api);
			return rc;
		}
		if (rc <= 0)
			continue;
		rc = api_recv_step(api, reply);
		if (rc != -EAGAIN)
			return rc;
	}
}

int
ext_api_register(struct ext_api *api, const char *name, const char *events_json,
    struct ext_reply *reply)
{
	char headers[512], body[128];
	int n, rc;

	n = snprintf(headers, sizeof(headers), "Lambda-Extension-Name: %s\r\n"
	    "Content-Type: application/json\r\n", name);
	if (n < 0 || (size_t)n >= sizeof(headers))
		return -ENAMETOOLONG;
	n = snprintf(body, sizeof(body), "{\"events\":%s}", events_json);
	if (n < 0 || (size_t)n >= sizeof(body))
		return -EINVAL;
	api->id[0] = '\0';
	if ((rc = api_request(api, "POST", "/2020-01-01/extension/register", headers, body,
	    (size_t)n)) != 0)
		return rc;
	rc = api_wait_reply(api, reply, EXT_API_TIMEOUT_MS);
	if (rc == 0 && reply->status != 200)
		api->id[0] = '\0';
	return rc;
}

int
ext_api_subscribe(struct ext_api *api, const char *body, size_t len, struct ext_reply *reply)
{
	char headers[256];
	int rc;

	snprintf(headers, sizeof(headers), "Lambda-Extension-Identifier: %s\r\n"
	    "Content-Type: application/json\r\n", api->id);
	if ((rc = api_request(api, "PUT", "/2022-07-01/telemetry", headers, body, len)) != 0)
		return rc;
	return api_wait_reply(api, reply, EXT_API_TIMEOUT_MS);
}

int
ext_api_report_error(struct ext_api *api, const char *phase, const char *error_type,
    const char *message)
{
	char headers[512], path[64], body[1024], msg[700], type[160];
	struct ext_reply reply;
	int n, rc;

	if (json_escape(message, msg, sizeof(msg)) != 0)
		snprintf(msg, sizeof(msg), "(message too long)");
	if (json_escape(error_type, type, sizeof(type)) != 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "/2020-01-01/extension/%s/error", phase);
	n = snprintf(headers, sizeof(headers), "Lambda-Extension-Identifier: %s\r\n"
	    "Lambda-Extension-Function-Error-Type: %s\r\nContent-Type: application/json\r\n",
	    api->id, error_type);
	if (n < 0 || (size_t)n >= sizeof(headers))
		return -EINVAL;
	n = snprintf(body, sizeof(body), "{\"errorMessage\":\"%s\",\"errorType\":\"%s\",\"stackTrace\":[]}",
	    msg, type);
	if ((rc = api_request(api, "POST", path, headers, body, (size_t)n)) != 0)
		return rc;
	if ((rc = api_wait_reply(api, &reply, EXT_API_TIMEOUT_MS)) != 0)
		return rc;
	return reply.status == 202 ? 0 : -EPROTO;
}

int
ext_api_next_send(struct ext_api *api)
{
	char headers[256];

	snprintf(headers, sizeof(headers), "Lambda-Extension-Identifier: %s\r\n", api->id);
	return api_request(api, "GET", "/2020-01-01/extension/event/next", headers, NULL, 0);
}

int
ext_api_next_recv(struct ext_api *api, struct ext_reply *reply)
{
	if (api->fd < 0)
		return -ENOTCONN;
	return api_recv_step(api, reply);
}

int
ext_event_parse(const char *body, size_t len, struct ext_event *ev)
{
	struct json_tokener *tok;
	struct json_object *root, *v;
	const char *type;
	int rc = -EPROTO;

	memset(ev, 0, sizeof(*ev));
	if (len == 0 || len > INT32_MAX || (tok = json_tokener_new()) == NULL)
		return -EPROTO;
	root = json_tokener_parse_ex(tok, body, (int)len);
	if (root == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len)
		goto out;
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "eventType", &v) || !json_object_is_type(v, json_type_string))
		goto out;
	type = json_object_get_string(v);
	if (strcasecmp(type, "INVOKE") == 0)
		ev->type = EXT_EVENT_INVOKE;
	else if (strcasecmp(type, "SHUTDOWN") == 0)
		ev->type = EXT_EVENT_SHUTDOWN;
	else {
		rc = -ENOTSUP;
		goto out;
	}
	/* deadlineMs is an integer of epoch ms; accept a double too, as JSON does not tell. */
	if (!json_object_object_get_ex(root, "deadlineMs", &v) ||
	    !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		goto out;
	ev->deadline_ms = json_object_get_int64(v);
	if (ev->deadline_ms <= 0)
		goto out;
	if (json_object_object_get_ex(root, "requestId", &v) && json_object_is_type(v, json_type_string))
		snprintf(ev->request_id, sizeof(ev->request_id), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(root, "shutdownReason", &v) && json_object_is_type(v, json_type_string))
		snprintf(ev->reason, sizeof(ev->reason), "%s", json_object_get_string(v));
	rc = 0;
out:
	if (root != NULL)
		json_object_put(root);
	json_tokener_free(tok);
	return rc;
}

void
ext_error_type(const char *body, size_t len, char *out, size_t outlen)
{
	struct json_tokener *tok;
	struct json_object *root, *v;

	out[0] = '\0';
	if (len == 0 || len > INT32_MAX || (tok = json_tokener_new()) == NULL)
		return;
	root = json_tokener_parse_ex(tok, body, (int)len);
	if (root != NULL && json_object_is_type(root, json_type_object) &&
	    json_object_object_get_ex(root, "errorType", &v) && json_object_is_type(v, json_type_string))
		snprintf(out, outlen, "%s", json_object_get_string(v));
	if (root != NULL)
		json_object_put(root);
	json_tokener_free(tok);
}

int
json_escape(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t n;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			n = 2;
		} else if (c == '\n') {
			memcpy(esc, "\\n", 2);
			n = 2;
		} else if (c < 0x20) {
			n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
		} else {
			esc[0] = (char)c;
			n = 1;
		}
		if (o + n >= outlen)
			return -ENOSPC;
		memcpy(out + o, esc, n);
		o += n;
	}
	if (o >= outlen)
		return -ENOSPC;
	out[o] = '\0';
	return 0;
}
