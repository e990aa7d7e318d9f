/*
 * child.h -- the life of a child after fork: jail, load, serve, exit.
 *
 * Internal to kiln.  The zygote calls kiln__child_main() in a freshly forked
 * process; it never returns.  The child's protocol, in order:
 *
 *   HELLO (plugin definition) | INITFAIL and exit
 *   probe mode: wait for QUIT and exit, without running the plugin's init
 *   otherwise: init, final filter, READY, then TASK -> RESULT|FAIL|RETRY
 *   (with PROGRESS and LOG frames while a handler runs) until QUIT, EOF or
 *   max_tasks, then fini and exit.
 */
#ifndef KILN_CHILD_H
#define KILN_CHILD_H

#include "sandbox.h"

/* Exit codes a child uses on purpose (anything else is a crash). */
#define KILN__EXIT_OK       0   /* retired normally */
#define KILN__EXIT_INITFAIL 157 /* jail, load or init failed; INITFAIL was sent */
#define KILN__EXIT_PROTOCOL 158 /* the supervisor sent something unexpected */
#define KILN__EXIT_SECCOMP  159 /* a forbidden syscall was trapped; SECCOMP was sent */

typedef struct kiln__child_opts {
    int probe;          /* only load the plugin and describe it */
    uint32_t max_tasks; /* retire after this many tasks (0 = no limit) */
} kiln__child_opts_t;

void kiln__child_main(const kiln__jail_t *jail, const kiln__caps_t *caps,
                      const kiln__filters_t *filters, const kiln__child_opts_t *opts)
    __attribute__((noreturn));

/* Validate a loaded plugin definition against this runtime's ABI.  0 or
 * -EINVAL with a message such as "built for ABI 99.0, runtime provides 1.0". */
struct kiln_plugin;
int kiln__plugin_check(const struct kiln_plugin *p, char *err, size_t errlen);

#endif /* KILN_CHILD_H */
