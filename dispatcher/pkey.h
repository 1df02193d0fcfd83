/*
 * Partition keys for Kinesis records (KTE_PARTITION_KEY), see config.h:
 *   request-id (default): the event's record.requestId; an event without one (text
 *       function logs, extension logs) takes the request id of the invocation in
 *       progress (the last id seen, forgotten after that invocation's platform.report);
 *       events outside any invocation (init) get a random key. Kinesis hashes the key
 *       to a shard: invocations spread over shards, an invocation's events stay together.
 *   random: a fresh random key per Kinesis record: best spread and best packing.
 *   function: AWS_LAMBDA_FUNCTION_NAME (one shard per function).
 *   fixed:<key>: that key.
 * Process-local state; not thread-safe.
 */
#ifndef KTE_PKEY_H
#define KTE_PKEY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ring.h"

#define PKEY_MAX        256   /* Kinesis: 1..256 characters */
#define PKEY_RANDOM_LEN 16    /* hex digits of a random key */

struct pkey_state {
	enum partition_key_mode mode;
	char fixed[PKEY_MAX + 1];       /* fixed:<key>, or the function name */
	size_t fixed_len;
	char sticky[PKEY_MAX + 1];      /* request-id mode: the invocation in progress */
	size_t sticky_len;
	uint64_t rng;
	const uint8_t *hint_ev;         /* pkey_hint: the event it describes (NULL: none) */
	size_t hint_len;
	struct ring_meta hint;
	uint64_t hinted, scanned;       /* events keyed from metadata / by scanning the JSON */
};

/* Sets up s from cfg; function_name (may be NULL) serves the `function` mode. */
void pkey_init(struct pkey_state *s, const struct kte_config *cfg, const char *function_name);

/*
 * Hands over what the listener recorded about a ring record (its metadata: type and
 * requestId span): the next pkey_for_event call for exactly these bytes uses it
 * instead of scanning the JSON, once. Metadata that is absent or does not validate
 * (a span outside the event, an unknown type: shared memory is hostile) is ignored.
 */
void pkey_hint(struct pkey_state *s, const struct ring_record *rec);

/*
 * Writes the key for one event (a telemetry event's JSON bytes) into out (at least
 * PKEY_MAX + 1 bytes, NUL-terminated) and returns its length, or returns 0 when the
 * event should get a random key per Kinesis record (pkey_random). Uses a matching
 * pkey_hint, else scans the event (events without metadata: tests, the summary).
 */
size_t pkey_for_event(struct pkey_state *s, const uint8_t *ev, size_t len, char *out);

/*
 * Draws a new seed for the random keys from getrandom(): after a SnapStart restore every
 * environment restored from the snapshot would otherwise draw the same keys (same shards).
 */
void pkey_reseed(struct pkey_state *s);

/* Writes a random key of PKEY_RANDOM_LEN hex digits into out; returns its length. */
size_t pkey_random(struct pkey_state *s, char *out);

/*
 * Finds the top-level "type" string and record.requestId string of a telemetry
 * event without allocating. Each output is set to the raw bytes between the quotes
 * (escapes not decoded) or to NULL/0 when absent. Returns 0, or -EINVAL when the
 * event is not a JSON object (outputs then NULL). Never reads past len.
 */
int pkey_scan_event(const uint8_t *ev, size_t len, const uint8_t **type, size_t *type_len,
    const uint8_t **request_id, size_t *request_id_len) __attribute__((warn_unused_result));

#endif
