/*
 * url.c -- Redis locations from the URLs Celery, kombu and redis-py accept.
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   redis+socket://[[user]:password@]/path/to.sock[?virtual_host=db]   (kombu)
 *   unix://[[user]:password@]/path/to.sock[?db=N]                      (redis-py)
 *
 * The split follows Python's urllib (which both Celery and redis-py use): the
 * authority ends at the first '/' or '?', the user information at the last
 * '@' in it; user, password and socket path are %-decoded.  Messages name
 * the part that is wrong and never repeat the password.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define MAX_DB 65535 /* a sanity bound: Redis itself defaults to 16 databases */

enum { SCHEME_TCP, SCHEME_SOCKET, SCHEME_UNIX };

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, errlen, "broker URL: ");
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* %-decode s[0..n) into out (NUL-terminated).  0, -EINVAL on a bad escape
 * or an escaped NUL, -ENAMETOOLONG when it does not fit. */
static int
pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return -EINVAL;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -EINVAL;
            c = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= outlen)
            return -ENAMETOOLONG;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* A decimal number in [min, max] spelled s[0..n); -1 when it is not one. */
static long
number(const char *s, size_t n, long min, long max)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 10)
        return -1;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < min || v > max ? -1 : v;
}

static int
parse_userinfo(const char *s, size_t n, kiln__redis_url_t *out, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    int rc;

    rc = pct_decode(s, ulen, out->user, sizeof(out->user));
    if (rc == -ENAMETOOLONG)
        return bad(err, errlen, "the user name is longer than %zu bytes", sizeof(out->user) - 1);
    if (rc < 0)
        return bad(err, errlen,
                   "the user name has a bad %%-escape (write %%XX with two hex "
                   "digits, not %%00)");
    if (!colon)
        return 0;
    rc = pct_decode(colon + 1, n - ulen - 1, out->password, sizeof(out->password));
    if (rc == -ENAMETOOLONG)
        return bad(err, errlen, "the password is longer than %zu bytes", sizeof(out->password) - 1);
    if (rc < 0)
        return bad(err, errlen,
                   "the password has a bad %%-escape (write %%XX with two hex "
                   "digits, not %%00)");
    return 0;
}

static int
parse_hostport(const char *s, size_t n, kiln__redis_url_t *out, char *err, size_t errlen)
{
    const char *end = s + n, *host = s, *port = NULL;
    size_t hlen = n, i;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return bad(err, errlen, "the IPv6 address has no closing ']'");
        host = s + 1;
        hlen = (size_t)(close - host);
        if (hlen == 0)
            return bad(err, errlen, "the IPv6 address between [ and ] is empty");
        if (close + 1 < end) {
            if (close[1] != ':')
                return bad(err, errlen, "unexpected text after the IPv6 address (expected :port)");
            port = close + 2;
        }
        for (i = 0; i < hlen; i++) {
            if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
                return bad(err, errlen,
                           "the IPv6 address has a character '%c' that is not a hex digit, ':' "
                           "or '.'",
                           isprint((unsigned char)host[i]) ? host[i] : '?');
        }
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        }
        for (i = 0; i < hlen; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!isalnum(c) && c != '.' && c != '-' && c != '_')
                return bad(err, errlen,
                           "the host name has a character '%c' a host name cannot hold",
                           isprint(c) ? c : '?');
        }
    }
    if (hlen >= sizeof(out->host))
        return bad(err, errlen, "the host name is longer than %zu bytes", sizeof(out->host) - 1);
    if (hlen > 0) {
        memcpy(out->host, host, hlen);
        out->host[hlen] = '\0';
    }
    if (port) {
        size_t plen = (size_t)(end - port);
        long p = number(port, plen, 1, 65535);
        if (p < 0)
            return bad(err, errlen, "port \"%.*s\" is not a number from 1 to 65535",
                       (int)(plen > 16 ? 16 : plen), port);
        out->port = (int)p;
    }
    return 0;
}

static int
parse_db(const char *what, const char *s, size_t n, kiln__redis_url_t *out, char *err,
         size_t errlen)
{
    long db = number(s, n, 0, MAX_DB);
    if (db < 0)
        return bad(err, errlen, "%s \"%.*s\" is not a database number from 0 to %d", what,
                   (int)(n > 32 ? 32 : n), s, MAX_DB);
    out->db = (int)db;
    return 0;
}

/* The query string of a socket URL: virtual_host (kombu; "/1" or "1") or db
 * (redis-py), once. */
static int
parse_query(int scheme, const char *q, kiln__redis_url_t *out, char *err, size_t errlen)
{
    int have_db = 0;

    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        const char *v = eq ? eq + 1 : q + len;
        size_t vlen = eq ? len - klen - 1 : 0;

        if (len == 0) {
            q++;
            continue;
        }
        if (scheme == SCHEME_TCP)
            return bad(err, errlen,
                       "query parameter \"%.*s\" is not supported in a redis:// URL (put the "
                       "database in the path: redis://host:port/db)",
                       (int)(klen > 32 ? 32 : klen), q);
        if ((klen == 12 && strncmp(q, "virtual_host", 12) == 0) ||
            (klen == 2 && strncmp(q, "db", 2) == 0)) {
            if (have_db)
                return bad(err, errlen, "the database is given twice (virtual_host and db)");
            have_db = 1;
            if (klen == 12 && vlen > 0 && v[0] == '/') {
                v++;
                vlen--;
            }
            if (vlen == 0)
                out->db = 0;
            else if (parse_db(klen == 2 ? "db" : "virtual_host", v, vlen, out, err, errlen) < 0)
                return -EINVAL;
        } else {
            return bad(err, errlen,
                       "query parameter \"%.*s\" is not supported (a socket URL takes "
                       "virtual_host=DB or db=DB; a password goes in KILN_BROKER_URL, "
                       "$KILN_REDIS_PASSWORD or a password file)",
                       (int)(klen > 32 ? 32 : klen), q);
        }
        q += len;
    }
    return 0;
}

int
kiln__redis_url_parse(const char *url, kiln__redis_url_t *out, char *err, size_t errlen)
{
    const char *sep, *rest, *query, *auth_end, *at, *p;
    size_t slen, authlen, plen;
    int scheme, rc;
    char qbuf[512];

    memset(out, 0, sizeof(*out));
    snprintf(out->host, sizeof(out->host), "127.0.0.1");
    out->port = 6379;
    if (!url || !*url)
        return bad(err, errlen,
                   "empty (expected redis://host:port/db or "
                   "redis+socket:///path/to.sock)");
    sep = strstr(url, "://");
    if (!sep)
        return bad(err, errlen,
                   "no scheme (expected redis://host:port/db, "
                   "redis+socket:///path/to.sock or unix:///path/to.sock)");
    slen = (size_t)(sep - url);
    if (slen == 5 && strncasecmp(url, "redis", 5) == 0)
        scheme = SCHEME_TCP;
    else if (slen == 12 && strncasecmp(url, "redis+socket", 12) == 0)
        scheme = SCHEME_SOCKET;
    else if (slen == 4 && strncasecmp(url, "unix", 4) == 0)
        scheme = SCHEME_UNIX;
    else if (slen == 6 && strncasecmp(url, "rediss", 6) == 0)
        return bad(err, errlen,
                   "rediss:// (Redis over TLS) is not supported by this build of "
                   "kiln; use redis:// on a trusted network, a unix socket, or a "
                   "TLS tunnel");
    else
        return bad(err, errlen,
                   "unsupported scheme \"%.*s\" (kiln talks to Redis only: redis://, "
                   "redis+socket:// or unix://)",
                   (int)(slen > 32 ? 32 : slen), url);
    rest = sep + 3;
    if (strchr(rest, '#'))
        return bad(err, errlen,
                   "a URL fragment ('#') is not supported (write '#' in a "
                   "password as %%23)");
    for (p = rest; *p; p++) {
        if (iscntrl((unsigned char)*p) || *p == ' ')
            return bad(err, errlen, "contains a space or control character (%%-escape it)");
    }
    query = strchr(rest, '?');
    auth_end = rest + strcspn(rest, "/?");
    authlen = (size_t)(auth_end - rest);
    at = NULL;
    for (p = rest; p < auth_end; p++) {
        if (*p == '@')
            at = p;
    }
    if (at) {
        rc = parse_userinfo(rest, (size_t)(at - rest), out, err, errlen);
        if (rc < 0)
            return rc;
        authlen -= (size_t)(at + 1 - rest);
        rest = at + 1;
    }
    plen = query ? (size_t)(query - auth_end) : strlen(auth_end);
    if (!at && strchr(auth_end, '@') && (authlen > 0 || scheme == SCHEME_TCP))
        return bad(err, errlen,
                   "the user and password end at the first '/' or '?': write '/' "
                   "as %%2F and '?' as %%3F in a password");

    if (scheme == SCHEME_TCP) {
        rc = parse_hostport(rest, authlen, out, err, errlen);
        if (rc < 0)
            return rc;
        /* path: "", "/" or "/db" */
        if (plen > 1) {
            rc = parse_db("database", auth_end + 1, plen - 1, out, err, errlen);
            if (rc < 0)
                return rc;
        }
    } else {
        if (authlen > 0)
            return bad(err, errlen,
                       "a socket URL has no host (found \"%.*s\"); write three slashes: "
                       "%s:///path/to.sock",
                       (int)(authlen > 64 ? 64 : authlen), rest,
                       scheme == SCHEME_UNIX ? "unix" : "redis+socket");
        if (plen == 0 || (plen == 1 && auth_end[0] == '/'))
            return bad(err, errlen, "missing socket path (expected %s:///path/to.sock)",
                       scheme == SCHEME_UNIX ? "unix" : "redis+socket");
        rc = pct_decode(auth_end, plen, out->path, sizeof(out->path));
        if (rc < 0 && rc != -ENAMETOOLONG)
            return bad(err, errlen, "the socket path has a bad %%-escape");
        if (rc == -ENAMETOOLONG || strlen(out->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return bad(err, errlen,
                       "the socket path is longer than the %zu bytes a unix socket address holds",
                       sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        out->unix_socket = 1;
        out->host[0] = '\0';
        out->port = 0;
    }
    if (query) {
        if (strlen(query + 1) >= sizeof(qbuf))
            return bad(err, errlen, "the query string is too long");
        snprintf(qbuf, sizeof(qbuf), "%s", query + 1);
        rc = parse_query(scheme, qbuf, out, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Append s to buf[*o..len), %-escaping what a URL part cannot hold. */
static void
put_escaped(char *buf, size_t len, size_t *o, const char *s, const char *keep)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int n;
        if (isalnum(c) || strchr("-._~", c) || (keep && strchr(keep, c)))
            n = snprintf(buf + *o, len - *o, "%c", c);
        else
            n = snprintf(buf + *o, len - *o, "%%%02X", c);
        if (n < 0 || (size_t)n >= len - *o) {
            *o = len - 1;
            return;
        }
        *o += (size_t)n;
    }
}

static void put(char *buf, size_t len, size_t *o, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
put(char *buf, size_t len, size_t *o, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (*o + 1 >= len)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *o, len - *o, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len - *o)
        *o = len - 1;
    else
        *o += (size_t)n;
}

const char *
kiln__redis_url_format(const kiln__redis_url_t *u, int with_password, char *buf, size_t len)
{
    size_t o = 0;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    put(buf, len, &o, "%s://", u->unix_socket ? "redis+socket" : "redis");
    if (u->user[0] || u->password[0]) {
        put_escaped(buf, len, &o, u->user, NULL);
        if (u->password[0]) {
            put(buf, len, &o, ":");
            if (with_password)
                put_escaped(buf, len, &o, u->password, NULL);
            else
                put(buf, len, &o, "***");
        }
        put(buf, len, &o, "@");
    }
    if (u->unix_socket) {
        put_escaped(buf, len, &o, u->path, "/+,:=@");
        if (u->db)
            put(buf, len, &o, "?virtual_host=%d", u->db);
    } else {
        if (strchr(u->host, ':'))
            put(buf, len, &o, "[%s]:%d/%d", u->host, u->port, u->db);
        else
            put(buf, len, &o, "%s:%d/%d", u->host, u->port, u->db);
    }
    return buf;
}
