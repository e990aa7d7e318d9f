#include <kiln/kiln.h>
#include <time.h>

static int
echo(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_deep_copy(kiln_args(ctx)));
}

static int
sleep_for(kiln_ctx_t *ctx)
{
    double want = json_number_value(json_array_get(kiln_args(ctx), 0)), slept = 0;
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (; slept < want && !kiln_soft_timeout(ctx); slept += 0.01)
        nanosleep(&tick, NULL);
    return kiln_set_result(ctx, json_real(slept < want ? slept : want));
}

static int
fail(kiln_ctx_t *ctx)
{
    return kiln_fail(ctx, "ValueError", "%s", json_string_value(json_array_get(kiln_args(ctx), 0)));
}

static const kiln_task_t tasks[] = {
    {"hello.echo", echo}, {"hello.sleep", sleep_for}, {"hello.fail", fail}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .memory_bytes = 64 << 20, .time_limit = 30);
KILN_PLUGIN(.name = "hello", .version = "1.0.0", .tasks = tasks, .policy = &policy);
