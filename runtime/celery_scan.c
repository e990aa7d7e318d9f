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

#include <stdlib.h>
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

static json_t *value(scan_t *s, int depth);

/* An object or array at s->p built member by member, or NULL (malformed,
 * or something left to jansson: an escaped or long key, deep nesting). */
static json_t *
container(scan_t *s, int depth)
{
    int object = *s->p == '{';
    char close = object ? '}' : ']';
    json_t *c;

    if (depth >= MAX_DEPTH)
        return NULL;
    c = object ? json_object() : json_array();
    if (!c)
        return NULL;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return c;
    }
    for (;;) {
        char key[128];
        json_t *v;
        int rc;

        if (object) {
            const char *b;
            size_t n;
            int esc;
            if (str(s, &b, &n, &esc) < 0 || esc || n >= sizeof(key))
                goto fail;
            memcpy(key, b, n);
            key[n] = '\0';
            ws(s);
            if (s->p >= s->end || *s->p != ':')
                goto fail;
            s->p++;
        }
        if (!(v = value(s, depth + 1)))
            goto fail;
        rc = object ? json_object_set_new_nocheck(c, key, v) : json_array_append_new(c, v);
        if (rc < 0)
            goto fail;
        ws(s);
        if (s->p >= s->end)
            goto fail;
        if (*s->p == close) {
            s->p++;
            return c;
        }
        if (*s->p != ',')
            goto fail;
        s->p++;
    }
fail:
    json_decref(c);
    return NULL;
}

/* The value at s->p as a new json_t, or NULL (malformed).  What the
 * scanner does not build itself (escaped strings, exponents, long
 * numbers) it hands to jansson, span by span. */
static json_t *
value(scan_t *s, int depth)
{
    const char *start, *b;
    json_error_t je;
    json_t *v;
    size_t n;
    int esc, integer;

    ws(s);
    start = s->p;
    if (s->p >= s->end)
        return NULL;
    switch (*s->p) {
    case '"':
        if (str(s, &b, &n, &esc) < 0)
            return NULL;
        if (!esc)
            return json_stringn_nocheck(b, n); /* ASCII without escapes */
        break;
    case '{':
    case '[':
        if ((v = container(s, depth)) != NULL)
            return v;
        s->p = start;
        if (skip(s, depth) < 0)
            return NULL;
        break;
    case 'n':
        return lit(s, "null") < 0 ? NULL : json_null();
    case 't':
        return lit(s, "true") < 0 ? NULL : json_true();
    case 'f':
        return lit(s, "false") < 0 ? NULL : json_false();
    default:
        if (num(s, &integer) < 0)
            return NULL;
        if (integer) {
            /* At most 15 digits (num): no overflow.  The message is not
             * NUL-terminated, so no strtoll. */
            const char *q = start + (*start == '-');
            json_int_t x = 0;
            for (; q < s->p; q++)
                x = x * 10 + (*q - '0');
            return json_integer(*start == '-' ? -x : x);
        }
        if (s->p - start < 64) {
            /* At most 15 digits before the point and no exponent: strtod
             * cannot overflow, and rounds as jansson's does.  kiln never
             * calls setlocale(), so the decimal point is '.'. */
            char buf[64];
            memcpy(buf, start, (size_t)(s->p - start));
            buf[s->p - start] = '\0';
            return json_real(strtod(buf, NULL));
        }
        break;
    }
    return json_loadb(start, (size_t)(s->p - start), JSON_DECODE_ANY, &je);
}

/* `key` (n bytes, not NUL-terminated) is one of `keys`. */
static int
wanted(const char *key, size_t n, const char *const *keys)
{
    size_t i;
    for (i = 0; keys[i]; i++)
        if (keys[i][0] == key[0] && strncmp(keys[i], key, n) == 0 && keys[i][n] == '\0')
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

json_t *
kiln__celery_scan_value(const char *data, size_t len, size_t span[4])
{
    scan_t s = {data, data + len};
    json_t *v = value(&s, 0);

    if (!v)
        return NULL;
    ws(&s);
    if (s.p != s.end) {
        json_decref(v);
        return NULL;
    }
    span[0] = span[1] = span[2] = span[3] = 0;
    if (json_is_array(v) && json_array_size(v) >= 2) {
        /* Where the first two items sit: [args, kwargs, ...].  The text is
         * known to be well formed: past '[' or ',', skip an item. */
        int i;
        s.p = data;
        ws(&s);
        for (i = 0; i < 2; i++) {
            s.p++;
            ws(&s);
            span[2 * i] = (size_t)(s.p - data);
            (void)skip(&s, 1);
            span[2 * i + 1] = (size_t)(s.p - data) - span[2 * i];
            ws(&s);
        }
    }
    return v;
}
