/*
 * celery.c -- Celery message protocol 2 over kombu's Redis transport, and
 * Celery's Redis result meta.  Pure functions, see celery.h.
 *
 * What a Celery 5.2 producer writes (celery/app/amqp.py as_task_v2, kombu's
 * virtual Channel.prepare_message and _inplace_augment_message, kombu's Redis
 * Channel._put) is mirrored here field by field and in the same key order.
 * Python's json.dumps() separators (", ", ": ") and ensure_ascii are what
 * jansson writes with JSON_ENSURE_ASCII and no indent.
 */
#include "celery.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define INFLATE_CHUNK   (64 * 1024)
#define RETRIES_MAX     INT32_MAX
#define REPR_MAXLEN     1024 /* celery's argsrepr_maxsize / kwargsrepr_maxsize */
#define REPR_MAXLEVELS  3    /* saferepr's default */
#define JSON_DUMP_FLAGS (JSON_ENSURE_ASCII)

/* ---------------------------------------------------------------- errors */

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static const char *
jtype(const json_t *v)
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

/* ---------------------------------------------------------------- base64 */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict RFC 4648 base64: the standard alphabet, length a multiple of 4,
 * '=' only as the last one or two characters.  *out is malloc'd. */
static int
b64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen, char *err, size_t errlen)
{
    unsigned char *buf;
    size_t i, o = 0, pad = 0;

    *out = NULL;
    *outlen = 0;
    if (n % 4 != 0)
        return fail(err, errlen, -EPROTO,
                    "body is not valid base64 at offset %zu: length %zu is not a multiple of 4",
                    n - n % 4, n);
    if (n >= 1 && s[n - 1] == '=')
        pad++;
    if (n >= 2 && s[n - 2] == '=')
        pad++;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '=' && i >= n - pad)
            continue;
        if (c == '=')
            return fail(err, errlen, -EPROTO,
                        "body is not valid base64 at offset %zu: padding '=' before the end", i);
        if (b64_value(c) < 0)
            return fail(err, errlen, -EPROTO,
                        "body is not valid base64 at offset %zu: character 0x%02x", i, c);
    }
    buf = malloc(n / 4 * 3 + 1);
    if (!buf)
        return fail(err, errlen, -ENOMEM, "body: out of memory decoding %zu bytes of base64", n);
    for (i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int k, valid = (i + 4 == n) ? 4 - (int)pad : 4;

        for (k = 0; k < 4; k++)
            v = (v << 6) | (uint32_t)(k < valid ? b64_value((unsigned char)s[i + k]) : 0);
        buf[o++] = (unsigned char)(v >> 16);
        if (valid > 2)
            buf[o++] = (unsigned char)(v >> 8);
        if (valid > 3)
            buf[o++] = (unsigned char)v;
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
}

static char *
b64_encode(const unsigned char *in, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1);
    size_t i, o = 0;

    if (!out)
        return NULL;
    for (i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;

        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* ---------------------------------------------------------- compression */

/* kombu's "application/x-gzip" (aliases gzip, zlib) is zlib.compress(): the
 * zlib format.  windowBits 15+32 takes zlib and gzip headers alike.  The
 * output buffer grows to at most max_body+1 bytes: a bomb stops there. */
static int
inflate_bounded(const unsigned char *in, size_t n, size_t max_body, unsigned char **out,
                size_t *outlen, char *err, size_t errlen)
{
    z_stream zs;
    unsigned char *buf = NULL;
    size_t cap = 0, used = 0;
    int zrc, rc;

    *out = NULL;
    *outlen = 0;
    memset(&zs, 0, sizeof(zs));
    if (n > UINT_MAX)
        return fail(err, errlen, -E2BIG, "body: compressed body of %zu bytes is too large", n);
    if (inflateInit2(&zs, 15 + 32) != Z_OK)
        return fail(err, errlen, -ENOMEM, "body: cannot start zlib");
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (unsigned)n;
    for (;;) {
        if (used == cap) {
            size_t want = cap + INFLATE_CHUNK;
            unsigned char *nb;

            if (want > max_body + 1)
                want = max_body + 1;
            if (want <= used) {
                rc = fail(err, errlen, -E2BIG, "body decompresses to more than max_body %zu bytes",
                          max_body);
                goto out;
            }
            nb = realloc(buf, want + 1);
            if (!nb) {
                rc = fail(err, errlen, -ENOMEM, "body: out of memory decompressing");
                goto out;
            }
            buf = nb;
            cap = want;
        }
        zs.next_out = buf + used;
        zs.avail_out = (unsigned)(cap - used);
        zrc = inflate(&zs, Z_NO_FLUSH);
        used = cap - zs.avail_out;
        if (used > max_body) {
            rc = fail(err, errlen, -E2BIG, "body decompresses to more than max_body %zu bytes",
                      max_body);
            goto out;
        }
        if (zrc == Z_STREAM_END)
            break;
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0) {
            rc = fail(err, errlen, -EPROTO, "body: compressed data is truncated");
            goto out;
        }
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            rc = fail(err, errlen, -EPROTO, "body: compressed data is corrupt at byte %zu: %s",
                      n - zs.avail_in, zs.msg ? zs.msg : "zlib error");
            goto out;
        }
        if (zrc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
            rc = fail(err, errlen, -EPROTO, "body: compressed data is truncated");
            goto out;
        }
    }
    if (zs.avail_in != 0) {
        rc = fail(err, errlen, -EPROTO, "body has %u bytes after the end of the compressed data",
                  zs.avail_in);
        goto out;
    }
    if (!buf) {
        buf = malloc(1);
        if (!buf) {
            rc = fail(err, errlen, -ENOMEM, "body: out of memory");
            goto out;
        }
    }
    buf[used] = '\0';
    *out = buf;
    *outlen = used;
    buf = NULL;
    rc = 0;
out:
    inflateEnd(&zs);
    free(buf);
    return rc;
}

/* ----------------------------------------------------------------- time */

static int
is_leap(long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(long y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years). */
static long
days_from_civil(long y, int m, int d)
{
    long era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_from_days(long z, long *y, int *m, int *d)
{
    long era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Exactly n decimal digits. */
static int
take_digits(const char **p, int n, int *v)
{
    int i, x = 0;

    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -1;
        x = x * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *v = x;
    return 0;
}

/* ".f" with 1 to 9 digits, as a fraction of a second. */
static int
take_fraction(const char **p, double *frac)
{
    double scale = 0.1;
    int n = 0;

    *frac = 0;
    if (**p != '.')
        return 0;
    (*p)++;
    while (**p >= '0' && **p <= '9') {
        if (++n > 9)
            return -1;
        *frac += (**p - '0') * scale;
        scale /= 10;
        (*p)++;
    }
    return n ? 0 : -1;
}

int
kiln__celery_parse_time(const char *iso, double *epoch)
{
    const char *p = iso;
    int year, mon, day, hh = 0, mm = 0, ss = 0, oh = 0, om = 0, os = 0, sign = 0;
    double frac = 0, ofrac = 0;

    if (!iso || !epoch)
        return -EINVAL;
    if (take_digits(&p, 4, &year) || *p++ != '-' || take_digits(&p, 2, &mon) || *p++ != '-' ||
        take_digits(&p, 2, &day))
        return -EINVAL;
    if (year < 1 || mon < 1 || mon > 12 || day < 1 || day > month_days(year, mon))
        return -EINVAL;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (take_digits(&p, 2, &hh) || *p++ != ':' || take_digits(&p, 2, &mm))
            return -EINVAL;
        if (*p == ':') {
            p++;
            if (take_digits(&p, 2, &ss) || take_fraction(&p, &frac))
                return -EINVAL;
        }
        if (hh > 23 || mm > 59 || ss > 59)
            return -EINVAL;
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            sign = *p++ == '-' ? -1 : 1;
            if (take_digits(&p, 2, &oh))
                return -EINVAL;
            if (*p == ':')
                p++;
            if (take_digits(&p, 2, &om))
                return -EINVAL;
            if (*p == ':') { /* Python writes +HH:MM:SS[.ffffff] for odd offsets */
                p++;
                if (take_digits(&p, 2, &os) || take_fraction(&p, &ofrac))
                    return -EINVAL;
            }
            if (oh > 23 || om > 59 || os > 59)
                return -EINVAL;
        }
    }
    if (*p != '\0')
        return -EINVAL;
    *epoch = (double)days_from_civil(year, mon, day) * 86400.0 + hh * 3600 + mm * 60 + ss + frac -
             sign * (oh * 3600 + om * 60 + os + ofrac);
    return 0;
}

/* datetime.isoformat(): microseconds only when non-zero; "+00:00" if tz. */
static void
format_time(double epoch, int with_tz, char *buf, size_t len)
{
    long long us, secs, sod;
    long y;
    int m, d, frac;

    if (!buf || !len)
        return;
    buf[0] = '\0';
    /* Years 1..9999, as Python's datetime. */
    if (!isfinite(epoch) || epoch < -62135596800.0 || epoch >= 253402300800.0)
        return;
    us = llround(epoch * 1e6);
    secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    frac = (int)(us - secs * 1000000);
    sod = secs % 86400;
    if (sod < 0)
        sod += 86400;
    civil_from_days((long)((secs - sod) / 86400), &y, &m, &d);
    if (frac)
        snprintf(buf, len, "%04ld-%02d-%02dT%02lld:%02lld:%02lld.%06d%s", y, m, d, sod / 3600,
                 sod / 60 % 60, sod % 60, frac, with_tz ? "+00:00" : "");
    else
        snprintf(buf, len, "%04ld-%02d-%02dT%02lld:%02lld:%02lld%s", y, m, d, sod / 3600,
                 sod / 60 % 60, sod % 60, with_tz ? "+00:00" : "");
}

void
kiln__celery_format_time(double epoch, char *buf, size_t len)
{
    format_time(epoch, 1, buf, len);
}

static double
now_epoch(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------- uuid, queue key */

void
kiln__celery_uuid(char *buf, size_t len)
{
    unsigned char r[16];
    size_t got = 0;

    while (got < sizeof(r)) {
        ssize_t n = getrandom(r + got, sizeof(r) - got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* No getrandom() (ENOSYS under an old kernel): splitmix64 over
             * the clock, pid and a stack address -- unique, not secret. */
            struct timespec ts;
            uint64_t x;

            clock_gettime(CLOCK_REALTIME, &ts);
            x = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
                ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ts;
            for (; got < sizeof(r); got++) {
                uint64_t z = (x += 0x9e3779b97f4a7c15ull);

                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                r[got] = (unsigned char)(z ^ (z >> 31));
            }
            break;
        }
        got += (size_t)n;
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

const char *
kiln__celery_queue_key(const char *queue, int priority, char *buf, size_t len)
{
    static const int steps[] = {0, 3, 6, 9};
    int i, step = 0;

    /* kombu: clamp to [0, 9], then steps[bisect_right(steps, p) - 1]. */
    if (priority > 9)
        priority = 9;
    for (i = 0; i < 4; i++)
        if (steps[i] <= priority)
            step = steps[i];
    if (step)
        snprintf(buf, len, "%s" KILN__CELERY_PRIORITY_SEP "%d", queue, step);
    else
        snprintf(buf, len, "%s", queue);
    return buf;
}

/* ------------------------------------------------------------- decoding */

/* Copy a string field that may be absent or null; "" then. */
static int
get_str(json_t *obj, const char *where, const char *key, char *dst, size_t dstlen, char *err,
        size_t errlen)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    size_t n;

    dst[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, errlen, -EPROTO, "%s%s is %s, expected a string", where, key, jtype(v));
    n = json_string_length(v);
    if (n >= dstlen)
        return fail(err, errlen, -EPROTO, "%s%s is %zu bytes, longer than %zu", where, key, n,
                    dstlen - 1);
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

/* Copy id and task wherever they fit, before anything can fail. */
static void
peek_ids(json_t *obj, kiln__task_msg_t *out)
{
    json_t *id = json_object_get(obj, "id"), *task = json_object_get(obj, "task");

    if (json_is_string(id) && json_string_length(id) < sizeof(out->id))
        memcpy(out->id, json_string_value(id), json_string_length(id) + 1);
    if (json_is_string(task) && json_string_length(task) < sizeof(out->task))
        memcpy(out->task, json_string_value(task), json_string_length(task) + 1);
}

static int
get_time(json_t *headers, const char *key, double *dst, char *err, size_t errlen)
{
    json_t *v = json_object_get(headers, key);

    *dst = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, errlen, -EPROTO, "headers.%s is %s, expected an ISO 8601 string or null",
                    key, jtype(v));
    if (kiln__celery_parse_time(json_string_value(v), dst) < 0)
        return fail(err, errlen, -EPROTO, "headers.%s \"%.64s\" is not an ISO 8601 time", key,
                    json_string_value(v));
    return 0;
}

static int
get_limit(json_t *tl, size_t i, double *dst, char *err, size_t errlen)
{
    json_t *v = json_array_get(tl, i);

    *dst = 0;
    if (json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(err, errlen, -EPROTO, "headers.timelimit[%zu] is %s, expected a number or null",
                    i, jtype(v));
    *dst = json_number_value(v);
    if (!isfinite(*dst) || *dst < 0)
        return fail(err, errlen, -EPROTO, "headers.timelimit[%zu] is %g, expected >= 0", i, *dst);
    return 0;
}

static int
decode_headers(json_t *h, kiln__task_msg_t *out, char *err, size_t errlen)
{
    json_t *v;
    int rc;

    v = json_object_get(h, "retries");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v))
            return fail(err, errlen, -EPROTO, "headers.retries is %s, expected an integer",
                        jtype(v));
        if (json_integer_value(v) < 0 || json_integer_value(v) > RETRIES_MAX)
            return fail(err, errlen, -EPROTO,
                        "headers.retries is %" JSON_INTEGER_FORMAT ", expected 0 to %d",
                        json_integer_value(v), RETRIES_MAX);
        out->retries = (long)json_integer_value(v);
    }
    if ((rc = get_time(h, "eta", &out->eta, err, errlen)) < 0 ||
        (rc = get_time(h, "expires", &out->expires, err, errlen)) < 0)
        return rc;
    /* Celery writes [time_limit, soft_time_limit]: hard first. */
    v = json_object_get(h, "timelimit");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v))
            return fail(err, errlen, -EPROTO,
                        "headers.timelimit is %s, expected an array [hard, soft]", jtype(v));
        if (json_array_size(v) != 2)
            return fail(err, errlen, -EPROTO,
                        "headers.timelimit has %zu items, expected 2 [hard, soft]",
                        json_array_size(v));
        if ((rc = get_limit(v, 0, &out->time_limit, err, errlen)) < 0 ||
            (rc = get_limit(v, 1, &out->soft_time_limit, err, errlen)) < 0)
            return rc;
    }
    if ((rc = get_str(h, "headers.", "root_id", out->root_id, sizeof(out->root_id), err, errlen)) <
            0 ||
        (rc = get_str(h, "headers.", "parent_id", out->parent_id, sizeof(out->parent_id), err,
                      errlen)) < 0 ||
        (rc = get_str(h, "headers.", "group", out->group, sizeof(out->group), err, errlen)) < 0)
        return rc;
    return 0;
}

static int
decode_properties(json_t *p, kiln__task_msg_t *out, char *err, size_t errlen)
{
    json_t *v, *di;
    int rc;

    v = json_object_get(p, "priority");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v))
            return fail(err, errlen, -EPROTO, "properties.priority is %s, expected an integer",
                        jtype(v));
        /* kombu clamps to [0, 9] before choosing the sub-queue. */
        out->priority = json_integer_value(v) < 0   ? 0
                        : json_integer_value(v) > 9 ? 9
                                                    : (int)json_integer_value(v);
    }
    if ((rc = get_str(p, "properties.", "reply_to", out->reply_to, sizeof(out->reply_to), err,
                      errlen)) < 0)
        return rc;
    di = json_object_get(p, "delivery_info");
    if (di && !json_is_null(di)) {
        if (!json_is_object(di))
            return fail(err, errlen, -EPROTO, "properties.delivery_info is %s, expected an object",
                        jtype(di));
        if ((rc = get_str(di, "properties.delivery_info.", "routing_key", out->routing_key,
                          sizeof(out->routing_key), err, errlen)) < 0 ||
            (rc = get_str(di, "properties.delivery_info.", "exchange", out->exchange,
                          sizeof(out->exchange), err, errlen)) < 0)
            return rc;
    }
    return 0;
}

/* content-type, content-encoding, body_encoding, compression: decided before
 * the body is touched, so nothing that is not JSON is ever deserialized. */
static int
check_encoding(json_t *env, json_t *headers, json_t *props, int *base64, int *compressed, char *err,
               size_t errlen)
{
    json_t *ct = json_object_get(env, "content-type");
    json_t *ce = json_object_get(env, "content-encoding");
    json_t *be = json_object_get(props, "body_encoding");
    json_t *comp = headers ? json_object_get(headers, "compression") : NULL;
    const char *s;

    *base64 = 0;
    *compressed = 0;
    if (!ct || json_is_null(ct))
        return fail(err, errlen, -EMEDIUMTYPE, "content-type is missing; not deserialized");
    if (!json_is_string(ct))
        return fail(err, errlen, -EPROTO, "content-type is %s, expected a string", jtype(ct));
    if (strcmp(json_string_value(ct), "application/json") != 0)
        return fail(err, errlen, -EMEDIUMTYPE, "content type %.100s is not JSON; not deserialized",
                    json_string_value(ct));
    if (ce && !json_is_null(ce)) {
        if (!json_is_string(ce))
            return fail(err, errlen, -EPROTO, "content-encoding is %s, expected a string",
                        jtype(ce));
        s = json_string_value(ce);
        if (strcasecmp(s, "utf-8") != 0 && strcasecmp(s, "utf8") != 0)
            return fail(err, errlen, -EMEDIUMTYPE,
                        "content-encoding %.100s is not utf-8; not deserialized", s);
    }
    if (be && !json_is_null(be)) {
        if (!json_is_string(be))
            return fail(err, errlen, -EPROTO, "properties.body_encoding is %s, expected a string",
                        jtype(be));
        if (strcmp(json_string_value(be), "base64") != 0)
            return fail(err, errlen, -EMEDIUMTYPE,
                        "properties.body_encoding %.100s is not base64; not deserialized",
                        json_string_value(be));
        *base64 = 1;
    }
    if (comp && !json_is_null(comp)) {
        if (!json_is_string(comp))
            return fail(err, errlen, -EPROTO, "headers.compression is %s, expected a string",
                        jtype(comp));
        s = json_string_value(comp);
        if (strcmp(s, "application/x-gzip") != 0 && strcmp(s, "gzip") != 0 &&
            strcmp(s, "zlib") != 0)
            return fail(err, errlen, -EPROTO,
                        "headers.compression %.100s is not supported (only application/x-gzip)", s);
        *compressed = 1;
    }
    return 0;
}

/* The body string to a parsed JSON value, bounded by max_body. */
static int
decode_body(json_t *body, int base64, int compressed, size_t max_body, json_t **parsed, char *err,
            size_t errlen)
{
    unsigned char *raw = NULL, *plain = NULL;
    size_t rawlen, plainlen;
    const char *s;
    size_t n;
    json_error_t je;
    int rc;

    *parsed = NULL;
    if (!body || json_is_null(body))
        return fail(err, errlen, -EPROTO, "body is missing");
    if (!json_is_string(body))
        return fail(err, errlen, -EPROTO, "body is %s, expected a string", jtype(body));
    s = json_string_value(body);
    n = json_string_length(body);
    if (n == 0)
        return fail(err, errlen, -EPROTO, "body is empty");
    /* Refuse before allocating: base64 of n bytes holds at least
     * n / 4 * 3 - 2 bytes; a compressed body over max_body is refused too. */
    if (base64 && n / 4 * 3 > max_body + 2)
        return fail(err, errlen, -E2BIG, "body is about %zu bytes after base64, over max_body %zu",
                    n / 4 * 3, max_body);
    if (!base64 && n > max_body)
        return fail(err, errlen, -E2BIG, "body is %zu bytes, over max_body %zu", n, max_body);
    if (base64) {
        if ((rc = b64_decode(s, n, &raw, &rawlen, err, errlen)) < 0)
            return rc;
        if (rawlen > max_body) {
            free(raw);
            return fail(err, errlen, -E2BIG, "body is %zu bytes after base64, over max_body %zu",
                        rawlen, max_body);
        }
    }
    if (compressed) {
        rc = inflate_bounded(raw ? raw : (const unsigned char *)s, raw ? rawlen : n, max_body,
                             &plain, &plainlen, err, errlen);
        free(raw);
        if (rc < 0)
            return rc;
    } else if (raw) {
        plain = raw;
        plainlen = rawlen;
    }
    *parsed = json_loadb(plain ? (const char *)plain : s, plain ? plainlen : n, 0, &je);
    free(plain);
    if (!*parsed)
        return fail(err, errlen, -EPROTO, "body is not valid JSON: %s at byte %d", je.text,
                    je.position);
    return 0;
}

static int
decode_envelope(json_t *env, size_t max_body, kiln__task_msg_t *out, char *err, size_t errlen)
{
    json_t *headers, *props, *body = NULL, *v;
    int base64, compressed, rc;

    headers = json_object_get(env, "headers");
    if (headers && !json_is_null(headers) && !json_is_object(headers))
        return fail(err, errlen, -EPROTO, "headers is %s, expected an object", jtype(headers));
    if (json_is_null(headers))
        headers = NULL;
    if (headers)
        peek_ids(headers, out);
    props = json_object_get(env, "properties");
    if (!props)
        return fail(err, errlen, -EPROTO, "properties is missing");
    if (!json_is_object(props))
        return fail(err, errlen, -EPROTO, "properties is %s, expected an object", jtype(props));
    if ((rc = check_encoding(env, headers, props, &base64, &compressed, err, errlen)) < 0)
        return rc;
    if ((rc = decode_body(json_object_get(env, "body"), base64, compressed, max_body, &body, err,
                          errlen)) < 0)
        return rc;
    if (json_is_object(body) && (!headers || !json_object_get(headers, "task"))) {
        if (!out->id[0] && !out->task[0])
            peek_ids(body, out);
        rc = fail(err, errlen, -EPROTO,
                  "message protocol 1 is not supported (body is an object "
                  "with the task fields; headers.task is missing)");
        goto out;
    }
    if (!headers) {
        rc = fail(err, errlen, -EPROTO, "headers is missing");
        goto out;
    }
    if ((rc = get_str(headers, "headers.", "id", out->id, sizeof(out->id), err, errlen)) < 0 ||
        (rc = get_str(headers, "headers.", "task", out->task, sizeof(out->task), err, errlen)) < 0)
        goto out;
    if (!out->id[0] || !out->task[0]) {
        rc = fail(err, errlen, -EPROTO, "headers.%s is %s", out->id[0] ? "task" : "id",
                  json_object_get(headers, out->id[0] ? "task" : "id") ? "empty" : "missing");
        goto out;
    }
    if (!json_is_array(body)) {
        rc = fail(err, errlen, -EPROTO, "body is %s, expected an array [args, kwargs, embed]",
                  jtype(body));
        goto out;
    }
    if (json_array_size(body) != 3) {
        rc = fail(err, errlen, -EPROTO, "body has %zu items, expected 3 [args, kwargs, embed]",
                  json_array_size(body));
        goto out;
    }
    v = json_array_get(body, 0);
    if (!json_is_array(v)) {
        rc = fail(err, errlen, -EPROTO, "body[0] (args) is %s, expected an array", jtype(v));
        goto out;
    }
    v = json_array_get(body, 1);
    if (!json_is_object(v)) {
        rc = fail(err, errlen, -EPROTO, "body[1] (kwargs) is %s, expected an object", jtype(v));
        goto out;
    }
    v = json_array_get(body, 2);
    if (!json_is_object(v) && !json_is_null(v)) {
        rc = fail(err, errlen, -EPROTO, "body[2] (embed) is %s, expected an object or null",
                  jtype(v));
        goto out;
    }
    if ((rc = decode_headers(headers, out, err, errlen)) < 0 ||
        (rc = decode_properties(props, out, err, errlen)) < 0)
        goto out;
    out->args = json_incref(json_array_get(body, 0));
    out->kwargs = json_incref(json_array_get(body, 1));
    out->embed = json_is_object(v) ? json_incref(v) : NULL;
    rc = 0;
out:
    json_decref(body);
    return rc;
}

int
kiln__celery_decode(const char *data, size_t len, size_t max_body, kiln__task_msg_t *out, char *err,
                    size_t errlen)
{
    json_error_t je;
    json_t *env;
    int rc;

    memset(out, 0, sizeof(*out));
    out->priority = -1;
    if (err && errlen)
        err[0] = '\0';
    if (!data)
        return fail(err, errlen, -EPROTO, "message is missing");
    env = json_loadb(data, len, 0, &je);
    if (!env)
        return fail(err, errlen, -EPROTO, "message is not valid JSON: %s at byte %d", je.text,
                    je.position);
    if (!json_is_object(env)) {
        rc = fail(err, errlen, -EPROTO, "message is %s, expected a JSON object", jtype(env));
        json_decref(env);
        return rc;
    }
    rc = decode_envelope(env, max_body, out, err, errlen);
    if (rc < 0) {
        char id[sizeof(out->id)], task[sizeof(out->task)];

        memcpy(id, out->id, sizeof(id));
        memcpy(task, out->task, sizeof(task));
        json_decref(env);
        memset(out, 0, sizeof(*out));
        out->priority = -1;
        memcpy(out->id, id, sizeof(id));
        memcpy(out->task, task, sizeof(task));
        return rc;
    }
    out->envelope = env;
    return 0;
}

void
kiln__celery_msg_free(kiln__task_msg_t *m)
{
    if (!m)
        return;
    json_decref(m->envelope);
    json_decref(m->args);
    json_decref(m->kwargs);
    json_decref(m->embed);
    m->envelope = m->args = m->kwargs = m->embed = NULL;
}

/* ------------------------------------------------------- saferepr (text) */

typedef struct strbuf {
    char *s;
    size_t len, cap;
    int oom;
} strbuf_t;

static void
sb_add(strbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *ns;

        while (cap < b->len + n + 1)
            cap *= 2;
        ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void
sb_str(strbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Python's repr() of a float: the shortest digits that read back the same,
 * positional for exponents -4..15, else d.ddde+XX. */
static void
py_float(double v, char *out, size_t len)
{
    char buf[40], digits[24];
    int p, exp, nd = 0;
    char *e;

    for (p = 0; p < 17; p++) {
        snprintf(buf, sizeof(buf), "%.*e", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    e = strchr(buf, 'e');
    exp = e ? atoi(e + 1) : 0;
    for (const char *c = buf; c < (e ? e : buf + strlen(buf)); c++)
        if (*c >= '0' && *c <= '9' && nd < (int)sizeof(digits) - 1)
            digits[nd++] = *c;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    if (exp >= -4 && exp < 16) {
        char *o = out;
        size_t left = len;
        int i, n;

#define PUT(...)                                                                                   \
    do {                                                                                           \
        n = snprintf(o, left, __VA_ARGS__);                                                        \
        if (n < 0 || (size_t)n >= left)                                                            \
            return;                                                                                \
        o += n;                                                                                    \
        left -= (size_t)n;                                                                         \
    } while (0)
        if (signbit(v))
            PUT("-");
        if (exp < 0) {
            PUT("0.");
            for (i = -1; i > exp; i--)
                PUT("0");
            PUT("%s", digits);
        } else {
            for (i = 0; i <= exp; i++)
                PUT("%c", i < nd ? digits[i] : '0');
            PUT(".");
            if (nd > exp + 1)
                PUT("%s", digits + exp + 1);
            else
                PUT("0");
        }
#undef PUT
    } else {
        snprintf(out, len, "%s%c%s%se%c%02d", signbit(v) ? "-" : "", digits[0], nd > 1 ? "." : "",
                 digits + 1, exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

typedef struct repr_state {
    strbuf_t b;
    long budget; /* saferepr's maxlen, counted in bytes here */
    int cut;
} repr_state_t;

static void
repr_token(repr_state_t *r, const char *s, size_t n)
{
    if (r->cut)
        return;
    if (r->budget <= 0) {
        sb_str(&r->b, ", ...");
        r->cut = 1;
        return;
    }
    if ((long)n > r->budget) { /* celery.utils.text.truncate */
        sb_add(&r->b, s, (size_t)r->budget);
        sb_str(&r->b, "...");
    } else {
        sb_add(&r->b, s, n);
    }
    r->budget -= (long)n;
}

/* A string: truncated to the budget at the last space (then "..."), in
 * single quotes with only ' escaped, as celery's _format_chars. */
static void
repr_string(repr_state_t *r, const char *s, size_t n)
{
    size_t i, start = r->b.len;
    int dots = 0;

    if (r->cut)
        return;
    if (r->budget <= 0) {
        repr_token(r, "", 0);
        return;
    }
    if ((long)n > r->budget) {
        n = (size_t)r->budget;
        for (i = n; i > 0; i--)
            if (s[i - 1] == ' ')
                break;
        if (i > 0)
            n = i - 1;
        dots = 1;
    }
    sb_add(&r->b, "'", 1);
    for (i = 0; i < n; i++)
        sb_add(&r->b, s[i] == '\'' ? "\\'" : s + i, s[i] == '\'' ? 2 : 1);
    if (dots)
        sb_add(&r->b, "...", 3);
    sb_add(&r->b, "'", 1);
    r->budget -= (long)(r->b.len - start);
}

/* celery.utils.saferepr: None/True/False, nesting past 3 levels shown as
 * [...] / {...}, and a budget (bytes here, characters there) after which
 * ", ..." ends the text; the closing brackets are still written. */
static void
repr_value(repr_state_t *r, const json_t *v, int level)
{
    char num[64];
    size_t i;

    switch (json_typeof(v)) {
    case JSON_STRING:
        repr_string(r, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        repr_token(r, num, strlen(num));
        break;
    case JSON_REAL:
        py_float(json_real_value(v), num, sizeof(num));
        repr_token(r, num, strlen(num));
        break;
    case JSON_TRUE:
        repr_token(r, "True", 4);
        break;
    case JSON_FALSE:
        repr_token(r, "False", 5);
        break;
    case JSON_NULL:
        repr_token(r, "None", 4);
        break;
    case JSON_ARRAY:
        if (level >= REPR_MAXLEVELS) {
            repr_token(r, "[...]", 5);
            break;
        }
        repr_token(r, "[", 1);
        for (i = 0; i < json_array_size(v) && !r->cut; i++) {
            if (i)
                repr_token(r, ", ", 2);
            repr_value(r, json_array_get(v, i), level + 1);
        }
        sb_str(&r->b, "]");
        break;
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        void *it;

        if (level >= REPR_MAXLEVELS) {
            repr_token(r, "{...}", 5);
            break;
        }
        repr_token(r, "{", 1);
        for (it = json_object_iter((json_t *)v), i = 0; it && !r->cut;
             it = json_object_iter_next((json_t *)v, it), i++) {
            key = json_object_iter_key(it);
            val = json_object_iter_value(it);
            if (i)
                repr_token(r, ", ", 2);
            repr_string(r, key, strlen(key));
            repr_token(r, ": ", 2);
            repr_value(r, val, level + 1);
        }
        sb_str(&r->b, "}");
        break;
    }
    }
}

static json_t *
saferepr(const json_t *v)
{
    repr_state_t r = {{0}, REPR_MAXLEN, 0};
    json_t *s;

    repr_value(&r, v, 0);
    s = r.b.oom || !r.b.s ? NULL : json_string(r.b.s);
    free(r.b.s);
    return s;
}

/* ------------------------------------------------------------- encoding */

static json_t *
str_or_null(const char *s)
{
    return s && s[0] ? json_string(s) : json_null();
}

/* Celery writes the numbers it was given; whole seconds stay integers. */
static json_t *
limit_json(double v)
{
    if (!(v > 0) || !isfinite(v))
        return json_null();
    if (v == floor(v) && v < 9e15)
        return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *
time_or_null(double epoch)
{
    char buf[64];

    if (epoch == 0)
        return json_null();
    kiln__celery_format_time(epoch, buf, sizeof(buf));
    return buf[0] ? json_string(buf) : json_null();
}

static char *
dump(json_t *v)
{
    char *s = v ? json_dumps(v, JSON_DUMP_FLAGS) : NULL;

    json_decref(v);
    return s;
}

/* base64 of the JSON [args, kwargs, embed]; args and kwargs borrowed. */
static json_t *
encode_body(json_t *args, json_t *kwargs, const json_t *embed_in)
{
    json_t *embed, *str;
    char *text, *b64;

    if (embed_in)
        embed = json_deep_copy(embed_in);
    else
        embed = json_pack("{s:n, s:n, s:n, s:n}", "callbacks", "errbacks", "chain", "chord");
    if (!args || !kwargs || !embed) {
        json_decref(embed);
        return NULL;
    }
    text = dump(json_pack("[O, O, o]", args, kwargs, embed));
    if (!text)
        return NULL;
    b64 = b64_encode((const unsigned char *)text, strlen(text));
    free(text);
    str = b64 ? json_string(b64) : NULL;
    free(b64);
    return str;
}

char *
kiln__celery_encode(const kiln__celery_new_t *spec, char *id_out, size_t id_len)
{
    char id[40], tag[40], host[256], origin[300], expiration[32];
    const char *task_id;
    json_t *args, *kwargs, *headers, *props, *env, *body;
    int ok = 1;

    if (!spec || !spec->task || !spec->queue || (spec->args && !json_is_array(spec->args)) ||
        (spec->kwargs && !json_is_object(spec->kwargs))) {
        errno = EINVAL;
        return NULL;
    }
    if (spec->id && spec->id[0]) {
        task_id = spec->id;
    } else {
        kiln__celery_uuid(id, sizeof(id));
        task_id = id;
    }
    if (id_out && id_len)
        snprintf(id_out, id_len, "%s", task_id);
    if (!spec->origin) {
        if (gethostname(host, sizeof(host)) < 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(origin, sizeof(origin), "kiln@%s", host);
    }
    args = spec->args ? json_deep_copy(spec->args) : json_array();
    kwargs = spec->kwargs ? json_deep_copy(spec->kwargs) : json_object();
    headers = json_object();
    ok &= !json_object_set_new(headers, "lang", json_string("py"));
    ok &= !json_object_set_new(headers, "task", json_string(spec->task));
    ok &= !json_object_set_new(headers, "id", json_string(task_id));
    ok &= !json_object_set_new(headers, "shadow", json_null());
    ok &= !json_object_set_new(headers, "eta", time_or_null(spec->eta));
    ok &= !json_object_set_new(headers, "expires", time_or_null(spec->expires));
    ok &= !json_object_set_new(headers, "group", str_or_null(spec->group));
    ok &= !json_object_set_new(headers, "group_index", json_null());
    ok &= !json_object_set_new(headers, "retries", json_integer(spec->retries));
    ok &= !json_object_set_new(
        headers, "timelimit",
        json_pack("[o, o]", limit_json(spec->time_limit), limit_json(spec->soft_time_limit)));
    ok &= !json_object_set_new(
        headers, "root_id",
        json_string(spec->root_id && spec->root_id[0] ? spec->root_id : task_id));
    ok &= !json_object_set_new(headers, "parent_id", str_or_null(spec->parent_id));
    ok &= !json_object_set_new(headers, "argsrepr", args ? saferepr(args) : NULL);
    ok &= !json_object_set_new(headers, "kwargsrepr", kwargs ? saferepr(kwargs) : NULL);
    ok &=
        !json_object_set_new(headers, "origin", json_string(spec->origin ? spec->origin : origin));
    ok &= !json_object_set_new(headers, "ignore_result", json_false());

    kiln__celery_uuid(tag, sizeof(tag));
    props = json_object();
    ok &= !json_object_set_new(props, "correlation_id", json_string(task_id));
    ok &= !json_object_set_new(props, "reply_to", json_string(""));
    ok &= !json_object_set_new(props, "delivery_mode", json_integer(2));
    if (spec->expires != 0) {
        /* kombu's Producer.publish: str(int(expiration * 1000)), from
         * send_task's expires in seconds from now (0 if already past). */
        double left = spec->expires - now_epoch();

        snprintf(expiration, sizeof(expiration), "%lld",
                 left > 0 && left < 9e12 ? (long long)(left * 1000) : 0LL);
        ok &= !json_object_set_new(props, "expiration", json_string(expiration));
    }
    ok &= !json_object_set_new(props, "delivery_info",
                               json_pack("{s:s, s:s}", "exchange", "", "routing_key", spec->queue));
    ok &= !json_object_set_new(props, "priority",
                               json_integer(spec->priority < 0 ? 0 : spec->priority));
    ok &= !json_object_set_new(props, "body_encoding", json_string("base64"));
    ok &= !json_object_set_new(props, "delivery_tag", json_string(tag));

    body = encode_body(args, kwargs, spec->embed);
    json_decref(args);
    json_decref(kwargs);
    env = json_object();
    ok &= !json_object_set_new(env, "body", body);
    ok &= !json_object_set_new(env, "content-encoding", json_string("utf-8"));
    ok &= !json_object_set_new(env, "content-type", json_string("application/json"));
    ok &= !json_object_set_new(env, "headers", headers);
    ok &= !json_object_set_new(env, "properties", props);
    if (!ok) {
        json_decref(env);
        errno = ENOMEM;
        return NULL;
    }
    return dump(env);
}

char *
kiln__celery_retry_message(const kiln__task_msg_t *m, double eta)
{
    json_t *env, *headers, *props;
    char tag[40];
    int ok = 1;

    if (!m || !m->envelope || m->retries >= RETRIES_MAX) {
        errno = EINVAL;
        return NULL;
    }
    env = json_deep_copy(m->envelope);
    headers = json_object_get(env, "headers");
    props = json_object_get(env, "properties");
    if (!json_is_object(headers) || !json_is_object(props)) {
        json_decref(env);
        errno = EINVAL;
        return NULL;
    }
    kiln__celery_uuid(tag, sizeof(tag));
    ok &= !json_object_set_new(headers, "retries", json_integer(m->retries + 1));
    ok &= !json_object_set_new(headers, "eta", time_or_null(eta));
    ok &= !json_object_set_new(props, "delivery_tag", json_string(tag));
    if (!ok) {
        json_decref(env);
        errno = ENOMEM;
        return NULL;
    }
    return dump(env);
}

/* ------------------------------------------------------------- results */

char *
kiln__celery_result(const char *task_id, const char *status, const json_t *result,
                    const char *traceback, const kiln__task_msg_t *m)
{
    json_t *meta;
    int ok = 1;
    int ready;

    if (!task_id || !status) {
        errno = EINVAL;
        return NULL;
    }
    ready = !strcmp(status, "SUCCESS") || !strcmp(status, "FAILURE") || !strcmp(status, "REVOKED");
    /* Key order of celery/backends/base.py _get_result_meta + _store_result. */
    meta = json_object();
    ok &= !json_object_set_new(meta, "status", json_string(status));
    /* `result` is borrowed: the meta takes a reference and drops it below. */
    ok &= !json_object_set(meta, "result", result ? (json_t *)result : json_null());
    ok &= !json_object_set_new(meta, "traceback", traceback ? json_string(traceback) : json_null());
    ok &= !json_object_set_new(meta, "children", json_array());
    if (ready) {
        char buf[64];

        format_time(now_epoch(), 0, buf, sizeof(buf));
        ok &= !json_object_set_new(meta, "date_done", json_string(buf));
    } else {
        ok &= !json_object_set_new(meta, "date_done", json_null());
    }
    if (m && m->group[0])
        ok &= !json_object_set_new(meta, "group_id", json_string(m->group));
    if (m && m->parent_id[0])
        ok &= !json_object_set_new(meta, "parent_id", json_string(m->parent_id));
    ok &= !json_object_set_new(meta, "task_id", json_string(task_id));
    if (!ok) {
        json_decref(meta);
        errno = ENOMEM;
        return NULL;
    }
    return dump(meta);
}

/* Python's built-in exceptions that subclass Exception.  SystemExit,
 * KeyboardInterrupt and GeneratorExit are left out on purpose: they would
 * escape a client's `except Exception`. */
static const char builtin_exc[] =
    "|ArithmeticError|AssertionError|AttributeError|BlockingIOError|BrokenPipeError|"
    "BufferError|ChildProcessError|ConnectionAbortedError|ConnectionError|"
    "ConnectionRefusedError|ConnectionResetError|EOFError|EnvironmentError|Exception|"
    "FileExistsError|FileNotFoundError|FloatingPointError|IOError|ImportError|"
    "IndentationError|IndexError|InterruptedError|IsADirectoryError|KeyError|LookupError|"
    "MemoryError|ModuleNotFoundError|NameError|NotADirectoryError|NotImplementedError|"
    "OSError|OverflowError|PermissionError|ProcessLookupError|RecursionError|ReferenceError|"
    "RuntimeError|StopAsyncIteration|StopIteration|SyntaxError|SystemError|TabError|"
    "TimeoutError|TypeError|UnboundLocalError|UnicodeDecodeError|UnicodeEncodeError|"
    "UnicodeError|UnicodeTranslateError|ValueError|ZeroDivisionError|";

static const char celery_exc[] =
    "|TimeLimitExceeded|SoftTimeLimitExceeded|Retry|NotRegistered|TaskRevokedError|"
    "MaxRetriesExceededError|InvalidTaskError|Reject|Ignore|ChordError|Terminated|";

/* Is `name` one of the '|'-separated words of `list`? */
static int
in_list(const char *name, const char *list)
{
    size_t n = strlen(name);
    const char *p = list;

    if (!n || strchr(name, '|'))
        return 0;
    while ((p = strstr(p, name)) != NULL) {
        if (p[-1] == '|' && p[n] == '|')
            return 1;
        p += n;
    }
    return 0;
}

json_t *
kiln__celery_exc(const char *exc_type, const char *message)
{
    const char *module = "kiln.exceptions";

    if (!exc_type || !exc_type[0])
        exc_type = "Exception";
    if (in_list(exc_type, builtin_exc))
        module = "builtins";
    else if (in_list(exc_type, celery_exc))
        module = "celery.exceptions";
    else if (!strcmp(exc_type, "WorkerLostError"))
        module = "billiard.exceptions";
    return json_pack("{s:s, s:[s], s:s}", "exc_type", exc_type, "exc_message",
                     message ? message : "", "exc_module", module);
}
