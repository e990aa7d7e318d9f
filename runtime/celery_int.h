/*
 * celery_int.h -- what runtime/celery.c (reading), celery_write.c (writing)
 * and celery_text.c (the encodings under both) share.  Not for other files:
 * celery.h is the module's interface.
 */
#ifndef KILN_CELERY_INT_H
#define KILN_CELERY_INT_H

#include "parse.h" /* kiln__json_type */

#include <jansson.h>
#include <stddef.h>

/* Retry counts above this are refused (and cannot be bumped). */
#define KILN__CELERY_RETRIES_MAX 2147483647L

/* Python's json.dumps(): ", " and ": " separators, ensure_ascii. */
#define KILN__CELERY_DUMP_FLAGS (JSON_ENSURE_ASCII)

/* Format into err (if any) and return code. */
int kiln__celery_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Strict base64 of the body: *out malloc'd (NUL-terminated), -EPROTO with
 * the offset of the first bad character. */
int kiln__celery_b64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen, char *err,
                            size_t errlen);
/* malloc'd, NULL on ENOMEM. */
char *kiln__celery_b64_encode(const unsigned char *in, size_t n);

/* zlib or gzip data inflated into a malloc'd buffer of at most max_body+1
 * bytes: -E2BIG past max_body, -EPROTO if corrupt, truncated or followed
 * by other bytes. */
int kiln__celery_inflate(const unsigned char *in, size_t n, size_t max_body, unsigned char **out,
                         size_t *outlen, char *err, size_t errlen);

/* datetime.isoformat() of a UTC time: microseconds only when non-zero,
 * "+00:00" when with_tz; "" outside years 1..9999. */
void kiln__celery_iso(double epoch, int with_tz, char *buf, size_t len);

/* The envelope's fast path (celery_scan.c): a new object holding only the
 * fields celery.c reads, or NULL when the message is malformed or unusual
 * (then decode it whole with jansson). */
json_t *kiln__celery_scan(const char *data, size_t len);
/* The same scanner on a whole JSON text (a body): the value, or NULL (then
 * decode it with jansson, which says what is wrong).  When the value is an
 * array of two items or more, span[0..1] and span[2..3] are the offset and
 * length of the first two in `data`; else all four are 0. */
json_t *kiln__celery_scan_value(const char *data, size_t len, size_t span[4]);

/* Wall-clock time, epoch seconds. */
double kiln__celery_now(void);

#endif
