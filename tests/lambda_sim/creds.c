/*
 * The container credentials endpoint of a SnapStart environment (aws-spec 5): instead of
 * AWS_ACCESS_KEY_ID & co., the extension gets AWS_CONTAINER_CREDENTIALS_FULL_URI and
 * AWS_CONTAINER_AUTHORIZATION_TOKEN, GETs the URI with `Authorization: <token>` and receives
 * {AccessKeyId, SecretAccessKey, Token, Expiration}.
 *
 * Key pairs rotate: generation k is issued at t0 + k * ttl/2 and expires ttl later, so a pair
 * fetched just before a rotation still has ttl/2 left, and every pair becomes invalid at its
 * Expiration. Pairs are made when first asked for. With --credentials-file, every pair issued so
 * far is listed there ("<AccessKeyId> <Token> <Expiration epoch ms> <SecretAccessKey>" per line,
 * rewritten atomically at each new pair) so that a verifier in front of Kinesis (the fault
 * proxy's --credentials-file) can check signatures and refuse expired or unknown keys.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "sim.h"

#define CREDS_MAX_GEN 4096

static struct {
	pthread_mutex_t mu;
	int enabled;
	char token[65];
	double t0_epoch;
	long ttl_ms;
	long gen;                       /* newest generation issued, -1 none */
	struct {
		char akid[21], secret[41], token[81];
		double expires;
	} pair[CREDS_MAX_GEN];
	uint64_t served, unauthorized;
} cs = { .mu = PTHREAD_MUTEX_INITIALIZER, .gen = -1 };

void creds_init(void)
{
	pthread_mutex_lock(&cs.mu);
	cs.enabled = 1;
	rand_hex(cs.token, 64);
	cs.t0_epoch = (double)(int64_t)epoch_ms();
	cs.ttl_ms = g.o.credentials_ttl_ms;
	pthread_mutex_unlock(&cs.mu);
}

const char *creds_token(void)
{
	return cs.token;
}

void creds_uri(char *buf, size_t len)
{
	snprintf(buf, len, "http://127.0.0.1:%d%s", g.port, CREDS_PATH);
}

/* Rewrites --credentials-file from the pairs issued so far; with cs.mu held. */
static void write_file(void)
{
	char tmp[PATH_MAX];
	FILE *f;
	long i;

	if (!g.o.credentials_file)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", g.o.credentials_file);
	if (!(f = fopen(tmp, "we")))
		return;
	for (i = 0; i <= cs.gen && i < CREDS_MAX_GEN; i++)
		if (cs.pair[i].akid[0])
			fprintf(f, "%s %s %.0f %s\n", cs.pair[i].akid, cs.pair[i].token, cs.pair[i].expires,
			        cs.pair[i].secret);
	if (fclose(f) == 0)
		rename(tmp, g.o.credentials_file);
}

/* The pair of the current generation, made if new; with cs.mu held. */
static long current_gen(void)
{
	double now = epoch_ms(), step = cs.ttl_ms / 2.0;
	long k = (long)((now - cs.t0_epoch) / step);
	char hex[41];

	if (k >= CREDS_MAX_GEN)
		k = CREDS_MAX_GEN - 1;
	if (!cs.pair[k].akid[0]) {
		rand_hex(hex, 16);
		snprintf(cs.pair[k].akid, sizeof(cs.pair[k].akid), "ASIA%.16s", hex);
		rand_hex(cs.pair[k].secret, 40);
		rand_hex(cs.pair[k].token, 80);
		cs.pair[k].expires = (double)(int64_t)(cs.t0_epoch + (double)k * step + (double)cs.ttl_ms);
		if (k > cs.gen)
			cs.gen = k;
		write_file();
	}
	return k;
}

int creds_handler(struct mg_connection *c, void *ud)
{
	const struct mg_request_info *ri = mg_get_request_info(c);
	const char *auth = mg_get_header(c, "Authorization");
	char body[512], exp[40];
	long k;

	(void)ud;
	pthread_mutex_lock(&cs.mu);
	if (!cs.enabled) {
		pthread_mutex_unlock(&cs.mu);
		mg_send_http_error(c, 404, "%s", "no container credentials in this environment");
		return 404;
	}
	if (strcmp(ri->request_method, "GET") != 0) {
		pthread_mutex_unlock(&cs.mu);
		mg_send_http_error(c, 405, "%s", "GET only");
		return 405;
	}
	if (!auth || strcmp(auth, cs.token) != 0) {
		cs.unauthorized++;
		pthread_mutex_unlock(&cs.mu);
		snprintf(body, sizeof(body), "{\"Code\":\"AccessDenied\",\"Message\":\"invalid authorization token\"}");
		mg_printf(c, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
		          "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
		return 401;
	}
	k = current_gen();
	cs.served++;
	iso_time(exp, sizeof(exp), cs.pair[k].expires);
	snprintf(body, sizeof(body), "{\"AccessKeyId\":\"%s\",\"SecretAccessKey\":\"%s\",\"Token\":\"%s\","
	         "\"Expiration\":\"%s\"}", cs.pair[k].akid, cs.pair[k].secret, cs.pair[k].token, exp);
	pthread_mutex_unlock(&cs.mu);
	mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	          strlen(body), body);
	return 200;
}

void creds_stats(uint64_t *served, uint64_t *unauthorized, long *issued)
{
	pthread_mutex_lock(&cs.mu);
	*served = cs.served;
	*unauthorized = cs.unauthorized;
	*issued = 0;
	for (long i = 0; i <= cs.gen && i < CREDS_MAX_GEN; i++)
		*issued += cs.pair[i].akid[0] != 0;
	pthread_mutex_unlock(&cs.mu);
}
