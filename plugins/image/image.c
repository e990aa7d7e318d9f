/*
 * image.c -- the bundled image plugin: thumbnail, resize and convert JPEG,
 * PNG and WebP with libvips, from descriptor "input" to descriptor "output".
 * docs/plugins/image.md describes the tasks, arguments, results, errors and
 * settings.
 *
 *   image.thumbnail  kwargs width [height] [enlarge]        fit inside, shrink-on-load
 *   image.resize     kwargs width and/or height [fit]       contain | cover | fill
 *   image.convert    kwargs format                          same pixels, new encoding
 *   all              files {"input": P}, outputs {"output": P}, format, quality
 *
 * Result: {"width", "height", "format", "bytes", "source": {"width", "height",
 * "format"}}.  Errors: ValueError (arguments, missing files), ImageError
 * (undecodable input, write failure), DecompressionBombError (the header
 * claims more than max_pixels), SoftTimeLimitExceeded.
 */
#include "image.h"

#include <errno.h>
#include <kiln/kiln.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libvips runs its pipelines on worker threads even with a concurrency of 1,
 * so "compute" (no clone()) cannot run it: "threads" is the narrowest
 * profile that works.  See docs/plugins/image.md. */
KILN_POLICY(policy, .profile = "threads", .memory_bytes = 200u << 20, .time_limit = 60,
            .soft_time_limit = 50, .max_tasks_per_child = 50);

static image__limits_t limits; /* from the settings, set by init */
static kiln_ctx_t *running;    /* the task being run, for glib's log lines */
static int log_lines;          /* lines forwarded for the running task */

#define MAX_LOG_LINES 20 /* per task: a corrupt file can warn once per row */

/* glib's default writer probes stderr with getpeername() (is it journald?),
 * which the sandbox refuses; libvips's warnings (e.g. "premature end of JPEG
 * file") go to the supervisor's log with the task's id instead. */
static GLogWriterOutput
log_writer(GLogLevelFlags level, const GLogField *fields, gsize n, gpointer data)
{
    const char *domain = NULL, *message = NULL;
    gsize i;

    for (i = 0; i < n; i++) {
        if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0 && fields[i].length < 0)
            domain = fields[i].value;
        else if (strcmp(fields[i].key, "MESSAGE") == 0 && fields[i].length < 0)
            message = fields[i].value;
    }
    if (!(level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)))
        return G_LOG_WRITER_HANDLED; /* info and debug: dropped, as glib does by default */
    if (running && message && log_lines++ < MAX_LOG_LINES)
        kiln_log(running, (level & G_LOG_LEVEL_WARNING) ? KILN_LOG_WARN : KILN_LOG_ERROR, "%s: %s",
                 domain ? domain : "glib", message);
    return G_LOG_WRITER_HANDLED;
}

typedef struct task {
    kiln_ctx_t *ctx;
    int reported;   /* last percentage reported, -1 for none */
    char doing[80]; /* "writing 256x171 jpeg" */
} task_t;

/* libvips's "eval" callback, on this thread: report every 10%, stop at the
 * soft time limit. */
static int
on_progress(void *arg, int percent)
{
    task_t *t = arg;

    if (kiln_soft_timeout(t->ctx))
        return 1;
    if (percent / 10 > t->reported / 10) {
        t->reported = percent;
        kiln_progress(t->ctx, 0.1 + 0.85 * percent / 100.0, t->doing);
    }
    return 0;
}

static int
run(kiln_ctx_t *ctx, image__op_t op)
{
    task_t t = {ctx, -1, ""};
    image__req_t req;
    image__input_t in = {0};
    image__err_t err = {0};
    VipsImage *out = NULL;
    image__format_t format;
    int64_t bytes = 0;
    json_t *result;
    char msg[120];

    running = ctx;
    log_lines = 0;
    VIPS(vips_error_clear)();
    if (image__args_parse(kiln_args(ctx), kiln_kwargs(ctx), op, &limits, &req, &err) < 0 ||
        image__output_check(kiln_file(ctx, "output"), &err) < 0 ||
        image__input_open(kiln_file(ctx, "input"), &req, &limits, &in, &err) < 0)
        goto fail;
    format = req.format >= 0 ? (image__format_t)req.format : in.format;
    snprintf(msg, sizeof(msg), "read the header: %dx%d %s", in.width, in.height,
             image__format_name(in.format));
    kiln_progress(ctx, 0.1, msg);
    if (image__transform(&in, &req, &limits, &out, &err) < 0)
        goto fail;
    if (kiln_soft_timeout(ctx)) {
        image__fail(&err, "SoftTimeLimitExceeded",
                    "stopped at the soft time limit before computing the output");
        goto fail;
    }
    snprintf(t.doing, sizeof(t.doing), "writing %dx%d %s", out->Xsize, out->Ysize,
             image__format_name(format));
    if (image__save(out, kiln_file(ctx, "output"), format, req.quality, in.name, on_progress, &t,
                    &bytes, &err) < 0)
        goto fail;
    result =
        json_pack("{s:i,s:i,s:s,s:I,s:{s:i,s:i,s:s}}", "width", out->Xsize, "height", out->Ysize,
                  "format", image__format_name(format), "bytes", (json_int_t)bytes, "source",
                  "width", in.width, "height", in.height, "format", image__format_name(in.format));
    VIPS(g_object_unref)(out);
    image__input_close(&in);
    running = NULL;
    return kiln_set_result(ctx, result);
fail:
    if (out)
        VIPS(g_object_unref)(out);
    image__input_close(&in);
    VIPS(vips_error_clear)();
    running = NULL;
    return kiln_fail(ctx, err.type ? err.type : "ImageError", "%s: %s", kiln_task_name(ctx),
                     err.msg);
}

static int
thumbnail(kiln_ctx_t *ctx)
{
    return run(ctx, IMAGE__THUMBNAIL);
}

static int
resize(kiln_ctx_t *ctx)
{
    return run(ctx, IMAGE__RESIZE);
}

static int
convert(kiln_ctx_t *ctx)
{
    return run(ctx, IMAGE__CONVERT);
}

/* Runs under the loader filter, before the first task: everything that
 * reads files (libvips's start-up) happens here. */
static int
init(kiln_ctx_t *ctx)
{
    static const char *const formats[] = {"Jpeg", "Png", "Webp"};
    image__err_t err = {0};
    char name[64];
    size_t i;

    if (image__limits_parse(kiln_settings(ctx), &limits, &err) < 0 || image__vips_open(&err) < 0)
        return kiln_fail(ctx, err.type, "%s", err.msg);
    VIPS(g_log_set_writer_func)(log_writer, NULL, NULL);
    /* libvips loads its modules (ImageMagick, PDF, HEIF, JPEG XL, OpenSlide)
     * from $VIPSHOME/lib/vips-modules-8.x.  This plugin needs none of them:
     * JPEG, PNG and WebP are built in.  A VIPSHOME under which no directory
     * can exist keeps them out: a faster start, a smaller child, fewer
     * decoders within reach of hostile input (and none of the NUMA probing
     * that libnuma, pulled in by a module, does in its constructor). */
    if (setenv("VIPSHOME", "/dev/null", 1) != 0)
        return kiln_fail(ctx, "PluginInitError", "setenv VIPSHOME: %s", strerror(errno));
    if (VIPS(vips_init)("kiln-image") != 0) {
        image__fail_vips(&err, "PluginInitError", "libvips did not start");
        return kiln_fail(ctx, err.type, "%s", err.msg);
    }
    /* One thread per child: the pool's children are the parallelism. */
    VIPS(vips_concurrency_set)(1);
    /* No ORC: its JIT writes code through a temporary file (umask, mkstemp)
     * or a writable+executable mapping; the sandbox refuses the first and
     * should not need to grant the second.  libvips's C paths do the work. */
    VIPS(vips_vector_set_enabled)(FALSE);
    /* No operation cache: it would keep a task's descriptors and pixels. */
    VIPS(vips_cache_set_max)(0);
    VIPS(vips_cache_set_max_mem)(0);
    VIPS(vips_cache_set_max_files)(0);
    /* Only the three formats' loaders and savers can run at all. */
    VIPS(vips_operation_block_set)("VipsForeignLoad", TRUE);
    VIPS(vips_operation_block_set)("VipsForeignSave", TRUE);
    for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        snprintf(name, sizeof(name), "VipsForeignLoad%s", formats[i]);
        VIPS(vips_operation_block_set)(name, FALSE);
        snprintf(name, sizeof(name), "VipsForeignSave%s", formats[i]);
        VIPS(vips_operation_block_set)(name, FALSE);
    }
    return KILN_OK;
}

static void
fini(void)
{
    if (image__vips.vips_shutdown)
        VIPS(vips_shutdown)();
}

static const kiln_task_t tasks[] = {
    {"image.thumbnail", thumbnail},
    {"image.resize", resize},
    {"image.convert", convert},
    {NULL, NULL},
};

KILN_PLUGIN(.name = "image", .version = "1.0.0", .tasks = tasks, .policy = &policy, .init = init,
            .fini = fini);
