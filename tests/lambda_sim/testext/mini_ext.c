/*
 * A minimal Lambda extension for the simulator's own tests (compiled by the test scripts, not part of
 * lambda-sim). It registers, subscribes to the Telemetry API with a small listener on an ephemeral port,
 * loops on event/next and writes what it sees to $MINI_OUT/:
 *   events.log     one line per lifecycle step: "<epoch_ms> <what> [details]"
 *   telemetry.log  one line per POST body received (per event line with MINI_PROTOCOL=TCP)
 *   pid            its pid
 * Environment:
 *   MINI_MODE       normal, ignore_shutdown, init_error, exit_error, crash_init, crash_invoke, hang_init,
 *                   no_subscribe, child (forks a child that stays in the process group)
 *   MINI_FAIL_POSTS answer the first N telemetry POSTs with 500;  MINI_SLOW_MS  delay each reply
 *   MINI_INVOKE_SLEEP_MS  delay the next call after an INVOKE
 *   MINI_WAIT_RUNTIME_DONE=1  call next only once the invocation's platform.runtimeDone arrived
 *   MINI_EXPECT_REPORTS  platform.report events to wait for after SHUTDOWN (default: INVOKEs seen)
 *   MINI_WAIT_FOR   also wait, after SHUTDOWN, for a telemetry body containing this text
 *   MINI_WAIT_FILE  wait (up to 10 s) for this file before registering; every extension creates
 *                   $MINI_OUT/subscribed.<name> once subscribed
 *   MINI_<X>_<name>  overrides MINI_<X> for the extension of that file name only
 *   MINI_EVENTS, MINI_TYPES, MINI_SCHEMA, MINI_BUFFER_MS, MINI_MAX_ITEMS, MINI_PROTOCOL, MINI_NAME
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

static char api[128], id[64], outdir[1024];
static const char *mode = "normal";
static int fail_posts, slow_ms, tcp_mode;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long long got_reports, got_rd;
static const char *wait_for;    /* MINI_WAIT_FOR: text to receive before exiting at SHUTDOWN */
static int got_wait_for;

static const char *self_name;

/* MINI_X_<name> (this extension's file name) overrides MINI_X. */
static const char *env_(const char *key)
{
	char k[300];

	snprintf(k, sizeof(k), "%s_%s", key, self_name ? self_name : "");
	return getenv(k) ? getenv(k) : getenv(key);
}

static long long epoch_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void logf_(const char *file, const char *fmt, const char *arg)
{
	char p[1200];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", outdir, file);
	f = fopen(p, "a");
	if (!f)
		return;
	fprintf(f, "%lld ", epoch_ms());
	fprintf(f, fmt, arg);
	fputc('\n', f);
	fclose(f);
}

struct buf {
	char *p;
	size_t n;
};

static size_t on_data(char *d, size_t sz, size_t nm, void *u)
{
	struct buf *b = u;
	char *np = realloc(b->p, b->n + sz * nm + 1);

	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->n, d, sz * nm);
	b->n += sz * nm;
	b->p[b->n] = '\0';
	return sz * nm;
}

static size_t on_header(char *d, size_t sz, size_t nm, void *u)
{
	(void)u;
	if (!strncasecmp(d, "Lambda-Extension-Identifier:", 28)) {
		char *v = d + 28;
		while (*v == ' ')
			v++;
		snprintf(id, sizeof(id), "%.*s", (int)strcspn(v, "\r\n"), v);
	}
	return sz * nm;
}

/* One call to the Runtime API; returns the HTTP status, body in *out (caller frees). */
static long call(const char *method, const char *path, const char *body, const char *xhdr, char **out)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	struct buf b = {0};
	char url[512], hdr[128];
	long st = 0;

	snprintf(url, sizeof(url), "http://%s%s", api, path);
	if (id[0]) {
		snprintf(hdr, sizeof(hdr), "Lambda-Extension-Identifier: %s", id);
		hl = curl_slist_append(hl, hdr);
	}
	if (xhdr)
		hl = curl_slist_append(hl, xhdr);
	hl = curl_slist_append(hl, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	if (out)
		*out = b.p ? b.p : strdup("");
	else
		free(b.p);
	return st;
}

static void count_events(const char *body)
{
	long long k = 0, rd = 0;
	const char *c;

	for (c = body; (c = strstr(c, "\"platform.report\"")); c++)
		k++;
	for (c = body; (c = strstr(c, "\"platform.runtimeDone\"")); c++)
		rd++;
	pthread_mutex_lock(&mu);
	got_reports += k;
	got_rd += rd;
	if (wait_for && strstr(body, wait_for))
		got_wait_for = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* TCP destination: newline-delimited JSON, no acknowledgement. */
static void serve_tcp(int fd, char *buf)
{
	size_t n = 0;

	for (;;) {
		char *nl;
		ssize_t r = recv(fd, buf + n, (4 << 20) - 1 - n, 0);
		if (r <= 0)
			return;
		n += (size_t)r;
		buf[n] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			*nl = '\0';
			logf_("telemetry.log", "%s", buf);
			count_events(buf);
			memmove(buf, nl + 1, n - (size_t)(nl + 1 - buf) + 1);
			n -= (size_t)(nl + 1 - buf);
		}
	}
}

/* The telemetry listener: HTTP/1.1 with Content-Length bodies, keep-alive. */
static void *serve_conn(void *arg)
{
	int fd = (int)(long)arg;
	char *buf = malloc(4 << 20);
	size_t n = 0;

	if (tcp_mode) {
		serve_tcp(fd, buf);
		free(buf);
		close(fd);
		return NULL;
	}

	for (;;) {
		char *hend, *cl;
		size_t len, need;
		ssize_t r = recv(fd, buf + n, (4 << 20) - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		buf[n] = '\0';
		while ((hend = strstr(buf, "\r\n\r\n"))) {
			const char *reply;
			cl = strcasestr(buf, "Content-Length:");
			len = cl && cl < hend ? strtoul(cl + 15, NULL, 10) : 0;
			need = (size_t)(hend + 4 - buf) + len;
			if (n < need)
				break;
			{
				char save = buf[need];
				int fail;
				buf[need] = '\0';
				pthread_mutex_lock(&mu);
				fail = fail_posts > 0;
				if (fail)
					fail_posts--;
				pthread_mutex_unlock(&mu);
				reply = fail ? "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
				             : "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
				if (slow_ms)
					usleep((useconds_t)slow_ms * 1000);
				/* log before replying, reply before telling main (which may exit at once) */
				logf_(fail ? "events.log" : "telemetry.log", fail ? "telemetry_failed %s" : "%s",
				      fail ? "500" : hend + 4);
				if (send(fd, reply, strlen(reply), MSG_NOSIGNAL) < 0)
					break;
				if (!fail)
					count_events(hend + 4);
				buf[need] = save;
			}
			memmove(buf, buf + need, n - need);
			n -= need;
			buf[n] = '\0';
		}
	}
	free(buf);
	close(fd);
	return NULL;
}

static void *listener(void *arg)
{
	int ls = (int)(long)arg;

	for (;;) {
		pthread_t t;
		int c = accept(ls, NULL, NULL);
		if (c < 0)
			continue;
		pthread_create(&t, NULL, serve_conn, (void *)(long)c);
		pthread_detach(t);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *name = self_name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *events = env_("MINI_EVENTS") ? env_("MINI_EVENTS") : "[\"INVOKE\",\"SHUTDOWN\"]";
	const char *types = env_("MINI_TYPES") ? env_("MINI_TYPES") : "[\"platform\",\"function\",\"extension\"]";
	const char *schema = env_("MINI_SCHEMA") ? env_("MINI_SCHEMA") : "2022-12-13";
	int buffer_ms = env_("MINI_BUFFER_MS") ? atoi(env_("MINI_BUFFER_MS")) : 25;
	int max_items = env_("MINI_MAX_ITEMS") ? atoi(env_("MINI_MAX_ITEMS")) : 1000;
	char body[1024], hdr[300], *resp = NULL, p[1100];
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	pthread_t lt;
	long st;
	int ls, invokes = 0;
	FILE *f;

	(void)argc;
	snprintf(api, sizeof(api), "%s", getenv("AWS_LAMBDA_RUNTIME_API") ? getenv("AWS_LAMBDA_RUNTIME_API") : "");
	snprintf(outdir, sizeof(outdir), "%s", env_("MINI_OUT") ? env_("MINI_OUT") : "/tmp");
	if (env_("MINI_MODE"))
		mode = env_("MINI_MODE");
	wait_for = env_("MINI_WAIT_FOR");
	fail_posts = env_("MINI_FAIL_POSTS") ? atoi(env_("MINI_FAIL_POSTS")) : 0;
	slow_ms = env_("MINI_SLOW_MS") ? atoi(env_("MINI_SLOW_MS")) : 0;
	tcp_mode = env_("MINI_PROTOCOL") && !strcmp(env_("MINI_PROTOCOL"), "TCP");
	snprintf(p, sizeof(p), "%s/pid", outdir);
	if ((f = fopen(p, "w"))) {
		fprintf(f, "%d\n", getpid());
		fclose(f);
	}
	logf_("events.log", "start %s", name);
	if (!strcmp(mode, "crash_init"))
		return 3;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (env_("MINI_WAIT_FILE")) {
		/* start once another extension says it is subscribed (polled, bounded) */
		int i;
		for (i = 0; i < 2000 && access(env_("MINI_WAIT_FILE"), F_OK); i++)
			usleep(5000);
	}
	if (!strcmp(mode, "child")) {
		/* a child that stays in the process group and would outlive its parent */
		pid_t c = fork();
		if (c == 0)
			for (;;)
				pause();
		snprintf(p, sizeof(p), "%s/child_pid", outdir);
		if (c > 0 && (f = fopen(p, "w"))) {
			fprintf(f, "%d\n", (int)c);
			fclose(f);
		}
	}

	snprintf(hdr, sizeof(hdr), "Lambda-Extension-Name: %s", env_("MINI_NAME") ? env_("MINI_NAME") : name);
	snprintf(body, sizeof(body), "{\"events\":%s}", events);
	st = call("POST", "/2020-01-01/extension/register", body, hdr, &resp);
	logf_("events.log", "register %s", resp);
	free(resp);
	if (st != 200)
		return 4;
	if (!strcmp(mode, "init_error")) {
		st = call("POST", "/2020-01-01/extension/init/error",
		          "{\"errorMessage\":\"bad config\",\"errorType\":\"Extension.ConfigInvalid\",\"stackTrace\":[]}",
		          "Lambda-Extension-Function-Error-Type: Extension.ConfigInvalid", NULL);
		logf_("events.log", "init_error %s", st == 202 ? "202" : "other");
		return 5;
	}

	ls = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 16) ||
	    getsockname(ls, (struct sockaddr *)&a, &al))
		return 6;
	pthread_create(&lt, NULL, listener, (void *)(long)ls);
	if (strcmp(mode, "no_subscribe")) {
		snprintf(body, sizeof(body),
		         "{\"schemaVersion\":\"%s\",\"types\":%s,\"buffering\":{\"maxItems\":%d,"
		         "\"maxBytes\":262144,\"timeoutMs\":%d},\"destination\":{\"protocol\":\"%s\","
		         "\"URI\":\"%s://sandbox.localdomain:%d%s\"}}",
		         schema, types, max_items, buffer_ms, tcp_mode ? "TCP" : "HTTP", tcp_mode ? "tcp" : "http",
		         ntohs(a.sin_port), tcp_mode ? "" : "/telemetry");
		st = call("PUT", "/2022-07-01/telemetry", body, NULL, &resp);
		logf_("events.log", "subscribe %s", resp);
		free(resp);
		snprintf(p, sizeof(p), "%s/subscribed.%s", outdir, name);
		if ((f = fopen(p, "w")))
			fclose(f);
	}
	printf("mini extension %s ready\n", name);
	fflush(stdout);
	if (!strcmp(mode, "hang_init"))
		for (;;)
			pause();
	for (;;) {
		st = call("GET", "/2020-01-01/extension/event/next", NULL, NULL, &resp);
		if (st != 200) {
			logf_("events.log", "next_failed %s", resp);
			free(resp);
			return 7;
		}
		if (strstr(resp, "\"INVOKE\"")) {
			invokes++;
			logf_("events.log", "INVOKE %s", resp);
			if (!strcmp(mode, "crash_invoke"))
				return 8;
			if (env_("MINI_INVOKE_SLEEP_MS"))
				usleep((useconds_t)atoi(env_("MINI_INVOKE_SLEEP_MS")) * 1000);
			if (env_("MINI_WAIT_RUNTIME_DONE")) {
				/* like most extensions: finish the invocation once its runtimeDone arrived */
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += 5;
				pthread_mutex_lock(&mu);
				while (got_rd < invokes && pthread_cond_timedwait(&cv, &mu, &ts) == 0)
					;
				pthread_mutex_unlock(&mu);
			}
			if (!strcmp(mode, "exit_error") && invokes == 1) {
				st = call("POST", "/2020-01-01/extension/exit/error", "{\"errorMessage\":\"x\"}",
				          "Lambda-Extension-Function-Error-Type: Extension.Broken", NULL);
				logf_("events.log", "exit_error %s", st == 202 ? "202" : "other");
				return 9;
			}
		} else if (strstr(resp, "\"SHUTDOWN\"")) {
			struct timespec ts;
			logf_("events.log", "SHUTDOWN %s", resp);
			if (!strcmp(mode, "ignore_shutdown"))
				for (;;)
					pause();
			/* wait for the last platform.report, which comes after SHUTDOWN, until 50 ms before
			 * the deadline */
			{
				const char *d = strstr(resp, "\"deadlineMs\":");
				long long dl = d ? atoll(d + 13) - 50 : epoch_ms() + 1000;
				ts.tv_sec = (time_t)(dl / 1000);
				ts.tv_nsec = (long)(dl % 1000) * 1000000L;
			}
			pthread_mutex_lock(&mu);
			if (env_("MINI_EXPECT_REPORTS"))
				invokes = atoi(env_("MINI_EXPECT_REPORTS"));
			while ((got_reports < invokes || (wait_for && !got_wait_for)) &&
			       pthread_cond_timedwait(&cv, &mu, &ts) == 0)
				;
			pthread_mutex_unlock(&mu);
			logf_("events.log", "exit %s", "0");
			free(resp);
			return 0;
		}
		free(resp);
	}
}
