/*
 * Intake: one Telemetry API batch into the ring, independent of HTTP. Checks that a
 * batch is all in the ring or not at all, the exact bytes of each event, the replies
 * for bad bodies, the counters and controller signals, the filters, oversized events,
 * a full ring (503 after the bounded wait, nothing partial) and batches larger than
 * the ring (written in groups).
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "control.h"
#include "listener/intake.h"
#include "ring.h"

struct env_pair {
	const char *name, *value;
};

static const char *
env_get(const char *name, void *ctx)
{
	for (const struct env_pair *p = ctx; p->name != NULL; p++)
		if (strcmp(p->name, name) == 0)
			return p->value;
	return NULL;
}

struct fixture {
	struct kte_config cfg;
	struct ring ring;
	struct control *ctl;
	struct control_fds fds;
	struct intake in;
	struct intake_scratch w;
};

static void
fixture_init(struct fixture *f, uint64_t ring_bytes, const struct env_pair *env)
{
	static const struct env_pair base[] = { { "KTE_STREAM_NAME", "s" }, { "AWS_REGION", "us-east-1" }, { NULL, NULL } };
	char err[256];

	memset(f, 0, sizeof(*f));
	ck_assert_msg(config_load_from(&f->cfg, env_get, (void *)(uintptr_t)(env ? env : base), err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ring_create(&f->ring, ring_bytes), 0);
	ck_assert_ptr_nonnull(f->ctl = control_new(&f->fds));
	ck_assert_int_eq(intake_init(&f->in, &f->cfg, &f->ring, f->ctl, f->fds.to_controller, 20), 0);
}

static void
fixture_cleanup(struct fixture *f)
{
	intake_scratch_cleanup(&f->w);
	control_free(f->ctl, &f->fds);
	ring_close(&f->ring);
}

static int
take(struct fixture *f, const char *body, struct intake_result *res)
{
	return intake_batch(&f->in, &f->w, (const uint8_t *)body, strlen(body), res);
}

/* Pops the next ring record into buf (NUL-terminated); returns its length or -1. */
static int
pop(struct fixture *f, char *buf, size_t cap)
{
	struct ring_record rec;

	if (ring_peek(&f->ring, &rec) != 0)
		return -1;
	ck_assert_uint_lt(rec.len, cap);
	memcpy(buf, rec.data, rec.len);
	buf[rec.len] = '\0';
	ck_assert_int_eq(ring_release(&f->ring, rec.next), 0);
	return (int)rec.len;
}

#define EV_START  "{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":\"platform.start\",\"record\":{\"requestId\":\"r1\"}}"
#define EV_LOG    "{\"time\":\"2026-01-01T00:00:00.001Z\",\"type\":\"function\",\"record\":\"hello \\\"x\\\"\\n\"}"
#define EV_DONE   "{\"time\":\"2026-01-01T00:00:00.002Z\",\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":\"r1\",\"status\":\"success\"}}"
#define EV_REPORT "{\"time\":\"2026-01-01T00:00:00.003Z\",\"type\":\"platform.report\",\"record\":{\"requestId\":\"r1\"}}"
#define EV_LOST   "{\"time\":\"2026-01-01T00:00:00.004Z\",\"type\":\"platform.logsDropped\",\"record\":{\"reason\":\"r\",\"droppedRecords\":7,\"droppedBytes\":70}}"

START_TEST(test_exact_bytes_and_signals)
{
	struct fixture f;
	struct intake_result res;
	char buf[512];

	fixture_init(&f, 65536, NULL);
	ck_assert_int_eq(take(&f, "[ " EV_START " ,\n" EV_LOG "," EV_DONE "," EV_REPORT "," EV_LOST " ]", &res), 200);
	ck_assert_uint_eq(res.events, 5);
	ck_assert_uint_eq(res.written, 5);
	ck_assert_int_eq(res.chunks, 1);
	/* Each event's own bytes, without the array's whitespace and commas, in order. */
	ck_assert_int_eq(pop(&f, buf, sizeof(buf)), (int)strlen(EV_START));
	ck_assert_str_eq(buf, EV_START);
	pop(&f, buf, sizeof(buf));
	ck_assert_str_eq(buf, EV_LOG);
	pop(&f, buf, sizeof(buf));
	ck_assert_str_eq(buf, EV_DONE);
	pop(&f, buf, sizeof(buf));
	ck_assert_str_eq(buf, EV_REPORT);
	pop(&f, buf, sizeof(buf));
	ck_assert_str_eq(buf, EV_LOST);
	ck_assert_int_eq(pop(&f, buf, sizeof(buf)), -1);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.requests), 1);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.events), 5);
	ck_assert_uint_eq(atomic_load(&f.ctl->runtime_done_count), 1);
	ck_assert_uint_eq(atomic_load(&f.ctl->report_count), 1);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.logs_dropped_records), 7);
	fixture_cleanup(&f);
}
END_TEST

START_TEST(test_bad_bodies_write_nothing)
{
	static const char *bad[] = { "", "   ", "{}", "[" EV_START, "[" EV_START ",]", "[1,", "[\"\\x\"]",
	    "[" EV_START "] x", "\xff[]", "[{\"a\":\"\xc3\"}]" };
	struct fixture f;
	struct intake_result res;
	struct ring_stats st;

	fixture_init(&f, 65536, NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(take(&f, bad[i], &res) == 400, "body %zu got %d", i, res.status);
		ck_assert_ptr_nonnull(res.why);
	}
	ring_stats(&f.ring, &st);
	ck_assert_uint_eq(st.written_records, 0);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.bad_request), sizeof(bad) / sizeof(bad[0]));
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.requests), 0);
	/* An empty array is a valid (if useless) batch. */
	ck_assert_int_eq(take(&f, "[]", &res), 200);
	ck_assert_uint_eq(res.written, 0);
	fixture_cleanup(&f);
}
END_TEST

START_TEST(test_full_ring_all_or_nothing)
{
	struct fixture f;
	struct intake_result res;
	struct ring_stats st;
	char *body, ev[1100], pad[1001];
	size_t off = 0, accepted = 0;

	fixture_init(&f, 16384, NULL);
	/* 1 KiB events: a batch of 6 fits a 16 KiB ring twice, not three times. */
	memset(pad, 'a', 1000);
	pad[1000] = '\0';
	snprintf(ev, sizeof(ev), "{\"type\":\"function\",\"record\":\"%s\"}", pad);
	body = malloc(8 * sizeof(ev));
	body[off++] = '[';
	for (int i = 0; i < 6; i++)
		off += (size_t)sprintf(body + off, "%s%s", i ? "," : "", ev);
	body[off++] = ']';
	body[off] = '\0';
	for (int i = 0; i < 3; i++)
		if (take(&f, body, &res) == 200)
			accepted++;
	ck_assert_uint_eq(accepted, 2);
	ck_assert_int_eq(res.status, 503);
	ring_stats(&f.ring, &st);
	ck_assert_uint_eq(st.written_records, 12);      /* nothing of the refused batch */
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.ring_full), 1);
	/* Space released: the same batch goes in. */
	for (char buf[1200]; pop(&f, buf, sizeof(buf)) > 0;)
		;
	ck_assert_int_eq(take(&f, body, &res), 200);
	free(body);
	fixture_cleanup(&f);
}
END_TEST

/* The dispatcher's part: drains records until it has seen want of them (bounded wait). */
struct drainer {
	struct ring *ring;
	int want, seen;
};

static void *
drain(void *arg)
{
	struct drainer *d = arg;
	struct ring_record rec;

	for (int idle = 0; d->seen < d->want && idle < 50;) {
		if (ring_peek(d->ring, &rec) == 0) {
			d->seen++;
			ck_assert_int_eq(ring_release(d->ring, rec.next), 0);
			idle = 0;
		} else if (ring_reader_arm(d->ring) && ring_reader_wait(d->ring, 100) == 0)
			idle++;
	}
	return NULL;
}

START_TEST(test_batch_larger_than_ring_in_groups)
{
	struct fixture f;
	struct intake_result res;
	struct drainer d;
	pthread_t th;
	char *body, ev[700];
	size_t off = 0;

	fixture_init(&f, 8192, NULL);
	snprintf(ev, sizeof(ev), "{\"type\":\"function\",\"record\":\"%0600d\"}", 0);
	body = malloc(20 * sizeof(ev));
	body[off++] = '[';
	for (int i = 0; i < 16; i++)                     /* 16 x ~650 B: more than the whole ring */
		off += (size_t)sprintf(body + off, "%s%s", i ? "," : "", ev);
	body[off++] = ']';
	body[off] = '\0';
	ck_assert_uint_gt(off, 8192);
	d = (struct drainer){ .ring = &f.ring, .want = 16 };
	ck_assert_int_eq(pthread_create(&th, NULL, drain, &d), 0);
	ck_assert_int_eq(take(&f, body, &res), 200);
	ck_assert_int_ge(res.chunks, 3);                 /* groups of at most half the ring */
	pthread_join(th, NULL);
	ck_assert_int_eq(d.seen, 16);
	free(body);
	fixture_cleanup(&f);
}
END_TEST

START_TEST(test_oversized_event_dropped_rest_kept)
{
	static const struct env_pair env[] = { { "KTE_STREAM_NAME", "s" }, { "AWS_REGION", "us-east-1" }, { "KTE_MAX_RECORD_BYTES", "2048" },
		{ NULL, NULL } };
	struct fixture f;
	struct intake_result res;
	char *body, buf[4096];
	size_t off;

	fixture_init(&f, 65536, env);
	body = malloc(8192);
	off = (size_t)sprintf(body, "[" EV_START ",{\"type\":\"function\",\"record\":\"");
	memset(body + off, 'z', 3000);
	off += 3000;
	sprintf(body + off, "\"}," EV_DONE "]");
	ck_assert_int_eq(take(&f, body, &res), 200);
	ck_assert_uint_eq(res.events, 3);
	ck_assert_uint_eq(res.written, 2);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.oversized_dropped), 1);
	pop(&f, buf, sizeof(buf));
	ck_assert_str_eq(buf, EV_START);
	pop(&f, buf, sizeof(buf));
	ck_assert_str_eq(buf, EV_DONE);
	free(body);
	fixture_cleanup(&f);
}
END_TEST

START_TEST(test_filters_counted)
{
	static const struct env_pair env[] = { { "KTE_STREAM_NAME", "s" }, { "AWS_REGION", "us-east-1" }, { "KTE_DROP_TYPES", "platform.start" },
		{ NULL, NULL } };
	struct fixture f;
	struct intake_result res;
	char buf[512];

	fixture_init(&f, 65536, env);
	ck_assert_int_eq(take(&f, "[" EV_START "," EV_LOG "," EV_DONE "]", &res), 200);
	ck_assert_uint_eq(res.written, 2);
	ck_assert_uint_eq(atomic_load(&f.ctl->listener.filtered), 1);
	pop(&f, buf, sizeof(buf));
	ck_assert_str_eq(buf, EV_LOG);
	/* A filtered runtimeDone would still be seen by the controller: here it is kept. */
	ck_assert_uint_eq(atomic_load(&f.ctl->runtime_done_count), 1);
	fixture_cleanup(&f);
}
END_TEST

static Suite *
intake_suite(void)
{
	Suite *s = suite_create("intake");
	TCase *tc = tcase_create("intake");

	tcase_add_test(tc, test_exact_bytes_and_signals);
	tcase_add_test(tc, test_bad_bodies_write_nothing);
	tcase_add_test(tc, test_full_ring_all_or_nothing);
	tcase_add_test(tc, test_batch_larger_than_ring_in_groups);
	tcase_add_test(tc, test_oversized_event_dropped_rest_kept);
	tcase_add_test(tc, test_filters_counted);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(intake_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
