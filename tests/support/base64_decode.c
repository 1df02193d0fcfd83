/* Strict base64 decoding over OpenSSL, for the tests: see base64_decode.h. */
#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "base64_decode.h"

ssize_t
base64_decode(const char *in, size_t n, void *out)
{
	size_t pad, len;
	unsigned char *again;
	int dl;
	bool canonical;

	if (n % 4 != 0 || n > INT_MAX / 2)
		return -EINVAL;
	if (n == 0)
		return 0;
	if ((dl = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n)) < 0)
		return -EINVAL;
	/* EVP_DecodeBlock counts padding as zero bytes and tolerates whitespace and
	 * non-zero unused bits: accept only what encodes back to the same text. */
	pad = (in[n - 1] == '=') + (in[n - 2] == '=');
	if ((size_t)dl < pad)
		return -EINVAL;
	len = (size_t)dl - pad;
	if ((again = malloc(n + 1)) == NULL)
		return -ENOMEM;
	canonical = (size_t)EVP_EncodeBlock(again, out, (int)len) == n && memcmp(again, in, n) == 0;
	free(again);
	return canonical ? (ssize_t)len : -EINVAL;
}
