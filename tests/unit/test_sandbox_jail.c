/*
 * test_sandbox_jail.c -- the whole containment chain, kiln__jail_enter(),
 * walked by forked children that report what they see on their channel.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#define TEST_UID 61000 /* slot uid when the test runs as root */

static kiln__caps_t caps;
static kiln__filters_t filters;
static char plugin_dir[64];
static char plugin_path[PATH_MAX];

/* What a jailed child saw, sent on its channel right after the chain. */
typedef struct report {
    int rc;
    char err[KILN__ERRLEN];
    int fd0_is_null, fd2_is_null, stray_fd_open;
    struct rlimit as, data, cpu, fsize, nofile, nproc, core;
    int shadow_errno, ldcache_errno, plugin_file_errno, tmp_errno, write_errno;
    char nodename[65];
    long uid;
} report_t;

typedef struct child {
    pid_t pid;
    int fd; /* parent's end of the channel */
} child_t;

static void
send_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            _exit(90);
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

static int
errno_of_open(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

/* Child side: jail, observe, report, then wait for a byte (so the parent
 * can look at it from outside) and exit. */
static void __attribute__((noreturn)) jailed_child(const kiln__jail_t *jail, int stray_fd)
{
    report_t r;
    struct stat st;
    struct utsname u;
    char go;
    char path[PATH_MAX + 16];

    memset(&r, 0, sizeof(r));
    r.rc = kiln__jail_enter(jail, &caps, &filters, r.err, sizeof(r.err));
    if (r.rc < 0) {
        /* The channel may or may not be on fd 3 yet. */
        int fd = fcntl(KILN__CHILD_FD, F_GETFD) >= 0 ? KILN__CHILD_FD : jail->keep_fd;
        send_all(fd, &r, sizeof(r));
        _exit(1);
    }
    r.fd0_is_null = fstat(0, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
    r.fd2_is_null = fstat(2, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
    r.stray_fd_open = fcntl(stray_fd, F_GETFD) >= 0;
    getrlimit(RLIMIT_AS, &r.as);
    getrlimit(RLIMIT_DATA, &r.data);
    getrlimit(RLIMIT_CPU, &r.cpu);
    getrlimit(RLIMIT_FSIZE, &r.fsize);
    getrlimit(RLIMIT_NOFILE, &r.nofile);
    getrlimit(RLIMIT_NPROC, &r.nproc);
    getrlimit(RLIMIT_CORE, &r.core);
    r.shadow_errno = errno_of_open("/etc/shadow", O_RDONLY);
    r.ldcache_errno = errno_of_open("/etc/ld.so.cache", O_RDONLY);
    snprintf(path, sizeof(path), "%s/data.txt", plugin_dir);
    r.plugin_file_errno = errno_of_open(path, O_RDONLY);
    r.tmp_errno = errno_of_open("/tmp", O_RDONLY | O_DIRECTORY);
    snprintf(path, sizeof(path), "%s/new.txt", plugin_dir);
    r.write_errno = errno_of_open(path, O_WRONLY | O_CREAT);
    if (uname(&u) == 0)
        snprintf(r.nodename, sizeof(r.nodename), "%s", u.nodename);
    r.uid = (long)getuid();
    send_all(KILN__CHILD_FD, &r, sizeof(r));
    if (read(KILN__CHILD_FD, &go, 1) == 1 && go == 'f') {
        /* Write past RLIMIT_FSIZE: the kernel must stop it with SIGXFSZ. */
        static char buf[64 * 1024];
        int fd = memfd_create("big", MFD_CLOEXEC);
        size_t i;
        for (i = 0; i < 64; i++)
            if (write(fd, buf, sizeof(buf)) < 0)
                _exit(3);
        _exit(2);
    }
    _exit(0);
}

static void
jail_defaults(kiln__jail_t *j, int keep_fd)
{
    memset(j, 0, sizeof(*j));
    j->slot = 0;
    j->profile = KILN__PROFILE_COMPUTE;
    j->memory_bytes = 512ull << 20;
    j->fsize_bytes = 1 << 20;
    j->cpu_seconds = 7;
    j->nofile = 32;
    j->nproc = 16;
    if (caps.is_root) {
        j->uid = TEST_UID;
        j->gid = TEST_UID;
    }
    j->keep_fd = keep_fd;
    snprintf(j->plugin_path, sizeof(j->plugin_path), "%s", plugin_path);
}

/* Fork a child that jails itself with `j` (keep_fd filled in here). */
static child_t
spawn(kiln__jail_t *j, report_t *r)
{
    child_t c;
    int sv[2], stray;
    size_t have = 0;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    stray = open("/dev/zero", O_RDONLY); /* inherited, must be closed by the jail */
    assert_true(stray > KILN__CHILD_FD);
    c.pid = fork();
    assert_true(c.pid >= 0);
    if (c.pid == 0) {
        close(sv[0]);
        j->keep_fd = sv[1];
        jailed_child(j, stray);
    }
    close(stray);
    close(sv[1]);
    c.fd = sv[0];
    while (have < sizeof(*r)) {
        ssize_t n = read(c.fd, (char *)r + have, sizeof(*r) - have);
        if (n <= 0)
            fail_msg("child sent %zu of %zu report bytes", have, sizeof(*r));
        have += (size_t)n;
    }
    return c;
}

static int
finish(child_t c, char go)
{
    int status;

    assert_int_equal(write(c.fd, &go, 1), 1);
    assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
    close(c.fd);
    return status;
}

static void
test_chain(void **state)
{
    kiln__jail_t j;
    report_t r;
    child_t c;
    int status;

    (void)state;
    jail_defaults(&j, -1);
    c = spawn(&j, &r);
    if (r.rc != 0)
        fail_msg("jail_enter: %d %s", r.rc, r.err);
    assert_true(r.fd0_is_null);
    assert_true(r.fd2_is_null);
    assert_false(r.stray_fd_open);
#ifndef KILN_SANITIZED
    assert_int_equal(r.as.rlim_cur, j.memory_bytes);
    assert_int_equal(r.as.rlim_max, j.memory_bytes);
    assert_int_equal(r.data.rlim_max, j.memory_bytes);
#endif
    assert_int_equal(r.cpu.rlim_cur, 7);
    assert_int_equal(r.cpu.rlim_max, 7);
    assert_int_equal(r.fsize.rlim_max, 1 << 20);
    assert_int_equal(r.nofile.rlim_cur, 32);
    assert_int_equal(r.nproc.rlim_cur, 16);
    assert_int_equal(r.core.rlim_max, 0);
    assert_int_equal(r.ldcache_errno, 0);
    if (caps.landlock_abi > 0) {
        assert_int_equal(r.shadow_errno, EACCES);
        assert_int_equal(r.plugin_file_errno, 0);
        assert_int_equal(r.tmp_errno, EACCES);
    }
    assert_int_equal(r.write_errno, EACCES);
    if (caps.utsns)
        assert_string_equal(r.nodename, "kiln");
    if (caps.is_root && !caps.userns)
        assert_int_equal(r.uid, TEST_UID);

    /* Namespaces, seen from outside. */
    {
        static const char *const kinds[] = {"ipc", "uts", "net", "user"};
        const int want[] = {caps.ipcns, caps.utsns, caps.netns, caps.userns};
        size_t i;
        for (i = 0; i < 4; i++) {
            char a[PATH_MAX], b[64], mine[64];
            ssize_t n;
            snprintf(a, sizeof(a), "/proc/%d/ns/%s", (int)c.pid, kinds[i]);
            n = readlink(a, b, sizeof(b) - 1);
            assert_true(n > 0);
            b[n] = '\0';
            snprintf(a, sizeof(a), "/proc/self/ns/%s", kinds[i]);
            n = readlink(a, mine, sizeof(mine) - 1);
            assert_true(n > 0);
            mine[n] = '\0';
            if (want[i] && strcmp(b, mine) == 0)
                fail_msg("child shares the %s namespace (%s)", kinds[i], b);
        }
    }
    status = finish(c, 'q');
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_network_profile_keeps_net(void **state)
{
    kiln__jail_t j;
    report_t r;
    child_t c;
    char a[64], b[64], mine[64];
    ssize_t n;

    (void)state;
    jail_defaults(&j, -1);
    j.profile = KILN__PROFILE_NETWORK;
    c = spawn(&j, &r);
    if (r.rc != 0)
        fail_msg("jail_enter: %d %s", r.rc, r.err);
    snprintf(a, sizeof(a), "/proc/%d/ns/net", (int)c.pid);
    n = readlink(a, b, sizeof(b) - 1);
    assert_true(n > 0);
    b[n] = '\0';
    n = readlink("/proc/self/ns/net", mine, sizeof(mine) - 1);
    assert_true(n > 0);
    mine[n] = '\0';
    assert_string_equal(b, mine);
    assert_int_equal(WEXITSTATUS(finish(c, 'q')), 0);
}

static void
test_fsize_kills(void **state)
{
    kiln__jail_t j;
    report_t r;
    child_t c;
    int status;

    (void)state;
    jail_defaults(&j, -1);
    c = spawn(&j, &r);
    if (r.rc != 0)
        fail_msg("jail_enter: %d %s", r.rc, r.err);
    status = finish(c, 'f');
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGXFSZ)
        fail_msg("expected death by SIGXFSZ, status 0x%x", status);
}

static void
test_cgroup_slot_joined(void **state)
{
    kiln__cgroup_t cg;
    kiln__jail_t j;
    report_t r;
    child_t c;
    char err[KILN__ERRLEN] = "", path[64], buf[4096], want[64];
    ssize_t n;
    int fd;

    (void)state;
    if (!caps.cgroup_memory && !caps.cgroup_pids) {
        print_message("skipped: no usable cgroup controller\n");
        skip();
    }
    if (kiln__cgroup_setup(&cg, &caps, 2, err, sizeof(err)) != 0)
        fail_msg("cgroup setup: %s", err);
    if (kiln__cgroup_slot_limit(&cg, 1, 256ull << 20, 32, err, sizeof(err)) != 0)
        fail_msg("cgroup limit: %s", err);
    jail_defaults(&j, -1);
    j.slot = 1;
    assert_int_equal(kiln__cgroup_slot_procs(&cg, 1, j.cgroup_memory_procs, j.cgroup_pids_procs),
                     0);
    c = spawn(&j, &r);
    if (r.rc != 0)
        fail_msg("jail_enter: %d %s", r.rc, r.err);
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)c.pid);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    snprintf(want, sizeof(want), "/kiln-%d/slot1\n", (int)getpid());
    if (caps.cgroup_memory == 1 && strstr(buf, want) == NULL)
        fail_msg("child not in %s: %s", want, buf);
    {
        /* Both controllers, each its own line on v1. */
        int lines = 0;
        const char *p = buf;
        while ((p = strstr(p, want)) != NULL) {
            lines++;
            p++;
        }
        assert_int_equal(lines, (caps.cgroup_memory == 1) + (caps.cgroup_pids == 1) +
                                    (caps.cgroup_memory == 2 || caps.cgroup_pids == 2));
    }
    assert_int_equal(WEXITSTATUS(finish(c, 'q')), 0);
    kiln__cgroup_teardown(&cg);
    if (caps.cgroup_memory) {
        char dir[PATH_MAX + 32];
        struct stat st;
        assert_true(snprintf(dir, sizeof(dir), "%s/kiln-%d", caps.cgroup_memory_root,
                             (int)getpid()) < (int)sizeof(dir));
        assert_int_equal(stat(dir, &st), -1);
    }
}

static void
test_failure_names_step(void **state)
{
    kiln__jail_t j;
    report_t r;
    child_t c;
    int status;

    (void)state;
    jail_defaults(&j, -1);
    snprintf(j.cgroup_memory_procs, sizeof(j.cgroup_memory_procs),
             "/nonexistent/kiln/cgroup.procs");
    c = spawn(&j, &r);
    assert_int_equal(r.rc, -ENOENT);
    if (strncmp(r.err, "cgroup: ", 8) != 0 || strstr(r.err, "/nonexistent/kiln") == NULL)
        fail_msg("error should name the step and the path: %s", r.err);
    assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
    close(c.fd);
    assert_int_equal(WEXITSTATUS(status), 1);
}

/* The unprivileged path, as when kiln runs as a normal user: drop to
 * nobody, probe, then play the zygote (new user + pid namespace with the
 * ids mapped) and jail a grandchild. */
static void
test_unprivileged_chain(void **state)
{
    int sv[2], status;
    pid_t pid;
    report_t r;
    size_t have = 0;

    (void)state;
    if (!caps.is_root) {
        print_message("skipped: covered by the other cases when not root\n");
        skip();
    }
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kiln__caps_t ucaps;
        kiln__jail_t j;
        pid_t zygote;

        close(sv[0]);
        if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
            setresuid(65534, 65534, 65534) < 0)
            _exit(10);
        /* A uid change made us non-dumpable, which puts /proc/self/uid_map
         * out of our reach; a user who starts kiln is dumpable. */
        if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
            _exit(16);
        kiln__caps_probe(&ucaps);
        if (ucaps.is_root)
            _exit(11);
        jail_defaults(&j, sv[1]);
        j.uid = j.gid = 0;
        j.plugin_path[0] = '\0';
        zygote =
            (pid_t)syscall(SYS_clone, (ucaps.pidns ? CLONE_NEWPID | CLONE_NEWUSER : 0) | SIGCHLD,
                           NULL, NULL, NULL, NULL);
        if (zygote < 0)
            _exit(12);
        if (zygote == 0) {
            char err[KILN__ERRLEN];
            pid_t child;
            if (ucaps.pidns && kiln__ns_map_self(65534, 65534, err, sizeof(err)) < 0)
                _exit(13);
            child = fork();
            if (child == 0) {
                memset(&r, 0, sizeof(r));
                r.rc = kiln__jail_enter(&j, &ucaps, &filters, r.err, sizeof(r.err));
                r.uid = (long)getuid();
                send_all(r.rc == 0 ? KILN__CHILD_FD : sv[1], &r, sizeof(r));
                _exit(0);
            }
            _exit(waitpid(child, &status, 0) == child && WIFEXITED(status) ? 0 : 14);
        }
        _exit(waitpid(zygote, &status, 0) == zygote && WIFEXITED(status) ? WEXITSTATUS(status)
                                                                         : 15);
    }
    close(sv[1]);
    while (have < sizeof(r)) {
        ssize_t n = read(sv[0], (char *)&r + have, sizeof(r) - have);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(sv[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("unprivileged helper failed: status 0x%x", status);
    assert_int_equal(have, sizeof(r));
    if (r.rc != 0)
        fail_msg("unprivileged jail_enter: %d %s", r.rc, r.err);
}

static int
setup(void **state)
{
    char err[KILN__ERRLEN] = "", path[PATH_MAX + 16];
    int fd;

    (void)state;
    kiln__caps_probe(&caps);
    if (kiln__seccomp_compile(&filters, err, sizeof(err)) != 0) {
        fprintf(stderr, "kiln__seccomp_compile: %s\n", err);
        return -1;
    }
    snprintf(plugin_dir, sizeof(plugin_dir), "/tmp/kiln-jail-test-XXXXXX");
    if (mkdtemp(plugin_dir) == NULL || chmod(plugin_dir, 0755) < 0)
        return -1;
    snprintf(plugin_path, sizeof(plugin_path), "%s/plugin.so", plugin_dir);
    snprintf(path, sizeof(path), "%s/data.txt", plugin_dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int
teardown(void **state)
{
    char path[PATH_MAX + 16];

    (void)state;
    snprintf(path, sizeof(path), "%s/data.txt", plugin_dir);
    unlink(path);
    rmdir(plugin_dir);
    kiln__seccomp_free(&filters);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_network_profile_keeps_net),
        cmocka_unit_test(test_fsize_kills),
        cmocka_unit_test(test_cgroup_slot_joined),
        cmocka_unit_test(test_failure_names_step),
        cmocka_unit_test(test_unprivileged_chain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
