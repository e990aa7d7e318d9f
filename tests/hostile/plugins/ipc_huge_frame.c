/* hostile_ipc_huge_frame: write a well-formed RESULT header to the IPC
 * channel (fd 3) that claims a 1 GB payload, then a little of it, then wait.
 * The supervisor must refuse the length before allocating anything, kill the
 * child and fail the task with ProtocolError naming the claimed size. */
#include <kiln/kiln.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IPC_FD       3  /* KILN__CHILD_FD */
#define FRAME_RESULT 18 /* KILN__FRAME_RESULT */

static int
run(kiln_ctx_t *ctx)
{
    /* The 16-byte header, host byte order: type, len, task id. */
    struct {
        uint32_t type;
        uint32_t len;
        uint64_t task_id;
    } hdr = {FRAME_RESULT, 1u << 30, 0};
    char payload[4096];
    const char *id = kiln_task_id(ctx);
    char *end = NULL;

    hdr.task_id = id ? strtoull(id, &end, 10) : 0;
    if (end == NULL || *end != '\0' || hdr.task_id == 0)
        hdr.task_id = 1;
    memset(payload, '[', sizeof(payload));
    if (write(IPC_FD, &hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr))
        return kiln_fail(ctx, "OSError", "header write to fd %d failed", IPC_FD);
    if (write(IPC_FD, payload, sizeof(payload)) < 0)
        return kiln_fail(ctx, "OSError", "payload write to fd %d failed", IPC_FD);
    for (;;)
        sleep(1);
    return KILN_OK;
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {
    {"ipc_huge_frame.run", run}, {"ipc_huge_frame.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 10);
KILN_PLUGIN(.name = "hostile_ipc_huge_frame", .version = "1.0.0", .tasks = tasks,
            .policy = &policy);
