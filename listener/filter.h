/*
 * Optional intake filters, applied to each event in the same pass as the split:
 * KTE_DROP_TYPES (a comma list of event types; an entry ending in '*' matches a
 * prefix, e.g. "platform.*") and KTE_MIN_FUNCTION_LOG_LEVEL (JSON function logs whose
 * record.level is below it). Both are off by default.
 */
#ifndef KTE_LISTENER_FILTER_H
#define KTE_LISTENER_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "batch_split.h"
#include "config.h"

#define FILTER_MAX_TYPES 32

struct listener_filter {
	size_t ntypes;
	struct {
		char name[BATCH_TYPE_MAX];
		size_t len;
		bool prefix;            /* entry ended in '*': match name as a prefix */
	} types[FILTER_MAX_TYPES];
	int min_level;              /* enum log_record_level; -1: keep every level */
};

/*
 * Fills f from cfg->drop_types and cfg->min_log_level. Returns 0, or -EINVAL (with
 * f still usable: the entries that parsed) when an entry is empty, too long or one
 * too many; the caller logs it. No allocation: nothing to clean up.
 */
int filter_init(struct listener_filter *f, const struct kte_config *cfg) __attribute__((warn_unused_result));

/* True when the filter is on at all (lets the caller skip filter_drop). */
bool filter_active(const struct listener_filter *f);

/* True when ev should be dropped. Read-only: safe from any number of threads. */
bool filter_drop(const struct listener_filter *f, const struct batch_event *ev);

#endif
