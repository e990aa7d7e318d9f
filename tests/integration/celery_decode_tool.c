/*
 * celery_decode_tool -- runtime/celery.c on the command line, for
 * test_celery_wire.py to set against the real Python Celery and kombu.
 *
 *   celery_decode_tool decode [MAX_BODY]  raw message on stdin -> decoded fields as JSON
 *   celery_decode_tool encode             spec JSON on stdin -> envelope
 *   celery_decode_tool retry EPOCH        raw message on stdin -> retry message
 *   celery_decode_tool result             {"task_id", "status", "result" | "exc_type" +
 *                                          "exc_message", "traceback", "parent_id", "group"}
 *                                          on stdin -> result meta
 *   celery_decode_tool queue-key QUEUE PRIORITY
 *   celery_decode_tool time-parse ISO | time-format EPOCH
 *
 * Exit 0 when the output was written (decode reports its rc in the JSON),
 * 1 on an error, 2 on bad usage.
 */
#include "celery.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STDIN_MAX (256u << 20)

static char *
read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);

    while (buf) {
        size_t got;

        if (n == cap) {
            char *nb = cap >= STDIN_MAX ? NULL : realloc(buf, cap * 2 + 1);

            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0)
            break;
    }
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static const char *
opt_str(json_t *spec, const char *key)
{
    return json_string_value(json_object_get(spec, key));
}

static double
opt_num(json_t *spec, const char *key)
{
    return json_number_value(json_object_get(spec, key));
}

static int
do_decode(size_t max_body)
{
    kiln__task_msg_t m;
    char err[512];
    size_t len;
    char *raw = read_stdin(&len);
    json_t *out;
    char *text;
    int rc;

    if (!raw)
        return 1;
    rc = kiln__celery_decode(raw, len, max_body, &m, err, sizeof(err));
    free(raw);
    out = json_pack("{s:i, s:s, s:s, s:s}", "rc", rc, "error", err, "id", m.id, "task", m.task);
    if (rc == 0) {
        json_object_set(out, "args", m.args);
        json_object_set(out, "kwargs", m.kwargs);
        json_object_set(out, "embed", m.embed ? m.embed : json_null());
        json_object_set_new(out, "retries", json_integer(m.retries));
        json_object_set_new(out, "eta", json_real(m.eta));
        json_object_set_new(out, "expires", json_real(m.expires));
        json_object_set_new(out, "soft_time_limit", json_real(m.soft_time_limit));
        json_object_set_new(out, "time_limit", json_real(m.time_limit));
        json_object_set_new(out, "root_id", json_string(m.root_id));
        json_object_set_new(out, "parent_id", json_string(m.parent_id));
        json_object_set_new(out, "group", json_string(m.group));
        json_object_set_new(out, "priority", json_integer(m.priority));
        json_object_set_new(out, "reply_to", json_string(m.reply_to));
        json_object_set_new(out, "routing_key", json_string(m.routing_key));
        json_object_set_new(out, "exchange", json_string(m.exchange));
    }
    text = json_dumps(out, JSON_ENSURE_ASCII);
    json_decref(out);
    kiln__celery_msg_free(&m);
    if (!text)
        return 1;
    puts(text);
    free(text);
    return 0;
}

static int
do_encode(void)
{
    kiln__celery_new_t spec;
    json_error_t je;
    json_t *in;
    char id[64], *env;
    size_t len;
    char *raw = read_stdin(&len);

    if (!raw)
        return 1;
    in = json_loadb(raw, len, 0, &je);
    free(raw);
    if (!json_is_object(in)) {
        fprintf(stderr, "celery_decode_tool: spec: %s\n", je.text);
        json_decref(in);
        return 1;
    }
    memset(&spec, 0, sizeof(spec));
    spec.task = opt_str(in, "task");
    spec.id = opt_str(in, "id");
    spec.args = json_object_get(in, "args");
    spec.kwargs = json_object_get(in, "kwargs");
    spec.embed = json_object_get(in, "embed");
    spec.queue = opt_str(in, "queue") ? opt_str(in, "queue") : "celery";
    spec.priority = json_object_get(in, "priority") ? (int)opt_num(in, "priority") : -1;
    spec.retries = (long)opt_num(in, "retries");
    spec.eta = opt_num(in, "eta");
    spec.expires = opt_num(in, "expires");
    spec.soft_time_limit = opt_num(in, "soft_time_limit");
    spec.time_limit = opt_num(in, "time_limit");
    spec.root_id = opt_str(in, "root_id");
    spec.parent_id = opt_str(in, "parent_id");
    spec.group = opt_str(in, "group");
    spec.origin = opt_str(in, "origin");
    env = kiln__celery_encode(&spec, id, sizeof(id));
    json_decref(in);
    if (!env) {
        fprintf(stderr, "celery_decode_tool: encode: %s\n", strerror(errno));
        return 1;
    }
    puts(env);
    free(env);
    return 0;
}

static int
do_retry(double eta)
{
    kiln__task_msg_t m;
    char err[512], *msg;
    size_t len;
    char *raw = read_stdin(&len);
    int rc;

    if (!raw)
        return 1;
    rc = kiln__celery_decode(raw, len, 64u << 20, &m, err, sizeof(err));
    free(raw);
    if (rc < 0) {
        fprintf(stderr, "celery_decode_tool: retry: %s\n", err);
        return 1;
    }
    msg = kiln__celery_retry_message(&m, eta);
    kiln__celery_msg_free(&m);
    if (!msg)
        return 1;
    puts(msg);
    free(msg);
    return 0;
}

static int
do_result(void)
{
    kiln__task_msg_t m;
    json_error_t je;
    json_t *in, *result;
    char *meta;
    size_t len;
    char *raw = read_stdin(&len);

    if (!raw)
        return 1;
    in = json_loadb(raw, len, 0, &je);
    free(raw);
    if (!json_is_object(in)) {
        json_decref(in);
        return 1;
    }
    memset(&m, 0, sizeof(m));
    snprintf(m.parent_id, sizeof(m.parent_id), "%s",
             opt_str(in, "parent_id") ? opt_str(in, "parent_id") : "");
    snprintf(m.group, sizeof(m.group), "%s", opt_str(in, "group") ? opt_str(in, "group") : "");
    if (opt_str(in, "exc_type"))
        result = kiln__celery_exc(opt_str(in, "exc_type"), opt_str(in, "exc_message"));
    else
        result = json_incref(json_object_get(in, "result"));
    meta = kiln__celery_result(opt_str(in, "task_id"), opt_str(in, "status"), result,
                               opt_str(in, "traceback"), &m);
    json_decref(result);
    json_decref(in);
    if (!meta)
        return 1;
    puts(meta);
    free(meta);
    return 0;
}

int
main(int argc, char **argv)
{
    char buf[512];
    double t;

    if (argc >= 2 && !strcmp(argv[1], "decode"))
        return do_decode(argc >= 3 ? strtoull(argv[2], NULL, 10) : (64u << 20));
    if (argc == 2 && !strcmp(argv[1], "encode"))
        return do_encode();
    if (argc == 3 && !strcmp(argv[1], "retry"))
        return do_retry(strtod(argv[2], NULL));
    if (argc == 2 && !strcmp(argv[1], "result"))
        return do_result();
    if (argc == 4 && !strcmp(argv[1], "queue-key")) {
        fputs(kiln__celery_queue_key(argv[2], atoi(argv[3]), buf, sizeof(buf)), stdout);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "time-parse")) {
        if (kiln__celery_parse_time(argv[2], &t) < 0)
            return 1;
        printf("%.6f\n", t);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "time-format")) {
        kiln__celery_format_time(strtod(argv[2], NULL), buf, sizeof(buf));
        puts(buf);
        return 0;
    }
    fprintf(stderr, "usage: celery_decode_tool decode [MAX_BODY] | encode | retry EPOCH | result | "
                    "queue-key QUEUE PRIORITY | time-parse ISO | time-format EPOCH\n");
    return 2;
}
