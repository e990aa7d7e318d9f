/*
 * parse.h -- parsers for command-line and config values.  Each returns 0
 * or -EINVAL and writes a message naming the value and what was expected.
 */
#ifndef KILN_PARSE_H
#define KILN_PARSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* "200M", "1G", "512MiB", "1.5GB", "4096" (bytes).  K/M/G/T are powers of
 * 1024, with or without "B"/"iB".  Must be > 0 and fit in 63 bits. */
int kiln__parse_size(const char *s, uint64_t *out, char *err, size_t errlen);
/* "30", "1.5s", "500ms", "2m", "1h" -> seconds (>= 0, finite). */
int kiln__parse_duration(const char *s, double *out, char *err, size_t errlen);
/* A decimal integer in [min, max]. */
int kiln__parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err,
                     size_t errlen);

/* A JSON value's type in words ("an object", "a real", ...), for messages. */
const char *kiln__json_type(const json_t *v);
/* 1 if s can be written between JSON quotes as it is (printable ASCII, no
 * quote or backslash): then no escaping is needed. */
int kiln__json_plain(const char *s);

#endif
