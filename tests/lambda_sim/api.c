/*
 * lambda-sim: the Extensions API (2020-01-01) and the Telemetry API subscribe call (2022-07-01), served by
 * civetweb on 127.0.0.1. Error types and messages follow AWS's runtime interface emulator
 * (lambda/rapi/handler/constants.go): 403 for identifier and state errors, 400 for malformed bodies,
 * 400 ValidationError for bad subscriptions.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "sim.h"

#define MAX_BODY (1024 * 1024)

static struct mg_context *ctx;

static void reply(struct mg_connection *c, int status, const char *body, const char *xname,
                  const char *xval)
{
	char len[32];
	size_t n = body ? strlen(body) : 0;

	snprintf(len, sizeof(len), "%zu", n);
	mg_response_header_start(c, status);
	mg_response_header_add(c, "Content-Type", "application/json", -1);
	mg_response_header_add(c, "Content-Length", len, -1);
	if (xname)
		mg_response_header_add(c, xname, xval, -1);
	mg_response_header_send(c);
	if (n)
		mg_write(c, body, n);
}

static int reply_err(struct mg_connection *c, int status, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int reply_err(struct mg_connection *c, int status, const char *type, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_object *o = json_object_new_object();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(o, "errorMessage", json_object_new_string(msg));
	json_object_object_add(o, "errorType", json_object_new_string(type));
	reply(c, status, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), NULL, NULL);
	json_object_put(o);
	return status;
}

/* Reads the request body (up to MAX_BODY) into a NUL-terminated heap buffer; NULL when too large. */
static char *read_body(struct mg_connection *c, size_t *outlen)
{
	const struct mg_request_info *ri = mg_get_request_info(c);
	size_t cap = ri->content_length > 0 ? (size_t)ri->content_length + 1 : 4096, len = 0;
	char *buf;

	if (ri->content_length > MAX_BODY)
		return NULL;
	buf = malloc(cap);
	if (!buf)
		return NULL;
	for (;;) {
		int r;
		if (len + 1 >= cap) {
			char *nb;
			if (cap > MAX_BODY) {
				free(buf);
				return NULL;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		r = mg_read(c, buf + len, cap - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	*outlen = len;
	return buf;
}

static int is_uuid(const char *s)
{
	int i;

	if (strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!isxdigit((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

/* Validates the identifier header; on success returns the extension with sim.mu HELD.
 * On failure the reply is sent and NULL returned (mutex not held). */
static struct sim_ext *ext_from_id(struct mg_connection *c)
{
	const char *id = mg_get_header(c, "Lambda-Extension-Identifier");
	int i;

	if (!id || !*id) {
		reply_err(c, 403, "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header");
		return NULL;
	}
	if (!is_uuid(id)) {
		reply_err(c, 403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier");
		return NULL;
	}
	pthread_mutex_lock(&g.mu);
	for (i = 0; i < g.next_ext; i++)
		if (g.ext[i].registered && !strcasecmp(g.ext[i].id, id)) {
			g.ext[i].api_calls++;
			return &g.ext[i];
		}
	pthread_mutex_unlock(&g.mu);
	reply_err(c, 403, "Extension.UnknownExtensionIdentifier", "Unknown extension %s", id);
	return NULL;
}

static const char *state_name(const struct sim_ext *e)
{
	if (e->errored)
		return e->init_error[0] ? "InitError" : "ExitError";
	if (!e->registered)
		return "Started";
	return e->ready ? "Ready" : "Registered";
}

static void api_done(enum api_kind k, double t0)
{
	double d = now_ms() - t0;

	pthread_mutex_lock(&g.mu);
	dlist_add(&g.api_lat[k], d);
	pthread_mutex_unlock(&g.mu);
}

static int method_is(struct mg_connection *c, const char *m)
{
	return !strcmp(mg_get_request_info(c)->request_method, m);
}

/* POST /2020-01-01/extension/register */
static int h_register(struct mg_connection *c, void *cb)
{
	const char *name = mg_get_header(c, "Lambda-Extension-Name");
	const char *feat = mg_get_header(c, "Lambda-Extension-Accept-Feature");
	json_object *req = NULL, *evs, *ck, *resp;
	unsigned events = 0;
	struct sim_ext *e = NULL;
	size_t len = 0, i, n;
	char *body;
	int k, status = 200;
	double t0 = now_ms();

	(void)cb;
	if (!method_is(c, "POST"))
		return reply_err(c, 405, "MethodNotAllowed", "use POST");
	if (!name || !*name)
		return reply_err(c, 403, "Extension.InvalidExtensionName", "Empty extension name");
	body = read_body(c, &len);
	if (!body)
		return reply_err(c, 400, "InvalidRequestFormat", "request body too large");
	req = json_tokener_parse(body);
	free(body);
	if (!req || !json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return reply_err(c, 400, "InvalidRequestFormat", "request body is not a JSON object");
	}
	if (json_object_object_get_ex(req, "configurationKeys", &ck) &&
	    json_object_is_type(ck, json_type_array) && json_object_array_length(ck) > 0) {
		json_object_put(req);
		return reply_err(c, 403, "InvalidRequestFormat",
		                 "configurationKeys are deprecated; use environment variables instead");
	}
	if (json_object_object_get_ex(req, "events", &evs) && !json_object_is_type(evs, json_type_null)) {
		if (!json_object_is_type(evs, json_type_array)) {
			json_object_put(req);
			return reply_err(c, 400, "InvalidRequestFormat", "events must be an array");
		}
		n = json_object_array_length(evs);
		for (i = 0; i < n; i++) {
			json_object *ev = json_object_array_get_idx(evs, i);
			const char *s = json_object_get_string(ev);
			if (!json_object_is_type(ev, json_type_string)) {
				json_object_put(req);
				return reply_err(c, 400, "InvalidRequestFormat", "events must be strings");
			}
			if (!strcmp(s, "INVOKE"))
				events |= EV_INVOKE;
			else if (!strcmp(s, "SHUTDOWN"))
				events |= EV_SHUTDOWN;
			else {
				status = reply_err(c, 403, "Extension.InvalidEventType", "%s: invalid event", s);
				json_object_put(req);
				return status;
			}
		}
	}
	json_object_put(req);
	if (g.o.managed && (events & EV_INVOKE))
		return reply_err(c, 403, "Extension.InvalidEventType",
		                 "INVOKE: event not supported on Lambda Managed Instances");

	pthread_mutex_lock(&g.mu);
	if (g.phase != PH_INIT) {
		pthread_mutex_unlock(&g.mu);
		return reply_err(c, 403, "Extension.RegistrationClosed", "Extension registration closed already");
	}
	for (k = 0; k < g.n_external; k++)
		if (!strcmp(g.ext[k].name, name))
			e = &g.ext[k];
	if (e) {
		if (e->registered) {
			const char *st = state_name(e);
			pthread_mutex_unlock(&g.mu);
			return reply_err(c, 403, "Extension.InvalidExtensionState",
			                 "State transition from %s to Registered failed for extension %s. Error: "
			                 "already registered", st, name);
		}
	} else {
		/* A name that is not a file of extensions/ makes an internal extension, which may not
		 * receive SHUTDOWN (aws-spec 1: the name must equal the executable's file name). */
		if (events & EV_SHUTDOWN) {
			pthread_mutex_unlock(&g.mu);
			return reply_err(c, 403, "Extension.InvalidEventType",
			                 "SHUTDOWN: %s is not an executable of extensions/, so it is an internal "
			                 "extension, which cannot register for SHUTDOWN", name);
		}
		for (k = g.n_external; k < g.next_ext; k++)
			if (!strcmp(g.ext[k].name, name)) {
				pthread_mutex_unlock(&g.mu);
				return reply_err(c, 403, "Extension.InvalidExtensionState",
				                 "Extension with this name already registered");
			}
		if (g.next_ext >= SIM_MAX_EXT) {
			pthread_mutex_unlock(&g.mu);
			return reply_err(c, 403, "Extension.TooManyExtensions", "Extension limit (%d) reached",
			                 SIM_MAX_EXT);
		}
		e = &g.ext[g.next_ext++];
		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%s", name);
		e->internal = 1;
		e->out_fd = -1;
		e->t_exec = now_ms();
		if (!g.o.quiet)
			sim_logf("%s registered as an internal extension (no file of that name in extensions/)", name);
	}
	uuid_v4(e->id);
	e->registered = 1;
	e->events = events;
	e->t_register = now_ms();
	e->api_calls++;
	pthread_cond_broadcast(&g.cv);

	resp = json_object_new_object();
	json_object_object_add(resp, "functionName", json_object_new_string(g.o.function_name));
	json_object_object_add(resp, "functionVersion", json_object_new_string(g.o.function_version));
	json_object_object_add(resp, "handler", json_object_new_string("function.handler"));
	if (feat && strstr(feat, "accountId"))
		json_object_object_add(resp, "accountId", json_object_new_string("123456789012"));
	{
		char id[37];
		memcpy(id, e->id, sizeof(id));
		pthread_mutex_unlock(&g.mu);
		reply(c, 200, json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN),
		      "Lambda-Extension-Identifier", id);
	}
	json_object_put(resp);
	api_done(API_REGISTER, t0);
	return 200;
}

static void emit_extension_ready(struct sim_ext *e)
{
	json_object *r = json_object_new_object(), *evs = json_object_new_array();

	json_object_object_add(r, "name", json_object_new_string(e->name));
	json_object_object_add(r, "state", json_object_new_string("Ready"));
	if (e->events & EV_INVOKE)
		json_object_array_add(evs, json_object_new_string("INVOKE"));
	if (e->events & EV_SHUTDOWN)
		json_object_array_add(evs, json_object_new_string("SHUTDOWN"));
	json_object_object_add(r, "events", evs);
	tel_emit("platform.extension", r);
}

/* GET /2020-01-01/extension/event/next: long poll. */
static int h_next(struct mg_connection *c, void *cb)
{
	struct sim_ext *e;
	char *ev = NULL, evid[37];
	double t;

	(void)cb;
	if (!method_is(c, "GET"))
		return reply_err(c, 405, "MethodNotAllowed", "use GET");
	e = ext_from_id(c);
	if (!e)
		return 403;
	t = now_ms();
	if (e->errored) {
		const char *st = state_name(e);
		pthread_mutex_unlock(&g.mu);
		return reply_err(c, 403, "Extension.InvalidExtensionState",
		                 "State transition from %s to Ready failed for extension %s. Error: error reported",
		                 st, e->name);
	}
	e->next_calls++;
	e->t_last_next = t;
	if (!e->ready) {
		e->ready = 1;
		e->t_first_next = t;
		emit_extension_ready(e);
	}
	e->waiting++;
	pthread_cond_broadcast(&g.cv);
	while (!e->pending && !g.stopping)
		pthread_cond_wait(&g.cv, &g.mu);
	e->waiting--;
	if (e->pending) {
		if (e->t_posted > t)
			t = e->t_posted;
		ev = e->pending;
		e->pending = NULL;
		e->taken_seq = e->ev_seq;
		if (strstr(ev, "\"SHUTDOWN\"")) {
			e->t_shutdown_taken = now_ms();
			e->got_shutdown = 1;
		}
	}
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	if (!ev)
		return reply_err(c, 500, "Runtime.Stopped", "the environment is going away");
	uuid_v4(evid);
	reply(c, 200, ev, "Lambda-Extension-Event-Identifier", evid);
	free(ev);
	api_done(API_NEXT, t);
	return 200;
}

/* POST /2020-01-01/extension/init/error and /exit/error */
static int h_error(struct mg_connection *c, void *cb)
{
	int is_init = cb != NULL;
	double t0 = now_ms();
	const char *etype = mg_get_header(c, "Lambda-Extension-Function-Error-Type");
	struct sim_ext *e;
	size_t len = 0;
	char *body;

	if (!method_is(c, "POST"))
		return reply_err(c, 405, "MethodNotAllowed", "use POST");
	body = read_body(c, &len);
	e = ext_from_id(c);
	if (!e) {
		free(body);
		return 403;
	}
	if (!etype || !*etype) {
		pthread_mutex_unlock(&g.mu);
		free(body);
		return reply_err(c, 403, "Extension.MissingHeader",
		                 "Lambda-Extension-Function-Error-Type not found");
	}
	if (e->errored || (is_init && (e->ready || g.phase != PH_INIT))) {
		const char *st = state_name(e);
		pthread_mutex_unlock(&g.mu);
		free(body);
		return reply_err(c, 403, "Extension.InvalidExtensionState",
		                 "State transition from %s to %s failed for extension %s. Error: not allowed", st,
		                 is_init ? "InitError" : "ExitError", e->name);
	}
	e->errored = 1;
	snprintf(is_init ? e->init_error : e->exit_error, sizeof(e->init_error), "%s", etype);
	free(e->error_body);
	e->error_body = body;
	body = NULL;
	if (!g.o.quiet)
		sim_logf("%s reported %s/error %s", e->name, is_init ? "init" : "exit", etype);
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	reply(c, 202, "{\"status\":\"OK\"}", NULL, NULL);
	api_done(API_ERROR, t0);
	return 202;
}

/* PUT /2022-07-01/telemetry */
static int h_telemetry(struct mg_connection *c, void *cb)
{
	struct sim_ext *e;
	json_object *req;
	size_t len = 0;
	char *body, err[256];
	double t0 = now_ms();
	int r;

	(void)cb;
	if (!method_is(c, "PUT"))
		return reply_err(c, 405, "MethodNotAllowed", "use PUT");
	body = read_body(c, &len);
	e = ext_from_id(c);
	if (!e) {
		free(body);
		return 403;
	}
	if (g.o.telemetry_unsupported) {
		e->t_subscribe = now_ms();
		pthread_mutex_unlock(&g.mu);
		free(body);
		return reply_err(c, 202, "Telemetry.NotSupported", "Telemetry API is not supported");
	}
	if (g.phase != PH_INIT) {
		pthread_mutex_unlock(&g.mu);
		free(body);
		return reply_err(c, 403, "Telemetry.SubscriptionClosed",
		                 "Subscription is closed: subscribe during the init phase");
	}
	if (!body) {
		pthread_mutex_unlock(&g.mu);
		return reply_err(c, 400, "ValidationError", "request body too large");
	}
	req = json_tokener_parse(body);
	free(body);
	if (!req || !json_object_is_type(req, json_type_object)) {
		pthread_mutex_unlock(&g.mu);
		json_object_put(req);
		return reply_err(c, 400, "ValidationError", "request body is not a JSON object");
	}
	r = tel_subscribe(e, req, err, sizeof(err));
	json_object_put(req);
	if (r < 0) {
		pthread_mutex_unlock(&g.mu);
		return reply_err(c, 400, "ValidationError", "%s", err);
	}
	e->t_subscribe = now_ms();
	pthread_mutex_unlock(&g.mu);
	reply(c, 200, "\"OK\"", NULL, NULL);
	api_done(API_SUBSCRIBE, t0);
	return 200;
}

int api_start(int port, int *bound_port)
{
	char ports[32];
	/* Idle keep-alive connections stay open (civetweb closes them after 500 ms by default): an
	 * extension's connection must survive a long freeze without a close racing its next request. Each
	 * open connection holds a worker thread, hence the thread count. */
	const char *opts[] = {"listening_ports", ports, "num_threads", "64", "enable_keep_alive", "yes",
	                      "keep_alive_timeout_ms", "3600000", "request_timeout_ms", "3600000",
	                      "tcp_nodelay", "1", NULL};
	struct mg_callbacks cbs;
	struct mg_server_port sp[2];

	snprintf(ports, sizeof(ports), "127.0.0.1:%d", port);
	memset(&cbs, 0, sizeof(cbs));
	mg_init_library(0);
	ctx = mg_start(&cbs, NULL, opts);
	if (!ctx)
		return -EADDRINUSE;
	if (mg_get_server_ports(ctx, 2, sp) < 1) {
		mg_stop(ctx);
		ctx = NULL;
		return -EIO;
	}
	*bound_port = sp[0].port;
	mg_set_request_handler(ctx, "/2020-01-01/extension/register$", h_register, NULL);
	mg_set_request_handler(ctx, "/2020-01-01/extension/event/next$", h_next, NULL);
	mg_set_request_handler(ctx, "/2020-01-01/extension/init/error$", h_error, (void *)1);
	mg_set_request_handler(ctx, "/2020-01-01/extension/exit/error$", h_error, NULL);
	mg_set_request_handler(ctx, "/2022-07-01/telemetry$", h_telemetry, NULL);
	mg_set_request_handler(ctx, "/2022-07-01/telemetry/$", h_telemetry, NULL);
	mg_set_request_handler(ctx, CREDS_PATH "$", creds_handler, NULL);
	return 0;
}
