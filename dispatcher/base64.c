/* Standard base64 (see base64.h). */
#include "base64.h"

#include <errno.h>
#include <stdint.h>

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
base64_encode(const void *in, size_t n, char *out)
{
	const uint8_t *s = in;
	char *d = out;
	size_t i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];

		d[0] = b64_alphabet[v >> 18];
		d[1] = b64_alphabet[(v >> 12) & 63];
		d[2] = b64_alphabet[(v >> 6) & 63];
		d[3] = b64_alphabet[v & 63];
		d += 4;
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;

		d[0] = b64_alphabet[v >> 18];
		d[1] = b64_alphabet[(v >> 12) & 63];
		d[2] = '=';
		d[3] = '=';
		d += 4;
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;

		d[0] = b64_alphabet[v >> 18];
		d[1] = b64_alphabet[(v >> 12) & 63];
		d[2] = b64_alphabet[(v >> 6) & 63];
		d[3] = '=';
		d += 4;
	}
	return (size_t)(d - out);
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t
base64_decode(const char *in, size_t n, void *out)
{
	uint8_t *d = out;

	if (n % 4 != 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;

		for (int j = 0; j < 4; j++) {
			unsigned char c = (unsigned char)in[i + j];

			if (c == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
				continue;
			}
			if (pad > 0 || (v[j] = b64_value(c)) < 0)
				return -EINVAL;
		}
		/* Padding bits must be zero (canonical encoding only). */
		if ((pad == 2 && (v[1] & 15) != 0) || (pad == 1 && (v[2] & 3) != 0))
			return -EINVAL;
		*d++ = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			*d++ = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			*d++ = (uint8_t)((v[2] & 3) << 6 | v[3]);
	}
	return (ssize_t)(d - (uint8_t *)out);
}
