/* hostile_fork_bomb: every process forks in a loop, the classic bomb.
 *
 * Under the compute profile fork (clone without CLONE_THREAD) is a forbidden
 * syscall, so the first fork() must kill the child: SandboxViolation.  The
 * bomb is bounded (FORKS rounds, so at most 2^FORKS processes, each living at
 * most LINGER seconds) so that a broken sandbox cannot take the host down
 * with it; the test then finds the survivors and kills them. */
#include <errno.h>
#include <kiln/kiln.h>
#include <string.h>
#include <unistd.h>

#define FORKS  12
#define LINGER 60

static int
run(kiln_ctx_t *ctx)
{
    pid_t self = getpid();
    int n, err = 0;

    for (n = 0; n < FORKS; n++) {
        if (fork() < 0) {
            err = errno;
            break;
        }
    }
    if (getpid() != self) {
        sleep(LINGER);
        _exit(0);
    }
    if (err != 0)
        return kiln_fail(ctx, "RuntimeError", "fork %d: %s", n, strerror(err));
    return kiln_fail(ctx, "RuntimeError", "fork bomb not stopped: %d rounds of fork() succeeded",
                     FORKS);
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"fork_bomb.run", run}, {"fork_bomb.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_fork_bomb", .version = "1.0.0", .tasks = tasks, .policy = &policy);
