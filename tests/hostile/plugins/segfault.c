/* hostile_segfault: write through a NULL pointer.  The child dies by SIGSEGV:
 * WorkerLostError naming the signal. */
#include <kiln/kiln.h>

static int
run(kiln_ctx_t *ctx)
{
    volatile int *volatile nowhere = NULL;

    *nowhere = 42;
    return kiln_fail(ctx, "RuntimeError", "survived a NULL write");
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"segfault.run", run}, {"segfault.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_segfault", .version = "1.0.0", .tasks = tasks, .policy = &policy);
