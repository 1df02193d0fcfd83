/*
 * KPL aggregated record encoder (see kpl.h). Protobuf wire format by hand: the
 * message has two fields we use, both length-delimited (wire type 2):
 *   0x0A len key            partition_key_table (field 1)
 *   0x1A len Record         records (field 3), Record = 0x08 0x00 (index 0) 0x1A len data
 */
#include "kpl.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

static const uint8_t kpl_magic[KPL_MAGIC_LEN] = { 0xF3, 0x89, 0x9A, 0xC2 };

static size_t
varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *
varint_put(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Size of the Record message (without its own tag and length). */
static size_t
record_size(size_t data_len)
{
	return 2 + 1 + varint_len(data_len) + data_len;
}

size_t
kpl_fixed_size(const char *pkey)
{
	size_t k = pkey != NULL ? strlen(pkey) : 0;

	return KPL_MAGIC_LEN + 1 + varint_len(k) + k + KPL_MD5_LEN;
}

size_t
kpl_inner_size(size_t data_len)
{
	size_t r = record_size(data_len);

	return 1 + varint_len(r) + r;
}

int
kpl_builder_init(struct kpl_builder *b, const char *pkey, uint8_t *out, size_t cap)
{
	size_t k;
	uint8_t *p;

	memset(b, 0, sizeof(*b));
	if (pkey == NULL || pkey[0] == '\0' || (out == NULL && cap > 0))
		return -EINVAL;
	if (cap < kpl_fixed_size(pkey))
		return -ENOSPC;
	k = strlen(pkey);
	memcpy(out, kpl_magic, KPL_MAGIC_LEN);
	p = out + KPL_MAGIC_LEN;
	*p++ = 0x0A;
	p = varint_put(p, k);
	memcpy(p, pkey, k);
	p += k;
	b->out = out;
	b->cap = cap;
	b->len = (size_t)(p - out);
	b->body_off = KPL_MAGIC_LEN;
	return 0;
}

int
kpl_builder_add(struct kpl_builder *b, const void *data, size_t len)
{
	size_t r, need;
	uint8_t *p;

	if (b->out == NULL || (data == NULL && len > 0))
		return -EINVAL;
	need = kpl_inner_size(len);
	if (need < len || b->cap - b->len < KPL_MD5_LEN || b->cap - b->len - KPL_MD5_LEN < need)
		return -ENOSPC;
	r = record_size(len);
	p = b->out + b->len;
	*p++ = 0x1A;
	p = varint_put(p, r);
	*p++ = 0x08;                    /* partition_key_index = 0 */
	*p++ = 0x00;
	*p++ = 0x1A;                    /* data */
	p = varint_put(p, len);
	if (len > 0)
		memcpy(p, data, len);
	b->len += need;
	b->n++;
	return 0;
}

int
kpl_builder_finish(struct kpl_builder *b, size_t *out_len)
{
	unsigned int mdlen = 0;

	if (b->out == NULL || b->cap - b->len < KPL_MD5_LEN)
		return -EINVAL;
	if (EVP_Digest(b->out + b->body_off, b->len - b->body_off, b->out + b->len, &mdlen, EVP_md5(),
	    NULL) != 1 || mdlen != KPL_MD5_LEN)
		return -EIO;
	b->len += KPL_MD5_LEN;
	*out_len = b->len;
	return 0;
}

int
kpl_encode(const char *pkey, const struct iovec *recs, size_t n, uint8_t *out, size_t cap,
    size_t *out_len)
{
	struct kpl_builder b;
	int rc;

	if (recs == NULL && n > 0)
		return -EINVAL;
	if ((rc = kpl_builder_init(&b, pkey, out, cap)) != 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = kpl_builder_add(&b, recs[i].iov_base, recs[i].iov_len)) != 0)
			return rc;
	return kpl_builder_finish(&b, out_len);
}
