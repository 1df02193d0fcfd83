/*
 * The Telemetry API batch splitter: one pass over a POST body that validates it as
 * strict JSON (RFC 8259, UTF-8) and hands back each element of the top-level array
 * as a span of the body (its exact bytes, no copy), together with the few fields the
 * listener acts on: the event "type", and from "record" the "level" of JSON function
 * logs, the "droppedRecords" of platform.logsDropped and the "requestId" (whose place
 * the listener passes on to the dispatcher in the ring record's metadata).
 *
 * Strictness: whitespace is space/tab/CR/LF only; strings must be valid UTF-8 (no
 * overlong forms, no encoded surrogates, nothing above U+10FFFF) without raw control
 * characters; \u escapes must pair surrogates (a lone surrogate is rejected because
 * it cannot be represented in the UTF-8 a consumer will decode to); numbers follow the
 * RFC grammar exactly; nesting is limited to BATCH_MAX_DEPTH containers, the
 * top-level array included. Elements may be any JSON value.
 */
#ifndef KTE_BATCH_SPLIT_H
#define KTE_BATCH_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BATCH_MAX_DEPTH 64
#define BATCH_TYPE_MAX  64      /* longest escaped "type" value decoded for matching */

enum event_kind {
	EVENT_OTHER = 0,            /* any other type, or no string "type" */
	EVENT_RUNTIME_DONE,         /* platform.runtimeDone */
	EVENT_REPORT,               /* platform.report */
	EVENT_LOGS_DROPPED,         /* platform.logsDropped */
	EVENT_FUNCTION,             /* function */
	EVENT_EXTENSION,            /* extension */
};

/* Function log levels, as KTE_MIN_FUNCTION_LOG_LEVEL numbers them. */
enum log_record_level {
	RECORD_LEVEL_NONE = -1,     /* no "level" string in an object "record", or unknown */
	RECORD_LEVEL_TRACE = 0, RECORD_LEVEL_DEBUG, RECORD_LEVEL_INFO, RECORD_LEVEL_WARN,
	RECORD_LEVEL_ERROR, RECORD_LEVEL_FATAL,
};

/* One element of the batch. Pointers are valid only during the callback. */
struct batch_event {
	const uint8_t *data;        /* the element's exact bytes inside the body */
	size_t len;
	size_t index;               /* position in the array, from 0 */
	const char *type;           /* value of "type" (escapes decoded), not NUL-terminated; NULL if none */
	size_t type_len;
	enum event_kind kind;
	int level;                  /* enum log_record_level of record.level */
	uint64_t dropped_records;   /* record.droppedRecords when a non-negative integer, else 0 */
	const uint8_t *request_id;  /* record.requestId string's raw bytes (inside data), NULL if none */
	size_t request_id_len;
	bool request_id_escaped;    /* it holds a backslash escape (raw bytes, not decoded) */
};

/* Called once per element, in order. A negative return stops the split and is returned. */
typedef int (*batch_event_fn)(void *ctx, const struct batch_event *ev);

/* Where and why a body was rejected (for debug logs and tests). */
struct batch_split_error {
	size_t offset;              /* byte offset of the problem */
	const char *what;           /* static text */
};

/*
 * Splits body[0..len) into its array elements, calling fn for each. Callbacks run
 * while the body is still being validated: act on what they collected only when
 * this returns 0. Returns 0 (with *count elements, if count is non-NULL), -ENODATA
 * for an empty or all-whitespace body, -EPROTOTYPE when the top-level value is not
 * an array, -EBADMSG for invalid JSON (err, if non-NULL, says where), or fn's
 * negative return. Reentrant: no global state.
 */
int batch_split(const uint8_t *body, size_t len, batch_event_fn fn, void *ctx, size_t *count,
    struct batch_split_error *err) __attribute__((warn_unused_result));

/* Parses a log level name (trace, debug, info, warn/warning, error, fatal/critical; any case). */
int batch_level_parse(const char *s, size_t len);

#endif
