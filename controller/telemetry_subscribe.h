/*
 * Subscribing to the Lambda Telemetry API (PUT /2022-07-01/telemetry) with the
 * schema, types and all three buffering values from the configuration, delivering
 * to the listener at http://<KTE_LISTENER_HOST>:<KTE_LISTENER_PORT>.
 */
#ifndef KTE_CONTROLLER_TELEMETRY_SUBSCRIBE_H
#define KTE_CONTROLLER_TELEMETRY_SUBSCRIBE_H

#include <stddef.h>

#include "config.h"
#include "controller/extensions_api.h"

enum subscribe_result {
	SUBSCRIBE_OK = 0,       /* 200: telemetry will be delivered */
	SUBSCRIBE_LOCAL,        /* 202: a local emulator without telemetry; carry on */
	SUBSCRIBE_FAILED,       /* anything else: nothing will be delivered */
};

/*
 * Writes the subscription request body for cfg into out. Returns its length, or
 * -ENOSPC / -EINVAL (a host that cannot appear in a URL).
 */
int telemetry_subscribe_body(const struct kte_config *cfg, char *out, size_t outlen)
    __attribute__((warn_unused_result));

/*
 * Subscribes and logs the outcome (one line). Returns the result; *detail gets
 * "<status> <errorType>" for failures (for init/error), may be NULL.
 */
enum subscribe_result telemetry_subscribe(struct ext_api *api, const struct kte_config *cfg,
    char *detail, size_t detaillen);

#endif
