/*
 * The control block: a small MAP_SHARED page the controller creates before forking,
 * through which the three processes coordinate without pipes or messages:
 *   controller -> dispatcher: "flush now" (flush_requested) and "stop by deadline T";
 *   dispatcher -> controller: "flushed up to request N" (flush_completed), Kinesis health;
 *   listener   -> controller: "platform.runtimeDone seen" (runtime_done_count).
 * Each direction has an eventfd to wake the waiting side. Counters are plain atomics
 * that every process may read for reporting.
 */
#ifndef KTE_CONTROL_H
#define KTE_CONTROL_H

#include <stdatomic.h>
#include <stdint.h>

#define CONTROL_MAGIC   0x314c5254434554ebull
#define CONTROL_VERSION 1u

struct listener_counters {
	_Atomic uint64_t requests;           /* POSTs answered 200 */
	_Atomic uint64_t events;             /* events written into the ring */
	_Atomic uint64_t bytes;              /* their bytes */
	_Atomic uint64_t bad_request;        /* 400: invalid JSON or not an array */
	_Atomic uint64_t too_large;          /* 413 */
	_Atomic uint64_t bad_method;         /* 405 */
	_Atomic uint64_t not_found;          /* 404 */
	_Atomic uint64_t ring_full;          /* 503 after the bounded wait */
	_Atomic uint64_t oversized_dropped;  /* single events larger than a record: dropped */
	_Atomic uint64_t filtered;           /* dropped on purpose by KTE_DROP_TYPES / level filter */
	_Atomic uint64_t logs_dropped_records; /* summed from platform.logsDropped (Lambda's own drops) */
};

struct dispatcher_counters {
	_Atomic uint64_t requests;           /* PutRecords requests sent */
	_Atomic uint64_t request_failures;   /* whole-request failures (HTTP error, connection) */
	_Atomic uint64_t records_sent;       /* Kinesis records accepted */
	_Atomic uint64_t events_sent;        /* ring records (telemetry events) acknowledged */
	_Atomic uint64_t bytes_sent;         /* payload bytes of those events */
	_Atomic uint64_t records_retried;    /* Kinesis records resent after partial failure */
	_Atomic uint64_t events_dropped;     /* events given up on (too large, rejected, shutdown) */
	_Atomic uint64_t bytes_dropped;
	_Atomic uint64_t events_left;        /* of events_dropped: still in the ring at the shutdown deadline */
	_Atomic uint64_t wire_bytes;         /* request bytes on the wire */
};

/*
 * The dispatcher's own drop accounting for its dropped-summary event, kept here so that
 * a restarted dispatcher neither reports again what a delivered summary covered (the
 * listener's and the ring's counts are cumulative in shared memory) nor forgets what it
 * counted itself and had not reported yet. Indexed by enum drop_kind (dispatcher/
 * dropped.h). Written only by the dispatcher, one process at a time (a restart follows
 * the old process's death), so the fields are plain.
 */
#define CONTROL_DROP_KINDS 16
struct dispatcher_drops {
	uint64_t counted[CONTROL_DROP_KINDS];   /* drops the dispatcher counted itself */
	uint64_t reported[CONTROL_DROP_KINDS];  /* cumulative counts the last delivered summary covered */
	uint64_t reported_ms;                   /* epoch ms that summary was built; 0: none yet */
};

/*
 * Arrival -> acknowledgement latency of events, as a log-scale histogram (bucket bounds in
 * common/latency.h), plus two maxima that restart with each metrics window. Written by the
 * dispatcher only (latency_record, latency_ring_used), read by the controller.
 */
#define LATENCY_BUCKETS 80
struct latency_hist {
	_Atomic uint64_t bucket[LATENCY_BUCKETS]; /* events acknowledged, cumulative per bucket */
	_Atomic uint64_t window;             /* metrics_window value the maxima below belong to */
	_Atomic uint64_t max_ms;             /* highest latency recorded in that window */
	_Atomic uint64_t ring_hw_bytes;      /* most ring bytes in use seen in that window (before a release) */
};

struct control {
	uint64_t magic;
	uint32_t version;
	uint32_t size;

	/* controller -> dispatcher */
	_Atomic uint64_t flush_requested;    /* incremented per request; dispatcher answers in flush_completed */
	_Atomic int64_t shutdown_deadline_ms; /* epoch ms; 0 = running. Dispatcher must be done before it */
	_Atomic uint32_t flush_policy;       /* enum flush_policy in force (adaptive picks end/continuous) */
	_Atomic uint32_t hold_sending;       /* 1: periodic policy outside a flush: do not send */
	/*
	 * restore_count: SnapStart restores seen. Writer: controller (at the first INVOKE of an
	 * environment whose AWS_LAMBDA_INITIALIZATION_TYPE is snap-start: such an environment
	 * runs invocations only after a restore). Reader: dispatcher (reseeds its random
	 * sources, drops kept-alive connections, fetches fresh container credentials).
	 */
	_Atomic uint64_t restore_count;

	/* dispatcher -> controller */
	_Atomic uint64_t flush_completed;    /* highest flush_requested value fully satisfied */
	_Atomic uint32_t kinesis_healthy;    /* circuit breaker: 1 closed (ok), 0 open (failing) */
	_Atomic uint32_t dispatcher_idle;    /* 1: nothing in flight and nothing pending it could send */
	_Atomic uint64_t consecutive_failures;
	_Atomic uint64_t last_success_ms;    /* monotonic ms of the last accepted PutRecords */

	/* listener -> controller */
	_Atomic uint64_t runtime_done_count; /* platform.runtimeDone events seen */
	_Atomic uint64_t report_count;       /* platform.report events seen */
	_Atomic uint64_t listener_ready;     /* set once the server accepts connections */

	struct listener_counters listener;
	struct dispatcher_counters dispatcher;
	struct dispatcher_drops drops;

	/*
	 * Self-metrics (controller/metrics.c emits them as EMF lines). Single writers:
	 *   metrics_window, next_hold_count, next_hold_ms: the controller;
	 *   latency: the dispatcher (common/latency.c), read by the controller.
	 */
	_Atomic uint64_t metrics_window;     /* bumped by each emission: starts a new window for latency's maxima */
	_Atomic uint64_t next_hold_count;    /* invocations where next waited for a flush after runtimeDone */
	_Atomic uint64_t next_hold_ms;       /* their summed wait, runtimeDone seen to next sent */
	struct latency_hist latency;
};

/* The eventfds that go with the block; all created before fork, inherited by children. */
struct control_fds {
	int to_dispatcher;   /* flush requested / shutdown / ring repaired */
	int to_controller;   /* flush completed, runtimeDone seen, listener ready */
};

/*
 * Maps a zeroed control block (MAP_SHARED | MAP_ANONYMOUS, so it survives fork) and
 * creates the eventfds. Returns the block or NULL (errno set). Free with control_free.
 * Call before forking: the children share the block and inherit the fds.
 */
struct control *control_new(struct control_fds *fds) __attribute__((warn_unused_result));
/* Unmaps the block (in this process) and closes the fds, setting them to -1; NULL-safe. */
void control_free(struct control *c, struct control_fds *fds);

#endif
