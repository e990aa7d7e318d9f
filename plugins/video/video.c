/*
 * video.c -- the video plugin: probe, thumbnail and transcode on FFmpeg's
 * libraries (docs/plugins/video.md).  This file holds the task table, the
 * default policy, init/fini and the keyword-argument helpers the tasks share.
 *
 *   video.probe      files.input                       -> format, duration, streams
 *   video.thumbnail  files.input, outputs.output,      -> {width, height, format, at, bytes}
 *                    at, width, format
 *   video.transcode  files.input, outputs.output,      -> {width, height, duration, frames,
 *                    height, crf, preset, audio           bytes, video_codec, audio_codec}
 */
#include "video.h"

#include <libavutil/cpu.h>
#include <math.h>
#include <string.h>

#define AUTO_THREAD_CAP 8 /* threads per codec when the CPU count would give more */

const char *
video__json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

int
video__kw_check(kiln_ctx_t *ctx, const char *const *known, video_err_t *e)
{
    const json_t *kw = kiln_kwargs(ctx);
    const char *key;
    json_t *v;

    if (json_array_size(kiln_args(ctx)) > 0)
        return video__fail(e, VIDEO_VALUE_ERROR,
                           "takes keyword arguments only, got %zu positional argument(s)",
                           json_array_size(kiln_args(ctx)));
    json_object_foreach((json_t *)kw, key, v)
    {
        size_t i;
        int ok = strcmp(key, "files") == 0 || strcmp(key, "outputs") == 0;
        for (i = 0; !ok && known[i]; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return video__fail(e, VIDEO_VALUE_ERROR, "unknown argument \"%.64s\"", key);
    }
    return 0;
}

int
video__kw_number(kiln_ctx_t *ctx, const char *key, double min, double max, double *out,
                 video_err_t *e)
{
    const json_t *v = json_object_get(kiln_kwargs(ctx), key);
    double d;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return video__fail(e, VIDEO_VALUE_ERROR, "%s must be a number, not %s", key,
                           video__json_kind(v));
    d = json_number_value(v);
    if (!isfinite(d) || d < min || d > max)
        return video__fail(e, VIDEO_VALUE_ERROR, "%s is %g; it must be from %g to %g", key, d, min,
                           max);
    *out = d;
    return 1;
}

int
video__kw_int(kiln_ctx_t *ctx, const char *key, int64_t min, int64_t max, int64_t *out,
              video_err_t *e)
{
    const json_t *v = json_object_get(kiln_kwargs(ctx), key);
    json_int_t i;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return video__fail(e, VIDEO_VALUE_ERROR, "%s must be an integer, not %s", key,
                           video__json_kind(v));
    i = json_integer_value(v);
    if (i < min || i > max)
        return video__fail(e, VIDEO_VALUE_ERROR, "%s is %lld; it must be from %lld to %lld", key,
                           (long long)i, (long long)min, (long long)max);
    *out = i;
    return 1;
}

int
video__kw_bool(kiln_ctx_t *ctx, const char *key, int *out, video_err_t *e)
{
    const json_t *v = json_object_get(kiln_kwargs(ctx), key);

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return video__fail(e, VIDEO_VALUE_ERROR, "%s must be true or false, not %s", key,
                           video__json_kind(v));
    *out = json_is_true(v);
    return 1;
}

int
video__kw_string(kiln_ctx_t *ctx, const char *key, const char **out, video_err_t *e)
{
    const json_t *v = json_object_get(kiln_kwargs(ctx), key);

    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return video__fail(e, VIDEO_VALUE_ERROR, "%s must be a string, not %s", key,
                           video__json_kind(v));
    *out = json_string_value(v);
    return 1;
}

const char *
video__kw_path(kiln_ctx_t *ctx, const char *set, const char *name)
{
    return json_string_value(json_object_get(json_object_get(kiln_kwargs(ctx), set), name));
}

int
video__output_fd(kiln_ctx_t *ctx, video_err_t *e)
{
    int fd = kiln_file(ctx, "output");

    if (fd < 0)
        return video__fail(e, VIDEO_VALUE_ERROR,
                           "no output file: name it in kwargs outputs.output (kiln run: --out "
                           "output=PATH)");
    return fd;
}

int
video__threads(const video_limits_t *lim)
{
    int n;

    if (lim->threads > 0)
        return lim->threads;
    /* 0 lets FFmpeg and x264 pick from the CPU count, as the ffmpeg command
     * does (x264 starts 1.5 threads per CPU).  On a bigger machine each
     * thread holds frames of its own: a 4K decode with 16 threads and x264
     * with 16 take 2 GiB, past the policy's cap (and 64 threads per child
     * is the threads profile's limit), so auto stops at AUTO_THREAD_CAP. */
    n = av_cpu_count();
    return n * 3 / 2 > AUTO_THREAD_CAP ? AUTO_THREAD_CAP : 0;
}

/* Run a task: its error, if any, goes to kiln_fail() with the task name. */
static int
run(kiln_ctx_t *ctx, int (*task)(kiln_ctx_t *, json_t **, video_err_t *))
{
    video_err_t e;
    json_t *result = NULL;

    e.type = VIDEO_ERROR;
    e.msg[0] = '\0';
    video__log_reset();
    if (task(ctx, &result, &e) < 0) {
        json_decref(result);
        return kiln_fail(ctx, e.type, "%s: %s", kiln_task_name(ctx), e.msg);
    }
    return kiln_set_result(ctx, result);
}

static int
probe(kiln_ctx_t *ctx)
{
    return run(ctx, video__probe);
}

static int
thumbnail(kiln_ctx_t *ctx)
{
    return run(ctx, video__thumbnail);
}

static int
transcode(kiln_ctx_t *ctx)
{
    return run(ctx, video__transcode);
}

/* Once per child: read the settings (a bad one fails init, naming the key)
 * and route FFmpeg's log.  Nothing is opened here: no codec or format reads
 * files, and opening them per task keeps each task's state its own. */
static int
init(kiln_ctx_t *ctx)
{
    char err[512];

    if (video__limits_parse(kiln_settings(ctx), &video__limits, err, sizeof(err)) < 0)
        return kiln_fail(ctx, VIDEO_VALUE_ERROR, "video: %s", err);
    video__log_install();
    return KILN_OK;
}

static void
fini(void)
{
    av_log_set_callback(av_log_default_callback);
}

static const kiln_task_t tasks[] = {
    {"video.probe", probe},
    {"video.thumbnail", thumbnail},
    {"video.transcode", transcode},
    {NULL, NULL},
};

/* threads: libx264 and FFmpeg's decoders run worker threads (compute
 * forbids clone).  1 GiB: a 4K transcode with x264's lookahead fits with
 * room; 1080p needs about 300 MiB.  Two children: one task already uses
 * every CPU while it encodes, and a second child keeps short probes and
 * thumbnails from waiting behind a long transcode.  Ten tasks per child:
 * FFmpeg's allocations fragment the heap; a fresh child every ten keeps the
 * RSS near what one task needs. */
KILN_POLICY(policy, .profile = "threads", .memory_bytes = 1u << 30, .soft_time_limit = 540,
            .time_limit = 600, .max_tasks_per_child = 10, .concurrency = 2);
KILN_PLUGIN(.name = "video", .version = "1.0.0", .tasks = tasks, .policy = &policy, .init = init,
            .fini = fini);
