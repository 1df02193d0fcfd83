/*
 * KPL aggregation and base64: sizes and encoding edge cases checked against an
 * independent protobuf walker in this file, then de-aggregation of our output by the
 * real npm package aws-kinesis-agg (tests/tools/kpl_deagg.js, run with node from the
 * repository root), every inner record compared byte-exact.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "dispatcher/base64.h"
#include "base64_decode.h"
#include "dispatcher/kpl.h"

/* ---- An independent reader of what kpl_encode writes (proto2 wire format). ---- */

struct walked {
	char key[1100];
	size_t n;
	const uint8_t *data[4096];
	size_t len[4096];
};

static int
get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*p < end && shift < 64) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
		shift += 7;
	}
	return -1;
}

/* Returns 0 when buf is magic + a valid AggregatedRecord + its MD5, filling w. */
static int
walk(const uint8_t *buf, size_t len, struct walked *w)
{
	static const uint8_t magic[4] = { 0xF3, 0x89, 0x9A, 0xC2 };
	const uint8_t *p, *end;
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen;
	uint64_t v, l;
	int keys = 0;

	memset(w, 0, sizeof(*w));
	if (len < 20 || memcmp(buf, magic, 4) != 0)
		return -1;
	p = buf + 4;
	end = buf + len - 16;
	if (EVP_Digest(p, (size_t)(end - p), md, &mdlen, EVP_md5(), NULL) != 1 || memcmp(md, end, 16) != 0)
		return -2;
	while (p < end) {
		if (get_varint(&p, end, &v) != 0 || (v & 7) != 2 || get_varint(&p, end, &l) != 0 ||
		    l > (uint64_t)(end - p))
			return -3;
		if (v >> 3 == 1) {
			if (keys++ > 0 || l >= sizeof(w->key))
				return -4;
			memcpy(w->key, p, l);
		} else if (v >> 3 == 3) {
			const uint8_t *q = p, *qe = p + l;
			uint64_t t, idx, dl;

			if (w->n >= 4096)
				return -5;
			if (get_varint(&q, qe, &t) != 0 || t != 0x08 || get_varint(&q, qe, &idx) != 0 || idx != 0 ||
			    get_varint(&q, qe, &t) != 0 || t != 0x1A || get_varint(&q, qe, &dl) != 0 ||
			    dl != (uint64_t)(qe - q))
				return -6;
			w->data[w->n] = q;
			w->len[w->n++] = dl;
		} else {
			return -7;
		}
		p += l;
	}
	return keys == 1 ? 0 : -8;
}

/* ---- Sizes and encoding ---- */

START_TEST(test_fixed_size)
{
	char key[300];

	ck_assert_uint_eq(kpl_fixed_size("k"), 4 + 1 + 1 + 1 + 16);
	memset(key, 'k', sizeof(key));
	key[127] = '\0';
	ck_assert_uint_eq(kpl_fixed_size(key), 4 + 1 + 1 + 127 + 16);
	key[127] = 'k';
	key[128] = '\0';
	ck_assert_uint_eq(kpl_fixed_size(key), 4 + 1 + 2 + 128 + 16);
	key[128] = 'k';
	key[256] = '\0';
	ck_assert_uint_eq(kpl_fixed_size(key), 4 + 1 + 2 + 256 + 16);
}
END_TEST

START_TEST(test_inner_size_values)
{
	/* tag + len + (08 00 1A len data) */
	ck_assert_uint_eq(kpl_inner_size(0), 1 + 1 + 4);
	ck_assert_uint_eq(kpl_inner_size(1), 1 + 1 + 5);
	ck_assert_uint_eq(kpl_inner_size(123), 1 + 1 + 4 + 123);         /* record = 127 */
	ck_assert_uint_eq(kpl_inner_size(124), 1 + 2 + 4 + 124);         /* record = 128: 2-byte length */
	ck_assert_uint_eq(kpl_inner_size(127), 1 + 2 + 4 + 127);
	ck_assert_uint_eq(kpl_inner_size(128), 1 + 2 + 5 + 128);         /* data length itself 2 bytes */
	ck_assert_uint_eq(kpl_inner_size(300), 1 + 2 + 5 + 300);
	ck_assert_uint_eq(kpl_inner_size(1048576), 1 + 3 + 6 + 1048576);
}
END_TEST

/* Encoded length == fixed + sum(inner) around every varint boundary; output walks back. */
START_TEST(test_sizes_exact_at_boundaries)
{
	static const size_t lens[] = { 0, 1, 2, 122, 123, 124, 125, 126, 127, 128, 129, 16376, 16377,
	    16378, 16379, 16380, 16383, 16384, 16385, 2097145, 2097146, 2097147, 2097151, 2097152 };
	const char *key = "invocation-0f6e9a";
	size_t cap = 3 * 2097152 + 4096, out_len, want;
	uint8_t *src = malloc(2097152), *out = malloc(cap);
	struct walked *w = malloc(sizeof(*w));

	for (size_t i = 0; i < 2097152; i++)
		src[i] = (uint8_t)(i * 131 + 7);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct iovec iov[2] = { { src, lens[i] }, { src + 1, lens[i] / 2 } };

		want = kpl_fixed_size(key) + kpl_inner_size(lens[i]) + kpl_inner_size(lens[i] / 2);
		ck_assert_int_eq(kpl_encode(key, iov, 2, out, cap, &out_len), 0);
		ck_assert_uint_eq(out_len, want);
		ck_assert_int_eq(walk(out, out_len, w), 0);
		ck_assert_str_eq(w->key, key);
		ck_assert_uint_eq(w->n, 2);
		ck_assert_uint_eq(w->len[0], lens[i]);
		ck_assert_uint_eq(w->len[1], lens[i] / 2);
		ck_assert_mem_eq(w->data[0], src, lens[i]);
		ck_assert_mem_eq(w->data[1], src + 1, lens[i] / 2);
		/* Exactly enough room works; one byte less does not. */
		ck_assert_int_eq(kpl_encode(key, iov, 2, out, want, &out_len), 0);
		ck_assert_int_eq(kpl_encode(key, iov, 2, out, want - 1, &out_len), -ENOSPC);
	}
	free(src);
	free(out);
	free(w);
}
END_TEST

START_TEST(test_golden_bytes)
{
	/* F3 89 9A C2 | 0A 01 'a' | 1A 05 08 00 1A 01 'x' | MD5 of the middle */
	static const uint8_t body[] = { 0x0A, 0x01, 'a', 0x1A, 0x05, 0x08, 0x00, 0x1A, 0x01, 'x' };
	struct iovec iov = { "x", 1 };
	uint8_t out[64], md[16];
	unsigned mdlen;
	size_t n;

	ck_assert_int_eq(kpl_encode("a", &iov, 1, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 4 + sizeof(body) + 16);
	ck_assert_mem_eq(out, "\xF3\x89\x9A\xC2", 4);
	ck_assert_mem_eq(out + 4, body, sizeof(body));
	ck_assert_int_eq(EVP_Digest(body, sizeof(body), md, &mdlen, EVP_md5(), NULL), 1);
	ck_assert_mem_eq(out + 4 + sizeof(body), md, 16);
}
END_TEST

START_TEST(test_zero_records)
{
	uint8_t out[64];
	size_t n;
	struct walked w;

	ck_assert_int_eq(kpl_encode("k", NULL, 0, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, kpl_fixed_size("k"));
	ck_assert_int_eq(walk(out, n, &w), 0);
	ck_assert_uint_eq(w.n, 0);
	ck_assert_int_eq(kpl_encode("k", NULL, 0, out, n - 1, &n), -ENOSPC);
}
END_TEST

START_TEST(test_bad_args)
{
	struct iovec iov = { NULL, 3 };
	uint8_t out[64];
	size_t n;

	ck_assert_int_eq(kpl_encode(NULL, NULL, 0, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(kpl_encode("", NULL, 0, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(kpl_encode("k", NULL, 1, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(kpl_encode("k", &iov, 1, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(kpl_encode("k", NULL, 0, NULL, 0, &n), -ENOSPC);
	ck_assert_int_eq(kpl_encode("k", NULL, 0, out, 0, &n), -ENOSPC);
}
END_TEST

/* A failed add leaves the builder as it was: finish yields the records that fitted. */
START_TEST(test_builder_full)
{
	uint8_t out[97], rec[30];
	struct kpl_builder b;
	struct walked w;
	size_t n, added = 0;
	int rc;

	memset(rec, 0xAB, sizeof(rec));
	ck_assert_int_eq(kpl_builder_init(&b, "key", out, sizeof(out)), 0);
	while ((rc = kpl_builder_add(&b, rec, sizeof(rec))) == 0)
		added++;
	ck_assert_int_eq(rc, -ENOSPC);
	/* 97 = fixed("key") 25 + 2 * inner(30) 36: exactly two fit */
	ck_assert_uint_eq(kpl_fixed_size("key"), 25);
	ck_assert_uint_eq(kpl_inner_size(30), 36);
	ck_assert_uint_eq(added, 2);
	ck_assert_int_eq(kpl_builder_add(&b, rec, 0), -ENOSPC);
	ck_assert_int_eq(kpl_builder_finish(&b, &n), 0);
	ck_assert_uint_eq(n, sizeof(out));
	ck_assert_int_eq(walk(out, n, &w), 0);
	ck_assert_uint_eq(w.n, 2);
	/* A corrupted byte breaks the checksum. */
	out[10] ^= 1;
	ck_assert_int_eq(walk(out, n, &w), -2);
}
END_TEST

/* ---- base64 ---- */

START_TEST(test_base64_rfc4648)
{
	static const char *in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *want[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	char out[16], back[16];

	for (int i = 0; i < 7; i++) {
		size_t n = strlen(in[i]);

		ck_assert_uint_eq(base64_encoded_len(n), strlen(want[i]));
		ck_assert_uint_eq(base64_encode(in[i], n, out), strlen(want[i]));
		ck_assert_mem_eq(out, want[i], strlen(want[i]));
		ck_assert_int_eq(base64_decode(want[i], strlen(want[i]), back), (ssize_t)n);
		ck_assert_mem_eq(back, in[i], n);
	}
}
END_TEST

START_TEST(test_base64_binary_roundtrip)
{
	uint8_t src[1000], back[1100];
	char enc[1400];

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7 + (i >> 8));
	for (size_t n = 0; n <= sizeof(src); n += (n < 20 ? 1 : 97)) {
		size_t e = base64_encode(src, n, enc);

		ck_assert_uint_eq(e, base64_encoded_len(n));
		ck_assert_int_eq(base64_decode(enc, e, back), (ssize_t)n);
		ck_assert_mem_eq(back, src, n);
	}
	/* Both non-alphanumeric characters appear: 0xFB 0xFF -> "+/8=" */
	ck_assert_uint_eq(base64_encode("\xfb\xff", 2, enc), 4);
	ck_assert_mem_eq(enc, "+/8=", 4);
}
END_TEST

START_TEST(test_base64_decode_invalid)
{
	static const char *bad[] = { "Zg=", "Zg", "Z===", "Zg=a", "Zm9v\n", "Zm-v", "Zh==", "Zm9=", "=Zm9",
	    "Zg==Zg==" };
	uint8_t out[16];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(base64_decode(bad[i], strlen(bad[i]), out) == -EINVAL, "accepted %s", bad[i]);
}
END_TEST

/* ---- De-aggregation by the real aws-kinesis-agg ---- */

#define DEAGG_SCRIPT "tests/tools/kpl_deagg.js"
#define MAX_RECORD (1024 * 1024)

struct deagg_case {
	const char *name;
	const char *pkey;
	size_t n;
	struct iovec *recs;
	uint8_t *enc;
	size_t enc_len;
	bool corrupt_md5;
	bool corrupt_magic;
};

static uint8_t *
make_bytes(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n ? n : 1);
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return p;
}

static void
case_alloc(struct deagg_case *c, const char *name, const char *pkey, size_t n)
{
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->pkey = pkey;
	c->n = n;
	c->recs = calloc(n ? n : 1, sizeof(*c->recs));
}

static void
case_set(struct deagg_case *c, size_t i, size_t len, unsigned seed)
{
	c->recs[i].iov_base = make_bytes(len, seed);
	c->recs[i].iov_len = len;
}

static void
case_encode(struct deagg_case *c)
{
	size_t cap = kpl_fixed_size(c->pkey);

	for (size_t i = 0; i < c->n; i++)
		cap += kpl_inner_size(c->recs[i].iov_len);
	c->enc = malloc(cap);
	ck_assert_int_eq(kpl_encode(c->pkey, c->recs, c->n, c->enc, cap, &c->enc_len), 0);
	ck_assert_uint_eq(c->enc_len, cap);
	if (c->corrupt_md5)
		c->enc[c->enc_len - 1] ^= 0x40;
	if (c->corrupt_magic)
		c->enc[0] = 0x00;
}

static void
case_free(struct deagg_case *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->recs[i].iov_base);
	free(c->recs);
	free(c->enc);
}

static char *
read_all(FILE *f, size_t *len)
{
	size_t cap = 1 << 20, n = 0, r;
	char *buf = malloc(cap);

	while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (cap - n - 1 == 0)
			buf = realloc(buf, cap *= 2);
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

START_TEST(test_deaggregate_with_aws_kinesis_agg)
{
	enum { NCASES = 11 };
	struct deagg_case cs[NCASES];
	char dir[] = "/tmp/kte-kpl-XXXXXX", cmd[16384], *out, *line, *save = NULL;
	const char *unicode_key = "cl\xc3\xa9-\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87-\xf0\x9f\x94\x91";
	size_t out_len, k = 0, len;
	FILE *f;
	int status, seen = 0;

	ck_assert_msg(access(DEAGG_SCRIPT, R_OK) == 0, "run from the repository root (%s not found)",
	    DEAGG_SCRIPT);
	ck_assert_msg(access("tests/node/node_modules/aws-kinesis-agg/index.js", R_OK) == 0,
	    "aws-kinesis-agg missing: run `make deps`");

	case_alloc(&cs[k++], "zero", "k0", 0);
	case_alloc(&cs[k], "one", "k1", 1);
	case_set(&cs[k++], 0, 5, 1);
	case_alloc(&cs[k], "one-empty", "k2", 1);
	case_set(&cs[k++], 0, 0, 2);
	case_alloc(&cs[k], "many-small", "k3", 1000);
	for (size_t i = 0; i < 1000; i++)
		case_set(&cs[k], i, 1 + i % 40, (unsigned)i);
	k++;
	case_alloc(&cs[k], "every-byte", "k4", 257);
	for (size_t i = 0; i < 256; i++) {
		cs[k].recs[i].iov_base = malloc(1);
		*(uint8_t *)cs[k].recs[i].iov_base = (uint8_t)i;
		cs[k].recs[i].iov_len = 1;
	}
	cs[k].recs[256].iov_base = malloc(256);
	for (size_t i = 0; i < 256; i++)
		((uint8_t *)cs[k].recs[256].iov_base)[i] = (uint8_t)(255 - i);
	cs[k++].recs[256].iov_len = 256;
	{
		/* One record filling a 1 MiB Kinesis record exactly (data + key). */
		const char *key = "k5";
		size_t room = MAX_RECORD - strlen(key) - kpl_fixed_size(key), dl = room;

		while (kpl_inner_size(dl) > room)
			dl--;
		case_alloc(&cs[k], "large-1MiB", key, 1);
		case_set(&cs[k], 0, dl, 5);
		case_encode(&cs[k]);
		ck_assert_uint_eq(cs[k].enc_len + strlen(key), MAX_RECORD);
		k++;
	}
	{
		static const size_t bl[] = { 0, 1, 123, 124, 127, 128, 16383, 16384, 16385, 100000, 300 };
		size_t nb = sizeof(bl) / sizeof(bl[0]);

		case_alloc(&cs[k], "boundaries", "k6", nb);
		for (size_t i = 0; i < nb; i++)
			case_set(&cs[k], i, bl[i], (unsigned)(100 + i));
		k++;
	}
	case_alloc(&cs[k], "unicode-key", unicode_key, 3);
	for (size_t i = 0; i < 3; i++)
		case_set(&cs[k], i, 10 * i + 3, (unsigned)(200 + i));
	k++;
	case_alloc(&cs[k], "500-json-events", "4e4c6f2a-request-id", 500);
	for (size_t i = 0; i < 500; i++) {
		char *ev = malloc(512);
		int n = snprintf(ev, 512, "{\"time\":\"2025-11-28T05:38:13.%03zuZ\",\"type\":\"function\","
		    "\"record\":\"line %zu \\u00e9 %0*zu\"}", i % 1000, i, (int)(i % 200), i);

		cs[k].recs[i].iov_base = ev;
		cs[k].recs[i].iov_len = (size_t)n;
	}
	k++;
	case_alloc(&cs[k], "bad-md5", "k9", 2);
	case_set(&cs[k], 0, 10, 9);
	case_set(&cs[k], 1, 20, 10);
	cs[k++].corrupt_md5 = true;
	case_alloc(&cs[k], "bad-magic", "k10", 1);
	case_set(&cs[k], 0, 10, 11);
	cs[k++].corrupt_magic = true;
	ck_assert_int_eq(k, NCASES);

	ck_assert_ptr_nonnull(mkdtemp(dir));
	len = (size_t)snprintf(cmd, sizeof(cmd), "node %s", DEAGG_SCRIPT);
	for (size_t i = 0; i < NCASES; i++) {
		char path[512];

		if (cs[i].enc == NULL)
			case_encode(&cs[i]);
		snprintf(path, sizeof(path), "%s/%zu-%s", dir, i, cs[i].name);
		f = fopen(path, "wb");
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(fwrite(cs[i].enc, 1, cs[i].enc_len, f), cs[i].enc_len);
		fclose(f);
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " %s", path);
	}
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	out = read_all(f, &out_len);
	status = pclose(f);
	ck_assert_msg(status == 0, "kpl_deagg.js failed (%d): %.500s", status, out);

	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save), seen++) {
		struct json_object *o = json_tokener_parse(line), *recs, *err, *aggd;
		struct deagg_case *c;

		ck_assert_msg(o != NULL, "bad JSON from kpl_deagg.js: %.200s", line);
		ck_assert_int_lt(seen, NCASES);
		c = &cs[seen];
		if (c->corrupt_md5) {
			ck_assert_msg(json_object_object_get_ex(o, "error", &err), "%s: bad MD5 accepted", c->name);
			ck_assert_ptr_nonnull(strstr(json_object_get_string(err), "checksum"));
			json_object_put(o);
			continue;
		}
		ck_assert_msg(!json_object_object_get_ex(o, "error", &err), "%s: %s", c->name,
		    json_object_get_string(err));
		ck_assert(json_object_object_get_ex(o, "aggregated", &aggd));
		ck_assert_int_eq(json_object_get_boolean(aggd), !c->corrupt_magic);
		ck_assert(json_object_object_get_ex(o, "records", &recs));
		if (c->corrupt_magic) {         /* passed through whole, not de-aggregated */
			ck_assert_uint_eq(json_object_array_length(recs), 1);
			json_object_put(o);
			continue;
		}
		ck_assert_msg(json_object_array_length(recs) == c->n, "%s: %zu records, want %zu", c->name,
		    json_object_array_length(recs), c->n);
		for (size_t i = 0; i < c->n; i++) {
			struct json_object *r = json_object_array_get_idx(recs, i), *d, *pk;
			const char *b64;
			uint8_t *dec;
			ssize_t dn;

			ck_assert(json_object_object_get_ex(r, "data", &d));
			ck_assert(json_object_object_get_ex(r, "partitionKey", &pk));
			ck_assert_str_eq(json_object_get_string(pk), c->pkey);
			b64 = json_object_get_string(d);
			dec = malloc(base64_decoded_max(strlen(b64)));
			dn = base64_decode(b64, strlen(b64), dec);
			ck_assert_msg(dn == (ssize_t)c->recs[i].iov_len, "%s[%zu]: %zd bytes, want %zu", c->name, i,
			    dn, c->recs[i].iov_len);
			ck_assert_msg(memcmp(dec, c->recs[i].iov_base, (size_t)dn) == 0, "%s[%zu] differs", c->name, i);
			free(dec);
		}
		json_object_put(o);
	}
	ck_assert_int_eq(seen, NCASES);
	free(out);
	for (size_t i = 0; i < NCASES; i++) {
		char path[512];

		snprintf(path, sizeof(path), "%s/%zu-%s", dir, i, cs[i].name);
		unlink(path);
		case_free(&cs[i]);
	}
	rmdir(dir);
}
END_TEST

static Suite *
kpl_suite(void)
{
	Suite *s = suite_create("kpl");
	TCase *tc;

	tc = tcase_create("sizes");
	tcase_add_test(tc, test_fixed_size);
	tcase_add_test(tc, test_inner_size_values);
	tcase_add_test(tc, test_sizes_exact_at_boundaries);
	suite_add_tcase(s, tc);

	tc = tcase_create("encode");
	tcase_add_test(tc, test_golden_bytes);
	tcase_add_test(tc, test_zero_records);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_builder_full);
	suite_add_tcase(s, tc);

	tc = tcase_create("base64");
	tcase_add_test(tc, test_base64_rfc4648);
	tcase_add_test(tc, test_base64_binary_roundtrip);
	tcase_add_test(tc, test_base64_decode_invalid);
	suite_add_tcase(s, tc);

	tc = tcase_create("deaggregate");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_deaggregate_with_aws_kinesis_agg);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(kpl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
