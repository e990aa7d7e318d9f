/*
 * jail.c -- the containment chain a child walks right after fork, each step
 * only tightening (nsjail's containProc):
 *
 *   descriptors -> parent-death signal -> cgroup slot -> rlimits ->
 *   namespaces + unprivileged uid -> RLIMIT_NPROC -> user namespace (root) ->
 *   no_new_privs -> landlock -> SIGSYS reporter -> loader filter
 *
 * A step that fails stops the chain with "<step>: <cause>" in err.  A
 * protection the supervisor's probe found unavailable is skipped here (the
 * supervisor reports it); one the probe found available is never skipped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kiln_config.h"
#include "sandbox.h"
#include "steps.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Close what /proc/self/fd lists above KILN__CHILD_FD.  Collect first,
 * then close: closing while reading would close the directory's own fd. */
static int
close_listed(void)
{
    for (;;) {
        int fds[256], n = 0, full = 0, i;
        struct dirent *de;
        DIR *d;

        d = opendir("/proc/self/fd");
        if (d == NULL)
            return -errno;
        while ((de = readdir(d)) != NULL) {
            int fd = atoi(de->d_name);
            if (fd <= KILN__CHILD_FD || fd == dirfd(d))
                continue;
            if (n == (int)(sizeof(fds) / sizeof(fds[0]))) {
                full = 1;
                break;
            }
            fds[n++] = fd;
        }
        closedir(d);
        for (i = 0; i < n; i++)
            close(fds[i]);
        if (!full)
            return 0;
    }
}

/* Close every descriptor above KILN__CHILD_FD. */
static int
close_above_channel(void)
{
    struct rlimit rl;
    long fd, max = 65536;

#ifdef HAVE_CLOSE_RANGE
    if (close_range(KILN__CHILD_FD + 1, ~0U, 0) == 0)
        return 0;
    if (errno != ENOSYS)
        return -errno;
#endif
    if (close_listed() == 0)
        return 0;
    /* Neither close_range() nor /proc: close by number. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        max = (long)rl.rlim_cur;
    for (fd = KILN__CHILD_FD + 1; fd < max; fd++)
        close((int)fd);
    return 0;
}

/* fd 0-2 -> /dev/null, keep_fd -> fd 3, everything else closed. */
static int
step_descriptors(int keep_fd, char *err, size_t errlen)
{
    int null, high_keep, high_null, i, rc;

    if (keep_fd < 0) {
        snprintf(err, errlen, "descriptors: no IPC channel (keep_fd %d)", keep_fd);
        return -EBADF;
    }
    null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) {
        rc = -errno;
        snprintf(err, errlen, "descriptors: open /dev/null: %s", strerror(-rc));
        return rc;
    }
    /* Move both above the range being rearranged so no dup2 clobbers them. */
    high_keep = fcntl(keep_fd, F_DUPFD_CLOEXEC, KILN__CHILD_FD + 1);
    high_null = fcntl(null, F_DUPFD_CLOEXEC, KILN__CHILD_FD + 1);
    if (high_keep < 0 || high_null < 0) {
        rc = -errno;
        snprintf(err, errlen, "descriptors: dup: %s", strerror(-rc));
        return rc;
    }
    for (i = 0; i < 3; i++) {
        if (dup2(high_null, i) < 0) {
            rc = -errno;
            snprintf(err, errlen, "descriptors: dup2 /dev/null to %d: %s", i, strerror(-rc));
            return rc;
        }
    }
    if (dup2(high_keep, KILN__CHILD_FD) < 0) {
        rc = -errno;
        snprintf(err, errlen, "descriptors: dup2 channel to %d: %s", KILN__CHILD_FD, strerror(-rc));
        return rc;
    }
    rc = close_above_channel();
    if (rc < 0) {
        snprintf(err, errlen, "descriptors: closing inherited descriptors: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

/* Die with the parent (the zygote); be the only member of a new session, so
 * kill(0, sig) reaches nobody else. */
static int
step_parent_death(char *err, size_t errlen)
{
    pid_t parent = getppid();
    int rc;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        rc = -errno;
        snprintf(err, errlen, "parent-death signal: %s", strerror(-rc));
        return rc;
    }
    if (getppid() != parent)
        _exit(1); /* the parent died before the signal was armed */
    if (setsid() < 0 && errno != EPERM) {
        rc = -errno;
        snprintf(err, errlen, "setsid: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

static int
join_cgroup(const char *procs, char *err, size_t errlen)
{
    ssize_t n;
    int fd, rc;

    if (procs[0] == '\0')
        return 0;
    fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cgroup: open %s: %s", procs, strerror(-rc));
        return rc;
    }
    n = write(fd, "0", 1);
    rc = n == 1 ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    if (rc < 0)
        snprintf(err, errlen, "cgroup: joining %s: %s", procs, strerror(-rc));
    return rc;
}

static int
step_no_new_privs(char *err, size_t errlen)
{
    int rc;

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        rc = -errno;
        snprintf(err, errlen, "no_new_privs: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

static int
step_loader_filter(const kiln__jail_t *jail, const kiln__filters_t *filters, char *err,
                   size_t errlen)
{
    const kiln__bpf_t *prog = &filters->loader[jail->profile];
    int rc;

    rc = kiln__seccomp_trap_install(KILN__CHILD_FD);
    if (rc < 0) {
        snprintf(err, errlen, "seccomp: SIGSYS handler: %s", strerror(-rc));
        return rc;
    }
    if (prog->insns == NULL) {
        snprintf(err, errlen, "seccomp: no loader filter compiled for profile %s",
                 kiln__profile_name(jail->profile));
        return -EINVAL;
    }
    rc = kiln__seccomp_apply(prog);
    if (rc < 0) {
        snprintf(err, errlen, "seccomp: loading the %s loader filter: %s",
                 kiln__profile_name(jail->profile), strerror(-rc));
        return rc;
    }
    return 0;
}

int
kiln__jail_enter(const kiln__jail_t *jail, const kiln__caps_t *caps, const kiln__filters_t *filters,
                 char *err, size_t errlen)
{
    int rc;

    if (jail->profile < 0 || jail->profile >= KILN__PROFILE_COUNT) {
        snprintf(err, errlen, "jail: unknown profile %d", (int)jail->profile);
        return -EINVAL;
    }
    rc = step_descriptors(jail->keep_fd, err, errlen);
    if (rc == 0)
        rc = step_parent_death(err, errlen);
    if (rc == 0)
        rc = join_cgroup(jail->cgroup_memory_procs, err, errlen);
    if (rc == 0)
        rc = join_cgroup(jail->cgroup_pids_procs, err, errlen);
    if (rc == 0)
        rc = kiln__rlimit_apply(jail, err, errlen);
    if (rc == 0)
        rc = kiln__ns_enter(jail, caps, err, errlen);
    if (rc == 0)
        rc = kiln__rlimit_nproc(jail, err, errlen);
    if (rc == 0)
        rc = kiln__ns_user(caps, err, errlen);
    if (rc == 0)
        rc = step_no_new_privs(err, errlen);
    if (rc == 0 && caps->landlock_abi > 0)
        rc =
            kiln__landlock_apply(jail->plugin_path, jail->profile, caps->landlock_abi, err, errlen);
    if (rc == 0 && caps->seccomp)
        rc = step_loader_filter(jail, filters, err, errlen);
    return rc;
}
