/*
 * cgroup.c -- per-slot memory and pids cgroups.
 *
 * The memory cap must hold however a handler gets memory (malloc, anonymous
 * mmap, a huge sparse file mapped and touched), which only a memory cgroup
 * does; the pids controller stops fork bombs even where uids are shared.
 * Both cgroup v1 (one hierarchy per controller) and v2 (one unified
 * hierarchy) are detected from /proc/self/mountinfo and /proc/self/cgroup;
 * v1 wins for a controller bound there (a controller lives in one only).
 *
 * Layout: <the supervisor's own cgroup>/kiln-<supervisor pid>/slot<N>, one
 * per child slot, made at start-up, limited before each child is spawned,
 * joined by the child itself (it writes "0" to the slot's cgroup.procs in
 * kiln__jail_enter()), removed at exit.  Directories of supervisors that
 * died without cleaning up are removed at the next start when empty.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox.h"
#include "steps.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { CTL_MEMORY = 0, CTL_PIDS = 1 };

static const char *const ctl_names[2] = {"memory", "pids"};

/* ---- small file helpers ------------------------------------------------ */

/* snprintf for messages, where truncation is acceptable. */
static void say(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int
write_str(const char *path, const char *s)
{
    size_t len = strlen(s);
    ssize_t n;
    int fd, rc = 0;

    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = write(fd, s, len);
    if (n < 0)
        rc = -errno;
    else if ((size_t)n != len)
        rc = -EIO;
    close(fd);
    return rc;
}

/* Read up to len-1 bytes, NUL terminated.  Bytes read or -errno. */
static ssize_t
read_str(const char *path, char *buf, size_t len)
{
    size_t have = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (have + 1 < len) {
        ssize_t n = read(fd, buf + have, len - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    buf[have] = '\0';
    close(fd);
    return (ssize_t)have;
}

static int
path_join(char *out, size_t len, const char *dir, const char *a, const char *b)
{
    int n;

    if (b != NULL)
        n = snprintf(out, len, "%s/%s/%s", dir, a, b);
    else
        n = snprintf(out, len, "%s/%s", dir, a);
    if (n < 0 || (size_t)n >= len)
        return -ENAMETOOLONG;
    return 0;
}

/* Is `word` an element of the list `list` separated by any of `seps`? */
static int
has_word(const char *list, const char *word, const char *seps)
{
    size_t wl = strlen(word);
    const char *p = list;

    while (*p != '\0') {
        size_t n = strcspn(p, seps);
        if (n == wl && strncmp(p, word, wl) == 0)
            return 1;
        p += n;
        if (*p != '\0')
            p++;
    }
    return 0;
}

/* ---- probe ----------------------------------------------------------- */

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void
unescape(char *s)
{
    char *r = s, *w = s;

    while (*r != '\0') {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

typedef struct mnt {
    int found;
    char root[PATH_MAX];  /* the mount's root inside the hierarchy */
    char point[PATH_MAX]; /* where it is mounted */
} mnt_t;

/* Find the v1 mounts of memory and pids and the v2 mount. */
static void
scan_mounts(mnt_t v1[2], mnt_t *v2)
{
    char *line = NULL;
    size_t cap = 0;
    FILE *f;

    f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return;
    while (getline(&line, &cap, f) > 0) {
        char root[PATH_MAX], point[PATH_MAX], fstype[64], super[512];
        char *sep = strstr(line, " - ");
        int c;

        if (sep == NULL)
            continue;
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2)
            continue;
        if (sscanf(sep + 3, "%63s %*s %511s", fstype, super) != 2)
            continue;
        unescape(root);
        unescape(point);
        if (strcmp(fstype, "cgroup2") == 0 && !v2->found) {
            v2->found = 1;
            snprintf(v2->root, sizeof(v2->root), "%s", root);
            snprintf(v2->point, sizeof(v2->point), "%s", point);
        } else if (strcmp(fstype, "cgroup") == 0) {
            for (c = 0; c < 2; c++) {
                if (!v1[c].found && has_word(super, ctl_names[c], ",")) {
                    v1[c].found = 1;
                    snprintf(v1[c].root, sizeof(v1[c].root), "%s", root);
                    snprintf(v1[c].point, sizeof(v1[c].point), "%s", point);
                }
            }
        }
    }
    free(line);
    fclose(f);
}

/* This process's cgroup path for a v1 controller (ctl) or v2 (ctl NULL). */
static int
own_cgroup(const char *ctl, char *out, size_t len)
{
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    FILE *f;

    f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return -errno;
    while (!found && getline(&line, &cap, f) > 0) {
        char *c1 = strchr(line, ':'), *c2, *nl;

        if (c1 == NULL)
            continue;
        c2 = strchr(c1 + 1, ':');
        if (c2 == NULL)
            continue;
        *c2 = '\0';
        nl = strchr(c2 + 1, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (ctl == NULL ? (strncmp(line, "0:", 2) == 0 && c1[1] == '\0')
                        : has_word(c1 + 1, ctl, ",")) {
            snprintf(out, len, "%s", c2 + 1);
            found = 1;
        }
    }
    free(line);
    fclose(f);
    return found ? 0 : -ENOENT;
}

/* The directory of this process's cgroup inside mount `m`. */
static int
own_dir(const mnt_t *m, const char *ctl, char *out, size_t len, char *why, size_t whylen)
{
    char path[PATH_MAX];
    const char *rel;
    size_t rl = strlen(m->root);
    int n;

    if (own_cgroup(ctl, path, sizeof(path)) < 0) {
        say(why, whylen, "this process has no %s cgroup in /proc/self/cgroup", ctl ? ctl : "v2");
        return -ENOENT;
    }
    rel = path;
    if (strcmp(m->root, "/") != 0) {
        if (strncmp(path, m->root, rl) != 0 || (path[rl] != '/' && path[rl] != '\0')) {
            say(why, whylen, "own cgroup %s is outside the mounted part %s of %s", path, m->root,
                m->point);
            return -ENOENT;
        }
        rel = path + rl;
    }
    if (strcmp(rel, "/") == 0)
        rel = "";
    n = snprintf(out, len, "%s%s", m->point, rel);
    if (n < 0 || (size_t)n >= len) {
        say(why, whylen, "cgroup path too long");
        return -ENAMETOOLONG;
    }
    return 0;
}

static int
writable(const char *dir, char *why, size_t whylen)
{
    if (access(dir, W_OK) < 0) {
        say(why, whylen, "cannot create cgroups under %s: %s", dir, strerror(errno));
        return 0;
    }
    return 1;
}

void
kiln__cgroup_probe(kiln__caps_t *caps)
{
    char dir[PATH_MAX], v2dir[PATH_MAX], controllers[512], file[PATH_MAX + 32];
    mnt_t v1[2], v2;
    int c, v2ok = 0;
    char v2why[160] = "no cgroup2 mount";

    memset(v1, 0, sizeof(v1));
    memset(&v2, 0, sizeof(v2));
    scan_mounts(v1, &v2);
    controllers[0] = '\0';
    if (v2.found && own_dir(&v2, NULL, v2dir, sizeof(v2dir), v2why, sizeof(v2why)) == 0) {
        snprintf(file, sizeof(file), "%s/cgroup.controllers", v2dir);
        if (read_str(file, controllers, sizeof(controllers)) >= 0)
            v2ok = 1;
        else
            say(v2why, sizeof(v2why), "cannot read %s", file);
    }

    for (c = 0; c < 2; c++) {
        int *level = c == CTL_MEMORY ? &caps->cgroup_memory : &caps->cgroup_pids;
        char *root = c == CTL_MEMORY ? caps->cgroup_memory_root : caps->cgroup_pids_root;
        char *why = caps->why[c == CTL_MEMORY ? KILN__CAP_CGROUP_MEMORY : KILN__CAP_CGROUP_PIDS];
        size_t whylen = sizeof(caps->why[0]);

        *level = 0;
        root[0] = '\0';
        why[0] = '\0';
        if (v1[c].found) {
            if (own_dir(&v1[c], ctl_names[c], dir, sizeof(dir), why, whylen) < 0)
                continue;
            if (!writable(dir, why, whylen))
                continue;
            *level = 1;
            snprintf(root, PATH_MAX, "%s", dir);
        } else if (v2ok && has_word(controllers, ctl_names[c], " \n")) {
            if (!writable(v2dir, why, whylen))
                continue;
            *level = 2;
            snprintf(root, PATH_MAX, "%s", v2dir);
        } else if (v2ok) {
            say(why, whylen,
                "no cgroup v1 %s hierarchy, and cgroup v2 does not offer it in "
                "%s/cgroup.controllers",
                ctl_names[c], v2dir);
        } else {
            say(why, whylen, "no cgroup v1 %s hierarchy; cgroup v2: %s", ctl_names[c], v2why);
        }
    }
}

/* ---- set-up and teardown --------------------------------------------- */

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* rmdir, retrying while the kernel still holds the cgroup busy (a child
 * that just exited may take a moment to leave it). */
static int
rmdir_retry(const char *path)
{
    int i;

    for (i = 0; i < 25; i++) {
        if (rmdir(path) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return -errno;
        sleep_ms(4);
    }
    return -EBUSY;
}

/* Remove <dir>/slot* and <dir>. */
static void
remove_tree(const char *dir, int retry)
{
    char path[PATH_MAX + 300];
    struct dirent *de;
    DIR *d;

    d = opendir(dir);
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "slot", 4) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (retry)
            rmdir_retry(path);
        else
            rmdir(path);
    }
    closedir(d);
    if (retry)
        rmdir_retry(dir);
    else
        rmdir(dir);
}

/* Remove empty kiln-<pid> directories whose supervisor is gone. */
static void
remove_stale(const char *root)
{
    char path[PATH_MAX + 300];
    struct dirent *de;
    DIR *d;

    d = opendir(root);
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid;

        if (strncmp(de->d_name, "kiln-", 5) != 0)
            continue;
        pid = strtol(de->d_name + 5, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
        remove_tree(path, 0);
    }
    closedir(d);
}

/* v2: let `dir`'s children use controller `ctl`. */
static int
v2_enable(const char *dir, const char *ctl, char *err, size_t errlen)
{
    char file[PATH_MAX + 32], cur[512], req[32];
    int rc;

    snprintf(file, sizeof(file), "%s/cgroup.subtree_control", dir);
    if (read_str(file, cur, sizeof(cur)) >= 0 && has_word(cur, ctl, " \n"))
        return 0;
    snprintf(req, sizeof(req), "+%s", ctl);
    rc = write_str(file, req);
    if (rc < 0)
        say(err, errlen,
            "cgroup: enabling %s in %s: %s (cgroup v2 needs a delegated cgroup whose "
            "processes live in a leaf)",
            ctl, file, strerror(-rc));
    return rc;
}

static int
make_tree(kiln__cgroup_t *cg, int c, const char *root, int level, char *err, size_t errlen)
{
    char *dir = c == CTL_MEMORY ? cg->memory_dir : cg->pids_dir;
    char slot[PATH_MAX + 32];
    unsigned i;
    int n, rc;

    remove_stale(root);
    if (level == 2) {
        rc = v2_enable(root, ctl_names[c], err, errlen);
        if (rc < 0)
            return rc;
    }
    n = snprintf(dir, PATH_MAX, "%s/kiln-%ld", root, (long)getpid());
    if (n < 0 || n >= PATH_MAX) {
        dir[0] = '\0';
        say(err, errlen, "cgroup: path under %s too long", root);
        return -ENAMETOOLONG;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        rc = -errno;
        say(err, errlen, "cgroup: mkdir %s: %s", dir, strerror(-rc));
        dir[0] = '\0';
        return rc;
    }
    if (level == 2) {
        rc = v2_enable(dir, ctl_names[c], err, errlen);
        if (rc < 0)
            return rc;
    }
    for (i = 0; i < cg->nslots; i++) {
        snprintf(slot, sizeof(slot), "%s/slot%u", dir, i);
        if (mkdir(slot, 0755) < 0 && errno != EEXIST) {
            rc = -errno;
            say(err, errlen, "cgroup: mkdir %s: %s", slot, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

int
kiln__cgroup_setup(kiln__cgroup_t *cg, const kiln__caps_t *caps, unsigned nslots, char *err,
                   size_t errlen)
{
    int rc;

    memset(cg, 0, sizeof(*cg));
    cg->nslots = nslots;
    if (caps->cgroup_memory != 0) {
        rc = make_tree(cg, CTL_MEMORY, caps->cgroup_memory_root, caps->cgroup_memory, err, errlen);
        if (rc < 0)
            goto fail;
        cg->memory = caps->cgroup_memory;
    }
    if (caps->cgroup_pids != 0) {
        rc = make_tree(cg, CTL_PIDS, caps->cgroup_pids_root, caps->cgroup_pids, err, errlen);
        if (rc < 0)
            goto fail;
        cg->pids = caps->cgroup_pids;
    }
    return 0;
fail:
    kiln__cgroup_teardown(cg);
    return rc;
}

void
kiln__cgroup_teardown(kiln__cgroup_t *cg)
{
    if (cg->memory_dir[0] != '\0')
        remove_tree(cg->memory_dir, 1);
    if (cg->pids_dir[0] != '\0' && strcmp(cg->pids_dir, cg->memory_dir) != 0)
        remove_tree(cg->pids_dir, 1);
    cg->memory_dir[0] = '\0';
    cg->pids_dir[0] = '\0';
    cg->memory = 0;
    cg->pids = 0;
}

/* ---- per slot ---------------------------------------------------------- */

static int
slot_file(const kiln__cgroup_t *cg, int c, unsigned slot, const char *name, char *out, size_t len)
{
    const char *dir = c == CTL_MEMORY ? cg->memory_dir : cg->pids_dir;
    char sub[32];

    if ((c == CTL_MEMORY ? cg->memory : cg->pids) == 0 || dir[0] == '\0')
        return -EOPNOTSUPP;
    if (slot >= cg->nslots)
        return -EINVAL;
    snprintf(sub, sizeof(sub), "slot%u", slot);
    return path_join(out, len, dir, sub, name);
}

static int
slot_write(const kiln__cgroup_t *cg, int c, unsigned slot, const char *name, const char *value,
           char *err, size_t errlen)
{
    char path[PATH_MAX + 64];
    int rc;

    rc = slot_file(cg, c, slot, name, path, sizeof(path));
    if (rc == 0)
        rc = write_str(path, value);
    if (rc < 0 && err != NULL)
        say(err, errlen, "cgroup: writing %s to %s: %s", value, path, strerror(-rc));
    return rc;
}

static int
limit_memory_v1(kiln__cgroup_t *cg, unsigned slot, const char *value, char *err, size_t errlen)
{
    char path[PATH_MAX + 64];
    int has_memsw, rc;

    has_memsw =
        slot_file(cg, CTL_MEMORY, slot, "memory.memsw.limit_in_bytes", path, sizeof(path)) == 0 &&
        access(path, F_OK) == 0;
    if (!has_memsw) {
        /* No swap accounting: keep the slot out of swap as far as v1 allows. */
        (void)slot_write(cg, CTL_MEMORY, slot, "memory.swappiness", "0", NULL, 0);
        return slot_write(cg, CTL_MEMORY, slot, "memory.limit_in_bytes", value, err, errlen);
    }
    /* memsw must stay >= limit: lower the limit first, or raise memsw first. */
    rc = slot_write(cg, CTL_MEMORY, slot, "memory.limit_in_bytes", value, NULL, 0);
    if (rc == 0)
        return slot_write(cg, CTL_MEMORY, slot, "memory.memsw.limit_in_bytes", value, err, errlen);
    rc = slot_write(cg, CTL_MEMORY, slot, "memory.memsw.limit_in_bytes", value, err, errlen);
    if (rc == 0)
        rc = slot_write(cg, CTL_MEMORY, slot, "memory.limit_in_bytes", value, err, errlen);
    return rc;
}

int
kiln__cgroup_slot_limit(kiln__cgroup_t *cg, unsigned slot, uint64_t memory_bytes, uint32_t pids_max,
                        char *err, size_t errlen)
{
    char value[32];
    int rc = 0;

    if (slot >= cg->nslots) {
        say(err, errlen, "cgroup: slot %u out of range (%u slots)", slot, cg->nslots);
        return -EINVAL;
    }
    if (cg->memory == 1) {
        if (memory_bytes == 0)
            snprintf(value, sizeof(value), "-1");
        else
            snprintf(value, sizeof(value), "%" PRIu64, memory_bytes);
        rc = limit_memory_v1(cg, slot, value, err, errlen);
    } else if (cg->memory == 2) {
        if (memory_bytes == 0)
            snprintf(value, sizeof(value), "max");
        else
            snprintf(value, sizeof(value), "%" PRIu64, memory_bytes);
        rc = slot_write(cg, CTL_MEMORY, slot, "memory.max", value, err, errlen);
        if (rc == 0) {
            rc = slot_write(cg, CTL_MEMORY, slot, "memory.swap.max", "0", err, errlen);
            if (rc == -ENOENT) /* kernel without swap accounting */
                rc = 0;
        }
    }
    if (rc == 0 && cg->pids != 0) {
        if (pids_max == 0)
            snprintf(value, sizeof(value), "max");
        else
            snprintf(value, sizeof(value), "%" PRIu32, pids_max);
        rc = slot_write(cg, CTL_PIDS, slot, "pids.max", value, err, errlen);
    }
    return rc;
}

int
kiln__cgroup_slot_procs(const kiln__cgroup_t *cg, unsigned slot, char *memory_procs,
                        char *pids_procs)
{
    int rc;

    memory_procs[0] = '\0';
    pids_procs[0] = '\0';
    if (slot >= cg->nslots)
        return -EINVAL;
    if (cg->memory != 0) {
        rc = slot_file(cg, CTL_MEMORY, slot, "cgroup.procs", memory_procs, PATH_MAX);
        if (rc < 0)
            return rc;
    }
    if (cg->pids != 0 && strcmp(cg->pids_dir, cg->memory_dir) != 0) {
        rc = slot_file(cg, CTL_PIDS, slot, "cgroup.procs", pids_procs, PATH_MAX);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The number after "key " on its own line in a flat-keyed file, or -1. */
static long long
keyed_value(const char *text, const char *key)
{
    size_t kl = strlen(key);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
            return strtoll(p + kl + 1, NULL, 10);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

long
kiln__cgroup_slot_oom_kills(const kiln__cgroup_t *cg, unsigned slot)
{
    char path[PATH_MAX + 64], buf[1024];
    long long v;

    if (cg->memory == 0)
        return -1;
    if (slot_file(cg, CTL_MEMORY, slot, cg->memory == 1 ? "memory.oom_control" : "memory.events",
                  path, sizeof(path)) < 0 ||
        read_str(path, buf, sizeof(buf)) < 0)
        return -1;
    v = keyed_value(buf, "oom_kill");
    if (v >= 0 || cg->memory == 2)
        return (long)v;
    /* v1 before 4.13: the limit was hit at least failcnt times. */
    if (slot_file(cg, CTL_MEMORY, slot, "memory.failcnt", path, sizeof(path)) < 0 ||
        read_str(path, buf, sizeof(buf)) < 0)
        return -1;
    return strtol(buf, NULL, 10);
}

uint64_t
kiln__cgroup_slot_peak(const kiln__cgroup_t *cg, unsigned slot)
{
    char path[PATH_MAX + 64], buf[64];

    if (cg->memory == 0)
        return 0;
    if (slot_file(cg, CTL_MEMORY, slot,
                  cg->memory == 1 ? "memory.max_usage_in_bytes" : "memory.peak", path,
                  sizeof(path)) < 0 ||
        read_str(path, buf, sizeof(buf)) <= 0)
        return 0;
    return strtoull(buf, NULL, 10);
}

int
kiln__cgroup_slot_reset_peak(const kiln__cgroup_t *cg, unsigned slot)
{
    if (cg->memory != 1)
        return -EOPNOTSUPP;
    return slot_write(cg, CTL_MEMORY, slot, "memory.max_usage_in_bytes", "0", NULL, 0);
}
