/*
 * Logging in the style of OpenBSD's log.h: one line per event on stderr, tagged
 * with the process role ("[listener]"), filtered by KTE_LOG_LEVEL.
 * Never pass secrets (keys, tokens, signatures) to these functions.
 * Thread-safe: each line is formatted into a local buffer and written with one write(2).
 */
#ifndef KTE_LOG_H
#define KTE_LOG_H

#include <stdarg.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Sets the tag printed on every line and the threshold. Call once per process (again after fork). */
void log_init(const char *procname, enum log_level level);
void log_set_level(enum log_level level);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));   /* appends strerror(errno) */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
