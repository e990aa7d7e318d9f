/* hostile_open_shadow: open("/etc/shadow") itself instead of being handed a
 * descriptor.  The sandbox must refuse it; the handler reports the errno as a
 * PermissionError.  If the open works it reports that (without the content). */
#include <errno.h>
#include <fcntl.h>
#include <kiln/kiln.h>
#include <string.h>
#include <unistd.h>

static int
run(kiln_ctx_t *ctx)
{
    char buf[64];
    ssize_t n;
    int fd = open("/etc/shadow", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return kiln_fail(ctx, "PermissionError", "open /etc/shadow: %s", strerror(errno));
    n = read(fd, buf, sizeof(buf));
    close(fd);
    return kiln_fail(ctx, "RuntimeError", "opened /etc/shadow and read %zd bytes", n);
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"open_shadow.run", run}, {"open_shadow.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_open_shadow", .version = "1.0.0", .tasks = tasks, .policy = &policy);
