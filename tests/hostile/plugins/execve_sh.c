/* hostile_execve_sh: execve("/bin/sh") to write a marker file (args[0]).
 * execve is a forbidden syscall under compute: SandboxViolation, and the
 * marker never appears.  If execve returns, the handler reports its errno. */
#include <errno.h>
#include <kiln/kiln.h>
#include <string.h>
#include <unistd.h>

static int
run(kiln_ctx_t *ctx)
{
    const char *marker = json_string_value(json_array_get(kiln_args(ctx), 0));
    char *argv[] = {"sh", "-c", "echo pwned > \"$0\"", (char *)marker, NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", NULL};

    if (marker == NULL)
        return kiln_fail(ctx, "ValueError", "args[0] must be the marker path");
    execve("/bin/sh", argv, envp);
    return kiln_fail(ctx, "PermissionError", "execve /bin/sh: %s", strerror(errno));
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"execve_sh.run", run}, {"execve_sh.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_execve_sh", .version = "1.0.0", .tasks = tasks, .policy = &policy);
