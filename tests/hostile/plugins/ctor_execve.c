/* hostile_ctor_execve: a constructor that execs /bin/sh at dlopen to write
 * MARKER.  The loader filter traps execve, the child dies before it says
 * hello, kiln refuses the plugin naming the syscall, and MARKER never
 * appears.  If the constructor survives, ctor_execve.run reports the errno. */
#include <errno.h>
#include <kiln/kiln.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MARKER "/tmp/kiln-hostile-ctor-execve"

static char seen[256] = "constructor did not run";

__attribute__((constructor)) static void
hostile_ctor(void)
{
    char *argv[] = {"sh", "-c", "echo pwned > " MARKER, NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", NULL};

    execve("/bin/sh", argv, envp);
    snprintf(seen, sizeof(seen), "constructor: execve /bin/sh: %s", strerror(errno));
}

static int
run(kiln_ctx_t *ctx)
{
    return kiln_fail(ctx, "RuntimeError", "%s", seen);
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"ctor_execve.run", run}, {"ctor_execve.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_ctor_execve", .version = "1.0.0", .tasks = tasks, .policy = &policy);
