/* hostile_ipc_garbage: write garbage straight to the IPC channel, fd 3
 * (KILN__CHILD_FD; plugins are not meant to know it), then wait to be
 * killed.  The supervisor must kill the child and fail the task with
 * ProtocolError naming the bad header. */
#include <kiln/kiln.h>
#include <string.h>
#include <unistd.h>

#define IPC_FD 3

static int
run(kiln_ctx_t *ctx)
{
    unsigned char junk[64];
    size_t i;

    /* 0xdeadbeef...: as a header, type and length are both 4022250974. */
    for (i = 0; i < sizeof(junk); i += 4)
        memcpy(junk + i, "\xde\xad\xbe\xef", 4);
    if (write(IPC_FD, junk, sizeof(junk)) < 0)
        return kiln_fail(ctx, "OSError", "write to fd %d failed", IPC_FD);
    for (;;)
        sleep(1);
    return KILN_OK;
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"ipc_garbage.run", run}, {"ipc_garbage.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 10);
KILN_PLUGIN(.name = "hostile_ipc_garbage", .version = "1.0.0", .tasks = tasks, .policy = &policy);
