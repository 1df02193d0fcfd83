/*
 * lambda-sim: Telemetry API subscriptions, buffering and delivery (aws-spec 2).
 *
 * Every event is serialised once per subscription in that subscription's schema and appended to its
 * bounded buffer. A delivery thread per subscription sends a batch when maxItems or maxBytes is reached or
 * timeoutMs has passed since the oldest buffered event, as one JSON array per HTTP POST (or one line per
 * event over TCP). A failed POST (connect error or status > 299) is retried with backoff, the batch staying
 * in the buffer. When the buffer is over its byte limit, function and extension records are dropped and
 * reported in a platform.logsDropped event. Nothing is sent while the extensions are frozen.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "sim.h"

#define BACKOFF_MIN_MS 25.0
#define BACKOFF_MAX_MS 1000.0

void tel_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void tel_count(const char *type)
{
	int i;

	for (i = 0; i < g.ncounts; i++)
		if (!strcmp(g.counts[i].type, type)) {
			g.counts[i].n++;
			return;
		}
	if (g.ncounts < (int)(sizeof(g.counts) / sizeof(g.counts[0]))) {
		snprintf(g.counts[g.ncounts].type, sizeof(g.counts[0].type), "%s", type);
		g.counts[g.ncounts++].n = 1;
	}
}

static unsigned type_mask(const char *type)
{
	if (!strncmp(type, "platform.", 9))
		return TYPE_PLATFORM;
	if (!strcmp(type, "function"))
		return TYPE_FUNCTION;
	return TYPE_EXTENSION;
}

/* Serialises {"time","type","record"}; records of function/extension become strings before 2022-12-13. */
static char *serialise(const char *time, const char *type, json_object *record, enum schema_ver schema,
                       size_t *len)
{
	const int fl = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
	json_object *o = json_object_new_object();
	char *s;

	json_object_object_add(o, "time", json_object_new_string(time));
	json_object_object_add(o, "type", json_object_new_string(type));
	if (schema == SCHEMA_20220701 && type_mask(type) != TYPE_PLATFORM &&
	    !json_object_is_type(record, json_type_string))
		json_object_object_add(o, "record",
		                       json_object_new_string(json_object_to_json_string_ext(record, fl)));
	else
		json_object_object_add(o, "record", json_object_get(record));
	s = strdup(json_object_to_json_string_ext(o, fl));
	json_object_put(o);
	if (s)
		*len = strlen(s);
	return s;
}

static void enqueue(struct sim_sub *s, const char *data, size_t len, int droppable)
{
	struct tl_item *it;

	if (droppable && s->bytes + len > (size_t)g.o.buffer_bytes) {
		const char *id = g.dropped_ids ? strstr(data, "kte-id=") : NULL;
		if (id) {
			id += 7;
			fprintf(g.dropped_ids, "%s %.*s\n", s->ext->name, (int)strcspn(id, " \"\\"), id);
			fflush(g.dropped_ids);  /* a test may wait for the first drop */
		}
		s->drop_records++;
		s->drop_bytes += len;
		s->dropped_records++;
		s->dropped_bytes += len;
		return;
	}
	it = malloc(sizeof(*it) + len + 1);
	if (!it)
		return;
	it->next = NULL;
	it->len = len;
	it->t = now_ms();
	it->droppable = droppable;
	memcpy(it->data, data, len + 1);
	if (s->tail)
		s->tail->next = it;
	else {
		s->head = it;
		s->oldest_ms = it->t;
	}
	s->tail = it;
	s->count++;
	s->bytes += len;
	pthread_cond_signal(&s->cv);
}

static void sub_push(struct sim_sub *s, const char *time, const char *type, json_object *record)
{
	size_t len = 0;
	char *d;

	if (!(s->types & type_mask(type)))
		return;
	d = serialise(time, type, record, s->schema, &len);
	if (!d)
		return;
	enqueue(s, d, len, type_mask(type) != TYPE_PLATFORM);
	free(d);
}

void tel_emit(const char *type, json_object *record)
{
	char tm[40];
	int i;

	iso_time(tm, sizeof(tm), epoch_ms());
	tel_count(type);
	if (g.phase == PH_INIT && g.ninitlog < (int)(sizeof(g.initlog) / sizeof(g.initlog[0]))) {
		g.initlog[g.ninitlog].type = strdup(type);
		g.initlog[g.ninitlog].time = strdup(tm);
		g.initlog[g.ninitlog].record = json_object_get(record);
		g.ninitlog++;
	}
	for (i = 0; i < g.next_ext; i++)
		if (g.ext[i].sub)
			sub_push(g.ext[i].sub, tm, type, record);
	json_object_put(record);
}

void tel_kick(void)
{
	int i;

	for (i = 0; i < g.next_ext; i++)
		if (g.ext[i].sub)
			pthread_cond_signal(&g.ext[i].sub->cv);
}

/* ---- delivery ---- */

static size_t discard(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

static int post_http(struct sim_sub *s, CURL **hp, const char *body, size_t len, long *status)
{
	char url[600], resolve[300];
	struct curl_slist *hdr = NULL, *res = NULL;
	CURLcode rc;
	CURL *h = *hp;

	if (!h) {
		h = curl_easy_init();
		if (!h)
			return -ENOMEM;
		*hp = h;
	}
	snprintf(url, sizeof(url), "http://%s:%d%s", s->host, s->port, s->path);
	/* sandbox.localdomain is the sandbox's own address: map it to 127.0.0.1 */
	snprintf(resolve, sizeof(resolve), "sandbox.localdomain:%d:127.0.0.1", s->port);
	res = curl_slist_append(res, resolve);
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	hdr = curl_slist_append(hdr, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_RESOLVE, res);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	rc = curl_easy_perform(h);
	*status = 0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_easy_setopt(h, CURLOPT_RESOLVE, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(res);
	curl_slist_free_all(hdr);
	if (rc != CURLE_OK) {
		if (!g.o.quiet)
			sim_logf("telemetry POST to %s: %s", url, curl_easy_strerror(rc));
		/* a reused connection to a listener that restarted: start afresh next time */
		curl_easy_cleanup(h);
		*hp = NULL;
		return -ECONNREFUSED;
	}
	return (*status >= 200 && *status <= 299) ? 0 : -EPROTO;
}

static int send_tcp(struct sim_sub *s, const char *body, size_t len)
{
	size_t off = 0;

	if (s->tcp_fd < 0) {
		struct sockaddr_in a;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
		if (fd < 0)
			return -errno;
		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)s->port);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s->tcp_fd = fd;
	}
	while (off < len) {
		ssize_t w = send(s->tcp_fd, body + off, len - off, MSG_NOSIGNAL);
		if (w < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			close(s->tcp_fd);
			s->tcp_fd = -1;
			return -e;
		}
		off += (size_t)w;
	}
	return 0;
}

static void timed_wait(pthread_cond_t *cv, double until_mono)
{
	cond_wait_until(cv, &g.mu, until_mono);
}

static void *deliver_main(void *arg)
{
	struct sim_sub *s = arg;
	CURL *h = NULL;
	int failed_before = 0;

	pthread_mutex_lock(&g.mu);
	for (;;) {
		struct tl_item *it;
		size_t k = 0, total = 2, off;
		double now;
		char *buf;
		uint64_t gen;
		long status = 0;
		int rc;

		if (g.stopping)
			break;
		if (g.frozen || g.telemetry_hold || !s->head) {
			pthread_cond_wait(&s->cv, &g.mu);
			continue;
		}
		now = now_ms();
		if (s->count < (size_t)s->max_items && s->bytes < (size_t)s->max_bytes &&
		    now < s->oldest_ms + (double)s->timeout_ms) {
			timed_wait(&s->cv, s->oldest_ms + (double)s->timeout_ms);
			continue;
		}
		if (now < s->retry_at_ms) {
			timed_wait(&s->cv, s->retry_at_ms);
			continue;
		}
		if (s->drop_records && (s->types & TYPE_PLATFORM)) {
			json_object *r = json_object_new_object();
			char tm[40];
			size_t len = 0;
			char *d;
			json_object_object_add(r, "droppedBytes", json_object_new_int64((int64_t)s->drop_bytes));
			json_object_object_add(r, "droppedRecords", json_object_new_int64((int64_t)s->drop_records));
			json_object_object_add(r, "reason", json_object_new_string(
				"Consumer seems to have fallen behind as it has not acknowledged receipt of logs."));
			iso_time(tm, sizeof(tm), epoch_ms());
			d = serialise(tm, "platform.logsDropped", r, s->schema, &len);
			json_object_put(r);
			if (d) {
				enqueue(s, d, len, 0);
				free(d);
			}
			s->drop_records = s->drop_bytes = 0;
			s->logs_dropped_events++;
			tel_count("platform.logsDropped");
		}
		/* batch: up to maxItems; events are added while the batch is below maxBytes, so the event that
		 * crosses it is included and a POST body can reach maxBytes + one record (up to 256 KiB): the
		 * "2 * maxBytes" that AWS tells listeners to expect */
		for (it = s->head; it && k < (size_t)s->max_items; it = it->next) {
			if (total >= (size_t)s->max_bytes)
				break;
			total += it->len + 1;
			k++;
		}
		buf = malloc(total + 1);
		if (!buf) {
			timed_wait(&s->cv, now + 10);
			continue;
		}
		off = 0;
		if (!s->tcp)
			buf[off++] = '[';
		for (it = s->head, total = 0; total < k; it = it->next, total++) {
			if (total && !s->tcp)
				buf[off++] = ',';
			memcpy(buf + off, it->data, it->len);
			off += it->len;
			if (s->tcp)
				buf[off++] = '\n';
		}
		if (!s->tcp)
			buf[off++] = ']';
		buf[off] = '\0';
		gen = g.freeze_gen;
		if (failed_before)
			s->retries++;
		pthread_mutex_unlock(&g.mu);

		now = now_ms();
		rc = s->tcp ? send_tcp(s, buf, off) : post_http(s, &h, buf, off, &status);
		now = now_ms() - now;
		free(buf);

		pthread_mutex_lock(&g.mu);
		if (rc == 0) {
			size_t i;
			for (i = 0; i < k; i++) {
				it = s->head;
				s->head = it->next;
				s->bytes -= it->len;
				s->count--;
				free(it);
			}
			if (!s->head)
				s->tail = NULL;
			else
				s->oldest_ms = s->head->t;
			s->batches++;
			s->events += k;
			s->sent_bytes += off;
			if (k > s->max_batch_items)
				s->max_batch_items = k;
			if (off > s->max_batch_bytes)
				s->max_batch_bytes = off;
			/* a reply delayed by a freeze says nothing about the listener */
			if (gen == g.freeze_gen && !g.frozen)
				dlist_add(&s->latency, now);
			s->backoff_ms = 0;
			s->retry_at_ms = 0;
			failed_before = 0;
		} else {
			s->failures++;
			failed_before = 1;
			s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
			if (s->backoff_ms > BACKOFF_MAX_MS)
				s->backoff_ms = BACKOFF_MAX_MS;
			s->retry_at_ms = now_ms() + s->backoff_ms;
			if (!g.o.quiet && (s->failures <= 3 || s->failures % 100 == 0))
				sim_logf("telemetry delivery to %s failed (%s, status %ld), retry in %.0f ms",
				         s->ext->name, rc == -EPROTO ? "HTTP error" : "connection", status,
				         s->backoff_ms);
		}
	}
	pthread_mutex_unlock(&g.mu);
	if (h)
		curl_easy_cleanup(h);
	if (s->tcp_fd >= 0)
		close(s->tcp_fd);
	return NULL;
}

/* ---- subscribe ---- */

static int get_int(json_object *o, const char *k, long lo, long hi, long *out, char *err, size_t errlen)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_int)) {
		snprintf(err, errlen, "buffering.%s must be an integer", k);
		return -EINVAL;
	}
	*out = (long)json_object_get_int64(v);
	if (*out < lo || *out > hi) {
		snprintf(err, errlen, "buffering.%s must be between %ld and %ld", k, lo, hi);
		return -EINVAL;
	}
	return 0;
}

static int parse_uri(const char *uri, int tcp, char *host, size_t hlen, int *port, char *path, size_t plen,
                     char *err, size_t errlen)
{
	const char *p, *colon, *slash;
	char *end;
	long n;

	if (!strncasecmp(uri, "http://", 7))
		p = uri + 7;
	else if (tcp && !strncasecmp(uri, "tcp://", 6))
		p = uri + 6;
	else {
		snprintf(err, errlen, "destination.URI must be %s://sandbox.localdomain:PORT%s", tcp ? "tcp" : "http",
		         strncasecmp(uri, "https://", 8) ? "" : " (HTTPS is not supported)");
		return -EINVAL;
	}
	slash = strchr(p, '/');
	colon = memchr(p, ':', slash ? (size_t)(slash - p) : strlen(p));
	if (!colon || (size_t)(colon - p) >= hlen) {
		snprintf(err, errlen, "destination.URI must name a port");
		return -EINVAL;
	}
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	if (strcasecmp(host, "sandbox.localdomain") && strcmp(host, "127.0.0.1")) {
		snprintf(err, errlen, "destination.URI host must be sandbox.localdomain");
		return -EINVAL;
	}
	errno = 0;
	n = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || (*end && *end != '/') || n < 1 || n > 65535) {
		snprintf(err, errlen, "destination.URI has an invalid port");
		return -EINVAL;
	}
	if (n == 9001 || n == g.port) {
		snprintf(err, errlen, "destination.URI port %ld is reserved", n);
		return -EINVAL;
	}
	*port = (int)n;
	snprintf(path, plen, "%s", *end == '/' ? end : "/");
	return 0;
}

int tel_subscribe(struct sim_ext *e, json_object *req, char *err, size_t errlen)
{
	json_object *v, *types, *buf, *dest;
	enum schema_ver schema;
	unsigned mask = 0;
	long max_items = 10000, max_bytes = 262144, timeout_ms = 1000;
	char host[256], path[256];
	const char *uri, *proto;
	int port = 0, tcp, i, n;
	struct sim_sub *s;

	if (!json_object_object_get_ex(req, "schemaVersion", &v) || !json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "schemaVersion is required");
		return -EINVAL;
	}
	if (!strcmp(json_object_get_string(v), "2022-07-01"))
		schema = SCHEMA_20220701;
	else if (!strcmp(json_object_get_string(v), "2022-12-13"))
		schema = SCHEMA_20221213;
	else if (!strcmp(json_object_get_string(v), "2025-01-29"))
		schema = SCHEMA_20250129;
	else {
		snprintf(err, errlen, "schemaVersion must be one of 2022-07-01, 2022-12-13, 2025-01-29");
		return -EINVAL;
	}
	if (g.o.managed && schema != SCHEMA_20250129) {
		snprintf(err, errlen, "Lambda Managed Instances require schemaVersion 2025-01-29");
		return -EINVAL;
	}
	if (!json_object_object_get_ex(req, "types", &types) || !json_object_is_type(types, json_type_array) ||
	    json_object_array_length(types) == 0) {
		snprintf(err, errlen, "types must be a non-empty array");
		return -EINVAL;
	}
	n = (int)json_object_array_length(types);
	for (i = 0; i < n; i++) {
		json_object *t = json_object_array_get_idx(types, (size_t)i);
		const char *ts = json_object_get_string(t);
		if (!json_object_is_type(t, json_type_string))
			ts = "";
		if (!strcmp(ts, "platform"))
			mask |= TYPE_PLATFORM;
		else if (!strcmp(ts, "function"))
			mask |= TYPE_FUNCTION;
		else if (!strcmp(ts, "extension"))
			mask |= TYPE_EXTENSION;
		else {
			snprintf(err, errlen, "types: invalid value %.40s (platform, function, extension)", ts);
			return -EINVAL;
		}
	}
	if (json_object_object_get_ex(req, "buffering", &buf) && !json_object_is_type(buf, json_type_null)) {
		if (!json_object_is_type(buf, json_type_object)) {
			snprintf(err, errlen, "buffering must be an object");
			return -EINVAL;
		}
		if (get_int(buf, "maxItems", 1000, 10000, &max_items, err, errlen) ||
		    get_int(buf, "maxBytes", 262144, 1048576, &max_bytes, err, errlen) ||
		    get_int(buf, "timeoutMs", 25, 30000, &timeout_ms, err, errlen))
			return -EINVAL;
	}
	if (!json_object_object_get_ex(req, "destination", &dest) || !json_object_is_type(dest, json_type_object)) {
		snprintf(err, errlen, "destination is required");
		return -EINVAL;
	}
	if (!json_object_object_get_ex(dest, "protocol", &v) || !json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "destination.protocol is required");
		return -EINVAL;
	}
	proto = json_object_get_string(v);
	if (strcmp(proto, "HTTP") && strcmp(proto, "TCP")) {
		snprintf(err, errlen, "destination.protocol must be HTTP or TCP");
		return -EINVAL;
	}
	tcp = !strcmp(proto, "TCP");
	if (!json_object_object_get_ex(dest, "URI", &v) || !json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "destination.URI is required");
		return -EINVAL;
	}
	uri = json_object_get_string(v);
	if (parse_uri(uri, tcp, host, sizeof(host), &port, path, sizeof(path), err, errlen))
		return -EINVAL;

	s = e->sub;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		cond_init_mono(&s->cv);
		s->tcp_fd = -1;
		s->ext = e;
	}
	s->types = mask;
	s->schema = schema;
	s->max_items = (int)max_items;
	s->max_bytes = max_bytes;
	s->timeout_ms = timeout_ms;
	s->tcp = tcp;
	snprintf(s->uri, sizeof(s->uri), "%s", uri);
	snprintf(s->host, sizeof(s->host), "%s", host);
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->port = port;
	if (!e->sub) {
		e->sub = s;
		/* events of the init phase so far reach every subscriber, as in Lambda */
		for (i = 0; i < g.ninitlog; i++)
			sub_push(s, g.initlog[i].time, g.initlog[i].type, g.initlog[i].record);
		if (pthread_create(&s->thread, NULL, deliver_main, s) == 0)
			s->thread_started = 1;
	}
	{
		json_object *r = json_object_new_object(), *ta = json_object_new_array();
		if (mask & TYPE_PLATFORM)
			json_object_array_add(ta, json_object_new_string("platform"));
		if (mask & TYPE_FUNCTION)
			json_object_array_add(ta, json_object_new_string("function"));
		if (mask & TYPE_EXTENSION)
			json_object_array_add(ta, json_object_new_string("extension"));
		json_object_object_add(r, "name", json_object_new_string(e->name));
		json_object_object_add(r, "state", json_object_new_string("Subscribed"));
		json_object_object_add(r, "types", ta);
		tel_emit("platform.telemetrySubscription", r);
	}
	return 0;
}

void tel_stop_all(void)
{
	int i;

	pthread_mutex_lock(&g.mu);
	g.stopping = 1;
	pthread_cond_broadcast(&g.cv);
	tel_kick();
	pthread_mutex_unlock(&g.mu);
	for (i = 0; i < g.next_ext; i++)
		if (g.ext[i].sub && g.ext[i].sub->thread_started) {
			pthread_join(g.ext[i].sub->thread, NULL);
			g.ext[i].sub->thread_started = 0;
		}
}
