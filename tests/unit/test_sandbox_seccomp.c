/*
 * test_sandbox_seccomp.c -- the syscall profiles, applied in forked children.
 *
 * Each case forks; the child installs the SIGSYS reporter on a socketpair,
 * sets no_new_privs, loads one or two filters and tries something.  It says
 * how that went by its exit status; a trapped syscall shows up as the
 * KILN__FRAME_SECCOMP frame and exit status KILN__SECCOMP_EXIT.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "frame.h"
#include "sandbox.h"
#include "steps.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

static kiln__filters_t filters;

typedef struct outcome {
    int exited;  /* WIFEXITED */
    int code;    /* exit code, or the signal */
    int trapped; /* a KILN__FRAME_SECCOMP frame arrived */
    long nr;     /* its syscall number */
} outcome_t;

typedef int (*action_fn)(void *arg);

/* Fork; in the child load `first` (and `second` on top, if any) then run
 * `fn`, exiting with its result. */
static outcome_t
run_filtered(const kiln__bpf_t *first, const kiln__bpf_t *second, action_fn fn, void *arg)
{
    outcome_t o;
    int sv[2], status;
    pid_t pid;

    memset(&o, 0, sizeof(o));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        if (kiln__seccomp_trap_install(sv[1]) < 0)
            _exit(200);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(201);
        if (kiln__seccomp_apply(first) < 0)
            _exit(202);
        if (second != NULL && kiln__seccomp_apply(second) < 0)
            _exit(203);
        _exit(fn(arg));
    }
    close(sv[1]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    o.exited = WIFEXITED(status);
    o.code = o.exited ? WEXITSTATUS(status) : WTERMSIG(status);
    {
        unsigned char buf[256];
        ssize_t n = recv(sv[0], buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (n >= KILN__FRAME_HDR) {
            uint32_t type, len;
            memcpy(&type, buf, 4);
            memcpy(&len, buf + 4, 4);
            buf[n] = '\0';
            assert_int_equal(type, KILN__FRAME_SECCOMP);
            assert_int_equal(len, (uint32_t)(n - KILN__FRAME_HDR));
            assert_int_equal(sscanf((char *)buf + KILN__FRAME_HDR, "{\"nr\":%ld}", &o.nr), 1);
            o.trapped = 1;
        }
    }
    close(sv[0]);
    return o;
}

static void
assert_trapped(outcome_t o, long nr)
{
    if (!o.trapped || !o.exited || o.code != KILN__SECCOMP_EXIT || o.nr != nr)
        fail_msg("expected a trap of syscall %ld (exit %d), got trapped=%d nr=%ld exited=%d "
                 "code=%d",
                 nr, KILN__SECCOMP_EXIT, o.trapped, o.nr, o.exited, o.code);
}

/* pthread_create() blocks every signal around clone(): the kernel then
 * cannot run the reporter and kills with SIGSYS instead. */
static void
assert_trapped_or_sigsys(outcome_t o, long nr)
{
    if (!o.exited && o.code == SIGSYS && !o.trapped)
        return;
    assert_trapped(o, nr);
}

static void
assert_exit0(outcome_t o)
{
    if (o.trapped || !o.exited || o.code != 0)
        fail_msg("expected exit 0, got trapped=%d nr=%ld exited=%d code=%d", o.trapped, o.nr,
                 o.exited, o.code);
}

/* ---- child actions: 0 on the expected result, else a code naming it ---- */

static int
do_socket_inet(void *arg)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    (void)arg;
    return fd >= 0 ? 0 : 10;
}

static int
do_socket_unix(void *arg)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    (void)arg;
    return fd < 0 && errno == EAFNOSUPPORT ? 0 : 11;
}

static int
do_execve(void *arg)
{
    char *argv[] = {"/bin/true", NULL};
    (void)arg;
    execve("/bin/true", argv, environ);
    return 12;
}

static int
do_ptrace(void *arg)
{
    (void)arg;
    ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    return 13;
}

static int
do_open_read(void *arg)
{
    int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
    (void)arg;
    if (fd < 0)
        return errno == EACCES ? 1 : 14;
    close(fd);
    return 0;
}

static int
do_open_write(void *arg)
{
    int fd = open("/tmp/kiln-test-should-not-exist", O_WRONLY | O_CREAT, 0600);
    (void)arg;
    return fd < 0 && errno == EACCES ? 0 : 15;
}

static int
do_mkdir(void *arg)
{
    (void)arg;
    return mkdir("/tmp/kiln-test-dir-should-not-exist", 0700) < 0 && errno == EACCES ? 0 : 16;
}

static int
do_openat2(void *arg)
{
    (void)arg;
    return syscall(SYS_openat2, AT_FDCWD, "/etc/passwd", NULL, 0) < 0 && errno == ENOSYS ? 0 : 17;
}

static int
do_clone3(void *arg)
{
    (void)arg;
    return syscall(SYS_clone3, NULL, 0) < 0 && errno == ENOSYS ? 0 : 18;
}

static void *
thread_body(void *arg)
{
    return arg;
}

static int
do_thread(void *arg)
{
    pthread_t t;
    void *ret = NULL;
    (void)arg;
    if (pthread_create(&t, NULL, thread_body, (void *)0x1234) != 0)
        return 19;
    if (pthread_join(t, &ret) != 0 || ret != (void *)0x1234)
        return 20;
    return 0;
}

static int
do_fork(void *arg)
{
    pid_t pid = fork();
    (void)arg;
    if (pid == 0)
        _exit(0);
    return 21;
}

static int
do_kill_other(void *arg)
{
    (void)arg;
    kill(getppid(), 0);
    return 22;
}

static int
do_kill_group(void *arg)
{
    (void)arg;
    return kill(0, 0) == 0 ? 0 : 23;
}

static int
do_sigaction_sigsys(void *arg)
{
    struct sigaction sa;
    (void)arg;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGSYS, &sa, NULL);
    return 24;
}

static int
do_runtime(void *arg)
{
    /* What a handler does all the time: memory, time, its descriptors. */
    struct timespec ts;
    char *p = malloc(1 << 20), buf[8];
    int pfd[2];
    (void)arg;
    if (p == NULL)
        return 25;
    memset(p, 1, 1 << 20);
    free(p);
    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
        return 26;
    if (pipe2(pfd, O_CLOEXEC) < 0 || write(pfd[1], "x", 1) != 1 || read(pfd[0], buf, 1) != 1)
        return 27;
    if (isatty(pfd[0]))
        return 28;
    if (getrandom(buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
        return 29;
    return 0;
}

static int
do_raw_syscall(void *arg)
{
    /* Harmless arguments: whatever slipped through would fail anyway. */
    syscall(*(long *)arg, 0, 0, 0, 0, 0, 0);
    return 30;
}

/* What the issue says every profile denies, and execve. */
static const char *const must_trap[] = {
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "personality",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "chroot",
    "acct",
    "execve",
    "execveat",
};

/* ---- tests -------------------------------------------------------------- */

static void
test_compile(void **state)
{
    int p;
    (void)state;
    for (p = 0; p < KILN__PROFILE_COUNT; p++) {
        assert_non_null(filters.loader[p].insns);
        assert_non_null(filters.final[p].insns);
        assert_true(filters.loader[p].len > 10);
        assert_true(filters.final[p].len > 10);
    }
}

static void
test_profile_names(void **state)
{
    int p = -1;
    (void)state;
    assert_int_equal(kiln__profile_parse("compute", &p), 0);
    assert_int_equal(p, KILN__PROFILE_COMPUTE);
    assert_int_equal(kiln__profile_parse("network", &p), 0);
    assert_int_equal(p, KILN__PROFILE_NETWORK);
    assert_int_equal(kiln__profile_parse("threads", &p), 0);
    assert_int_equal(p, KILN__PROFILE_THREADS);
    assert_int_equal(kiln__profile_parse("root", &p), -EINVAL);
    assert_string_equal(kiln__profile_name(KILN__PROFILE_NETWORK), "network");
}

static void
test_syscall_name(void **state)
{
    char buf[64];
    (void)state;
    assert_string_equal(kiln__syscall_name(SYS_socket, buf, sizeof(buf)), "socket");
    assert_string_equal(kiln__syscall_name(99999, buf, sizeof(buf)), "syscall-99999");
}

static void
test_always_denied_in_every_profile_and_stage(void **state)
{
    size_t i;
    int p, stage;

    (void)state;
    for (i = 0; i < sizeof(must_trap) / sizeof(must_trap[0]); i++) {
        long nr = seccomp_syscall_resolve_name(must_trap[i]);
        if (!kiln__syscall_always_denied(must_trap[i]))
            fail_msg("%s is missing from the always-denied list", must_trap[i]);
        assert_true(nr >= 0);
        for (p = 0; p < KILN__PROFILE_COUNT; p++) {
            for (stage = 0; stage < 2; stage++) {
                const kiln__rule_t *const *g = kiln__profile_rules(p, stage);
                const kiln__bpf_t *prog = stage ? &filters.final[p] : &filters.loader[p];
                outcome_t o;
                for (; *g != NULL; g++) {
                    const kiln__rule_t *r;
                    for (r = *g; r->name != NULL; r++)
                        if (strcmp(r->name, must_trap[i]) == 0)
                            fail_msg("%s has a rule in %s", r->name, kiln__profile_name(p));
                }
                o = run_filtered(prog, NULL, do_raw_syscall, &nr);
                if (!o.trapped || o.nr != nr)
                    fail_msg("%s did not trap in profile %s, %s stage (code %d)", must_trap[i],
                             kiln__profile_name(p), stage ? "final" : "loader", o.code);
            }
        }
    }
}

static void
test_compute_final_traps_socket(void **state)
{
    (void)state;
    assert_trapped(run_filtered(&filters.final[KILN__PROFILE_COMPUTE], NULL, do_socket_inet, NULL),
                   SYS_socket);
}

static void
test_execve_and_ptrace_trap_everywhere(void **state)
{
    int p;
    (void)state;
    for (p = 0; p < KILN__PROFILE_COUNT; p++) {
        assert_trapped(run_filtered(&filters.loader[p], NULL, do_execve, NULL), SYS_execve);
        assert_trapped(run_filtered(&filters.final[p], NULL, do_execve, NULL), SYS_execve);
        assert_trapped(run_filtered(&filters.loader[p], NULL, do_ptrace, NULL), SYS_ptrace);
        assert_trapped(run_filtered(&filters.final[p], NULL, do_ptrace, NULL), SYS_ptrace);
        assert_trapped(run_filtered(&filters.final[p], NULL, do_fork, NULL), SYS_clone);
    }
}

static void
test_final_denies_paths(void **state)
{
    int p;
    (void)state;
    for (p = 0; p < KILN__PROFILE_COUNT; p++) {
        outcome_t o = run_filtered(&filters.final[p], NULL, do_open_read, NULL);
        if (o.trapped || !o.exited || o.code != 1)
            fail_msg("%s final: open O_RDONLY should fail with EACCES (code %d, trapped %d)",
                     kiln__profile_name(p), o.code, o.trapped);
        assert_exit0(run_filtered(&filters.final[p], NULL, do_open_write, NULL));
        assert_exit0(run_filtered(&filters.final[p], NULL, do_mkdir, NULL));
        assert_exit0(run_filtered(&filters.final[p], NULL, do_openat2, NULL));
        assert_exit0(run_filtered(&filters.final[p], NULL, do_clone3, NULL));
    }
}

static void
test_loader_reads_but_does_not_write(void **state)
{
    int p;
    (void)state;
    for (p = 0; p < KILN__PROFILE_COUNT; p++) {
        assert_exit0(run_filtered(&filters.loader[p], NULL, do_open_read, NULL));
        assert_exit0(run_filtered(&filters.loader[p], NULL, do_open_write, NULL));
        assert_exit0(run_filtered(&filters.loader[p], NULL, do_mkdir, NULL));
    }
    /* A syscall no profile allows traps in the loader stage too. */
    assert_trapped(run_filtered(&filters.loader[KILN__PROFILE_COMPUTE], NULL, do_socket_inet, NULL),
                   SYS_socket);
}

static void
test_final_stacked_on_loader(void **state)
{
    outcome_t o;
    (void)state;
    /* The child's real sequence: loader, then final on top. */
    o = run_filtered(&filters.loader[KILN__PROFILE_COMPUTE], &filters.final[KILN__PROFILE_COMPUTE],
                     do_open_read, NULL);
    assert_false(o.trapped);
    assert_int_equal(o.code, 1);
    assert_exit0(run_filtered(&filters.loader[KILN__PROFILE_COMPUTE],
                              &filters.final[KILN__PROFILE_COMPUTE], do_runtime, NULL));
}

static void
test_runtime_allowed(void **state)
{
    int p;
    (void)state;
    for (p = 0; p < KILN__PROFILE_COUNT; p++)
        assert_exit0(run_filtered(&filters.final[p], NULL, do_runtime, NULL));
}

static void
test_threads_only_in_threads(void **state)
{
    (void)state;
    assert_exit0(run_filtered(&filters.final[KILN__PROFILE_THREADS], NULL, do_thread, NULL));
    assert_trapped_or_sigsys(
        run_filtered(&filters.final[KILN__PROFILE_COMPUTE], NULL, do_thread, NULL), SYS_clone);
    assert_trapped_or_sigsys(
        run_filtered(&filters.final[KILN__PROFILE_NETWORK], NULL, do_thread, NULL), SYS_clone);
    /* threads, but still no fork */
    assert_trapped(run_filtered(&filters.final[KILN__PROFILE_THREADS], NULL, do_fork, NULL),
                   SYS_clone);
}

static void
test_network_sockets(void **state)
{
    (void)state;
    assert_exit0(run_filtered(&filters.final[KILN__PROFILE_NETWORK], NULL, do_socket_inet, NULL));
    assert_exit0(run_filtered(&filters.final[KILN__PROFILE_NETWORK], NULL, do_socket_unix, NULL));
    assert_trapped(run_filtered(&filters.final[KILN__PROFILE_THREADS], NULL, do_socket_inet, NULL),
                   SYS_socket);
}

static void
test_signals(void **state)
{
    (void)state;
    assert_trapped(run_filtered(&filters.final[KILN__PROFILE_COMPUTE], NULL, do_kill_other, NULL),
                   SYS_kill);
    assert_exit0(run_filtered(&filters.final[KILN__PROFILE_COMPUTE], NULL, do_kill_group, NULL));
    assert_trapped(
        run_filtered(&filters.final[KILN__PROFILE_COMPUTE], NULL, do_sigaction_sigsys, NULL),
        SYS_rt_sigaction);
}

static int
setup(void **state)
{
    char err[KILN__ERRLEN] = "";
    (void)state;
    if (kiln__seccomp_compile(&filters, err, sizeof(err)) != 0) {
        fprintf(stderr, "kiln__seccomp_compile: %s\n", err);
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    kiln__seccomp_free(&filters);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile),
        cmocka_unit_test(test_profile_names),
        cmocka_unit_test(test_syscall_name),
        cmocka_unit_test(test_always_denied_in_every_profile_and_stage),
        cmocka_unit_test(test_compute_final_traps_socket),
        cmocka_unit_test(test_execve_and_ptrace_trap_everywhere),
        cmocka_unit_test(test_final_denies_paths),
        cmocka_unit_test(test_loader_reads_but_does_not_write),
        cmocka_unit_test(test_final_stacked_on_loader),
        cmocka_unit_test(test_runtime_allowed),
        cmocka_unit_test(test_threads_only_in_threads),
        cmocka_unit_test(test_network_sockets),
        cmocka_unit_test(test_signals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
