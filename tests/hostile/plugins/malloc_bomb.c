/* hostile_malloc_bomb: malloc 8 GB and touch it in 64 MB steps.
 *
 * The memory cap (128 MiB) must stop it: the child is killed and the task
 * fails with MemoryLimitExceeded.  If the allocator says no first (the
 * RLIMIT_AS fallback), the handler keeps allocating 64 MB blocks and reports
 * MemoryError when one fails, as a C program checking malloc would. */
#include <kiln/kiln.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOTAL ((size_t)8 << 30)
#define STEP  ((size_t)64 << 20)

static void
touch(volatile unsigned char *p, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t off;

    for (off = 0; off < len; off += page)
        p[off] = 1;
}

static int
run(kiln_ctx_t *ctx)
{
    unsigned char *big = malloc(TOTAL);
    size_t done;

    if (big != NULL) {
        for (done = 0; done < TOTAL; done += STEP)
            touch(big + done, STEP);
        free(big);
        return kiln_fail(ctx, "RuntimeError", "memory cap not enforced: touched %zu MB",
                         TOTAL >> 20);
    }
    for (done = 0; done < TOTAL; done += STEP) {
        unsigned char *block = malloc(STEP); /* leaked on purpose */
        if (block == NULL)
            return kiln_fail(ctx, "MemoryError", "malloc of %zu MB failed after %zu MB", STEP >> 20,
                             done >> 20);
        touch(block, STEP);
    }
    return kiln_fail(ctx, "RuntimeError", "memory cap not enforced: touched %zu MB in blocks",
                     TOTAL >> 20);
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"malloc_bomb.run", run}, {"malloc_bomb.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .memory_bytes = 128 << 20, .time_limit = 60);
KILN_PLUGIN(.name = "hostile_malloc_bomb", .version = "1.0.0", .tasks = tasks, .policy = &policy);
