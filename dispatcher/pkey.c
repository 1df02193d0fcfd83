#include "pkey.h"

#include <errno.h>
#include "event_type.h"
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* A minimal JSON walker: enough structure to find two members, bounds-checked. */
struct scan {
	const uint8_t *p, *end;
};

static void
scan_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* At an opening quote: sets the raw contents and moves past the closing quote. */
static int
scan_string(struct scan *s, const uint8_t **str, size_t *len)
{
	const uint8_t *start;

	if (s->p >= s->end || *s->p != '"')
		return -EINVAL;
	start = ++s->p;
	while (s->p < s->end) {
		/* Jump to the next quote; only a backslash before it needs the slow walk. */
		const uint8_t *q = memchr(s->p, '"', (size_t)(s->end - s->p)), *bs;

		if (q == NULL)
			return -EINVAL;
		bs = memchr(s->p, '\\', (size_t)(q - s->p));
		if (bs == NULL) {
			*str = start;
			*len = (size_t)(q - start);
			s->p = q + 1;
			return 0;
		}
		s->p = bs + 2;          /* skip the escape and its character, then look again */
	}
	return -EINVAL;
}

/* Skips any value; nesting is tracked by depth alone (the listener validated the JSON). */
static int
scan_skip(struct scan *s)
{
	const uint8_t *str;
	size_t len;
	int depth = 0;

	scan_ws(s);
	do {
		if (s->p >= s->end)
			return -EINVAL;
		switch (*s->p) {
		case '"':
			if (scan_string(s, &str, &len) < 0)
				return -EINVAL;
			continue;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (--depth < 0)
				return -EINVAL;
			break;
		default:
			if (depth == 0) {
				/* A number or literal: up to the next delimiter. */
				while (s->p < s->end && *s->p != ',' && *s->p != '}' && *s->p != ']' &&
				    *s->p != ' ' && *s->p != '\n' && *s->p != '\r' && *s->p != '\t')
					s->p++;
				return 0;
			}
		}
		s->p++;
	} while (depth > 0);
	return 0;
}

/*
 * Walks the members of the object at s->p; for each, calls visit with the key and
 * leaves s->p at the value. visit returns 1 if it consumed the value, 0 to skip it.
 */
static int
scan_object(struct scan *s, int (*visit)(struct scan *, const uint8_t *, size_t, void *), void *ctx)
{
	const uint8_t *key;
	size_t klen;
	int rc;

	scan_ws(s);
	if (s->p >= s->end || *s->p != '{')
		return -EINVAL;
	s->p++;
	scan_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		scan_ws(s);
		if (scan_string(s, &key, &klen) < 0)
			return -EINVAL;
		scan_ws(s);
		if (s->p >= s->end || *s->p != ':')
			return -EINVAL;
		s->p++;
		scan_ws(s);
		rc = visit(s, key, klen, ctx);
		if (rc < 0)
			return rc;
		if (rc == 0 && scan_skip(s) < 0)
			return -EINVAL;
		scan_ws(s);
		if (s->p >= s->end)
			return -EINVAL;
		if (*s->p == '}') {
			s->p++;
			return 0;
		}
		if (*s->p != ',')
			return -EINVAL;
		s->p++;
	}
}

struct event_fields {
	const uint8_t *type, *rid;
	size_t type_len, rid_len;
};

static bool
key_is(const uint8_t *key, size_t klen, const char *name)
{
	return klen == strlen(name) && memcmp(key, name, klen) == 0;
}

static int
visit_record(struct scan *s, const uint8_t *key, size_t klen, void *ctx)
{
	struct event_fields *f = ctx;

	if (!key_is(key, klen, "requestId") || s->p >= s->end || *s->p != '"')
		return 0;
	return scan_string(s, &f->rid, &f->rid_len) < 0 ? -EINVAL : 1;
}

static int
visit_event(struct scan *s, const uint8_t *key, size_t klen, void *ctx)
{
	struct event_fields *f = ctx;

	if (key_is(key, klen, "type") && s->p < s->end && *s->p == '"')
		return scan_string(s, &f->type, &f->type_len) < 0 ? -EINVAL : 1;
	if (key_is(key, klen, "record") && s->p < s->end && *s->p == '{')
		return scan_object(s, visit_record, f) < 0 ? -EINVAL : 1;
	return 0;
}

int
pkey_scan_event(const uint8_t *ev, size_t len, const uint8_t **type, size_t *type_len,
    const uint8_t **request_id, size_t *request_id_len)
{
	struct scan s = { ev, ev + len };
	struct event_fields f = { 0 };
	int rc;

	rc = scan_object(&s, visit_event, &f);
	if (rc < 0)
		memset(&f, 0, sizeof(f));
	*type = f.type;
	*type_len = f.type_len;
	*request_id = f.rid;
	*request_id_len = f.rid_len;
	return rc;
}

static uint64_t
pkey_next(struct pkey_state *s)
{
	/* xorshift64*: keys need spread, not secrecy. */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 0x2545F4914F6CDD1Dull;
}

void
pkey_init(struct pkey_state *s, const struct kte_config *cfg, const char *function_name)
{
	memset(s, 0, sizeof(*s));
	s->mode = cfg->pkey_mode;
	if (s->mode == PKEY_FIXED)
		snprintf(s->fixed, sizeof(s->fixed), "%s", cfg->pkey_fixed);
	else if (s->mode == PKEY_FUNCTION)
		snprintf(s->fixed, sizeof(s->fixed), "%s",
		    function_name != NULL && *function_name ? function_name : "function");
	s->fixed_len = strlen(s->fixed);
	pkey_reseed(s);
}

void
pkey_reseed(struct pkey_state *s)
{
	struct timespec ts;

	if (getrandom(&s->rng, sizeof(s->rng), GRND_NONBLOCK) != sizeof(s->rng)) {
		clock_gettime(CLOCK_REALTIME, &ts);
		s->rng = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)time(NULL) ^
		    ((uint64_t)getpid() << 32);
	}
	if (s->rng == 0)
		s->rng = 0x9E3779B97F4A7C15ull;
}

size_t
pkey_random(struct pkey_state *s, char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = pkey_next(s);

	for (int i = 0; i < PKEY_RANDOM_LEN; i++, v >>= 4)
		out[i] = hex[v & 15];
	out[PKEY_RANDOM_LEN] = '\0';
	return PKEY_RANDOM_LEN;
}

/* A usable request id: 1..256 bytes, no escapes, no control characters. */
static bool
rid_usable(const uint8_t *rid, size_t len)
{
	if (rid == NULL || len == 0 || len > PKEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (rid[i] < 0x20 || rid[i] == '\\')
			return false;
	return true;
}

void
pkey_hint(struct pkey_state *s, const struct ring_record *rec)
{
	s->hint_ev = NULL;
	if (s->mode != PKEY_REQUEST_ID || !(rec->meta.flags & RING_META_VALID) ||
	    rec->meta.type >= EVENT_TYPES || rec->meta.rid_len > PKEY_MAX ||
	    (uint64_t)rec->meta.rid_off + rec->meta.rid_len > rec->len)
		return;
	s->hint_ev = rec->data;
	s->hint_len = rec->len;
	s->hint = rec->meta;
}

/* The event's type (is it platform.report?) and requestId: from the hint, or by scanning. */
static int
event_fields(struct pkey_state *s, const uint8_t *ev, size_t len, bool *report, const uint8_t **rid,
    size_t *rid_len)
{
	const uint8_t *type;
	size_t type_len;

	if (s->hint_ev == ev && s->hint_len == len) {
		s->hint_ev = NULL;
		s->hinted++;
		if (s->hint.type == EVENT_TYPE_NOT_OBJECT)
			return -EINVAL;
		*report = s->hint.type == EVENT_TYPE_REPORT;
		*rid = s->hint.rid_len != 0 ? ev + s->hint.rid_off : NULL;
		*rid_len = s->hint.rid_len;
		return 0;
	}
	s->scanned++;
	if (pkey_scan_event(ev, len, &type, &type_len, rid, rid_len) < 0)
		return -EINVAL;
	*report = type != NULL && type_len == 15 && memcmp(type, "platform.report", 15) == 0;
	return 0;
}

size_t
pkey_for_event(struct pkey_state *s, const uint8_t *ev, size_t len, char *out)
{
	const uint8_t *rid;
	size_t rid_len, n = 0;
	bool report;

	switch (s->mode) {
	case PKEY_FIXED:
	case PKEY_FUNCTION:
		memcpy(out, s->fixed, s->fixed_len + 1);
		return s->fixed_len;
	case PKEY_RANDOM:
		return 0;
	case PKEY_REQUEST_ID:
		break;
	}
	if (event_fields(s, ev, len, &report, &rid, &rid_len) < 0)
		return 0;
	if (rid_usable(rid, rid_len)) {
		memcpy(s->sticky, rid, rid_len);
		s->sticky[rid_len] = '\0';
		s->sticky_len = rid_len;
	}
	if (s->sticky_len > 0) {
		n = s->sticky_len;
		memcpy(out, s->sticky, n + 1);
	}
	/* platform.report closes an invocation: later id-less events belong to no invocation. */
	if (report)
		s->sticky_len = 0;
	return n;
}
