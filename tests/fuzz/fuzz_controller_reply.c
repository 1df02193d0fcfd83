/*
 * libFuzzer target for what the controller reads from the Runtime API: the HTTP/1.1
 * response parser (Content-Length, chunked, until EOF, interim 1xx) on arbitrary
 * bytes, then the event and error-body JSON parsers on whatever body it yields.
 * Checks the parser's own invariants: a complete response lies within the input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "controller/extensions_api.h"
#include "controller/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_response r;
	struct ext_event ev;
	char type[64];
	char *buf;

	if (size > 1 << 20)
		return 0;
	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	for (int eof = 0; eof < 2; eof++) {
		memcpy(buf, data, size);
		buf[size] = '\0';
		if (http_parse_response(buf, size, eof, &r) != 0)
			continue;
		if (r.status < 100 || r.status > 999 || r.total_len > size || r.body_off > r.total_len ||
		    r.body_len > r.total_len - r.body_off)
			abort();
		(void)ext_event_parse(buf + r.body_off, r.body_len, &ev);
		ext_error_type(buf + r.body_off, r.body_len, type, sizeof(type));
	}
	/* The JSON parsers alone, on the raw input. */
	(void)ext_event_parse((const char *)data, size, &ev);
	ext_error_type((const char *)data, size, type, sizeof(type));
	free(buf);
	return 0;
}
