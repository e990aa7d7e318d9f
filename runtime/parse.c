/*
 * parse.c -- sizes, durations and counts from outside text.
 */
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
kiln__parse_size(const char *s, uint64_t *out, char *err, size_t errlen)
{
    char *end;
    double v, mult = 1;

    if (!s || !*s || isspace((unsigned char)*s) || *s == '-' || *s == '+') {
        snprintf(err, errlen, "size \"%s\" is not a positive number of bytes (e.g. 200M, 1G)",
                 s ? s : "");
        return -EINVAL;
    }
    errno = 0;
    v = strtod(s, &end);
    if (end == s || errno || !isfinite(v)) {
        snprintf(err, errlen, "size \"%s\" does not start with a number", s);
        return -EINVAL;
    }
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K':
            mult = 1024.0;
            break;
        case 'M':
            mult = 1024.0 * 1024;
            break;
        case 'G':
            mult = 1024.0 * 1024 * 1024;
            break;
        case 'T':
            mult = 1024.0 * 1024 * 1024 * 1024;
            break;
        case 'B':
            mult = 1;
            break;
        default:
            snprintf(err, errlen, "size \"%s\" has an unknown unit \"%s\" (use K, M, G or T)", s,
                     end);
            return -EINVAL;
        }
        if (toupper((unsigned char)*end) != 'B') {
            end++;
            if (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0)
                end += strlen(end);
        } else {
            end++;
        }
        if (*end) {
            snprintf(err, errlen, "size \"%s\" has trailing characters \"%s\"", s, end);
            return -EINVAL;
        }
    }
    v *= mult;
    if (v < 1 || v > 9.2e18) {
        snprintf(err, errlen, "size \"%s\" is out of range (1 byte to 8 EiB)", s);
        return -EINVAL;
    }
    *out = (uint64_t)v;
    return 0;
}

int
kiln__parse_duration(const char *s, double *out, char *err, size_t errlen)
{
    char *end;
    double v;

    if (!s || !*s || isspace((unsigned char)*s) || *s == '-' || *s == '+') {
        snprintf(err, errlen, "duration \"%s\" is not a non-negative number of seconds",
                 s ? s : "");
        return -EINVAL;
    }
    errno = 0;
    v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0) {
        snprintf(err, errlen, "duration \"%s\" is not a non-negative number of seconds", s);
        return -EINVAL;
    }
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        ;
    else if (strcmp(end, "ms") == 0)
        v /= 1000.0;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        v *= 60.0;
    else if (strcmp(end, "h") == 0)
        v *= 3600.0;
    else {
        snprintf(err, errlen, "duration \"%s\" has an unknown unit \"%s\" (use ms, s, m or h)", s,
                 end);
        return -EINVAL;
    }
    if (v > 1e9) {
        snprintf(err, errlen, "duration \"%s\" is too long", s);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int
kiln__parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    char *end;
    unsigned long long v;

    if (!s || !isdigit((unsigned char)*s)) {
        snprintf(err, errlen, "\"%s\" is not a whole number", s ? s : "");
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end) {
        snprintf(err, errlen, "\"%s\" is not a whole number", s);
        return -EINVAL;
    }
    if (v < min || v > max) {
        snprintf(err, errlen, "%s is out of range [%llu, %llu]", s, (unsigned long long)min,
                 (unsigned long long)max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* "an object", "an array", "a string", "an integer", "a real", "a boolean" or
 * "null", for messages about JSON values of the wrong type. */
const char *
kiln__json_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

int
kiln__json_plain(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}
