/*
 * zygote.h -- the small process that forks every child.
 *
 * Fork cost grows with the forking process's memory, so children are not
 * forked by the supervisor (which holds queues and buffers) but by a zygote
 * forked from it at start-up, before it grows.  Where the kernel allows, the
 * zygote is the init of a new pid namespace: children see no process outside
 * it, and all of them die with it.  The zygote dies when the supervisor's end
 * of its socket closes.  It never loads plugin code: children do, after fork.
 *
 * Supervisor and zygote exchange fixed-size records over a SOCK_SEQPACKET
 * socketpair; a SPAWN request carries the child's end of its own socketpair
 * as SCM_RIGHTS.
 */
#ifndef KILN_ZYGOTE_H
#define KILN_ZYGOTE_H

#include "sandbox.h"

#include <stdint.h>
#include <sys/types.h>

enum {
    KILN__ZREQ_SPAWN = 1, /* fork a child for (slot, gen) with `jail` */
    KILN__ZREQ_KILL = 2,  /* send `sig` to the child of (slot, gen) */
    KILN__ZREP_SPAWNED = 16,
    KILN__ZREP_EXITED = 17,    /* `status` is the waitpid status */
    KILN__ZREP_SPAWNFAIL = 18, /* `err` is the errno of fork */
};

typedef struct kiln__zreq {
    uint32_t op;
    uint32_t slot;
    uint64_t gen;
    int32_t sig;
    int32_t probe;      /* child only describes the plugin */
    uint32_t max_tasks; /* child retires after this many */
    kiln__jail_t jail;
} kiln__zreq_t;

typedef struct kiln__zrep {
    uint32_t op;
    uint32_t slot;
    uint64_t gen;
    int32_t pid; /* pid in the zygote's namespace */
    int32_t status;
    int32_t err;
} kiln__zrep_t;

typedef struct kiln__zygote {
    int fd;    /* supervisor's end, non-blocking */
    pid_t pid; /* zygote's pid in the supervisor's namespace */
    int pidns; /* 1 if the zygote is the init of a new pid namespace */
    char pidns_why[160];
} kiln__zygote_t;

/* Fork the zygote.  Call early, before the supervisor allocates much and
 * before any thread exists.  0 or -errno with a message. */
int kiln__zygote_start(kiln__zygote_t *z, const kiln__caps_t *caps, const kiln__filters_t *filters,
                       char *err, size_t errlen);
int kiln__zygote_spawn(kiln__zygote_t *z, uint32_t slot, uint64_t gen, const kiln__jail_t *jail,
                       int probe, uint32_t max_tasks, int child_fd);
int kiln__zygote_kill(kiln__zygote_t *z, uint32_t slot, uint64_t gen, int sig);
/* Non-blocking: 1 and *rep filled, 0 if nothing is waiting, -EPIPE if the
 * zygote is gone, other negative errno on error. */
int kiln__zygote_read(kiln__zygote_t *z, kiln__zrep_t *rep);
/* Close the socket (the zygote then kills its children and exits) and reap it. */
void kiln__zygote_stop(kiln__zygote_t *z);

#endif
