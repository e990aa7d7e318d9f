/*
 * celery.c -- reading a Celery protocol-2 message from kombu's Redis
 * transport (celery.h).  Nothing is deserialized before its content type,
 * encoding and compression are known to be JSON, base64 and zlib; every
 * refusal names the field and the cause.  Writing: celery_write.c.
 */
#include "celery.h"

#include "celery_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
        return kiln__celery_fail(err, errlen, -EPROTO, "%s%s is %s, expected a string", where, key,
                                 kiln__json_type(v));
    n = json_string_length(v);
    if (n >= dstlen)
        return kiln__celery_fail(err, errlen, -EPROTO, "%s%s is %zu bytes, longer than %zu", where,
                                 key, n, dstlen - 1);
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
        return kiln__celery_fail(err, errlen, -EPROTO,
                                 "headers.%s is %s, expected an ISO 8601 string or null", key,
                                 kiln__json_type(v));
    if (kiln__celery_parse_time(json_string_value(v), dst) < 0)
        return kiln__celery_fail(err, errlen, -EPROTO,
                                 "headers.%s \"%.64s\" is not an ISO 8601 time", key,
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
        return kiln__celery_fail(err, errlen, -EPROTO,
                                 "headers.timelimit[%zu] is %s, expected a number or null", i,
                                 kiln__json_type(v));
    *dst = json_number_value(v);
    if (!isfinite(*dst) || *dst < 0)
        return kiln__celery_fail(err, errlen, -EPROTO,
                                 "headers.timelimit[%zu] is %g, expected >= 0", i, *dst);
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
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "headers.retries is %s, expected an integer",
                                     kiln__json_type(v));
        if (json_integer_value(v) < 0 || json_integer_value(v) > KILN__CELERY_RETRIES_MAX)
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "headers.retries is %" JSON_INTEGER_FORMAT
                                     ", expected 0 to %ld",
                                     json_integer_value(v), KILN__CELERY_RETRIES_MAX);
        out->retries = (long)json_integer_value(v);
    }
    if ((rc = get_time(h, "eta", &out->eta, err, errlen)) < 0 ||
        (rc = get_time(h, "expires", &out->expires, err, errlen)) < 0)
        return rc;
    /* Celery writes [time_limit, soft_time_limit]: hard first. */
    v = json_object_get(h, "timelimit");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v))
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "headers.timelimit is %s, expected an array [hard, soft]",
                                     kiln__json_type(v));
        if (json_array_size(v) != 2)
            return kiln__celery_fail(err, errlen, -EPROTO,
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
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "properties.priority is %s, expected an integer",
                                     kiln__json_type(v));
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
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "properties.delivery_info is %s, expected an object",
                                     kiln__json_type(di));
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
        return kiln__celery_fail(err, errlen, -EMEDIUMTYPE,
                                 "content-type is missing; not deserialized");
    if (!json_is_string(ct))
        return kiln__celery_fail(err, errlen, -EPROTO, "content-type is %s, expected a string",
                                 kiln__json_type(ct));
    if (strcmp(json_string_value(ct), "application/json") != 0)
        return kiln__celery_fail(err, errlen, -EMEDIUMTYPE,
                                 "content type %.100s is not JSON; not deserialized",
                                 json_string_value(ct));
    if (ce && !json_is_null(ce)) {
        if (!json_is_string(ce))
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "content-encoding is %s, expected a string",
                                     kiln__json_type(ce));
        s = json_string_value(ce);
        if (strcasecmp(s, "utf-8") != 0 && strcasecmp(s, "utf8") != 0)
            return kiln__celery_fail(err, errlen, -EMEDIUMTYPE,
                                     "content-encoding %.100s is not utf-8; not deserialized", s);
    }
    if (be && !json_is_null(be)) {
        if (!json_is_string(be))
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "properties.body_encoding is %s, expected a string",
                                     kiln__json_type(be));
        if (strcmp(json_string_value(be), "base64") != 0)
            return kiln__celery_fail(
                err, errlen, -EMEDIUMTYPE,
                "properties.body_encoding %.100s is not base64; not deserialized",
                json_string_value(be));
        *base64 = 1;
    }
    if (comp && !json_is_null(comp)) {
        if (!json_is_string(comp))
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "headers.compression is %s, expected a string",
                                     kiln__json_type(comp));
        s = json_string_value(comp);
        if (strcmp(s, "application/x-gzip") != 0 && strcmp(s, "gzip") != 0 &&
            strcmp(s, "zlib") != 0)
            return kiln__celery_fail(
                err, errlen, -EPROTO,
                "headers.compression %.100s is not supported (only application/x-gzip)", s);
        *compressed = 1;
    }
    return 0;
}

/* The body string to a parsed JSON value, bounded by max_body.  With
 * `fast`, the scanner builds it when it can, and then *text holds the plain
 * body (malloc'd) with span[] locating args and kwargs in it. */
static int
decode_body(json_t *body, int base64, int compressed, size_t max_body, int fast, json_t **parsed,
            char **text, size_t span[4], char *err, size_t errlen)
{
    unsigned char *raw = NULL, *plain = NULL;
    size_t rawlen, plainlen;
    const char *s;
    size_t n;
    json_error_t je;
    int rc;

    *parsed = NULL;
    *text = NULL;
    if (!body || json_is_null(body))
        return kiln__celery_fail(err, errlen, -EPROTO, "body is missing");
    if (!json_is_string(body))
        return kiln__celery_fail(err, errlen, -EPROTO, "body is %s, expected a string",
                                 kiln__json_type(body));
    s = json_string_value(body);
    n = json_string_length(body);
    if (n == 0)
        return kiln__celery_fail(err, errlen, -EPROTO, "body is empty");
    /* Refuse before allocating: base64 of n bytes holds at least
     * n / 4 * 3 - 2 bytes; a compressed body over max_body is refused too. */
    if (base64 && n / 4 * 3 > max_body + 2)
        return kiln__celery_fail(err, errlen, -E2BIG,
                                 "body is about %zu bytes after base64, over max_body %zu",
                                 n / 4 * 3, max_body);
    if (!base64 && n > max_body)
        return kiln__celery_fail(err, errlen, -E2BIG, "body is %zu bytes, over max_body %zu", n,
                                 max_body);
    if (base64) {
        if ((rc = kiln__celery_b64_decode(s, n, &raw, &rawlen, err, errlen)) < 0)
            return rc;
        if (rawlen > max_body) {
            free(raw);
            return kiln__celery_fail(err, errlen, -E2BIG,
                                     "body is %zu bytes after base64, over max_body %zu", rawlen,
                                     max_body);
        }
    }
    if (compressed) {
        rc = kiln__celery_inflate(raw ? raw : (const unsigned char *)s, raw ? rawlen : n, max_body,
                                  &plain, &plainlen, err, errlen);
        free(raw);
        if (rc < 0)
            return rc;
    } else if (raw) {
        plain = raw;
        plainlen = rawlen;
    }
    if (fast && plain &&
        (*parsed = kiln__celery_scan_value((const char *)plain, plainlen, span)) != NULL) {
        *text = (char *)plain;
        return 0;
    }
    *parsed =
        json_loadb(plain ? (const char *)plain : s, plain ? plainlen : n, JSON_DECODE_ANY, &je);
    free(plain);
    if (!*parsed)
        return kiln__celery_fail(err, errlen, -EPROTO, "body is not valid JSON: %s at byte %d",
                                 je.text, je.position);
    return 0;
}

static int
decode_envelope(json_t *env, size_t max_body, int fast, kiln__task_msg_t *out, char *err,
                size_t errlen)
{
    json_t *headers, *props, *body = NULL, *v;
    char *text = NULL;
    size_t span[4];
    int base64, compressed, rc;

    headers = json_object_get(env, "headers");
    if (headers && !json_is_null(headers) && !json_is_object(headers))
        return kiln__celery_fail(err, errlen, -EPROTO, "headers is %s, expected an object",
                                 kiln__json_type(headers));
    if (json_is_null(headers))
        headers = NULL;
    if (headers)
        peek_ids(headers, out);
    props = json_object_get(env, "properties");
    if (!props)
        return kiln__celery_fail(err, errlen, -EPROTO, "properties is missing");
    if (!json_is_object(props))
        return kiln__celery_fail(err, errlen, -EPROTO, "properties is %s, expected an object",
                                 kiln__json_type(props));
    if ((rc = check_encoding(env, headers, props, &base64, &compressed, err, errlen)) < 0)
        return rc;
    if ((rc = decode_body(json_object_get(env, "body"), base64, compressed, max_body, fast, &body,
                          &text, span, err, errlen)) < 0)
        return rc;
    if (json_is_object(body) && (!headers || !json_object_get(headers, "task"))) {
        if (!out->id[0] && !out->task[0])
            peek_ids(body, out);
        rc = kiln__celery_fail(err, errlen, -EPROTO,
                               "message protocol 1 is not supported (body is an object "
                               "with the task fields; headers.task is missing)");
        goto out;
    }
    if (!headers) {
        rc = kiln__celery_fail(err, errlen, -EPROTO, "headers is missing");
        goto out;
    }
    if ((rc = get_str(headers, "headers.", "id", out->id, sizeof(out->id), err, errlen)) < 0 ||
        (rc = get_str(headers, "headers.", "task", out->task, sizeof(out->task), err, errlen)) < 0)
        goto out;
    if (!out->id[0] || !out->task[0]) {
        const char *key = out->id[0] ? "task" : "id";

        v = json_object_get(headers, key);
        rc = kiln__celery_fail(err, errlen, -EPROTO, "headers.%s is %s", key,
                               v && !json_is_null(v) ? "empty" : "missing");
        goto out;
    }
    if (!json_is_array(body)) {
        rc = kiln__celery_fail(err, errlen, -EPROTO,
                               "body is %s, expected an array [args, kwargs, embed]",
                               kiln__json_type(body));
        goto out;
    }
    if (json_array_size(body) != 3) {
        rc = kiln__celery_fail(err, errlen, -EPROTO,
                               "body has %zu items, expected 3 [args, kwargs, embed]",
                               json_array_size(body));
        goto out;
    }
    v = json_array_get(body, 0);
    if (!json_is_array(v)) {
        rc = kiln__celery_fail(err, errlen, -EPROTO, "body[0] (args) is %s, expected an array",
                               kiln__json_type(v));
        goto out;
    }
    v = json_array_get(body, 1);
    if (!json_is_object(v)) {
        rc = kiln__celery_fail(err, errlen, -EPROTO, "body[1] (kwargs) is %s, expected an object",
                               kiln__json_type(v));
        goto out;
    }
    v = json_array_get(body, 2);
    if (!json_is_object(v) && !json_is_null(v)) {
        rc = kiln__celery_fail(err, errlen, -EPROTO,
                               "body[2] (embed) is %s, expected an object or null",
                               kiln__json_type(v));
        goto out;
    }
    if ((rc = decode_headers(headers, out, err, errlen)) < 0 ||
        (rc = decode_properties(props, out, err, errlen)) < 0)
        goto out;
    out->args = json_incref(json_array_get(body, 0));
    out->kwargs = json_incref(json_array_get(body, 1));
    out->embed = json_is_object(v) ? json_incref(v) : NULL;
    if (text && span[1] > 0 && span[3] > 0) {
        out->body = text; /* args and kwargs as the producer wrote them */
        text = NULL;
        out->args_text = out->body + span[0];
        out->args_len = span[1];
        out->kwargs_text = out->body + span[2];
        out->kwargs_len = span[3];
    }
    rc = 0;
out:
    free(text);
    json_decref(body);
    return rc;
}

static int
decode(const char *data, size_t len, size_t max_body, int fast, kiln__task_msg_t *out, char *err,
       size_t errlen)
{
    json_error_t je;
    json_t *env = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    out->priority = -1;
    if (err && errlen)
        err[0] = '\0';
    if (!data)
        return kiln__celery_fail(err, errlen, -EPROTO, "message is missing");
    if (fast && (env = kiln__celery_scan(data, len)) != NULL) {
        out->raw = malloc(len + 1);
        if (!out->raw) {
            json_decref(env);
            return kiln__celery_fail(err, errlen, -ENOMEM, "out of memory");
        }
        memcpy(out->raw, data, len);
        out->raw[len] = '\0';
        out->rawlen = len;
    } else {
        env = json_loadb(data, len, JSON_DECODE_ANY, &je);
        if (!env)
            return kiln__celery_fail(err, errlen, -EPROTO,
                                     "message is not valid JSON: %s at byte %d", je.text,
                                     je.position);
    }
    if (!json_is_object(env)) {
        rc = kiln__celery_fail(err, errlen, -EPROTO, "message is %s, expected a JSON object",
                               kiln__json_type(env));
        json_decref(env);
        return rc;
    }
    rc = decode_envelope(env, max_body, fast, out, err, errlen);
    if (rc < 0) {
        char id[sizeof(out->id)], task[sizeof(out->task)];

        memcpy(id, out->id, sizeof(id));
        memcpy(task, out->task, sizeof(task));
        json_decref(env);
        free(out->raw);
        memset(out, 0, sizeof(*out));
        out->priority = -1;
        memcpy(out->id, id, sizeof(id));
        memcpy(out->task, task, sizeof(task));
        return rc;
    }
    out->envelope = env;
    return 0;
}

int
kiln__celery_decode(const char *data, size_t len, size_t max_body, kiln__task_msg_t *out, char *err,
                    size_t errlen)
{
    return decode(data, len, max_body, 1, out, err, errlen);
}

int
kiln__celery_decode_slow(const char *data, size_t len, size_t max_body, kiln__task_msg_t *out,
                         char *err, size_t errlen)
{
    return decode(data, len, max_body, 0, out, err, errlen);
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
    free(m->raw);
    free(m->body);
    m->raw = m->body = NULL;
    m->args_text = m->kwargs_text = NULL;
    m->rawlen = m->args_len = m->kwargs_len = 0;
    m->envelope = m->args = m->kwargs = m->embed = NULL;
}
