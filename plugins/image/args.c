/*
 * args.c -- a task's kwargs, checked into an image__req_t.  Every problem is
 * a ValueError naming the argument and why.
 *
 *   all tasks        files {"input": PATH}, outputs {"output": PATH} (opened by
 *                    the runtime; the paths are read here only to name the
 *                    input in messages and to take the output format from
 *                    the extension), format "jpeg"|"png"|"webp", quality 1..100
 *   image.thumbnail  width (required), height (default: width), enlarge
 *   image.resize     width and/or height, fit "contain"|"cover"|"fill"
 *   image.convert    nothing else
 */
#include "image.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_QUALITY 80

static const char *const format_names[IMAGE__FORMAT_COUNT] = {"jpeg", "png", "webp"};

const char *
image__format_name(image__format_t f)
{
    return f >= 0 && f < IMAGE__FORMAT_COUNT ? format_names[f] : "unknown";
}

static const char *const op_keys[3][4] = {
    [IMAGE__THUMBNAIL] = {"width", "height", "enlarge", NULL},
    [IMAGE__RESIZE] = {"width", "height", "fit", NULL},
    [IMAGE__CONVERT] = {NULL},
};
static const char *const common_keys[] = {"files", "outputs", "format", "quality", NULL};
static const char *const setting_keys[] = {"max_pixels", "max_width", "max_height",
                                           "max_input_bytes", NULL};

static int
in_list(const char *const *list, const char *key)
{
    for (; *list; list++)
        if (strcmp(*list, key) == 0)
            return 1;
    return 0;
}

/* Every key is one this task takes; the limits are the operator's alone. */
static int
check_keys(const json_t *kwargs, image__op_t op, image__err_t *e)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)kwargs, key, v)
    {
        if (in_list(common_keys, key) || in_list(op_keys[op], key))
            continue;
        if (in_list(setting_keys, key))
            return image__fail(e, "ValueError",
                               "%s is a setting of the worker (pools.image.settings), not a "
                               "task argument",
                               key);
        return image__fail(e, "ValueError", "unknown argument \"%.100s\"", key);
    }
    return 0;
}

/* A short description of a JSON value for a message: "\"gif\"", "a number". */
static const char *
describe(const json_t *v)
{
    static char buf[64];

    if (json_is_string(v)) {
        snprintf(buf, sizeof(buf), "\"%.40s\"", json_string_value(v));
        return buf;
    }
    return json_is_number(v)    ? "a number"
           : json_is_boolean(v) ? "a boolean"
           : json_is_null(v)    ? "null"
           : json_is_array(v)   ? "an array"
                                : "an object";
}

/* An optional integer side: 0 when absent, else 1..max. */
static int
get_side(const json_t *kwargs, const char *key, int max, const char *max_key, int *out,
         image__err_t *e)
{
    json_t *v = json_object_get(kwargs, key);
    json_int_t n;

    *out = 0;
    if (!v)
        return 0;
    n = json_integer_value(v);
    if (!json_is_integer(v))
        return image__fail(e, "ValueError", "%s must be an integer above 0, got %s", key,
                           describe(v));
    if (n < 1)
        return image__fail(e, "ValueError", "%s must be an integer above 0, got %lld", key,
                           (long long)n);
    if (n > max)
        return image__fail(e, "ValueError", "%s %lld is above %s %d", key, (long long)n, max_key,
                           max);
    *out = (int)n;
    return 0;
}

/* An extension: jpg, jpeg, png, webp (any case). */
static int
format_parse(const char *s, size_t len)
{
    int f;

    for (f = 0; f < IMAGE__FORMAT_COUNT; f++)
        if (strlen(format_names[f]) == len && strncasecmp(s, format_names[f], len) == 0)
            return f;
    if (len == 3 && strncasecmp(s, "jpg", 3) == 0)
        return IMAGE__JPEG;
    return -1;
}

/* The output format: kwargs format, else the extension of outputs.output
 * (.jpg/.jpeg/.png/.webp), else -1 (the input's). */
static int
get_format(const json_t *kwargs, int *format, image__err_t *e)
{
    json_t *v = json_object_get(kwargs, "format");
    const char *path, *dot, *slash;

    *format = -1;
    if (v) {
        const char *s = json_string_value(v);
        int f;
        for (f = 0; s && f < IMAGE__FORMAT_COUNT; f++) {
            if (strcmp(s, format_names[f]) == 0) {
                *format = f;
                return 0;
            }
        }
        return image__fail(e, "ValueError", "format must be \"jpeg\", \"png\" or \"webp\", got %s",
                           describe(v));
    }
    path = json_string_value(json_object_get(json_object_get(kwargs, "outputs"), "output"));
    if (!path)
        return 0;
    dot = strrchr(path, '.');
    slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        *format = format_parse(dot + 1, strlen(dot + 1));
    return 0;
}

int
image__args_parse(const json_t *args, const json_t *kwargs, image__op_t op,
                  const image__limits_t *lim, image__req_t *req, image__err_t *e)
{
    json_t *v;

    memset(req, 0, sizeof(*req));
    req->op = op;
    req->quality = DEFAULT_QUALITY;
    if (json_array_size(args) > 0)
        return image__fail(e, "ValueError",
                           "takes keyword arguments only, got %zu positional argument(s)",
                           json_array_size(args));
    if (check_keys(kwargs, op, e) < 0 || get_format(kwargs, &req->format, e) < 0)
        return -1;
    req->input_path = json_string_value(json_object_get(json_object_get(kwargs, "files"), "input"));
    v = json_object_get(kwargs, "quality");
    if (v) {
        json_int_t q = json_integer_value(v);
        if (!json_is_integer(v))
            return image__fail(e, "ValueError", "quality must be an integer from 1 to 100, got %s",
                               describe(v));
        if (q < 1 || q > 100)
            return image__fail(e, "ValueError",
                               "quality must be an integer from 1 to 100, got %lld", (long long)q);
        req->quality = (int)q;
    }
    if (op == IMAGE__CONVERT)
        return 0;
    if (get_side(kwargs, "width", lim->max_width, "max_width", &req->width, e) < 0 ||
        get_side(kwargs, "height", lim->max_height, "max_height", &req->height, e) < 0)
        return -1;
    if (op == IMAGE__THUMBNAIL) {
        if (!req->width)
            return image__fail(e, "ValueError", "width is required");
        v = json_object_get(kwargs, "enlarge");
        if (v && !json_is_boolean(v))
            return image__fail(e, "ValueError", "enlarge must be true or false");
        req->enlarge = json_is_true(v);
        return 0;
    }
    if (!req->width && !req->height)
        return image__fail(e, "ValueError", "width or height is required (or both)");
    v = json_object_get(kwargs, "fit");
    if (v) {
        const char *s = json_string_value(v);
        if (s && strcmp(s, "contain") == 0)
            req->fit = IMAGE__CONTAIN;
        else if (s && strcmp(s, "cover") == 0)
            req->fit = IMAGE__COVER;
        else if (s && strcmp(s, "fill") == 0)
            req->fit = IMAGE__FILL;
        else
            return image__fail(e, "ValueError",
                               "fit must be \"contain\", \"cover\" or \"fill\", got %s",
                               describe(v));
    }
    return 0;
}
