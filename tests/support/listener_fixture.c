#include "listener_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "listener/listener.h"
#include "log.h"
#include "notify.h"

static const char *
no_env(const char *name, void *ctx)
{
	(void)name;
	(void)ctx;
	return NULL;
}

void
lfix_init(struct listener_fixture *f)
{
	memset(f, 0, sizeof(*f));
	/* Only the missing destination is reported; every other field holds its default. */
	if (config_load_from(&f->cfg, no_env, NULL, NULL, 0) != 0) {
		/* expected: no destination in a listener test */
	}
	snprintf(f->cfg.listener_host, sizeof(f->cfg.listener_host), "127.0.0.1");
	f->cfg.log_level = LOG_LEVEL_WARN;
	f->fds.to_dispatcher = f->fds.to_controller = -1;
	f->pid = -1;
	f->ring.memfd = -1;
}

unsigned
lfix_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port = 0;

	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Forks the listener on cfg.listener_port; 0 once ready, -EADDRINUSE if it exited. */
static int
spawn(struct listener_fixture *f)
{
	struct listener_args a = { &f->cfg, &f->ring, f->ctl, &f->fds };
	uint64_t deadline = now_mono_ms() + 10000;
	int status;

	atomic_store(&f->ctl->listener_ready, 0);
	notify_drain(f->fds.to_controller);
	fflush(NULL);
	f->pid = fork();
	if (f->pid < 0)
		return -errno;
	if (f->pid == 0)
		exit(listener_run(&a, f->ring_wait_ms));  /* exit, not _exit: LeakSanitizer checks the listener */
	while (now_mono_ms() < deadline) {
		if (atomic_load(&f->ctl->listener_ready)) {
			snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%u", (unsigned)f->cfg.listener_port);
			return 0;
		}
		if (waitpid(f->pid, &status, WNOHANG) == f->pid) {
			f->pid = -1;
			return -EADDRINUSE;
		}
		(void)notify_wait(f->fds.to_controller, 50);
	}
	return -ETIMEDOUT;
}

int
lfix_start(struct listener_fixture *f, uint64_t ring_bytes)
{
	int rc = -EADDRINUSE;

	if (f->ctl == NULL) {
		if ((rc = ring_create(&f->ring, ring_bytes)) != 0)
			return rc;
		if ((f->ctl = control_new(&f->fds)) == NULL)
			return -errno;
		rc = -EADDRINUSE;
	}
	for (int i = 0; i < 10 && rc == -EADDRINUSE; i++) {
		f->cfg.listener_port = (uint16_t)lfix_free_port();
		rc = spawn(f);
	}
	return rc;
}

int
lfix_start_same_port(struct listener_fixture *f)
{
	return spawn(f);
}

int
lfix_stop(struct listener_fixture *f, int sig)
{
	int status;

	if (f->pid <= 0)
		return -1;
	kill(f->pid, sig);
	while (waitpid(f->pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	f->pid = -1;
	return status;
}

void
lfix_free(struct listener_fixture *f)
{
	if (f->pid > 0)
		(void)lfix_stop(f, SIGKILL);
	if (f->ctl != NULL) {
		ring_close(&f->ring);
		control_free(f->ctl, &f->fds);
		f->ctl = NULL;
	}
}

static size_t
discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

long
lfix_request(CURL *h, const struct listener_fixture *f, const char *method, const char *path,
    const void *body, size_t len, int flags)
{
	struct curl_slist *hdrs = NULL;
	char url[256];
	long status = -1;

	snprintf(url, sizeof(url), "%s%s", f->base, path);
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	if (flags & LFIX_EXPECT) {
		/* The server must answer "100 Continue" itself: curl would wait out the whole request. */
		hdrs = curl_slist_append(hdrs, "Expect: 100-continue");
		curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 60000L);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	} else
		hdrs = curl_slist_append(hdrs, "Expect:");      /* no 100-continue round trip */
	if (flags & LFIX_CHUNKED)
		hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (body != NULL) {
		/* With the Transfer-Encoding header curl still sends chunks, of this size in all. */
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	}
	if (method != NULL && strcmp(method, "GET") == 0)
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	else if (method != NULL && strcmp(method, "POST") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	return status;
}
