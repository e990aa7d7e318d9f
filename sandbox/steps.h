/*
 * steps.h -- the steps of the containment chain, one file each (private to
 * sandbox/; the supervisor uses sandbox.h).
 *
 * kiln__jail_enter() (jail.c) calls them in order.  Each returns 0 or a
 * negative errno and writes "<step>: <cause>" into err; none prints.
 */
#ifndef KILN_SANDBOX_STEPS_H
#define KILN_SANDBOX_STEPS_H

#include "sandbox.h"

#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>

/* rlimit.c: AS, DATA, CPU, FSIZE, NOFILE and CORE=0 from the jail (zero
 * fields are left as they are; AS/DATA are skipped in KILN_SANITIZED builds,
 * where ASan reserves terabytes of address space). */
int kiln__rlimit_apply(const kiln__jail_t *jail, char *err, size_t errlen);
/* rlimit.c: RLIMIT_NPROC, after the uid switch (root ignores it). */
int kiln__rlimit_nproc(const kiln__jail_t *jail, char *err, size_t errlen);

/* ns.c: as root, new ipc/uts(/net) namespaces then the slot's uid and gid;
 * otherwise a new user namespace together with ipc/uts(/net). */
int kiln__ns_enter(const kiln__jail_t *jail, const kiln__caps_t *caps, char *err, size_t errlen);
/* ns.c: as root, the user namespace, entered last (after the uid switch). */
int kiln__ns_user(const kiln__caps_t *caps, char *err, size_t errlen);
/* ns.c: the unshare(2) flags kiln__ns_enter() asks for (for tests and reports). */
int kiln__ns_flags(const kiln__jail_t *jail, const kiln__caps_t *caps);

/* landlock.c: read-only access to the system libraries and the plugin's
 * directory, nothing else; `abi` is caps->landlock_abi. */
int kiln__landlock_apply(const char *plugin_path, int profile, int abi, char *err, size_t errlen);
/* landlock.c: the kernel's landlock ABI, or -errno when unavailable. */
int kiln__landlock_abi(void);

/* cgroup.c: find the memory and pids controllers (v1 or v2) and the
 * directory under which kiln-<pid> is made; fills caps->cgroup_* and the
 * why lines KILN__CAP_CGROUP_MEMORY/PIDS. */
void kiln__cgroup_probe(kiln__caps_t *caps);

/* profile.c: one seccomp rule: a syscall by name, the action when it
 * matches, at most one argument condition (rules for one syscall are OR-ed).
 * A table ends with name NULL. */
typedef struct kiln__rule {
    const char *name;
    uint32_t action; /* SCMP_ACT_ALLOW or SCMP_ACT_ERRNO(e) */
    unsigned nargs;  /* 0 or 1 */
    struct scmp_arg_cmp arg;
} kiln__rule_t;

enum { KILN__STAGE_LOADER = 0, KILN__STAGE_FINAL = 1 };

/* profile.c: the rule tables of a profile's stage, NULL-terminated. */
const kiln__rule_t *const *kiln__profile_rules(int profile, int stage);
/* profile.c: 1 if `name` is denied in every profile and stage. */
int kiln__syscall_always_denied(const char *name);

/* profile.c: 1 if the profile keeps the network (no CLONE_NEWNET, landlock lets TCP connect). */
int kiln__profile_has_network(int profile);

#endif /* KILN_SANDBOX_STEPS_H */
