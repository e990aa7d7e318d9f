/*
 * save.c -- encode an image to the output descriptor as JPEG, PNG or WebP.
 *
 * The pipeline is lazy: decoding, resizing and encoding all happen here, in
 * one pass, while libvips writes the target.  Its "eval" signal (emitted on
 * the calling thread) reports the percentage done and lets the caller stop
 * at the soft time limit.  On failure the output is truncated to 0 bytes, so
 * no half-written image is left looking valid.
 */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The largest side each format can hold (libjpeg's JPEG_MAX_DIMENSION,
 * WebP's 14-bit sizes); PNG's is far above any output limit. */
static const struct {
    const char *name;
    int max_side;
} formats[IMAGE__FORMAT_COUNT] = {
    [IMAGE__JPEG] = {"JPEG", 65500},
    [IMAGE__PNG] = {"PNG", VIPS_MAX_COORD},
    [IMAGE__WEBP] = {"WebP", 16383},
};

typedef struct progress {
    image__progress_fn fn;
    void *arg;
    int stopped; /* fn asked to stop: the image was killed */
} progress_t;

static void
on_eval(VipsImage *img, VipsProgress *p, void *data)
{
    progress_t *ps = data;

    if (!ps->stopped && ps->fn && ps->fn(ps->arg, p->percent) != 0) {
        ps->stopped = 1;
        VIPS(vips_image_set_kill)(img, TRUE);
    }
}

/* JPEG has no alpha: flatten onto white rather than libvips's black. */
static int
flatten_for_jpeg(VipsImage *img, VipsImage **out)
{
    double max = img->Type == VIPS_INTERPRETATION_RGB16 || img->Type == VIPS_INTERPRETATION_GREY16
                     ? 65535
                     : 255;
    double white[4] = {max, max, max, max};
    VipsArrayDouble *bg;
    int rc;

    if (!VIPS(vips_image_hasalpha)(img)) {
        *out = img;
        VIPS(g_object_ref)(img);
        return 0;
    }
    bg = VIPS(vips_array_double_new)(white, img->Bands - 1 > 4 ? 4 : img->Bands - 1);
    rc = VIPS(vips_flatten)(img, out, "background", bg, "max_alpha", max, NULL);
    VIPS(vips_area_unref)(VIPS_AREA(bg));
    return rc;
}

static int
encode(VipsImage *img, VipsTarget *target, image__format_t format, int quality)
{
    VipsImage *flat = NULL;
    int rc;

    switch (format) {
    case IMAGE__JPEG:
        if (flatten_for_jpeg(img, &flat) < 0)
            return -1;
        rc = VIPS(vips_jpegsave_target)(flat, target, "Q", quality, NULL);
        VIPS(g_object_unref)(flat);
        return rc;
    case IMAGE__PNG:
        return VIPS(vips_pngsave_target)(img, target, NULL);
    case IMAGE__WEBP:
        return VIPS(vips_webpsave_target)(img, target, "Q", quality, NULL);
    default:
        VIPS(vips_error)("image", "unknown output format %d", (int)format);
        return -1;
    }
}

static void
truncate_output(int fd, int regular)
{
    if (regular) {
        (void)ftruncate(fd, 0);
        (void)lseek(fd, 0, SEEK_SET);
    }
}

/* A failed computation: the output could not be written, or (far more
 * often) the input could not be decoded. */
static int
fail_compute(image__err_t *e, const char *input)
{
    char what[400];

    const char *buf = VIPS(vips_error_buffer)();
    const char *why = strstr(buf, "unix error: ");

    if (strstr(buf, "write error")) {
        /* "target: write error\nunix error: No space left on device\n..." */
        image__fail(e, "ImageError", "cannot write the output: %.*s",
                    why ? (int)strcspn(why + 12, "\n") : 11, why ? why + 12 : "write error");
        VIPS(vips_error_clear)();
        return -1;
    }
    snprintf(what, sizeof(what), "%s is truncated or corrupt", input);
    return image__fail_vips(e, "ImageError", what);
}

int
image__output_check(int fd, image__err_t *e)
{
    if (fd < 0)
        return image__fail(e, "ValueError",
                           "no output file: name it in kwargs outputs {\"output\": PATH} (or "
                           "kiln run --out output=PATH)");
    if ((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
        return image__fail(e, "ValueError",
                           "output is open read-only: name it in kwargs outputs, not files (or "
                           "kiln run --out, not --file)");
    return 0;
}

int
image__save(VipsImage *img, int fd, image__format_t format, int quality, const char *input,
            image__progress_fn progress, void *arg, int64_t *bytes, image__err_t *e)
{
    progress_t ps = {progress, arg, 0};
    VipsTarget *target;
    struct stat st;
    gulong handler;
    int regular, rc;

    if (image__output_check(fd, e) < 0)
        return -1;
    if (img->Xsize > formats[format].max_side || img->Ysize > formats[format].max_side)
        return image__fail(
            e, "ValueError", "the output would be %dx%d pixels; %s holds at most %dx%d", img->Xsize,
            img->Ysize, formats[format].name, formats[format].max_side, formats[format].max_side);
    if (fstat(fd, &st) < 0)
        return image__fail(e, "ImageError", "output: fstat: %s", strerror(errno));
    regular = S_ISREG(st.st_mode);
    /* kiln run --batch hands every task a duplicate of one descriptor. */
    truncate_output(fd, regular);
    target = VIPS(vips_target_new_to_descriptor)(fd);
    if (!target)
        return image__fail_vips(e, "ImageError", "output");
    VIPS(vips_image_set_progress)(img, TRUE);
    handler = VIPS(g_signal_connect_data)(img, "eval", G_CALLBACK(on_eval), &ps, NULL, 0);
    rc = encode(img, target, format, quality);
    VIPS(g_signal_handler_disconnect)(img, handler);
    VIPS(vips_image_set_progress)(img, FALSE);
    VIPS(g_object_unref)(target);
    if (rc < 0) {
        truncate_output(fd, regular);
        if (ps.stopped) {
            VIPS(vips_error_clear)();
            return image__fail(e, "SoftTimeLimitExceeded",
                               "stopped at the soft time limit while computing the output");
        }
        return fail_compute(e, input);
    }
    if (fstat(fd, &st) < 0)
        return image__fail(e, "ImageError", "output: fstat: %s", strerror(errno));
    *bytes = regular ? (int64_t)st.st_size : -1;
    return 0;
}
