/*
 * ctx.c -- the SDK's function table, as seen from inside a child.
 *
 * Every kiln_xxx() call of a handler lands here.  Results and failures are
 * recorded in the context and sent by child.c when the handler returns;
 * progress and log lines go to the supervisor at once.
 */
#include "ctx.h"

#include "frame.h"
#include "sandbox.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double
kiln__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
send_json(kiln_ctx_t *ctx, uint32_t type, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    if (s) {
        size_t len = strlen(s);
        if (len > 65536)
            len = 65536; /* cap of these frame types; cut rather than die */
        (void)kiln__frame_send(KILN__CHILD_FD, type, ctx->seq, s, len, NULL, 0);
        free(s);
    }
    json_decref(obj);
}

static const json_t *
api_args(kiln_ctx_t *ctx)
{
    return ctx->args;
}

static const json_t *
api_kwargs(kiln_ctx_t *ctx)
{
    return ctx->kwargs;
}

static int
api_set_result(kiln_ctx_t *ctx, json_t *result)
{
    if (!result)
        return -EINVAL;
    json_decref(ctx->result);
    ctx->result = result;
    ctx->outcome = KILN__OUTCOME_RESULT;
    return KILN_OK;
}

static int
api_fail(kiln_ctx_t *ctx, const char *exc_type, const char *message)
{
    snprintf(ctx->exc_type, sizeof(ctx->exc_type), "%s",
             exc_type && *exc_type ? exc_type : "Exception");
    snprintf(ctx->exc_message, sizeof(ctx->exc_message), "%s", message ? message : "");
    ctx->outcome = KILN__OUTCOME_FAIL;
    return KILN_ERR;
}

static int
api_retry(kiln_ctx_t *ctx, double countdown, const char *reason)
{
    ctx->countdown = isfinite(countdown) && countdown > 0 ? countdown : 0;
    snprintf(ctx->exc_type, sizeof(ctx->exc_type), "Retry");
    snprintf(ctx->exc_message, sizeof(ctx->exc_message), "%s", reason ? reason : "");
    ctx->outcome = KILN__OUTCOME_RETRY;
    return KILN_ERR;
}

static int
api_progress(kiln_ctx_t *ctx, double fraction, const char *message)
{
    if (!isfinite(fraction))
        return -EINVAL;
    if (fraction < 0)
        fraction = 0;
    if (fraction > 1)
        fraction = 1;
    send_json(ctx, KILN__FRAME_PROGRESS,
              json_pack("{s:f,s:s?}", "fraction", fraction, "message", message));
    return KILN_OK;
}

static void
api_log(kiln_ctx_t *ctx, int level, const char *message)
{
    send_json(ctx, KILN__FRAME_LOG,
              json_pack("{s:i,s:s}", "level", level, "message", message ? message : ""));
}

static int
api_soft_timeout(kiln_ctx_t *ctx)
{
    return ctx->soft_deadline > 0 && kiln__now() >= ctx->soft_deadline;
}

static double
api_time_left(kiln_ctx_t *ctx)
{
    double deadline = ctx->soft_deadline > 0 ? ctx->soft_deadline : ctx->hard_deadline;
    if (deadline <= 0)
        return 1e9;
    deadline -= kiln__now();
    return deadline > 0 ? deadline : 0;
}

static int
api_file(kiln_ctx_t *ctx, const char *name)
{
    size_t i;
    if (!name || !ctx->files)
        return -ENOENT;
    for (i = 0; i < json_array_size(ctx->files) && i < (size_t)ctx->nfds; i++) {
        const char *n = json_string_value(json_array_get(ctx->files, i));
        if (n && strcmp(n, name) == 0)
            return ctx->fds[i];
    }
    return -ENOENT;
}

static const char *
api_task_name(kiln_ctx_t *ctx)
{
    return ctx->task ? ctx->task : "";
}

static const char *
api_task_id(kiln_ctx_t *ctx)
{
    return ctx->id ? ctx->id : "";
}

static const char *
api_strerror(int code)
{
    if (code == KILN_OK)
        return "ok";
    if (code == KILN_ERR)
        return "task failed";
    if (code < 0)
        return strerror(-code);
    return "unknown code";
}

json_t *kiln__settings;

static const json_t *
api_settings(kiln_ctx_t *ctx)
{
    (void)ctx;
    return kiln__settings;
}

const kiln_api_t kiln__api_table = {
    .abi_major = KILN_ABI_MAJOR,
    .abi_minor = KILN_ABI_MINOR,
    .size = sizeof(kiln_api_t),
    .args = api_args,
    .kwargs = api_kwargs,
    .set_result = api_set_result,
    .fail = api_fail,
    .retry = api_retry,
    .progress = api_progress,
    .log = api_log,
    .soft_timeout = api_soft_timeout,
    .file = api_file,
    .task_name = api_task_name,
    .task_id = api_task_id,
    .time_left = api_time_left,
    .strerror = api_strerror,
    .settings = api_settings,
};
