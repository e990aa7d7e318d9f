/*
 * seccomp.c -- the syscall policy compiled and applied: the rules of each
 * profile (profile.c) become classic BPF once, in the supervisor, through
 * libseccomp; a child only loads the programs.  Also the SIGSYS reporter
 * that tells the supervisor which syscall trapped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "frame.h"
#include "sandbox.h"
#include "steps.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const stage_names[2] = {"loader", "final"};

static int
add_rules(scmp_filter_ctx ctx, const kiln__rule_t *rules, int profile, int stage, char *err,
          size_t errlen)
{
    const kiln__rule_t *r;

    for (r = rules; r->name != NULL; r++) {
        int nr, rc;

        if (kiln__syscall_always_denied(r->name)) {
            snprintf(err, errlen,
                     "seccomp: profile %s, %s filter: syscall %s must always trap but has a "
                     "rule",
                     kiln__profile_name(profile), stage_names[stage], r->name);
            return -EINVAL;
        }
        nr = seccomp_syscall_resolve_name(r->name);
        if (nr == __NR_SCMP_ERROR) {
            snprintf(err, errlen,
                     "seccomp: profile %s, %s filter: syscall %s unknown to libseccomp",
                     kiln__profile_name(profile), stage_names[stage], r->name);
            return -EINVAL;
        }
        rc = seccomp_rule_add_array(ctx, r->action, nr, r->nargs, r->nargs ? &r->arg : NULL);
        if (rc < 0) {
            snprintf(err, errlen,
                     "seccomp: profile %s, %s filter: rule for syscall %s rejected: %s",
                     kiln__profile_name(profile), stage_names[stage], r->name, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* Export the BPF program through a memfd (libseccomp 2.5 writes to a
 * descriptor only) and read it back into malloc'd memory. */
static int
export_bpf(scmp_filter_ctx ctx, kiln__bpf_t *out, char *err, size_t errlen)
{
    struct stat st;
    size_t size, have = 0;
    void *buf;
    int fd, rc;

    fd = memfd_create("kiln-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "memfd_create: %s", strerror(-rc));
        return rc;
    }
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) {
        snprintf(err, errlen, "seccomp_export_bpf: %s", strerror(-rc));
        close(fd);
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "fstat of the exported filter: %s", strerror(-rc));
        close(fd);
        return rc;
    }
    size = (size_t)st.st_size;
    if (size == 0 || size % sizeof(struct sock_filter) != 0 ||
        size / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        snprintf(err, errlen, "exported filter has %zu bytes: not 1..%d instructions", size,
                 BPF_MAXINSNS);
        close(fd);
        return -E2BIG;
    }
    buf = malloc(size);
    if (buf == NULL) {
        close(fd);
        snprintf(err, errlen, "out of memory for a %zu-byte filter", size);
        return -ENOMEM;
    }
    while (have < size) {
        ssize_t n = pread(fd, (char *)buf + have, size - have, (off_t)have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            snprintf(err, errlen, "reading the exported filter: %s", strerror(-rc));
            free(buf);
            close(fd);
            return rc;
        }
        have += (size_t)n;
    }
    close(fd);
    out->insns = buf;
    out->len = (unsigned short)(size / sizeof(struct sock_filter));
    return 0;
}

static int
compile_one(int profile, int stage, kiln__bpf_t *out, char *err, size_t errlen)
{
    const kiln__rule_t *const *groups;
    scmp_filter_ctx ctx;
    char why[KILN__ERRLEN];
    int i, rc;

    ctx = seccomp_init(SCMP_ACT_TRAP);
    if (ctx == NULL) {
        snprintf(err, errlen, "seccomp: profile %s, %s filter: seccomp_init failed",
                 kiln__profile_name(profile), stage_names[stage]);
        return -ENOMEM;
    }
    /* A foreign-architecture syscall (x32, int 0x80) kills at once. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); /* the jail sets it itself */
    if (rc < 0) {
        snprintf(err, errlen, "seccomp: profile %s, %s filter: attributes: %s",
                 kiln__profile_name(profile), stage_names[stage], strerror(-rc));
        seccomp_release(ctx);
        return rc;
    }
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2); /* binary tree, where supported */

    groups = kiln__profile_rules(profile, stage);
    for (i = 0; rc == 0 && groups[i] != NULL; i++)
        rc = add_rules(ctx, groups[i], profile, stage, err, errlen);
    if (rc == 0) {
        rc = export_bpf(ctx, out, why, sizeof(why));
        if (rc < 0)
            snprintf(err, errlen, "seccomp: profile %s, %s filter: %s", kiln__profile_name(profile),
                     stage_names[stage], why);
    }
    seccomp_release(ctx);
    return rc;
}

int
kiln__seccomp_compile(kiln__filters_t *f, char *err, size_t errlen)
{
    int p, rc;

    memset(f, 0, sizeof(*f));
    for (p = 0; p < KILN__PROFILE_COUNT; p++) {
        rc = compile_one(p, KILN__STAGE_LOADER, &f->loader[p], err, errlen);
        if (rc == 0)
            rc = compile_one(p, KILN__STAGE_FINAL, &f->final[p], err, errlen);
        if (rc < 0) {
            kiln__seccomp_free(f);
            return rc;
        }
    }
    return 0;
}

void
kiln__seccomp_free(kiln__filters_t *f)
{
    int p;

    for (p = 0; p < KILN__PROFILE_COUNT; p++) {
        free(f->loader[p].insns);
        free(f->final[p].insns);
    }
    memset(f, 0, sizeof(*f));
}

int
kiln__seccomp_apply(const kiln__bpf_t *prog)
{
    struct sock_fprog fp;
    long rc;

    if (prog == NULL || prog->insns == NULL || prog->len == 0)
        return -EINVAL;
    fp.len = prog->len;
    fp.filter = prog->insns;
    /* TSYNC: threads a plugin's init started get the filter too. */
    rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fp);
    if (rc < 0)
        return -errno;
    if (rc > 0)
        return -EBUSY; /* the id of a thread that could not be synchronised */
    return 0;
}

/* The trap reporter.  Only async-signal-safe work: format by hand, one
 * write(), _exit(). */
static volatile int trap_fd = -1;

static size_t
fmt_uint(char *out, unsigned long v)
{
    char tmp[24];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static void
trap_handler(int sig, siginfo_t *si, void *uctx)
{
    unsigned char buf[KILN__FRAME_HDR + 48];
    char *p = (char *)buf + KILN__FRAME_HDR;
    uint32_t type = KILN__FRAME_SECCOMP, len;
    uint64_t task_id = 0;
    size_t off = 0, n;
    int nr = si->si_syscall;

    (void)sig;
    (void)uctx;
    memcpy(p + off, "{\"nr\":", 6);
    off += 6;
    if (nr < 0) {
        p[off++] = '-';
        off += fmt_uint(p + off, (unsigned long)-(long)nr);
    } else {
        off += fmt_uint(p + off, (unsigned long)nr);
    }
    p[off++] = '}';
    len = (uint32_t)off;
    memcpy(buf, &type, 4);
    memcpy(buf + 4, &len, 4);
    memcpy(buf + 8, &task_id, 8);
    n = KILN__FRAME_HDR + off;
    if (trap_fd >= 0) {
        size_t done = 0;
        while (done < n) {
            ssize_t w = write(trap_fd, buf + done, n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
    }
    _exit(KILN__SECCOMP_EXIT);
}

int
kiln__seccomp_trap_install(int report_fd)
{
    struct sigaction sa;
    sigset_t set;

    trap_fd = report_fd;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = trap_handler;
    sa.sa_flags = SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0)
        return -errno;
    sigemptyset(&set);
    sigaddset(&set, SIGSYS);
    if (sigprocmask(SIG_UNBLOCK, &set, NULL) < 0)
        return -errno;
    return 0;
}

const char *
kiln__syscall_name(int nr, char *buf, size_t len)
{
    char *name = seccomp_syscall_resolve_num_arch(seccomp_arch_native(), nr);

    if (name != NULL) {
        snprintf(buf, len, "%s", name);
        free(name);
    } else {
        snprintf(buf, len, "syscall-%d", nr);
    }
    return buf;
}
