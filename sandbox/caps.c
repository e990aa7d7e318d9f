/*
 * caps.c -- what this kernel and this process let the jail do, probed once
 * in the supervisor, and the report of it (kiln sandbox-check, start-up).
 *
 * Each namespace kind is tried in a short-lived child that calls unshare()
 * the way a jailed child will and reports by its exit code (0, or the
 * errno), so the supervisor itself never changes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox.h"
#include "steps.h"

#include <errno.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Unprivileged uid the root probe of the user namespace drops to, like a
 * child does before it enters one. */
#define PROBE_UID 65534

/* Fork, try `flags` in the child, return 0 or the errno it met. */
static int
try_unshare(int flags, int drop_uid)
{
    int status;
    pid_t pid, w;

    pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0) {
        if (drop_uid && (setgroups(0, NULL) < 0 || setresgid(PROBE_UID, PROBE_UID, PROBE_UID) < 0 ||
                         setresuid(PROBE_UID, PROBE_UID, PROBE_UID) < 0))
            _exit(errno & 0xff);
        if (unshare(flags) < 0)
            _exit(errno & 0xff);
        if (flags & CLONE_NEWPID) {
            /* The first child is the namespace's init: check it can exist. */
            pid_t init = fork();
            if (init < 0)
                _exit(errno & 0xff);
            if (init == 0)
                _exit(0);
            if (waitpid(init, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                _exit(ECHILD);
        }
        _exit(0);
    }
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno;
    if (!WIFEXITED(status))
        return ECHILD;
    return WEXITSTATUS(status);
}

static void why_set(kiln__caps_t *caps, int cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
why_set(kiln__caps_t *caps, int cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(caps->why[cap], sizeof(caps->why[cap]), fmt, ap);
    va_end(ap);
}

static int
probe_ns(kiln__caps_t *caps, int cap, int flag, const char *name)
{
    int flags = caps->is_root ? flag : flag | CLONE_NEWUSER;
    int drop = caps->is_root && flag == CLONE_NEWUSER;
    int e = try_unshare(flags, drop);

    if (e == 0)
        return 1;
    if (caps->is_root)
        why_set(caps, cap, "unshare(%s)%s: %s", name, drop ? " as an unprivileged uid" : "",
                strerror(e));
    else
        why_set(caps, cap, "unshare(CLONE_NEWUSER|%s): %s", name, strerror(e));
    return 0;
}

static int
probe_seccomp(kiln__caps_t *caps)
{
    unsigned actions[2] = {SECCOMP_RET_TRAP, SECCOMP_RET_KILL_PROCESS};
    int i;

    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0) {
        why_set(caps, KILN__CAP_SECCOMP, "prctl(PR_GET_SECCOMP): %s (kernel without seccomp)",
                strerror(errno));
        return 0;
    }
    for (i = 0; i < 2; i++) {
        if (syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &actions[i]) < 0) {
            why_set(caps, KILN__CAP_SECCOMP, "seccomp(SECCOMP_GET_ACTION_AVAIL, %s): %s",
                    i == 0 ? "TRAP" : "KILL_PROCESS", strerror(errno));
            return 0;
        }
    }
    return 1;
}

int
kiln__caps_probe(kiln__caps_t *caps)
{
    int abi;

    memset(caps, 0, sizeof(*caps));
    caps->is_root = geteuid() == 0;

    caps->seccomp = probe_seccomp(caps);

    abi = kiln__landlock_abi();
    if (abi > 0) {
        caps->landlock_abi = abi;
    } else if (abi == -ENOSYS) {
        why_set(caps, KILN__CAP_LANDLOCK, "landlock_create_ruleset: %s (kernel without landlock)",
                strerror(-abi));
    } else if (abi == -EOPNOTSUPP) {
        why_set(caps, KILN__CAP_LANDLOCK,
                "landlock_create_ruleset: %s (landlock is not in the kernel's lsm= list)",
                strerror(-abi));
    } else {
        why_set(caps, KILN__CAP_LANDLOCK, "landlock_create_ruleset: %s",
                strerror(abi < 0 ? -abi : EINVAL));
    }

    caps->userns = probe_ns(caps, KILN__CAP_USERNS, CLONE_NEWUSER, "CLONE_NEWUSER");
    if (!caps->is_root && !caps->userns) {
        /* An unprivileged process makes the other kinds only inside a user
         * namespace. */
        static const int others[] = {KILN__CAP_PIDNS, KILN__CAP_NETNS, KILN__CAP_IPCNS,
                                     KILN__CAP_UTSNS};
        size_t i;
        for (i = 0; i < sizeof(others) / sizeof(others[0]); i++)
            why_set(caps, others[i], "not root and no user namespace: %s",
                    caps->why[KILN__CAP_USERNS]);
    } else {
        caps->pidns = probe_ns(caps, KILN__CAP_PIDNS, CLONE_NEWPID, "CLONE_NEWPID");
        caps->netns = probe_ns(caps, KILN__CAP_NETNS, CLONE_NEWNET, "CLONE_NEWNET");
        caps->ipcns = probe_ns(caps, KILN__CAP_IPCNS, CLONE_NEWIPC, "CLONE_NEWIPC");
        caps->utsns = probe_ns(caps, KILN__CAP_UTSNS, CLONE_NEWUTS, "CLONE_NEWUTS");
    }

    kiln__cgroup_probe(caps);
    return 0;
}

/* Append one formatted line to buf; keep the running length even past
 * the end, so the caller can see truncation. */
static void line(char *buf, size_t len, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
line(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*off >= len)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *off, len - *off, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *off += (size_t)n;
    if (*off >= len)
        *off = len - 1; /* truncated: vsnprintf kept the NUL */
}

static void
cap_line(const kiln__caps_t *caps, char *buf, size_t len, size_t *off, const char *name, int ok,
         int cap, const char *detail)
{
    if (ok)
        line(buf, len, off, "%s: applied%s%s\n", name, detail[0] ? " " : "", detail);
    else
        line(buf, len, off, "%s: unavailable: %s\n", name,
             caps->why[cap][0] ? caps->why[cap] : "not probed");
}

size_t
kiln__caps_report(const kiln__caps_t *caps, char *buf, size_t len)
{
    char detail[PATH_MAX + 64];
    size_t off = 0;

    if (buf == NULL || len == 0)
        return 0;
    buf[0] = '\0';
    cap_line(caps, buf, len, &off, "seccomp", caps->seccomp, KILN__CAP_SECCOMP,
             "(default-deny allowlist per profile: compute, network, threads)");
    snprintf(detail, sizeof(detail), "(ABI %d: read-only system libraries and plugin directory)",
             caps->landlock_abi);
    cap_line(caps, buf, len, &off, "landlock", caps->landlock_abi > 0, KILN__CAP_LANDLOCK, detail);
    cap_line(caps, buf, len, &off, "user namespace", caps->userns, KILN__CAP_USERNS, "");
    cap_line(caps, buf, len, &off, "pid namespace", caps->pidns, KILN__CAP_PIDNS,
             "(the zygote is its init)");
    cap_line(caps, buf, len, &off, "network namespace", caps->netns, KILN__CAP_NETNS,
             "(profiles without network)");
    cap_line(caps, buf, len, &off, "ipc namespace", caps->ipcns, KILN__CAP_IPCNS, "");
    cap_line(caps, buf, len, &off, "uts namespace", caps->utsns, KILN__CAP_UTSNS, "");
    snprintf(detail, sizeof(detail), "(cgroup v%d under %s)", caps->cgroup_memory,
             caps->cgroup_memory_root);
    cap_line(caps, buf, len, &off, "memory cgroup", caps->cgroup_memory != 0,
             KILN__CAP_CGROUP_MEMORY, detail);
    snprintf(detail, sizeof(detail), "(cgroup v%d under %s)", caps->cgroup_pids,
             caps->cgroup_pids_root);
    cap_line(caps, buf, len, &off, "pids cgroup", caps->cgroup_pids != 0, KILN__CAP_CGROUP_PIDS,
             detail);
    if (caps->is_root)
        line(buf, len, &off, "unprivileged uid: applied (one uid per child slot)\n");
    else
        line(buf, len, &off,
             "unprivileged uid: unavailable: the supervisor is not root, children keep uid %u\n",
             (unsigned)geteuid());
    line(buf, len, &off, "no_new_privs: applied\n");
    line(buf, len, &off, "parent-death signal: applied (SIGKILL)\n");
    line(buf, len, &off, "descriptors: applied (only the IPC channel and handed-in files)\n");
#ifdef KILN_SANITIZED
    line(buf, len, &off,
         "rlimits: applied (CPU, FSIZE, NOFILE, NPROC, CORE=0; AS and DATA skipped in this "
         "sanitizer build: the memory cap rests on the cgroup)\n");
#else
    line(buf, len, &off,
         caps->cgroup_memory ? "rlimits: applied (CPU, FSIZE, NOFILE, NPROC, CORE=0; the memory "
                               "cgroup holds the memory cap)\n"
                             : "rlimits: applied (AS and DATA = memory cap, CPU, FSIZE, NOFILE, "
                               "NPROC, CORE=0)\n");
#endif
    return off;
}
