/* hostile_busy_loop: spin forever without ever checking the soft limit.
 * The hard time limit (2 s) must SIGKILL the child: TimeLimitExceeded. */
#include <kiln/kiln.h>

static int
run(kiln_ctx_t *ctx)
{
    volatile unsigned long spins = 0;

    for (;;)
        spins++;
    return KILN_OK;
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"busy_loop.run", run}, {"busy_loop.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 2);
KILN_PLUGIN(.name = "hostile_busy_loop", .version = "1.0.0", .tasks = tasks, .policy = &policy);
