/*
 * log.c -- role- and pid-tagged log lines on stderr.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *log_role = "supervisor";
static int log_min = KILN__LOG_WARN;

void
kiln__log_init(const char *role, int level)
{
    log_role = role;
    log_min = level;
}

int
kiln__log_level(void)
{
    return log_min;
}

static void vlog(int level, const char *suffix, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
vlog(int level, const char *suffix, const char *fmt, va_list ap)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    char line[2048];
    int n;

    if (level < log_min)
        return;
    n = snprintf(line, sizeof(line), "kiln %s[%d]: %s: ", log_role, (int)getpid(),
                 names[level < 0 || level > 3 ? 3 : level]);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    if (suffix)
        fprintf(stderr, "%s: %s\n", line, suffix);
    else
        fprintf(stderr, "%s\n", line);
}

void
kiln__log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void
kiln__log_warn(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vlog(KILN__LOG_WARN, strerror(saved), fmt, ap);
    va_end(ap);
}

void
kiln__log_warnx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(KILN__LOG_WARN, NULL, fmt, ap);
    va_end(ap);
}

void
kiln__log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(KILN__LOG_INFO, NULL, fmt, ap);
    va_end(ap);
}

void
kiln__log_debug(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(KILN__LOG_DEBUG, NULL, fmt, ap);
    va_end(ap);
}

void
kiln__fatalx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(KILN__LOG_ERROR, NULL, fmt, ap);
    va_end(ap);
    abort();
}
