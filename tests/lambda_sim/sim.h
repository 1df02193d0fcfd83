/*
 * lambda-sim: a local Lambda execution environment for extensions.
 *
 * Built from the AWS documentation (shared/docs/aws-spec.md sections 1, 2, 5), independently of the
 * extension's own code so that it stays a reference. One process, several threads:
 *   main thread      lifecycle: init, invocations, freeze/thaw, shutdown (main.c)
 *   civetweb workers Extensions API 2020-01-01 and Telemetry API 2022-07-01 (api.c)
 *   one per subscription  Telemetry delivery by HTTP POST or TCP (telemetry.c)
 *   reaper, output   waitpid() of extensions, their stdout/stderr as `extension` records (proc.c)
 * All shared state lives in `struct sim` behind one mutex, `sim.mu`.
 */
#ifndef LAMBDA_SIM_H
#define LAMBDA_SIM_H

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#define SIM_MAX_EXT        10      /* Lambda allows at most 10 extensions per function */
#define SIM_MAX_ENV        128
#define SIM_RUNTIME_SHARE_MS 300   /* runtime's share of the 2,000 ms shutdown budget */
#define SIM_SHUTDOWN_MS    2000

#define EV_INVOKE   1u
#define EV_SHUTDOWN 2u

#define TYPE_PLATFORM  1u
#define TYPE_FUNCTION  2u
#define TYPE_EXTENSION 4u

enum sim_phase { PH_INIT, PH_READY, PH_INVOKE, PH_SHUTDOWN, PH_DONE };

enum api_kind { API_REGISTER, API_NEXT, API_SUBSCRIBE, API_ERROR };

enum schema_ver { SCHEMA_20220701, SCHEMA_20221213, SCHEMA_20250129 };

/* A growable list of doubles (milliseconds) for percentiles. */
struct dlist {
	double *v;
	size_t n, cap;
};

/* One buffered telemetry event, already serialised for its subscription. */
struct tl_item {
	struct tl_item *next;
	size_t len;
	double t;               /* monotonic ms it was buffered */
	int droppable;          /* function/extension records may be dropped, platform ones not */
	char data[];
};

struct sim_ext;

/* A Telemetry API subscription and its delivery thread. Fields under sim.mu. */
struct sim_sub {
	struct sim_ext *ext;
	unsigned types;
	enum schema_ver schema;
	int max_items;
	long max_bytes;
	long timeout_ms;
	int tcp;                /* destination protocol TCP, else HTTP */
	char uri[512];
	char host[256];
	int port;
	char path[256];
	int tcp_fd;
	pthread_t thread;
	int thread_started;
	pthread_cond_t cv;
	struct tl_item *head, *tail;
	size_t count, bytes;
	double oldest_ms;       /* monotonic time the oldest buffered item arrived */
	uint64_t drop_records, drop_bytes;      /* not yet reported in platform.logsDropped */
	double backoff_ms, retry_at_ms;
	/* statistics */
	uint64_t batches, events, sent_bytes, failures, retries, dropped_records, dropped_bytes,
	         logs_dropped_events, max_batch_items, max_batch_bytes;
	struct dlist latency;
};

/* One extension: an executable of <layer>/extensions (external) or a registration by another name
 * (internal, no process of its own). Fields under sim.mu. */
struct sim_ext {
	char name[256];
	char path[PATH_MAX];
	int internal;
	pid_t pid;              /* also its process group id */
	int out_fd;             /* read end of its stdout/stderr pipe, -1 when closed */
	char id[37];
	int registered;
	unsigned events;
	int ready;              /* has called next at least once */
	int waiting;            /* next calls currently blocked */
	int errored;            /* called init/error or exit/error: no call succeeds any more */
	char *pending;          /* event to hand to the next call */
	double t_posted;        /* when pending was set */
	uint64_t ev_seq, taken_seq;
	int exited, exit_status, killed;
	double t_exec, t_register, t_subscribe, t_first_next, t_last_next, t_exit;
	double t_shutdown_taken;
	int got_shutdown;       /* a next call returned SHUTDOWN */
	uint64_t next_calls, api_calls;
	char init_error[256], exit_error[256];
	char *error_body;
	struct sim_sub *sub;
	char outbuf[262144];    /* partial output line; Lambda splits lines at 256 KiB */
	size_t outlen;
};

struct sim_opts {
	const char *layer;
	int invocations;
	const char *env[SIM_MAX_ENV];
	int nenv;
	int log_lines;
	int log_bytes;
	int log_bytes_max;     /* --log-bytes LO-HI: sizes spread over [log_bytes, log_bytes_max] */
	int log_json;
	int handler_ms;
	int interval_ms;
	const char *shutdown_reason;
	const char *summary_path;
	const char *ids_path;
	const char *dropped_ids_path;
	const char *id_prefix;
	int quiet;
	int managed;
	int concurrency;
	int telemetry_unsupported;
	int init_timeout_ms;
	int timeout_ms;
	int runtime_init_ms;
	int port;
	long buffer_bytes;
	const char *function_name;
	const char *function_version;
	int memory_mb;
	const char *region;
	int snapstart;          /* --snapstart: init, snapshot (frozen for snapshot_gap_ms), restore */
	int snapshot_gap_ms;
	int credentials_ttl_ms; /* SnapStart container credentials: lifetime of a key pair */
	const char *credentials_file;
};

struct sim_mem {
	long pss_kb, rss_kb, hwm_kb;
	int procs;
};

struct sim {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sim_opts o;
	int port;
	enum sim_phase phase;
	int frozen;             /* extensions stopped: no telemetry delivery */
	int telemetry_hold;     /* SHUTDOWN not yet handed out: keep the last report */
	int stopping;           /* simulator ending: release every blocked call */
	uint64_t freeze_gen;
	struct sim_ext ext[SIM_MAX_EXT];
	int next_ext;           /* number of entries in ext[] */
	int n_external;
	double t0_mono;         /* monotonic ms at start of init */
	double init_duration_ms;
	/* init replay: events of the init phase, delivered to every later subscriber */
	struct {
		char *type;
		char *time;
		json_object *record;
	} initlog[64];
	int ninitlog;
	/* events emitted per type */
	struct {
		char type[40];
		uint64_t n;
	} counts[24];
	int ncounts;
	/* time spent serving API calls, from handler entry (for next: from the later of the call's
	 * arrival and the event's availability) to the reply written */
	struct dlist api_lat[4];
	const char *fail_reason;
	char fail_buf[512];
	FILE *dropped_ids;      /* --dropped-ids: "<extension> <id>" per function record dropped */
	/* stderr gate so lines do not interleave */
	pthread_mutex_t out_mu;
};

extern struct sim g;

/* util.c */
double now_ms(void);            /* monotonic, ms with sub-ms precision */
double epoch_ms(void);          /* wall clock, Unix epoch ms */
void iso_time(char *buf, size_t len, double epoch); /* "2022-10-21T14:05:03.165Z" */
void cond_init_mono(pthread_cond_t *cv);     /* a condition variable timed on CLOCK_MONOTONIC */
/* Waits on cv (initialised by cond_init_mono) until the monotonic time mono_ms; pthread's result. */
int cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, double mono_ms);
void uuid_v4(char out[37]);
void rand_hex(char *out, size_t nhex);
void dlist_add(struct dlist *l, double v);
double dlist_pct(const struct dlist *l, double pct); /* nearest-rank percentile, 0 if empty */
double dlist_max(const struct dlist *l);
void dlist_free(struct dlist *l);
void sim_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* api.c: starts the HTTP server on 127.0.0.1:port (0 = ephemeral); returns 0 or -errno. It is never
 * stopped: civetweb's mg_stop() takes up to 2 s, and the process exits once the summary is written. */
int api_start(int port, int *bound_port) __attribute__((warn_unused_result));

/* telemetry.c: all called with sim.mu held unless noted. */
void tel_emit(const char *type, json_object *record);   /* emits an event now; takes ownership of record */
/* Validates a subscribe body and creates (or updates) e's subscription and its delivery thread; returns 0,
 * or -EINVAL with the ValidationError message in err. */
int tel_subscribe(struct sim_ext *e, json_object *req, char *err, size_t errlen)
	__attribute__((warn_unused_result));
void tel_kick(void);            /* wakes delivery threads (frozen/hold changed) */
void tel_stop_all(void);        /* without sim.mu: stops and joins the delivery threads */
void tel_global_init(void);     /* once, before any thread: libcurl */
void tel_count(const char *type);       /* counts an emitted event for the summary */

/* creds.c: the container credentials endpoint (SnapStart) at CREDS_PATH on the API server */
#define CREDS_PATH "/2021-04-23/credentials"
struct mg_connection;
void creds_init(void);          /* enables the endpoint: a fresh token, rotation starts now */
const char *creds_token(void);  /* the AWS_CONTAINER_AUTHORIZATION_TOKEN value */
void creds_uri(char *buf, size_t len);  /* the AWS_CONTAINER_CREDENTIALS_FULL_URI value */
int creds_handler(struct mg_connection *c, void *ud);   /* civetweb handler */
void creds_stats(uint64_t *served, uint64_t *unauthorized, long *issued);

/* proc.c */
/* Starts every file of <layer>/extensions (sorted, in parallel, own process group, clean environment);
 * with sim.mu held. Returns 0 or -errno (g.fail_reason set when an extension could not start). */
int proc_spawn_all(void) __attribute__((warn_unused_result));
void proc_start_threads(void);  /* reaper (waitpid) and output (stdout/stderr -> `extension` records) */
void proc_freeze(void);         /* SIGSTOP every extension's process group; with sim.mu held */
void proc_thaw(void);           /* SIGCONT them; with sim.mu held */
void proc_kill_group(struct sim_ext *e, int sig);       /* no-op for internal extensions */
int proc_group_alive(pid_t pgid);       /* 1 while any process of the group exists */
void proc_mem_sample(struct sim_mem *m);   /* sums Pss/RSS/HWM of the groups from /proc; no lock needed */
void proc_join_threads(void);   /* after tel_stop_all: joins the output thread, detaches the reaper */

#endif
