/*
 * celery_write.c -- writing what Celery writes: a protocol-2 message as a
 * Celery 5.2 producer builds it (celery/app/amqp.py as_task_v2, kombu's
 * virtual Channel.prepare_message and _inplace_augment_message), its retry,
 * and the result meta of Celery's Redis backend (_get_result_meta and
 * _store_result), field by field and in the same key order.
 */
#include "celery.h"
#include "celery_int.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REPR_MAXLEN    1024 /* celery's argsrepr_maxsize / kwargsrepr_maxsize */
#define REPR_MAXLEVELS 3    /* saferepr's default */

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

/* json.dumps() text of v (consumed).  jansson writes "\u00E9" where Python
 * writes "\u00e9": every backslash in jansson's output starts an escape,
 * so lowering the four digits after each "\u" is safe. */
static char *
dump(json_t *v)
{
    char *s = v ? json_dumps(v, KILN__CELERY_DUMP_FLAGS) : NULL;
    char *p;
    int k;

    json_decref(v);
    for (p = s; p && *p; p++) {
        if (*p != '\\')
            continue;
        p++;
        if (*p == 'u')
            for (k = 1; k <= 4 && p[k]; k++)
                p[k] = (char)tolower((unsigned char)p[k]);
    }
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
    b64 = kiln__celery_b64_encode((const unsigned char *)text, strlen(text));
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
        double left = spec->expires - kiln__celery_now();

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

    if (!m || !m->envelope || m->retries >= KILN__CELERY_RETRIES_MAX) {
        errno = EINVAL;
        return NULL;
    }
    if (m->raw) {
        /* The envelope is the fast path's slim one: the retry keeps every
         * field, so read them all. */
        json_error_t je;
        env = json_loadb(m->raw, m->rawlen, JSON_DECODE_ANY, &je);
    } else {
        env = json_deep_copy(m->envelope);
    }
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

/* The common case of kiln__celery_result, written straight into a string:
 * the same bytes as the json_t route, a fraction of the allocations (this
 * runs for every task).  NULL when a string needs escaping. */
static char *
result_fast(const char *task_id, const char *status, const json_t *result, int ready,
            const kiln__task_msg_t *m)
{
    const char *group = m && m->group[0] ? m->group : NULL;
    const char *parent = m && m->parent_id[0] ? m->parent_id : NULL;
    char date[64], *value, *out, *p;
    size_t need;
    int k;

    if (!kiln__json_plain(task_id) || !kiln__json_plain(status) ||
        (group && !kiln__json_plain(group)) || (parent && !kiln__json_plain(parent)))
        return NULL;
    value = json_dumps(result ? result : json_null(), KILN__CELERY_DUMP_FLAGS | JSON_ENCODE_ANY);
    if (!value)
        return NULL;
    for (p = value; *p; p++) {
        if (*p != '\\')
            continue;
        p++;
        if (*p == 'u')
            for (k = 1; k <= 4 && p[k]; k++)
                p[k] = (char)tolower((unsigned char)p[k]);
    }
    if (ready)
        kiln__celery_iso(kiln__celery_now(), 0, date, sizeof(date));
    need = strlen(value) + strlen(task_id) + strlen(status) + (group ? strlen(group) : 0) +
           (parent ? strlen(parent) : 0) + 256;
    out = malloc(need);
    if (out)
        snprintf(out, need,
                 "{\"status\": \"%s\", \"result\": %s, \"traceback\": null, \"children\": [], "
                 "\"date_done\": %s%s%s%s%s%s%s%s%s, \"task_id\": \"%s\"}",
                 status, value, ready ? "\"" : "", ready ? date : "null", ready ? "\"" : "",
                 group ? ", \"group_id\": \"" : "", group ? group : "", group ? "\"" : "",
                 parent ? ", \"parent_id\": \"" : "", parent ? parent : "", parent ? "\"" : "",
                 task_id);
    free(value);
    return out;
}

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
    if (!traceback) {
        char *fast = result_fast(task_id, status, result, ready, m);
        if (fast)
            return fast;
    }
    /* Key order of celery/backends/base.py _get_result_meta + _store_result. */
    meta = json_object();
    ok &= !json_object_set_new(meta, "status", json_string(status));
    /* `result` is borrowed: the meta takes a reference and drops it below. */
    ok &= !json_object_set(meta, "result", result ? (json_t *)result : json_null());
    ok &= !json_object_set_new(meta, "traceback", traceback ? json_string(traceback) : json_null());
    ok &= !json_object_set_new(meta, "children", json_array());
    if (ready) {
        char buf[64];

        kiln__celery_iso(kiln__celery_now(), 0, buf, sizeof(buf));
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
