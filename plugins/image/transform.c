/*
 * transform.c -- the pipeline from the opened input to the image to encode.
 * Nothing is computed here (libvips is lazy): the output's size is known, and
 * checked against max_width/max_height, before any pixel is decoded.
 *
 *   image.thumbnail  vips_thumbnail_source: shrink-on-load (JPEG DCT scaling,
 *                    WebP scaled decode), fit within width x height, never
 *                    larger than the source unless enlarge
 *   image.resize     the same operation: contain = fit inside, cover = fill
 *                    the box and crop the centre, fill = stretch to exactly
 *                    width x height.  With one side only, the other follows
 *                    the aspect ratio (all three fits agree then).
 *   image.convert    the input as it is, for a new encoder
 *
 * Thumbnail and resize turn the image upright by its EXIF orientation and
 * into sRGB if it carries an ICC profile or is CMYK; convert keeps the pixels.
 * Truncated or corrupt data fails the task (fail_on "error") instead of
 * giving grey pixels.
 */
#include "image.h"

static int
thumbnail(image__input_t *in, const image__req_t *req, VipsImage **out)
{
    int w = req->width, h = req->height;
    VipsSize size = VIPS_SIZE_BOTH;
    VipsInteresting crop = VIPS_INTERESTING_NONE;

    if (req->op == IMAGE__THUMBNAIL) {
        if (!h)
            h = w;
        if (!req->enlarge)
            size = VIPS_SIZE_DOWN;
    } else if (!w || !h) {
        /* One side: the other is unbounded, so the given one decides. */
        w = w ? w : VIPS_MAX_COORD;
        h = h ? h : VIPS_MAX_COORD;
    } else if (req->fit == IMAGE__COVER) {
        crop = VIPS_INTERESTING_CENTRE;
    } else if (req->fit == IMAGE__FILL) {
        size = VIPS_SIZE_FORCE;
    }
    /* libvips 8.14's thumbnail does not hand its own fail_on to the loader;
     * the loader's option string does. */
    return VIPS(vips_thumbnail_source)(in->source, out, w, "height", h, "size", size, "crop", crop,
                                       "option_string", "fail_on=error", NULL);
}

static int
load(image__input_t *in, VipsImage **out)
{
    if (in->format == IMAGE__JPEG)
        return VIPS(vips_jpegload_source)(in->source, out, "access", VIPS_ACCESS_SEQUENTIAL,
                                          "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    if (in->format == IMAGE__PNG)
        return VIPS(vips_pngload_source)(in->source, out, "access", VIPS_ACCESS_SEQUENTIAL,
                                         "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    return VIPS(vips_webpload_source)(in->source, out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                      VIPS_FAIL_ON_ERROR, NULL);
}

int
image__transform(image__input_t *in, const image__req_t *req, const image__limits_t *lim,
                 VipsImage **out, image__err_t *e)
{
    VipsImage *img = NULL;
    int rc;

    *out = NULL;
    rc = req->op == IMAGE__CONVERT ? load(in, &img) : thumbnail(in, req, &img);
    if (rc < 0)
        return image__fail_vips(e, "ImageError", in->name);
    if (img->Xsize > lim->max_width || img->Ysize > lim->max_height) {
        image__fail(e, "ValueError", "the output would be %dx%d pixels, above %s %d", img->Xsize,
                    img->Ysize, img->Xsize > lim->max_width ? "max_width" : "max_height",
                    img->Xsize > lim->max_width ? lim->max_width : lim->max_height);
        VIPS(g_object_unref)(img);
        return -1;
    }
    *out = img;
    return 0;
}
