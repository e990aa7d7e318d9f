/*
 * log.h -- the supervisor's log.  Every line names the role and the pid
 * ("kiln supervisor[123]: ...").  Only the supervisor and the CLI print;
 * library code returns errors instead.
 */
#ifndef KILN_LOG_H
#define KILN_LOG_H

#include <stdarg.h>

enum { KILN__LOG_DEBUG = 0, KILN__LOG_INFO, KILN__LOG_WARN, KILN__LOG_ERROR, KILN__LOG_QUIET };

void kiln__log_init(const char *role, int level);
int kiln__log_level(void);
void kiln__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* warn: appends strerror(errno); warnx does not (OpenBSD log.h). */
void kiln__log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kiln__log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kiln__log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kiln__log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A broken invariant in kiln's own code: log and abort.  Never for bad input. */
void kiln__fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
