/*
 * libFuzzer target for what the dispatcher reads from others: events from the ring
 * (partition-key scan, every record format's encoding) and Kinesis replies (success
 * bodies with per-record errors, error bodies and headers). Checks invariants too:
 * an encoded body is valid JSON whose records decode to the event (ndjson: with CR/LF
 * as spaces), and a reply never marks more records than were sent.
 * The first input byte picks the format, the limits and the reply shape.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "dispatcher/base64.h"
#include "base64_decode.h"
#include "dispatcher/batch.h"
#include "dispatcher/pkey.h"
#include "dispatcher/reply.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct batch batches[3];
static struct pkey_state pk;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct kte_config cfg;

	(void)argc;
	(void)argv;
	log_init("fuzz", LOG_LEVEL_ERROR);
	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.stream_name, "fuzz");
	cfg.max_record_bytes = 2048;
	cfg.max_request_bytes = 8192;
	cfg.pkey_mode = PKEY_REQUEST_ID;
	pkey_init(&pk, &cfg, "fn");
	for (int f = 0; f < 3; f++) {
		cfg.record_format = (enum record_format)f;
		if (batch_init(&batches[f], &cfg, &pk) != 0)
			abort();
	}
	return 0;
}

static void
check_body(struct batch *b, const uint8_t *ev, size_t len, int format)
{
	char *text = strndup(b->body, b->len);
	json_object *root = json_tokener_parse(text), *recs, *r, *d;
	const char *s;
	uint8_t *buf;
	ssize_t n;

	free(text);
	if (root == NULL || !json_object_object_get_ex(root, "Records", &recs))
		abort();
	if (json_object_array_length(recs) != 1 || format == FORMAT_KPL) {
		json_object_put(root);
		return;
	}
	r = json_object_array_get_idx(recs, 0);
	if (!json_object_object_get_ex(r, "Data", &d))
		abort();
	s = json_object_get_string(d);
	buf = malloc(base64_decoded_max(strlen(s)) + 1);
	n = base64_decode(s, strlen(s), buf);
	if (n != (ssize_t)len)
		abort();
	for (size_t i = 0; i < len; i++) {
		uint8_t want = ev[i];

		if (format == FORMAT_NDJSON && (want == '\n' || want == '\r'))
			want = ' ';
		if (buf[i] != want)
			abort();
	}
	free(buf);
	json_object_put(root);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *type, *rid;
	size_t tl, rl;
	uint8_t status[600];
	struct reply_result res;
	char key[PKEY_MAX + 1];
	int format, rc;
	struct batch *b;

	if (size < 1)
		return 0;
	format = data[0] % 3;
	data++;
	size--;

	/* Ring events: the key scan, then one event through the format's encoder. */
	if (pkey_scan_event(data, size, &type, &tl, &rid, &rl) == 0) {
		if ((type != NULL && (type < data || type + tl > data + size)) ||
		    (rid != NULL && (rid < data || rid + rl > data + size)))
			abort();
	}
	(void)pkey_for_event(&pk, data, size, key);
	b = &batches[format];
	batch_reset(b, 1 << 16);
	rc = batch_add(b, data, size, false);
	if (rc == BATCH_ADDED) {
		if (batch_finish(b) != 0)
			abort();
		check_body(b, data, size, format);
	}

	/* Kinesis replies. */
	reply_parse(200, 0, NULL, NULL, (const char *)data, size, size > 0 ? 1 + data[0] % 500 : 1, status,
	    &res);
	if (res.outcome == REPLY_PARTIAL && res.failed > 500)
		abort();
	reply_parse(400 + (long)(size % 120), 0, NULL, size > 4 ? "x#Code:y" : NULL, (const char *)data,
	    size, 1, status, &res);
	return 0;
}
