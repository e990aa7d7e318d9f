/* hostile_connect_local: connect a TCP socket to 127.0.0.1:<args[0]> under
 * the compute profile, which has no sockets: socket() is a forbidden syscall
 * and kills the child with SandboxViolation.  The test listens on that port
 * and checks that nothing connected. */
#include <arpa/inet.h>
#include <errno.h>
#include <kiln/kiln.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int
run(kiln_ctx_t *ctx)
{
    struct sockaddr_in sin;
    int port = (int)json_integer_value(json_array_get(kiln_args(ctx), 0));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return kiln_fail(ctx, "PermissionError", "socket: %s", strerror(errno));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        int err = errno;
        close(fd);
        return kiln_fail(ctx, "ConnectionError", "connect 127.0.0.1:%d: %s", port, strerror(err));
    }
    close(fd);
    return kiln_fail(ctx, "RuntimeError", "connected to 127.0.0.1:%d under compute", port);
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {
    {"connect_local.run", run}, {"connect_local.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_connect_local", .version = "1.0.0", .tasks = tasks, .policy = &policy);
