/*
 * One-pass JSON validator and array splitter (see batch_split.h).
 *
 * The parser is iterative: the kinds of the open containers live in a bit stack
 * (1 = object, 0 = array), so a hostile body cannot exhaust the C stack and the
 * depth limit is a plain comparison. Strings are scanned with a byte-class table so
 * that plain ASCII costs one load and one compare per byte.
 *
 * Depths below are relative to the element being parsed: 0 is the element itself,
 * 1 the inside of the event object, 2 the inside of its "record" object.
 */
#include "batch_split.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

enum { KEY_OTHER = 0, KEY_TYPE, KEY_RECORD, KEY_DROPPED, KEY_LEVEL, KEY_REQUEST_ID };

struct split {
	const uint8_t *base, *p, *end;
	const char *what;               /* error text; its position is p */
	struct batch_event ev;
	char type_buf[BATCH_TYPE_MAX];
};

/* Byte classes inside a string: 0 plain, 1 quote, 2 backslash, 3 control, 4 non-ASCII. */
static const uint8_t str_class[256] = {
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

#define SWAR_ONES  0x0101010101010101ull
#define SWAR_HIGHS 0x8080808080808080ull

/*
 * Nonzero when one of the 8 bytes in v is not plain string content: below 0x20, a
 * quote, a backslash, or non-ASCII. (x - ones) & ~x & highs is nonzero exactly when
 * x has a zero byte; x ^ (c * ones) turns bytes equal to c into zeros. Borrows only
 * run upwards, so the lowest flagged byte is always a true one (higher flags may not be).
 */
static inline uint64_t
swar_special(uint64_t v)
{
	uint64_t lt20 = (v - SWAR_ONES * 0x20) & ~v;
	uint64_t q = v ^ (SWAR_ONES * '"'), bs = v ^ (SWAR_ONES * '\\');

	return (lt20 | ((q - SWAR_ONES) & ~q) | ((bs - SWAR_ONES) & ~bs) | v) & SWAR_HIGHS;
}

static inline void
skip_ws(struct split *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

static int
fail(struct split *s, const char *what)
{
	s->what = what;
	return -EBADMSG;
}

static int
hex4(const uint8_t *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		uint8_t c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* Validates one UTF-8 sequence starting at s->p (a byte >= 0x80) and steps over it. */
static int
utf8_step(struct split *s)
{
	const uint8_t *p = s->p;
	size_t avail = (size_t)(s->end - p);
	uint8_t c = p[0], lo = 0x80, hi = 0xbf;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;      /* U+D800..U+DFFF are not characters */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;      /* nothing above U+10FFFF */
	} else
		return fail(s, "invalid UTF-8 lead byte");
	if (avail < n)
		return fail(s, "truncated UTF-8 sequence");
	if (p[1] < lo || p[1] > hi)
		return fail(s, "invalid UTF-8 sequence");
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return fail(s, "invalid UTF-8 sequence");
	s->p += n;
	return 0;
}

/*
 * Scans a string starting at its opening quote. On success s->p is past the closing
 * quote, [*start, *stop) is the raw content and *escaped says whether it holds escapes.
 */
static int
scan_string(struct split *s, const uint8_t **start, const uint8_t **stop, bool *escaped)
{
	const uint8_t *p = s->p + 1, *end = s->end;
	unsigned cp, lo;
	int rc;

	*start = p;
	*escaped = false;
	for (;;) {
		/* Eight bytes at a time; the lowest flagged byte is exactly the first special one. */
		while (end - p >= 8) {
			uint64_t v, m;

			memcpy(&v, p, sizeof(v));
			if ((m = swar_special(v)) != 0) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
				p += __builtin_ctzll(m) >> 3;
#endif
				break;
			}
			p += 8;
		}
		while (p < end && str_class[*p] == 0)
			p++;
		if (p >= end) {
			s->p = p;
			return fail(s, "unterminated string");
		}
		switch (str_class[*p]) {
		case 1:
			*stop = p;
			s->p = p + 1;
			return 0;
		case 2:
			*escaped = true;
			if (end - p < 2) {
				s->p = p;
				return fail(s, "truncated escape");
			}
			switch (p[1]) {
			case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
				p += 2;
				continue;
			case 'u':
				break;
			default:
				s->p = p;
				return fail(s, "invalid escape");
			}
			if (end - p < 6 || hex4(p + 2, &cp) != 0) {
				s->p = p;
				return fail(s, "invalid \\u escape");
			}
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				s->p = p;
				return fail(s, "unpaired low surrogate");
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &lo) != 0 ||
				    lo < 0xdc00 || lo > 0xdfff) {
					s->p = p;
					return fail(s, "unpaired high surrogate");
				}
				p += 12;
			} else
				p += 6;
			continue;
		case 3:
			s->p = p;
			return fail(s, "control character in string");
		default:
			s->p = p;
			if ((rc = utf8_step(s)) != 0)
				return rc;
			p = s->p;
			continue;
		}
	}
}

/* Appends code point cp as UTF-8 to out (room for 4 bytes is the caller's concern). */
static size_t
utf8_put(char *out, unsigned cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Decodes an already validated string's raw content into out. Returns the decoded
 * length, or -1 if it does not fit (decoded text is never longer than the raw text).
 */
static long
unescape(const uint8_t *p, const uint8_t *stop, char *out, size_t outlen)
{
	size_t n = 0;
	unsigned cp, lo;

	if ((size_t)(stop - p) > outlen)
		return -1;
	while (p < stop) {
		if (*p != '\\') {
			out[n++] = (char)*p++;
			continue;
		}
		switch (p[1]) {
		case 'b': out[n++] = '\b'; break;
		case 'f': out[n++] = '\f'; break;
		case 'n': out[n++] = '\n'; break;
		case 'r': out[n++] = '\r'; break;
		case 't': out[n++] = '\t'; break;
		case 'u':
			(void)hex4(p + 2, &cp);
			if (cp >= 0xd800 && cp <= 0xdbff) {
				(void)hex4(p + 8, &lo);
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p += 6;
			}
			n += utf8_put(out + n, cp);
			p += 6;
			continue;
		default: out[n++] = (char)p[1]; break;
		}
		p += 2;
	}
	return (long)n;
}

/* Compares a string's content with a literal, decoding escapes when there are any. */
static bool
str_equals(const uint8_t *start, const uint8_t *stop, bool escaped, const char *lit, size_t litlen)
{
	char buf[32];
	long n;

	if (!escaped)
		return (size_t)(stop - start) == litlen && memcmp(start, lit, litlen) == 0;
	n = unescape(start, stop, buf, sizeof(buf));
	return n == (long)litlen && memcmp(buf, lit, litlen) == 0;
}

#define STR_EQ(a, b, e, lit) str_equals((a), (b), (e), (lit), sizeof(lit) - 1)

int
batch_level_parse(const char *s, size_t len)
{
	static const struct { const char *name; int level; } names[] = {
		{ "trace", RECORD_LEVEL_TRACE }, { "debug", RECORD_LEVEL_DEBUG },
		{ "info", RECORD_LEVEL_INFO }, { "warn", RECORD_LEVEL_WARN },
		{ "warning", RECORD_LEVEL_WARN }, { "error", RECORD_LEVEL_ERROR },
		{ "fatal", RECORD_LEVEL_FATAL }, { "critical", RECORD_LEVEL_FATAL },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == len && strncasecmp(s, names[i].name, len) == 0)
			return names[i].level;
	return RECORD_LEVEL_NONE;
}

static enum event_kind
type_kind(const char *t, size_t n)
{
#define KIND(lit, k) if (n == sizeof(lit) - 1 && memcmp(t, lit, n) == 0) return k
	KIND("function", EVENT_FUNCTION);
	KIND("platform.runtimeDone", EVENT_RUNTIME_DONE);
	KIND("platform.report", EVENT_REPORT);
	KIND("extension", EVENT_EXTENSION);
	KIND("platform.logsDropped", EVENT_LOGS_DROPPED);
#undef KIND
	return EVENT_OTHER;
}

static void
capture_type(struct split *s, const uint8_t *start, const uint8_t *stop, bool escaped)
{
	long n;

	if (!escaped) {
		s->ev.type = (const char *)start;
		s->ev.type_len = (size_t)(stop - start);
	} else if ((n = unescape(start, stop, s->type_buf, sizeof(s->type_buf))) >= 0) {
		s->ev.type = s->type_buf;
		s->ev.type_len = (size_t)n;
	} else {
		s->ev.type = NULL;
		s->ev.type_len = 0;
	}
	s->ev.kind = s->ev.type != NULL ? type_kind(s->ev.type, s->ev.type_len) : EVENT_OTHER;
}

static void
capture_level(struct split *s, const uint8_t *start, const uint8_t *stop, bool escaped)
{
	char buf[16];
	long n;

	if (!escaped) {
		s->ev.level = batch_level_parse((const char *)start, (size_t)(stop - start));
		return;
	}
	n = unescape(start, stop, buf, sizeof(buf));
	s->ev.level = n >= 0 ? batch_level_parse(buf, (size_t)n) : RECORD_LEVEL_NONE;
}

/* Scans a number; if want is non-NULL, stores its value when it is a non-negative integer. */
static int
scan_number(struct split *s, uint64_t *want)
{
	const uint8_t *p = s->p, *end = s->end;
	uint64_t v = 0;
	bool integer = true, neg = false;

	if (*p == '-') {
		neg = true;
		p++;
	}
	if (p >= end)
		goto bad;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9') {
		while (p < end && *p >= '0' && *p <= '9') {
			v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(*p - '0');
			p++;
		}
	} else
		goto bad;
	if (p < end && *p == '.') {
		integer = false;
		p++;
		if (p >= end || *p < '0' || *p > '9')
			goto bad;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		integer = false;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			goto bad;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	s->p = p;
	if (want != NULL && integer && !neg)
		*want = v;
	return 0;
bad:
	s->p = p;
	return fail(s, "invalid number");
}

static int
scan_literal(struct split *s, const char *lit, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
		return fail(s, "invalid literal");
	s->p += n;
	return 0;
}

/*
 * Parses one element (any JSON value) starting at s->p, filling the captured fields
 * of s->ev. max_depth is how many containers the element may open.
 */
static int
parse_element(struct split *s, int max_depth)
{
	uint64_t objbits = 0;           /* bit d-1 set: container at depth d is an object */
	int depth = 0, key1 = KEY_OTHER, key2 = KEY_OTHER, rc;
	bool in_record = false, escaped;
	const uint8_t *a, *b;

value:
	skip_ws(s);
	if (s->p >= s->end)
		return fail(s, "truncated: value expected");
	switch (*s->p) {
	case '{':
		if (depth >= max_depth)
			return fail(s, "nesting too deep");
		if (depth == 1 && key1 == KEY_RECORD && (objbits & 1))
			in_record = true;
		depth++;
		objbits |= 1ull << (depth - 1);
		s->p++;
		skip_ws(s);
		if (s->p < s->end && *s->p == '}') {
			s->p++;
			goto close;
		}
		goto key;
	case '[':
		if (depth >= max_depth)
			return fail(s, "nesting too deep");
		depth++;
		objbits &= ~(1ull << (depth - 1));
		s->p++;
		skip_ws(s);
		if (s->p < s->end && *s->p == ']') {
			s->p++;
			goto close;
		}
		goto value;
	case '"':
		if ((rc = scan_string(s, &a, &b, &escaped)) != 0)
			return rc;
		if (depth == 1 && key1 == KEY_TYPE && (objbits & 1))
			capture_type(s, a, b, escaped);
		else if (depth == 2 && in_record && key2 == KEY_LEVEL)
			capture_level(s, a, b, escaped);
		else if (depth == 2 && in_record && key2 == KEY_REQUEST_ID) {
			s->ev.request_id = a;
			s->ev.request_id_len = (size_t)(b - a);
			s->ev.request_id_escaped = escaped;
		}
		break;
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		rc = scan_number(s, depth == 2 && in_record && key2 == KEY_DROPPED ?
		    &s->ev.dropped_records : NULL);
		if (rc != 0)
			return rc;
		break;
	case 't':
		if ((rc = scan_literal(s, "true", 4)) != 0)
			return rc;
		break;
	case 'f':
		if ((rc = scan_literal(s, "false", 5)) != 0)
			return rc;
		break;
	case 'n':
		if ((rc = scan_literal(s, "null", 4)) != 0)
			return rc;
		break;
	default:
		return fail(s, "invalid value");
	}

next:
	/* A value inside the container at `depth` is complete. */
	if (depth == 0)
		return 0;
	skip_ws(s);
	if (s->p >= s->end)
		return fail(s, "truncated: ',' or end of container expected");
	if (*s->p == ',') {
		s->p++;
		if (objbits & (1ull << (depth - 1)))
			goto key;
		goto value;
	}
	if (*s->p != ((objbits & (1ull << (depth - 1))) ? '}' : ']'))
		return fail(s, "',' or end of container expected");
	s->p++;
close:
	if (depth == 2)
		in_record = false;
	depth--;
	goto next;

key:
	skip_ws(s);
	if (s->p >= s->end)
		return fail(s, "truncated: object key expected");
	if (*s->p != '"')
		return fail(s, "object key expected");
	if ((rc = scan_string(s, &a, &b, &escaped)) != 0)
		return rc;
	if (depth == 1) {
		key1 = STR_EQ(a, b, escaped, "type") ? KEY_TYPE :
		    STR_EQ(a, b, escaped, "record") ? KEY_RECORD : KEY_OTHER;
	} else if (depth == 2 && in_record) {
		key2 = STR_EQ(a, b, escaped, "level") ? KEY_LEVEL :
		    STR_EQ(a, b, escaped, "droppedRecords") ? KEY_DROPPED :
		    STR_EQ(a, b, escaped, "requestId") ? KEY_REQUEST_ID : KEY_OTHER;
	}
	skip_ws(s);
	if (s->p >= s->end)
		return fail(s, "truncated: ':' expected");
	if (*s->p != ':')
		return fail(s, "':' expected");
	s->p++;
	goto value;
}

int
batch_split(const uint8_t *body, size_t len, batch_event_fn fn, void *ctx, size_t *count,
    struct batch_split_error *err)
{
	struct split s = { .base = body, .p = body, .end = body + len };
	size_t n = 0;
	int rc;

	if (count != NULL)
		*count = 0;
	skip_ws(&s);
	if (s.p >= s.end) {
		s.what = "empty body";
		rc = -ENODATA;
		goto out;
	}
	if (*s.p != '[') {
		s.what = "not a JSON array";
		rc = -EPROTOTYPE;
		goto out;
	}
	s.p++;
	skip_ws(&s);
	if (s.p < s.end && *s.p == ']') {
		s.p++;
		goto end;
	}
	for (;;) {
		skip_ws(&s);
		memset(&s.ev, 0, sizeof(s.ev));
		s.ev.level = RECORD_LEVEL_NONE;
		s.ev.index = n;
		s.ev.data = s.p;
		if ((rc = parse_element(&s, BATCH_MAX_DEPTH - 1)) != 0)
			goto out;
		s.ev.len = (size_t)(s.p - s.ev.data);
		if (fn != NULL && (rc = fn(ctx, &s.ev)) < 0) {
			s.what = "stopped by the caller";
			goto out;
		}
		n++;
		skip_ws(&s);
		if (s.p >= s.end) {
			rc = fail(&s, "truncated: ',' or ']' expected");
			goto out;
		}
		if (*s.p == ']') {
			s.p++;
			break;
		}
		if (*s.p != ',') {
			rc = fail(&s, "',' or ']' expected");
			goto out;
		}
		s.p++;
	}
end:
	skip_ws(&s);
	if (s.p != s.end) {
		rc = fail(&s, "trailing data after the array");
		goto out;
	}
	if (count != NULL)
		*count = n;
	return 0;
out:
	if (err != NULL) {
		err->offset = (size_t)(s.p - s.base);
		err->what = s.what;
	}
	return rc;
}
