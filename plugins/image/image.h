/*
 * image.h -- what the files of the image plugin share.
 *
 *   image.c      the plugin: task table, policy, init/fini, the handlers
 *   args.c       a task's kwargs -> image__req_t (ValueError on anything bad)
 *   limits.c     the operator's settings -> image__limits_t, checked in init
 *   load.c       the input descriptor: sniff the format, read the header,
 *                refuse what is over the limits, before any decode
 *   transform.c  the pipeline: thumbnail, resize (contain/cover/fill), convert
 *   save.c       encode to the output descriptor, with progress
 *   error.c      image__err_t and the libvips error buffer
 *   vips.c       libvips, loaded and started by init
 *
 * Internal names start with image__; nothing here is exported (the plugin is
 * built with -fvisibility=hidden and exports only kiln_plugin).
 */
#ifndef KILN_PLUGIN_IMAGE_H
#define KILN_PLUGIN_IMAGE_H

#include <jansson.h>
#include <stdint.h>
/* vector.h needs the types vips.h declares: keep the order. */
// clang-format off
#include <vips/vips.h>
#include <vips/vector.h>
// clang-format on

/* Every libvips and GLib function the plugin calls.  image.so does not link
 * libvips: the probe that lists a plugin's tasks (kiln run, kiln plugins,
 * kiln worker's start) then loads a small library, not libvips and its ~100
 * dependencies; init loads them (vips.c), under the loader filter.  Calls go
 * through VIPS(name)(...), typed from libvips's own headers. */
#define IMAGE__VIPS_FUNCTIONS(X)                                                                   \
    X(g_log_set_writer_func)                                                                       \
    X(g_object_ref)                                                                                \
    X(g_object_unref)                                                                              \
    X(g_signal_connect_data)                                                                       \
    X(g_signal_handler_disconnect)                                                                 \
    X(vips_area_unref)                                                                             \
    X(vips_array_double_new)                                                                       \
    X(vips_cache_set_max)                                                                          \
    X(vips_cache_set_max_files)                                                                    \
    X(vips_cache_set_max_mem)                                                                      \
    X(vips_concurrency_set)                                                                        \
    X(vips_error)                                                                                  \
    X(vips_error_buffer)                                                                           \
    X(vips_error_clear)                                                                            \
    X(vips_flatten)                                                                                \
    X(vips_foreign_is_a_source)                                                                    \
    X(vips_image_hasalpha)                                                                         \
    X(vips_image_set_kill)                                                                         \
    X(vips_image_set_progress)                                                                     \
    X(vips_init)                                                                                   \
    X(vips_jpegload_source)                                                                        \
    X(vips_jpegsave_target)                                                                        \
    X(vips_operation_block_set)                                                                    \
    X(vips_pngload_source)                                                                         \
    X(vips_pngsave_target)                                                                         \
    X(vips_shutdown)                                                                               \
    X(vips_source_new_from_descriptor)                                                             \
    X(vips_source_sniff)                                                                           \
    X(vips_target_new_to_descriptor)                                                               \
    X(vips_thumbnail_source)                                                                       \
    X(vips_vector_set_enabled)                                                                     \
    X(vips_version)                                                                                \
    X(vips_webpload_source)                                                                        \
    X(vips_webpsave_target)

typedef struct image__vips {
#define IMAGE__VIPS_MEMBER(f) __typeof__(f) *f;
    IMAGE__VIPS_FUNCTIONS(IMAGE__VIPS_MEMBER)
#undef IMAGE__VIPS_MEMBER
} image__vips_t;

extern image__vips_t image__vips; /* filled by image__vips_open() */
#define VIPS(f) (image__vips.f)

/* Formats read and written. */
typedef enum image__format {
    IMAGE__JPEG,
    IMAGE__PNG,
    IMAGE__WEBP,
    IMAGE__FORMAT_COUNT
} image__format_t;

typedef enum image__op { IMAGE__THUMBNAIL, IMAGE__RESIZE, IMAGE__CONVERT } image__op_t;

/* How image.resize fits the source into width x height. */
typedef enum image__fit {
    IMAGE__CONTAIN, /* keep the aspect, fit inside (default) */
    IMAGE__COVER,   /* keep the aspect, fill the box, crop the overflow (centred) */
    IMAGE__FILL     /* stretch to exactly width x height */
} image__fit_t;

/* The operator's limits (settings), fixed for the life of a child. */
typedef struct image__limits {
    int64_t max_pixels;      /* largest width x height an input header may claim */
    int max_width;           /* largest output width, pixels */
    int max_height;          /* largest output height, pixels */
    int64_t max_input_bytes; /* largest input file, bytes */
} image__limits_t;

/* One task's arguments, checked.  Strings are borrowed from the kwargs. */
typedef struct image__req {
    image__op_t op;
    int width;              /* requested box, pixels; 0 when not given */
    int height;             /* 0 when not given */
    image__fit_t fit;       /* image.resize only */
    int enlarge;            /* image.thumbnail: 1 to allow upscaling */
    int format;             /* image__format_t of the output, or -1: the input's */
    int quality;            /* 1..100, JPEG and WebP */
    const char *input_path; /* kwargs files.input, only to name it in messages, or NULL */
} image__req_t;

/* Why a task failed: the Celery exc_type and a message naming the cause. */
typedef struct image__err {
    const char *type; /* "ValueError", "ImageError", "DecompressionBombError", ... */
    char msg[900];
} image__err_t;

/* An opened input: its source (owned) and what its header says. */
typedef struct image__input {
    VipsSource *source;     /* reads the input descriptor; unref with image__input_close() */
    image__format_t format; /* sniffed from the first bytes */
    int width;              /* from the header, before any decode */
    int height;
    char name[300]; /* `input "PATH"` or `input`, for messages */
} image__input_t;

/* Called while the output is computed with the percentage done; a nonzero
 * return stops the computation (the soft time limit). */
typedef int (*image__progress_fn)(void *arg, int percent);

/* vips.c */
int image__vips_open(image__err_t *e);

/* error.c */
int image__fail(image__err_t *e, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int image__fail_vips(image__err_t *e, const char *type, const char *what);

/* args.c */
const char *image__format_name(image__format_t f);
int image__args_parse(const json_t *args, const json_t *kwargs, image__op_t op,
                      const image__limits_t *lim, image__req_t *req, image__err_t *e);

/* limits.c */
int image__limits_parse(const json_t *settings, image__limits_t *lim, image__err_t *e);

/* load.c */
int image__input_open(int fd, const image__req_t *req, const image__limits_t *lim,
                      image__input_t *in, image__err_t *e);
void image__input_close(image__input_t *in);

/* transform.c */
int image__transform(image__input_t *in, const image__req_t *req, const image__limits_t *lim,
                     VipsImage **out, image__err_t *e);

/* save.c */
int image__output_check(int fd, image__err_t *e);
int image__save(VipsImage *img, int fd, image__format_t format, int quality, const char *input,
                image__progress_fn progress, void *arg, int64_t *bytes, image__err_t *e);

#endif /* KILN_PLUGIN_IMAGE_H */
