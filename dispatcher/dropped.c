#include "dropped.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

static const char *const names[DROP_KINDS] = {
	"eventsTooLarge", "eventsRejected", "ringRejected", "ringAbandoned", "ringCorrupt",
	"listenerTooLarge", "listenerOversized", "listenerRingFull", "listenerBadRequest",
	"lambdaLogsDropped",
};

const char *
dropped_name(enum drop_kind k)
{
	return (unsigned)k < DROP_KINDS ? names[k] : "?";
}

void
dropped_collect(struct drop_counts *out, const struct drop_counts *local, const struct ring *r,
    const struct control *ctl)
{
	struct ring_stats st = { 0 };

	*out = *local;
	if (r != NULL) {
		ring_stats(r, &st);
		out->v[DROP_RING_REJECTED] = st.rejected_records;
		out->v[DROP_RING_ABANDONED] = st.abandoned_records;
		out->v[DROP_RING_CORRUPT] = st.corrupt_records;
	}
	if (ctl != NULL) {
		out->v[DROP_LISTENER_TOO_LARGE] = atomic_load(&ctl->listener.too_large);
		out->v[DROP_LISTENER_OVERSIZED] = atomic_load(&ctl->listener.oversized_dropped);
		out->v[DROP_LISTENER_RING_FULL] = atomic_load(&ctl->listener.ring_full);
		out->v[DROP_LISTENER_BAD_REQUEST] = atomic_load(&ctl->listener.bad_request);
		out->v[DROP_LAMBDA_LOGS_DROPPED] = atomic_load(&ctl->listener.logs_dropped_records);
	}
}

bool
dropped_any(const struct drop_counts *cur, const struct drop_counts *base)
{
	for (int i = 0; i < DROP_KINDS; i++)
		if (cur->v[i] > base->v[i])
			return true;
	return false;
}

static void
iso_time(char *buf, size_t len, uint64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int
dropped_format(char *buf, size_t len, const struct drop_counts *cur, const struct drop_counts *base,
    uint64_t now_ms, uint64_t since_ms)
{
	char now_s[64], since_s[64];
	size_t off;
	int n;

	iso_time(now_s, sizeof(now_s), now_ms);
	iso_time(since_s, sizeof(since_s), since_ms);
	n = snprintf(buf, len, "{\"time\":\"%s\",\"type\":\"extension.kte.dropped\",\"record\":"
	    "{\"sinceTime\":\"%s\"", now_s, since_s);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	off = (size_t)n;
	for (int i = 0; i < DROP_KINDS; i++) {
		uint64_t d = cur->v[i] > base->v[i] ? cur->v[i] - base->v[i] : 0;

		n = snprintf(buf + off, len - off, ",\"%s\":%" PRIu64, names[i], d);
		if (n < 0 || (size_t)n >= len - off)
			return -ENOSPC;
		off += (size_t)n;
	}
	n = snprintf(buf + off, len - off, "}}");
	if (n < 0 || (size_t)n >= len - off)
		return -ENOSPC;
	return (int)(off + (size_t)n);
}
