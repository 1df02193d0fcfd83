/*
 * AWS Signature Version 4, header signing (see sigv4.h and docs in aws-spec.md §4).
 *
 * canonical request = method \n canonical URI \n canonical query \n canonical
 * headers (each "name:value\n") \n signed header names \n hex(sha256(body));
 * string to sign = "AWS4-HMAC-SHA256" \n amz-date \n scope \n hex(sha256(creq));
 * key = HMAC chain over date, region, service, "aws4_request" from "AWS4"+secret.
 */
#include "sigv4.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* A growing NUL-terminated string; wiped before every free (it may hold a token). */
struct sbuf {
	char *p;
	size_t len;
	size_t cap;
	int err;
};

static void
sbuf_wipe_free(struct sbuf *b)
{
	if (b->p != NULL) {
		explicit_bzero(b->p, b->cap);
		free(b->p);
	}
	b->p = NULL;
	b->len = b->cap = 0;
}

static int
sbuf_reserve(struct sbuf *b, size_t more)
{
	size_t need, cap;
	char *np;

	if (b->err)
		return b->err;
	need = b->len + more + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	np = malloc(cap);
	if (np == NULL) {
		b->err = -ENOMEM;
		return b->err;
	}
	if (b->p != NULL) {
		memcpy(np, b->p, b->len + 1);
		explicit_bzero(b->p, b->cap);
		free(b->p);
	} else {
		np[0] = '\0';
	}
	b->p = np;
	b->cap = cap;
	return 0;
}

static void
sbuf_addn(struct sbuf *b, const char *s, size_t n)
{
	if (sbuf_reserve(b, n) != 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_addn(b, s, strlen(s));
}

static void
sbuf_addc(struct sbuf *b, char c)
{
	sbuf_addn(b, &c, 1);
}

/* Takes the string out of b (caller frees); NULL on an earlier allocation failure. */
static char *
sbuf_take(struct sbuf *b)
{
	char *s;

	if (b->err || sbuf_reserve(b, 0) != 0) {
		sbuf_wipe_free(b);
		return NULL;
	}
	s = b->p;
	b->p = NULL;
	b->len = b->cap = 0;
	return s;
}

static const char hexdig[] = "0123456789abcdef";

static void
hex_encode(const uint8_t *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[in[i] >> 4];
		out[2 * i + 1] = hexdig[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int
sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return -EIO;
	hex_encode(md, 32, out);
	return 0;
}

static int
hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32])
{
	unsigned int outlen = 0;

	if (HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen) == NULL || outlen != 32)
		return -EIO;
	return 0;
}

int
sigv4_amz_date(time_t now, char out[17])
{
	struct tm tm;

	if (gmtime_r(&now, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
		return -EINVAL;
	if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
		return -EINVAL;
	return 0;
}

static int
copy_env(char *dst, size_t cap, const char *name)
{
	const char *v = getenv(name);
	size_t n;

	dst[0] = '\0';
	if (v == NULL || v[0] == '\0')
		return -ENOENT;
	n = strlen(v);
	if (n >= cap)
		return -ENAMETOOLONG;
	memcpy(dst, v, n + 1);
	return 0;
}

int
sigv4_credentials_load(struct sigv4_credentials *c)
{
	int rc;

	sigv4_credentials_wipe(c);
	if ((rc = copy_env(c->access_key_id, sizeof(c->access_key_id), "AWS_ACCESS_KEY_ID")) != 0)
		goto fail;
	if ((rc = copy_env(c->secret_access_key, sizeof(c->secret_access_key),
	    "AWS_SECRET_ACCESS_KEY")) != 0)
		goto fail;
	rc = copy_env(c->session_token, sizeof(c->session_token), "AWS_SESSION_TOKEN");
	if (rc == -ENOENT)
		rc = 0;                 /* long-term keys: no token */
	if (rc != 0)
		goto fail;
	return 0;
fail:
	sigv4_credentials_wipe(c);
	return rc;
}

void
sigv4_credentials_wipe(struct sigv4_credentials *c)
{
	explicit_bzero(c, sizeof(*c));
}

void
sigv4_key_cache_wipe(struct sigv4_key_cache *k)
{
	explicit_bzero(k, sizeof(*k));
}

static bool
fits(const char *s, size_t cap)
{
	return strnlen(s, cap) < cap;
}

/* Returns the signing key for (date, region, service, cred) in key, through cache if any. */
static int
signing_key(struct sigv4_key_cache *cache, const struct sigv4_credentials *cred, const char *date,
    const char *region, const char *service, uint8_t key[32])
{
	char secret[4 + sizeof(cred->secret_access_key)];
	uint8_t k1[32], k2[32], k3[32];
	size_t slen;
	int rc;

	if (cache != NULL && cache->valid && strcmp(cache->date, date) == 0 &&
	    strcmp(cache->region, region) == 0 && strcmp(cache->service, service) == 0 &&
	    strcmp(cache->access_key_id, cred->access_key_id) == 0) {
		memcpy(key, cache->key, 32);
		return 0;
	}
	slen = strnlen(cred->secret_access_key, sizeof(cred->secret_access_key));
	memcpy(secret, "AWS4", 4);
	memcpy(secret + 4, cred->secret_access_key, slen);
	rc = hmac_sha256(secret, 4 + slen, date, strlen(date), k1);
	if (rc == 0)
		rc = hmac_sha256(k1, 32, region, strlen(region), k2);
	if (rc == 0)
		rc = hmac_sha256(k2, 32, service, strlen(service), k3);
	if (rc == 0)
		rc = hmac_sha256(k3, 32, "aws4_request", 12, key);
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(k1, sizeof(k1));
	explicit_bzero(k2, sizeof(k2));
	explicit_bzero(k3, sizeof(k3));
	if (rc != 0)
		return rc;
	if (cache != NULL) {
		uint64_t n = cache->derivations;

		sigv4_key_cache_wipe(cache);
		if (fits(region, sizeof(cache->region)) && fits(service, sizeof(cache->service)) &&
		    fits(cred->access_key_id, sizeof(cache->access_key_id))) {
			memcpy(cache->key, key, 32);
			memcpy(cache->date, date, 9);
			strcpy(cache->region, region);
			strcpy(cache->service, service);
			strcpy(cache->access_key_id, cred->access_key_id);
			cache->valid = true;
		}
		cache->derivations = n + 1;
	}
	return 0;
}

/* RFC 3986 unreserved characters stay; everything else is %XX (uppercase). */
static void
uri_encode(struct sbuf *b, const char *s, size_t n, bool keep_slash)
{
	static const char HEX[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
			sbuf_addc(b, (char)c);
		} else {
			char e[3] = { '%', HEX[c >> 4], HEX[c & 15] };

			sbuf_addn(b, e, 3);
		}
	}
}

/*
 * Canonical URI. With normalize: empty and "." segments dropped, ".." pops one,
 * a trailing slash kept when the path ended in "/", "/." or "/..".
 */
static void
canonical_uri(struct sbuf *b, const char *path, bool normalize)
{
	const char **seg = NULL;
	size_t *seglen = NULL, nseg = 0, n;
	const char *p, *e;
	bool trailing = false;

	if (path == NULL || path[0] == '\0')
		path = "/";
	if (!normalize) {
		uri_encode(b, path, strlen(path), true);
		return;
	}
	n = strlen(path);
	seg = malloc((n + 1) * sizeof(*seg));
	seglen = malloc((n + 1) * sizeof(*seglen));
	if (seg == NULL || seglen == NULL) {
		b->err = -ENOMEM;
		goto out;
	}
	for (p = path; *p != '\0'; p = *e ? e + 1 : e) {
		size_t l;

		e = strchr(p, '/');
		if (e == NULL)
			e = p + strlen(p);
		l = (size_t)(e - p);
		trailing = (*e == '/');
		if (l == 0)
			continue;
		if (l == 1 && p[0] == '.') {
			trailing = true;
			continue;
		}
		if (l == 2 && p[0] == '.' && p[1] == '.') {
			if (nseg > 0)
				nseg--;
			trailing = true;
			continue;
		}
		seg[nseg] = p;
		seglen[nseg++] = l;
	}
	sbuf_addc(b, '/');
	for (size_t i = 0; i < nseg; i++) {
		if (i > 0)
			sbuf_addc(b, '/');
		uri_encode(b, seg[i], seglen[i], false);
	}
	if (nseg > 0 && trailing)
		sbuf_addc(b, '/');
out:
	free(seg);
	free(seglen);
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes %XX escapes of s[0..n) and re-encodes the result into b. */
static void
query_component(struct sbuf *b, const char *s, size_t n)
{
	char *tmp = malloc(n + 1);
	size_t m = 0;

	if (tmp == NULL) {
		b->err = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		int h, l;

		if (s[i] == '%' && i + 2 < n &&
		    (h = hexval((unsigned char)s[i + 1])) >= 0 && (l = hexval((unsigned char)s[i + 2])) >= 0) {
			tmp[m++] = (char)(h << 4 | l);
			i += 2;
		} else {
			tmp[m++] = s[i];
		}
	}
	uri_encode(b, tmp, m, false);
	free(tmp);
}

struct qparam {
	char *key;
	char *value;
};

static int
qparam_cmp(const void *a, const void *b)
{
	const struct qparam *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c != 0 ? c : strcmp(x->value, y->value);
}

/* Canonical query: each key=value encoded, sorted by key then value, joined with '&'. */
static void
canonical_query(struct sbuf *b, const char *query)
{
	struct qparam *qp = NULL;
	size_t nq = 0, cap = 0;
	const char *p, *e;

	if (query == NULL || query[0] == '\0')
		return;
	for (p = query; ; p = e + 1) {
		const char *eq;
		struct sbuf k = { 0 }, v = { 0 };

		e = strchr(p, '&');
		if (e == NULL)
			e = p + strlen(p);
		if (e > p) {
			eq = memchr(p, '=', (size_t)(e - p));
			if (eq == NULL)
				eq = e;
			query_component(&k, p, (size_t)(eq - p));
			query_component(&v, eq < e ? eq + 1 : e, eq < e ? (size_t)(e - eq - 1) : 0);
			if (nq == cap) {
				struct qparam *nqp;

				cap = cap ? cap * 2 : 8;
				nqp = realloc(qp, cap * sizeof(*qp));
				if (nqp == NULL) {
					b->err = -ENOMEM;
					sbuf_wipe_free(&k);
					sbuf_wipe_free(&v);
					goto out;
				}
				qp = nqp;
			}
			qp[nq].key = sbuf_take(&k);
			qp[nq].value = sbuf_take(&v);
			if (qp[nq].key == NULL || qp[nq].value == NULL) {
				free(qp[nq].key);
				free(qp[nq].value);
				b->err = -ENOMEM;
				goto out;
			}
			nq++;
		}
		if (*e == '\0')
			break;
	}
	if (nq > 1)
		qsort(qp, nq, sizeof(*qp), qparam_cmp);
	for (size_t i = 0; i < nq; i++) {
		if (i > 0)
			sbuf_addc(b, '&');
		sbuf_adds(b, qp[i].key);
		sbuf_addc(b, '=');
		sbuf_adds(b, qp[i].value);
	}
out:
	for (size_t i = 0; i < nq; i++) {
		free(qp[i].key);
		free(qp[i].value);
	}
	free(qp);
}

struct cheader {
	char *name;                     /* lowercase */
	const char *value;
	size_t order;
};

static int
cheader_cmp(const void *a, const void *b)
{
	const struct cheader *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Appends value trimmed, with every run of whitespace collapsed to one space. */
static void
add_trimmed(struct sbuf *b, const char *v)
{
	bool space = false, any = false;

	if (strpbrk(v, " \t\r\n") == NULL) {          /* the common case: nothing to collapse */
		sbuf_adds(b, v);
		return;
	}
	for (; *v != '\0'; v++) {
		if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') {
			space = true;
			continue;
		}
		if (space && any)
			sbuf_addc(b, ' ');
		sbuf_addc(b, *v);
		space = false;
		any = true;
	}
}

static char *
lowercase_dup(const char *s)
{
	char *d = strdup(s);

	if (d != NULL)
		for (char *p = d; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return d;
}

int
sigv4_sign(struct sigv4_key_cache *cache, const struct sigv4_credentials *cred,
    const struct sigv4_request *req, const struct sigv4_params *p, struct sigv4_signed *out)
{
	struct sbuf creq = { 0 }, sts = { 0 }, sh = { 0 }, auth = { 0 };
	struct cheader *hs = NULL;
	size_t nh = 0, nextra;
	char date[9], creq_hash[65];
	uint8_t key[32], sig[32];
	bool token;
	int rc;

	memset(out, 0, sizeof(*out));
	if (cred == NULL || req == NULL || p == NULL || req->method == NULL || p->region == NULL ||
	    p->service == NULL || cred->access_key_id[0] == '\0' || cred->secret_access_key[0] == '\0' ||
	    (req->n_headers > 0 && req->headers == NULL) || (req->body_len > 0 && req->body == NULL) ||
	    !fits(cred->access_key_id, sizeof(cred->access_key_id)) ||
	    !fits(cred->secret_access_key, sizeof(cred->secret_access_key)) ||
	    !fits(cred->session_token, sizeof(cred->session_token)) ||
	    p->region[0] == '\0' || p->service[0] == '\0' ||
	    strchr(p->region, '/') != NULL || strchr(p->service, '/') != NULL)
		return -EINVAL;
	if ((rc = sigv4_amz_date(p->now, out->amz_date)) != 0)
		return rc;
	memcpy(date, out->amz_date, 8);
	date[8] = '\0';
	if ((rc = sigv4_sha256_hex(req->body_len ? req->body : "", req->body_len, out->payload_hash)) != 0)
		return rc;
	token = cred->session_token[0] != '\0' && !p->omit_session_token;

	/* Headers: the caller's, plus x-amz-date, the token and the payload hash. */
	nextra = 3;
	hs = calloc(req->n_headers + nextra, sizeof(*hs));
	if (hs == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < req->n_headers; i++) {
		if (req->headers[i].name == NULL || req->headers[i].value == NULL ||
		    req->headers[i].name[0] == '\0') {
			rc = -EINVAL;
			goto out;
		}
		hs[nh].value = req->headers[i].value;
		hs[nh].order = nh;
		if ((hs[nh++].name = lowercase_dup(req->headers[i].name)) == NULL) {
			rc = -ENOMEM;
			goto out;
		}
	}
	hs[nh].value = out->amz_date;
	hs[nh].order = nh;
	if ((hs[nh++].name = strdup("x-amz-date")) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (token) {
		hs[nh].value = cred->session_token;
		hs[nh].order = nh;
		if ((hs[nh++].name = strdup("x-amz-security-token")) == NULL) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if (p->sign_body) {
		hs[nh].value = out->payload_hash;
		hs[nh].order = nh;
		if ((hs[nh++].name = strdup("x-amz-content-sha256")) == NULL) {
			rc = -ENOMEM;
			goto out;
		}
	}
	qsort(hs, nh, sizeof(*hs), cheader_cmp);

	/* Canonical request. */
	sbuf_adds(&creq, req->method);
	sbuf_addc(&creq, '\n');
	canonical_uri(&creq, req->path, p->normalize_path);
	sbuf_addc(&creq, '\n');
	canonical_query(&creq, req->query);
	sbuf_addc(&creq, '\n');
	for (size_t i = 0; i < nh; i++) {
		bool same = i > 0 && strcmp(hs[i].name, hs[i - 1].name) == 0;

		if (same) {
			sbuf_addc(&creq, ',');
		} else {
			if (i > 0) {
				sbuf_addc(&creq, '\n');
				sbuf_addc(&sh, ';');
			}
			sbuf_adds(&creq, hs[i].name);
			sbuf_addc(&creq, ':');
			sbuf_adds(&sh, hs[i].name);
		}
		add_trimmed(&creq, hs[i].value);
	}
	sbuf_adds(&creq, "\n\n");
	sbuf_adds(&creq, sh.p ? sh.p : "");
	sbuf_addc(&creq, '\n');
	sbuf_adds(&creq, out->payload_hash);
	if ((rc = creq.err ? creq.err : sh.err) != 0)
		goto out;

	/* String to sign and signature. */
	if ((rc = sigv4_sha256_hex(creq.p, creq.len, creq_hash)) != 0)
		goto out;
	sbuf_adds(&sts, "AWS4-HMAC-SHA256\n");
	sbuf_adds(&sts, out->amz_date);
	sbuf_addc(&sts, '\n');
	sbuf_adds(&sts, date);
	sbuf_addc(&sts, '/');
	sbuf_adds(&sts, p->region);
	sbuf_addc(&sts, '/');
	sbuf_adds(&sts, p->service);
	sbuf_adds(&sts, "/aws4_request\n");
	sbuf_adds(&sts, creq_hash);
	if ((rc = sts.err) != 0)
		goto out;
	if ((rc = signing_key(cache, cred, date, p->region, p->service, key)) != 0)
		goto out;
	rc = hmac_sha256(key, sizeof(key), sts.p, sts.len, sig);
	explicit_bzero(key, sizeof(key));
	if (rc != 0)
		goto out;
	hex_encode(sig, sizeof(sig), out->signature);

	sbuf_adds(&auth, "AWS4-HMAC-SHA256 Credential=");
	sbuf_adds(&auth, cred->access_key_id);
	sbuf_addc(&auth, '/');
	sbuf_adds(&auth, date);
	sbuf_addc(&auth, '/');
	sbuf_adds(&auth, p->region);
	sbuf_addc(&auth, '/');
	sbuf_adds(&auth, p->service);
	sbuf_adds(&auth, "/aws4_request, SignedHeaders=");
	sbuf_adds(&auth, sh.p ? sh.p : "");
	sbuf_adds(&auth, ", Signature=");
	sbuf_adds(&auth, out->signature);

	out->canonical_request = sbuf_take(&creq);
	out->string_to_sign = sbuf_take(&sts);
	out->signed_headers = sbuf_take(&sh);
	out->authorization = sbuf_take(&auth);
	if (out->canonical_request == NULL || out->string_to_sign == NULL ||
	    out->signed_headers == NULL || out->authorization == NULL)
		rc = -ENOMEM;
out:
	for (size_t i = 0; i < nh; i++)
		free(hs[i].name);
	free(hs);
	sbuf_wipe_free(&creq);
	sbuf_wipe_free(&sts);
	sbuf_wipe_free(&sh);
	sbuf_wipe_free(&auth);
	explicit_bzero(sig, sizeof(sig));
	if (rc != 0)
		sigv4_signed_cleanup(out);
	return rc;
}

static void
wipe_free_str(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

void
sigv4_signed_cleanup(struct sigv4_signed *s)
{
	wipe_free_str(&s->canonical_request);
	wipe_free_str(&s->string_to_sign);
	wipe_free_str(&s->signed_headers);
	wipe_free_str(&s->authorization);
	explicit_bzero(s, sizeof(*s));
}

int
sigv4_sign_kinesis(struct sigv4_key_cache *cache, const struct sigv4_credentials *cred,
    const char *region, const char *host, const char *amz_target, const void *body,
    size_t body_len, time_t now, struct sigv4_kinesis_headers *out)
{
	return sigv4_sign_kinesis_path(cache, cred, region, host, "/", amz_target, body, body_len, now, out);
}

int
sigv4_sign_kinesis_path(struct sigv4_key_cache *cache, const struct sigv4_credentials *cred,
    const char *region, const char *host, const char *path, const char *amz_target, const void *body,
    size_t body_len, time_t now, struct sigv4_kinesis_headers *out)
{
	struct sigv4_header h[3];
	struct sigv4_request req = { 0 };
	struct sigv4_params p = { 0 };
	struct sigv4_signed s;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (cred == NULL || region == NULL || host == NULL || amz_target == NULL || path == NULL ||
	    host[0] == '\0' || amz_target[0] == '\0' || path[0] != '/')
		return -EINVAL;
	h[0] = (struct sigv4_header){ "content-type", SIGV4_KINESIS_CONTENT_TYPE };
	h[1] = (struct sigv4_header){ "host", host };
	h[2] = (struct sigv4_header){ "x-amz-target", amz_target };
	req.method = "POST";
	req.path = path;
	req.headers = h;
	req.n_headers = 3;
	req.body = body;
	req.body_len = body_len;
	p.region = region;
	p.service = "kinesis";
	p.now = now;
	p.normalize_path = true;
	if ((rc = sigv4_sign(cache, cred, &req, &p, &s)) != 0)
		return rc;
	n = strlen(s.authorization);
	if (n >= sizeof(out->authorization)) {
		rc = -ENAMETOOLONG;
	} else {
		memcpy(out->authorization, s.authorization, n + 1);
		memcpy(out->amz_date, s.amz_date, sizeof(out->amz_date));
	}
	sigv4_signed_cleanup(&s);
	return rc;
}
