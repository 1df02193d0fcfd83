/*
 * Test fixture for the listener: a real ring and control block, listener_main in a
 * forked child on a free port, and a small libcurl client. Used by
 * tests/integration/check_listener.c and tests/bench/bench_listener.c.
 */
#ifndef KTE_TEST_LISTENER_FIXTURE_H
#define KTE_TEST_LISTENER_FIXTURE_H

#include <curl/curl.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "control.h"
#include "ring.h"

struct listener_fixture {
	struct kte_config cfg;      /* set by lfix_init; tests may change it before lfix_start */
	struct ring ring;
	struct control *ctl;
	struct control_fds fds;
	int ring_wait_ms;
	pid_t pid;
	char base[64];              /* "http://127.0.0.1:PORT" */
};

/* Defaults (as config_load with no KTE_ variables) on 127.0.0.1, log level warn. */
void lfix_init(struct listener_fixture *f);

/*
 * Creates the ring (ring_bytes) and control block unless already there, forks
 * listener_main on a free port and waits until it is ready. A lost race for the
 * port is retried on another. Returns 0 or -errno.
 */
int lfix_start(struct listener_fixture *f, uint64_t ring_bytes);

/* Like lfix_start but keeps cfg.listener_port (restart on the same port). */
int lfix_start_same_port(struct listener_fixture *f);

/* Sends sig to the listener and reaps it; returns its wait status, or -1. */
int lfix_stop(struct listener_fixture *f, int sig);

/* Stops the listener if running and frees the ring and control block. */
void lfix_free(struct listener_fixture *f);

/* A port that was free a moment ago (bound to 0 then closed). */
unsigned lfix_free_port(void);

#define LFIX_CHUNKED 0x1
#define LFIX_EXPECT  0x2     /* send Expect: 100-continue */

/*
 * One request on handle h (keep-alive across calls). path is appended to f->base.
 * Returns the HTTP status, or -1 on a transport error.
 */
long lfix_request(CURL *h, const struct listener_fixture *f, const char *method, const char *path,
    const void *body, size_t len, int flags);

#endif
