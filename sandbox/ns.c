/*
 * ns.c -- namespaces and the unprivileged uid.
 *
 * As root, the child first unshares the ipc, uts and (for profiles without
 * network) net namespaces, which needs CAP_SYS_ADMIN, then drops to the
 * slot's own uid and gid (one per slot, so siblings cannot signal or trace
 * each other and RLIMIT_NPROC counts only this child), and enters a new
 * user namespace last, from the unprivileged uid.  Not as root, all of them
 * come in one unshare() together with the user namespace, which is what
 * grants the right to make the others.
 *
 * Each kind is asked for only when the supervisor's probe found that it
 * works; what is missing is reported there, never skipped silently here.
 * The pid namespace is not entered here: the zygote is the init of one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox.h"
#include "steps.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CHILD_HOSTNAME "kiln"

int
kiln__ns_flags(const kiln__jail_t *jail, const kiln__caps_t *caps)
{
    int flags = 0;

    if (!caps->is_root && !caps->userns)
        return 0; /* without a user namespace an unprivileged process can make none */
    if (caps->ipcns)
        flags |= CLONE_NEWIPC;
    if (caps->utsns)
        flags |= CLONE_NEWUTS;
    if (caps->netns && !kiln__profile_has_network(jail->profile))
        flags |= CLONE_NEWNET;
    if (!caps->is_root)
        flags |= CLONE_NEWUSER;
    return flags;
}

static void
flag_names(int flags, char *buf, size_t len)
{
    static const struct {
        int flag;
        const char *name;
    } names[] = {{CLONE_NEWUSER, "CLONE_NEWUSER"},
                 {CLONE_NEWIPC, "CLONE_NEWIPC"},
                 {CLONE_NEWUTS, "CLONE_NEWUTS"},
                 {CLONE_NEWNET, "CLONE_NEWNET"}};
    size_t i, off = 0;

    buf[0] = '\0';
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if ((flags & names[i].flag) && off < len) {
            int n = snprintf(buf + off, len - off, "%s%s", off ? "|" : "", names[i].name);
            if (n > 0)
                off += (size_t)n;
        }
    }
}

static int
switch_uid(const kiln__jail_t *jail, char *err, size_t errlen)
{
    uid_t uid = jail->uid;
    gid_t gid = jail->gid != 0 ? jail->gid : jail->uid; /* never keep group root */
    uid_t r, e, s;
    int rc;

    if (setgroups(0, NULL) < 0) {
        rc = -errno;
        snprintf(err, errlen, "uid: setgroups(0): %s", strerror(-rc));
        return rc;
    }
    if (setresgid(gid, gid, gid) < 0) {
        rc = -errno;
        snprintf(err, errlen, "uid: setresgid(%u): %s", (unsigned)gid, strerror(-rc));
        return rc;
    }
    if (setresuid(uid, uid, uid) < 0) {
        rc = -errno;
        snprintf(err, errlen, "uid: setresuid(%u): %s", (unsigned)uid, strerror(-rc));
        return rc;
    }
    if (getresuid(&r, &e, &s) < 0 || r != uid || e != uid || s != uid) {
        snprintf(err, errlen, "uid: still not uid %u after setresuid", (unsigned)uid);
        return -EPERM;
    }
    return 0;
}

int
kiln__ns_enter(const kiln__jail_t *jail, const kiln__caps_t *caps, char *err, size_t errlen)
{
    int flags = kiln__ns_flags(jail, caps), rc;
    char names[96];

    if (flags != 0 && unshare(flags) < 0) {
        rc = -errno;
        flag_names(flags, names, sizeof(names));
        snprintf(err, errlen, "namespaces: unshare(%s): %s", names, strerror(-rc));
        return rc;
    }
    if ((flags & CLONE_NEWUTS) && sethostname(CHILD_HOSTNAME, strlen(CHILD_HOSTNAME)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "namespaces: sethostname: %s", strerror(-rc));
        return rc;
    }
    if (caps->is_root && jail->uid != 0)
        return switch_uid(jail, err, errlen);
    return 0;
}

int
kiln__ns_user(const kiln__caps_t *caps, char *err, size_t errlen)
{
    int rc;

    if (!caps->is_root || !caps->userns)
        return 0; /* not root: entered with the others in kiln__ns_enter() */
    if (unshare(CLONE_NEWUSER) < 0) {
        rc = -errno;
        snprintf(err, errlen, "namespaces: unshare(CLONE_NEWUSER): %s", strerror(-rc));
        return rc;
    }
    return 0;
}

static int
write_proc(const char *path, const char *s, char *err, size_t errlen)
{
    size_t len = strlen(s);
    ssize_t n;
    int fd, rc = 0;

    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
    } else {
        n = write(fd, s, len);
        if (n < 0)
            rc = -errno;
        else if ((size_t)n != len)
            rc = -EIO;
        close(fd);
    }
    if (rc < 0)
        snprintf(err, errlen, "namespaces: writing \"%s\" to %s: %s", s, path, strerror(-rc));
    return rc;
}

int
kiln__ns_map_self(uint32_t outer_uid, uint32_t outer_gid, char *err, size_t errlen)
{
    char map[64];
    int rc;

    rc = write_proc("/proc/self/setgroups", "deny", err, errlen);
    if (rc < 0 && rc != -ENOENT) /* kernels before 3.19 have no setgroups file */
        return rc;
    snprintf(map, sizeof(map), "%u %u 1", (unsigned)outer_uid, (unsigned)outer_uid);
    rc = write_proc("/proc/self/uid_map", map, err, errlen);
    if (rc < 0)
        return rc;
    snprintf(map, sizeof(map), "%u %u 1", (unsigned)outer_gid, (unsigned)outer_gid);
    return write_proc("/proc/self/gid_map", map, err, errlen);
}
