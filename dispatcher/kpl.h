/*
 * KPL aggregated records (the format of the Kinesis Producer Library, read
 * transparently by KCL and the aws-kinesis-agg de-aggregators):
 *
 *   F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf) (16 bytes)
 *
 * AggregatedRecord { repeated string partition_key_table = 1; repeated Record records = 3; }
 * Record { required uint64 partition_key_index = 1; required bytes data = 3; }
 *
 * We aggregate only records that share ONE partition key (KCL 2.x drops inner records
 * whose key hashes to another shard), so the table holds one key and every inner
 * record points at index 0. The Kinesis record carrying the result must use the
 * same partition key, and its data + key must fit the record limit: size it with
 * kpl_fixed_size() + the sum of kpl_inner_size() of the records.
 * Pure functions of their arguments; thread-safe.
 */
#ifndef KTE_KPL_H
#define KTE_KPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define KPL_MAGIC_LEN 4
#define KPL_MD5_LEN 16

/* Bytes of an aggregated record with no inner record: magic + key table entry + MD5. */
size_t kpl_fixed_size(const char *pkey);

/* Exact bytes one inner record of data_len bytes adds to the aggregated record. */
size_t kpl_inner_size(size_t data_len);

/*
 * Encodes the n records recs[] (any bytes, any length, n may be 0) under partition
 * key pkey into out[0..cap). Writes exactly kpl_fixed_size(pkey) + sum(kpl_inner_size)
 * bytes and stores that in *out_len. Returns 0, -EINVAL (NULL or empty pkey, NULL
 * recs with n > 0) or -ENOSPC (cap too small; out is then unspecified).
 */
int kpl_encode(const char *pkey, const struct iovec *recs, size_t n, uint8_t *out, size_t cap,
    size_t *out_len) __attribute__((warn_unused_result));

/*
 * Incremental form of kpl_encode, for callers that decide record by record whether
 * the next one still fits: init, add..., finish. The caller owns out.
 */
struct kpl_builder {
	uint8_t *out;
	size_t cap;
	size_t len;                     /* bytes written so far (without the MD5) */
	size_t n;                       /* inner records added */
	size_t body_off;                /* where the protobuf starts (after the magic) */
};

/* Writes the magic and the key table. Returns 0, -EINVAL or -ENOSPC. */
int kpl_builder_init(struct kpl_builder *b, const char *pkey, uint8_t *out, size_t cap)
    __attribute__((warn_unused_result));

/* Appends one inner record. Returns 0, -EINVAL, or -ENOSPC with b unchanged (room is
 * kept for the MD5 trailer, so finish always succeeds after a successful add). */
int kpl_builder_add(struct kpl_builder *b, const void *data, size_t len) __attribute__((warn_unused_result));

/* Appends the MD5 trailer; *out_len = total bytes. Returns 0 or -EIO (libcrypto). */
int kpl_builder_finish(struct kpl_builder *b, size_t *out_len) __attribute__((warn_unused_result));

#endif
