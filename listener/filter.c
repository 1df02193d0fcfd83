#include "filter.h"

#include <errno.h>
#include <string.h>

int
filter_init(struct listener_filter *f, const struct kte_config *cfg)
{
	const char *p = cfg->drop_types;
	int rc = 0;

	memset(f, 0, sizeof(*f));
	f->min_level = cfg->min_log_level;
	while (*p != '\0') {
		const char *start, *stop;
		size_t len;

		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p != '\0' && *p != ',')
			p++;
		stop = p;
		while (stop > start && stop[-1] == ' ')
			stop--;
		len = (size_t)(stop - start);
		if (len >= BATCH_TYPE_MAX || f->ntypes == FILTER_MAX_TYPES) {
			rc = -EINVAL;
			continue;
		}
		memcpy(f->types[f->ntypes].name, start, len);
		if (len > 0 && start[len - 1] == '*') {
			f->types[f->ntypes].prefix = true;
			len--;
		}
		f->types[f->ntypes].name[len] = '\0';
		f->types[f->ntypes].len = len;
		f->ntypes++;
	}
	return rc;
}

bool
filter_active(const struct listener_filter *f)
{
	return f->ntypes > 0 || f->min_level >= 0;
}

bool
filter_drop(const struct listener_filter *f, const struct batch_event *ev)
{
	if (f->min_level >= 0 && ev->kind == EVENT_FUNCTION && ev->level != RECORD_LEVEL_NONE &&
	    ev->level < f->min_level)
		return true;
	if (ev->type == NULL)
		return false;
	for (size_t i = 0; i < f->ntypes; i++) {
		size_t n = f->types[i].len;

		if (f->types[i].prefix ? ev->type_len >= n && memcmp(ev->type, f->types[i].name, n) == 0 :
		    ev->type_len == n && memcmp(ev->type, f->types[i].name, n) == 0)
			return true;
	}
	return false;
}
