/*
 * profile.c -- the sandbox profiles as data: their names, whether they keep
 * the network, and the syscall rules seccomp.c compiles for each.
 *
 * A filter is built from groups of rules.  Every profile has two stages:
 *
 *   loader = base + the profile's groups + loader_files
 *            (enough to dlopen the plugin and its libraries and run init)
 *   final  = base + the profile's groups + final_files
 *            (what handlers run under: no path may be opened)
 *
 * The final filter is stacked on top of the loader filter and the kernel
 * takes the strictest answer of the two, so the loader allows at least what
 * the final allows (it only adds rules).
 *
 * Every syscall no rule allows traps: the child reports it and exits.  Some
 * calls that well-behaved libraries probe answer with an errno instead, so a
 * library can fall back (clone3 -> ENOSYS, creating or removing paths ->
 * EACCES).  The calls in always_denied[] must never appear in any rule;
 * kiln__seccomp_compile() checks that, so a policy edit that breaks the
 * promise fails at start-up.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox.h"
#include "steps.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif

#define ALLOW(n)                                                                                   \
    {                                                                                              \
        n, SCMP_ACT_ALLOW, 0,                                                                      \
        {                                                                                          \
            0, 0, 0, 0                                                                             \
        }                                                                                          \
    }
#define ALLOW_IF(n, a, op, x, y)                                                                   \
    {                                                                                              \
        n, SCMP_ACT_ALLOW, 1,                                                                      \
        {                                                                                          \
            a, op, x, y                                                                            \
        }                                                                                          \
    }
#define ERRNO(n, e)                                                                                \
    {                                                                                              \
        n, SCMP_ACT_ERRNO(e), 0,                                                                   \
        {                                                                                          \
            0, 0, 0, 0                                                                             \
        }                                                                                          \
    }
#define ERRNO_IF(n, e, a, op, x, y)                                                                \
    {                                                                                              \
        n, SCMP_ACT_ERRNO(e), 1,                                                                   \
        {                                                                                          \
            a, op, x, y                                                                            \
        }                                                                                          \
    }
#define END                                                                                        \
    {                                                                                              \
        NULL, 0, 0,                                                                                \
        {                                                                                          \
            0, 0, 0, 0                                                                             \
        }                                                                                          \
    }

/* Flags that make open() write or create something. */
#define OPEN_WRITE_FLAGS (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)

/* clone() may only make threads: CLONE_THREAD set, no namespace flag. */
#define CLONE_CHECK_MASK                                                                           \
    (CLONE_THREAD | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |  \
     CLONE_NEWPID | CLONE_NEWNET)

/* The glibc runtime: what any handler may do with memory, time, signals and
 * the descriptors it holds (the IPC channel on fd 3 and handed-in files). */
static const kiln__rule_t base[] = {
    /* descriptors */
    ALLOW("read"),
    ALLOW("write"),
    ALLOW("readv"),
    ALLOW("writev"),
    ALLOW("pread64"),
    ALLOW("pwrite64"),
    ALLOW("preadv"),
    ALLOW("pwritev"),
    ALLOW("preadv2"),
    ALLOW("pwritev2"),
    ALLOW("lseek"),
    ALLOW("close"),
    ALLOW("close_range"),
    ALLOW("dup"),
    ALLOW("dup2"),
    ALLOW("dup3"),
    ALLOW("ftruncate"),
    ALLOW("fallocate"),
    ALLOW("fsync"),
    ALLOW("fdatasync"),
    ALLOW("sync_file_range"),
    ALLOW("fadvise64"),
    ALLOW("flock"),
    ALLOW("sendfile"),
    ALLOW("copy_file_range"),
    ALLOW("splice"),
    ALLOW("tee"),
    ALLOW("pipe"),
    ALLOW("pipe2"),
    ALLOW("eventfd"),
    ALLOW("eventfd2"),
    ALLOW("memfd_create"), /* anonymous memory, charged to the memory cgroup */
    ALLOW("poll"),
    ALLOW("ppoll"),
    ALLOW("select"),
    ALLOW("pselect6"),
    ALLOW("epoll_create"),
    ALLOW("epoll_create1"),
    ALLOW("epoll_ctl"),
    ALLOW("epoll_wait"),
    ALLOW("epoll_pwait"),
    ALLOW("epoll_pwait2"),
    ALLOW("sendmsg"), /* the IPC channel, descriptors included */
    ALLOW("recvmsg"),
    /* metadata: landlock and the namespaces govern what paths reach */
    ALLOW("fstat"),
    ALLOW("fstatfs"),
    ALLOW("newfstatat"),
    ALLOW("stat"),
    ALLOW("lstat"),
    ALLOW("statx"),
    ALLOW("access"),
    ALLOW("faccessat"),
    ALLOW("faccessat2"),
    ALLOW("getcwd"),
    /* fcntl: no F_SETOWN/F_SETSIG (signals to others), no leases, no notify */
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_DUPFD, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_DUPFD_CLOEXEC, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_GETFD, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_SETFD, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_GETFL, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_SETFL, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_GETLK, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_SETLK, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_SETLKW, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_OFD_GETLK, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_OFD_SETLK, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_OFD_SETLKW, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_ADD_SEALS, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_GET_SEALS, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_GETPIPE_SZ, 0),
    ALLOW_IF("fcntl", 1, SCMP_CMP_EQ, F_SETPIPE_SZ, 0),
    /* ioctl: isatty() and friends, nothing that reaches a device */
    ALLOW_IF("ioctl", 1, SCMP_CMP_EQ, TCGETS, 0),
    ALLOW_IF("ioctl", 1, SCMP_CMP_EQ, TIOCGWINSZ, 0),
    ALLOW_IF("ioctl", 1, SCMP_CMP_EQ, FIONREAD, 0),
    ALLOW_IF("ioctl", 1, SCMP_CMP_EQ, FIONBIO, 0),
    ALLOW_IF("ioctl", 1, SCMP_CMP_EQ, FIOCLEX, 0),
    ALLOW_IF("ioctl", 1, SCMP_CMP_EQ, FIONCLEX, 0),
    /* memory */
    ALLOW("mmap"),
    ALLOW("munmap"),
    ALLOW("mremap"),
    ALLOW("mprotect"),
    ALLOW("madvise"),
    ALLOW("mincore"),
    ALLOW("msync"),
    ALLOW("brk"),
    ALLOW("membarrier"),
    /* signals: to itself only (the child is its own session; see jail.c),
     * and the SIGSYS reporter cannot be replaced */
    ALLOW_IF("rt_sigaction", 0, SCMP_CMP_NE, SIGSYS, 0),
    ALLOW("rt_sigprocmask"),
    ALLOW("rt_sigreturn"),
    ALLOW("rt_sigpending"),
    ALLOW("rt_sigtimedwait"),
    ALLOW("rt_sigsuspend"),
    ALLOW("sigaltstack"),
    ALLOW("pause"),
    ALLOW("tgkill"),
    ALLOW("tkill"),
    ALLOW_IF("kill", 0, SCMP_CMP_EQ, 0, 0),
    /* threads' plumbing (also used by a single-threaded glibc) */
    ALLOW("futex"),
    ALLOW("futex_waitv"),
    ALLOW("set_robust_list"),
    ALLOW("get_robust_list"),
    ALLOW("rseq"),
    ALLOW("set_tid_address"),
    ALLOW("arch_prctl"),
    ALLOW("sched_yield"),
    ALLOW("sched_getaffinity"),
    ALLOW("sched_getparam"),
    ALLOW("sched_getscheduler"),
    ALLOW("sched_get_priority_max"),
    ALLOW("sched_get_priority_min"),
    ALLOW("getcpu"),
    ALLOW_IF("prctl", 0, SCMP_CMP_EQ, PR_SET_NAME, 0),
    ALLOW_IF("prctl", 0, SCMP_CMP_EQ, PR_GET_NAME, 0),
    ALLOW_IF("prctl", 0, SCMP_CMP_EQ, PR_SET_VMA, 0),
    ERRNO("clone3", ENOSYS), /* glibc then falls back to clone(), checked below */
    /* time */
    ALLOW("clock_gettime"),
    ALLOW("clock_getres"),
    ALLOW("clock_nanosleep"),
    ALLOW("nanosleep"),
    ALLOW("gettimeofday"),
    ALLOW("time"),
    ALLOW("times"),
    ALLOW("getitimer"),
    ALLOW("setitimer"),
    ALLOW("alarm"),
    ALLOW("timer_create"),
    ALLOW("timer_settime"),
    ALLOW("timer_gettime"),
    ALLOW("timer_getoverrun"),
    ALLOW("timer_delete"),
    /* identity and limits (raising a hard limit needs a capability the
     * child does not have; other processes' limits are out of reach) */
    ALLOW("getpid"),
    ALLOW("gettid"),
    ALLOW("getppid"),
    ALLOW("getpgrp"),
    ALLOW("getuid"),
    ALLOW("geteuid"),
    ALLOW("getgid"),
    ALLOW("getegid"),
    ALLOW("getresuid"),
    ALLOW("getresgid"),
    ALLOW("getgroups"),
    ALLOW("uname"),
    ALLOW("sysinfo"),
    ALLOW("getrusage"),
    ALLOW("getrlimit"),
    ALLOW("setrlimit"),
    ALLOW_IF("prlimit64", 0, SCMP_CMP_EQ, 0, 0),
    ALLOW("getrandom"),
    /* Constructors of libraries Debian's FFmpeg links (libavcodec pulls in
     * libx265 -> libnuma, libavformat libssh -> libgcrypt): libnuma probes
     * the NUMA memory policy, libgcrypt locks its secure memory pool.  An
     * errno, not a trap: "no NUMA", "may not lock"; both carry on. */
    ERRNO("get_mempolicy", ENOSYS),
    ERRNO("mlock", EPERM),
    ALLOW("restart_syscall"),
    ALLOW("exit"),
    ALLOW("exit_group"),
    /* paths: no new files, no removal, no metadata change; an errno, not a
     * trap, so libraries that try can recover */
    ERRNO("openat2", ENOSYS), /* flags in a struct: cannot be checked */
    ERRNO("mkdir", EACCES),
    ERRNO("mkdirat", EACCES),
    ERRNO("rmdir", EACCES),
    ERRNO("unlink", EACCES),
    ERRNO("unlinkat", EACCES),
    ERRNO("rename", EACCES),
    ERRNO("renameat", EACCES),
    ERRNO("renameat2", EACCES),
    ERRNO("link", EACCES),
    ERRNO("linkat", EACCES),
    ERRNO("symlink", EACCES),
    ERRNO("symlinkat", EACCES),
    ERRNO("chmod", EACCES),
    ERRNO("fchmodat", EACCES),
    ERRNO("fchmodat2", EACCES),
    ERRNO("chown", EACCES),
    ERRNO("lchown", EACCES),
    ERRNO("fchownat", EACCES),
    ERRNO("truncate", EACCES),
    ERRNO("mknod", EACCES),
    ERRNO("mknodat", EACCES),
    ERRNO("utime", EACCES),
    ERRNO("utimes", EACCES),
    ERRNO("utimensat", EACCES),
    ERRNO("futimesat", EACCES),
    END,
};

/* network: outbound TCP and UDP over IPv4/IPv6.  Local sockets and netlink
 * answer EAFNOSUPPORT so getaddrinfo() and friends fail softly. */
static const kiln__rule_t network[] = {
    ALLOW_IF("socket", 0, SCMP_CMP_EQ, AF_INET, 0),
    ALLOW_IF("socket", 0, SCMP_CMP_EQ, AF_INET6, 0),
    ERRNO_IF("socket", EAFNOSUPPORT, 0, SCMP_CMP_EQ, AF_UNIX, 0),
    ERRNO_IF("socket", EAFNOSUPPORT, 0, SCMP_CMP_EQ, AF_NETLINK, 0),
    ALLOW("connect"),
    ALLOW("sendto"),
    ALLOW("recvfrom"),
    ALLOW("sendmmsg"),
    ALLOW("recvmmsg"),
    ALLOW("getsockopt"),
    ALLOW("setsockopt"),
    ALLOW("getsockname"),
    ALLOW("getpeername"),
    ALLOW("shutdown"),
    END,
};

/* threads: clone() of threads only (no fork, no namespaces). */
static const kiln__rule_t threads[] = {
    ALLOW_IF("clone", 0, SCMP_CMP_MASKED_EQ, CLONE_CHECK_MASK, CLONE_THREAD),
    END,
};

/* Loader stage: dlopen() opens the plugin and its libraries read-only and
 * maps them; the plugin's init may read files beside it (landlock decides
 * which).  Opening for writing answers EACCES.  seccomp() lets the child
 * stack the final filter on top. */
static const kiln__rule_t loader_files[] = {
    ALLOW_IF("open", 1, SCMP_CMP_MASKED_EQ, OPEN_WRITE_FLAGS, 0),
    ERRNO_IF("open", EACCES, 1, SCMP_CMP_MASKED_EQ, O_WRONLY, O_WRONLY),
    ERRNO_IF("open", EACCES, 1, SCMP_CMP_MASKED_EQ, O_RDWR, O_RDWR),
    ERRNO_IF("open", EACCES, 1, SCMP_CMP_MASKED_EQ, O_CREAT, O_CREAT),
    ERRNO_IF("open", EACCES, 1, SCMP_CMP_MASKED_EQ, O_TRUNC, O_TRUNC),
    ALLOW_IF("openat", 2, SCMP_CMP_MASKED_EQ, OPEN_WRITE_FLAGS, 0),
    ERRNO_IF("openat", EACCES, 2, SCMP_CMP_MASKED_EQ, O_WRONLY, O_WRONLY),
    ERRNO_IF("openat", EACCES, 2, SCMP_CMP_MASKED_EQ, O_RDWR, O_RDWR),
    ERRNO_IF("openat", EACCES, 2, SCMP_CMP_MASKED_EQ, O_CREAT, O_CREAT),
    ERRNO_IF("openat", EACCES, 2, SCMP_CMP_MASKED_EQ, O_TRUNC, O_TRUNC),
    ERRNO("creat", EACCES),
    ALLOW("readlink"),
    ALLOW("readlinkat"),
    ALLOW("getdents64"),
    ALLOW("statfs"),
    ALLOW_IF("seccomp", 0, SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER, 0),
    END,
};

/* Final stage: the handler opens nothing by path; files come as descriptors. */
static const kiln__rule_t final_files[] = {
    ERRNO("open", EACCES),
    ERRNO("openat", EACCES),
    ERRNO("creat", EACCES),
    END,
};

/* Denied in every profile and stage.  They trap like everything that is not
 * allowed; listing them here makes the promise checkable. */
static const char *const always_denied[] = {
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
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
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
    "fork",
    "vfork",
    "name_to_handle_at",
    "open_by_handle_at",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "kcmp",
    "iopl",
    "ioperm",
    "quotactl",
    "syslog",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "capset",
    "socketpair",
    "bind",
    "listen",
    "accept",
    "accept4",
};

/* The groups of every profile and stage, in the order they are added. */
static const kiln__rule_t *const groups[KILN__PROFILE_COUNT][2][4] = {
    [KILN__PROFILE_COMPUTE] = {{base, loader_files, NULL}, {base, final_files, NULL}},
    [KILN__PROFILE_NETWORK] = {{base, network, loader_files, NULL},
                               {base, network, final_files, NULL}},
    [KILN__PROFILE_THREADS] = {{base, threads, loader_files, NULL},
                               {base, threads, final_files, NULL}},
};

static const struct {
    const char *name;
    int network; /* 1: keep the host network namespace, let landlock allow TCP connect */
} profiles[KILN__PROFILE_COUNT] = {
    [KILN__PROFILE_COMPUTE] = {"compute", 0},
    [KILN__PROFILE_NETWORK] = {"network", 1},
    [KILN__PROFILE_THREADS] = {"threads", 0},
};

const kiln__rule_t *const *
kiln__profile_rules(int profile, int stage)
{
    static const kiln__rule_t *const none[1] = {NULL};

    if (profile < 0 || profile >= KILN__PROFILE_COUNT || stage < 0 || stage > 1)
        return none;
    return groups[profile][stage];
}

int
kiln__syscall_always_denied(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(always_denied) / sizeof(always_denied[0]); i++)
        if (strcmp(name, always_denied[i]) == 0)
            return 1;
    return 0;
}

int
kiln__profile_parse(const char *name, int *profile)
{
    int i;

    if (name == NULL)
        return -EINVAL;
    for (i = 0; i < KILN__PROFILE_COUNT; i++) {
        if (strcmp(name, profiles[i].name) == 0) {
            *profile = i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *
kiln__profile_name(int profile)
{
    if (profile < 0 || profile >= KILN__PROFILE_COUNT)
        return "unknown";
    return profiles[profile].name;
}

int
kiln__profile_has_network(int profile)
{
    if (profile < 0 || profile >= KILN__PROFILE_COUNT)
        return 0;
    return profiles[profile].network;
}
