/*
 * Credentials: the environment provider, the container provider's reply parsing, token,
 * URI rules and refresh decisions, and fetches from a real local HTTP server (civetweb,
 * the project's HTTP server) playing the container credentials endpoint.
 */
#include <check.h>
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dispatcher/credentials.h"
#include "dispatcher/kinesis_client.h"
#include "kinesis_sink.h"

static void
clear_env(void)
{
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
iso(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- environment ---- */

START_TEST(test_env_provider)
{
	struct credentials_provider *p;
	struct sigv4_credentials c;

	clear_env();
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secretenv", 1);
	setenv("AWS_SESSION_TOKEN", "", 1);     /* empty = unset */
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds", 1);
	p = credentials_provider_new(NULL, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(credentials_source(p), CREDENTIALS_ENV);   /* env comes first, as in the SDKs */
	ck_assert_int_eq(credentials_get(p, now_ms(), &c), 0);
	ck_assert_str_eq(c.access_key_id, "AKIDENV");
	ck_assert_str_eq(c.secret_access_key, "secretenv");
	ck_assert_str_eq(c.session_token, "");
	/* Rejected env credentials cannot be refreshed: they stay, nothing is fetched. */
	credentials_invalidate(p, now_ms());
	ck_assert_int_eq(credentials_get(p, now_ms(), &c), 0);
	ck_assert_uint_eq(credentials_fetches(p), 0);
	credentials_provider_free(p);

	setenv("AWS_SESSION_TOKEN", "tok", 1);
	p = credentials_provider_new(NULL, 0);
	ck_assert_int_eq(credentials_get(p, now_ms(), &c), 0);
	ck_assert_str_eq(c.session_token, "tok");
	credentials_provider_free(p);
}
END_TEST

START_TEST(test_no_source)
{
	char err[256];

	clear_env();
	setenv("AWS_ACCESS_KEY_ID", "AKID", 1);        /* a key id without a secret is no source */
	errno = 0;
	ck_assert_ptr_null(credentials_provider_new(err, sizeof(err)));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "AWS_CONTAINER_CREDENTIALS_FULL_URI"));
	clear_env();
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://203.0.113.9/creds", 1);
	ck_assert_ptr_null(credentials_provider_new(err, sizeof(err)));
	ck_assert_int_eq(errno, EPERM);
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "file:///etc/passwd", 1);
	ck_assert_ptr_null(credentials_provider_new(err, sizeof(err)));
	ck_assert_int_eq(errno, EINVAL);
	clear_env();
	setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x", 1);
	{
		struct credentials_provider *p = credentials_provider_new(err, sizeof(err));

		ck_assert_ptr_nonnull(p);
		ck_assert_int_eq(credentials_source(p), CREDENTIALS_CONTAINER);
		credentials_provider_free(p);
	}
}
END_TEST

/* ---- parsing ---- */

static int
parse(const char *body, struct sigv4_credentials *c, int64_t *exp)
{
	return credentials_parse_reply(body, strlen(body), c, exp);
}

START_TEST(test_parse_reply)
{
	struct sigv4_credentials c;
	int64_t exp = 0;

	ck_assert_int_eq(parse("{\"AccessKeyId\":\"ASIA1\",\"SecretAccessKey\":\"s1\",\"Token\":\"t1\","
	    "\"Expiration\":\"2026-12-04T18:00:00Z\",\"AccountId\":\"123\"}", &c, &exp), 0);
	ck_assert_str_eq(c.access_key_id, "ASIA1");
	ck_assert_str_eq(c.secret_access_key, "s1");
	ck_assert_str_eq(c.session_token, "t1");
	ck_assert_int_eq(exp, 1796407200000LL);
	/* Token is optional (long-term keys); whitespace around the object is fine. */
	ck_assert_int_eq(parse(" {\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\","
	    "\"Expiration\":\"2026-12-04T18:00:00.5+01:00\"}\n", &c, &exp), 0);
	ck_assert_str_eq(c.session_token, "");
	ck_assert_int_eq(exp, 1796407200000LL - 3600000 + 500);
}
END_TEST

START_TEST(test_parse_reply_bad)
{
	static const char *const bad[] = {
		"",
		"not json",
		"[1,2]",
		"\"AccessKeyId\"",
		"{\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-12-04T18:00:00Z\"}",        /* no key id */
		"{\"AccessKeyId\":\"A\",\"Expiration\":\"2026-12-04T18:00:00Z\"}",            /* no secret */
		"{\"AccessKeyId\":\"\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-12-04T18:00:00Z\"}",
		"{\"AccessKeyId\":1,\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-12-04T18:00:00Z\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\"}",                           /* no Expiration */
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"tomorrow\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-13-04T18:00:00Z\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-12-04T18:00:00\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":1796407200}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":5,\"Expiration\":\"2026-12-04T18:00:00Z\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-12-04T18:00:00Z\"} {}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-12-04T18:00:00Z\"",
		NULL,
	};
	struct sigv4_credentials c;
	int64_t exp;

	for (int i = 0; bad[i] != NULL; i++) {
		int rc = parse(bad[i], &c, &exp);

		ck_assert_msg(rc == -EINVAL, "case %d: %d", i, rc);
		ck_assert_str_eq(c.access_key_id, "");
		ck_assert_str_eq(c.secret_access_key, "");
	}
}
END_TEST

START_TEST(test_parse_reply_oversized)
{
	struct sigv4_credentials c;
	size_t n = CREDENTIALS_MAX_REPLY + 1;
	char *big = malloc(n + 1), *longkey;
	int64_t exp;

	memset(big, ' ', n);
	big[n] = '\0';
	big[0] = '{';
	big[n - 1] = '}';
	ck_assert_int_eq(credentials_parse_reply(big, n, &c, &exp), -E2BIG);
	free(big);
	/* A value longer than its slot. */
	longkey = malloc(1024);
	memset(longkey, 'K', 300);
	snprintf(longkey + 300, 724, "\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-12-04T18:00:00Z\"}");
	{
		char *body;

		ck_assert_int_gt(asprintf(&body, "{\"AccessKeyId\":\"%s", longkey), 0);
		ck_assert_int_eq(parse(body, &c, &exp), -ENAMETOOLONG);
		free(body);
	}
	free(longkey);
}
END_TEST

START_TEST(test_parse_time)
{
	int64_t t;

	ck_assert_int_eq(credentials_parse_time("1970-01-01T00:00:00Z", &t), 0);
	ck_assert_int_eq(t, 0);
	ck_assert_int_eq(credentials_parse_time("1970-01-01T00:00:01.250Z", &t), 0);
	ck_assert_int_eq(t, 1250);
	ck_assert_int_eq(credentials_parse_time("1970-01-01T01:00:00+01:00", &t), 0);
	ck_assert_int_eq(t, 0);
	ck_assert_int_eq(credentials_parse_time("1970-01-01T00:00:00-0130", &t), 0);
	ck_assert_int_eq(t, 5400000);
	ck_assert_int_eq(credentials_parse_time("1970-01-01T00:00:00", &t), -EINVAL);
	ck_assert_int_eq(credentials_parse_time("1970-01-01T00:00:00Zjunk", &t), -EINVAL);
	ck_assert_int_eq(credentials_parse_time("1970-01-01T25:00:00Z", &t), -EINVAL);
	ck_assert_int_eq(credentials_parse_time("1970-01-01T00:00:00.Z", &t), -EINVAL);
	ck_assert_int_eq(credentials_parse_time("", &t), -EINVAL);
}
END_TEST

/* ---- decisions ---- */

START_TEST(test_refresh_timing)
{
	const int64_t h = 3600 * 1000;

	/* Hours of validity: 5 minutes before Expiration. */
	ck_assert_int_eq(credentials_refresh_at(0, 6 * h), 6 * h - CREDENTIALS_ADVANCE_MS);
	/* A short lifetime: halfway, so the keys are renewed while still valid. */
	ck_assert_int_eq(credentials_refresh_at(1000, 5000), 3000);
	ck_assert_int_eq(credentials_refresh_at(1000, 1000 + 10 * 60 * 1000), 1000 + 5 * 60 * 1000);
	/* Already expired: at once. */
	ck_assert_int_eq(credentials_refresh_at(9000, 5000), 9000);
	/* Failed fetches back off, capped. */
	ck_assert_int_eq(credentials_retry_delay(0), 0);
	ck_assert_int_eq(credentials_retry_delay(1), CREDENTIALS_RETRY_BASE_MS);
	ck_assert_int_eq(credentials_retry_delay(2), 2 * CREDENTIALS_RETRY_BASE_MS);
	ck_assert_int_eq(credentials_retry_delay(3), 4 * CREDENTIALS_RETRY_BASE_MS);
	ck_assert_int_eq(credentials_retry_delay(40), CREDENTIALS_RETRY_MAX_MS);
}
END_TEST

START_TEST(test_uri_rules)
{
	ck_assert_int_eq(credentials_uri_allowed("http://127.0.0.1:9001/2021-04-23/credentials"), 0);
	ck_assert_int_eq(credentials_uri_allowed("http://127.1.2.3/x"), 0);
	ck_assert_int_eq(credentials_uri_allowed("http://localhost:8080/x"), 0);
	ck_assert_int_eq(credentials_uri_allowed("http://[::1]:8080/x"), 0);
	ck_assert_int_eq(credentials_uri_allowed("http://169.254.170.2/v2/credentials"), 0);
	ck_assert_int_eq(credentials_uri_allowed("http://169.254.170.23/v1/credentials"), 0);
	ck_assert_int_eq(credentials_uri_allowed("http://[fd00:ec2::23]/v1/credentials"), 0);
	ck_assert_int_eq(credentials_uri_allowed("https://creds.example.com/x"), 0);
	ck_assert_int_eq(credentials_uri_allowed("http://creds.example.com/x"), -EPERM);
	ck_assert_int_eq(credentials_uri_allowed("http://10.0.0.1/x"), -EPERM);
	ck_assert_int_eq(credentials_uri_allowed("http://169.254.169.254/x"), -EPERM);
	ck_assert_int_eq(credentials_uri_allowed("http://127.0.0.1.evil.example/x"), -EPERM);
	ck_assert_int_eq(credentials_uri_allowed("http://user@127.0.0.1/x"), -EINVAL);
	ck_assert_int_eq(credentials_uri_allowed("ftp://127.0.0.1/x"), -EINVAL);
	ck_assert_int_eq(credentials_uri_allowed("http:///x"), -EINVAL);
}
END_TEST

START_TEST(test_token_sources)
{
	char tmpl[] = "/tmp/kte-tokenXXXXXX", tok[64];
	int fd;

	clear_env();
	ck_assert_int_eq(credentials_auth_token(tok, sizeof(tok)), 0);
	ck_assert_str_eq(tok, "");
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "from-env", 1);
	ck_assert_int_eq(credentials_auth_token(tok, sizeof(tok)), 0);
	ck_assert_str_eq(tok, "from-env");
	/* The file wins, its trailing newline trimmed. */
	fd = mkstemp(tmpl);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "from-file\n", 10), 10);
	close(fd);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tmpl, 1);
	ck_assert_int_eq(credentials_auth_token(tok, sizeof(tok)), 0);
	ck_assert_str_eq(tok, "from-file");
	/* A token that would split the header is refused. */
	fd = open(tmpl, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, "a\r\nX-Evil: 1", 12), 12);
	close(fd);
	ck_assert_int_eq(credentials_auth_token(tok, sizeof(tok)), -EINVAL);
	/* Too long for the buffer. */
	fd = open(tmpl, O_WRONLY | O_TRUNC);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(write(fd, "0123456789", 10), 10);
	close(fd);
	ck_assert_int_eq(credentials_auth_token(tok, sizeof(tok)), -ENAMETOOLONG);
	unlink(tmpl);
	ck_assert_int_eq(credentials_auth_token(tok, sizeof(tok)), -ENOENT);
	clear_env();
}
END_TEST

/* ---- a real endpoint ---- */

static struct {
	pthread_mutex_t mu;
	int status;                     /* reply status; 0 = 200 with a fresh key pair */
	const char *body;               /* fixed body instead */
	size_t big;                     /* > 0: a body of this many bytes */
	char want_auth[64];
	char last_auth[128];
	int64_t lifetime_ms;
	unsigned served, gen;
} srv = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int
h_creds(struct mg_connection *conn, void *ud)
{
	const char *auth = mg_get_header(conn, "Authorization");
	char body[512], exp[40];
	char *big = NULL;

	(void)ud;
	pthread_mutex_lock(&srv.mu);
	srv.served++;
	snprintf(srv.last_auth, sizeof(srv.last_auth), "%s", auth ? auth : "");
	if (strcmp(srv.last_auth, srv.want_auth) != 0) {
		pthread_mutex_unlock(&srv.mu);
		mg_send_http_error(conn, 401, "%s", "bad token");
		return 401;
	}
	if (srv.big > 0) {
		big = malloc(srv.big);
		memset(big, ' ', srv.big);
		big[0] = '{';
		big[srv.big - 1] = '}';
		pthread_mutex_unlock(&srv.mu);
		mg_send_http_ok(conn, "application/json", (long long)srv.big);
		mg_write(conn, big, srv.big);
		free(big);
		return 200;
	}
	if (srv.status != 0) {
		int st = srv.status;

		pthread_mutex_unlock(&srv.mu);
		mg_send_http_error(conn, st, "%s", "failing");
		return st;
	}
	if (srv.body != NULL)
		snprintf(body, sizeof(body), "%s", srv.body);
	else {
		srv.gen++;
		iso(now_ms() + srv.lifetime_ms, exp, sizeof(exp));
		snprintf(body, sizeof(body), "{\"AccessKeyId\":\"ASIAGEN%u\",\"SecretAccessKey\":\"secret%u\","
		    "\"Token\":\"token%u\",\"Expiration\":\"%s\"}", srv.gen, srv.gen, srv.gen, exp);
	}
	pthread_mutex_unlock(&srv.mu);
	mg_send_http_ok(conn, "application/json", (long long)strlen(body));
	mg_write(conn, body, strlen(body));
	return 200;
}

static struct mg_context *ctx;
static char uri[128];

static void
srv_start(void)
{
	const char *opts[] = { "listening_ports", "127.0.0.1:0", "num_threads", "2", NULL };
	struct mg_server_port ports[2];

	mg_init_library(0);
	ctx = mg_start(NULL, NULL, opts);
	ck_assert_ptr_nonnull(ctx);
	mg_set_request_handler(ctx, "/creds$", h_creds, NULL);
	ck_assert_int_ge(mg_get_server_ports(ctx, 2, ports), 1);
	snprintf(uri, sizeof(uri), "http://127.0.0.1:%d/creds", ports[0].port);
	srv.status = 0;
	srv.body = NULL;
	srv.big = 0;
	srv.served = srv.gen = 0;
	srv.lifetime_ms = 3600 * 1000;
	snprintf(srv.want_auth, sizeof(srv.want_auth), "sekrit-token");
	clear_env();
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "sekrit-token", 1);
}

static void
srv_stop(void)
{
	mg_stop(ctx);
	ctx = NULL;
}

START_TEST(test_fetch_and_refresh)
{
	struct credentials_provider *p;
	struct sigv4_credentials c;
	int64_t t0 = now_ms();

	srv_start();
	srv.lifetime_ms = 20 * 60 * 1000;       /* 20 min: refresh 5 min before */
	p = credentials_provider_new(NULL, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(credentials_source(p), CREDENTIALS_CONTAINER);
	ck_assert_uint_eq(srv.served, 0);       /* nothing fetched before it is needed */
	ck_assert_int_eq(credentials_get(p, t0, &c), 0);
	ck_assert_str_eq(c.access_key_id, "ASIAGEN1");
	ck_assert_str_eq(c.session_token, "token1");
	ck_assert_str_eq(srv.last_auth, "sekrit-token");
	/* Still fresh ten minutes on: no fetch. */
	ck_assert_int_eq(credentials_get(p, t0 + 10 * 60 * 1000, &c), 0);
	ck_assert_uint_eq(srv.served, 1);
	ck_assert_str_eq(c.access_key_id, "ASIAGEN1");
	/* Within 5 minutes of Expiration: refreshed before it. */
	ck_assert_int_eq(credentials_get(p, t0 + 16 * 60 * 1000, &c), 0);
	ck_assert_uint_eq(srv.served, 2);
	ck_assert_str_eq(c.access_key_id, "ASIAGEN2");
	ck_assert_uint_eq(credentials_fetches(p), 2);
	credentials_provider_free(p);
	srv_stop();
}
END_TEST

START_TEST(test_failure_keeps_and_backs_off)
{
	struct credentials_provider *p;
	struct sigv4_credentials c;
	int64_t t0 = now_ms(), t;

	srv_start();
	srv.lifetime_ms = 4000;
	p = credentials_provider_new(NULL, 0);
	ck_assert_int_eq(credentials_get(p, t0, &c), 0);
	ck_assert_str_eq(c.access_key_id, "ASIAGEN1");
	pthread_mutex_lock(&srv.mu);
	srv.status = 500;
	pthread_mutex_unlock(&srv.mu);
	/* Refresh due (halfway) but the endpoint fails: the held pair is still valid, used. */
	t = t0 + 2500;
	ck_assert_int_eq(credentials_get(p, t, &c), 0);
	ck_assert_str_eq(c.access_key_id, "ASIAGEN1");
	ck_assert_uint_eq(srv.served, 2);
	/* Within the backoff: no new fetch. */
	ck_assert_int_eq(credentials_get(p, t + 100, &c), 0);
	ck_assert_uint_eq(srv.served, 2);
	ck_assert_int_eq(credentials_retry_at(p), t + CREDENTIALS_RETRY_BASE_MS);
	/* Past Expiration with the endpoint still failing: nothing usable. */
	ck_assert_int_eq(credentials_get(p, t0 + 5000, &c), -EAGAIN);
	ck_assert_uint_eq(srv.served, 3);
	ck_assert_int_eq(credentials_retry_at(p), t0 + 5000 + 2 * CREDENTIALS_RETRY_BASE_MS);
	/* The endpoint recovers: the next attempt after the backoff succeeds. */
	pthread_mutex_lock(&srv.mu);
	srv.status = 0;
	srv.lifetime_ms = 60000;        /* valid at the (simulated) time of the next attempt */
	pthread_mutex_unlock(&srv.mu);
	ck_assert_int_eq(credentials_get(p, t0 + 5000 + 2 * CREDENTIALS_RETRY_BASE_MS, &c), 0);
	ck_assert_str_eq(c.access_key_id, "ASIAGEN2");
	credentials_provider_free(p);
	srv_stop();
}
END_TEST

START_TEST(test_invalidate_rate_limited)
{
	struct credentials_provider *p;
	struct sigv4_credentials c;
	int64_t t0 = now_ms();

	srv_start();
	p = credentials_provider_new(NULL, 0);
	ck_assert_int_eq(credentials_get(p, t0, &c), 0);
	/* Kinesis says ExpiredToken right away: the pair is not used again, and no fetch
	 * happens sooner than CREDENTIALS_MIN_REFETCH_MS after the last one. */
	credentials_invalidate(p, t0 + 10);
	ck_assert_int_eq(credentials_get(p, t0 + 10, &c), -EAGAIN);
	ck_assert_uint_eq(srv.served, 1);
	ck_assert_int_eq(credentials_retry_at(p), t0 + CREDENTIALS_MIN_REFETCH_MS);
	ck_assert_int_eq(credentials_get(p, t0 + CREDENTIALS_MIN_REFETCH_MS, &c), 0);
	ck_assert_uint_eq(srv.served, 2);
	ck_assert_str_eq(c.access_key_id, "ASIAGEN2");
	credentials_provider_free(p);
	srv_stop();
}
END_TEST

START_TEST(test_bad_replies_from_endpoint)
{
	struct credentials_provider *p;
	struct sigv4_credentials c;
	int64_t t0 = now_ms();

	srv_start();
	/* Wrong token: 401, nothing usable. */
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong", 1);
	p = credentials_provider_new(NULL, 0);
	ck_assert_int_eq(credentials_get(p, t0, &c), -EAGAIN);
	ck_assert_str_eq(srv.last_auth, "wrong");
	credentials_provider_free(p);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "sekrit-token", 1);
	/* Not JSON. */
	srv.body = "<html>hello</html>";
	p = credentials_provider_new(NULL, 0);
	ck_assert_int_eq(credentials_get(p, t0, &c), -EAGAIN);
	credentials_provider_free(p);
	/* Already expired. */
	srv.body = "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2001-01-01T00:00:00Z\"}";
	p = credentials_provider_new(NULL, 0);
	ck_assert_int_eq(credentials_get(p, t0, &c), -EAGAIN);
	credentials_provider_free(p);
	/* Oversized: the transfer is cut at the limit. */
	srv.body = NULL;
	srv.big = CREDENTIALS_MAX_REPLY + 4096;
	p = credentials_provider_new(NULL, 0);
	ck_assert_int_eq(credentials_get(p, t0, &c), -EAGAIN);
	ck_assert_uint_eq(credentials_fetches(p), 1);
	credentials_provider_free(p);
	srv_stop();
}
END_TEST

START_TEST(test_token_file_reread)
{
	struct credentials_provider *p;
	struct sigv4_credentials c;
	char tmpl[] = "/tmp/kte-tokenXXXXXX";
	int64_t t0 = now_ms();
	int fd;

	srv_start();
	unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	fd = mkstemp(tmpl);
	ck_assert_int_eq(write(fd, "sekrit-token\n", 13), 13);
	close(fd);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tmpl, 1);
	p = credentials_provider_new(NULL, 0);
	ck_assert_int_eq(credentials_get(p, t0, &c), 0);
	ck_assert_str_eq(srv.last_auth, "sekrit-token");
	/* The token rotates on disk: the next fetch sends the new one. */
	fd = open(tmpl, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, "rotated-token", 13), 13);
	close(fd);
	snprintf(srv.want_auth, sizeof(srv.want_auth), "rotated-token");
	credentials_invalidate(p, t0);
	ck_assert_int_eq(credentials_get(p, t0 + CREDENTIALS_MIN_REFETCH_MS, &c), 0);
	ck_assert_str_eq(srv.last_auth, "rotated-token");
	ck_assert_str_eq(c.access_key_id, "ASIAGEN2");
	unlink(tmpl);
	credentials_provider_free(p);
	srv_stop();
}
END_TEST

/* ---- the Kinesis client signs with what the provider holds ---- */

static struct {
	pthread_mutex_t mu;
	char auth[4][512], token[4][128];
	unsigned n;
} seen = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void
sink_note(void *ud, const struct sink_request *req, struct sink_reply *rep)
{
	(void)ud;
	(void)rep;
	pthread_mutex_lock(&seen.mu);
	if (seen.n < 4) {
		snprintf(seen.auth[seen.n], sizeof(seen.auth[0]), "%s", req->authorization);
		snprintf(seen.token[seen.n], sizeof(seen.token[0]), "%s", req->security_token);
	}
	seen.n++;
	pthread_mutex_unlock(&seen.mu);
}

/* Drives the request in flight to its end (bounded); it must be accepted. */
static void
put_one(struct kinesis_client *kc)
{
	struct kinesis_response resp;
	int rc = 0;

	for (int i = 0; i < 200 && rc == 0; i++)
		rc = kinesis_client_wait(kc, NULL, 0, 50, &resp);
	ck_assert_int_eq(rc, 1);
	ck_assert_int_eq(resp.transport_err, 0);
	ck_assert_int_eq(resp.http_status, 200);
}

START_TEST(test_client_signs_with_fresh_pairs)
{
	static const char body[] = "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"eA==\",\"PartitionKey\":\"k\"}]}";
	struct kte_config cfg;
	struct kinesis_client *kc;
	struct sink *sink;
	uint16_t port;
	int64_t t_end;
	int rc;

	srv_start();
	sink = sink_start(sink_note, NULL, &port);
	ck_assert_ptr_nonnull(sink);
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.region, sizeof(cfg.region), "us-east-1");
	snprintf(cfg.endpoint_url, sizeof(cfg.endpoint_url), "http://127.0.0.1:%u/", port);
	kc = kinesis_client_new(&cfg);
	ck_assert_ptr_nonnull(kc);
	ck_assert_uint_eq(srv.served, 0);
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), 0);
	put_one(kc);
	ck_assert_ptr_nonnull(strstr(seen.auth[0], "Credential=ASIAGEN1/"));
	ck_assert_str_eq(seen.token[0], "token1");
	/* ExpiredToken: the pair is dropped; within a second of the last fetch nothing is usable. */
	kinesis_client_invalidate_credentials(kc);
	ck_assert_int_eq(kinesis_client_start(kc, body, sizeof(body) - 1, 5000), -EAGAIN);
	ck_assert_int_gt(kinesis_client_credentials_retry_ms(kc), 0);
	ck_assert_int_le(kinesis_client_credentials_retry_ms(kc), CREDENTIALS_MIN_REFETCH_MS);
	/* Once the rate limit has passed (waited for, bounded), the next request carries a new pair. */
	t_end = now_ms() + 5000;
	while ((rc = kinesis_client_start(kc, body, sizeof(body) - 1, 5000)) == -EAGAIN && now_ms() < t_end)
		usleep((useconds_t)(kinesis_client_credentials_retry_ms(kc) * 1000 + 1000));
	ck_assert_int_eq(rc, 0);
	put_one(kc);
	ck_assert_uint_eq(srv.served, 2);
	ck_assert_ptr_nonnull(strstr(seen.auth[1], "Credential=ASIAGEN2/"));
	ck_assert_str_eq(seen.token[1], "token2");
	/* A restore: connections dropped and container credentials fetched before the next request. */
	kinesis_client_after_restore(kc);
	t_end = now_ms() + 5000;
	while ((rc = kinesis_client_start(kc, body, sizeof(body) - 1, 5000)) == -EAGAIN && now_ms() < t_end)
		usleep((useconds_t)(kinesis_client_credentials_retry_ms(kc) * 1000 + 1000));
	ck_assert_int_eq(rc, 0);
	put_one(kc);
	ck_assert_uint_eq(srv.served, 3);
	ck_assert_ptr_nonnull(strstr(seen.auth[2], "Credential=ASIAGEN3/"));
	kinesis_client_free(kc);
	sink_stop(sink);
	srv_stop();
}
END_TEST

static Suite *
credentials_suite(void)
{
	Suite *s = suite_create("credentials");
	TCase *tc = tcase_create("env");

	tcase_add_test(tc, test_env_provider);
	tcase_add_test(tc, test_no_source);
	suite_add_tcase(s, tc);
	tc = tcase_create("parse");
	tcase_add_test(tc, test_parse_reply);
	tcase_add_test(tc, test_parse_reply_bad);
	tcase_add_test(tc, test_parse_reply_oversized);
	tcase_add_test(tc, test_parse_time);
	tcase_add_test(tc, test_refresh_timing);
	tcase_add_test(tc, test_uri_rules);
	tcase_add_test(tc, test_token_sources);
	suite_add_tcase(s, tc);
	tc = tcase_create("endpoint");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_fetch_and_refresh);
	tcase_add_test(tc, test_failure_keeps_and_backs_off);
	tcase_add_test(tc, test_invalidate_rate_limited);
	tcase_add_test(tc, test_bad_replies_from_endpoint);
	tcase_add_test(tc, test_token_file_reread);
	tcase_add_test(tc, test_client_signs_with_fresh_pairs);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(credentials_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
