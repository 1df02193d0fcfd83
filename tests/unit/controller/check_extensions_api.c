/*
 * The Extensions API client: event and error parsing, the subscription body, and
 * real round trips against a scripted HTTP server on a loopback port.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "controller/extensions_api.h"
#include "controller/telemetry_subscribe.h"

START_TEST(event_invoke)
{
	struct ext_event ev;
	const char *b = "{\"eventType\":\"INVOKE\",\"deadlineMs\":1700000000123,\"requestId\":\"3da1f2dc-1\","
	    "\"invokedFunctionArn\":\"arn:aws:lambda:us-east-1:123456789012:function:x\","
	    "\"tracing\":{\"type\":\"X-Amzn-Trace-Id\",\"value\":\"Root=1\"}}";

	ck_assert_int_eq(ext_event_parse(b, strlen(b), &ev), 0);
	ck_assert_int_eq(ev.type, EXT_EVENT_INVOKE);
	ck_assert(ev.deadline_ms == 1700000000123ll);
	ck_assert_str_eq(ev.request_id, "3da1f2dc-1");
}
END_TEST

START_TEST(event_shutdown)
{
	struct ext_event ev;
	const char *b = "{\"eventType\":\"SHUTDOWN\",\"shutdownReason\":\"spindown\",\"deadlineMs\":42}";

	ck_assert_int_eq(ext_event_parse(b, strlen(b), &ev), 0);
	ck_assert_int_eq(ev.type, EXT_EVENT_SHUTDOWN);
	ck_assert(ev.deadline_ms == 42);
	ck_assert_str_eq(ev.reason, "spindown");
}
END_TEST

START_TEST(event_bad)
{
	static const char *bad[] = {
		"", "{", "[]", "null", "{\"eventType\":\"INVOKE\"}",
		"{\"eventType\":\"INVOKE\",\"deadlineMs\":\"123\"}",
		"{\"eventType\":\"INVOKE\",\"deadlineMs\":-5}",
		"{\"eventType\":7,\"deadlineMs\":5}",
		"{\"deadlineMs\":5}",
		"{\"eventType\":\"INVOKE\",\"deadlineMs\":5} trailing",
	};
	struct ext_event ev;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(ext_event_parse(bad[i], strlen(bad[i]), &ev) == -EPROTO, "case %zu", i);
	ck_assert_int_eq(ext_event_parse("{\"eventType\":\"RESTORE\",\"deadlineMs\":5}", 38, &ev), -ENOTSUP);
	/* Length is honoured: a valid prefix of a longer buffer. */
	ck_assert_int_eq(ext_event_parse("{\"eventType\":\"SHUTDOWN\",\"deadlineMs\":5}XXXX", 39, &ev), 0);
}
END_TEST

START_TEST(error_type)
{
	char out[64];
	const char *b = "{\"errorMessage\":\"no\",\"errorType\":\"Extension.InvalidEventType\"}";

	ext_error_type(b, strlen(b), out, sizeof(out));
	ck_assert_str_eq(out, "Extension.InvalidEventType");
	ext_error_type("not json", 8, out, sizeof(out));
	ck_assert_str_eq(out, "");
	ext_error_type("{\"errorType\":1}", 15, out, sizeof(out));
	ck_assert_str_eq(out, "");
	ext_error_type("", 0, out, sizeof(out));
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(escape)
{
	char out[64];

	ck_assert_int_eq(json_escape("a\"b\\c\nd\x01", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "a\\\"b\\\\c\\nd\\u0001");
	ck_assert_int_eq(json_escape("abcdef", out, 6), -ENOSPC);
	ck_assert_int_eq(json_escape("abcde", out, 6), 0);
	ck_assert_int_eq(json_escape("", out, 1), 0);
}
END_TEST

static const char *
cfg_env(const char *name, void *ctx)
{
	const char *const *kv = ctx;

	for (; kv[0] != NULL; kv += 2)
		if (strcmp(kv[0], name) == 0)
			return kv[1];
	return NULL;
}

START_TEST(subscribe_body)
{
	static const char *env[] = { "KTE_STREAM_NAME", "s", "AWS_REGION", "us-east-1",
		"KTE_LISTENER_PORT", "4567", "KTE_TELEMETRY_TYPES", "platform,extension",
		"KTE_BUFFER_MAX_ITEMS", "2000", "KTE_BUFFER_TIMEOUT_MS", "25", NULL };
	struct kte_config cfg;
	char err[256], body[512];
	int n;

	ck_assert_int_eq(config_load_from(&cfg, cfg_env, env, err, sizeof(err)), 0);
	n = telemetry_subscribe_body(&cfg, body, sizeof(body));
	ck_assert_int_gt(n, 0);
	ck_assert_str_eq(body, "{\"schemaVersion\":\"2025-01-29\",\"types\":[\"platform\",\"extension\"],"
	    "\"buffering\":{\"maxItems\":2000,\"maxBytes\":262144,\"timeoutMs\":25},"
	    "\"destination\":{\"protocol\":\"HTTP\",\"URI\":\"http://sandbox.localdomain:4567\"}}");
	ck_assert_int_eq(telemetry_subscribe_body(&cfg, body, 40), -ENOSPC);
	snprintf(cfg.listener_host, sizeof(cfg.listener_host), "evil\"host");
	ck_assert_int_eq(telemetry_subscribe_body(&cfg, body, sizeof(body)), -EINVAL);
	cfg.listener_host[0] = '\0';
	ck_assert_int_eq(telemetry_subscribe_body(&cfg, body, sizeof(body)), -EINVAL);
}
END_TEST

START_TEST(init_addresses)
{
	struct ext_api api;

	ck_assert_int_eq(ext_api_init(&api, "127.0.0.1:9001"), 0);
	ck_assert_int_eq(ext_api_init(&api, "[::1]:9001"), 0);
	ck_assert_int_eq(ext_api_init(&api, "localhost:9001"), 0);
	ck_assert_int_eq(ext_api_init(&api, ""), -EINVAL);
	ck_assert_int_eq(ext_api_init(&api, "127.0.0.1"), -EINVAL);
	ck_assert_int_eq(ext_api_init(&api, "127.0.0.1:"), -EINVAL);
	ck_assert_int_eq(ext_api_init(&api, "127.0.0.1:70000"), -EINVAL);
	ck_assert_int_eq(ext_api_init(&api, "127.0.0.1:9x"), -EINVAL);
	ck_assert_int_eq(ext_api_init(&api, ":9001"), -EINVAL);
	ck_assert_int_eq(ext_api_init(&api, "no-such-host.invalid:9001"), -EHOSTUNREACH);
}
END_TEST

/* A scripted server: answers the n-th request with replies[n]; closes when asked. */
struct script {
	int lfd;
	unsigned short port;
	const char *replies[8];
	bool close_after[8];
	char requests[8][2048];
	int served;
	int connections;
};

static void *
server(void *arg)
{
	struct script *s = arg;
	int fd = -1;

	for (int i = 0; s->replies[i] != NULL; i++) {
		char buf[2048];
		size_t len = 0;
		char *hdr_end;

		if (fd < 0) {
			fd = accept(s->lfd, NULL, NULL);
			if (fd < 0)
				return NULL;
			s->connections++;
		}
		/* Read one request: headers, then Content-Length bytes. */
		for (;;) {
			ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

			if (n <= 0) {
				close(fd);
				fd = -1;
				i--;
				goto next;
			}
			len += (size_t)n;
			buf[len] = '\0';
			if ((hdr_end = strstr(buf, "\r\n\r\n")) != NULL) {
				const char *cl = strcasestr(buf, "Content-Length:");
				size_t want = cl != NULL ? (size_t)atoi(cl + 15) : 0;

				if (len >= (size_t)(hdr_end + 4 - buf) + want)
					break;
			}
		}
		snprintf(s->requests[i], sizeof(s->requests[i]), "%s", buf);
		if (write(fd, s->replies[i], strlen(s->replies[i])) < 0)
			return NULL;
		s->served++;
		if (s->close_after[i]) {
			close(fd);
			fd = -1;
		}
next:
		;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void
script_start(struct script *s, pthread_t *t)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);

	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(s->lfd, 0);
	ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(s->lfd, 4), 0);
	ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
	s->port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(t, NULL, server, s), 0);
}

static int
next_wait(struct ext_api *api, struct ext_reply *reply)
{
	int rc;

	do {
		struct pollfd p = { .fd = ext_api_fd(api), .events = POLLIN };

		if (poll(&p, 1, 5000) <= 0)
			return -ETIMEDOUT;
		rc = ext_api_next_recv(api, reply);
	} while (rc == -EAGAIN);
	return rc;
}

START_TEST(round_trips_keep_alive_and_reconnect)
{
	struct script s = { 0 };
	struct ext_api api;
	struct ext_reply reply;
	struct ext_event ev;
	pthread_t t;
	char hostport[64];

	s.replies[0] = "HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: id-123\r\nContent-Length: 2\r\n\r\n{}";
	s.replies[1] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";
	/* Chunked event, then the server drops the kept-alive connection. */
	s.replies[2] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "10\r\n{\"eventType\":\"IN\r\n1c\r\nVOKE\",\"deadlineMs\":99,\"x\":1}\r\n0\r\n\r\n";
	s.close_after[2] = true;
	s.replies[3] = "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"
	    "{\"eventType\":\"SHUTDOWN\",\"deadlineMs\":7,\"x\":\"abcd\"}";
	script_start(&s, &t);
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", s.port);
	ck_assert_int_eq(ext_api_init(&api, hostport), 0);

	ck_assert_int_eq(ext_api_register(&api, "my-ext", "[\"INVOKE\",\"SHUTDOWN\"]", &reply), 0);
	ck_assert_int_eq(reply.status, 200);
	ck_assert_str_eq(api.id, "id-123");
	ck_assert(strstr(s.requests[0], "POST /2020-01-01/extension/register HTTP/1.1\r\n") == s.requests[0]);
	ck_assert_ptr_nonnull(strstr(s.requests[0], "\r\nLambda-Extension-Name: my-ext\r\n"));
	ck_assert_ptr_nonnull(strstr(s.requests[0], "\r\n\r\n{\"events\":[\"INVOKE\",\"SHUTDOWN\"]}"));

	ck_assert_int_eq(ext_api_subscribe(&api, "{\"a\":1}", 7, &reply), 0);
	ck_assert_int_eq(reply.status, 200);
	ck_assert(strstr(s.requests[1], "PUT /2022-07-01/telemetry HTTP/1.1\r\n") == s.requests[1]);
	ck_assert_ptr_nonnull(strstr(s.requests[1], "\r\nLambda-Extension-Identifier: id-123\r\n"));

	ck_assert_int_eq(ext_api_next_send(&api), 0);
	ck_assert_int_eq(next_wait(&api, &reply), 0);
	ck_assert_int_eq(ext_event_parse(reply.body, reply.body_len, &ev), 0);
	ck_assert_int_eq(ev.type, EXT_EVENT_INVOKE);
	ck_assert(ev.deadline_ms == 99);
	ck_assert(strstr(s.requests[2], "GET /2020-01-01/extension/event/next HTTP/1.1\r\n") == s.requests[2]);

	/* The server closed the connection: the client notices and reconnects. */
	ck_assert_int_eq(ext_api_next_send(&api), 0);
	ck_assert_int_eq(next_wait(&api, &reply), 0);
	ck_assert_int_eq(ext_event_parse(reply.body, reply.body_len, &ev), 0);
	ck_assert_int_eq(ev.type, EXT_EVENT_SHUTDOWN);
	pthread_join(t, NULL);
	ck_assert_int_eq(s.connections, 2);
	ck_assert_int_eq(s.served, 4);
	ext_api_close(&api);
	close(s.lfd);
}
END_TEST

START_TEST(register_refused_and_errors)
{
	struct script s = { 0 };
	struct ext_api api;
	struct ext_reply reply;
	pthread_t t;
	char hostport[64];

	s.replies[0] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 62\r\n\r\n"
	    "{\"errorMessage\":\"no\",\"errorType\":\"Extension.InvalidEventType\"}";
	s.replies[1] = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
	s.replies[2] = "HTTP/1.1 500 Internal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	s.close_after[2] = true;
	script_start(&s, &t);
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", s.port);
	ck_assert_int_eq(ext_api_init(&api, hostport), 0);
	ck_assert_int_eq(ext_api_register(&api, "x", "[\"INVOKE\",\"SHUTDOWN\"]", &reply), 0);
	ck_assert_int_eq(reply.status, 403);
	ck_assert_str_eq(reply.error_type, "Extension.InvalidEventType");
	ck_assert_str_eq(api.id, "");
	snprintf(api.id, sizeof(api.id), "id-1");
	ck_assert_int_eq(ext_api_report_error(&api, "init", "Extension.ConfigInvalid", "bad \"value\""), 0);
	ck_assert(strstr(s.requests[1], "POST /2020-01-01/extension/init/error HTTP/1.1\r\n") == s.requests[1]);
	ck_assert_ptr_nonnull(strstr(s.requests[1], "\r\nLambda-Extension-Function-Error-Type: "
	    "Extension.ConfigInvalid\r\n"));
	ck_assert_ptr_nonnull(strstr(s.requests[1], "\"errorMessage\":\"bad \\\"value\\\"\""));
	/* A non-202 answer is an error. */
	ck_assert_int_eq(ext_api_report_error(&api, "exit", "Extension.X", "m"), -EPROTO);
	pthread_join(t, NULL);
	ext_api_close(&api);
	close(s.lfd);
}
END_TEST

START_TEST(connection_refused)
{
	struct ext_api api;
	struct ext_reply reply;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	char hostport[64];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* A port that was just free and is not listening. */
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", ntohs(a.sin_port));
	ck_assert_int_eq(ext_api_init(&api, hostport), 0);
	ck_assert_int_eq(ext_api_register(&api, "x", "[\"SHUTDOWN\"]", &reply), -ECONNREFUSED);
	close(fd);
}
END_TEST

static Suite *
api_suite(void)
{
	Suite *s = suite_create("controller_api");
	TCase *tp = tcase_create("parse");
	TCase *tn = tcase_create("network");

	tcase_add_test(tp, event_invoke);
	tcase_add_test(tp, event_shutdown);
	tcase_add_test(tp, event_bad);
	tcase_add_test(tp, error_type);
	tcase_add_test(tp, escape);
	tcase_add_test(tp, subscribe_body);
	tcase_add_test(tp, init_addresses);
	tcase_add_test(tn, round_trips_keep_alive_and_reconnect);
	tcase_add_test(tn, register_refused_and_errors);
	tcase_add_test(tn, connection_refused);
	suite_add_tcase(s, tp);
	suite_add_tcase(s, tn);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(api_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
