/*
 * landlock.c -- the filesystem as the child sees it: read-only access to the
 * system libraries and to the plugin's directory, nothing else.
 *
 * The ruleset handles every filesystem right the kernel's ABI knows, so
 * anything not granted below is denied: no write, no create, no remove
 * anywhere, and no read outside the listed trees.  Descriptors the
 * supervisor hands in were opened outside the domain and are not affected.
 * Where the ABI has them (4+, 6+), TCP bind (and, without network, TCP
 * connect) are denied, and signals and abstract unix sockets are scoped to
 * the child's own domain, so a child cannot signal its supervisor or a
 * sibling even when they share a uid.
 *
 * The system header may predate the ABI this code uses, so the few
 * definitions needed are made here under local names, with raw syscalls.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox.h"
#include "steps.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444 /* same number on every architecture */
#endif
#ifndef __NR_landlock_add_rule
#define __NR_landlock_add_rule 445
#endif
#ifndef __NR_landlock_restrict_self
#define __NR_landlock_restrict_self 446
#endif

#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH      1

/* Filesystem rights, by the ABI that introduced them. */
#define LL_FS_EXECUTE   (1ULL << 0)
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR  (1ULL << 3)
#define LL_FS_ABI1      ((1ULL << 13) - 1) /* EXECUTE .. MAKE_SYM */
#define LL_FS_REFER     (1ULL << 13)       /* ABI 2 */
#define LL_FS_TRUNCATE  (1ULL << 14)       /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15)       /* ABI 5 */
/* Network rights (ABI 4) and scopes (ABI 6). */
#define LL_NET_BIND_TCP        (1ULL << 0)
#define LL_NET_CONNECT_TCP     (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define LL_SCOPE_SIGNAL        (1ULL << 1)

struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};

struct ll_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

/* Trees the dynamic loader needs.  Directories get read + list + execute,
 * files read + execute.  Missing ones are skipped (no /lib64 on some
 * architectures). */
static const char *const readable[] = {
    "/usr",  "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/dev/urandom",
#ifdef KILN_SANITIZED
    "/proc", /* ASan reads /proc/self/maps to report; sanitizer builds only */
#endif
};

int
kiln__landlock_abi(void)
{
    long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);

    if (abi < 0)
        return -errno;
    return (int)abi;
}

static int
allow_path(int ruleset, const char *path, uint64_t handled, char *err, size_t errlen)
{
    struct ll_path_beneath_attr pb;
    struct stat st;
    int fd, rc;

    fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        rc = -errno;
        snprintf(err, errlen, "landlock: %s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "landlock: %s: %s", path, strerror(-rc));
        close(fd);
        return rc;
    }
    memset(&pb, 0, sizeof(pb));
    pb.allowed_access = LL_FS_READ_FILE | LL_FS_EXECUTE;
    if (S_ISDIR(st.st_mode))
        pb.allowed_access |= LL_FS_READ_DIR;
    pb.allowed_access &= handled;
    pb.parent_fd = fd;
    if (syscall(__NR_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0) < 0) {
        rc = -errno;
        snprintf(err, errlen, "landlock: rule for %s: %s", path, strerror(-rc));
        close(fd);
        return rc;
    }
    close(fd);
    return 0;
}

int
kiln__landlock_apply(const char *plugin_path, int profile, int abi, char *err, size_t errlen)
{
    struct ll_ruleset_attr attr;
    char dir[PATH_MAX];
    size_t size, i;
    int ruleset, rc;

    if (abi < 1) {
        snprintf(err, errlen, "landlock: not available (ABI %d)", abi);
        return -EOPNOTSUPP;
    }
    memset(&attr, 0, sizeof(attr));
    attr.handled_access_fs = LL_FS_ABI1;
    if (abi >= 2)
        attr.handled_access_fs |= LL_FS_REFER;
    if (abi >= 3)
        attr.handled_access_fs |= LL_FS_TRUNCATE;
    if (abi >= 5)
        attr.handled_access_fs |= LL_FS_IOCTL_DEV;
    size = sizeof(attr.handled_access_fs);
    if (abi >= 4) {
        attr.handled_access_net = LL_NET_BIND_TCP;
        if (!kiln__profile_has_network(profile))
            attr.handled_access_net |= LL_NET_CONNECT_TCP;
        size = offsetof(struct ll_ruleset_attr, scoped);
    }
    if (abi >= 6) {
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
        size = sizeof(attr);
    }

    ruleset = (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) {
        rc = -errno;
        snprintf(err, errlen, "landlock: create ruleset (ABI %d): %s", abi, strerror(-rc));
        return rc;
    }
    for (i = 0; i < sizeof(readable) / sizeof(readable[0]); i++) {
        rc = allow_path(ruleset, readable[i], attr.handled_access_fs, err, errlen);
        if (rc < 0)
            goto out;
    }
    if (plugin_path != NULL && plugin_path[0] != '\0') {
        const char *slash = strrchr(plugin_path, '/');
        size_t n = slash == NULL ? 0 : (size_t)(slash - plugin_path);

        if (slash == plugin_path)
            n = 1; /* a plugin in "/" */
        if (n >= sizeof(dir)) {
            snprintf(err, errlen, "landlock: plugin path too long");
            rc = -ENAMETOOLONG;
            goto out;
        }
        if (n == 0) {
            snprintf(dir, sizeof(dir), ".");
        } else {
            memcpy(dir, plugin_path, n);
            dir[n] = '\0';
        }
        rc = allow_path(ruleset, dir, attr.handled_access_fs, err, errlen);
        if (rc < 0)
            goto out;
    }
    if (syscall(__NR_landlock_restrict_self, ruleset, 0) < 0) {
        rc = -errno;
        snprintf(err, errlen, "landlock: restrict self: %s", strerror(-rc));
        goto out;
    }
    rc = 0;
out:
    close(ruleset);
    return rc;
}
