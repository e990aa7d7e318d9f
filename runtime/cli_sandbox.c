/*
 * cli_sandbox.c -- `kiln sandbox-check`: what protections children get here.
 */
#include "cli.h"
#include "log.h"
#include "pool.h"

#include <stdio.h>
#include <string.h>

static const char check_usage[] =
    "usage: kiln sandbox-check\n"
    "\n"
    "Probe this machine and print, one line each, which protections kiln's\n"
    "children get (applied) and which are unavailable, with the reason.  The\n"
    "seccomp filters of every profile are compiled to prove the policy is valid.\n"
    "Exit status 0 when every protection is available, 1 when some are not.\n";

int
kiln__cmd_sandbox_check(int argc, char **argv)
{
    kiln__caps_t caps;
    kiln__filters_t filters;
    char report[8192], err[512];
    int rc, p;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(check_usage, stdout);
        return KILN__EXIT_OK;
    }
    if (argc > 1) {
        kiln__cli_error("sandbox-check: unexpected argument \"%s\"", argv[1]);
        return KILN__EXIT_USAGE;
    }
    rc = kiln__caps_probe(&caps);
    if (rc < 0) {
        kiln__cli_error("sandbox-check: probing failed: %s", strerror(-rc));
        return KILN__EXIT_SYSTEM;
    }
    kiln__caps_report(&caps, report, sizeof(report));
    fputs(report, stdout);
    if (kiln__seccomp_compile(&filters, err, sizeof(err)) < 0) {
        printf("seccomp filters: FAILED to compile: %s\n", err);
        return KILN__EXIT_SYSTEM;
    }
    for (p = 0; p < KILN__PROFILE_COUNT; p++)
        printf("profile %s: loader filter %u instructions, final filter %u instructions\n",
               kiln__profile_name(p), filters.loader[p].len, filters.final[p].len);
    kiln__seccomp_free(&filters);
    return strstr(report, "unavailable") ? KILN__EXIT_FAILED : KILN__EXIT_OK;
}
