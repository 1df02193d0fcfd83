#include "credentials.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "log.h"

#define CREDS_URI_MAX    2048
#define CREDS_TOKEN_MAX  8192
#define ECS_HOST         "http://169.254.170.2"

struct credentials_provider {
	enum credentials_source source;
	char uri[CREDS_URI_MAX];
	struct sigv4_credentials cred;
	bool have;                      /* cred holds a key pair */
	bool rejected;                  /* Kinesis refused it (or a restore): never use it again */
	int64_t expiration_ms;          /* container: Expiration; env: 0 (none) */
	int64_t refresh_at_ms;
	int64_t fetched_ms;             /* last fetch attempt */
	int64_t retry_at_ms;            /* after a failure: no fetch before this */
	unsigned failures;              /* failed fetches in a row */
	uint64_t fetches;
	bool env_warned;
	long fetch_timeout_ms;          /* 0: CREDENTIALS_TIMEOUT_MS */
	/* the reply of the fetch in progress */
	char *reply;
	size_t reply_len;
	bool reply_over;
};

/* ---- pure pieces ---- */

static int
two_digits(const char *s, int *v)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -EINVAL;
	*v = (s[0] - '0') * 10 + (s[1] - '0');
	return 0;
}

int
credentials_parse_time(const char *s, int64_t *epoch_ms)
{
	struct tm tm = { 0 };
	int y1, y2, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	int64_t ms = 0, scale = 100;
	time_t t;

	if (s == NULL || strlen(s) < 20)
		return -EINVAL;
	if (two_digits(s, &y1) || two_digits(s + 2, &y2) || s[4] != '-' || two_digits(s + 5, &mo) ||
	    s[7] != '-' || two_digits(s + 8, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    two_digits(s + 11, &h) || s[13] != ':' || two_digits(s + 14, &mi) || s[16] != ':' ||
	    two_digits(s + 17, &sec))
		return -EINVAL;
	s += 19;
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return -EINVAL;
		for (; *s >= '0' && *s <= '9'; s++, scale /= 10)
			ms += scale * (*s - '0');
	}
	if (*s == 'Z' || *s == 'z')
		s++;
	else if (*s == '+' || *s == '-') {
		sign = *s == '+' ? 1 : -1;
		if (two_digits(s + 1, &oh))
			return -EINVAL;
		s += 3;
		if (*s == ':')
			s++;
		if (two_digits(s, &om))
			return -EINVAL;
		s += 2;
	} else
		return -EINVAL;
	if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
	    oh > 23 || om > 59)
		return -EINVAL;
	tm.tm_year = y1 * 100 + y2 - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -EINVAL;
	*epoch_ms = (int64_t)t * 1000 + ms - (int64_t)sign * (oh * 3600 + om * 60) * 1000;
	return 0;
}

/* Copies the string member name of o into dst; -EINVAL if absent/empty/not a string. */
static int
copy_member(json_object *o, const char *name, char *dst, size_t cap, bool optional)
{
	json_object *v;
	const char *s;
	size_t n;

	dst[0] = '\0';
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
		return optional ? 0 : -EINVAL;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n == 0)
		return optional ? 0 : -EINVAL;
	if (n >= cap || memchr(s, '\0', n) != NULL)
		return n >= cap ? -ENAMETOOLONG : -EINVAL;
	memcpy(dst, s, n + 1);
	return 0;
}

/* Wipes the string values of o (json-c copied the secrets out of the reply). */
static void
wipe_members(json_object *o)
{
	json_object_object_foreach(o, key, v) {
		(void)key;
		if (json_object_is_type(v, json_type_string))
			explicit_bzero((char *)(uintptr_t)json_object_get_string(v),
			    (size_t)json_object_get_string_len(v));
	}
}

int
credentials_parse_reply(const char *body, size_t len, struct sigv4_credentials *out,
    int64_t *expiration_ms)
{
	char when[64];
	json_tokener *tok = NULL;
	json_object *o = NULL;
	int rc = -EINVAL;

	sigv4_credentials_wipe(out);
	if (len > CREDENTIALS_MAX_REPLY)
		return -E2BIG;
	if (body == NULL || len == 0 || (tok = json_tokener_new()) == NULL)
		goto out;
	o = json_tokener_parse_ex(tok, body, (int)len);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    tok->char_offset != (int)len || !json_object_is_type(o, json_type_object))
		goto out;
	if ((rc = copy_member(o, "AccessKeyId", out->access_key_id, sizeof(out->access_key_id),
	    false)) < 0 ||
	    (rc = copy_member(o, "SecretAccessKey", out->secret_access_key,
	    sizeof(out->secret_access_key), false)) < 0 ||
	    (rc = copy_member(o, "Token", out->session_token, sizeof(out->session_token), true)) < 0 ||
	    (rc = copy_member(o, "Expiration", when, sizeof(when), false)) < 0)
		goto out;
	rc = credentials_parse_time(when, expiration_ms);
out:
	if (o != NULL) {
		if (json_object_is_type(o, json_type_object))
			wipe_members(o);
		json_object_put(o);
	}
	if (tok != NULL)
		json_tokener_free(tok);
	if (rc < 0)
		sigv4_credentials_wipe(out);
	return rc;
}

int64_t
credentials_refresh_at(int64_t fetched_ms, int64_t expiration_ms)
{
	int64_t life = expiration_ms - fetched_ms, advance = CREDENTIALS_ADVANCE_MS;

	if (life <= 0)
		return fetched_ms;
	if (advance > life / 2)
		advance = life / 2;
	return expiration_ms - advance;
}

int64_t
credentials_retry_delay(unsigned failures)
{
	int64_t d = CREDENTIALS_RETRY_BASE_MS;

	if (failures == 0)
		return 0;
	for (unsigned i = 1; i < failures && d < CREDENTIALS_RETRY_MAX_MS; i++)
		d *= 2;
	return d > CREDENTIALS_RETRY_MAX_MS ? CREDENTIALS_RETRY_MAX_MS : d;
}

/* The SDKs fetch over plain http only from loopback and the ECS/EKS agents' addresses. */
static bool
host_allowed_plain(const char *host)
{
	static const char *const v4[] = { "169.254.170.2", "169.254.170.23", NULL };
	unsigned char a[16], b[16];

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, a) == 1) {
		if (a[0] == 127)
			return true;
		for (int i = 0; v4[i] != NULL; i++)
			if (strcmp(host, v4[i]) == 0)
				return true;
		return false;
	}
	if (inet_pton(AF_INET6, host, a) == 1) {
		if (inet_pton(AF_INET6, "::1", b) == 1 && memcmp(a, b, 16) == 0)
			return true;
		return inet_pton(AF_INET6, "fd00:ec2::23", b) == 1 && memcmp(a, b, 16) == 0;
	}
	return false;
}

int
credentials_uri_allowed(const char *uri)
{
	char host[256];
	const char *p, *end;
	size_t n;
	bool https;

	if (strncasecmp(uri, "https://", 8) == 0)
		https = true;
	else if (strncasecmp(uri, "http://", 7) == 0)
		https = false;
	else
		return -EINVAL;
	p = strstr(uri, "://") + 3;
	end = p + strcspn(p, "/?#");
	if (memchr(p, '@', (size_t)(end - p)) != NULL)
		return -EINVAL;         /* userinfo: not something Lambda or ECS hand out */
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (close == NULL)
			return -EINVAL;
		p++;
		n = (size_t)(close - p);
	} else
		n = strcspn(p, ":/?#");
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, p, n);
	host[n] = '\0';
	if (https)
		return 0;
	return host_allowed_plain(host) ? 0 : -EPERM;
}

int
credentials_auth_token(char *out, size_t outlen)
{
	const char *file = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *env = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	size_t n = 0;
	ssize_t r;
	int fd, rc = 0;

	out[0] = '\0';
	if (file != NULL && file[0] != '\0') {
		if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
			return -errno;
		while (n < outlen && (r = read(fd, out + n, outlen - n)) != 0) {
			if (r < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				break;
			}
			n += (size_t)r;
		}
		close(fd);
		if (rc == 0 && n >= outlen)
			rc = -ENAMETOOLONG;
		if (rc < 0) {
			explicit_bzero(out, outlen);
			return rc;
		}
		out[n] = '\0';
		while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ' ||
		    out[n - 1] == '\t'))
			out[--n] = '\0';
	} else if (env != NULL) {
		n = strlen(env);
		if (n >= outlen)
			return -ENAMETOOLONG;
		memcpy(out, env, n + 1);
	}
	if (strpbrk(out, "\r\n") != NULL || strlen(out) != n) {
		explicit_bzero(out, outlen);
		return -EINVAL;
	}
	return 0;
}

/* ---- the provider ---- */

static void
set_err(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
}

struct credentials_provider *
credentials_provider_new(char *err, size_t errlen)
{
	struct credentials_provider *p;
	const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	int rc, e = 0;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	set_err(err, errlen, "");
	rc = sigv4_credentials_load(&p->cred);
	if (rc == 0) {
		p->source = CREDENTIALS_ENV;
		p->have = true;
		return p;
	}
	if (rc == -ENAMETOOLONG) {
		set_err(err, errlen, "an AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN "
		    "value is too long");
		e = ENAMETOOLONG;
		goto fail;
	}
	if (rel != NULL && rel[0] != '\0' && (full == NULL || full[0] == '\0')) {
		/* The SDKs put a relative URI on the ECS agent's address. */
		if (rel[0] != '/' || strlen(ECS_HOST) + strlen(rel) >= sizeof(p->uri)) {
			set_err(err, errlen, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a path");
			e = EINVAL;
			goto fail;
		}
		snprintf(p->uri, sizeof(p->uri), "%s%s", ECS_HOST, rel);
	} else if (full != NULL && full[0] != '\0') {
		if (strlen(full) >= sizeof(p->uri)) {
			set_err(err, errlen, "AWS_CONTAINER_CREDENTIALS_FULL_URI is too long");
			e = ENAMETOOLONG;
			goto fail;
		}
		snprintf(p->uri, sizeof(p->uri), "%s", full);
		if ((rc = credentials_uri_allowed(p->uri)) < 0) {
			set_err(err, errlen, rc == -EPERM ?
			    "AWS_CONTAINER_CREDENTIALS_FULL_URI is plain http to a host that is neither "
			    "loopback nor the ECS/EKS agent: refused, as the AWS SDKs do" :
			    "AWS_CONTAINER_CREDENTIALS_FULL_URI is not an http(s) URL");
			e = -rc;
			goto fail;
		}
	} else {
		set_err(err, errlen, "neither AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY nor "
		    "AWS_CONTAINER_CREDENTIALS_FULL_URI is set");
		e = ENOENT;
		goto fail;
	}
	p->source = CREDENTIALS_CONTAINER;
	return p;
fail:
	credentials_provider_free(p);
	errno = e;
	return NULL;
}

void
credentials_provider_free(struct credentials_provider *p)
{
	if (p == NULL)
		return;
	free(p->reply);
	explicit_bzero(p, sizeof(*p));
	free(p);
}

enum credentials_source
credentials_source(const struct credentials_provider *p)
{
	return p->source;
}

const char *
credentials_source_name(const struct credentials_provider *p)
{
	switch (p->source) {
	case CREDENTIALS_ENV:
		return "environment";
	case CREDENTIALS_CONTAINER:
		return "container";
	default:
		return "none";
	}
}

void
credentials_set_fetch_timeout(struct credentials_provider *p, long timeout_ms)
{
	if (timeout_ms > CREDENTIALS_TIMEOUT_MS)
		timeout_ms = CREDENTIALS_TIMEOUT_MS;
	p->fetch_timeout_ms = timeout_ms < 1 ? 1 : timeout_ms;
}

bool
credentials_failing(const struct credentials_provider *p)
{
	return p->failures > 0;
}

uint64_t
credentials_fetches(const struct credentials_provider *p)
{
	return p->fetches;
}

static size_t
on_reply(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct credentials_provider *p = ud;
	size_t n = size * nmemb;

	if (p->reply_len + n > CREDENTIALS_MAX_REPLY) {
		p->reply_over = true;
		return 0;               /* aborts the transfer */
	}
	memcpy(p->reply + p->reply_len, ptr, n);
	p->reply_len += n;
	return n;
}

/* One GET of the container endpoint into next. 0, or -errno with why filled (no secrets). */
static int
fetch(struct credentials_provider *p, struct sigv4_credentials *next, int64_t *expiration,
    char *why, size_t whylen)
{
	char *token = NULL, *auth = NULL;
	struct curl_slist *hdr = NULL;
	CURL *c = NULL;
	CURLcode cc;
	long status = 0;
	int rc;

	p->reply_len = 0;
	p->reply_over = false;
	if (p->reply == NULL && (p->reply = malloc(CREDENTIALS_MAX_REPLY + 1)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if ((token = malloc(CREDS_TOKEN_MAX)) == NULL || (auth = malloc(CREDS_TOKEN_MAX + 32)) == NULL) {
		snprintf(why, whylen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = credentials_auth_token(token, CREDS_TOKEN_MAX)) < 0) {
		snprintf(why, whylen, "cannot read the authorization token (%s): %s",
		    getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") ? "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" :
		    "AWS_CONTAINER_AUTHORIZATION_TOKEN", strerror(-rc));
		goto out;
	}
	if ((c = curl_easy_init()) == NULL) {
		snprintf(why, whylen, "cannot set up libcurl");
		rc = -ENOMEM;
		goto out;
	}
	if (token[0] != '\0') {
		snprintf(auth, CREDS_TOKEN_MAX + 32, "Authorization: %s", token);
		if ((hdr = curl_slist_append(NULL, auth)) == NULL) {
			rc = -ENOMEM;
			snprintf(why, whylen, "out of memory");
			goto out;
		}
	}
	curl_easy_setopt(c, CURLOPT_URL, p->uri);
	curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CREDENTIALS_CONNECT_MS);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, p->fetch_timeout_ms > 0 ? p->fetch_timeout_ms :
	    CREDENTIALS_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_reply);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, p);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "kinesis-telemetry-extension/1");
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (p->reply_over) {
		snprintf(why, whylen, "reply larger than %u bytes", CREDENTIALS_MAX_REPLY);
		rc = -E2BIG;
		goto out;
	}
	if (cc != CURLE_OK) {
		snprintf(why, whylen, "%s", curl_easy_strerror(cc));
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
		goto out;
	}
	if (status != 200) {
		snprintf(why, whylen, "HTTP %ld", status);
		rc = status == 401 || status == 403 ? -EACCES : -EIO;
		goto out;
	}
	rc = credentials_parse_reply(p->reply, p->reply_len, next, expiration);
	if (rc < 0)
		snprintf(why, whylen, "%s", rc == -ENAMETOOLONG ? "a value in the reply is too long" :
		    "the reply is not JSON with AccessKeyId, SecretAccessKey and an ISO 8601 Expiration");
out:
	if (p->reply != NULL)
		explicit_bzero(p->reply, p->reply_len);
	p->reply_len = 0;
	if (hdr != NULL) {
		explicit_bzero(hdr->data, strlen(hdr->data));
		curl_slist_free_all(hdr);
	}
	if (c != NULL)
		curl_easy_cleanup(c);
	if (auth != NULL) {
		explicit_bzero(auth, CREDS_TOKEN_MAX + 32);
		free(auth);
	}
	if (token != NULL) {
		explicit_bzero(token, CREDS_TOKEN_MAX);
		free(token);
	}
	return rc;
}

/* Fetches now and takes the result in; returns 0 or -errno. */
static int
refresh(struct credentials_provider *p, int64_t now_ms)
{
	struct sigv4_credentials next;
	int64_t exp = 0;
	char why[256] = "";
	int rc;

	p->fetched_ms = now_ms;
	p->fetches++;
	rc = fetch(p, &next, &exp, why, sizeof(why));
	if (rc == 0 && exp <= now_ms) {
		rc = -ESTALE;
		snprintf(why, sizeof(why), "the credentials served expired already (clock skew?)");
	}
	if (rc < 0) {
		sigv4_credentials_wipe(&next);
		p->failures++;
		p->retry_at_ms = now_ms + credentials_retry_delay(p->failures);
		if (p->failures == 1)
			log_warnx("cannot fetch credentials from the container endpoint: %s; %s, retrying "
			    "with backoff", why, p->have && !p->rejected && now_ms < p->expiration_ms ?
			    "keeping the current ones until they expire" : "requests wait for them");
		return rc;
	}
	if (p->failures > 0)
		log_info("credentials fetched again after %u failed attempt(s)", p->failures);
	else
		log_debug("credentials fetched, valid for %" PRId64 " s", (exp - now_ms) / 1000);
	sigv4_credentials_wipe(&p->cred);
	p->cred = next;
	sigv4_credentials_wipe(&next);
	p->have = true;
	p->rejected = false;
	p->failures = 0;
	p->expiration_ms = exp;
	p->refresh_at_ms = credentials_refresh_at(now_ms, exp);
	return 0;
}

static bool
usable(const struct credentials_provider *p, int64_t now_ms)
{
	if (!p->have || p->rejected)
		return false;
	return p->source == CREDENTIALS_ENV || now_ms < p->expiration_ms;
}

int64_t
credentials_retry_at(const struct credentials_provider *p)
{
	int64_t t = 0;

	if (p->failures > 0)
		t = p->retry_at_ms;
	if (p->rejected && p->fetched_ms + CREDENTIALS_MIN_REFETCH_MS > t)
		t = p->fetched_ms + CREDENTIALS_MIN_REFETCH_MS;
	return t;
}

int
credentials_get(struct credentials_provider *p, int64_t now_ms, struct sigv4_credentials *out)
{
	bool due;

	if (p->source == CREDENTIALS_NONE)
		return -ENOENT;
	if (p->source == CREDENTIALS_CONTAINER) {
		due = !p->have || p->rejected || now_ms >= p->refresh_at_ms;
		if (due && now_ms >= credentials_retry_at(p))
			(void)refresh(p, now_ms);       /* failure: keep what is held, logged there */
	}
	if (!usable(p, now_ms))
		return -EAGAIN;
	*out = p->cred;
	return 0;
}

void
credentials_invalidate(struct credentials_provider *p, int64_t now_ms)
{
	(void)now_ms;
	if (p->source == CREDENTIALS_ENV) {
		if (!p->env_warned)
			log_warnx("Kinesis rejected the credentials from AWS_ACCESS_KEY_ID: environment "
			    "credentials cannot be refreshed in a running process");
		p->env_warned = true;
		return;
	}
	if (p->have && !p->rejected)
		log_info("credentials rejected or stale: fetching fresh ones");
	p->rejected = true;
}
