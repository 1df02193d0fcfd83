/*
 * lambda-sim: command line, the lifecycle of one execution environment (init, invocations, shutdown) and
 * the JSON summary. See docs/simulator.md for the options and the summary fields.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_INIT = 3, EXIT_RESET = 4 };

struct sim g = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.out_mu = PTHREAD_MUTEX_INITIALIZER,
};

static struct dlist overhead, durations;
static struct sim_mem mem_last, mem_max;
static int mem_samples;
static FILE *ids_f;
static uint64_t ids_written;
static int completed;
static double t_inv_first, t_inv_last;      /* span of the invocation phase */
static const char *result = "ok", *shutdown_reason_used;
static double shutdown_ms_total;
static double restore_ms = -1;              /* SnapStart: restore duration, -1 before any */
static double snapshot_at_epoch, restore_at_epoch;
static char reset_reason[512];

/* ---- helpers ---- */

static void sleep_ms(double ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000) * 1e6);
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Waits on g.cv (g.mu held) until pred() or the monotonic deadline; returns pred(). A poll interval
 * bounds the wait for conditions nobody signals (process groups emptying). */
static int wait_for(int (*pred)(void), double deadline, double poll_ms)
{
	for (;;) {
		double left;

		if (pred())
			return 1;
		left = deadline - now_ms();
		if (left <= 0)
			return pred();
		if (poll_ms > 0 && left > poll_ms)
			left = poll_ms;
		cond_wait_until(&g.cv, &g.mu, now_ms() + left);
	}
}

static void tracing_value(char *buf, size_t len)
{
	char a[25], b[17];

	rand_hex(a, 24);
	rand_hex(b, 16);
	snprintf(buf, len, "Root=1-%08lx-%s;Parent=%s;Sampled=1", (unsigned long)time(NULL), a, b);
}

/* A number of milliseconds with microsecond resolution, printed as such (not 10.058999999999999). */
static json_object *jnum(double v)
{
	char b[48];

	snprintf(b, sizeof(b), "%.3f", v);
	return json_object_new_double_s(round(v * 1000) / 1000, b);
}

/* ---- init ---- */

static const char *init_type(void)
{
	return g.o.snapstart ? "snap-start" : "on-demand";
}

static int all_registered(void)
{
	int i;

	for (i = 0; i < g.n_external; i++)
		if (!g.ext[i].registered)
			return 0;
	return 1;
}

static int all_ready(void)
{
	int i;

	if (!all_registered())
		return 0;
	for (i = 0; i < g.next_ext; i++)
		if (!g.ext[i].ready)
			return 0;
	return 1;
}

/* Sets fail_reason when init cannot complete; returns 1 on failure. */
static int init_failed(void)
{
	int i;

	if (g.fail_reason)
		return 1;
	for (i = 0; i < g.next_ext; i++) {
		struct sim_ext *e = &g.ext[i];
		if (e->init_error[0] || e->exit_error[0]) {
			snprintf(g.fail_buf, sizeof(g.fail_buf), "extension %s reported %s/error %s", e->name,
			         e->init_error[0] ? "init" : "exit", e->init_error[0] ? e->init_error : e->exit_error);
			g.fail_reason = g.fail_buf;
			return 1;
		}
		if (e->exited) {
			snprintf(g.fail_buf, sizeof(g.fail_buf),
			         "extension %s exited during init (status %d): Extension.Crash", e->name,
			         WIFEXITED(e->exit_status) ? WEXITSTATUS(e->exit_status) : 128 + WTERMSIG(e->exit_status));
			g.fail_reason = g.fail_buf;
			return 1;
		}
	}
	return 0;
}

static int pred_registered_or_fail(void)
{
	return all_registered() || init_failed();
}

static int pred_ready_or_fail(void)
{
	return all_ready() || init_failed();
}

static void emit_init_report(const char *status, const char *etype)
{
	json_object *r = json_object_new_object(), *m = json_object_new_object();

	json_object_object_add(r, "initializationType", json_object_new_string(init_type()));
	json_object_object_add(r, "phase", json_object_new_string("init"));
	json_object_object_add(r, "status", json_object_new_string(status));
	if (etype)
		json_object_object_add(r, "errorType", json_object_new_string(etype));
	json_object_object_add(m, "durationMs", jnum(g.init_duration_ms));
	json_object_object_add(r, "metrics", m);
	tel_emit("platform.initReport", r);
}

/* Runs the init phase with g.mu held; returns 0 or -1 (g.fail_reason says why). */
static int run_init(void)
{
	double deadline;
	json_object *r;
	char tm[40];
	double t_rt;

	g.phase = PH_INIT;
	g.t0_mono = now_ms();
	deadline = g.t0_mono + g.o.init_timeout_ms;
	r = json_object_new_object();
	json_object_object_add(r, "initializationType", json_object_new_string(init_type()));
	json_object_object_add(r, "phase", json_object_new_string("init"));
	json_object_object_add(r, "functionName", json_object_new_string(g.o.function_name));
	json_object_object_add(r, "functionVersion", json_object_new_string(g.o.function_version));
	json_object_object_add(r, "instanceMaxMemory", json_object_new_int(g.o.memory_mb));
	json_object_object_add(r, "runtimeVersion", json_object_new_string("provided:al2023.v1"));
	tel_emit("platform.initStart", r);

	if (proc_spawn_all() < 0) {
		if (!g.fail_reason) {
			snprintf(g.fail_buf, sizeof(g.fail_buf), "cannot start the extensions of %s", g.o.layer);
			g.fail_reason = g.fail_buf;
		}
	}
	proc_start_threads();
	if (g.fail_reason)
		goto fail;
	/* extension init: every external extension registers before the runtime starts */
	if (!wait_for(pred_registered_or_fail, deadline, 0))
		goto timeout;
	if (init_failed())
		goto fail;
	/* runtime and function init */
	t_rt = now_ms();
	if (g.o.runtime_init_ms > 0) {
		pthread_mutex_unlock(&g.mu);
		sleep_ms(g.o.runtime_init_ms);
		pthread_mutex_lock(&g.mu);
	}
	r = json_object_new_object();
	json_object_object_add(r, "initializationType", json_object_new_string(init_type()));
	json_object_object_add(r, "phase", json_object_new_string("init"));
	json_object_object_add(r, "status", json_object_new_string("success"));
	{
		json_object *spans = json_object_new_array(), *sp = json_object_new_object();
		iso_time(tm, sizeof(tm), epoch_ms() - (now_ms() - t_rt));
		json_object_object_add(sp, "name", json_object_new_string("runtimeInit"));
		json_object_object_add(sp, "start", json_object_new_string(tm));
		json_object_object_add(sp, "durationMs", jnum(now_ms() - t_rt));
		json_object_array_add(spans, sp);
		json_object_object_add(r, "spans", spans);
	}
	tel_emit("platform.initRuntimeDone", r);
	/* init ends when the runtime and every extension have called next */
	if (!wait_for(pred_ready_or_fail, deadline, 0))
		goto timeout;
	if (init_failed())
		goto fail;
	g.init_duration_ms = now_ms() - g.t0_mono;
	emit_init_report("success", NULL);
	g.phase = PH_READY;
	return 0;
timeout:
	{
		int i, off;
		off = snprintf(g.fail_buf, sizeof(g.fail_buf), "init timeout (%d ms), not ready:", g.o.init_timeout_ms);
		for (i = 0; i < g.next_ext && off < (int)sizeof(g.fail_buf) - 1; i++)
			if (!g.ext[i].ready)
				off += snprintf(g.fail_buf + off, sizeof(g.fail_buf) - (size_t)off, " %s%s", g.ext[i].name,
				                g.ext[i].registered ? "" : " (never registered)");
		g.fail_reason = g.fail_buf;
	}
	g.init_duration_ms = now_ms() - g.t0_mono;
	emit_init_report("timeout", NULL);
	return -1;
fail:
	g.init_duration_ms = now_ms() - g.t0_mono;
	{
		const char *etype = "Extension.InitError";
		int i;
		for (i = 0; i < g.next_ext; i++) {
			if (g.ext[i].init_error[0]) {
				etype = g.ext[i].init_error;     /* the extension's own Category.Reason */
				break;
			}
			if (g.ext[i].exited)
				etype = "Extension.Crash";
		}
		emit_init_report("error", etype);
	}
	return -1;
}

/* ---- SnapStart: snapshot and restore ---- */

/*
 * After init: the snapshot. Every extension is frozen (as between invocations) for the gap; then the
 * restore thaws them and emits platform.restoreStart, restoreRuntimeDone and restoreReport (aws-spec 2).
 * Invocations follow; the first platform.report carries restoreDurationMs instead of initDurationMs.
 * The extensions are the same processes: what a real restore shares between environments (random
 * state, sockets) is left for the extension to renew, as it must on Lambda.
 */
static void run_snapshot_restore(void)
{
	json_object *r, *m;
	double t_restore;

	pthread_mutex_lock(&g.mu);
	proc_freeze();
	snapshot_at_epoch = epoch_ms();
	pthread_mutex_unlock(&g.mu);
	if (!g.o.quiet)
		sim_logf("snapshot taken: extensions frozen for %d ms", g.o.snapshot_gap_ms);
	sleep_ms(g.o.snapshot_gap_ms);
	pthread_mutex_lock(&g.mu);
	t_restore = now_ms();
	restore_at_epoch = epoch_ms();
	proc_thaw();
	r = json_object_new_object();
	json_object_object_add(r, "functionName", json_object_new_string(g.o.function_name));
	json_object_object_add(r, "functionVersion", json_object_new_string(g.o.function_version));
	json_object_object_add(r, "instanceMaxMemory", json_object_new_int(g.o.memory_mb));
	json_object_object_add(r, "runtimeVersion", json_object_new_string("provided:al2023.v1"));
	tel_emit("platform.restoreStart", r);
	r = json_object_new_object();
	json_object_object_add(r, "status", json_object_new_string("success"));
	tel_emit("platform.restoreRuntimeDone", r);
	restore_ms = now_ms() - t_restore;
	r = json_object_new_object();
	m = json_object_new_object();
	json_object_object_add(r, "status", json_object_new_string("success"));
	json_object_object_add(m, "durationMs", jnum(restore_ms));
	json_object_object_add(r, "metrics", m);
	tel_emit("platform.restoreReport", r);
	proc_freeze();          /* restored, waiting for the first invoke */
	pthread_mutex_unlock(&g.mu);
	if (!g.o.quiet)
		sim_logf("restored in %.3f ms", restore_ms);
}

/* ---- invocations ---- */

static json_object *function_record(const char *tm, const char *req, const char *id, size_t pad)
{
	size_t idl = strlen(id);
	char *msg = malloc(idl + pad + 16);
	json_object *r;
	int off;

	if (!msg)
		return NULL;
	off = sprintf(msg, "kte-id=%s ", id);
	memset(msg + off, 'x', pad);
	msg[off + (int)pad] = '\0';
	if (g.o.log_json) {
		r = json_object_new_object();
		json_object_object_add(r, "timestamp", json_object_new_string(tm));
		json_object_object_add(r, "level", json_object_new_string("INFO"));
		json_object_object_add(r, "requestId", json_object_new_string(req));
		json_object_object_add(r, "message", json_object_new_string(msg));
		json_object_object_add(r, "id", json_object_new_string(id));
	} else {
		char *line;
		r = NULL;
		if (asprintf(&line, "%s\t%s\tINFO\t%s", tm, req, msg) >= 0) {
			r = json_object_new_string(line);
			free(line);
		}
	}
	free(msg);
	return r;
}

/* Emits function record n of invocation inv: its id in the text (kte-id=<id>) and, in JSON, as "id";
 * padded so that the record (the string, or the JSON object's text) is --log-bytes long. */
static void emit_function_log(int inv, int n, const char *req)
{
	size_t want = g.o.log_bytes > 0 ? (size_t)g.o.log_bytes : 0, base;
	if (g.o.log_bytes_max > g.o.log_bytes) {
		/* --log-bytes LO-HI: a size picked per record, reproducibly, from (inv, n) */
		uint32_t h = (uint32_t)inv * 2654435761u ^ (uint32_t)n * 2246822519u;
		h ^= h >> 15;
		h *= 2246822519u;
		h ^= h >> 13;
		want = (size_t)g.o.log_bytes + h % (uint32_t)(g.o.log_bytes_max - g.o.log_bytes + 1);
	}
	char id[96], tm[40];
	json_object *r;

	snprintf(id, sizeof(id), "%s%d-%d", g.o.id_prefix, inv, n);
	iso_time(tm, sizeof(tm), epoch_ms());
	r = function_record(tm, req, id, 0);
	if (!r)
		return;
	base = json_object_is_type(r, json_type_string)
	               ? (size_t)json_object_get_string_len(r)
	               : strlen(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	if (want > base) {
		json_object_put(r);
		r = function_record(tm, req, id, want - base);
		if (!r)
			return;
	}
	pthread_mutex_lock(&g.mu);
	tel_emit("function", r);
	if (ids_f) {
		fprintf(ids_f, "%s\n", id);
		ids_written++;
	}
	pthread_mutex_unlock(&g.mu);
}

/* The function's handler: log lines spread over handler_ms; returns its status. */
static const char *run_handler(int inv, const char *req, double t_start)
{
	double end = t_start + g.o.handler_ms, limit = t_start + g.o.timeout_ms;
	int n;

	for (n = 1; n <= g.o.log_lines; n++) {
		double at = t_start + (double)(n - 1) * g.o.handler_ms / g.o.log_lines;
		if (at > limit)
			break;
		sleep_ms(at - now_ms());
		emit_function_log(inv, n, req);
	}
	if (end > limit) {
		sleep_ms(limit - now_ms());
		return "timeout";
	}
	sleep_ms(end - now_ms());
	return "success";
}

static int pred_invoke_done(void)
{
	int i;

	for (i = 0; i < g.next_ext; i++) {
		struct sim_ext *e = &g.ext[i];
		if (!(e->events & EV_INVOKE) || e->internal)
			continue;
		if (e->exited || e->errored)
			return 1;       /* the caller looks at why */
		if (e->taken_seq != e->ev_seq || e->waiting == 0)
			return 0;
	}
	/* internal extensions (registered by another name) live in the runtime: they count too */
	for (i = g.n_external; i < g.next_ext; i++) {
		struct sim_ext *e = &g.ext[i];
		if ((e->events & EV_INVOKE) && (e->taken_seq != e->ev_seq || e->waiting == 0) && !e->errored)
			return 0;
	}
	return 1;
}

static struct sim_ext *crashed_ext(void)
{
	int i;

	for (i = 0; i < g.n_external; i++)
		if (g.ext[i].exited)
			return &g.ext[i];
	return NULL;
}

static void emit_report(const char *req, const char *status, const char *etype, double dur, int first)
{
	json_object *r = json_object_new_object(), *m = json_object_new_object();
	long used = mem_last.rss_kb / 1024;

	json_object_object_add(r, "requestId", json_object_new_string(req));
	json_object_object_add(r, "status", json_object_new_string(status));
	if (etype)
		json_object_object_add(r, "errorType", json_object_new_string(etype));
	json_object_object_add(m, "durationMs", jnum(dur));
	json_object_object_add(m, "billedDurationMs", json_object_new_int64((int64_t)ceil(dur)));
	json_object_object_add(m, "memorySizeMB", json_object_new_int(g.o.memory_mb));
	json_object_object_add(m, "maxMemoryUsedMB", json_object_new_int64(used > 0 ? used : 1));
	if (first && restore_ms >= 0)
		json_object_object_add(m, "restoreDurationMs", jnum(restore_ms));
	else if (first)
		json_object_object_add(m, "initDurationMs", jnum(g.init_duration_ms));
	json_object_object_add(r, "metrics", m);
	tel_emit("platform.report", r);
}

static void mem_sample(void)
{
	proc_mem_sample(&mem_last);
	mem_samples++;
	if (mem_last.pss_kb > mem_max.pss_kb)
		mem_max.pss_kb = mem_last.pss_kb;
	if (mem_last.rss_kb > mem_max.rss_kb)
		mem_max.rss_kb = mem_last.rss_kb;
	if (mem_last.hwm_kb > mem_max.hwm_kb)
		mem_max.hwm_kb = mem_last.hwm_kb;
	if (mem_last.procs > mem_max.procs)
		mem_max.procs = mem_last.procs;
}

/* One invocation on a classic (freezing) environment. Returns 0, or -1 if the environment must reset
 * (reset_reason set, shutdown reason in *why). */
static int run_invocation(int inv, const char **why)
{
	char req[37], trace[128], span[17], *invoke;
	double t_start, t_rd, t_done = 0, dur, dl_epoch, over;
	const char *status, *etype = NULL;
	json_object *r, *tr, *o;
	struct sim_ext *crash;
	int i, done;

	uuid_v4(req);
	tracing_value(trace, sizeof(trace));
	rand_hex(span, 16);
	pthread_mutex_lock(&g.mu);
	if (g.frozen)
		proc_thaw();
	g.phase = PH_INVOKE;
	t_start = now_ms();
	dl_epoch = epoch_ms() + g.o.timeout_ms;
	r = json_object_new_object();
	json_object_object_add(r, "requestId", json_object_new_string(req));
	json_object_object_add(r, "version", json_object_new_string(g.o.function_version));
	tr = json_object_new_object();
	json_object_object_add(tr, "spanId", json_object_new_string(span));
	json_object_object_add(tr, "type", json_object_new_string("X-Amzn-Trace-Id"));
	json_object_object_add(tr, "value", json_object_new_string(trace));
	json_object_object_add(r, "tracing", tr);
	tel_emit("platform.start", r);

	o = json_object_new_object();
	json_object_object_add(o, "eventType", json_object_new_string("INVOKE"));
	json_object_object_add(o, "deadlineMs", json_object_new_int64((int64_t)dl_epoch));
	json_object_object_add(o, "requestId", json_object_new_string(req));
	{
		char arn[512];
		snprintf(arn, sizeof(arn), "arn:aws:lambda:%s:123456789012:function:%s", g.o.region,
		         g.o.function_name);
		json_object_object_add(o, "invokedFunctionArn", json_object_new_string(arn));
	}
	tr = json_object_new_object();
	json_object_object_add(tr, "type", json_object_new_string("X-Amzn-Trace-Id"));
	json_object_object_add(tr, "value", json_object_new_string(trace));
	json_object_object_add(o, "tracing", tr);
	invoke = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	for (i = 0; i < g.next_ext; i++) {
		struct sim_ext *e = &g.ext[i];
		if (!(e->events & EV_INVOKE) || e->exited || e->errored)
			continue;
		free(e->pending);
		e->pending = strdup(invoke);
		e->t_posted = now_ms();
		e->ev_seq++;
	}
	free(invoke);
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);

	status = run_handler(inv, req, t_start);
	if (!strcmp(status, "timeout"))
		etype = "Sandbox.Timedout";

	pthread_mutex_lock(&g.mu);
	t_rd = now_ms();
	r = json_object_new_object();
	json_object_object_add(r, "requestId", json_object_new_string(req));
	json_object_object_add(r, "status", json_object_new_string(status));
	if (etype)
		json_object_object_add(r, "errorType", json_object_new_string(etype));
	{
		json_object *m = json_object_new_object(), *spans = json_object_new_array(), *sp;
		char tm[40];
		json_object_object_add(m, "durationMs", jnum(t_rd - t_start));
		json_object_object_add(m, "producedBytes", json_object_new_int(8));
		json_object_object_add(r, "metrics", m);
		sp = json_object_new_object();
		iso_time(tm, sizeof(tm), epoch_ms() - (t_rd - t_start));
		json_object_object_add(sp, "name", json_object_new_string("responseLatency"));
		json_object_object_add(sp, "start", json_object_new_string(tm));
		json_object_object_add(sp, "durationMs", jnum(t_rd - t_start));
		json_object_array_add(spans, sp);
		sp = json_object_new_object();
		iso_time(tm, sizeof(tm), epoch_ms());
		json_object_object_add(sp, "name", json_object_new_string("responseDuration"));
		json_object_object_add(sp, "start", json_object_new_string(tm));
		json_object_object_add(sp, "durationMs", json_object_new_double(0.0));
		json_object_array_add(spans, sp);
		json_object_object_add(r, "spans", spans);
		tr = json_object_new_object();
		json_object_object_add(tr, "spanId", json_object_new_string(span));
		json_object_object_add(tr, "type", json_object_new_string("X-Amzn-Trace-Id"));
		json_object_object_add(tr, "value", json_object_new_string(trace));
		json_object_object_add(r, "tracing", tr);
	}
	tel_emit("platform.runtimeDone", r);

	/* the invocation ends when every INVOKE extension is back in next (or the function times out) */
	done = wait_for(pred_invoke_done, t_start + g.o.timeout_ms, 0);
	crash = crashed_ext();
	for (i = 0; i < g.next_ext; i++)
		if ((g.ext[i].events & EV_INVOKE) && g.ext[i].t_last_next > t_done)
			t_done = g.ext[i].t_last_next;
	if (t_done < t_rd)
		t_done = t_rd;
	if (crash) {
		status = "error";
		etype = "Extension.Crash";
		snprintf(reset_reason, sizeof(reset_reason), "extension %s exited during invocation %d: Extension.Crash",
		         crash->name, inv);
		*why = "failure";
	} else if (!done || !strcmp(status, "timeout")) {
		status = "timeout";
		etype = "Sandbox.Timedout";
		t_done = now_ms();
		snprintf(reset_reason, sizeof(reset_reason), "invocation %d timed out after %d ms", inv, g.o.timeout_ms);
		*why = "timeout";
	}
	over = t_done - t_rd;
	dur = t_done - t_start;
	emit_report(req, status, etype, dur, inv == 1);
	if (*why) {
		pthread_mutex_unlock(&g.mu);
		return -1;
	}
	dlist_add(&overhead, over);
	dlist_add(&durations, dur);
	completed++;
	/* every extension is blocked in next and the runtime has answered: freeze the sandbox */
	proc_freeze();
	pthread_mutex_unlock(&g.mu);
	mem_sample();
	if (!g.o.quiet)
		sim_logf("invoke %d %s: handler %.1f ms, extension overhead %.3f ms, duration %.1f ms, "
		         "frozen, pss %ld kB rss %ld kB (%d procs)", inv, req, t_rd - t_start, over, dur,
		         mem_last.pss_kb, mem_last.rss_kb, mem_last.procs);
	return 0;
}

/* ---- Lambda Managed Instances: no INVOKE to extensions, no runtimeDone, no freezing, overlap ---- */

static int managed_next, in_flight, max_in_flight;

static void *managed_worker(void *arg)
{
	(void)arg;
	for (;;) {
		char req[37], trace[128];
		double t0, dur;
		json_object *r, *tr;
		int inv;

		pthread_mutex_lock(&g.mu);
		inv = ++managed_next;
		if (inv <= g.o.invocations && ++in_flight > max_in_flight)
			max_in_flight = in_flight;
		pthread_mutex_unlock(&g.mu);
		if (inv > g.o.invocations)
			break;
		uuid_v4(req);
		tracing_value(trace, sizeof(trace));
		t0 = now_ms();
		pthread_mutex_lock(&g.mu);
		r = json_object_new_object();
		json_object_object_add(r, "requestId", json_object_new_string(req));
		json_object_object_add(r, "version", json_object_new_string(g.o.function_version));
		tr = json_object_new_object();
		json_object_object_add(tr, "type", json_object_new_string("X-Amzn-Trace-Id"));
		json_object_object_add(tr, "value", json_object_new_string(trace));
		json_object_object_add(r, "tracing", tr);
		tel_emit("platform.start", r);
		pthread_mutex_unlock(&g.mu);
		(void)run_handler(inv, req, t0);
		dur = now_ms() - t0;
		pthread_mutex_lock(&g.mu);
		emit_report(req, "success", NULL, dur, inv == 1);
		dlist_add(&durations, dur);
		completed++;
		in_flight--;
		pthread_mutex_unlock(&g.mu);
		if (!g.o.quiet)
			sim_logf("invoke %d %s: handler %.1f ms (managed instances)", inv, req, dur);
		sleep_ms(g.o.interval_ms);
	}
	return NULL;
}

static void run_managed(void)
{
	pthread_t th[64];
	int k = g.o.concurrency, i, n = 0;

	t_inv_first = now_ms();
	for (i = 0; i < k; i++)
		if (pthread_create(&th[n], NULL, managed_worker, NULL) == 0)
			n++;
	for (i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	t_inv_last = now_ms();
	pthread_mutex_lock(&g.mu);
	g.phase = PH_INVOKE;
	pthread_mutex_unlock(&g.mu);
	mem_sample();
}

/* ---- shutdown ---- */

static double sd_deadline;

static int pred_shutdown_taken(void)
{
	int i;

	for (i = 0; i < g.n_external; i++) {
		struct sim_ext *e = &g.ext[i];
		if ((e->events & EV_SHUTDOWN) && !e->exited && !e->errored && e->ready && e->taken_seq != e->ev_seq)
			return 0;
	}
	return 1;
}

static int pred_all_gone(void)
{
	int i;

	for (i = 0; i < g.n_external; i++) {
		struct sim_ext *e = &g.ext[i];
		if (!e->exited || proc_group_alive(e->pid))
			return 0;
	}
	return 1;
}

static void run_shutdown(const char *reason)
{
	double t_sd, dl_epoch;
	char ev[256];
	int i;

	pthread_mutex_lock(&g.mu);
	g.phase = PH_SHUTDOWN;
	shutdown_reason_used = reason;
	g.telemetry_hold = 1;
	proc_thaw();
	/* the runtime is shut down first (its share of the budget is reserved, not spent, here) */
	t_sd = now_ms();
	sd_deadline = t_sd + SIM_SHUTDOWN_MS - SIM_RUNTIME_SHARE_MS;
	dl_epoch = epoch_ms() + SIM_SHUTDOWN_MS - SIM_RUNTIME_SHARE_MS;
	snprintf(ev, sizeof(ev), "{\"eventType\":\"SHUTDOWN\",\"shutdownReason\":\"%s\",\"deadlineMs\":%lld}",
	         reason, (long long)dl_epoch);
	for (i = 0; i < g.next_ext; i++) {
		struct sim_ext *e = &g.ext[i];
		if (e->internal || e->exited)
			continue;
		if ((e->events & EV_SHUTDOWN) && e->registered) {
			free(e->pending);
			e->pending = strdup(ev);
			e->t_posted = now_ms();
			e->ev_seq++;
		} else if (!e->errored) {
			/* not registered for SHUTDOWN: nothing to wait for */
			proc_kill_group(e, SIGKILL);
		}
	}
	pthread_cond_broadcast(&g.cv);
	/* buffered telemetry (the last platform.report) goes out once SHUTDOWN has been handed out */
	wait_for(pred_shutdown_taken, sd_deadline, 0);
	g.telemetry_hold = 0;
	tel_kick();
	if (!wait_for(pred_all_gone, sd_deadline, 5)) {
		for (i = 0; i < g.n_external; i++) {
			struct sim_ext *e = &g.ext[i];
			if (!e->exited || proc_group_alive(e->pid)) {
				e->killed = 1;
				proc_kill_group(e, SIGKILL);
				if (!g.o.quiet)
					sim_logf("%s: %s at the shutdown deadline: SIGKILL", e->name,
					         e->exited ? "children still alive" : "still running");
			}
		}
		wait_for(pred_all_gone, now_ms() + 2000, 5);
	}
	shutdown_ms_total = now_ms() - t_sd;
	for (i = 0; i < g.n_external; i++)
		if (!g.ext[i].t_shutdown_taken)
			g.ext[i].t_shutdown_taken = t_sd;
	pthread_mutex_unlock(&g.mu);
}

/* ---- summary ---- */

static json_object *pct_obj(const struct dlist *l)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "count", json_object_new_int64((int64_t)l->n));
	json_object_object_add(o, "p50", jnum(dlist_pct(l, 50)));
	json_object_object_add(o, "p99", jnum(dlist_pct(l, 99)));
	json_object_object_add(o, "max", jnum(dlist_max(l)));
	return o;
}

static json_object *ms_since(double t, double base)
{
	return t > 0 ? jnum(t - base) : NULL;
}

static int write_summary(int code, const char *reason)
{
	json_object *s = json_object_new_object(), *o, *a, *x;
	struct dlist lat = {0};
	uint64_t batches = 0, events = 0, bytes = 0, fails = 0, retries = 0, dr = 0, db = 0, de = 0, und = 0;
	const char *txt;
	FILE *f = stdout;
	int i, killed = 0;
	size_t k;

	json_object_object_add(s, "result", json_object_new_string(result));
	json_object_object_add(s, "reason", reason ? json_object_new_string(reason) : NULL);
	json_object_object_add(s, "exit_code", json_object_new_int(code));

	o = json_object_new_object();
	json_object_object_add(o, "layer", json_object_new_string(g.o.layer));
	json_object_object_add(o, "port", json_object_new_int(g.port));
	json_object_object_add(o, "managed_instances", json_object_new_boolean(g.o.managed));
	json_object_object_add(o, "concurrency", json_object_new_int(g.o.concurrency));
	json_object_object_add(o, "handler_ms", json_object_new_int(g.o.handler_ms));
	json_object_object_add(o, "interval_ms", json_object_new_int(g.o.interval_ms));
	json_object_object_add(o, "log_lines", json_object_new_int(g.o.log_lines));
	json_object_object_add(o, "log_bytes", json_object_new_int(g.o.log_bytes));
	json_object_object_add(o, "log_bytes_max", json_object_new_int(g.o.log_bytes_max));
	json_object_object_add(o, "log_format", json_object_new_string(g.o.log_json ? "json" : "text"));
	json_object_object_add(s, "config", o);

	o = json_object_new_object();
	json_object_object_add(o, "requested", json_object_new_int(g.o.invocations));
	json_object_object_add(o, "completed", json_object_new_int(completed));
	json_object_object_add(o, "duration_ms", pct_obj(&durations));
	json_object_object_add(o, "wall_ms", jnum(t_inv_last - t_inv_first));
	json_object_object_add(o, "max_in_flight", json_object_new_int(g.o.managed ? max_in_flight : completed > 0));
	json_object_object_add(s, "invocations", o);

	o = json_object_new_object();
	json_object_object_add(o, "init_ms", jnum(g.init_duration_ms));
	a = json_object_new_array();
	for (i = 0; i < g.next_ext; i++) {
		struct sim_ext *e = &g.ext[i];
		x = json_object_new_object();
		json_object_object_add(x, "name", json_object_new_string(e->name));
		json_object_object_add(x, "internal", json_object_new_boolean(e->internal));
		json_object_object_add(x, "exec_to_register_ms", ms_since(e->t_register, e->t_exec));
		json_object_object_add(x, "exec_to_subscribe_ms", ms_since(e->t_subscribe, e->t_exec));
		json_object_object_add(x, "exec_to_first_next_ms", ms_since(e->t_first_next, e->t_exec));
		json_object_object_add(x, "start_offset_ms", ms_since(e->t_exec, g.t0_mono));
		json_object_array_add(a, x);
	}
	json_object_object_add(o, "extensions", a);
	json_object_object_add(s, "cold_start", o);

	o = pct_obj(&overhead);
	a = json_object_new_array();
	for (k = 0; k < overhead.n; k++)
		json_object_array_add(a, jnum(overhead.v[k]));
	json_object_object_add(o, "values", a);
	json_object_object_add(s, "overhead_ms", o);

	a = json_object_new_array();
	for (i = 0; i < g.next_ext; i++) {
		struct sim_sub *b = g.ext[i].sub;
		if (!b)
			continue;
		x = json_object_new_object();
		json_object_object_add(x, "name", json_object_new_string(g.ext[i].name));
		json_object_object_add(x, "destination", json_object_new_string(b->uri));
		json_object_object_add(x, "protocol", json_object_new_string(b->tcp ? "TCP" : "HTTP"));
		json_object_object_add(x, "max_items", json_object_new_int(b->max_items));
		json_object_object_add(x, "max_bytes", json_object_new_int64(b->max_bytes));
		json_object_object_add(x, "timeout_ms", json_object_new_int64(b->timeout_ms));
		json_object_object_add(x, "batches", json_object_new_int64((int64_t)b->batches));
		json_object_object_add(x, "events", json_object_new_int64((int64_t)b->events));
		json_object_object_add(x, "bytes", json_object_new_int64((int64_t)b->sent_bytes));
		json_object_object_add(x, "max_batch_items", json_object_new_int64((int64_t)b->max_batch_items));
		json_object_object_add(x, "max_batch_bytes", json_object_new_int64((int64_t)b->max_batch_bytes));
		json_object_object_add(x, "failures", json_object_new_int64((int64_t)b->failures));
		json_object_object_add(x, "retries", json_object_new_int64((int64_t)b->retries));
		json_object_object_add(x, "undelivered", json_object_new_int64((int64_t)b->count));
		json_object_object_add(x, "dropped_records", json_object_new_int64((int64_t)b->dropped_records));
		json_object_object_add(x, "dropped_bytes", json_object_new_int64((int64_t)b->dropped_bytes));
		json_object_object_add(x, "logs_dropped_events", json_object_new_int64((int64_t)b->logs_dropped_events));
		json_object_object_add(x, "reply_latency_ms", pct_obj(&b->latency));
		json_object_array_add(a, x);
		batches += b->batches;
		events += b->events;
		bytes += b->sent_bytes;
		fails += b->failures;
		retries += b->retries;
		dr += b->dropped_records;
		db += b->dropped_bytes;
		de += b->logs_dropped_events;
		und += b->count;
		for (k = 0; k < b->latency.n; k++)
			dlist_add(&lat, b->latency.v[k]);
	}
	o = json_object_new_object();
	json_object_object_add(o, "batches", json_object_new_int64((int64_t)batches));
	json_object_object_add(o, "events", json_object_new_int64((int64_t)events));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)bytes));
	json_object_object_add(o, "failures", json_object_new_int64((int64_t)fails));
	json_object_object_add(o, "retries", json_object_new_int64((int64_t)retries));
	json_object_object_add(o, "undelivered", json_object_new_int64((int64_t)und));
	json_object_object_add(o, "reply_latency_ms", pct_obj(&lat));
	x = json_object_new_object();
	json_object_object_add(x, "events", json_object_new_int64((int64_t)de));
	json_object_object_add(x, "records", json_object_new_int64((int64_t)dr));
	json_object_object_add(x, "bytes", json_object_new_int64((int64_t)db));
	json_object_object_add(o, "logs_dropped", x);
	json_object_object_add(o, "subscriptions", a);
	json_object_object_add(s, "telemetry", o);
	dlist_free(&lat);

	o = json_object_new_object();
	json_object_object_add(o, "samples", json_object_new_int(mem_samples));
	json_object_object_add(o, "pss_kb", json_object_new_int64(mem_last.pss_kb));
	json_object_object_add(o, "pss_kb_max", json_object_new_int64(mem_max.pss_kb));
	json_object_object_add(o, "rss_kb_max", json_object_new_int64(mem_max.rss_kb));
	json_object_object_add(o, "peak_rss_kb", json_object_new_int64(mem_max.hwm_kb));
	json_object_object_add(o, "processes", json_object_new_int(mem_max.procs));
	json_object_object_add(s, "memory", o);

	o = json_object_new_object();
	json_object_object_add(o, "reason", shutdown_reason_used ? json_object_new_string(shutdown_reason_used) : NULL);
	json_object_object_add(o, "budget_ms", json_object_new_int(SIM_SHUTDOWN_MS - SIM_RUNTIME_SHARE_MS));
	json_object_object_add(o, "duration_ms", jnum(shutdown_ms_total));
	a = json_object_new_array();
	for (i = 0; i < g.n_external; i++) {
		struct sim_ext *e = &g.ext[i];
		x = json_object_new_object();
		json_object_object_add(x, "name", json_object_new_string(e->name));
		json_object_object_add(x, "received_shutdown", json_object_new_boolean(e->got_shutdown));
		json_object_object_add(x, "time_to_exit_ms",
		                       e->exited && e->t_exit >= e->t_shutdown_taken && e->t_shutdown_taken > 0
		                               ? jnum(e->t_exit - e->t_shutdown_taken) : NULL);
		json_object_object_add(x, "killed", json_object_new_boolean(e->killed));
		if (e->exited && WIFEXITED(e->exit_status))
			json_object_object_add(x, "exit_status", json_object_new_int(WEXITSTATUS(e->exit_status)));
		else if (e->exited && WIFSIGNALED(e->exit_status))
			json_object_object_add(x, "signal", json_object_new_int(WTERMSIG(e->exit_status)));
		json_object_array_add(a, x);
		killed |= e->killed;
	}
	json_object_object_add(o, "killed", json_object_new_boolean(killed));
	json_object_object_add(o, "extensions", a);
	json_object_object_add(s, "shutdown", o);

	o = json_object_new_object();
	a = json_object_new_array();
	x = json_object_new_array();
	for (i = 0; i < g.next_ext; i++) {
		struct sim_ext *e = &g.ext[i];
		if (e->init_error[0] || e->exit_error[0]) {
			json_object *r = json_object_new_object();
			json_object_object_add(r, "name", json_object_new_string(e->name));
			json_object_object_add(r, "type", json_object_new_string(e->init_error[0] ? e->init_error : e->exit_error));
			json_object_object_add(r, "body", e->error_body ? json_object_new_string(e->error_body) : NULL);
			json_object_array_add(e->init_error[0] ? a : x, r);
		}
	}
	json_object_object_add(o, "init", a);
	json_object_object_add(o, "exit", x);
	json_object_object_add(s, "errors", o);

	o = json_object_new_object();
	for (i = 0; i < g.ncounts; i++)
		json_object_object_add(o, g.counts[i].type, json_object_new_int64((int64_t)g.counts[i].n));
	json_object_object_add(s, "events_emitted", o);
	o = json_object_new_object();
	json_object_object_add(o, "register", pct_obj(&g.api_lat[API_REGISTER]));
	json_object_object_add(o, "next", pct_obj(&g.api_lat[API_NEXT]));
	json_object_object_add(o, "subscribe", pct_obj(&g.api_lat[API_SUBSCRIBE]));
	json_object_object_add(o, "error", pct_obj(&g.api_lat[API_ERROR]));
	json_object_object_add(s, "api_service_ms", o);
	json_object_object_add(s, "function_log_ids", json_object_new_int64((int64_t)ids_written));
	if (g.o.snapstart) {
		uint64_t served, unauth;
		long issued;
		char tm[40];

		creds_stats(&served, &unauth, &issued);
		o = json_object_new_object();
		json_object_object_add(o, "snapshot_gap_ms", json_object_new_int(g.o.snapshot_gap_ms));
		iso_time(tm, sizeof(tm), snapshot_at_epoch);
		json_object_object_add(o, "snapshot_at", json_object_new_string(tm));
		iso_time(tm, sizeof(tm), restore_at_epoch);
		json_object_object_add(o, "restore_at", json_object_new_string(tm));
		json_object_object_add(o, "restore_ms", jnum(restore_ms));
		json_object_object_add(o, "credentials_ttl_ms", json_object_new_int(g.o.credentials_ttl_ms));
		json_object_object_add(o, "credentials_served", json_object_new_int64((int64_t)served));
		json_object_object_add(o, "credentials_unauthorized", json_object_new_int64((int64_t)unauth));
		json_object_object_add(o, "credentials_issued", json_object_new_int64(issued));
		json_object_object_add(s, "snapstart", o);
	}

	txt = json_object_to_json_string_ext(s, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (g.o.summary_path) {
		f = fopen(g.o.summary_path, "we");
		if (!f) {
			sim_logf("cannot write %s: %s", g.o.summary_path, strerror(errno));
			f = stdout;
		}
	}
	fprintf(f, "%s\n", txt);
	if (f != stdout)
		fclose(f);
	else
		fflush(stdout);
	json_object_put(s);
	return 0;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fputs("usage: lambda-sim --layer DIR [--invocations N] [--env K=V|K ...] [--log-lines N]\n"
	      "         [--log-bytes B|LO-HI] [--log-format text|json] [--handler-ms M] [--interval-ms M]\n"
	      "         [--shutdown-reason spindown|timeout|failure] [--summary FILE] [--ids FILE]\n"
	      "         [--id-prefix P] [--dropped-ids FILE] [--quiet] [--managed-instances] [--concurrency K]\n"
	      "         [--telemetry-unsupported] [--init-timeout-ms M] [--timeout-ms M]\n"
	      "         [--runtime-init-ms M] [--buffer-bytes B] [--port P] [--function-name N]\n"
	      "         [--memory-mb N] [--snapstart [--snapshot-gap-ms M] [--credentials-ttl-ms M]\n"
	      "         [--credentials-file FILE]]\n"
	      "Runs the executables of DIR/extensions as Lambda would, N invocations, then SHUTDOWN.\n"
	      "Exit status: 0 run completed, 2 usage, 3 init failed, 4 environment reset (crash).\n", f);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int parse_args(int argc, char **argv)
{
	enum { O_LAYER = 256, O_INV, O_ENV, O_LINES, O_BYTES, O_FMT, O_HANDLER, O_INTERVAL, O_REASON, O_SUMMARY,
	       O_IDS, O_PREFIX, O_QUIET, O_MANAGED, O_CONC, O_UNSUP, O_INITTO, O_TIMEOUT, O_RTINIT, O_PORT,
	       O_BUF, O_FNAME, O_MEM, O_DROPPED, O_HELP, O_SNAP, O_GAP, O_CTTL, O_CFILE };
	static const struct option lo[] = {
		{"layer", 1, 0, O_LAYER}, {"invocations", 1, 0, O_INV}, {"env", 1, 0, O_ENV},
		{"log-lines", 1, 0, O_LINES}, {"log-bytes", 1, 0, O_BYTES}, {"log-format", 1, 0, O_FMT},
		{"handler-ms", 1, 0, O_HANDLER}, {"interval-ms", 1, 0, O_INTERVAL},
		{"shutdown-reason", 1, 0, O_REASON}, {"summary", 1, 0, O_SUMMARY}, {"ids", 1, 0, O_IDS},
		{"id-prefix", 1, 0, O_PREFIX}, {"quiet", 0, 0, O_QUIET}, {"managed-instances", 0, 0, O_MANAGED},
		{"concurrency", 1, 0, O_CONC}, {"telemetry-unsupported", 0, 0, O_UNSUP},
		{"init-timeout-ms", 1, 0, O_INITTO}, {"timeout-ms", 1, 0, O_TIMEOUT},
		{"runtime-init-ms", 1, 0, O_RTINIT}, {"port", 1, 0, O_PORT}, {"buffer-bytes", 1, 0, O_BUF},
		{"function-name", 1, 0, O_FNAME}, {"memory-mb", 1, 0, O_MEM}, {"help", 0, 0, O_HELP},
		{"dropped-ids", 1, 0, O_DROPPED}, {"snapstart", 0, 0, O_SNAP},
		{"snapshot-gap-ms", 1, 0, O_GAP}, {"credentials-ttl-ms", 1, 0, O_CTTL},
		{"credentials-file", 1, 0, O_CFILE},
		{0, 0, 0, 0}};
	struct sim_opts *o = &g.o;
	int c, v, bad = 0;

	o->invocations = 1;
	o->log_lines = 2;
	o->log_bytes = 0;
	o->handler_ms = 10;
	o->interval_ms = 0;
	o->shutdown_reason = "spindown";
	o->id_prefix = "";
	o->concurrency = 1;
	o->init_timeout_ms = 10000;
	o->timeout_ms = 3000;
	o->buffer_bytes = 4L * 1024 * 1024;
	o->function_name = "kte-sim-function";
	o->function_version = "$LATEST";
	o->memory_mb = 128;
	o->region = "us-east-1";
	o->snapshot_gap_ms = 1000;
	o->credentials_ttl_ms = 15 * 60 * 1000;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_LAYER: o->layer = optarg; break;
		case O_INV: bad |= parse_int(optarg, 0, 10000000, &o->invocations); break;
		case O_ENV:
			if (o->nenv >= SIM_MAX_ENV) {
				bad = 1;
				break;
			}
			o->env[o->nenv++] = optarg;
			if (!strncmp(optarg, "AWS_REGION=", 11))
				o->region = optarg + 11;
			break;
		case O_LINES: bad |= parse_int(optarg, 0, 1000000, &o->log_lines); break;
		case O_BYTES: { /* B or LO-HI; 256 KiB is Lambda's line limit */
			char lo_s[16];
			const char *dash = strchr(optarg, '-');
			if (dash && (size_t)(dash - optarg) < sizeof(lo_s)) {
				memcpy(lo_s, optarg, (size_t)(dash - optarg));
				lo_s[dash - optarg] = '\0';
				bad |= parse_int(lo_s, 0, 262144, &o->log_bytes);
				bad |= parse_int(dash + 1, 0, 262144, &o->log_bytes_max);
				bad |= o->log_bytes_max < o->log_bytes;
			} else {
				bad |= dash != NULL;
				bad |= parse_int(optarg, 0, 262144, &o->log_bytes);
				o->log_bytes_max = o->log_bytes;
			}
			break;
		}
		case O_FMT:
			if (!strcmp(optarg, "json"))
				o->log_json = 1;
			else if (strcmp(optarg, "text"))
				bad = 1;
			break;
		case O_HANDLER: bad |= parse_int(optarg, 0, 900000, &o->handler_ms); break;
		case O_INTERVAL: bad |= parse_int(optarg, 0, 3600000, &o->interval_ms); break;
		case O_REASON:
			if (strcmp(optarg, "spindown") && strcmp(optarg, "timeout") && strcmp(optarg, "failure"))
				bad = 1;
			o->shutdown_reason = optarg;
			break;
		case O_SUMMARY: o->summary_path = optarg; break;
		case O_IDS: o->ids_path = optarg; break;
		case O_DROPPED: o->dropped_ids_path = optarg; break;
		case O_PREFIX: o->id_prefix = optarg; break;
		case O_QUIET: o->quiet = 1; break;
		case O_MANAGED: o->managed = 1; break;
		case O_CONC: bad |= parse_int(optarg, 1, 64, &o->concurrency); break;
		case O_UNSUP: o->telemetry_unsupported = 1; break;
		case O_INITTO: bad |= parse_int(optarg, 1, 900000, &o->init_timeout_ms); break;
		case O_TIMEOUT: bad |= parse_int(optarg, 1, 900000, &o->timeout_ms); break;
		case O_RTINIT: bad |= parse_int(optarg, 0, 900000, &o->runtime_init_ms); break;
		case O_PORT: bad |= parse_int(optarg, 0, 65535, &o->port); break;
		case O_BUF: bad |= parse_int(optarg, 1024, 1 << 30, &v); o->buffer_bytes = v; break;
		case O_FNAME: o->function_name = optarg; break;
		case O_MEM: bad |= parse_int(optarg, 128, 10240, &o->memory_mb); break;
		case O_SNAP: o->snapstart = 1; break;
		case O_GAP: bad |= parse_int(optarg, 0, 3600000, &o->snapshot_gap_ms); break;
		case O_CTTL: bad |= parse_int(optarg, 200, 86400000, &o->credentials_ttl_ms); break;
		case O_CFILE: o->credentials_file = optarg; break;
		case O_HELP: usage(stdout); exit(0);
		default: bad = 1;
		}
	}
	if (optind < argc || !o->layer)
		bad = 1;
	else if (access(o->layer, R_OK | X_OK)) {
		fprintf(stderr, "lambda-sim: layer %s: %s\n", o->layer, strerror(errno));
		bad = 1;
	}
	if (bad) {
		usage(stderr);
		return -EINVAL;
	}
	if (o->snapstart && o->managed) {
		fputs("lambda-sim: --snapstart and --managed-instances exclude each other\n", stderr);
		return -EINVAL;
	}
	if (o->concurrency > 1 && !o->managed) {
		fputs("lambda-sim: --concurrency needs --managed-instances (a classic environment runs one "
		      "invocation at a time)\n", stderr);
		return -EINVAL;
	}
	return 0;
}

static void on_signal(int sig)
{
	int i;

	/* async-signal-safe: take the extensions down with us */
	for (i = 0; i < g.n_external; i++)
		if (g.ext[i].pid > 0)
			kill(-g.ext[i].pid, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	int code = EXIT_OK, i, rc;
	const char *reason = NULL, *why = NULL;

	if (parse_args(argc, argv) < 0)
		return EXIT_USAGE;
	cond_init_mono(&g.cv);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	if (g.o.ids_path) {
		ids_f = fopen(g.o.ids_path, "we");
		if (!ids_f) {
			fprintf(stderr, "lambda-sim: cannot write %s: %s\n", g.o.ids_path, strerror(errno));
			return EXIT_USAGE;
		}
	}
	if (g.o.dropped_ids_path) {
		g.dropped_ids = fopen(g.o.dropped_ids_path, "we");
		if (!g.dropped_ids) {
			fprintf(stderr, "lambda-sim: cannot write %s: %s\n", g.o.dropped_ids_path, strerror(errno));
			return EXIT_USAGE;
		}
	}
	tel_global_init();
	rc = api_start(g.o.port, &g.port);
	if (rc < 0) {
		fprintf(stderr, "lambda-sim: cannot listen on 127.0.0.1:%d: %s\n", g.o.port, strerror(-rc));
		return EXIT_USAGE;
	}
	if (!g.o.quiet)
		sim_logf("Runtime API on 127.0.0.1:%d, layer %s", g.port, g.o.layer);
	if (g.o.snapstart)
		creds_init();

	pthread_mutex_lock(&g.mu);
	rc = run_init();
	if (rc == 0)
		proc_freeze();          /* everyone is in next: the environment waits frozen for an invoke */
	pthread_mutex_unlock(&g.mu);
	if (rc < 0) {
		result = "init_failed";
		reason = g.fail_reason;
		code = EXIT_INIT;
		sim_logf("init failed: %s", reason);
		run_shutdown("failure");
	} else {
		mem_sample();
		if (!g.o.quiet)
			sim_logf("init done in %.2f ms, pss %ld kB rss %ld kB (%d procs)", g.init_duration_ms,
			         mem_last.pss_kb, mem_last.rss_kb, mem_last.procs);
		if (g.o.snapstart)
			run_snapshot_restore();
		if (g.o.managed) {
			pthread_mutex_lock(&g.mu);
			proc_thaw();
			pthread_mutex_unlock(&g.mu);
			run_managed();
		} else {
			t_inv_first = now_ms();
			for (i = 1; i <= g.o.invocations; i++) {
				if (i > 1)
					sleep_ms(g.o.interval_ms);
				if (run_invocation(i, &why) < 0)
					break;
			}
			t_inv_last = now_ms();
		}
		if (why) {
			reason = reset_reason;
			sim_logf("environment reset: %s", reset_reason);
			if (!strcmp(why, "failure")) {
				result = "reset";
				code = EXIT_RESET;
			} else {
				result = "timeout";
			}
			run_shutdown(why);
		} else {
			run_shutdown(g.o.shutdown_reason);
		}
	}
	tel_stop_all();
	proc_join_threads();
	/* civetweb's mg_stop() takes up to 2 s to join its threads: the process is ending, let exit() do it */
	if (ids_f)
		fclose(ids_f);
	if (g.dropped_ids)
		fclose(g.dropped_ids);
	if (!g.o.quiet)
		sim_logf("done: %d/%d invocations, overhead p50 %.3f ms p99 %.3f ms, shutdown %.1f ms", completed,
		         g.o.invocations, dlist_pct(&overhead, 50), dlist_pct(&overhead, 99), shutdown_ms_total);
	write_summary(code, reason);
	return code;
}
