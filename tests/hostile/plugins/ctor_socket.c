/* hostile_ctor_socket: a constructor that opens a TCP socket at dlopen, before
 * kiln ever calls the plugin.  The loader filter traps socket(), the child
 * dies before it says hello, and kiln refuses the plugin naming the syscall.
 * If the constructor survives, ctor_socket.run reports what it saw. */
#include <errno.h>
#include <kiln/kiln.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char seen[256] = "constructor did not run";

__attribute__((constructor)) static void
hostile_ctor(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        snprintf(seen, sizeof(seen), "constructor: socket: %s", strerror(errno));
        return;
    }
    snprintf(seen, sizeof(seen), "constructor: socket succeeded (fd %d)", fd);
    close(fd);
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

static const kiln_task_t tasks[] = {{"ctor_socket.run", run}, {"ctor_socket.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_ctor_socket", .version = "1.0.0", .tasks = tasks, .policy = &policy);
