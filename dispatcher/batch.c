#include "batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <zlib.h>

#include "base64.h"
#include "kpl.h"

#define SLOTS 1024u

static int
body_reserve(struct batch *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->len + more <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64 * 1024;
	while (cap < b->len + more)
		cap *= 2;
	if ((p = realloc(b->body, cap)) == NULL)
		return -ENOMEM;
	b->body = p;
	b->cap = cap;
	return 0;
}

static void
body_put(struct batch *b, const void *s, size_t n)
{
	memcpy(b->body + b->len, s, n);
	b->len += n;
}

/* JSON-escapes s into dst (room for 6 * n bytes); returns bytes written. */
static size_t
json_escape(char *dst, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c < 0x20) {
			memcpy(dst + o, "\\u00", 4);
			dst[o + 4] = hex[c >> 4];
			dst[o + 5] = hex[c & 15];
			o += 6;
		} else
			dst[o++] = (char)c;
	}
	return o;
}

/* Streams n bytes into the open base64 run (room reserved by the caller). */
static void
b64_feed(struct batch *b, const uint8_t *src, size_t n)
{
	size_t bulk;

	if (b->b64_ncarry > 0) {
		while (b->b64_ncarry < 3 && n > 0) {
			b->b64_carry[b->b64_ncarry++] = *src++;
			n--;
		}
		if (b->b64_ncarry < 3)
			return;
		b->len += base64_encode(b->b64_carry, 3, b->body + b->len);
		b->b64_ncarry = 0;
	}
	bulk = n - n % 3;
	b->len += base64_encode(src, bulk, b->body + b->len);
	for (src += bulk, n -= bulk; n > 0; n--)
		b->b64_carry[b->b64_ncarry++] = *src++;
}

static void
b64_end(struct batch *b)
{
	b->len += base64_encode(b->b64_carry, b->b64_ncarry, b->body + b->len);
	b->b64_ncarry = 0;
}

/* Base64 room for n more bytes of the open run, plus slack for the tail. */
static size_t
b64_room(const struct batch *b, size_t n)
{
	return (b->b64_ncarry + n) / 3 * 4 + 8;
}

/* Feeds an ndjson event: CR and LF (whitespace in valid JSON) become spaces. */
static void
b64_feed_line(struct batch *b, const uint8_t *ev, size_t len)
{
	static const uint8_t space = ' ';
	size_t i, start = 0;

	if (memchr(ev, '\n', len) == NULL && memchr(ev, '\r', len) == NULL) {
		b64_feed(b, ev, len);
		return;
	}
	for (i = 0; i < len; i++) {
		if (ev[i] != '\n' && ev[i] != '\r')
			continue;
		b64_feed(b, ev + start, i - start);
		b64_feed(b, &space, 1);
		start = i + 1;
	}
	b64_feed(b, ev + start, len - start);
}

/* ---- gzip ---- */

#define GZ_TAIL 32      /* gzip header not yet out, the empty final block and the trailer */

/* Starts a gzip member for the next record. 0 or -ENOMEM. */
static int
gz_start(struct batch *b)
{
	z_stream *zs = b->zs;

	if (zs == NULL) {
		if ((zs = calloc(1, sizeof(*zs))) == NULL)
			return -ENOMEM;
		/* windowBits 15 + 16: a gzip wrapper, as CloudWatch Logs subscriptions write. */
		if (deflateInit2(zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
			free(zs);
			return -ENOMEM;
		}
		b->zs = zs;
	} else if (deflateReset(zs) != Z_OK)
		return -EPROTO;
	b->gz_len = b->gz_flushed = b->gz_unflushed = 0;
	return 0;
}

/* Compresses n bytes with flush mode flush (Z_NO_FLUSH, Z_SYNC_FLUSH, Z_FINISH). */
static int
gz_run(struct batch *b, const void *p, size_t n, int flush)
{
	z_stream *zs = b->zs;
	int rc;

	zs->next_in = (Bytef *)(uintptr_t)p;
	zs->avail_in = (uInt)n;
	for (;;) {
		if (b->gz_cap - b->gz_len < 4096) {
			size_t cap = b->gz_cap ? b->gz_cap * 2 : 64 * 1024;
			uint8_t *q = realloc(b->gz, cap);

			if (q == NULL)
				return -ENOMEM;
			b->gz = q;
			b->gz_cap = cap;
		}
		zs->next_out = b->gz + b->gz_len;
		zs->avail_out = (uInt)(b->gz_cap - b->gz_len);
		rc = deflate(zs, flush);
		b->gz_len = b->gz_cap - zs->avail_out;
		if (rc == Z_STREAM_ERROR)
			return -EPROTO;
		if (flush == Z_FINISH ? rc == Z_STREAM_END : zs->avail_in == 0 && zs->avail_out > 0)
			break;
	}
	if (flush == Z_SYNC_FLUSH) {
		b->gz_flushed = b->gz_len;
		b->gz_unflushed = 0;
	} else
		b->gz_unflushed += n;
	return 0;
}

/* Upper bound of the member's final size if extra more input bytes were added. */
static size_t
gz_bound(const struct batch *b, size_t extra)
{
	return b->gz_flushed + compressBound((uLong)(b->gz_unflushed + extra)) + GZ_TAIL;
}

/* Feeds an ndjson event to the member, CR and LF as spaces (as b64_feed_line). */
static int
gz_feed_line(struct batch *b, const uint8_t *ev, size_t len)
{
	size_t i, start = 0;
	int rc;

	for (i = 0; i < len; i++) {
		if (ev[i] != '\n' && ev[i] != '\r')
			continue;
		if ((rc = gz_run(b, ev + start, i - start, Z_NO_FLUSH)) < 0 ||
		    (rc = gz_run(b, " ", 1, Z_NO_FLUSH)) < 0)
			return rc;
		start = i + 1;
	}
	return gz_run(b, ev + start, len - start, Z_NO_FLUSH);
}

static int
seg_open(struct batch *b, size_t data_room)
{
	static const char head[] = "{\"Data\":\"";

	if (body_reserve(b, data_room + sizeof(head) + 8 + PKEY_MAX * 6 + 32) < 0)
		return -ENOMEM;
	if (b->nkrec > 0)
		b->body[b->len++] = ',';
	b->krec[b->nkrec].seg_off = b->len;
	body_put(b, head, sizeof(head) - 1);
	b->b64_ncarry = 0;
	return 0;
}

/* Ends the base64 run and writes the key; room was reserved by seg_open. */
static void
seg_close(struct batch *b, struct batch_krec *k, const char *key, size_t key_len)
{
	static const char mid[] = "\",\"PartitionKey\":\"";

	b64_end(b);
	body_put(b, mid, sizeof(mid) - 1);
	b->len += json_escape(b->body + b->len, key, key_len);
	body_put(b, "\"}", 2);
	k->seg_len = b->len - k->seg_off;
}

int
batch_init(struct batch *b, const struct kte_config *cfg, struct pkey_state *pk)
{
	char *p;

	memset(b, 0, sizeof(*b));
	b->format = cfg->record_format;
	b->max_record = cfg->max_record_bytes;
	b->max_request = cfg->max_request_bytes;
	b->gzip = cfg->compression == COMPRESSION_GZIP && cfg->record_format != FORMAT_KPL;
	b->pk = pk;
	p = b->stream_prefix;
	p += sprintf(p, "{");
	if (cfg->stream_name[0] != '\0') {
		p += sprintf(p, "\"StreamName\":\"");
		p += json_escape(p, cfg->stream_name, strnlen(cfg->stream_name, 128));
		p += sprintf(p, "\",");
	}
	if (cfg->stream_arn[0] != '\0') {
		size_t n = strnlen(cfg->stream_arn, (sizeof(b->stream_prefix) - 200) / 6);

		p += sprintf(p, "\"StreamARN\":\"");
		p += json_escape(p, cfg->stream_arn, n);
		p += sprintf(p, "\",");
	}
	p += sprintf(p, "\"Records\":[");
	b->prefix_len = (size_t)(p - b->stream_prefix);
	batch_reset(b, 0);
	return 0;
}

void
batch_cleanup(struct batch *b)
{
	free(b->body);
	free(b->ev);
	free(b->keys);
	free(b->scratch);
	if (b->zs != NULL) {
		deflateEnd(b->zs);
		free(b->zs);
	}
	free(b->gz);
	memset(b, 0, sizeof(*b));
}

void
batch_reset(struct batch *b, size_t keep_bytes)
{
	if (b->cap > keep_bytes) {
		free(b->body);
		b->body = NULL;
		b->cap = 0;
	}
	if (b->gz_cap > keep_bytes) {
		free(b->gz);
		b->gz = NULL;
		b->gz_cap = 0;
	}
	if (b->scratch_cap > keep_bytes) {
		free(b->scratch);
		b->scratch = NULL;
		b->scratch_cap = 0;
	}
	if (b->ev_cap * sizeof(*b->ev) > keep_bytes) {
		free(b->ev);
		b->ev = NULL;
		b->ev_cap = 0;
	}
	b->len = 0;
	b->nkrec = 0;
	b->nsent = 0;
	b->kin_total = 0;
	b->open = false;
	b->finished = false;
	b->nev = 0;
	b->keys_len = 0;
	if (b->format == FORMAT_KPL)
		memset(b->slot_krec, 0xff, sizeof(b->slot_krec));
}

/* The first write of a batch: the stream prefix. */
static int
batch_begin(struct batch *b)
{
	if (b->len > 0)
		return 0;
	if (body_reserve(b, b->prefix_len + 64) < 0)
		return -ENOMEM;
	body_put(b, b->stream_prefix, b->prefix_len);
	return 0;
}

static struct batch_krec *
krec_new(struct batch *b, uint32_t data_len, size_t key_len, bool summary)
{
	struct batch_krec *k = &b->krec[b->nkrec];
	size_t off = k->seg_off;

	memset(k, 0, sizeof(*k));
	k->seg_off = off;
	k->data_len = data_len;
	k->kin_bytes = data_len + (uint32_t)key_len;
	k->summary = summary;
	k->ring_first = b->add_pos;
	b->kin_total += k->kin_bytes;
	return k;
}

/* Writes the event's partition key into key (a random one if it has none); returns its length. */
static size_t
event_key(struct batch *b, const uint8_t *ev, size_t len, char key[PKEY_MAX + 1])
{
	size_t kl = pkey_for_event(b->pk, ev, len, key);

	return kl != 0 ? kl : pkey_random(b->pk, key);
}

static int
add_event(struct batch *b, const uint8_t *ev, size_t len, bool summary)
{
	char key[PKEY_MAX + 1];
	size_t kl = event_key(b, ev, len, key), dlen = len;
	const uint8_t *data = ev;
	struct batch_krec *k;
	int rc;

	if (b->gzip) {
		if ((rc = gz_start(b)) < 0 || (rc = gz_run(b, ev, len, Z_FINISH)) < 0)
			return rc;
		data = b->gz;
		dlen = b->gz_len;
	}
	if (dlen + kl > b->max_record)
		return BATCH_TOO_LARGE;
	if (b->nkrec == BATCH_MAX_RECORDS || b->kin_total + dlen + kl > b->max_request)
		return BATCH_FULL;
	if (seg_open(b, batch_b64_len(dlen)) < 0)
		return -ENOMEM;
	k = krec_new(b, (uint32_t)dlen, kl, summary);
	k->events = 1;
	k->event_bytes = len;
	b64_feed(b, data, dlen);
	seg_close(b, k, key, kl);
	b->nkrec++;
	return BATCH_ADDED;
}

/* Finishes the open gzip record and writes its segment. 0 or -errno. */
static int
gz_close(struct batch *b)
{
	struct batch_krec *k = &b->krec[b->nkrec - 1];
	unsigned n = b->nkrec;
	int rc;

	if ((rc = gz_run(b, NULL, 0, Z_FINISH)) < 0)
		return rc;
	if (b->gz_len + b->open_key_len > b->max_record)
		return -EPROTO;         /* the bound did not hold: never, by construction */
	b->nkrec = n - 1;       /* seg_open writes the record at nkrec */
	rc = seg_open(b, batch_b64_len(b->gz_len));
	b->nkrec = n;
	if (rc < 0)
		return rc;
	b->kin_total -= k->kin_bytes;
	k->data_len = (uint32_t)b->gz_len;
	k->kin_bytes = (uint32_t)(b->gz_len + b->open_key_len);
	b->kin_total += k->kin_bytes;
	b64_feed(b, b->gz, b->gz_len);
	seg_close(b, k, b->open_key, b->open_key_len);
	return 0;
}

static int
ndjson_close(struct batch *b)
{
	int rc = 0;

	if (!b->open)
		return 0;
	if (b->gzip)
		rc = gz_close(b);
	else
		seg_close(b, &b->krec[b->nkrec - 1], b->open_key, b->open_key_len);
	b->open = false;
	return rc;
}

/* The open gzip record's Kinesis size once the bound says so: data bound plus key. */
static void
gz_account(struct batch *b, struct batch_krec *k)
{
	size_t kin = gz_bound(b, 0) + b->open_key_len;

	b->kin_total = b->kin_total - k->kin_bytes + kin;
	k->kin_bytes = (uint32_t)kin;
	k->data_len = (uint32_t)(kin - b->open_key_len);
}

/* Whether the open gzip record takes more input bytes; a sync flush makes the bound exact. */
static int
gz_fits(struct batch *b, const struct batch_krec *k, size_t more)
{
	int rc;

	for (int flushed = 0;; flushed = 1) {
		size_t kin = gz_bound(b, more) + b->open_key_len;

		if (kin <= b->max_record && b->kin_total - k->kin_bytes + kin <= b->max_request)
			return 1;
		if (flushed || b->gz_unflushed == 0)
			return 0;
		if ((rc = gz_run(b, NULL, 0, Z_SYNC_FLUSH)) < 0)
			return rc;
	}
}

static int
add_ndjson_gz(struct batch *b, const uint8_t *ev, size_t len, bool summary)
{
	char key[PKEY_MAX + 1];
	size_t kl = event_key(b, ev, len, key);
	struct batch_krec *k;
	int rc;

	if (compressBound((uLong)len) + GZ_TAIL + kl > b->max_record)
		return BATCH_TOO_LARGE;
	if (b->open) {
		k = &b->krec[b->nkrec - 1];
		if ((rc = gz_fits(b, k, 1 + len)) < 0)
			return rc;
		if (rc == 1) {
			if ((rc = gz_run(b, "\n", 1, Z_NO_FLUSH)) < 0 || (rc = gz_feed_line(b, ev, len)) < 0)
				return rc;
			gz_account(b, k);
			k->events++;
			k->event_bytes += len;
			k->summary |= summary;
			return BATCH_ADDED;
		}
	}
	if (b->nkrec == BATCH_MAX_RECORDS ||
	    b->kin_total + compressBound((uLong)len) + GZ_TAIL + kl > b->max_request)
		return BATCH_FULL;
	if ((rc = ndjson_close(b)) < 0)
		return rc;
	if ((rc = gz_start(b)) < 0)
		return rc;
	memcpy(b->open_key, key, kl + 1);
	b->open_key_len = kl;
	k = krec_new(b, 0, kl, summary);
	if ((rc = gz_feed_line(b, ev, len)) < 0) {
		b->kin_total -= k->kin_bytes;
		return rc;
	}
	gz_account(b, k);
	k->events = 1;
	k->event_bytes = len;
	b->open = true;
	b->nkrec++;
	return BATCH_ADDED;
}

static int
add_ndjson(struct batch *b, const uint8_t *ev, size_t len, bool summary)
{
	char key[PKEY_MAX + 1];
	size_t kl = event_key(b, ev, len, key);
	struct batch_krec *k;

	if (len + kl > b->max_record)
		return BATCH_TOO_LARGE;
	if (b->open) {
		k = &b->krec[b->nkrec - 1];
		if (k->kin_bytes + 1 + len <= b->max_record && b->kin_total + 1 + len <= b->max_request) {
			if (body_reserve(b, b64_room(b, len + 1) + PKEY_MAX * 6 + 32) < 0)
				return -ENOMEM;
			b64_feed(b, (const uint8_t *)"\n", 1);
			b64_feed_line(b, ev, len);
			k->data_len += (uint32_t)(1 + len);
			k->kin_bytes += (uint32_t)(1 + len);
			k->events++;
			k->event_bytes += len;
			k->summary |= summary;
			b->kin_total += 1 + len;
			return BATCH_ADDED;
		}
	}
	if (b->nkrec == BATCH_MAX_RECORDS || b->kin_total + len + kl > b->max_request)
		return BATCH_FULL;
	(void)ndjson_close(b);  /* without gzip it cannot fail */
	if (seg_open(b, b64_room(b, len)) < 0)
		return -ENOMEM;
	k = krec_new(b, (uint32_t)len, kl, summary);
	k->events = 1;
	k->event_bytes = len;
	b64_feed_line(b, ev, len);
	memcpy(b->open_key, key, kl + 1);
	b->open_key_len = kl;
	b->open = true;
	b->nkrec++;
	return BATCH_ADDED;
}

static uint32_t
key_hash(const char *key, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)key[i]) * 16777619u;
	return h;
}

static int
keys_store(struct batch *b, const char *key, size_t kl, uint32_t *off)
{
	size_t cap;
	char *p;

	if (b->keys_len + kl + 1 > b->keys_cap) {
		cap = b->keys_cap ? b->keys_cap * 2 : 4096;
		while (cap < b->keys_len + kl + 1)
			cap *= 2;
		if ((p = realloc(b->keys, cap)) == NULL)
			return -ENOMEM;
		b->keys = p;
		b->keys_cap = cap;
	}
	memcpy(b->keys + b->keys_len, key, kl);
	b->keys[b->keys_len + kl] = '\0';
	*off = (uint32_t)b->keys_len;
	b->keys_len += kl + 1;
	return 0;
}

static int
ev_push(struct batch *b, const uint8_t *ev, size_t len, unsigned krec)
{
	struct batch_event *p;
	size_t cap;

	if (b->nev == b->ev_cap) {
		cap = b->ev_cap ? b->ev_cap * 2 : 1024;
		if ((p = realloc(b->ev, cap * sizeof(*p))) == NULL)
			return -ENOMEM;
		b->ev = p;
		b->ev_cap = cap;
	}
	b->ev[b->nev++] = (struct batch_event){ ev, (uint32_t)len, krec };
	return 0;
}

static int
add_kpl(struct batch *b, const uint8_t *ev, size_t len, bool summary)
{
	char key[PKEY_MAX + 1];
	size_t kl = pkey_for_event(b->pk, ev, len, key);
	bool random = kl == 0;
	uint32_t h, slot;
	size_t alone, inner = kpl_inner_size(len);
	struct batch_krec *k;
	int32_t found = -1;

	if (random) {
		/* Every random aggregate has a key of the same length: size with a stand-in. */
		memset(key, '0', PKEY_RANDOM_LEN);
		key[PKEY_RANDOM_LEN] = '\0';
		kl = PKEY_RANDOM_LEN;
	}
	alone = kpl_fixed_size(key) + inner + kl;
	if (alone > b->max_record)
		return BATCH_TOO_LARGE;
	/* Random-key events share one open aggregate: the slot of the empty key. */
	h = random ? 0 : key_hash(key, kl) | 1u;
	for (slot = h & (SLOTS - 1); b->slot_krec[slot] >= 0; slot = (slot + 1) & (SLOTS - 1)) {
		k = &b->krec[b->slot_krec[slot]];
		if (b->slot_hash[slot] == h && (random || (k->key_len == kl &&
		    memcmp(b->keys + k->key_off, key, kl) == 0))) {
			found = b->slot_krec[slot];
			break;
		}
	}
	if (found >= 0) {
		k = &b->krec[found];
		if (k->kin_bytes + inner <= b->max_record && b->kin_total + inner <= b->max_request) {
			if (ev_push(b, ev, len, (unsigned)found) < 0)
				return -ENOMEM;
			k->data_len += (uint32_t)inner;
			k->kin_bytes += (uint32_t)inner;
			k->events++;
			k->event_bytes += len;
			k->summary |= summary;
			b->kin_total += inner;
			return BATCH_ADDED;
		}
	}
	if (b->nkrec == BATCH_MAX_RECORDS || b->kin_total + alone > b->max_request)
		return BATCH_FULL;
	if (random)
		pkey_random(b->pk, key);
	k = krec_new(b, (uint32_t)(alone - kl), kl, summary);
	if (keys_store(b, key, kl, &k->key_off) < 0 || ev_push(b, ev, len, b->nkrec) < 0) {
		b->kin_total -= k->kin_bytes;
		return -ENOMEM;
	}
	k->key_len = (uint32_t)kl;
	k->events = 1;
	k->event_bytes = len;
	b->slot_krec[slot] = (int32_t)b->nkrec;
	b->slot_hash[slot] = h;
	b->nkrec++;
	return BATCH_ADDED;
}

/* Encodes every aggregate into the body, in creation order. */
static int
kpl_write(struct batch *b)
{
	struct iovec *iov;
	uint32_t *fill;
	size_t out_len;
	unsigned i;
	uint32_t at = 0;
	unsigned nkrec = b->nkrec;
	int rc = 0;

	if (nkrec == 0)
		return 0;
	iov = malloc(b->nev * sizeof(*iov));
	fill = calloc(b->nkrec, sizeof(*fill));
	if (iov == NULL || fill == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < b->nkrec; i++) {
		b->krec[i].first_ev = at;
		at += b->krec[i].events;
	}
	for (size_t e = 0; e < b->nev; e++) {
		struct batch_krec *k = &b->krec[b->ev[e].krec];

		iov[k->first_ev + fill[b->ev[e].krec]++] =
		    (struct iovec){ (void *)(uintptr_t)b->ev[e].data, b->ev[e].len };
	}
	if (b->scratch_cap < b->max_record) {
		free(b->scratch);
		if ((b->scratch = malloc(b->max_record)) == NULL) {
			b->scratch_cap = 0;
			rc = -ENOMEM;
			goto out;
		}
		b->scratch_cap = b->max_record;
	}
	for (i = 0; i < nkrec; i++) {
		struct batch_krec *k = &b->krec[i];
		const char *key = b->keys + k->key_off;

		/* seg_open and seg_close take the record being written from nkrec. */
		b->nkrec = i;
		if ((rc = seg_open(b, batch_b64_len(k->data_len))) < 0)
			goto out;
		rc = kpl_encode(key, iov + k->first_ev, k->events, b->scratch, b->scratch_cap, &out_len);
		if (rc < 0)
			goto out;
		if (out_len != k->data_len) {
			/* Our accounting and the encoder disagree: the limits would not hold. */
			rc = -EPROTO;
			goto out;
		}
		b64_feed(b, b->scratch, out_len);
		seg_close(b, k, key, k->key_len);
	}
out:
	free(iov);
	free(fill);
	return rc;
}

int
batch_add(struct batch *b, const uint8_t *ev, size_t len, bool summary)
{
	if (b->finished)
		return BATCH_FULL;
	if (len == 0 || len > UINT32_MAX)
		return BATCH_TOO_LARGE;
	if (batch_begin(b) < 0)
		return -ENOMEM;
	switch (b->format) {
	case FORMAT_NDJSON:
		return b->gzip ? add_ndjson_gz(b, ev, len, summary) : add_ndjson(b, ev, len, summary);
	case FORMAT_KPL:
		return add_kpl(b, ev, len, summary);
	case FORMAT_EVENT:
	default:
		return add_event(b, ev, len, summary);
	}
}

int
batch_add_at(struct batch *b, const uint8_t *ev, size_t len, bool summary, uint64_t pos)
{
	b->add_pos = pos;
	return batch_add(b, ev, len, summary);
}

int
batch_finish(struct batch *b)
{
	unsigned i;

	if (b->finished)
		return 0;
	if (b->format == FORMAT_NDJSON) {
		int rc = ndjson_close(b);

		if (rc < 0)
			return rc;
	}
	if (b->format == FORMAT_KPL) {
		unsigned n = b->nkrec;
		int rc = kpl_write(b);

		b->nkrec = n;
		if (rc < 0)
			return rc;
	}
	if (batch_begin(b) < 0 || body_reserve(b, 2) < 0)
		return -ENOMEM;
	body_put(b, "]}", 2);
	for (i = 0; i < b->nkrec; i++)
		b->sent_idx[i] = i;
	b->nsent = b->nkrec;
	b->finished = true;
	return 0;
}

bool
batch_pending(const struct batch *b)
{
	for (unsigned i = 0; i < b->nkrec; i++)
		if (b->krec[i].state == KREC_PENDING)
			return true;
	return false;
}

/* Rewrites the body with the pending records only, in their order. */
static void
batch_compact(struct batch *b)
{
	size_t pos = b->prefix_len;
	unsigned i;

	b->nsent = 0;
	for (i = 0; i < b->nkrec; i++) {
		struct batch_krec *k = &b->krec[i];

		if (k->state != KREC_PENDING)
			continue;
		if (b->nsent > 0)
			b->body[pos++] = ',';
		memmove(b->body + pos, b->body + k->seg_off, k->seg_len);
		k->seg_off = pos;
		pos += k->seg_len;
		b->sent_idx[b->nsent++] = i;
	}
	memcpy(b->body + pos, "]}", 2);
	b->len = pos + 2;
}

static void settle(struct batch_krec *k, enum krec_state state, struct batch_settled *st);

void
batch_settle(struct batch *b, unsigned i, enum krec_state state, struct batch_settled *st)
{
	settle(&b->krec[i], state, st);
}

bool
batch_unsettled(const struct batch *b)
{
	for (unsigned i = 0; i < b->nkrec; i++)
		if (b->krec[i].state == KREC_PENDING || b->krec[i].state == KREC_INFLIGHT)
			return true;
	return false;
}

uint64_t
batch_release_pos(const struct batch *b, uint64_t end)
{
	uint64_t pos = end;

	for (unsigned i = 0; i < b->nkrec; i++)
		if ((b->krec[i].state == KREC_PENDING || b->krec[i].state == KREC_INFLIGHT) &&
		    b->krec[i].ring_first < pos)
			pos = b->krec[i].ring_first;
	return pos;
}

static void
settle(struct batch_krec *k, enum krec_state state, struct batch_settled *st)
{
	k->state = (uint8_t)state;
	if (state == KREC_ACCEPTED) {
		st->records_ok++;
		st->events_ok += k->events;
		st->bytes_ok += k->event_bytes;
		st->summary_ok |= k->summary;
	} else {
		st->records_dropped++;
		st->events_dropped += k->events;
		st->bytes_dropped += k->event_bytes;
		st->summary_dropped |= k->summary;
	}
}

void
batch_apply(struct batch *b, const uint8_t *status, unsigned n, struct batch_settled *st)
{
	unsigned i;

	for (i = 0; i < n && i < b->nsent; i++) {
		if (status[i] == 0)
			settle(&b->krec[b->sent_idx[i]], KREC_ACCEPTED, st);
		else
			st->records_failed++;
	}
	if (batch_pending(b))
		batch_compact(b);
	else
		b->nsent = 0;
}

void
batch_drop_pending(struct batch *b, struct batch_settled *st)
{
	for (unsigned i = 0; i < b->nkrec; i++)
		if (b->krec[i].state == KREC_PENDING)
			settle(&b->krec[i], KREC_DROPPED, st);
	b->nsent = 0;
}
