/*
 * cli_common.c -- what every subcommand prints the same way.
 */
#include "cli.h"
#include "log.h"
#include "pool.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
kiln__cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("kiln: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void
kiln__cli_report_sandbox(const kiln__super_t *s, int verbose)
{
    char report[8192], *line, *save = NULL;

    kiln__caps_report(&s->caps, report, sizeof(report));
    for (line = strtok_r(report, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strstr(line, "unavailable"))
            kiln__log_warnx("sandbox: %s", line);
        else if (verbose)
            kiln__log_info("sandbox: %s", line);
    }
    if (!s->zygote.pidns)
        kiln__log_warnx("sandbox: pid namespace unavailable: %s", s->zygote.pidns_why);
    else if (verbose)
        kiln__log_info("sandbox: pid namespace: applied (the zygote is its init)");
}
