/*
 * load.c -- the input descriptor: its size, its format (sniffed from the
 * first bytes by libvips's own loaders: JPEG, PNG or WebP, nothing else), and
 * its header.  The pixel limit is checked here, on the header alone, before
 * anything is decoded.
 */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The loaders this plugin uses, by format. */
static const char *const readers[IMAGE__FORMAT_COUNT] = {
    [IMAGE__JPEG] = "jpegload_source",
    [IMAGE__PNG] = "pngload_source",
    [IMAGE__WEBP] = "webpload_source",
};

/* Formats libvips recognises but this plugin refuses, to name them in the
 * message.  Only their sniffers run (a look at the first bytes); loaders
 * from libvips modules that were not loaded simply do not match. */
static const struct {
    const char *loader;
    const char *name;
} refused[] = {
    {"gifload_source", "a GIF image"},          {"tiffload_source", "a TIFF image"},
    {"heifload_source", "a HEIF/AVIF image"},   {"jxlload_source", "a JPEG XL image"},
    {"jp2kload_source", "a JPEG 2000 image"},   {"svgload_source", "an SVG image"},
    {"pdfload_source", "a PDF document"},       {"ppmload_source", "a PPM/PGM image"},
    {"radload_source", "a Radiance HDR image"}, {"fitsload_source", "a FITS image"},
    {"vipsload_source", "a VIPS image"},        {"matrixload_source", "a VIPS matrix"},
};

/* "its first bytes are \"BM6\\x0c...\"": what the input starts with. */
static void
first_bytes(VipsSource *source, char *out, size_t len)
{
    unsigned char *p = VIPS(vips_source_sniff)(source, 12);
    size_t i, n = 0;

    if (!p) {
        VIPS(vips_error_clear)();
        snprintf(out, len, "it could not be read");
        return;
    }
    n = (size_t)snprintf(out, len, "its first bytes are \"");
    for (i = 0; i < 12 && n + 6 < len; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            out[n++] = (char)p[i];
        else
            n += (size_t)snprintf(out + n, len - n, "\\x%02x", p[i]);
    }
    snprintf(out + n, len - n, "\"");
}

static int
sniff(image__input_t *in, image__err_t *e)
{
    char what[120];
    size_t i;
    int f;

    for (f = 0; f < IMAGE__FORMAT_COUNT; f++) {
        if (VIPS(vips_foreign_is_a_source)(readers[f], in->source)) {
            in->format = (image__format_t)f;
            return 0;
        }
    }
    VIPS(vips_error_clear)();
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (VIPS(vips_foreign_is_a_source)(refused[i].loader, in->source)) {
            VIPS(vips_error_clear)();
            return image__fail(e, "ImageError",
                               "%s is %s, not a JPEG, PNG or WebP image (the formats image reads)",
                               in->name, refused[i].name);
        }
    }
    VIPS(vips_error_clear)();
    first_bytes(in->source, what, sizeof(what));
    return image__fail(e, "ImageError", "%s is not a JPEG, PNG or WebP image: %s", in->name, what);
}

/* Read the header only: dimensions, no pixels. */
static int
header(image__input_t *in, image__err_t *e)
{
    VipsImage *img = NULL;
    char what[400];
    int rc;

    if (in->format == IMAGE__JPEG)
        rc = VIPS(vips_jpegload_source)(in->source, &img, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    else if (in->format == IMAGE__PNG)
        rc = VIPS(vips_pngload_source)(in->source, &img, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    else
        rc = VIPS(vips_webpload_source)(in->source, &img, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (rc < 0) {
        snprintf(what, sizeof(what), "%s is a truncated or corrupt %s image", in->name,
                 in->format == IMAGE__JPEG  ? "JPEG"
                 : in->format == IMAGE__PNG ? "PNG"
                                            : "WebP");
        return image__fail_vips(e, "ImageError", what);
    }
    in->width = img->Xsize;
    in->height = img->Ysize;
    VIPS(g_object_unref)(img);
    return 0;
}

int
image__input_open(int fd, const image__req_t *req, const image__limits_t *lim, image__input_t *in,
                  image__err_t *e)
{
    struct stat st;

    memset(in, 0, sizeof(*in));
    if (req->input_path)
        snprintf(in->name, sizeof(in->name), "input \"%.250s\"", req->input_path);
    else
        snprintf(in->name, sizeof(in->name), "input");
    if (fd < 0)
        return image__fail(e, "ValueError",
                           "no input file: name it in kwargs files {\"input\": PATH} (or kiln "
                           "run --file input=PATH)");
    if (fstat(fd, &st) < 0)
        return image__fail(e, "ImageError", "%s: fstat: %s", in->name, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        if (st.st_size == 0)
            return image__fail(e, "ImageError", "%s is empty (0 bytes)", in->name);
        if (st.st_size > lim->max_input_bytes)
            return image__fail(e, "ValueError", "%s is %lld bytes, above max_input_bytes %lld",
                               in->name, (long long)st.st_size, (long long)lim->max_input_bytes);
        /* kiln run --batch hands every task a duplicate of one descriptor:
         * they share the offset. */
        if (lseek(fd, 0, SEEK_SET) < 0)
            return image__fail(e, "ImageError", "%s: lseek: %s", in->name, strerror(errno));
    }
    in->source = VIPS(vips_source_new_from_descriptor)(fd);
    if (!in->source)
        return image__fail_vips(e, "ImageError", in->name);
    if (sniff(in, e) < 0 || header(in, e) < 0) {
        image__input_close(in);
        return -1;
    }
    if ((int64_t)in->width * in->height > lim->max_pixels) {
        image__fail(e, "DecompressionBombError", "%s claims %dx%d pixels, above max_pixels %lld",
                    in->name, in->width, in->height, (long long)lim->max_pixels);
        image__input_close(in);
        return -1;
    }
    return 0;
}

void
image__input_close(image__input_t *in)
{
    if (in->source)
        VIPS(g_object_unref)(in->source);
    in->source = NULL;
}
