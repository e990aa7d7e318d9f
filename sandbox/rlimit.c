/*
 * rlimit.c -- resource limits of a child.
 *
 * Soft and hard limits are set equal, so the child cannot raise them back;
 * a limit already tighter than asked stays as it is.  A zero field in the jail leaves that limit as
 * inherited.  The memory cap is RLIMIT_AS and RLIMIT_DATA only where the
 * child joins no memory cgroup (the fallback), and never in sanitizer
 * builds: ASan reserves terabytes of address space at start-up, so there the
 * cgroup alone holds the cap.
 */
#include "sandbox.h"
#include "steps.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static int
set_limit(int resource, const char *name, uint64_t value, char *err, size_t errlen)
{
    struct rlimit rl;

    /* Only tighten: a limit already below the wish stays. */
    if (getrlimit(resource, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && rl.rlim_max < value)
        value = rl.rlim_max;
    rl.rlim_cur = (rlim_t)value;
    rl.rlim_max = (rlim_t)value;
    if (setrlimit(resource, &rl) < 0) {
        int e = errno;
        snprintf(err, errlen, "rlimit: %s %llu: %s", name, (unsigned long long)value, strerror(e));
        return -e;
    }
    return 0;
}

int
kiln__rlimit_apply(const kiln__jail_t *jail, char *err, size_t errlen)
{
    int rc = 0;

#ifndef KILN_SANITIZED
    /* With a memory cgroup the cgroup holds the cap (and its OOM kill names
     * the cause); an address-space limit would fail allocations first. */
    if (rc == 0 && jail->memory_bytes != 0 && !jail->cgroup_memory_procs[0])
        rc = set_limit(RLIMIT_AS, "RLIMIT_AS", jail->memory_bytes, err, errlen);
    if (rc == 0 && jail->memory_bytes != 0 && !jail->cgroup_memory_procs[0])
        rc = set_limit(RLIMIT_DATA, "RLIMIT_DATA", jail->memory_bytes, err, errlen);
#endif
    if (rc == 0 && jail->cpu_seconds != 0)
        rc = set_limit(RLIMIT_CPU, "RLIMIT_CPU", jail->cpu_seconds, err, errlen);
    if (rc == 0 && jail->fsize_bytes != 0)
        rc = set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", jail->fsize_bytes, err, errlen);
    if (rc == 0 && jail->nofile != 0)
        rc = set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", jail->nofile, err, errlen);
    if (rc == 0)
        rc = set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, err, errlen);
    return rc;
}

int
kiln__rlimit_nproc(const kiln__jail_t *jail, char *err, size_t errlen)
{
    if (jail->nproc == 0)
        return 0;
    return set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", jail->nproc, err, errlen);
}
