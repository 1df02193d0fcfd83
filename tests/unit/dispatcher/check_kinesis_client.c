/*
 * The HTTP side of PutRecords against a scripted Kinesis (tests/support/kinesis_sink):
 * what goes on the wire (method, path, headers, the body byte for byte, a fresh
 * signature), what a reply yields (status, error type, body), one request at a time,
 * transport failures (dropped connection, refused, timeout), abort and reconnect, a
 * request frozen between signing and sending signed again, and the refusal to send
 * without credentials.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dispatcher/kinesis_client.h"
#include "kinesis_sink.h"

static const char body[] = "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"eA==\",\"PartitionKey\":\"k\"}]}";

/* What the sink saw of the last request, and how to answer the next one. */
static struct {
	pthread_mutex_t mu;
	unsigned n;
	char method[16], path[256], target[128], ctype[128], auth[512], date[32], token[128], host[128];
	char body[512];
	size_t body_len;
	struct sink_reply reply;
} seen = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void
note(void *ctx, const struct sink_request *req, struct sink_reply *rep)
{
	(void)ctx;
	pthread_mutex_lock(&seen.mu);
	seen.n++;
	snprintf(seen.method, sizeof(seen.method), "%s", req->method);
	snprintf(seen.path, sizeof(seen.path), "%s", req->path);
	snprintf(seen.target, sizeof(seen.target), "%s", req->target);
	snprintf(seen.ctype, sizeof(seen.ctype), "%s", req->content_type);
	snprintf(seen.auth, sizeof(seen.auth), "%s", req->authorization);
	snprintf(seen.date, sizeof(seen.date), "%s", req->amz_date);
	snprintf(seen.token, sizeof(seen.token), "%s", req->security_token);
	snprintf(seen.host, sizeof(seen.host), "%s", req->host);
	seen.body_len = req->body_len < sizeof(seen.body) ? req->body_len : sizeof(seen.body) - 1;
	memcpy(seen.body, req->body, seen.body_len);
	*rep = seen.reply;
	pthread_mutex_unlock(&seen.mu);
}

static struct kinesis_client *
client_for(uint16_t port, const char *path)
{
	struct kte_config cfg;

	setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
	setenv("AWS_SESSION_TOKEN", "session-token", 1);
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.region, sizeof(cfg.region), "us-west-2");
	snprintf(cfg.endpoint_url, sizeof(cfg.endpoint_url), "http://127.0.0.1:%u%s", port, path);
	return kinesis_client_new(&cfg);
}

/* Drives the request in flight to its end, at most ~10 s. Returns 1 when finished. */
static int
finish(struct kinesis_client *kc, struct kinesis_response *resp)
{
	int rc = 0;

	for (int i = 0; i < 200 && rc == 0; i++)
		rc = kinesis_client_wait(kc, NULL, 0, 50, resp);
	return rc;
}

START_TEST(test_request_on_the_wire)
{
	struct kinesis_response resp;
	struct kinesis_client *kc;
	struct sink *sink;
	uint16_t port;
	char want_host[64];

	memset(&seen.reply, 0, sizeof(seen.reply));
	ck_assert_ptr_nonnull(sink = sink_start(note, NULL, &port));
	ck_assert_ptr_nonnull(kc = client_for(port, "/"));
	ck_assert(!kinesis_client_busy(kc));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert(kinesis_client_busy(kc));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), -EBUSY);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert(!kinesis_client_busy(kc));
	ck_assert_int_eq(resp.transport_err, 0);
	ck_assert_int_eq(resp.http_status, 200);
	ck_assert_ptr_nonnull(strstr(resp.body, "\"FailedRecordCount\""));
	ck_assert_uint_gt(resp.wire_bytes, sizeof(body) - 1);
	ck_assert_str_eq(seen.method, "POST");
	ck_assert_str_eq(seen.path, "/");
	ck_assert_str_eq(seen.target, "Kinesis_20131202.PutRecords");
	ck_assert_str_eq(seen.ctype, "application/x-amz-json-1.1");
	snprintf(want_host, sizeof(want_host), "127.0.0.1:%u", port);
	ck_assert_str_eq(seen.host, want_host);
	ck_assert_str_eq(seen.token, "session-token");
	ck_assert_int_eq(strlen(seen.date), 16);        /* 20260101T000000Z */
	ck_assert_msg(strncmp(seen.auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/", 40) == 0, "%s", seen.auth);
	ck_assert_ptr_nonnull(strstr(seen.auth, "/us-west-2/kinesis/aws4_request, SignedHeaders="));
	ck_assert_ptr_nonnull(strstr(seen.auth, "x-amz-security-token"));
	ck_assert_ptr_null(strstr(seen.auth, "wJalrXUtnFEMI"));         /* the secret never travels */
	ck_assert_uint_eq(seen.body_len, sizeof(body) - 1);
	ck_assert_mem_eq(seen.body, body, sizeof(body) - 1);
	/* The same client sends again on the kept-alive connection, signed anew. */
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_eq(resp.http_status, 200);
	ck_assert_uint_eq(seen.n, 2);
	kinesis_client_free(kc);
	sink_stop(sink);
}
END_TEST

START_TEST(test_endpoint_path_sent)
{
	struct kinesis_response resp;
	struct kinesis_client *kc;
	struct sink *sink;
	uint16_t port;

	memset(&seen.reply, 0, sizeof(seen.reply));
	ck_assert_ptr_nonnull(sink = sink_start(note, NULL, &port));
	ck_assert_ptr_nonnull(kc = client_for(port, "/kinesis/prefix/"));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_eq(resp.http_status, 200);
	ck_assert_str_eq(seen.path, "/kinesis/prefix/");
	kinesis_client_free(kc);
	sink_stop(sink);
}
END_TEST

START_TEST(test_error_reply_surfaced)
{
	static const char err[] = "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream s not found\"}";
	struct kinesis_response resp;
	struct kinesis_client *kc;
	struct sink *sink;
	uint16_t port;

	memset(&seen.reply, 0, sizeof(seen.reply));
	seen.reply.status = 400;
	seen.reply.error_type = "ResourceNotFoundException:";
	seen.reply.body = err;
	ck_assert_ptr_nonnull(sink = sink_start(note, NULL, &port));
	ck_assert_ptr_nonnull(kc = client_for(port, "/"));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_eq(resp.transport_err, 0);
	ck_assert_int_eq(resp.http_status, 400);
	ck_assert_str_eq(resp.error_type, "ResourceNotFoundException:");
	ck_assert_uint_eq(resp.body_len, strlen(err));
	ck_assert_mem_eq(resp.body, err, strlen(err));
	kinesis_client_free(kc);
	sink_stop(sink);
}
END_TEST

START_TEST(test_transport_failures)
{
	struct kinesis_response resp;
	struct kinesis_client *kc;
	struct sink *sink;
	uint16_t port;
	int fd;

	/* The peer closes the connection without answering. */
	memset(&seen.reply, 0, sizeof(seen.reply));
	seen.reply.drop = true;
	ck_assert_ptr_nonnull(sink = sink_start(note, NULL, &port));
	ck_assert_ptr_nonnull(kc = client_for(port, "/"));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_lt(resp.transport_err, 0);
	ck_assert_ptr_nonnull(resp.transport_msg);
	/* Too slow for the request's timeout. */
	seen.reply.drop = false;
	seen.reply.delay_ms = 3000;
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 300), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_lt(resp.transport_err, 0);
	kinesis_client_free(kc);
	sink_stop(sink);
	/* Nobody listening: a port bound and closed at once. */
	ck_assert_int_ge(fd = sink_listen(&port), 0);
	close(fd);
	ck_assert_ptr_nonnull(kc = client_for(port, "/"));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 2000), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_lt(resp.transport_err, 0);
	kinesis_client_free(kc);
}
END_TEST

START_TEST(test_abort_and_reconnect)
{
	struct kinesis_response resp;
	struct kinesis_client *kc;
	struct sink *sink;
	uint16_t port;

	memset(&seen.reply, 0, sizeof(seen.reply));
	seen.reply.delay_ms = 2000;
	ck_assert_ptr_nonnull(sink = sink_start(note, NULL, &port));
	ck_assert_ptr_nonnull(kc = client_for(port, "/"));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert_int_eq(kinesis_client_wait(kc, NULL, 0, 100, &resp), 0);     /* still waiting */
	kinesis_client_abort(kc);
	ck_assert(!kinesis_client_busy(kc));
	pthread_mutex_lock(&seen.mu);
	seen.reply.delay_ms = 0;
	pthread_mutex_unlock(&seen.mu);
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_eq(resp.http_status, 200);
	kinesis_client_reconnect(kc);
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_eq(resp.http_status, 200);
	kinesis_client_free(kc);
	sink_stop(sink);
}
END_TEST

/*
 * Lambda may freeze the sandbox between kinesis_client_start (signed) and the first
 * write: the process simply stops. Not driving the request for longer than a signature
 * may wait is that freeze. What reaches Kinesis must be dated after it, sent once.
 */
START_TEST(test_frozen_before_sending_is_signed_again)
{
	struct timespec freeze = { 1, 700000000 };
	struct kinesis_response resp;
	struct kinesis_client *kc;
	struct sink *sink;
	uint16_t port;
	char thawed[32];
	time_t t;

	memset(&seen.reply, 0, sizeof(seen.reply));
	seen.n = 0;
	ck_assert_ptr_nonnull(sink = sink_start(note, NULL, &port));
	ck_assert_ptr_nonnull(kc = client_for(port, "/"));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	nanosleep(&freeze, NULL);
	t = time(NULL);
	strftime(thawed, sizeof(thawed), "%Y%m%dT%H%M%SZ", gmtime(&t));
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_eq(resp.transport_err, 0);
	ck_assert_int_eq(resp.http_status, 200);
	ck_assert_uint_eq(seen.n, 1);
	ck_assert_msg(strcmp(seen.date, thawed) >= 0, "sent with X-Amz-Date %s, signed before the thaw at %s",
	    seen.date, thawed);
	/* The next request, not held up, goes out as signed. */
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	ck_assert_int_eq(finish(kc, &resp), 1);
	ck_assert_int_eq(resp.http_status, 200);
	ck_assert_uint_eq(seen.n, 2);
	kinesis_client_free(kc);
	sink_stop(sink);
}
END_TEST

START_TEST(test_no_credentials_refused)
{
	struct kte_config cfg;
	struct kinesis_client *kc;

	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.region, sizeof(cfg.region), "us-west-2");
	snprintf(cfg.endpoint_url, sizeof(cfg.endpoint_url), "http://127.0.0.1:9/");
	ck_assert_ptr_nonnull(kc = kinesis_client_new(&cfg));
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 1000), -EINVAL);
	ck_assert(!kinesis_client_busy(kc));
	kinesis_client_free(kc);
}
END_TEST

static Suite *
kinesis_client_suite(void)
{
	Suite *s = suite_create("kinesis_client");
	TCase *tc = tcase_create("kinesis_client");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_request_on_the_wire);
	tcase_add_test(tc, test_endpoint_path_sent);
	tcase_add_test(tc, test_error_reply_surfaced);
	tcase_add_test(tc, test_transport_failures);
	tcase_add_test(tc, test_abort_and_reconnect);
	tcase_add_test(tc, test_frozen_before_sending_is_signed_again);
	tcase_add_test(tc, test_no_credentials_refused);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(kinesis_client_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
