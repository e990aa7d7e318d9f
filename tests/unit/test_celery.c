/*
 * test_celery.c -- the Celery protocol-2 codec (runtime/celery.c) against
 * what Celery 5.2 and kombu 5.2 write, and against every malformed message
 * we could think of: each refusal checks the code and the words of the
 * message.
 */
#include "celery.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#define MAX_BODY (1u << 20)

/* Two messages exactly as Celery 5.2.6 / kombu 5.2.4 put them in Redis:
 * send_task('t.add', args=[1, 'é', 2.5, None, True], kwargs={'x': [1, {'y': "it's"}]},
 *           countdown=10, expires=60, priority=5, time_limit=30, soft_time_limit=20)
 * and send_task('t.add', args=[1], compression='gzip', queue='other'). */
static const char real_priority[] =
    "{\"body\": "
    "\"W1sxLCAiXHUwMGU5IiwgMi41LCBudWxsLCB0cnVlXSwgeyJ4IjogWzEsIHsieSI6ICJpdCdzIn1dfSwgeyJjYWxsYmFj"
    "a3"
    "MiOiBudWxsLCAiZXJyYmFja3MiOiBudWxsLCAiY2hhaW4iOiBudWxsLCAiY2hvcmQiOiBudWxsfV0=\", "
    "\"content-encoding\": \"utf-8\", \"content-type\": \"application/json\", \"headers\": "
    "{\"lang\": \"py\", \"task\": \"t.add\", \"id\": \"2cf1e79d-ca66-4b9b-9b03-45b4f70825c5\", "
    "\"shadow\": null, \"eta\": \"2026-11-24T06:51:48.078732+00:00\", \"expires\": "
    "\"2026-11-24T06:52:38.078732+00:00\", \"group\": null, \"group_index\": null, \"retries\": 0, "
    "\"timelimit\": [30, 20], \"root_id\": \"2cf1e79d-ca66-4b9b-9b03-45b4f70825c5\", "
    "\"parent_id\": "
    "null, \"argsrepr\": \"[1, '\\u00e9', 2.5, None, True]\", \"kwargsrepr\": \"{'x': [1, {'y': "
    "'it\\\\'s'}]}\", \"origin\": \"gen15107@vm\", \"ignore_result\": false}, \"properties\": "
    "{\"correlation_id\": \"2cf1e79d-ca66-4b9b-9b03-45b4f70825c5\", \"reply_to\": "
    "\"9d1c8dd0-3a91-3cf3-90a1-eb26de6328db\", \"delivery_mode\": 2, \"expiration\": \"60000\", "
    "\"delivery_info\": {\"exchange\": \"\", \"routing_key\": \"celery\"}, \"priority\": 5, "
    "\"body_encoding\": \"base64\", \"delivery_tag\": \"a6dec191-7c7f-43b6-8918-a5d6b3adec53\"}}";

static const char real_gzip[] =
    "{\"body\": \"eJyLjjaM1VGorgVipeTEnJykxOTsYiUrhbzSnBwdBaXUoiI0keSMxMw8ZG5+UQqUWxsLAOEqGXI=\", "
    "\"content-encoding\": \"utf-8\", \"content-type\": \"application/json\", \"headers\": "
    "{\"lang\": \"py\", \"task\": \"t.add\", \"id\": \"04c32426-151e-48ec-918d-b9d4d3e86630\", "
    "\"shadow\": null, \"eta\": null, \"expires\": null, \"group\": null, \"group_index\": null, "
    "\"retries\": 0, \"timelimit\": [null, null], \"root_id\": "
    "\"04c32426-151e-48ec-918d-b9d4d3e86630\", \"parent_id\": null, \"argsrepr\": \"[1]\", "
    "\"kwargsrepr\": \"{}\", \"origin\": \"gen15107@vm\", \"ignore_result\": false, "
    "\"compression\": \"application/x-gzip\"}, \"properties\": {\"correlation_id\": "
    "\"04c32426-151e-48ec-918d-b9d4d3e86630\", \"reply_to\": "
    "\"9d1c8dd0-3a91-3cf3-90a1-eb26de6328db\", \"delivery_mode\": 2, \"delivery_info\": "
    "{\"exchange\": \"\", \"routing_key\": \"other\"}, \"priority\": 0, \"body_encoding\": "
    "\"base64\", \"delivery_tag\": \"c1a6fe4a-27ca-41ed-ae8c-a8610db244d9\"}}";

/* ------------------------------------------------------------- helpers */

static char *
b64(const unsigned char *in, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1);
    size_t i, o = 0;

    assert_non_null(out);
    for (i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);

        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* zlib (windowBits 15) or gzip (31) of `in`. */
static unsigned char *
deflate_buf(const void *in, size_t n, int window, size_t *outlen)
{
    z_stream zs;
    unsigned char *out;
    size_t cap = compressBound(n) + 64;

    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, window, 8, Z_DEFAULT_STRATEGY), Z_OK);
    out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (unsigned)n;
    zs.next_out = out;
    zs.avail_out = (unsigned)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *outlen = zs.total_out;
    deflateEnd(&zs);
    return out;
}

/* A valid envelope of a Celery 5.2 producer with the given plain body. */
static json_t *
envelope_with_body(const char *body_json)
{
    char *body = b64((const unsigned char *)body_json, strlen(body_json));
    json_t *env = json_pack(
        "{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:n, s:n, s:n, s:n, s:n, s:i, s:[n, n], s:s, s:n, s:s, "
        "s:s, s:s, s:b}, s:{s:s, s:s, s:i, s:{s:s, s:s}, s:i, s:s, s:s}}",
        "body", body, "content-encoding", "utf-8", "content-type", "application/json", "headers",
        "lang", "py", "task", "proj.add", "id", "11111111-2222-4333-8444-555555555555", "shadow",
        "eta", "expires", "group", "group_index", "retries", 0, "timelimit", "root_id",
        "11111111-2222-4333-8444-555555555555", "parent_id", "argsrepr", "[1, 2]", "kwargsrepr",
        "{}", "origin", "gen1@host", "ignore_result", 0, "properties", "correlation_id",
        "11111111-2222-4333-8444-555555555555", "reply_to", "", "delivery_mode", 2, "delivery_info",
        "exchange", "", "routing_key", "celery", "priority", 0, "body_encoding", "base64",
        "delivery_tag", "d0d0d0d0-0000-4000-8000-000000000000");

    free(body);
    assert_non_null(env);
    return env;
}

static json_t *
good_envelope(void)
{
    return envelope_with_body("[[1, 2], {\"k\": \"v\"}, {\"callbacks\": null, \"errbacks\": null, "
                              "\"chain\": null, \"chord\": null}]");
}

static json_t *
headers(json_t *env)
{
    return json_object_get(env, "headers");
}

static json_t *
props(json_t *env)
{
    return json_object_get(env, "properties");
}

/* Dump `env` (consumed) and decode it. */
static int
decode_env(json_t *env, size_t max_body, kiln__task_msg_t *m, char *err, size_t errlen)
{
    char *text = json_dumps(env, 0);
    int rc;

    json_decref(env);
    assert_non_null(text);
    rc = kiln__celery_decode(text, strlen(text), max_body, m, err, errlen);
    free(text);
    return rc;
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle));                           \
    } while (0)

/* Decode `env`, expect `code` and `words` in the message, nothing owned. */
static void
expect_refused(json_t *env, int code, const char *words)
{
    kiln__task_msg_t m;
    char err[512];
    int rc = decode_env(env, MAX_BODY, &m, err, sizeof(err));

    if (rc != code)
        fail_msg("expected %d (%s), got %d: \"%s\"", code, strerror(-code), rc, err);
    assert_contains(err, words);
    assert_null(m.envelope);
    assert_null(m.args);
    assert_null(m.kwargs);
    assert_null(m.embed);
    assert_null(m.args_text);
}

static void
expect_refused_body(const char *body_json, int code, const char *words)
{
    expect_refused(envelope_with_body(body_json), code, words);
}

static void
set_header(json_t *env, const char *key, json_t *v)
{
    json_object_set_new(headers(env), key, v);
}

static void
set_prop(json_t *env, const char *key, json_t *v)
{
    json_object_set_new(props(env), key, v);
}

/* ---------------------------------------------------- real Celery input */

static void
test_decode_real_priority_message(void **state)
{
    kiln__task_msg_t m;
    char err[256];
    double eta;

    (void)state;
    assert_int_equal(
        kiln__celery_decode(real_priority, strlen(real_priority), MAX_BODY, &m, err, sizeof(err)),
        0);
    assert_string_equal(m.id, "2cf1e79d-ca66-4b9b-9b03-45b4f70825c5");
    assert_string_equal(m.task, "t.add");
    assert_string_equal(m.root_id, m.id);
    assert_string_equal(m.parent_id, "");
    assert_string_equal(m.group, "");
    assert_int_equal(json_array_size(m.args), 5);
    assert_string_equal(json_string_value(json_array_get(m.args, 1)), "\xc3\xa9");
    assert_true(json_real_value(json_array_get(m.args, 2)) == 2.5);
    assert_true(json_is_null(json_array_get(m.args, 3)));
    assert_true(json_is_true(json_array_get(m.args, 4)));
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(m.kwargs, "x"), 1), "y")),
        "it's");
    assert_non_null(m.embed);
    assert_true(json_is_null(json_object_get(m.embed, "chord")));
    /* timelimit is [hard, soft] on the wire. */
    assert_true(m.time_limit == 30);
    assert_true(m.soft_time_limit == 20);
    assert_int_equal(kiln__celery_parse_time("2026-11-24T06:51:48.078732+00:00", &eta), 0);
    assert_true(fabs(m.eta - eta) < 1e-6);
    assert_true(fabs(m.expires - (eta + 50)) < 1e-6);
    assert_int_equal(m.priority, 5);
    assert_int_equal(m.retries, 0);
    assert_string_equal(m.routing_key, "celery");
    assert_string_equal(m.exchange, "");
    assert_string_equal(m.reply_to, "9d1c8dd0-3a91-3cf3-90a1-eb26de6328db");
    assert_non_null(m.envelope);
    /* The args and kwargs text kept for the TASK frame, as Python wrote it. */
    assert_non_null(m.args_text);
    assert_int_equal(m.args_text[0], '[');
    assert_int_equal(m.args_text[m.args_len - 1], ']');
    {
        json_t *a = json_loadb(m.args_text, m.args_len, 0, NULL);
        json_t *k = json_loadb(m.kwargs_text, m.kwargs_len, 0, NULL);
        assert_true(json_equal(a, m.args));
        assert_true(json_equal(k, m.kwargs));
        json_decref(a);
        json_decref(k);
    }
    kiln__celery_msg_free(&m);
    assert_null(m.envelope);
    assert_null(m.args);
    assert_null(m.args_text);
    kiln__celery_msg_free(&m); /* twice is harmless */
}

static void
test_decode_real_gzip_message(void **state)
{
    kiln__task_msg_t m;
    char err[256];

    (void)state;
    assert_int_equal(
        kiln__celery_decode(real_gzip, strlen(real_gzip), MAX_BODY, &m, err, sizeof(err)), 0);
    assert_string_equal(m.id, "04c32426-151e-48ec-918d-b9d4d3e86630");
    assert_int_equal(json_array_size(m.args), 1);
    assert_int_equal(json_integer_value(json_array_get(m.args, 0)), 1);
    assert_int_equal(json_object_size(m.kwargs), 0);
    assert_true(m.time_limit == 0 && m.soft_time_limit == 0);
    assert_true(m.eta == 0 && m.expires == 0);
    assert_int_equal(m.priority, 0);
    assert_string_equal(m.routing_key, "other");
    kiln__celery_msg_free(&m);
}

/* ------------------------------------------------------------ encoding */

static void
test_encode_decode_roundtrip(void **state)
{
    json_t *args = json_pack("[i, s, f, n, b]", 7, "caf\xc3\xa9", 0.25, 1);
    json_t *kwargs = json_pack("{s:[i], s:s}", "x", 1, "q", "it's");
    json_t *embed = json_pack("{s:n, s:n, s:n, s:n}", "callbacks", "errbacks", "chain", "chord");
    kiln__celery_new_t spec = {0};
    kiln__task_msg_t m;
    char id[64], err[256], *env;

    (void)state;
    spec.task = "proj.resize";
    spec.args = args;
    spec.kwargs = kwargs;
    spec.queue = "images";
    spec.priority = 6;
    spec.retries = 2;
    spec.eta = 1795503108.078732;
    spec.expires = 1795503158.5;
    spec.soft_time_limit = 20.5;
    spec.time_limit = 30;
    spec.parent_id = "parent-1";
    spec.group = "group-1";
    spec.origin = "kiln@test";
    env = kiln__celery_encode(&spec, id, sizeof(id));
    assert_non_null(env);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(kiln__celery_decode(env, strlen(env), MAX_BODY, &m, err, sizeof(err)), 0);
    assert_string_equal(m.id, id);
    assert_string_equal(m.task, "proj.resize");
    assert_true(json_equal(m.args, args));
    assert_true(json_equal(m.kwargs, kwargs));
    assert_true(json_equal(m.embed, embed));
    assert_int_equal(m.retries, 2);
    assert_true(fabs(m.eta - spec.eta) < 1e-6);
    assert_true(fabs(m.expires - spec.expires) < 1e-6);
    assert_true(m.soft_time_limit == 20.5);
    assert_true(m.time_limit == 30);
    assert_string_equal(m.root_id, id); /* root_id defaults to the id */
    assert_string_equal(m.parent_id, "parent-1");
    assert_string_equal(m.group, "group-1");
    assert_int_equal(m.priority, 6);
    assert_string_equal(m.routing_key, "images");
    assert_string_equal(m.reply_to, "");
    kiln__celery_msg_free(&m);
    free(env);
    json_decref(args);
    json_decref(kwargs);
    json_decref(embed);
}

/* The keys, their order and the fixed values of as_task_v2 + kombu. */
static void
test_encode_envelope_like_celery(void **state)
{
    static const char *const env_keys[] = {"body", "content-encoding", "content-type", "headers",
                                           "properties"};
    static const char *const header_keys[] = {"lang",     "task",       "id",      "shadow",
                                              "eta",      "expires",    "group",   "group_index",
                                              "retries",  "timelimit",  "root_id", "parent_id",
                                              "argsrepr", "kwargsrepr", "origin",  "ignore_result"};
    static const char *const prop_keys[] = {"correlation_id", "reply_to", "delivery_mode",
                                            "delivery_info",  "priority", "body_encoding",
                                            "delivery_tag"};
    json_t *args = json_pack("[i, i]", 1, 2);
    kiln__celery_new_t spec = {0};
    json_t *env, *h, *p;
    json_error_t je;
    char id[64], *text;
    void *it;
    size_t i;

    (void)state;
    spec.task = "proj.add";
    spec.id = "my-id";
    spec.args = args;
    spec.queue = "celery";
    spec.priority = -1;
    text = kiln__celery_encode(&spec, id, sizeof(id));
    assert_non_null(text);
    assert_string_equal(id, "my-id");
    /* Python's json.dumps separators. */
    assert_non_null(strstr(text, "\"content-encoding\": \"utf-8\", \"content-type\""));
    env = json_loads(text, 0, &je);
    assert_non_null(env);
    for (it = json_object_iter(env), i = 0; it; it = json_object_iter_next(env, it), i++)
        assert_string_equal(json_object_iter_key(it), env_keys[i]);
    assert_int_equal(i, 5);
    h = json_object_get(env, "headers");
    for (it = json_object_iter(h), i = 0; it; it = json_object_iter_next(h, it), i++)
        assert_string_equal(json_object_iter_key(it), header_keys[i]);
    assert_int_equal(i, 16);
    p = json_object_get(env, "properties");
    for (it = json_object_iter(p), i = 0; it; it = json_object_iter_next(p, it), i++)
        assert_string_equal(json_object_iter_key(it), prop_keys[i]);
    assert_int_equal(i, 7);
    assert_string_equal(json_string_value(json_object_get(h, "lang")), "py");
    assert_true(json_is_null(json_object_get(h, "shadow")));
    assert_true(json_is_null(json_object_get(h, "eta")));
    assert_true(json_is_null(json_object_get(h, "group")));
    assert_true(json_is_null(json_object_get(h, "group_index")));
    assert_true(json_is_null(json_object_get(h, "parent_id")));
    assert_string_equal(json_string_value(json_object_get(h, "root_id")), "my-id");
    assert_string_equal(json_string_value(json_object_get(h, "argsrepr")), "[1, 2]");
    assert_string_equal(json_string_value(json_object_get(h, "kwargsrepr")), "{}");
    assert_true(json_is_false(json_object_get(h, "ignore_result")));
    assert_non_null(strstr(text, "\"timelimit\": [null, null]"));
    assert_int_equal(strncmp(json_string_value(json_object_get(h, "origin")), "kiln@", 5), 0);
    assert_string_equal(json_string_value(json_object_get(p, "correlation_id")), "my-id");
    assert_string_equal(json_string_value(json_object_get(p, "reply_to")), "");
    assert_int_equal(json_integer_value(json_object_get(p, "delivery_mode")), 2);
    assert_int_equal(json_integer_value(json_object_get(p, "priority")), 0);
    assert_string_equal(json_string_value(json_object_get(p, "body_encoding")), "base64");
    assert_int_equal(strlen(json_string_value(json_object_get(p, "delivery_tag"))), 36);
    assert_non_null(strstr(text, "\"delivery_info\": {\"exchange\": \"\", \"routing_key\": "
                                 "\"celery\"}"));
    /* The body, as kombu's json.dumps writes it, then base64. */
    assert_string_equal(json_string_value(json_object_get(env, "body")),
                        "W1sxLCAyXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYW"
                        "luIjogbnVsbCwgImNob3JkIjogbnVsbH1d");
    json_decref(env);
    free(text);
    json_decref(args);
}

static void
test_encode_expires_sets_expiration(void **state)
{
    kiln__celery_new_t spec = {0};
    json_t *env;
    const char *exp;
    char *text;

    (void)state;
    spec.task = "t";
    spec.queue = "celery";
    spec.priority = 3;
    spec.expires = (double)time(NULL) + 60;
    text = kiln__celery_encode(&spec, NULL, 0);
    env = json_loads(text, 0, NULL);
    exp = json_string_value(json_object_get(json_object_get(env, "properties"), "expiration"));
    assert_non_null(exp);
    assert_in_range(strtol(exp, NULL, 10), 58000, 60000);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(env, "properties"), "priority")), 3);
    json_decref(env);
    free(text);
}

static void
test_encode_argsrepr_like_saferepr(void **state)
{
    static const struct {
        const char *json, *repr;
    } cases[] = {
        {"[1, \"a\", null, true, false, 2.5]", "[1, 'a', None, True, False, 2.5]"},
        {"[\"it's\"]", "['it\\'s']"},
        {"[[[[1]]]]", "[[[[...]]]]"},
        {"[0.1, 1e20, 1e-05, -0.0, 1e16, 1.5e300, 100.0, 0.0001]",
         "[0.1, 1e+20, 1e-05, -0.0, 1e+16, 1.5e+300, 100.0, 0.0001]"},
        {"[{\"a\": {\"b\": {\"c\": 1}}}]", "[{'a': {'b': {...}}}]"},
        {"[]", "[]"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln__celery_new_t spec = {0};
        json_t *args = json_loads(cases[i].json, 0, NULL), *env;
        char *text;

        assert_non_null(args);
        spec.task = "t";
        spec.queue = "celery";
        spec.args = args;
        text = kiln__celery_encode(&spec, NULL, 0);
        env = json_loads(text, 0, NULL);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(env, "headers"), "argsrepr")),
            cases[i].repr);
        json_decref(env);
        json_decref(args);
        free(text);
    }
}

/* Python's ensure_ascii escapes, in lower case, in headers and body. */
static void
test_encode_escapes_like_python(void **state)
{
    kiln__celery_new_t spec = {0};
    json_t *args = json_pack("[s]", "caf\xc3\xa9 \\u00E9"), *env;
    char *text, *body;

    (void)state;
    spec.task = "t";
    spec.queue = "celery";
    spec.args = args;
    text = kiln__celery_encode(&spec, NULL, 0);
    assert_non_null(strstr(text, "\"argsrepr\": \"['caf\\u00e9 \\\\u00E9']\""));
    env = json_loads(text, 0, NULL);
    body = (char *)json_string_value(json_object_get(env, "body"));
    /* base64 of '[["caf\u00e9 \\u00E9"], {}, ' */
    assert_int_equal(strncmp(body, "W1siY2FmXHUwMGU5IFxcdTAwRTkiXSwge30sIH", 38), 0);
    json_decref(env);
    json_decref(args);
    free(text);
}

static void
test_encode_long_argsrepr_is_cut(void **state)
{
    kiln__celery_new_t spec = {0};
    json_t *args = json_array(), *env;
    const char *repr;
    char *text;
    int i;

    (void)state;
    for (i = 0; i < 2000; i++)
        json_array_append_new(args, json_integer(i));
    spec.task = "t";
    spec.queue = "celery";
    spec.args = args;
    text = kiln__celery_encode(&spec, NULL, 0);
    env = json_loads(text, 0, NULL);
    repr = json_string_value(json_object_get(json_object_get(env, "headers"), "argsrepr"));
    assert_in_range(strlen(repr), 1000, 1100);
    assert_non_null(strstr(repr, ", ...]"));
    json_decref(env);
    json_decref(args);
    free(text);
}

static void
test_encode_refuses_bad_spec(void **state)
{
    kiln__celery_new_t spec = {0};
    json_t *obj = json_object();

    (void)state;
    assert_null(kiln__celery_encode(NULL, NULL, 0));
    assert_null(kiln__celery_encode(&spec, NULL, 0)); /* no task, no queue */
    spec.task = "t";
    assert_null(kiln__celery_encode(&spec, NULL, 0)); /* no queue */
    spec.queue = "q";
    spec.args = obj; /* args must be an array */
    assert_null(kiln__celery_encode(&spec, NULL, 0));
    assert_int_equal(errno, EINVAL);
    json_decref(obj);
}

static void
test_retry_message_bumps_retries_and_eta(void **state)
{
    kiln__task_msg_t m, r;
    char err[256], eta_iso[64], *msg;
    json_t *a, *b;

    (void)state;
    assert_int_equal(
        kiln__celery_decode(real_priority, strlen(real_priority), MAX_BODY, &m, err, sizeof(err)),
        0);
    msg = kiln__celery_retry_message(&m, 1800000000.25);
    assert_non_null(msg);
    /* The whole envelopes (the fast path keeps only what it reads). */
    kiln__celery_msg_free(&m);
    assert_int_equal(kiln__celery_decode_slow(real_priority, strlen(real_priority), MAX_BODY, &m,
                                              err, sizeof(err)),
                     0);
    assert_int_equal(kiln__celery_decode_slow(msg, strlen(msg), MAX_BODY, &r, err, sizeof(err)), 0);
    assert_int_equal(r.retries, 1);
    assert_true(fabs(r.eta - 1800000000.25) < 1e-6);
    assert_string_equal(r.id, m.id);
    assert_true(json_equal(r.args, m.args));
    assert_true(json_equal(r.kwargs, m.kwargs));
    kiln__celery_format_time(1800000000.25, eta_iso, sizeof(eta_iso));
    assert_string_equal(json_string_value(json_object_get(headers(r.envelope), "eta")), eta_iso);
    /* Same body; a new delivery tag; everything else kept. */
    a = json_deep_copy(m.envelope);
    b = json_deep_copy(r.envelope);
    assert_string_not_equal(json_string_value(json_object_get(props(a), "delivery_tag")),
                            json_string_value(json_object_get(props(b), "delivery_tag")));
    json_object_del(props(a), "delivery_tag");
    json_object_del(props(b), "delivery_tag");
    json_object_del(headers(a), "retries");
    json_object_del(headers(b), "retries");
    json_object_del(headers(a), "eta");
    json_object_del(headers(b), "eta");
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    free(msg);
    kiln__celery_msg_free(&r);

    /* A compressed body stays compressed, with its header. */
    kiln__celery_msg_free(&m);
    assert_int_equal(
        kiln__celery_decode(real_gzip, strlen(real_gzip), MAX_BODY, &m, err, sizeof(err)), 0);
    msg = kiln__celery_retry_message(&m, 1800000000);
    assert_non_null(strstr(msg, "\"compression\": \"application/x-gzip\""));
    assert_int_equal(kiln__celery_decode(msg, strlen(msg), MAX_BODY, &r, err, sizeof(err)), 0);
    assert_true(json_equal(r.args, m.args));
    assert_string_equal(json_string_value(json_object_get(headers(r.envelope), "eta")),
                        "2027-01-15T08:00:00+00:00");
    kiln__celery_msg_free(&r);
    kiln__celery_msg_free(&m);
    free(msg);
    assert_null(kiln__celery_retry_message(NULL, 1));
    assert_null(kiln__celery_retry_message(&m, 1)); /* freed: no envelope */
}

static void
test_fast_path_matches_slow(void **state)
{
    /* The envelope scanner (celery_scan.c) and jansson on the whole message
     * read the same fields from real messages, and the scanner hands odd
     * ones (escapes, non-ASCII, exponents, broken JSON) to jansson. */
    static const char *odd[] = {
        "{\"body\": \"W1tdLCB7fSwge31d\", \"content-type\": \"application/json\", "
        "\"content-encoding\": \"utf-8\", \"headers\": {\"task\": \"t\\u00e9\", \"id\": \"1\"}, "
        "\"properties\": {\"body_encoding\": \"base64\"}}",
        "{\"body\": \"W1tdLCB7fSwge31d\", \"content-type\": \"application/json\", "
        "\"content-encoding\": \"utf-8\", \"headers\": {\"task\": \"t\", \"id\": \"1\", "
        "\"retries\": 1e2}, \"properties\": {\"body_encoding\": \"base64\"}}",
        "{\"body\": \"W1tdLCB7fSwge31d\", \"content-type\": \"application/json\", "
        "\"content-encoding\": \"utf-8\", \"headers\": {\"task\": \"t\", \"id\": \"1\", "
        "\"argsrepr\": \"caf\xc3\xa9\"}, \"properties\": {\"body_encoding\": \"base64\"}}",
        "{\"body\": \"W1tdLCB7fSwge31d\", \"headers\": {\"task\": \"t\", \"id\": \"1\"}, "
        "\"properties\": {\"body_encoding\": \"base64\"}, \"x\": [1, 2,]}",
        "{\"body\": \"W1tdLCB7fSwge31d\", \"headers\": {\"task\": \"t\", \"id\": \"1\", "
        "\"id\": \"2\"}, \"properties\": {\"body_encoding\": \"base64\", \"priority\": null}} ",
        "{\"headers\": 5, \"properties\": {}}",
        "[1]",
        "",
    };
    const char *real[] = {real_priority, real_gzip};
    kiln__task_msg_t a, b;
    char ea[256], eb[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(real) / sizeof(real[0]) + sizeof(odd) / sizeof(odd[0]); i++) {
        const char *s = i < 2 ? real[i] : odd[i - 2];
        int ra = kiln__celery_decode(s, strlen(s), MAX_BODY, &a, ea, sizeof(ea));
        int rb = kiln__celery_decode_slow(s, strlen(s), MAX_BODY, &b, eb, sizeof(eb));
        assert_int_equal(ra, rb);
        if (ra < 0) {
            assert_string_equal(ea, eb);
        } else {
            assert_string_equal(a.id, b.id);
            assert_string_equal(a.task, b.task);
            assert_true(json_equal(a.args, b.args) && json_equal(a.kwargs, b.kwargs));
            assert_int_equal(a.retries, b.retries);
            assert_int_equal(a.priority, b.priority);
            assert_string_equal(a.routing_key, b.routing_key);
            assert_true(a.eta == b.eta && a.expires == b.expires);
            assert_true(a.time_limit == b.time_limit && a.soft_time_limit == b.soft_time_limit);
        }
        if (i < 2)
            assert_non_null(a.raw); /* real messages take the fast path */
        kiln__celery_msg_free(&a);
        kiln__celery_msg_free(&b);
    }
}

/* ------------------------------------------------------------- results */

static void
assert_iso_naive(const char *s)
{
    double t;

    assert_non_null(s);
    assert_null(strchr(s, '+'));
    assert_null(strchr(s, 'Z'));
    assert_int_equal(kiln__celery_parse_time(s, &t), 0);
    assert_true(fabs(t - (double)time(NULL)) < 5);
}

static void
test_result_success_meta(void **state)
{
    static const char *const keys[] = {"status",   "result",    "traceback",
                                       "children", "date_done", "task_id"};
    json_t *value = json_pack("{s:i}", "sum", 3), *meta;
    char *text;
    void *it;
    size_t i;

    (void)state;
    text = kiln__celery_result("id-1", "SUCCESS", value, NULL, NULL);
    assert_non_null(text);
    meta = json_loads(text, 0, NULL);
    for (it = json_object_iter(meta), i = 0; it; it = json_object_iter_next(meta, it), i++)
        assert_string_equal(json_object_iter_key(it), keys[i]);
    assert_int_equal(i, 6);
    assert_string_equal(json_string_value(json_object_get(meta, "status")), "SUCCESS");
    assert_true(json_equal(json_object_get(meta, "result"), value));
    assert_true(json_is_null(json_object_get(meta, "traceback")));
    assert_int_equal(json_array_size(json_object_get(meta, "children")), 0);
    assert_iso_naive(json_string_value(json_object_get(meta, "date_done")));
    assert_string_equal(json_string_value(json_object_get(meta, "task_id")), "id-1");
    assert_int_equal(value->refcount, 1); /* borrowed, left as it was */
    json_decref(meta);
    json_decref(value);
    free(text);

    text = kiln__celery_result("id-2", "SUCCESS", NULL, NULL, NULL);
    assert_non_null(strstr(text, "\"result\": null"));
    free(text);
    assert_null(kiln__celery_result(NULL, "SUCCESS", NULL, NULL, NULL));
    assert_null(kiln__celery_result("x", NULL, NULL, NULL, NULL));
}

static void
test_result_states_and_ids(void **state)
{
    static const struct {
        const char *status;
        int ready;
    } states[] = {{"SUCCESS", 1}, {"FAILURE", 1}, {"REVOKED", 1}, {"PENDING", 0},
                  {"STARTED", 0}, {"RETRY", 0},   {"PROGRESS", 0}};
    kiln__task_msg_t m;
    json_t *meta;
    char *text;
    size_t i;
    void *it;

    (void)state;
    for (i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        text = kiln__celery_result("id", states[i].status, NULL, NULL, NULL);
        meta = json_loads(text, 0, NULL);
        if (states[i].ready)
            assert_iso_naive(json_string_value(json_object_get(meta, "date_done")));
        else
            assert_true(json_is_null(json_object_get(meta, "date_done")));
        assert_null(json_object_get(meta, "parent_id"));
        assert_null(json_object_get(meta, "group_id"));
        json_decref(meta);
        free(text);
    }
    memset(&m, 0, sizeof(m));
    strcpy(m.parent_id, "p-1");
    strcpy(m.group, "g-1");
    text = kiln__celery_result("id", "FAILURE", NULL, "Traceback (most recent call last):\n", &m);
    meta = json_loads(text, 0, NULL);
    /* _get_result_meta adds group_id, then parent_id; _store_result task_id. */
    it = json_object_iter_at(meta, "date_done");
    it = json_object_iter_next(meta, it);
    assert_string_equal(json_object_iter_key(it), "group_id");
    it = json_object_iter_next(meta, it);
    assert_string_equal(json_object_iter_key(it), "parent_id");
    it = json_object_iter_next(meta, it);
    assert_string_equal(json_object_iter_key(it), "task_id");
    assert_string_equal(json_string_value(json_object_get(meta, "group_id")), "g-1");
    assert_string_equal(json_string_value(json_object_get(meta, "parent_id")), "p-1");
    assert_string_equal(json_string_value(json_object_get(meta, "traceback")),
                        "Traceback (most recent call last):\n");
    json_decref(meta);
    free(text);
}

static void
test_exc_modules(void **state)
{
    static const struct {
        const char *type, *module;
    } cases[] = {
        {"ValueError", "builtins"},
        {"KeyError", "builtins"},
        {"MemoryError", "builtins"},
        {"Exception", "builtins"},
        {"ZeroDivisionError", "builtins"},
        {"TimeLimitExceeded", "celery.exceptions"},
        {"SoftTimeLimitExceeded", "celery.exceptions"},
        {"Retry", "celery.exceptions"},
        {"NotRegistered", "celery.exceptions"},
        {"WorkerLostError", "billiard.exceptions"},
        {"MemoryLimitExceeded", "kiln.exceptions"},
        {"SystemExit", "kiln.exceptions"},
        {"Error", "kiln.exceptions"}, /* a substring of a built-in name */
        {"Value", "kiln.exceptions"}, /* a prefix of one */
        {"ValueError|", "kiln.exceptions"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *e = kiln__celery_exc(cases[i].type, "boom");

        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(e, "exc_type")), cases[i].type);
        assert_string_equal(json_string_value(json_object_get(e, "exc_module")), cases[i].module);
        assert_int_equal(json_array_size(json_object_get(e, "exc_message")), 1);
        assert_string_equal(json_string_value(json_array_get(json_object_get(e, "exc_message"), 0)),
                            "boom");
        json_decref(e);
    }
}

/* -------------------------------------------------------- compression */

static json_t *
compressed_envelope(const char *plain, int window, const char *compression)
{
    size_t zlen;
    unsigned char *z = deflate_buf(plain, strlen(plain), window, &zlen);
    char *body = b64(z, zlen);
    json_t *env = good_envelope();

    json_object_set_new(env, "body", json_string(body));
    set_header(env, "compression", json_string(compression));
    free(body);
    free(z);
    return env;
}

static void
test_compression_zlib_and_gzip(void **state)
{
    static const char plain[] = "[[\"zipped\"], {}, {}]";
    static const char *const names[] = {"application/x-gzip", "gzip", "zlib"};
    kiln__task_msg_t m;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < 3; i++) {
        int window = i == 1 ? 31 : 15; /* zlib format (kombu) and a real gzip header */

        assert_int_equal(decode_env(compressed_envelope(plain, window, names[i]), MAX_BODY, &m, err,
                                    sizeof(err)),
                         0);
        assert_string_equal(json_string_value(json_array_get(m.args, 0)), "zipped");
        kiln__celery_msg_free(&m);
    }
}

static void
test_compression_refused(void **state)
{
    static const char *const others[] = {"application/x-bz2",    "bzip2",
                                         "application/x-lzma",   "xz",
                                         "application/x-brotli", "application/zstd"};
    json_t *env;
    char words[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        env = good_envelope();
        set_header(env, "compression", json_string(others[i]));
        snprintf(words, sizeof(words), "headers.compression %s is not supported", others[i]);
        expect_refused(env, -EPROTO, words);
    }
    env = good_envelope();
    set_header(env, "compression", json_integer(1));
    expect_refused(env, -EPROTO, "headers.compression is an integer, expected a string");
}

static void
test_compression_corrupt_truncated_trailing(void **state)
{
    static const char plain[] = "[[1], {}, {}]";
    unsigned char *z, buf[256];
    size_t zlen;
    char *body;
    json_t *env;

    (void)state;
    z = deflate_buf(plain, strlen(plain), 15, &zlen);
    /* Truncated: the last 6 bytes missing. */
    body = b64(z, zlen - 6);
    env = good_envelope();
    json_object_set_new(env, "body", json_string(body));
    set_header(env, "compression", json_string("application/x-gzip"));
    expect_refused(env, -EPROTO, "compressed data is truncated");
    free(body);
    /* Trailing bytes after the stream. */
    memcpy(buf, z, zlen);
    memcpy(buf + zlen, "junk", 4);
    body = b64(buf, zlen + 4);
    env = good_envelope();
    json_object_set_new(env, "body", json_string(body));
    set_header(env, "compression", json_string("gzip"));
    expect_refused(env, -EPROTO, "body has 4 bytes after the end of the compressed data");
    free(body);
    /* Corrupt: not zlib at all. */
    body = b64((const unsigned char *)"this is not zlib data", 21);
    env = good_envelope();
    json_object_set_new(env, "body", json_string(body));
    set_header(env, "compression", json_string("zlib"));
    expect_refused(env, -EPROTO, "compressed data is corrupt");
    free(body);
    free(z);
}

/* A zlib stream of `total` zero bytes, made chunk by chunk. */
static unsigned char *
zeros_bomb(size_t total, size_t *outlen)
{
    static unsigned char zeros[1 << 16];
    z_stream zs;
    size_t cap = total / 500 + 4096, left = total;
    unsigned char *out = malloc(cap);

    assert_non_null(out);
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit(&zs, 9), Z_OK);
    zs.next_out = out;
    zs.avail_out = (unsigned)cap;
    while (left) {
        size_t n = left < sizeof(zeros) ? left : sizeof(zeros);

        zs.next_in = zeros;
        zs.avail_in = (unsigned)n;
        left -= n;
        assert_int_not_equal(deflate(&zs, left ? Z_NO_FLUSH : Z_FINISH), Z_STREAM_ERROR);
        assert_int_equal(zs.avail_in, 0);
    }
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *outlen = zs.total_out;
    deflateEnd(&zs);
    return out;
}

static void
test_zip_bomb_stops_at_max_body(void **state)
{
    size_t zlen;
    unsigned char *z = zeros_bomb((size_t)256 << 20, &zlen); /* 256 MiB of zeros */
    char *body = b64(z, zlen);
    json_t *env = good_envelope();
    char *text;
    pid_t pid;
    int status;

    (void)state;
    free(z);
    json_object_set_new(env, "body", json_string(body));
    set_header(env, "compression", json_string("application/x-gzip"));
    free(body);
    text = json_dumps(env, 0);
    json_decref(env);
    /* In a child with 64 MiB more address space than it has now: inflating
     * the whole bomb would need 256 MiB and fail with ENOMEM, not E2BIG.
     * (ASan reserves terabytes of address space: no limit there.) */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kiln__task_msg_t m;
        char err[256];
        int rc;
#ifndef KILN_SANITIZED
        struct rlimit rl;
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;

        if (f && fscanf(f, "%lu", &pages) == 1) {
            rl.rlim_cur = rl.rlim_max = pages * (unsigned long)sysconf(_SC_PAGESIZE) + (64ul << 20);
            setrlimit(RLIMIT_AS, &rl);
        }
        if (f)
            fclose(f);
#endif
        rc = kiln__celery_decode(text, strlen(text), MAX_BODY, &m, err, sizeof(err));
        if (rc != -E2BIG || !strstr(err, "body decompresses to more than max_body 1048576 bytes") ||
            strcmp(m.id, "11111111-2222-4333-8444-555555555555") != 0) {
            fprintf(stderr, "zip bomb: rc %d: %s\n", rc, err);
            _exit(1);
        }
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    free(text);
}

static void
test_max_body_bounds(void **state)
{
    kiln__task_msg_t m;
    char err[256], big[4096];
    json_t *env;
    size_t plain_len;
    unsigned char *z;
    size_t zlen;
    char *body;

    (void)state;
    /* A body of exactly max_body decodes; one byte less max_body refuses. */
    memset(big, ' ', sizeof(big));
    memcpy(big, "[[], {}, {}]", 12);
    plain_len = 3000;
    big[plain_len] = '\0';
    assert_int_equal(decode_env(envelope_with_body(big), plain_len, &m, err, sizeof(err)), 0);
    kiln__celery_msg_free(&m);
    assert_int_equal(decode_env(envelope_with_body(big), plain_len - 1, &m, err, sizeof(err)),
                     -E2BIG);
    assert_contains(err, "over max_body 2999");
    assert_string_equal(m.id, "11111111-2222-4333-8444-555555555555");
    assert_string_equal(m.task, "proj.add");
    /* A large base64 body is refused before it is decoded. */
    assert_int_equal(decode_env(envelope_with_body(big), 100, &m, err, sizeof(err)), -E2BIG);
    assert_contains(err, "after base64, over max_body 100");
    /* Compressed: the bound is on the decompressed size. */
    z = deflate_buf(big, plain_len, 15, &zlen);
    body = b64(z, zlen);
    free(z);
    env = good_envelope();
    json_object_set_new(env, "body", json_string(body));
    set_header(env, "compression", json_string("zlib"));
    assert_int_equal(decode_env(json_deep_copy(env), plain_len, &m, err, sizeof(err)), 0);
    kiln__celery_msg_free(&m);
    assert_int_equal(decode_env(env, plain_len - 1, &m, err, sizeof(err)), -E2BIG);
    assert_contains(err, "body decompresses to more than max_body 2999 bytes");
    free(body);
}

/* ------------------------------------------------- refused: not JSON */

static void
test_non_json_content_types_never_decoded(void **state)
{
    static const char *const types[] = {"application/x-python-serialize", "application/x-yaml",
                                        "application/x-msgpack", "application/data", "text/plain"};
    kiln__task_msg_t m;
    char err[256], words[160];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        /* The body is not even base64: refusing must come first. */
        json_t *env = good_envelope();

        json_object_set_new(env, "content-type", json_string(types[i]));
        json_object_set_new(env, "body", json_string("gASV not base64 !!!"));
        assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), -EMEDIUMTYPE);
        snprintf(words, sizeof(words), "content type %s is not JSON; not deserialized", types[i]);
        assert_string_equal(err, words);
        /* What the dead-letter record needs. */
        assert_string_equal(m.id, "11111111-2222-4333-8444-555555555555");
        assert_string_equal(m.task, "proj.add");
        assert_null(m.envelope);
    }
}

static void
test_content_type_and_encodings(void **state)
{
    json_t *env;

    (void)state;
    env = good_envelope();
    json_object_del(env, "content-type");
    expect_refused(env, -EMEDIUMTYPE, "content-type is missing; not deserialized");
    env = good_envelope();
    json_object_set_new(env, "content-type", json_integer(3));
    expect_refused(env, -EPROTO, "content-type is an integer, expected a string");
    env = good_envelope();
    json_object_set_new(env, "content-encoding", json_string("binary"));
    expect_refused(env, -EMEDIUMTYPE, "content-encoding binary is not utf-8");
    env = good_envelope();
    json_object_set_new(env, "content-encoding", json_true());
    expect_refused(env, -EPROTO, "content-encoding is a boolean, expected a string");
    env = good_envelope();
    set_prop(env, "body_encoding", json_string("hex"));
    expect_refused(env, -EMEDIUMTYPE, "properties.body_encoding hex is not base64");
    env = good_envelope();
    set_prop(env, "body_encoding", json_integer(64));
    expect_refused(env, -EPROTO, "properties.body_encoding is an integer, expected a string");
}

static void
test_plain_body_without_body_encoding(void **state)
{
    kiln__task_msg_t m;
    char err[256];
    json_t *env = good_envelope();

    (void)state;
    /* kombu passes the body through when there is no body_encoding. */
    json_object_del(props(env), "body_encoding");
    json_object_set_new(env, "body", json_string("[[5], {}, null]"));
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_int_equal(json_integer_value(json_array_get(m.args, 0)), 5);
    assert_null(m.embed);
    kiln__celery_msg_free(&m);
    env = good_envelope();
    json_object_set_new(env, "content-encoding", json_string("UTF-8"));
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    kiln__celery_msg_free(&m);
}

/* ---------------------------------------------- refused: the envelope */

static void
test_envelope_malformed(void **state)
{
    kiln__task_msg_t m;
    char err[256];
    json_t *env;

    (void)state;
    assert_int_equal(kiln__celery_decode("{\"body\": ", 9, MAX_BODY, &m, err, sizeof(err)),
                     -EPROTO);
    assert_contains(err, "message is not valid JSON");
    assert_int_equal(kiln__celery_decode("", 0, MAX_BODY, &m, err, sizeof(err)), -EPROTO);
    assert_contains(err, "message is not valid JSON");
    assert_int_equal(kiln__celery_decode("[1, 2]", 6, MAX_BODY, &m, err, sizeof(err)), -EPROTO);
    assert_contains(err, "message is an array, expected a JSON object");
    assert_int_equal(kiln__celery_decode("\"x\"", 3, MAX_BODY, &m, err, sizeof(err)), -EPROTO);
    assert_contains(err, "message is a string, expected a JSON object");
    assert_int_equal(kiln__celery_decode(NULL, 0, MAX_BODY, &m, err, sizeof(err)), -EPROTO);
    assert_int_equal(kiln__celery_decode("{\"a\": 1}\0{}", 11, MAX_BODY, &m, err, sizeof(err)),
                     -EPROTO);
    /* An integer beyond 64 bits is invalid JSON for jansson. */
    env = good_envelope();
    {
        char *text = json_dumps(env, 0), *p = strstr(text, "\"retries\": 0");
        char *bad = malloc(strlen(text) + 64);

        json_decref(env);
        memcpy(bad, text, (size_t)(p - text));
        sprintf(bad + (p - text), "\"retries\": 99999999999999999999999%s", p + 12);
        assert_int_equal(kiln__celery_decode(bad, strlen(bad), MAX_BODY, &m, err, sizeof(err)),
                         -EPROTO);
        assert_contains(err, "message is not valid JSON");
        free(bad);
        free(text);
    }

    env = good_envelope();
    set_header(env, "dummy", json_null());
    json_object_set_new(env, "headers", json_string("h"));
    expect_refused(env, -EPROTO, "headers is a string, expected an object");
    env = good_envelope();
    json_object_del(env, "properties");
    expect_refused(env, -EPROTO, "properties is missing");
    env = good_envelope();
    json_object_set_new(env, "properties", json_array());
    expect_refused(env, -EPROTO, "properties is an array, expected an object");
    env = good_envelope();
    json_object_del(env, "headers");
    expect_refused(env, -EPROTO, "headers is missing");
}

static void
test_body_malformed(void **state)
{
    json_t *env;

    (void)state;
    env = good_envelope();
    json_object_del(env, "body");
    expect_refused(env, -EPROTO, "body is missing");
    env = good_envelope();
    json_object_set_new(env, "body", json_integer(12));
    expect_refused(env, -EPROTO, "body is an integer, expected a string");
    env = good_envelope();
    json_object_set_new(env, "body", json_string(""));
    expect_refused(env, -EPROTO, "body is empty");
    expect_refused_body("[[1], {}", -EPROTO, "body is not valid JSON");
    expect_refused_body("[[1], {}, {}] trailing", -EPROTO, "body is not valid JSON");
    expect_refused_body("\"just a string\"", -EPROTO,
                        "body is a string, expected an array [args, kwargs, embed]");
    expect_refused_body("[[1], {}]", -EPROTO, "body has 2 items, expected 3 [args, kwargs, embed]");
    expect_refused_body("[[1], {}, {}, {}]", -EPROTO, "body has 4 items, expected 3");
    expect_refused_body("[{}, {}, {}]", -EPROTO, "body[0] (args) is an object, expected an array");
    expect_refused_body("[\"1,2\", {}, {}]", -EPROTO,
                        "body[0] (args) is a string, expected an array");
    expect_refused_body("[[], [], {}]", -EPROTO,
                        "body[1] (kwargs) is an array, expected an object");
    expect_refused_body("[[], null, {}]", -EPROTO, "body[1] (kwargs) is null, expected an object");
    expect_refused_body("[[], {}, \"x\"]", -EPROTO,
                        "body[2] (embed) is a string, expected an object or null");
    expect_refused_body("[[\"a\\u0000b\"], {}, {}]", -EPROTO, "body is not valid JSON");
}

static void
test_protocol_1_refused(void **state)
{
    kiln__task_msg_t m;
    char err[256];
    json_t *env;

    (void)state;
    /* Protocol 1: the task fields live in the body, headers are empty. */
    env = envelope_with_body("{\"task\": \"old.task\", \"id\": \"old-id\", \"args\": [1], "
                             "\"kwargs\": {}, \"retries\": 0, \"eta\": null}");
    json_object_set_new(env, "headers", json_object());
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), -EPROTO);
    assert_contains(err, "message protocol 1 is not supported");
    assert_string_equal(m.id, "old-id");
    assert_string_equal(m.task, "old.task");
    assert_null(m.envelope);
    /* The same with no headers at all. */
    env = envelope_with_body("{\"task\": \"old.task\", \"id\": \"old-id\", \"args\": []}");
    json_object_del(env, "headers");
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), -EPROTO);
    assert_contains(err, "message protocol 1 is not supported");
    assert_string_equal(m.id, "old-id");
}

static void
test_base64_strict(void **state)
{
    static const struct {
        const char *body, *words;
    } cases[] = {
        {"W1tdLCB7fSwge31d!", "body is not valid base64 at offset 16: length 17"},
        {"W1tdLCB7fSwge!1d", "body is not valid base64 at offset 13: character 0x21"},
        {"W1tdLCB7fSwge 1d", "body is not valid base64 at offset 13: character 0x20"},
        {"W1td\nCB7fSwge31d", "body is not valid base64 at offset 4: character 0x0a"},
        {"W1tdLCB7fSwge3-d", "body is not valid base64 at offset 14: character 0x2d"},
        {"W1tdLCB7fSwge3_d", "body is not valid base64 at offset 14: character 0x5f"},
        {"W1td=CB7fSwge31d", "body is not valid base64 at offset 4: padding '=' before the end"},
        {"W1tdLCB7fSwg===", "length 15 is not a multiple of 4"},
        {"W1tdLCB7fSw=e31d", "at offset 11: padding '=' before the end"},
        {"W1tdLCB7fS===", "not a multiple of 4"},
        {"W1tdLCB7f===", "at offset 9: padding '=' before the end"},
        {"====", "at offset 0: padding '=' before the end"},
        {"W1tdLCB7fSwge31d\xc3\xa9", "body is not valid base64 at offset 16"},
        {"AA==", "body is not valid JSON"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *env = good_envelope();

        json_object_set_new(env, "body", json_string(cases[i].body));
        expect_refused(env, -EPROTO, cases[i].words);
    }
}

static void
test_base64_padding_forms(void **state)
{
    /* "[[], {}, {}]" is 12 bytes (no padding); with 1 or 2 more spaces it
     * needs "=" and "==". */
    static const char *const bodies[] = {"[[], {}, {}]", "[[], {}, {}] ", "[[], {}, {}]  ",
                                         "[[], {}, {}]   "};
    kiln__task_msg_t m;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < 4; i++) {
        assert_int_equal(decode_env(envelope_with_body(bodies[i]), MAX_BODY, &m, err, sizeof(err)),
                         0);
        assert_int_equal(json_array_size(m.args), 0);
        kiln__celery_msg_free(&m);
    }
}

/* --------------------------------------------- refused: header fields */

static void
test_ids_malformed(void **state)
{
    kiln__task_msg_t m;
    char err[256], long_id[200];
    json_t *env;

    (void)state;
    env = good_envelope();
    json_object_del(headers(env), "id");
    expect_refused(env, -EPROTO, "headers.id is missing");
    env = good_envelope();
    set_header(env, "id", json_string(""));
    expect_refused(env, -EPROTO, "headers.id is empty");
    env = good_envelope();
    set_header(env, "id", json_integer(5));
    expect_refused(env, -EPROTO, "headers.id is an integer, expected a string");
    env = good_envelope();
    set_header(env, "id", json_null());
    expect_refused(env, -EPROTO, "headers.id is missing");
    env = good_envelope();
    json_object_del(headers(env), "task");
    set_header(env, "task", json_null());
    expect_refused(env, -EPROTO, "headers.task is missing");
    env = good_envelope();
    json_object_del(headers(env), "task");
    /* No task and an array body: protocol 2 with a field missing. */
    expect_refused(env, -EPROTO, "headers.task is missing");
    env = good_envelope();
    set_header(env, "task", json_array());
    expect_refused(env, -EPROTO, "headers.task is an array, expected a string");

    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    env = good_envelope();
    set_header(env, "id", json_string(long_id));
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), -EPROTO);
    assert_contains(err, "headers.id is 199 bytes, longer than 159");
    assert_string_equal(m.id, "");
    assert_string_equal(m.task, "proj.add"); /* still read */
    long_id[159] = '\0';
    env = good_envelope();
    set_header(env, "id", json_string(long_id));
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_string_equal(m.id, long_id);
    kiln__celery_msg_free(&m);
    env = good_envelope();
    set_header(env, "root_id", json_integer(1));
    expect_refused(env, -EPROTO, "headers.root_id is an integer, expected a string");
    env = good_envelope();
    set_header(env, "parent_id", json_object());
    expect_refused(env, -EPROTO, "headers.parent_id is an object, expected a string");
    env = good_envelope();
    set_header(env, "group", json_real(1.5));
    expect_refused(env, -EPROTO, "headers.group is a real, expected a string");
}

static void
test_retries(void **state)
{
    kiln__task_msg_t m;
    char err[256];
    json_t *env;

    (void)state;
    env = good_envelope();
    set_header(env, "retries", json_string("3"));
    expect_refused(env, -EPROTO, "headers.retries is a string, expected an integer");
    env = good_envelope();
    set_header(env, "retries", json_real(1.0));
    expect_refused(env, -EPROTO, "headers.retries is a real, expected an integer");
    env = good_envelope();
    set_header(env, "retries", json_true());
    expect_refused(env, -EPROTO, "headers.retries is a boolean, expected an integer");
    env = good_envelope();
    set_header(env, "retries", json_integer(-1));
    expect_refused(env, -EPROTO, "headers.retries is -1, expected 0 to 2147483647");
    env = good_envelope();
    set_header(env, "retries", json_integer(INT64_MAX));
    expect_refused(env, -EPROTO, "headers.retries is 9223372036854775807, expected 0 to");
    env = good_envelope();
    set_header(env, "retries", json_integer(INT64_MIN));
    expect_refused(env, -EPROTO, "headers.retries is -9223372036854775808");
    env = good_envelope();
    set_header(env, "retries", json_integer(2147483647));
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_int_equal(m.retries, 2147483647);
    /* The largest count cannot be bumped by a retry. */
    assert_null(kiln__celery_retry_message(&m, 1));
    kiln__celery_msg_free(&m);
    env = good_envelope();
    set_header(env, "retries", json_null());
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_int_equal(m.retries, 0);
    kiln__celery_msg_free(&m);
    env = good_envelope();
    json_object_del(headers(env), "retries");
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_int_equal(m.retries, 0);
    kiln__celery_msg_free(&m);
}

static void
test_eta_expires_fields(void **state)
{
    kiln__task_msg_t m;
    char err[256];
    json_t *env;

    (void)state;
    env = good_envelope();
    set_header(env, "eta", json_string("tomorrow"));
    expect_refused(env, -EPROTO, "headers.eta \"tomorrow\" is not an ISO 8601 time");
    env = good_envelope();
    set_header(env, "eta", json_integer(1700000000));
    expect_refused(env, -EPROTO, "headers.eta is an integer, expected an ISO 8601 string or null");
    env = good_envelope();
    set_header(env, "expires", json_string("2026-13-01T00:00:00"));
    expect_refused(env, -EPROTO, "headers.expires \"2026-13-01T00:00:00\" is not an ISO 8601");
    env = good_envelope();
    set_header(env, "expires", json_real(1.5));
    expect_refused(env, -EPROTO, "headers.expires is a real");
    env = good_envelope();
    set_header(env, "eta", json_string("2026-11-24T06:50:00"));
    set_header(env, "expires", json_string("2026-11-24T07:50:00.5-01:00"));
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_true(m.eta == 1795503000.0);
    assert_true(m.expires == 1795503000.0 + 2 * 3600 + 0.5);
    kiln__celery_msg_free(&m);
}

static void
test_timelimit_field(void **state)
{
    kiln__task_msg_t m;
    char err[256];
    json_t *env;

    (void)state;
    env = good_envelope();
    set_header(env, "timelimit", json_string("30"));
    expect_refused(env, -EPROTO, "headers.timelimit is a string, expected an array [hard, soft]");
    env = good_envelope();
    set_header(env, "timelimit", json_pack("[i]", 30));
    expect_refused(env, -EPROTO, "headers.timelimit has 1 items, expected 2 [hard, soft]");
    env = good_envelope();
    set_header(env, "timelimit", json_pack("[i, i, i]", 1, 2, 3));
    expect_refused(env, -EPROTO, "headers.timelimit has 3 items");
    env = good_envelope();
    set_header(env, "timelimit", json_pack("[i, s]", 30, "x"));
    expect_refused(env, -EPROTO, "headers.timelimit[1] is a string, expected a number or null");
    env = good_envelope();
    set_header(env, "timelimit", json_pack("[b, n]", 1));
    expect_refused(env, -EPROTO, "headers.timelimit[0] is a boolean");
    env = good_envelope();
    set_header(env, "timelimit", json_pack("[i, n]", -1));
    expect_refused(env, -EPROTO, "headers.timelimit[0] is -1, expected >= 0");
    env = good_envelope();
    set_header(env, "timelimit", json_pack("[n, f]", 2.5));
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_true(m.time_limit == 0 && m.soft_time_limit == 2.5);
    kiln__celery_msg_free(&m);
    env = good_envelope();
    set_header(env, "timelimit", json_null());
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_true(m.time_limit == 0 && m.soft_time_limit == 0);
    kiln__celery_msg_free(&m);
}

static void
test_properties_fields(void **state)
{
    static const struct {
        json_int_t in;
        int out;
    } prios[] = {{0, 0}, {5, 5}, {9, 9}, {10, 9}, {255, 9}, {-3, 0}, {INT64_MAX, 9}};
    kiln__task_msg_t m;
    char err[256], long_key[300];
    json_t *env;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(prios) / sizeof(prios[0]); i++) {
        env = good_envelope();
        set_prop(env, "priority", json_integer(prios[i].in));
        assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
        assert_int_equal(m.priority, prios[i].out);
        kiln__celery_msg_free(&m);
    }
    env = good_envelope();
    json_object_del(props(env), "priority");
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_int_equal(m.priority, -1);
    kiln__celery_msg_free(&m);
    env = good_envelope();
    set_prop(env, "priority", json_string("5"));
    expect_refused(env, -EPROTO, "properties.priority is a string, expected an integer");
    env = good_envelope();
    set_prop(env, "delivery_info", json_string("celery"));
    expect_refused(env, -EPROTO, "properties.delivery_info is a string, expected an object");
    env = good_envelope();
    json_object_set_new(json_object_get(props(env), "delivery_info"), "routing_key",
                        json_integer(1));
    expect_refused(env, -EPROTO,
                   "properties.delivery_info.routing_key is an integer, expected a string");
    memset(long_key, 'q', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    env = good_envelope();
    json_object_set_new(json_object_get(props(env), "delivery_info"), "exchange",
                        json_string(long_key));
    expect_refused(env, -EPROTO, "properties.delivery_info.exchange is 299 bytes, longer than 255");
    env = good_envelope();
    set_prop(env, "reply_to", json_false());
    expect_refused(env, -EPROTO, "properties.reply_to is a boolean, expected a string");
    env = good_envelope();
    json_object_del(props(env), "delivery_info");
    assert_int_equal(decode_env(env, MAX_BODY, &m, err, sizeof(err)), 0);
    assert_string_equal(m.routing_key, "");
    kiln__celery_msg_free(&m);
}

/* ------------------------------------------------------ queue, time, uuid */

static void
test_queue_key_priority_steps(void **state)
{
    static const struct {
        int prio;
        const char *key;
    } cases[] = {
        {-1, "q"},
        {-100, "q"},
        {0, "q"},
        {1, "q"},
        {2, "q"},
        {3, "q\x06\x16"
            "3"},
        {4, "q\x06\x16"
            "3"},
        {5, "q\x06\x16"
            "3"},
        {6, "q\x06\x16"
            "6"},
        {8, "q\x06\x16"
            "6"},
        {9, "q\x06\x16"
            "9"},
        {10, "q\x06\x16"
             "9"},
        {255, "q\x06\x16"
              "9"},
        {2147483647, "q\x06\x16"
                     "9"},
    };
    char buf[64], small[3];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(kiln__celery_queue_key("q", cases[i].prio, buf, sizeof(buf)),
                            cases[i].key);
    assert_string_equal(kiln__celery_queue_key("celery", 9, buf, sizeof(buf)),
                        "celery" KILN__CELERY_PRIORITY_SEP "9");
    /* Truncated, never overrun. */
    assert_ptr_equal(kiln__celery_queue_key("celery", 9, small, sizeof(small)), small);
    assert_string_equal(small, "ce");
}

static void
test_parse_time_forms(void **state)
{
    static const struct {
        const char *iso;
        double epoch;
    } good[] = {
        {"1970-01-01T00:00:00", 0},
        {"1970-01-01T00:00:00+00:00", 0},
        {"1970-01-01T00:00:00Z", 0},
        {"2026-11-24T06:50:00.123456+00:00", 1795503000.123456},
        {"2026-11-24T06:50:00.123456", 1795503000.123456},
        {"2026-11-24T06:50:00.123456Z", 1795503000.123456},
        {"2026-11-24T06:50:00", 1795503000},
        {"2026-11-24 06:50:00", 1795503000},
        {"2026-11-24T06:50", 1795503000},
        {"2026-11-24", 1795478400},
        {"2026-11-24T06:50:00.5", 1795503000.5},
        {"2026-11-24T06:50:00.000000001", 1795503000.000000001},
        {"2026-11-24T12:20:00+05:30", 1795503000},
        {"2026-11-23T22:50:00-08:00", 1795503000},
        {"2026-11-24T12:20:00+0530", 1795503000},
        {"2026-11-24T06:50:30+00:00:30", 1795503000},
        {"2024-02-29T00:00:00", 1709164800},
        {"2000-02-29T00:00:00", 951782400},
        {"1969-12-31T23:59:59.5", -0.5},
        {"0001-01-01T00:00:00", -62135596800.0},
        {"9999-12-31T23:59:59.999999", 253402300799.999999},
    };
    static const char *const bad[] = {
        "",
        "2026",
        "2026-11",
        "2026-11-24T",
        "2026-11-24T06",
        "2026-11-24T06:5",
        "2026-11-24T06:50:0",
        "2026-11-24T06:50:00.",
        "2026-11-24T06:50:00.1234567890",
        "2026-11-24T06:50:00+00",
        "2026-11-24T06:50:00+0:00",
        "2026-11-24T06:50:00+24:00",
        "2026-11-24T06:50:00 ",
        " 2026-11-24T06:50:00",
        "2026-11-24T06:50:00junk",
        "2026-11-24T24:00:00",
        "2026-11-24T23:60:00",
        "2026-11-24T23:59:60",
        "2026-13-01T00:00:00",
        "2026-00-01T00:00:00",
        "2026-11-00T00:00:00",
        "2026-11-31T00:00:00",
        "2023-02-29T00:00:00",
        "1900-02-29T00:00:00",
        "0000-01-01T00:00:00",
        "2026/11/24T06:50:00",
        "26-11-24T06:50:00",
        "2026-1-24T06:50:00",
        "+2026-11-24T06:50:00",
        "2026-11-24X06:50:00",
        "1795503000",
    };
    double t;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        t = -1;
        if (kiln__celery_parse_time(good[i].iso, &t) != 0)
            fail_msg("\"%s\" refused", good[i].iso);
        if (fabs(t - good[i].epoch) > 1e-6)
            fail_msg("\"%s\" -> %.6f, expected %.6f", good[i].iso, t, good[i].epoch);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (kiln__celery_parse_time(bad[i], &t) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
    assert_int_equal(kiln__celery_parse_time(NULL, &t), -EINVAL);
    assert_int_equal(kiln__celery_parse_time("2026-11-24", NULL), -EINVAL);
}

static void
test_format_time(void **state)
{
    static const struct {
        double epoch;
        const char *iso;
    } cases[] = {
        {0, "1970-01-01T00:00:00+00:00"},
        {1795503000, "2026-11-24T06:50:00+00:00"},
        {1795503000.123456, "2026-11-24T06:50:00.123456+00:00"},
        {1795503000.5, "2026-11-24T06:50:00.500000+00:00"},
        {1795503000.9999996, "2026-11-24T06:50:01+00:00"},
        {-1.5, "1969-12-31T23:59:58.500000+00:00"},
        {951782400, "2000-02-29T00:00:00+00:00"},
        {-62135596800.0, "0001-01-01T00:00:00+00:00"},
        {253402300799.0, "9999-12-31T23:59:59+00:00"},
    };
    char buf[64], tiny[8];
    double t;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln__celery_format_time(cases[i].epoch, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].iso);
    }
    /* Out of datetime's range, or not a number: empty. */
    kiln__celery_format_time(253402300800.0, buf, sizeof(buf));
    assert_string_equal(buf, "");
    kiln__celery_format_time(NAN, buf, sizeof(buf));
    assert_string_equal(buf, "");
    kiln__celery_format_time(INFINITY, buf, sizeof(buf));
    assert_string_equal(buf, "");
    kiln__celery_format_time(1795503000, tiny, sizeof(tiny));
    assert_string_equal(tiny, "2026-11");
    /* Round trips over four centuries, at microsecond precision. */
    for (i = 0; i < 20000; i++) {
        double e = -2e9 + (double)i * 2.2e5 + (double)(i % 1000000) / 1e6;

        kiln__celery_format_time(e, buf, sizeof(buf));
        assert_int_equal(kiln__celery_parse_time(buf, &t), 0);
        if (fabs(t - e) > 1e-6)
            fail_msg("%.6f -> %s -> %.6f", e, buf, t);
    }
}

static void
test_uuid4(void **state)
{
    char a[37], b[37], small[10];
    int i;

    (void)state;
    kiln__celery_uuid(a, sizeof(a));
    kiln__celery_uuid(b, sizeof(b));
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    kiln__celery_uuid(small, sizeof(small));
    assert_int_equal(strlen(small), 9);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_real_priority_message),
        cmocka_unit_test(test_decode_real_gzip_message),
        cmocka_unit_test(test_encode_decode_roundtrip),
        cmocka_unit_test(test_encode_envelope_like_celery),
        cmocka_unit_test(test_encode_expires_sets_expiration),
        cmocka_unit_test(test_encode_argsrepr_like_saferepr),
        cmocka_unit_test(test_encode_escapes_like_python),
        cmocka_unit_test(test_encode_long_argsrepr_is_cut),
        cmocka_unit_test(test_encode_refuses_bad_spec),
        cmocka_unit_test(test_retry_message_bumps_retries_and_eta),
        cmocka_unit_test(test_fast_path_matches_slow),
        cmocka_unit_test(test_result_success_meta),
        cmocka_unit_test(test_result_states_and_ids),
        cmocka_unit_test(test_exc_modules),
        cmocka_unit_test(test_compression_zlib_and_gzip),
        cmocka_unit_test(test_compression_refused),
        cmocka_unit_test(test_compression_corrupt_truncated_trailing),
        cmocka_unit_test(test_zip_bomb_stops_at_max_body),
        cmocka_unit_test(test_max_body_bounds),
        cmocka_unit_test(test_non_json_content_types_never_decoded),
        cmocka_unit_test(test_content_type_and_encodings),
        cmocka_unit_test(test_plain_body_without_body_encoding),
        cmocka_unit_test(test_envelope_malformed),
        cmocka_unit_test(test_body_malformed),
        cmocka_unit_test(test_protocol_1_refused),
        cmocka_unit_test(test_base64_strict),
        cmocka_unit_test(test_base64_padding_forms),
        cmocka_unit_test(test_ids_malformed),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_eta_expires_fields),
        cmocka_unit_test(test_timelimit_field),
        cmocka_unit_test(test_properties_fields),
        cmocka_unit_test(test_queue_key_priority_steps),
        cmocka_unit_test(test_parse_time_forms),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_uuid4),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
