/*
 * limits.c -- the operator's settings (kiln_settings(): `pools.image.settings`
 * in the worker's config, `kiln run --settings`), checked once in init.  A
 * task's kwargs cannot change them.
 *
 *   max_pixels       largest width x height an input's header may claim
 *                    (default 250000000: a 100-megapixel photo passes, a PNG
 *                    claiming 100000x100000 does not)
 *   max_width        largest output width in pixels (default 16384)
 *   max_height       largest output height in pixels (default 16384)
 *   max_input_bytes  largest input file in bytes (default 268435456, 256 MiB)
 */
#include "image.h"

#include <string.h>

#define DEFAULT_MAX_PIXELS      250000000
#define DEFAULT_MAX_SIDE        16384
#define DEFAULT_MAX_INPUT_BYTES (256ll << 20)

static const struct {
    const char *key;
    json_int_t max;
} keys[] = {
    {"max_pixels", (json_int_t)VIPS_MAX_COORD *VIPS_MAX_COORD},
    {"max_width", VIPS_MAX_COORD},
    {"max_height", VIPS_MAX_COORD},
    {"max_input_bytes", INT64_MAX},
};

int
image__limits_parse(const json_t *settings, image__limits_t *lim, image__err_t *e)
{
    const char *key;
    json_t *v;

    lim->max_pixels = DEFAULT_MAX_PIXELS;
    lim->max_width = DEFAULT_MAX_SIDE;
    lim->max_height = DEFAULT_MAX_SIDE;
    lim->max_input_bytes = DEFAULT_MAX_INPUT_BYTES;
    if (!json_is_object(settings))
        return image__fail(e, "ValueError", "settings must be a JSON object");
    json_object_foreach((json_t *)settings, key, v)
    {
        size_t i;
        json_int_t n;

        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strcmp(key, keys[i].key) == 0)
                break;
        if (i == sizeof(keys) / sizeof(keys[0]))
            return image__fail(e, "ValueError",
                               "unknown setting \"%.100s\" (known: max_pixels, max_width, "
                               "max_height, max_input_bytes)",
                               key);
        n = json_integer_value(v);
        if (!json_is_integer(v) || n < 1 || n > keys[i].max)
            return image__fail(e, "ValueError", "settings.%s must be an integer from 1 to %lld",
                               key, (long long)keys[i].max);
        if (i == 0)
            lim->max_pixels = n;
        else if (i == 1)
            lim->max_width = (int)n;
        else if (i == 2)
            lim->max_height = (int)n;
        else
            lim->max_input_bytes = n;
    }
    return 0;
}
