/* hostile_thread_bomb: pthread_create() in a loop until it fails.
 *
 * The "threads" profile allows threads, so nothing but the per-child process
 * limit (RLIMIT_NPROC for the slot's uid, or the pids cgroup) can stop this.
 * Stacks are small and the memory cap generous, so that memory is not what
 * stops it first.  Reports "thread N: <strerror>" as a RuntimeError.  The
 * threads sleep until the child exits; the next task runs beside them. */
#include <errno.h>
#include <kiln/kiln.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 20000 /* safety bound if nothing stops it */

static void *
idle(void *arg)
{
    for (;;)
        pause();
    return arg;
}

static int
run(kiln_ctx_t *ctx)
{
    pthread_attr_t attr;
    pthread_t t;
    int n, rc = 0;

    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, PTHREAD_STACK_MIN);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (n = 0; n < MAX_THREADS; n++) {
        rc = pthread_create(&t, &attr, idle, NULL);
        if (rc != 0)
            break;
    }
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return kiln_fail(ctx, "RuntimeError", "thread %d: %s", n, strerror(rc));
    return kiln_fail(ctx, "RuntimeError", "thread bomb not stopped: %d threads created",
                     MAX_THREADS);
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"thread_bomb.run", run}, {"thread_bomb.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "threads", .memory_bytes = 512 << 20, .time_limit = 30);
KILN_PLUGIN(.name = "hostile_thread_bomb", .version = "1.0.0", .tasks = tasks, .policy = &policy);
