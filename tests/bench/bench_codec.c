/*
 * Benchmark of the dispatcher's CPU-bound pieces, single thread: KPL aggregation of
 * 300-byte events, base64 of record data, SigV4 signing of PutRecords bodies (with and
 * without the cached signing key), and the three together per 5 MiB request.
 * Prints figures only; it asserts nothing about speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatcher/base64.h"
#include "dispatcher/kpl.h"
#include "dispatcher/sigv4.h"

#define EVENT_BYTES 300
#define RECORD_MAX (1024 * 1024)
#define REQUEST_MAX (5 * 1024 * 1024)

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
fill_event(char *ev, size_t i)
{
	int n = snprintf(ev, EVENT_BYTES, "{\"time\":\"2025-11-28T05:38:13.%03zuZ\",\"type\":\"function\","
	    "\"record\":{\"requestId\":\"4e4c6f2a-0000-4000-8000-%012zu\",\"message\":\"", i % 1000, i);

	memset(ev + n, 'x', EVENT_BYTES - (size_t)n - 3);
	memcpy(ev + EVENT_BYTES - 3, "\"}}", 3);
}

int
main(void)
{
	const char *pkey = "4e4c6f2a-0000-4000-8000-000000000000";
	size_t nev = 200000, out_len, per_record = 0, records = 0;
	char *events = malloc(nev * EVENT_BYTES);
	uint8_t *rec = malloc(RECORD_MAX);
	char *b64 = malloc(base64_encoded_len(REQUEST_MAX) + 1);
	struct sigv4_credentials cred = { 0 };
	struct sigv4_key_cache cache = { 0 };
	struct sigv4_kinesis_headers h;
	double t0, dt;
	size_t i, reps;
	int rc = 0;

	for (i = 0; i < nev; i++)
		fill_event(events + i * EVENT_BYTES, i);
	strcpy(cred.access_key_id, "AKIDEXAMPLE");
	strcpy(cred.secret_access_key, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	memset(cred.session_token, 'T', 1000);

	/* KPL: fill 1 MiB records (data + key) with 300-byte events. */
	t0 = now_s();
	for (i = 0; i < nev;) {
		struct kpl_builder b;
		size_t room = RECORD_MAX - strlen(pkey), n = 0;

		rc |= kpl_builder_init(&b, pkey, rec, room);
		while (i < nev && kpl_builder_add(&b, events + i * EVENT_BYTES, EVENT_BYTES) == 0) {
			i++;
			n++;
		}
		rc |= kpl_builder_finish(&b, &out_len);
		records++;
		if (per_record == 0)
			per_record = n;
	}
	dt = now_s() - t0;
	printf("kpl_encode: %.0f events/s (%.0f MB/s of event data), %zu events of %d B per 1 MiB Kinesis record "
	    "(%.0fx fewer records than one event per record)\n", (double)nev / dt,
	    (double)nev * EVENT_BYTES / dt / 1e6, per_record, EVENT_BYTES, (double)per_record);

	/* base64 of 1 MiB blocks. */
	reps = 200;
	t0 = now_s();
	for (i = 0; i < reps; i++)
		base64_encode(events + (i % 8) * 1000, RECORD_MAX / 2, b64);
	dt = now_s() - t0;
	printf("base64_encode: %.0f MB/s of input\n", (double)reps * RECORD_MAX / 2 / dt / 1e6);

	/* SigV4 over a 5 MiB body (dominated by SHA-256 of the body). */
	reps = 100;
	t0 = now_s();
	for (i = 0; i < reps; i++)
		rc |= sigv4_sign_kinesis(&cache, &cred, "us-east-1", "kinesis.us-east-1.amazonaws.com",
		    "Kinesis_20131202.PutRecords", events, REQUEST_MAX, 1764308293 + (time_t)i, &h);
	dt = now_s() - t0;
	printf("sigv4_sign_kinesis 5 MiB body: %.0f signatures/s (%.0f MB/s)\n", (double)reps / dt,
	    (double)reps * REQUEST_MAX / dt / 1e6);

	/* SigV4 of a small body: the fixed cost per request, key cached or derived each time. */
	reps = 50000;
	t0 = now_s();
	for (i = 0; i < reps; i++)
		rc |= sigv4_sign_kinesis(&cache, &cred, "us-east-1", "kinesis.us-east-1.amazonaws.com",
		    "Kinesis_20131202.PutRecords", events, 1000, 1764308293 + (time_t)(i % 3600), &h);
	dt = now_s() - t0;
	printf("sigv4_sign_kinesis 1 KB body, cached key: %.1f us/request (%llu derivations)\n", dt / (double)reps * 1e6,
	    (unsigned long long)cache.derivations);
	t0 = now_s();
	for (i = 0; i < reps; i++)
		rc |= sigv4_sign_kinesis(NULL, &cred, "us-east-1", "kinesis.us-east-1.amazonaws.com",
		    "Kinesis_20131202.PutRecords", events, 1000, 1764308293 + (time_t)(i % 3600), &h);
	dt = now_s() - t0;
	printf("sigv4_sign_kinesis 1 KB body, no cache:   %.1f us/request\n", dt / (double)reps * 1e6);

	/* Together: KPL records -> base64 into a request body -> sign, per 5 MiB request. */
	t0 = now_s();
	{
		size_t body_len = 0, reqs = 0;

		for (i = 0; i < nev;) {
			struct kpl_builder b;
			size_t room = RECORD_MAX - strlen(pkey);

			rc |= kpl_builder_init(&b, pkey, rec, room);
			while (i < nev && kpl_builder_add(&b, events + i * EVENT_BYTES, EVENT_BYTES) == 0)
				i++;
			rc |= kpl_builder_finish(&b, &out_len);
			if (body_len + base64_encoded_len(out_len) > base64_encoded_len(REQUEST_MAX) - 4096) {
				rc |= sigv4_sign_kinesis(&cache, &cred, "us-east-1", "kinesis.us-east-1.amazonaws.com",
				    "Kinesis_20131202.PutRecords", b64, body_len, 1764308293, &h);
				reqs++;
				body_len = 0;
			}
			body_len += base64_encode(rec, out_len, b64 + body_len);
		}
		rc |= sigv4_sign_kinesis(&cache, &cred, "us-east-1", "kinesis.us-east-1.amazonaws.com",
		    "Kinesis_20131202.PutRecords", b64, body_len, 1764308293, &h);
		reqs++;
		dt = now_s() - t0;
		printf("kpl + base64 + sign: %.0f events/s of %d B (%zu requests)\n", (double)nev / dt, EVENT_BYTES,
		    reqs);
	}

	sigv4_key_cache_wipe(&cache);
	sigv4_credentials_wipe(&cred);
	free(events);
	free(rec);
	free(b64);
	if (rc != 0)
		fprintf(stderr, "bench_codec: an operation failed\n");
	return rc != 0;
}
