/* hostile_stack_overflow: unbounded recursion.  The child runs off its stack
 * into the guard page and dies by SIGSEGV: WorkerLostError. */
#include <kiln/kiln.h>

/* Never reached; volatile, so the compiler cannot prove the recursion
 * infinite (and warn) or bound it. */
static volatile unsigned long max_depth = ~0UL;

/* noinline, and a frame buffer used after the recursive call (so it is no
 * tail call): the compiler cannot turn the recursion into a loop. */
__attribute__((noinline)) static unsigned long
recurse(unsigned long depth)
{
    volatile char frame[1024];
    unsigned long below;

    frame[0] = (char)depth;
    if (depth == max_depth)
        return 0;
    below = recurse(depth + 1);
    __asm__ volatile("" : : "r"(frame) : "memory");
    return below + (unsigned long)frame[0];
}

static int
run(kiln_ctx_t *ctx)
{
    return kiln_fail(ctx, "RuntimeError", "recursion returned %lu", recurse(0));
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {
    {"stack_overflow.run", run}, {"stack_overflow.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_stack_overflow", .version = "1.0.0", .tasks = tasks,
            .policy = &policy);
