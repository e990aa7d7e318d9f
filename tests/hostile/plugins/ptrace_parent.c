/* hostile_ptrace_parent: ptrace(PTRACE_ATTACH) to the parent (the zygote or
 * the supervisor), then PTRACE_TRACEME.  ptrace is denied in every profile:
 * SandboxViolation on the first call.  If the calls return, the handler
 * reports both errnos. */
#include <errno.h>
#include <kiln/kiln.h>
#include <string.h>
#include <sys/ptrace.h>
#include <unistd.h>

static int
run(kiln_ctx_t *ctx)
{
    pid_t parent = getppid();
    int attach_err = 0, traceme_err = 0;

    if (ptrace(PTRACE_ATTACH, parent, NULL, NULL) != 0)
        attach_err = errno;
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
        traceme_err = errno;
    return kiln_fail(ctx, "PermissionError", "ptrace ATTACH %d: %s; TRACEME: %s", (int)parent,
                     attach_err ? strerror(attach_err) : "succeeded",
                     traceme_err ? strerror(traceme_err) : "succeeded");
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {
    {"ptrace_parent.run", run}, {"ptrace_parent.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_ptrace_parent", .version = "1.0.0", .tasks = tasks, .policy = &policy);
