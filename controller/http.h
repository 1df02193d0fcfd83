/*
 * The HTTP/1.1 wire format the controller needs to talk to the Lambda Runtime API:
 * formatting one request and parsing one response (Content-Length, chunked, or
 * until EOF). Pure functions on caller buffers: no sockets, no allocation.
 */
#ifndef KTE_CONTROLLER_HTTP_H
#define KTE_CONTROLLER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_ID_MAX 128

struct http_response {
	int status;                 /* 100..599 */
	size_t body_off;            /* body within the buffer, after de-chunking */
	size_t body_len;
	size_t total_len;           /* bytes of the buffer this response used */
	bool keep_alive;            /* false: the server closes the connection after it */
	char ext_id[HTTP_ID_MAX];   /* Lambda-Extension-Identifier, "" if absent */
};

/*
 * Parses the response at the start of buf[0..len). eof says the peer closed the
 * connection (needed for bodies delimited by EOF). Returns 0 with r filled when the
 * response is complete (a chunked body is decoded in place, so call again only on
 * a new buffer), -EAGAIN when more bytes are needed, -EPROTO when malformed,
 * -EMSGSIZE when a field or the headers are absurdly large.
 */
int http_parse_response(char *buf, size_t len, bool eof, struct http_response *r)
    __attribute__((warn_unused_result));

/*
 * Formats a request into out: "<method> <path> HTTP/1.1", Host, the extra header
 * lines given in headers (each ending in \r\n, or NULL), Content-Length when body
 * is not NULL, and the body. Returns the length, or -ENOSPC if out is too small.
 */
int http_format_request(char *out, size_t outlen, const char *method, const char *path,
    const char *host, const char *headers, const char *body, size_t bodylen)
    __attribute__((warn_unused_result));

#endif
