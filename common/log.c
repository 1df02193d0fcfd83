#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *log_procname = "kte";
static enum log_level log_threshold = LOG_LEVEL_INFO;

void
log_init(const char *procname, enum log_level level)
{
	log_procname = procname;
	log_threshold = level;
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

static void
log_vwrite(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	static const char *tags[] = { "ERROR", "WARN", "INFO", "DEBUG" };
	char line[2048];
	int n, m;

	if (level > log_threshold)
		return;
	n = snprintf(line, sizeof(line), "[%s] %s ", log_procname, tags[level]);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	n = m < 0 ? n : (n + m >= (int)sizeof(line) - 1 ? (int)sizeof(line) - 2 : n + m);
	if (errnum != 0)
		n += snprintf(line + n, sizeof(line) - (size_t)n - 1, ": %s", strerror(errnum));
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line, so lines of different threads and processes never interleave. */
	while (write(STDERR_FILENO, line, (size_t)n) < 0 && errno == EINTR)
		;
}

#define LOG_FN(name, level, with_errno)                       \
	void name(const char *fmt, ...)                        \
	{                                                      \
		int saved = errno;                             \
		va_list ap;                                    \
		va_start(ap, fmt);                             \
		log_vwrite(level, with_errno ? saved : 0, fmt, ap); \
		va_end(ap);                                    \
		errno = saved;                                 \
	}

LOG_FN(log_error, LOG_LEVEL_ERROR, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
