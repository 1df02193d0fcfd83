/*
 * Standard base64 (RFC 4648 §4, alphabet A-Z a-z 0-9 + /, '=' padding), as the
 * Kinesis JSON protocol wants for record Data. Pure functions; thread-safe.
 */
#ifndef KTE_BASE64_H
#define KTE_BASE64_H

#include <stddef.h>
#include <sys/types.h>

/* Exact length of the encoding of n bytes (padding included, no NUL): 4 * ceil(n / 3). */
static inline size_t
base64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

/* Encodes in[0..n) into out, which must hold base64_encoded_len(n) bytes (no NUL is
 * written). Returns the number of characters written. */
size_t base64_encode(const void *in, size_t n, char *out);

/* Upper bound of the decoded size of n characters. */
static inline size_t
base64_decoded_max(size_t n)
{
	return n / 4 * 3 + 3;
}

/*
 * Decodes strict standard base64 (length a multiple of 4, padding only at the end,
 * no whitespace) into out (base64_decoded_max(n) bytes). Returns the decoded length
 * or -EINVAL.
 */
ssize_t base64_decode(const char *in, size_t n, void *out) __attribute__((warn_unused_result));

#endif
