/*
 * A minimal Lambda extension for the simulator's own tests (compiled by the test scripts, not part of
 * lambda-sim). It registers, subscribes to the Telemetry API with a small HTTP listener on an ephemeral
 * port, loops on event/next and writes what it sees to $MINI_OUT/:
 *   events.log     one line per lifecycle step: "<epoch_ms> <what> [details]"
 *   telemetry.log  one line per POST body received
 *   pid            its pid
 * MINI_MODE selects a behaviour: normal, ignore_shutdown, init_error, exit_error, crash_init,
 * crash_invoke, hang_init, no_subscribe, child (forks a child that stays in the process group). MINI_FAIL_POSTS=N answers the
 * first N telemetry POSTs with 500; MINI_SLOW_MS delays each reply; MINI_TYPES, MINI_BUFFER_MS,
 * MINI_SCHEMA shape the subscription.
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
static int fail_posts, slow_ms;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long long got_reports;

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

/* The telemetry listener: HTTP/1.1 with Content-Length bodies, keep-alive. */
static void *serve_conn(void *arg)
{
	int fd = (int)(long)arg;
	char *buf = malloc(4 << 20);
	size_t n = 0;

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
				if (!fail) {
					long long k = 0;
					for (cl = hend + 4; (cl = strstr(cl, "\"platform.report\"")); cl++)
						k++;
					pthread_mutex_lock(&mu);
					got_reports += k;
					pthread_cond_broadcast(&cv);
					pthread_mutex_unlock(&mu);
				}
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
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *events = getenv("MINI_EVENTS") ? getenv("MINI_EVENTS") : "[\"INVOKE\",\"SHUTDOWN\"]";
	const char *types = getenv("MINI_TYPES") ? getenv("MINI_TYPES") : "[\"platform\",\"function\",\"extension\"]";
	const char *schema = getenv("MINI_SCHEMA") ? getenv("MINI_SCHEMA") : "2022-12-13";
	int buffer_ms = getenv("MINI_BUFFER_MS") ? atoi(getenv("MINI_BUFFER_MS")) : 25;
	char body[1024], hdr[300], *resp = NULL, p[1100];
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	pthread_t lt;
	long st;
	int ls, invokes = 0;
	FILE *f;

	(void)argc;
	snprintf(api, sizeof(api), "%s", getenv("AWS_LAMBDA_RUNTIME_API") ? getenv("AWS_LAMBDA_RUNTIME_API") : "");
	snprintf(outdir, sizeof(outdir), "%s", getenv("MINI_OUT") ? getenv("MINI_OUT") : "/tmp");
	if (getenv("MINI_MODE"))
		mode = getenv("MINI_MODE");
	fail_posts = getenv("MINI_FAIL_POSTS") ? atoi(getenv("MINI_FAIL_POSTS")) : 0;
	slow_ms = getenv("MINI_SLOW_MS") ? atoi(getenv("MINI_SLOW_MS")) : 0;
	snprintf(p, sizeof(p), "%s/pid", outdir);
	if ((f = fopen(p, "w"))) {
		fprintf(f, "%d\n", getpid());
		fclose(f);
	}
	logf_("events.log", "start %s", name);
	if (!strcmp(mode, "crash_init"))
		return 3;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(mode, "child") && fork() == 0) {
		/* a child that stays in the group and outlives nothing on its own */
		for (;;)
			pause();
	}

	snprintf(hdr, sizeof(hdr), "Lambda-Extension-Name: %s", getenv("MINI_NAME") ? getenv("MINI_NAME") : name);
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
		         "{\"schemaVersion\":\"%s\",\"types\":%s,\"buffering\":{\"maxItems\":1000,"
		         "\"maxBytes\":262144,\"timeoutMs\":%d},\"destination\":{\"protocol\":\"HTTP\","
		         "\"URI\":\"http://sandbox.localdomain:%d/telemetry\"}}",
		         schema, types, buffer_ms, ntohs(a.sin_port));
		st = call("PUT", "/2022-07-01/telemetry", body, NULL, &resp);
		logf_("events.log", "subscribe %s", resp);
		free(resp);
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
			/* wait (bounded) for the last platform.report, which comes after SHUTDOWN */
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_mutex_lock(&mu);
			if (getenv("MINI_EXPECT_REPORTS"))
				invokes = atoi(getenv("MINI_EXPECT_REPORTS"));
			while (got_reports < invokes && pthread_cond_timedwait(&cv, &mu, &ts) == 0)
				;
			pthread_mutex_unlock(&mu);
			logf_("events.log", "exit %s", "0");
			free(resp);
			return 0;
		}
		free(resp);
	}
}
