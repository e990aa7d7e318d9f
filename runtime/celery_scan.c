/*
 * celery_scan.c -- the fast path of reading a Celery envelope.
 *
 * A Celery message is about 900 bytes of JSON, of which kiln reads a dozen
 * fields; building jansson's whole tree of it was the supervisor's largest
 * cost per task.  This scanner walks the message once, checking its syntax
 * without allocating, and builds a "slim" envelope holding only the fields
 * celery.c reads (the values themselves come from jansson or from spans
 * known to be plain).  celery.c then decodes the slim envelope exactly as it
 * would the full one.
 *
 * The scanner accepts only what it fully understands: ASCII, no surrogate
 * or NUL escapes, integers of at most 15 digits without exponent, nesting
 * under MAX_DEPTH.  Anything else -- including every malformed message --
 * returns -1 and the caller takes the slow path (jansson on the whole
 * message), so refusals and their messages are jansson's own.  The fuzzer
 * checks that both paths agree.
 */
#include "celery_int.h"

#include <string.h>

#define MAX_DEPTH 64

typedef struct scan {
    const char *p, *end;
} scan_t;

static void
ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string at s->p: its content is [*b, *b + *n), *escaped if it holds a
 * backslash.  0, or -1 (malformed, or something left to jansson). */
static int
str(scan_t *s, const char **b, size_t *n, int *escaped)
{
    const char *q;

    if (s->p >= s->end || *s->p != '"')
        return -1;
    q = ++s->p;
    *escaped = 0;
    while (q < s->end) {
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            *b = s->p;
            *n = (size_t)(q - s->p);
            s->p = q + 1;
            return 0;
        }
        if (c < 0x20 || c >= 0x80)
            return -1;
        if (c != '\\') {
            q++;
            continue;
        }
        *escaped = 1;
        if (++q >= s->end)
            return -1;
        if (strchr("\"\\/bfnrt", *q) && *q) {
            q++;
        } else if (*q == 'u') {
            int i, v = 0;
            if (s->end - q < 5)
                return -1;
            for (i = 1; i <= 4; i++) {
                int h = hexval(q[i]);
                if (h < 0)
                    return -1;
                v = v * 16 + h;
            }
            if (v == 0 || (v >= 0xD800 && v <= 0xDFFF))
                return -1;
            q += 5;
        } else {
            return -1;
        }
    }
    return -1;
}

static int
isdig(char c)
{
    return c >= '0' && c <= '9';
}

/* A number; *integer if it has no fraction (never an exponent here). */
static int
num(scan_t *s, int *integer)
{
    const char *q = s->p, *d;

    if (q < s->end && *q == '-')
        q++;
    d = q;
    if (q < s->end && *q == '0')
        q++;
    else if (q < s->end && *q >= '1' && *q <= '9')
        while (q < s->end && isdig(*q))
            q++;
    else
        return -1;
    if (q - d > 15)
        return -1;
    *integer = 1;
    if (q < s->end && *q == '.') {
        *integer = 0;
        if (++q >= s->end || !isdig(*q))
            return -1;
        while (q < s->end && isdig(*q))
            q++;
    }
    if (q < s->end && (*q == 'e' || *q == 'E'))
        return -1;
    s->p = q;
    return 0;
}

static int
lit(scan_t *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int skip(scan_t *s, int depth);

/* An object or array at s->p, skipped. */
static int
skip_container(scan_t *s, int depth)
{
    char close = *s->p == '{' ? '}' : ']';
    int object = close == '}';

    if (depth >= MAX_DEPTH)
        return -1;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        if (object) {
            const char *b;
            size_t n;
            int esc;
            if (str(s, &b, &n, &esc) < 0)
                return -1;
            ws(s);
            if (s->p >= s->end || *s->p != ':')
                return -1;
            s->p++;
        }
        if (skip(s, depth + 1) < 0)
            return -1;
        ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == close) {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
        ws(s);
    }
}

/* Any value at s->p (after whitespace), skipped; s->p ends just past it. */
static int
skip(scan_t *s, int depth)
{
    const char *b;
    size_t n;
    int x;

    ws(s);
    if (s->p >= s->end)
        return -1;
    switch (*s->p) {
    case '"':
        return str(s, &b, &n, &x);
    case '{':
    case '[':
        return skip_container(s, depth);
    case 't':
        return lit(s, "true");
    case 'f':
        return lit(s, "false");
    case 'n':
        return lit(s, "null");
    default:
        return num(s, &x);
    }
}

/* The value at s->p as a new json_t, or NULL (take the slow path). */
static json_t *
value(scan_t *s, int depth)
{
    const char *start, *b;
    json_error_t je;
    size_t n;
    int esc, integer;

    ws(s);
    start = s->p;
    if (s->p < s->end && *s->p == '"') {
        if (str(s, &b, &n, &esc) < 0)
            return NULL;
        if (!esc)
            return json_stringn_nocheck(b, n); /* ASCII without escapes */
    } else if (s->p < s->end && (*s->p == '-' || isdig(*s->p))) {
        if (num(s, &integer) < 0)
            return NULL;
        if (integer) {
            /* At most 15 digits (num): no overflow.  The message is not
             * NUL-terminated, so no strtoll. */
            const char *q = start + (*start == '-');
            json_int_t v = 0;
            for (; q < s->p; q++)
                v = v * 10 + (*q - '0');
            return json_integer(*start == '-' ? -v : v);
        }
    } else if (skip(s, depth) < 0) {
        return NULL;
    }
    return json_loadb(start, (size_t)(s->p - start), JSON_DECODE_ANY, &je);
}

static int
wanted(const char *key, size_t n, const char *const *keys)
{
    size_t i;
    for (i = 0; keys[i]; i++)
        if (strlen(keys[i]) == n && memcmp(keys[i], key, n) == 0)
            return 1;
    return 0;
}

static const char *const top_keys[] = {"body", "content-type", "content-encoding", NULL};
static const char *const header_keys[] = {"id",        "task",        "retries",   "eta",
                                          "expires",   "root_id",     "parent_id", "group",
                                          "timelimit", "compression", NULL};
static const char *const prop_keys[] = {"priority", "reply_to", "body_encoding", "delivery_info",
                                        NULL};

/* An object at s->p, keeping only the members named in `keys`; with
 * `sub`, the members "headers" and "properties" are slimmed the same way
 * when they are objects.  NULL: take the slow path. */
static json_t *
slim(scan_t *s, const char *const *keys, int sub, int depth)
{
    json_t *o;

    ws(s);
    if (s->p >= s->end || *s->p != '{' || depth >= MAX_DEPTH)
        return NULL;
    o = json_object();
    if (!o)
        return NULL;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return o;
    }
    for (;;) {
        const char *k;
        size_t n;
        int esc, headers, props, keep;
        json_t *v = NULL;

        if (str(s, &k, &n, &esc) < 0 || esc)
            goto fail;
        ws(s);
        if (s->p >= s->end || *s->p != ':')
            goto fail;
        s->p++;
        ws(s);
        headers = sub && n == 7 && memcmp(k, "headers", 7) == 0;
        props = sub && n == 10 && memcmp(k, "properties", 10) == 0;
        keep = headers || props || wanted(k, n, keys);
        if (headers && s->p < s->end && *s->p == '{')
            v = slim(s, header_keys, 0, depth + 1);
        else if (props && s->p < s->end && *s->p == '{')
            v = slim(s, prop_keys, 0, depth + 1);
        else if (keep)
            v = value(s, depth + 1);
        else if (skip(s, depth + 1) < 0)
            goto fail;
        if (keep) {
            char key[32]; /* every kept key is shorter */
            if (!v)
                goto fail;
            memcpy(key, k, n);
            key[n] = '\0';
            if (json_object_set_new(o, key, v) < 0)
                goto fail;
        }
        ws(s);
        if (s->p >= s->end)
            goto fail;
        if (*s->p == '}') {
            s->p++;
            return o;
        }
        if (*s->p != ',')
            goto fail;
        s->p++;
        ws(s);
    }
fail:
    json_decref(o);
    return NULL;
}

json_t *
kiln__celery_scan(const char *data, size_t len)
{
    scan_t s = {data, data + len};
    json_t *env = slim(&s, top_keys, 1, 0);

    if (!env)
        return NULL;
    ws(&s);
    if (s.p != s.end) {
        json_decref(env);
        return NULL;
    }
    return env;
}
