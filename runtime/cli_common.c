/*
 * cli_common.c -- what every subcommand prints the same way.
 */
#include "cli.h"
#include "log.h"
#include "pool.h"

#define MAX_ARGS_BYTES (64u << 20) /* --args/--kwargs text, before it is parsed */

#include <jansson.h>
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

/* Parse a --args (array) or --kwargs (object) value; a message names the
 * option and the cause.  0, or -1 after printing the error. */
int
kiln__cli_json_arg(const char *opt, const char *text, int want_array, json_t **out)
{
    json_error_t jerr;
    json_t *v;

    if (strlen(text) > MAX_ARGS_BYTES) {
        kiln__cli_error("%s: larger than %u MB", opt, MAX_ARGS_BYTES >> 20);
        return -1;
    }
    v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v) {
        kiln__cli_error("%s: invalid JSON at line %d column %d: %s", opt, jerr.line, jerr.column,
                        jerr.text);
        return -1;
    }
    if (want_array ? !json_is_array(v) : !json_is_object(v)) {
        kiln__cli_error("%s must be a JSON %s, got %s", opt, want_array ? "array" : "object", text);
        json_decref(v);
        return -1;
    }
    json_decref(*out);
    *out = v;
    return 0;
}
