/*
 * error.c -- image__err_t: the exc_type and message a failed task reports,
 * and the libvips error buffer turned into one line.
 */
#include "image.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
image__fail(image__err_t *e, const char *type, const char *fmt, ...)
{
    va_list ap;

    e->type = type;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

/* "what: <libvips's first error>", then the buffer cleared (it is per
 * process, and a child runs many tasks).  The first line is the cause; the
 * lines after it are the operations that failed because of it. */
int
image__fail_vips(image__err_t *e, const char *type, const char *what)
{
    const char *buf = VIPS(vips_error_buffer)();
    int n = (int)strcspn(buf, "\n");

    if (n == 0) {
        buf = "libvips gave no reason";
        n = (int)strlen(buf);
    }
    image__fail(e, type, "%s: %.*s", what, n > 600 ? 600 : n, buf);
    VIPS(vips_error_clear)();
    return -1;
}
