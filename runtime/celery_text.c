/*
 * celery_text.c -- the encodings under Celery's format: strict base64,
 * bounded zlib/gzip inflate, ISO 8601 times as Python's datetime writes
 * them, uuid4 and kombu's priority queue keys.
 */
#include "celery.h"
#include "celery_int.h"

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

#define INFLATE_CHUNK (64 * 1024)

/* ---------------------------------------------------------------- errors */

int
kiln__celery_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
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
int
kiln__celery_b64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen, char *err,
                        size_t errlen)
{
    unsigned char *buf;
    size_t i, o = 0, pad = 0;

    *out = NULL;
    *outlen = 0;
    if (n % 4 != 0)
        return kiln__celery_fail(
            err, errlen, -EPROTO,
            "body is not valid base64 at offset %zu: length %zu is not a multiple of 4", n - n % 4,
            n);
    if (n >= 1 && s[n - 1] == '=')
        pad++;
    if (n >= 2 && s[n - 2] == '=')
        pad++;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '=' && i >= n - pad)
            continue;
        if (c == '=')
            return kiln__celery_fail(
                err, errlen, -EPROTO,
                "body is not valid base64 at offset %zu: padding '=' before the end", i);
        if (b64_value(c) < 0)
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "body is not valid base64 at offset %zu: character 0x%02x", i,
                                     c);
    }
    buf = malloc(n / 4 * 3 + 1);
    if (!buf)
        return kiln__celery_fail(err, errlen, -ENOMEM,
                                 "body: out of memory decoding %zu bytes of base64", n);
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

char *
kiln__celery_b64_encode(const unsigned char *in, size_t n)
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
int
kiln__celery_inflate(const unsigned char *in, size_t n, size_t max_body, unsigned char **out,
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
        return kiln__celery_fail(err, errlen, -E2BIG,
                                 "body: compressed body of %zu bytes is too large", n);
    if (inflateInit2(&zs, 15 + 32) != Z_OK)
        return kiln__celery_fail(err, errlen, -ENOMEM, "body: cannot start zlib");
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (unsigned)n;
    for (;;) {
        if (used == cap) {
            size_t want = cap + INFLATE_CHUNK;
            unsigned char *nb;

            if (want > max_body + 1)
                want = max_body + 1;
            if (want <= used) {
                rc = kiln__celery_fail(err, errlen, -E2BIG,
                                       "body decompresses to more than max_body %zu bytes",
                                       max_body);
                goto out;
            }
            nb = realloc(buf, want + 1);
            if (!nb) {
                rc = kiln__celery_fail(err, errlen, -ENOMEM, "body: out of memory decompressing");
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
            rc = kiln__celery_fail(err, errlen, -E2BIG,
                                   "body decompresses to more than max_body %zu bytes", max_body);
            goto out;
        }
        if (zrc == Z_STREAM_END)
            break;
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0) {
            rc = kiln__celery_fail(err, errlen, -EPROTO, "body: compressed data is truncated");
            goto out;
        }
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            rc = kiln__celery_fail(err, errlen, -EPROTO,
                                   "body: compressed data is corrupt at byte %zu: %s",
                                   n - zs.avail_in, zs.msg ? zs.msg : "zlib error");
            goto out;
        }
        if (zrc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
            rc = kiln__celery_fail(err, errlen, -EPROTO, "body: compressed data is truncated");
            goto out;
        }
    }
    if (zs.avail_in != 0) {
        rc = kiln__celery_fail(err, errlen, -EPROTO,
                               "body has %u bytes after the end of the compressed data",
                               zs.avail_in);
        goto out;
    }
    if (!buf) {
        buf = malloc(1);
        if (!buf) {
            rc = kiln__celery_fail(err, errlen, -ENOMEM, "body: out of memory");
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

/* v (0 <= v < 10^width) in exactly `width` digits, zero-padded. */
static char *
digits(char *p, long v, int width)
{
    int i;
    for (i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* datetime.isoformat(): microseconds only when non-zero; "+00:00" if tz. */
void
kiln__celery_iso(double epoch, int with_tz, char *buf, size_t len)
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
    {
        /* By hand: every result carries one (snprintf was 3% of the
         * supervisor).  At most "9999-12-31T23:59:59.999999+00:00". */
        char tmp[40], *p = tmp;
        size_t n;
        p = digits(p, y, 4);
        *p++ = '-';
        p = digits(p, m, 2);
        *p++ = '-';
        p = digits(p, d, 2);
        *p++ = 'T';
        p = digits(p, (long)(sod / 3600), 2);
        *p++ = ':';
        p = digits(p, (long)(sod / 60 % 60), 2);
        *p++ = ':';
        p = digits(p, (long)(sod % 60), 2);
        if (frac) {
            *p++ = '.';
            p = digits(p, frac, 6);
        }
        if (with_tz) {
            memcpy(p, "+00:00", 6);
            p += 6;
        }
        n = (size_t)(p - tmp); /* as snprintf: truncated to fit, always terminated */
        if (n >= len)
            n = len - 1;
        memcpy(buf, tmp, n);
        buf[n] = '\0';
    }
}

void
kiln__celery_format_time(double epoch, char *buf, size_t len)
{
    kiln__celery_iso(epoch, 1, buf, len);
}

double
kiln__celery_now(void)
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
