#include "controller/telemetry_subscribe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "notify.h"

int
telemetry_subscribe_body(const struct kte_config *cfg, char *out, size_t outlen)
{
	char types[64] = "";
	int n;

	/* The host goes into a URL inside JSON: letters, digits, '.', '-' and ':' ([IPv6]) only. */
	if (cfg->listener_host[0] == '\0' ||
	    strspn(cfg->listener_host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
	    != strlen(cfg->listener_host))
		return -EINVAL;
	if (cfg->telemetry_types & TELEMETRY_PLATFORM)
		strcat(types, "\"platform\",");
	if (cfg->telemetry_types & TELEMETRY_FUNCTION)
		strcat(types, "\"function\",");
	if (cfg->telemetry_types & TELEMETRY_EXTENSION)
		strcat(types, "\"extension\",");
	if (types[0] == '\0')
		return -EINVAL;
	types[strlen(types) - 1] = '\0';
	n = snprintf(out, outlen, "{\"schemaVersion\":\"%s\",\"types\":[%s],"
	    "\"buffering\":{\"maxItems\":%u,\"maxBytes\":%u,\"timeoutMs\":%u},"
	    "\"destination\":{\"protocol\":\"HTTP\",\"URI\":\"http://%s:%u\"}}",
	    cfg->schema_version, types, cfg->buffer_max_items, cfg->buffer_max_bytes,
	    cfg->buffer_timeout_ms, cfg->listener_host, cfg->listener_port);
	if (n < 0 || (size_t)n >= outlen)
		return -ENOSPC;
	return n;
}

enum subscribe_result
telemetry_subscribe(struct ext_api *api, const struct kte_config *cfg, char *detail, size_t detaillen)
{
	char body[1024];
	struct ext_reply reply;
	uint64_t t0 = now_mono_us();
	int n, rc;

	if (detail != NULL && detaillen > 0)
		detail[0] = '\0';
	if ((n = telemetry_subscribe_body(cfg, body, sizeof(body))) < 0) {
		log_error("telemetry subscription not sent: KTE_LISTENER_HOST=\"%s\" cannot form a URL",
		    cfg->listener_host);
		if (detail != NULL)
			snprintf(detail, detaillen, "invalid listener host");
		return SUBSCRIBE_FAILED;
	}
	if ((rc = ext_api_subscribe(api, body, (size_t)n, &reply)) != 0) {
		log_error("telemetry subscription failed: %s", strerror(-rc));
		if (detail != NULL)
			snprintf(detail, detaillen, "%s", strerror(-rc));
		return SUBSCRIBE_FAILED;
	}
	switch (reply.status) {
	case 200:
		log_info("subscribed to telemetry (schema %s, %s%s%s, buffering %u items/%u bytes/%u ms) "
		    "-> http://%s:%u in %llu us", cfg->schema_version,
		    (cfg->telemetry_types & TELEMETRY_PLATFORM) ? "platform " : "",
		    (cfg->telemetry_types & TELEMETRY_FUNCTION) ? "function " : "",
		    (cfg->telemetry_types & TELEMETRY_EXTENSION) ? "extension " : "",
		    cfg->buffer_max_items, cfg->buffer_max_bytes, cfg->buffer_timeout_ms,
		    cfg->listener_host, cfg->listener_port, (unsigned long long)(now_mono_us() - t0));
		return SUBSCRIBE_OK;
	case 202:
		log_info("telemetry API not supported here (202 %s): running locally, no telemetry will "
		    "arrive", reply.error_type[0] ? reply.error_type : "");
		return SUBSCRIBE_LOCAL;
	default:
		log_error("telemetry subscription refused: %d %s %.200s", reply.status, reply.error_type,
		    reply.body);
		if (detail != NULL)
			snprintf(detail, detaillen, "%d %s", reply.status, reply.error_type);
		return SUBSCRIBE_FAILED;
	}
}
