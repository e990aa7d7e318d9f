/*
 * limits.c -- the video plugin's settings (kiln_settings(): the config's
 * pools.video.settings or `kiln run --settings`), read and checked once per
 * child in init.  Every key is optional; an unknown key or a bad value fails
 * init with a message naming the key, so a typo cannot silently leave a limit
 * at its default.
 *
 *   key                unit     default              range
 *   max_duration       seconds  14400 (4 h)          > 0, <= 1e6
 *   max_width          pixels   8192                 16 .. 65536
 *   max_height         pixels   8192                 16 .. 65536
 *   max_pixels         pixels   9437184 (4096x2304)  256 .. 2^31, per decoded frame
 *   max_output_pixels  pixels   2073600 (1920x1080)  256 .. 2^31, per transcoded frame
 *   max_frames         frames   1000000              1 .. 2^40, decoded per task
 *   probe_size         bytes    5000000              32 .. 1 GiB, for finding the streams
 *   analyze_duration   seconds  5                    > 0, <= 3600
 *   threads            threads  0 (auto)             0 .. 16, per codec
 *
 * The pixel defaults keep the worst task they allow within the policy's
 * 1 GiB: a 4K input decoded with 8 threads, a 1080p output from x264 with 8
 * (docs/plugins/video.md has the measurements).
 */
#include "video.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

video_limits_t video__limits;

typedef struct setting {
    const char *name;
    int integer; /* 1: must be an integer */
    double min, max;
    size_t offset;
} setting_t;

#define INT_KEY(n, lo, hi)                                                                         \
    {                                                                                              \
#n, 1, lo, hi, offsetof(video_limits_t, n)                                                 \
    }
#define NUM_KEY(n, lo, hi)                                                                         \
    {                                                                                              \
#n, 0, lo, hi, offsetof(video_limits_t, n)                                                 \
    }

static const setting_t keys[] = {
    NUM_KEY(max_duration, 0, 1e6),
    INT_KEY(max_width, 16, 65536),
    INT_KEY(max_height, 16, 65536),
    INT_KEY(max_pixels, 256, 2147483648.0),
    INT_KEY(max_output_pixels, 256, 2147483648.0),
    INT_KEY(max_frames, 1, 1099511627776.0),
    INT_KEY(probe_size, 32, 1073741824.0),
    NUM_KEY(analyze_duration, 0, 3600),
    INT_KEY(threads, 0, 16),
};

static void
defaults(video_limits_t *l)
{
    l->max_duration = 4 * 3600;
    l->max_width = 8192;
    l->max_height = 8192;
    l->max_pixels = 4096 * 2304;
    l->max_output_pixels = 1920 * 1080;
    l->max_frames = 1000000;
    l->probe_size = 5000000;
    l->analyze_duration = 5;
    l->threads = 0;
}

static void
store(video_limits_t *l, const setting_t *k, double v)
{
    char *p = (char *)l + k->offset;

    if (strcmp(k->name, "threads") == 0) {
        int i = (int)v;
        memcpy(p, &i, sizeof(i));
    } else if (k->integer) {
        int64_t i = (int64_t)v;
        memcpy(p, &i, sizeof(i));
    } else {
        memcpy(p, &v, sizeof(v));
    }
}

int
video__limits_parse(const json_t *settings, video_limits_t *l, char *err, size_t errlen)
{
    const char *name;
    json_t *v;

    defaults(l);
    if (!json_is_object(settings)) {
        snprintf(err, errlen, "settings must be a JSON object");
        return -1;
    }
    json_object_foreach((json_t *)settings, name, v)
    {
        const setting_t *k = NULL;
        double d;
        size_t i;

        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strcmp(name, keys[i].name) == 0)
                k = &keys[i];
        if (!k) {
            snprintf(err, errlen,
                     "unknown setting \"%.64s\" (known: max_duration, max_width, max_height, "
                     "max_pixels, max_output_pixels, max_frames, probe_size, analyze_duration, "
                     "threads)",
                     name);
            return -1;
        }
        if (k->integer ? !json_is_integer(v) : !json_is_number(v)) {
            snprintf(err, errlen, "settings.%s must be %s, not %s", k->name,
                     k->integer ? "an integer" : "a number", video__json_kind(v));
            return -1;
        }
        d = json_number_value(v);
        /* Durations must be above their minimum (0 is no duration at all). */
        if (!isfinite(d) || d > k->max || (k->integer ? d < k->min : d <= k->min)) {
            snprintf(err, errlen, "settings.%s is %g; it must be %s %g and at most %g", k->name, d,
                     k->integer ? "at least" : "above", k->min, k->max);
            return -1;
        }
        store(l, k, d);
    }
    return 0;
}
