#include "kinesis_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "endpoint.h"
#include "log.h"
#include "notify.h"

#include "credentials.h"
#include "sigv4.h"

#define KC_TARGET        "Kinesis_20131202.PutRecords"
#define KC_CONNECT_MS    3000L
#define KC_MAX_REPLY     (4u << 20)  /* a 500-record reply is ~60 KB; bound hostile ones */
#define KC_MAXAGE_CONN_S 60L         /* do not reuse a connection idle longer (freezes) */
/*
 * A request whose signature is older than this when its connection is ready was held
 * up by a freeze (Lambda froze the sandbox between signing and sending): it is signed
 * again rather than sent with a stale date, which after a long freeze Kinesis refuses
 * (Signature expired). A connection plus TLS handshake takes well under it.
 */
#define KC_SIGNATURE_STALE_MS 1500

struct kinesis_client {
	CURLM *multi;
	CURL *easy;
	struct curl_slist *headers;
	bool busy;
	char url[CONFIG_STR_MAX + 64];
	char host[ENDPOINT_HOST_MAX + 8]; /* the Host header, as signed */
	char path[ENDPOINT_PATH_MAX];   /* the path on the request line, as signed */
	char region[64];
	char ca_bundle[CONFIG_STR_MAX];
	char *reply;
	size_t reply_len, reply_cap;
	bool reply_truncated;
	char error_type[128];
	char curl_err[CURL_ERROR_SIZE];
	uint64_t started_us;
	const char *body;               /* the request's body, owned by the caller until done */
	size_t body_len;
	uint64_t signed_ms;             /* epoch ms the headers were signed at */
	bool stale;                     /* kc_prereq aborted the request to re-sign it */
	bool resigned;                  /* ... once: a slow connect must not abort it again */
	long timeout_ms;
	struct credentials_provider *prov;      /* NULL: no source (requests fail with -EINVAL) */
	struct sigv4_credentials cred;  /* the pair the last request was signed with */
	struct sigv4_key_cache cache;
	bool reconnect;                 /* drop every kept-alive connection before the next request */
};

static const char *const ca_paths[] = {
	"/etc/pki/tls/certs/ca-bundle.crt",                  /* Amazon Linux, RHEL */
	"/etc/ssl/certs/ca-certificates.crt",                /* Debian, Ubuntu */
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", /* Fedora */
	"/etc/ssl/ca-bundle.pem",                            /* SUSE */
	"/etc/ssl/cert.pem",                                 /* Alpine, BSD */
	NULL,
};

/* Frees a header list, wiping it first: it holds the session token. */
static void
kc_headers_free(struct curl_slist *l)
{
	for (struct curl_slist *p = l; p != NULL; p = p->next)
		explicit_bzero(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

static size_t
kc_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct kinesis_client *kc = ud;
	size_t n = size * nmemb, cap;
	char *p;

	if (kc->reply_len + n + 1 > KC_MAX_REPLY) {
		kc->reply_truncated = true;
		return n;       /* keep reading, keep what fits */
	}
	if (kc->reply_len + n + 1 > kc->reply_cap) {
		cap = kc->reply_cap ? kc->reply_cap : 16384;
		while (cap < kc->reply_len + n + 1)
			cap *= 2;
		if ((p = realloc(kc->reply, cap)) == NULL)
			return 0;   /* aborts the transfer: CURLE_WRITE_ERROR */
		kc->reply = p;
		kc->reply_cap = cap;
	}
	memcpy(kc->reply + kc->reply_len, ptr, n);
	kc->reply_len += n;
	kc->reply[kc->reply_len] = '\0';
	return n;
}

static size_t
kc_header(char *buf, size_t size, size_t nitems, void *ud)
{
	static const char name[] = "x-amzn-errortype:";
	struct kinesis_client *kc = ud;
	size_t n = size * nitems, i;

	if (n > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
		i = sizeof(name) - 1;
		while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
			i++;
		snprintf(kc->error_type, sizeof(kc->error_type), "%.*s", (int)(n - i), buf + i);
		kc->error_type[strcspn(kc->error_type, "\r\n")] = '\0';
	}
	return n;
}

/* Called once the connection is ready, right before the request is written. */
static int
kc_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	struct kinesis_client *kc = ud;

	(void)primary_ip, (void)local_ip, (void)primary_port, (void)local_port;
	if (kc->resigned || now_epoch_ms() < kc->signed_ms + KC_SIGNATURE_STALE_MS)
		return CURL_PREREQFUNC_OK;
	kc->stale = true;
	return CURL_PREREQFUNC_ABORT;
}

/*
 * URL, Host header and path from the endpoint config chose (cfg->endpoint_url): the path
 * is sent as normalised, so the path signed is the path the server receives.
 */
static int
kc_endpoint(struct kinesis_client *kc, const struct kte_config *cfg)
{
	struct endpoint_url u;
	char why[128] = "";
	int rc, n;

	if ((rc = endpoint_url_parse(cfg->endpoint_url, &u, why, sizeof(why))) < 0) {
		log_warnx("endpoint \"%s\" is unusable: %s", cfg->endpoint_url, why[0] ? why : strerror(-rc));
		return rc;
	}
	snprintf(kc->host, sizeof(kc->host), "%s", u.authority);
	snprintf(kc->path, sizeof(kc->path), "%s", u.path);
	n = snprintf(kc->url, sizeof(kc->url), "%s://%s%s", u.https ? "https" : "http", u.authority, u.path);
	return n < 0 || (size_t)n >= sizeof(kc->url) ? -ENAMETOOLONG : 0;
}

static const char *
kc_find_ca(const struct kte_config *cfg)
{
	if (cfg->ca_bundle[0] != '\0')
		return cfg->ca_bundle;
	for (int i = 0; ca_paths[i] != NULL; i++)
		if (access(ca_paths[i], R_OK) == 0)
			return ca_paths[i];
	return NULL;
}

struct kinesis_client *
kinesis_client_new(const struct kte_config *cfg)
{
	struct kinesis_client *kc;
	const char *ca;
	int rc;

	if ((kc = calloc(1, sizeof(*kc))) == NULL)
		return NULL;
	snprintf(kc->region, sizeof(kc->region), "%s", cfg->region);
	if ((rc = kc_endpoint(kc, cfg)) < 0) {
		free(kc);
		errno = -rc;
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (kc->multi = curl_multi_init()) == NULL || (kc->easy = curl_easy_init()) == NULL) {
		kinesis_client_free(kc);
		errno = ENOMEM;
		return NULL;
	}
	curl_easy_setopt(kc->easy, CURLOPT_URL, kc->url);
	curl_easy_setopt(kc->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(kc->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(kc->easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(kc->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(kc->easy, CURLOPT_CONNECTTIMEOUT_MS, KC_CONNECT_MS);
	curl_easy_setopt(kc->easy, CURLOPT_MAXAGE_CONN, KC_MAXAGE_CONN_S);
	curl_easy_setopt(kc->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(kc->easy, CURLOPT_WRITEFUNCTION, kc_write);
	curl_easy_setopt(kc->easy, CURLOPT_WRITEDATA, kc);
	curl_easy_setopt(kc->easy, CURLOPT_HEADERFUNCTION, kc_header);
	curl_easy_setopt(kc->easy, CURLOPT_HEADERDATA, kc);
	curl_easy_setopt(kc->easy, CURLOPT_PREREQFUNCTION, kc_prereq);
	curl_easy_setopt(kc->easy, CURLOPT_PREREQDATA, kc);
	curl_easy_setopt(kc->easy, CURLOPT_ERRORBUFFER, kc->curl_err);
	curl_easy_setopt(kc->easy, CURLOPT_USERAGENT, "kinesis-telemetry-extension/1");
	curl_easy_setopt(kc->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(kc->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(kc->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	if ((ca = kc_find_ca(cfg)) != NULL) {
		snprintf(kc->ca_bundle, sizeof(kc->ca_bundle), "%s", ca);
		curl_easy_setopt(kc->easy, CURLOPT_CAINFO, kc->ca_bundle);
	} else if (strncasecmp(kc->url, "https://", 8) == 0)
		log_warnx("no CA bundle found (set KTE_CA_BUNDLE): using libcurl's default");
	{
		char why[256];

		if ((kc->prov = credentials_provider_new(why, sizeof(why))) == NULL)
			log_error("no usable AWS credentials: %s; requests will be refused", why);
		else
			log_info("AWS credentials from the %s", credentials_source(kc->prov) ==
			    CREDENTIALS_ENV ? "environment (AWS_ACCESS_KEY_ID)" :
			    "container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)");
	}
	return kc;
}

void
kinesis_client_free(struct kinesis_client *kc)
{
	if (kc == NULL)
		return;
	kinesis_client_abort(kc);
	if (kc->easy != NULL)
		curl_easy_cleanup(kc->easy);
	if (kc->multi != NULL)
		curl_multi_cleanup(kc->multi);
	kc_headers_free(kc->headers);
	free(kc->reply);
	credentials_provider_free(kc->prov);
	sigv4_credentials_wipe(&kc->cred);
	sigv4_key_cache_wipe(&kc->cache);
	free(kc);
}

const char *
kinesis_client_url(const struct kinesis_client *kc)
{
	return kc->url;
}

void
kinesis_client_invalidate_credentials(struct kinesis_client *kc)
{
	if (kc->prov != NULL)
		credentials_invalidate(kc->prov, (int64_t)now_epoch_ms());
}

bool
kinesis_client_credentials_failing(const struct kinesis_client *kc)
{
	return kc->prov != NULL && credentials_failing(kc->prov);
}

int64_t
kinesis_client_credentials_retry_ms(const struct kinesis_client *kc)
{
	int64_t at, now = (int64_t)now_epoch_ms();

	if (kc->prov == NULL)
		return 0;
	at = credentials_retry_at(kc->prov);
	return at > now ? at - now : 0;
}

void
kinesis_client_reconnect(struct kinesis_client *kc)
{
	kc->reconnect = true;
}

void
kinesis_client_after_restore(struct kinesis_client *kc)
{
	kinesis_client_reconnect(kc);
	if (kc->prov != NULL && credentials_source(kc->prov) == CREDENTIALS_CONTAINER)
		credentials_invalidate(kc->prov, (int64_t)now_epoch_ms());
}

/* Takes the provider's current pair; a different pair invalidates the cached signing key. */
static int
kc_credentials(struct kinesis_client *kc, long timeout_ms)
{
	struct sigv4_credentials next;
	int rc;

	if (kc->prov == NULL)
		return -EINVAL;
	credentials_set_fetch_timeout(kc->prov, timeout_ms);
	if ((rc = credentials_get(kc->prov, (int64_t)now_epoch_ms(), &next)) < 0) {
		sigv4_credentials_wipe(&next);
		return rc == -ENOENT ? -EINVAL : rc;
	}
	if (strcmp(next.access_key_id, kc->cred.access_key_id) != 0 ||
	    strcmp(next.secret_access_key, kc->cred.secret_access_key) != 0) {
		sigv4_key_cache_wipe(&kc->cache);
		sigv4_credentials_wipe(&kc->cred);
		kc->cred = next;
	} else
		memcpy(kc->cred.session_token, next.session_token, sizeof(next.session_token));
	sigv4_credentials_wipe(&next);
	return 0;
}

static struct curl_slist *
kc_append(struct curl_slist *l, const char *h, bool *ok)
{
	struct curl_slist *n = curl_slist_append(l, h);

	if (n == NULL)
		*ok = false;
	return n != NULL ? n : l;
}

/* Appends "name: value" for a secret value: the formatted copy is wiped before it is freed. */
static struct curl_slist *
kc_append_secret(struct curl_slist *l, const char *name, const char *value, bool *ok)
{
	char *line;

	if (asprintf(&line, "%s: %s", name, value) < 0) {
		*ok = false;
		return l;
	}
	l = kc_append(l, line, ok);
	explicit_bzero(line, strlen(line));
	free(line);
	return l;
}

/* Builds this request's headers, signed for now. */
static int
kc_headers(struct kinesis_client *kc, const char *body, size_t len, long timeout_ms)
{
	char line[CONFIG_STR_MAX + 64];
	bool ok = true;
	struct curl_slist *h = NULL;
	struct sigv4_kinesis_headers sh;
	int rc;

	kc_headers_free(kc->headers);
	kc->headers = NULL;
	if ((rc = kc_credentials(kc, timeout_ms)) < 0)
		return rc;
	kc->signed_ms = now_epoch_ms();
	rc = sigv4_sign_kinesis_path(&kc->cache, &kc->cred, kc->region, kc->host, kc->path, KC_TARGET, body,
	    len, (time_t)(kc->signed_ms / 1000), &sh);
	if (rc < 0)
		return rc;
	snprintf(line, sizeof(line), "Host: %s", kc->host);
	h = kc_append(h, line, &ok);
	h = kc_append(h, "Content-Type: application/x-amz-json-1.1", &ok);
	h = kc_append(h, "X-Amz-Target: " KC_TARGET, &ok);
	h = kc_append(h, "Expect:", &ok);   /* no 100-continue round trip for large bodies */
	snprintf(line, sizeof(line), "X-Amz-Date: %s", sh.amz_date);
	h = kc_append(h, line, &ok);
	h = kc_append_secret(h, "Authorization", sh.authorization, &ok);
	if (kc->cred.session_token[0] != '\0')
		h = kc_append_secret(h, "X-Amz-Security-Token", kc->cred.session_token, &ok);
	explicit_bzero(&sh, sizeof(sh));
	if (!ok) {
		kc_headers_free(h);
		return -ENOMEM;
	}
	kc->headers = h;
	return 0;
}

int
kinesis_client_start(struct kinesis_client *kc, const char *body, size_t len, long timeout_ms)
{
	int rc;

	if (kc->busy)
		return -EBUSY;
	uint64_t t0 = now_mono_ms();

	if ((rc = kc_headers(kc, body, len, timeout_ms)) < 0)
		return rc;
	timeout_ms -= (long)(now_mono_ms() - t0);   /* a credentials fetch took part of it */
	if (kc->reconnect) {
		/* A new multi handle: the old one's connection pool (kept-alive sockets) is closed. */
		CURLM *m = curl_multi_init();

		if (m != NULL) {
			curl_multi_cleanup(kc->multi);
			kc->multi = m;
			kc->reconnect = false;
			log_debug("connections to Kinesis dropped: the next request connects afresh");
		}
	}
	kc->reply_len = 0;
	kc->reply_truncated = false;
	if (kc->reply != NULL)
		kc->reply[0] = '\0';
	kc->error_type[0] = '\0';
	kc->curl_err[0] = '\0';
	kc->body = body;
	kc->body_len = len;
	kc->stale = kc->resigned = false;
	kc->timeout_ms = timeout_ms;
	curl_easy_setopt(kc->easy, CURLOPT_HTTPHEADER, kc->headers);
	curl_easy_setopt(kc->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(kc->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(kc->easy, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
	if (curl_multi_add_handle(kc->multi, kc->easy) != CURLM_OK)
		return -ENOMEM;
	kc->busy = true;
	kc->started_us = now_mono_us();
	return 0;
}

bool
kinesis_client_busy(const struct kinesis_client *kc)
{
	return kc->busy;
}

bool
kinesis_client_body_sent(const struct kinesis_client *kc)
{
	curl_off_t up = 0;

	if (!kc->busy)
		return false;
	curl_easy_getinfo(kc->easy, CURLINFO_SIZE_UPLOAD_T, &up);
	return up >= (curl_off_t)kc->body_len;
}

void
kinesis_client_abort(struct kinesis_client *kc)
{
	if (!kc->busy)
		return;
	curl_multi_remove_handle(kc->multi, kc->easy);
	kc->busy = false;
}

static int
kc_transport_errno(CURLcode c)
{
	switch (c) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		return -EPROTO;         /* the certificate cannot be trusted: not a passing glitch */
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
	case CURLE_WRITE_ERROR:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/*
 * Starts the request kc_prereq stopped again, signed for now, with what is left of its
 * timeout. Nothing was written yet: this is not a retry.
 */
static int
kc_resign(struct kinesis_client *kc)
{
	uint64_t held_ms = now_epoch_ms() - kc->signed_ms;
	long left = kc->timeout_ms - (long)((now_mono_us() - kc->started_us) / 1000);
	int rc;

	curl_multi_remove_handle(kc->multi, kc->easy);
	kc->stale = false;
	kc->resigned = true;
	if ((rc = kc_headers(kc, kc->body, kc->body_len, left)) < 0) {
		kc->busy = false;
		return rc;
	}
	log_info("a request was held %" PRIu64 " ms between signing and sending (a freeze): signed again",
	    held_ms);
	kc->reply_len = 0;
	kc->curl_err[0] = '\0';
	curl_easy_setopt(kc->easy, CURLOPT_HTTPHEADER, kc->headers);
	curl_easy_setopt(kc->easy, CURLOPT_TIMEOUT_MS, left > 0 ? left : 1L);
	if (curl_multi_add_handle(kc->multi, kc->easy) != CURLM_OK) {
		kc->busy = false;
		return -ENOMEM;
	}
	return 0;
}

int
kinesis_client_wait(struct kinesis_client *kc, struct pollfd *extra, unsigned nextra, int timeout_ms,
    struct kinesis_response *resp)
{
	struct curl_waitfd wfd[8];
	CURLMsg *msg;
	CURLMcode mc;
	int running, left, n;
	long req_size = 0;

	if (nextra > 8)
		return -EINVAL;
	for (unsigned i = 0; i < nextra; i++) {
		wfd[i].fd = extra[i].fd;
		wfd[i].events = (short)(extra[i].events ? extra[i].events : CURL_WAIT_POLLIN);
		wfd[i].revents = 0;
	}
	if (timeout_ms < 0)
		timeout_ms = 0;
	mc = curl_multi_poll(kc->multi, wfd, nextra, timeout_ms, &n);
	for (unsigned i = 0; i < nextra; i++)
		extra[i].revents = wfd[i].revents;
	if (mc != CURLM_OK)
		return -EIO;
	if (!kc->busy)
		return 0;
	if (curl_multi_perform(kc->multi, &running) != CURLM_OK)
		return -EIO;
	while ((msg = curl_multi_info_read(kc->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE || msg->easy_handle != kc->easy)
			continue;
		if (kc->stale && msg->data.result == CURLE_ABORTED_BY_CALLBACK && kc_resign(kc) == 0)
			continue;
		memset(resp, 0, sizeof(*resp));
		if (msg->data.result != CURLE_OK) {
			resp->transport_err = kc_transport_errno(msg->data.result);
			resp->transport_msg = kc->curl_err[0] ? kc->curl_err : curl_easy_strerror(msg->data.result);
		}
		curl_easy_getinfo(kc->easy, CURLINFO_RESPONSE_CODE, &resp->http_status);
		curl_easy_getinfo(kc->easy, CURLINFO_REQUEST_SIZE, &req_size);
		if (resp->transport_err == 0 && resp->http_status == 0)
			resp->transport_err = -EIO;
		resp->error_type = kc->error_type;
		resp->body = kc->reply != NULL ? kc->reply : "";
		resp->body_len = kc->reply_len;
		resp->wire_bytes = (uint64_t)req_size + kc->body_len;
		resp->elapsed_us = now_mono_us() - kc->started_us;
		curl_multi_remove_handle(kc->multi, kc->easy);
		kc->busy = false;
		return 1;
	}
	return 0;
}
