/*
 * sandbox.h -- the jail: everything from fork to the first handler call.
 *
 * The sandbox knows nothing of Redis or libuv.  The supervisor fills a
 * kiln__jail_t (plain data, fixed size, so it can travel over a socket to the
 * zygote), compiles the seccomp filters once at start-up, and the child walks
 * the containment chain in kiln__jail_enter(), each step only tightening:
 *
 *   close descriptors -> parent-death signal -> cgroup slot -> rlimits ->
 *   namespaces -> unprivileged uid -> no_new_privs -> landlock -> loader filter
 *
 * After the plugin's init the child loads the final filter with
 * kiln__seccomp_apply().  Functions return 0 or a negative errno and write a
 * message naming the cause into `err` (never printing anything).
 */
#ifndef KILN_SANDBOX_H
#define KILN_SANDBOX_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KILN__ERRLEN 512

/* Sandbox profiles are data: each names which syscalls the final filter
 * allows (see seccomp.c).  compute: no sockets, no exec, no new files;
 * network: compute + outbound TCP/UDP sockets and DNS-free connect;
 * threads: compute + clone of threads (for libraries with worker pools). */
enum kiln__profile {
    KILN__PROFILE_COMPUTE = 0,
    KILN__PROFILE_NETWORK = 1,
    KILN__PROFILE_THREADS = 2,
    KILN__PROFILE_COUNT
};

int kiln__profile_parse(const char *name, int *profile); /* -EINVAL for an unknown name */
const char *kiln__profile_name(int profile);

/* A compiled classic-BPF seccomp program (struct sock_filter array). */
typedef struct kiln__bpf {
    void *insns;        /* struct sock_filter[], malloc'd */
    unsigned short len; /* instruction count */
} kiln__bpf_t;

/* Both stages for every profile, compiled by the supervisor before it forks
 * the zygote; children inherit them and only apply them. */
typedef struct kiln__filters {
    kiln__bpf_t loader[KILN__PROFILE_COUNT]; /* enough to dlopen a plugin and run init */
    kiln__bpf_t final[KILN__PROFILE_COUNT];  /* what handlers run under */
} kiln__filters_t;

int kiln__seccomp_compile(kiln__filters_t *f, char *err, size_t errlen);
void kiln__seccomp_free(kiln__filters_t *f);
/* In the child: load `prog` (requires no_new_privs already set). */
int kiln__seccomp_apply(const kiln__bpf_t *prog);
/* Install the SIGSYS handler that reports a trapped syscall on `report_fd`
 * as a KILN__FRAME_SECCOMP frame {"nr":N} (task id 0), then exits the child
 * with status KILN__SECCOMP_EXIT.  The filters keep SIGSYS's handler fixed. */
#define KILN__SECCOMP_EXIT 159
int kiln__seccomp_trap_install(int report_fd);
/* Name of syscall `nr` on this architecture, or "syscall-<nr>" in buf. */
const char *kiln__syscall_name(int nr, char *buf, size_t len);

/* Protections that can be unavailable; index of kiln__caps_t.why. */
enum kiln__cap {
    KILN__CAP_SECCOMP = 0,
    KILN__CAP_LANDLOCK,
    KILN__CAP_USERNS,
    KILN__CAP_PIDNS,
    KILN__CAP_NETNS,
    KILN__CAP_IPCNS,
    KILN__CAP_UTSNS,
    KILN__CAP_CGROUP_MEMORY,
    KILN__CAP_CGROUP_PIDS,
    KILN__CAP_COUNT
};

/* What the kernel and the process allow; probed once in the supervisor.
 * Namespaces are probed the way they are used: as root, each kind alone
 * (the user namespace from an unprivileged uid, as children do); otherwise
 * together with a new user namespace. */
typedef struct kiln__caps {
    int is_root; /* euid 0: children switch to an unprivileged uid */
    int userns;  /* new user namespace works */
    int pidns;   /* new pid namespace works (zygote is its init) */
    int netns;   /* new network namespace works */
    int ipcns;
    int utsns;
    int landlock_abi;  /* 0 = unavailable, else the kernel's landlock ABI */
    int seccomp;       /* seccomp filter mode available */
    int cgroup_memory; /* 1 = cgroup v1 memory controller, 2 = cgroup v2, 0 = none */
    int cgroup_pids;   /* 1 = cgroup v1 pids controller, 2 = v2, 0 = none */
    char cgroup_memory_root[PATH_MAX]; /* where kiln-<pid> is made: the mount point of the
                                          memory hierarchy + this process's own cgroup */
    char cgroup_pids_root[PATH_MAX];   /* same for pids (equal to memory's on v2) */
    char why[KILN__CAP_COUNT][160];    /* per enum kiln__cap: why it is unavailable, "" if not */
} kiln__caps_t;

int kiln__caps_probe(kiln__caps_t *caps);
/* Human-readable report: one line per protection, "applied" or "unavailable:
 * <why>".  Writes at most len bytes; returns the length written. */
size_t kiln__caps_report(const kiln__caps_t *caps, char *buf, size_t len);

/* Per-supervisor cgroup directories: <root>/kiln-<pid>/slot<N>. */
typedef struct kiln__cgroup {
    int memory; /* controllers in use, as in kiln__caps_t */
    int pids;
    char memory_dir[PATH_MAX]; /* <memory root>/kiln-<pid>, "" if unused */
    char pids_dir[PATH_MAX];
    unsigned nslots;
} kiln__cgroup_t;

int kiln__cgroup_setup(kiln__cgroup_t *cg, const kiln__caps_t *caps, unsigned nslots, char *err,
                       size_t errlen);
/* Set slot limits before a child is spawned into it (0 = no limit; v1 also
 * caps memory+swap, v2 sets memory.swap.max to 0). */
int kiln__cgroup_slot_limit(kiln__cgroup_t *cg, unsigned slot, uint64_t memory_bytes,
                            uint32_t pids_max, char *err, size_t errlen);
/* Fill a jail's cgroup_memory_procs/cgroup_pids_procs for `slot` (each
 * PATH_MAX bytes; "" where no controller is in use; on v2 pids is "" as the
 * memory path already joins both).  0 or -ENAMETOOLONG/-EINVAL. */
int kiln__cgroup_slot_procs(const kiln__cgroup_t *cg, unsigned slot, char *memory_procs,
                            char *pids_procs);
/* Restart the slot's peak from the current usage (v1: write 0 to
 * memory.max_usage_in_bytes).  -EOPNOTSUPP on v2, whose memory.peak resets
 * only per open descriptor. */
int kiln__cgroup_slot_reset_peak(const kiln__cgroup_t *cg, unsigned slot);
/* Number of OOM kills in the slot so far (cgroup v1 memory.oom_control
 * "oom_kill", v2 memory.events "oom_kill"); <0 if unknown.  v1 kernels before
 * 4.13 lack "oom_kill": memory.failcnt (times the limit was hit) stands in,
 * so a non-zero value there only suggests an OOM kill. */
long kiln__cgroup_slot_oom_kills(const kiln__cgroup_t *cg, unsigned slot);
/* Peak memory of the slot in bytes (max_usage_in_bytes / memory.peak); 0 if unknown. */
uint64_t kiln__cgroup_slot_peak(const kiln__cgroup_t *cg, unsigned slot);
/* Remove the slot directories and kiln-<pid> (call after the children are
 * gone; retries EBUSY for a short while).  Safe on a zeroed or failed cg. */
void kiln__cgroup_teardown(kiln__cgroup_t *cg);

/* For a process that has just entered a new user namespace without being
 * root outside (the zygote, cloned with CLONE_NEWUSER|CLONE_NEWPID): map its
 * own outer uid and gid to themselves ("deny" to setgroups first).  Without
 * a mapping its children cannot make the nested user namespace that
 * kiln__jail_enter() asks for (EPERM).  0 or -errno with a message. */
int kiln__ns_map_self(uint32_t outer_uid, uint32_t outer_gid, char *err, size_t errlen);

/* Largest encoded settings object a plugin can be given, with its NUL. */
#define KILN__SETTINGS_MAX 4096

/* Everything a child needs to jail itself.  Plain data, fixed size.  A zero
 * limit leaves that limit as inherited (RLIMIT_CORE is always 0). */
typedef struct kiln__jail {
    uint32_t slot;                      /* child slot number, names the cgroup and the uid */
    int32_t profile;                    /* enum kiln__profile */
    uint64_t memory_bytes;              /* memory cap: cgroup limit and RLIMIT_AS/DATA (not
                                           AS/DATA in KILN_SANITIZED builds) */
    uint64_t fsize_bytes;               /* RLIMIT_FSIZE, bytes */
    uint32_t cpu_seconds;               /* RLIMIT_CPU backstop, seconds (soft = hard) */
    uint32_t nofile;                    /* RLIMIT_NOFILE */
    uint32_t nproc;                     /* RLIMIT_NPROC (per uid; each slot has its own uid) */
    uint32_t uid;                       /* uid/gid to run as when root; 0 = stay */
    uint32_t gid;                       /* 0 with a non-zero uid: gid = uid (never group root) */
    int32_t keep_fd;                    /* the IPC channel, kept open (moved to fd 3) */
    char cgroup_memory_procs[PATH_MAX]; /* slot's cgroup.procs to join, "" = none */
    char cgroup_pids_procs[PATH_MAX];
    char plugin_path[PATH_MAX];        /* the .so to load (landlock allows reading it) */
    char settings[KILN__SETTINGS_MAX]; /* the plugin's settings: compact JSON object or "" */
    uint32_t report_rss;               /* send the peak RSS with each outcome (max_rss set) */
} kiln__jail_t;

/* Fixed fd number of the IPC channel inside a child. */
#define KILN__CHILD_FD 3

/* In the child, right after fork: walk the containment chain up to and
 * including the loader filter.  `filters` are the pre-compiled programs. */
int kiln__jail_enter(const kiln__jail_t *jail, const kiln__caps_t *caps,
                     const kiln__filters_t *filters, char *err, size_t errlen);

#endif /* KILN_SANDBOX_H */
