/*
 * Strict base64 decoding for the tests, which check what the dispatcher sent: only
 * the canonical encoding of some bytes is accepted (no whitespace, padding only at
 * the end and only as much as needed, unused bits zero).
 */
#ifndef KTE_TEST_BASE64_DECODE_H
#define KTE_TEST_BASE64_DECODE_H

#include <stddef.h>
#include <sys/types.h>

/* Upper bound of the decoded size of n characters. */
static inline size_t
base64_decoded_max(size_t n)
{
	return n / 4 * 3 + 3;
}

/* Decodes in[0..n) into out (base64_decoded_max(n) bytes). Returns the length or -EINVAL. */
ssize_t base64_decode(const char *in, size_t n, void *out) __attribute__((warn_unused_result));

#endif
