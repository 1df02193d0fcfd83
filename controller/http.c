#include "controller/http.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HTTP_MAX_HEADERS_BYTES 16384
#define HTTP_MAX_BODY          (1u << 24)

/* Finds "\r\n" in [p, end); returns its position or NULL. */
static const char *
http_find_crlf(const char *p, const char *end)
{
	for (; p + 1 < end; p++)
		if (p[0] == '\r' && p[1] == '\n')
			return p;
	return NULL;
}

/* Parses a decimal length; returns 0 or -EPROTO. Rejects signs, blanks and overflow. */
static int
http_parse_size(const char *p, const char *end, size_t *out, int base)
{
	uint64_t v = 0;
	int digits = 0;

	for (; p < end; p++) {
		int d;

		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			break;
		v = v * (uint64_t)base + (uint64_t)d;
		if (v > HTTP_MAX_BODY)
			return -EMSGSIZE;
		digits++;
	}
	if (digits == 0)
		return -EPROTO;
	/* Chunk sizes may carry extensions (";name=value"); lengths only blanks. */
	for (; p < end; p++) {
		if (*p == ';' && base == 16)
			break;
		if (*p != ' ' && *p != '\t')
			return -EPROTO;
	}
	*out = (size_t)v;
	return 0;
}

/*
 * Decodes a chunked body starting at body, in place. Returns 0 with the decoded
 * length and the bytes consumed, -EAGAIN if incomplete, -EPROTO if malformed.
 * Only compacts once the whole body is present, so an -EAGAIN leaves buf intact.
 */
static int
http_dechunk(char *body, const char *end, size_t *decoded, size_t *consumed)
{
	const char *p = body, *eol;
	size_t chunk, total = 0;
	int rc;

	/* First pass: validate and find the end, without touching the bytes. */
	for (;;) {
		if ((eol = http_find_crlf(p, end)) == NULL)
			return (size_t)(end - p) > 64 ? -EPROTO : -EAGAIN;
		if ((rc = http_parse_size(p, eol, &chunk, 16)) != 0)
			return rc;
		p = eol + 2;
		if (chunk == 0)
			break;
		if ((size_t)(end - p) < chunk + 2)
			return -EAGAIN;
		if (p[chunk] != '\r' || p[chunk + 1] != '\n')
			return -EPROTO;
		total += chunk;
		if (total > HTTP_MAX_BODY)
			return -EMSGSIZE;
		p += chunk + 2;
	}
	/* Trailers: header lines until an empty line. */
	for (;;) {
		if ((eol = http_find_crlf(p, end)) == NULL)
			return -EAGAIN;
		if (eol == p) {
			p += 2;
			break;
		}
		p = eol + 2;
	}
	*consumed = (size_t)(p - body);

	/* Second pass: move each chunk's data down. */
	{
		char *w = body;
		const char *q = body;

		for (;;) {
			eol = http_find_crlf(q, end);
			if (http_parse_size(q, eol, &chunk, 16) != 0)
				return -EPROTO;
			q = eol + 2;
			if (chunk == 0)
				break;
			memmove(w, q, chunk);
			w += chunk;
			q += chunk + 2;
		}
		*decoded = (size_t)(w - body);
	}
	return 0;
}

/* Compares a header name case-insensitively. */
static bool
http_header_is(const char *name, size_t namelen, const char *want)
{
	return namelen == strlen(want) && strncasecmp(name, want, namelen) == 0;
}

static bool
http_value_has_token(const char *v, size_t vlen, const char *token)
{
	size_t tl = strlen(token);

	for (size_t i = 0; i + tl <= vlen; i++)
		if (strncasecmp(v + i, token, tl) == 0)
			return true;
	return false;
}

int
http_parse_response(char *buf, size_t len, bool eof, struct http_response *r)
{
	const char *end = buf + len, *p, *eol, *hdr_end;
	bool have_length = false, chunked = false, http10;
	size_t content_length = 0, body_off;
	int rc;

	memset(r, 0, sizeof(*r));
	/* Skip interim 1xx responses (100 Continue) which carry no body. */
	p = buf;
	for (;;) {
		const char *s = p;

		/* The header block ends at the first empty line. */
		hdr_end = NULL;
		for (const char *q = s; (q = http_find_crlf(q, end)) != NULL; q += 2) {
			if (q + 3 < end && q[2] == '\r' && q[3] == '\n') {
				hdr_end = q + 2;
				break;
			}
			if (q + 3 >= end)
				break;
		}
		if (hdr_end == NULL)
			return (len - (size_t)(s - buf)) > HTTP_MAX_HEADERS_BYTES ? -EMSGSIZE :
			    (eof ? -EPROTO : -EAGAIN);

		/* Status line: HTTP/1.x SP 3DIGIT [SP reason] */
		eol = http_find_crlf(s, end);
		if (eol - s < 12 || strncmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
		    s[8] != ' ')
			return -EPROTO;
		http10 = s[7] == '0';
		for (int i = 9; i < 12; i++)
			if (s[i] < '0' || s[i] > '9')
				return -EPROTO;
		if (eol - s > 12 && s[12] != ' ')
			return -EPROTO;
		r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
		if (r->status < 100)
			return -EPROTO;
		p = eol + 2;
		if (r->status >= 200)
			break;
		p = hdr_end + 2;
	}
	r->keep_alive = !http10;

	/* Header lines. */
	while (p < hdr_end) {
		const char *colon, *v, *vend;

		eol = http_find_crlf(p, end);
		colon = memchr(p, ':', (size_t)(eol - p));
		if (colon == NULL || colon == p)
			return -EPROTO;
		for (const char *q = p; q < colon; q++)
			if (*q == ' ' || *q == '\t')
				return -EPROTO;
		v = colon + 1;
		vend = eol;
		while (v < vend && (*v == ' ' || *v == '\t'))
			v++;
		while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		if (http_header_is(p, (size_t)(colon - p), "Content-Length")) {
			size_t n;

			if ((rc = http_parse_size(v, vend, &n, 10)) != 0)
				return rc;
			if (have_length && n != content_length)
				return -EPROTO;
			content_length = n;
			have_length = true;
		} else if (http_header_is(p, (size_t)(colon - p), "Transfer-Encoding")) {
			if (http_value_has_token(v, (size_t)(vend - v), "chunked"))
				chunked = true;
		} else if (http_header_is(p, (size_t)(colon - p), "Connection")) {
			if (http_value_has_token(v, (size_t)(vend - v), "close"))
				r->keep_alive = false;
			else if (http_value_has_token(v, (size_t)(vend - v), "keep-alive"))
				r->keep_alive = true;
		} else if (http_header_is(p, (size_t)(colon - p), "Lambda-Extension-Identifier")) {
			if ((size_t)(vend - v) >= sizeof(r->ext_id))
				return -EMSGSIZE;
			memcpy(r->ext_id, v, (size_t)(vend - v));
			r->ext_id[vend - v] = '\0';
		}
		p = eol + 2;
	}
	body_off = (size_t)(hdr_end + 2 - buf);
	r->body_off = body_off;

	if (r->status == 204 || r->status == 304) {
		r->body_len = 0;
		r->total_len = body_off;
		return 0;
	}
	if (chunked) {
		size_t decoded, consumed;

		rc = http_dechunk(buf + body_off, end, &decoded, &consumed);
		if (rc == -EAGAIN && eof)
			return -EPROTO;
		if (rc != 0)
			return rc;
		r->body_len = decoded;
		r->total_len = body_off + consumed;
		return 0;
	}
	if (have_length) {
		if (len - body_off < content_length)
			return eof ? -EPROTO : -EAGAIN;
		r->body_len = content_length;
		r->total_len = body_off + content_length;
		return 0;
	}
	/* Neither: the body runs until the server closes. */
	if (!eof)
		return len - body_off > HTTP_MAX_BODY ? -EMSGSIZE : -EAGAIN;
	r->keep_alive = false;
	r->body_len = len - body_off;
	r->total_len = len;
	return 0;
}

int
http_format_request(char *out, size_t outlen, const char *method, const char *path,
    const char *host, const char *headers, const char *body, size_t bodylen)
{
	int n;

	if (body != NULL)
		n = snprintf(out, outlen, "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %zu\r\n\r\n",
		    method, path, host, headers != NULL ? headers : "", bodylen);
	else
		n = snprintf(out, outlen, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", method, path, host,
		    headers != NULL ? headers : "");
	if (n < 0 || (size_t)n >= outlen || (body != NULL && outlen - (size_t)n <= bodylen))
		return -ENOSPC;
	if (body != NULL) {
		memcpy(out + n, body, bodylen);
		n += (int)bodylen;
	}
	out[n] = '\0';
	return n;
}
