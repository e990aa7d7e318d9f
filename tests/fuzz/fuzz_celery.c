/*
 * fuzz_celery -- the Celery message reader (runtime/celery.c) against
 * arbitrary bytes from the broker, and what kiln writes from what it read.
 *
 * Input: byte 0 picks max_body (bit 0-1: 0, 64, 4096 or 1 MiB), the rest is
 * the raw message (also tried as an ISO 8601 time).
 *
 * Checks, beyond ASan/UBSan: a refusal has a code among -EPROTO,
 * -EMEDIUMTYPE, -E2BIG, -ENOMEM, a message, and owns nothing; an accepted
 * message has an id, a task, args and kwargs of the right types and a sane
 * retry count; its retry message, re-encoding and result meta decode again
 * to the same id, args and kwargs; a parsed time formats and parses back.
 * The decoder's fast path (celery_scan.c) and its slow path (jansson on the
 * whole message) agree on every input: same code, same message, same fields;
 * the args and kwargs text it keeps for the TASK frame parses to the same,
 * and the scanner alone on the raw bytes builds what jansson does.
 */
#include "celery.h"
#include "celery_int.h" /* kiln__celery_scan_value */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void
check_written(const kiln__task_msg_t *m)
{
    kiln__celery_new_t spec = {0};
    kiln__task_msg_t again;
    char err[512], id[sizeof(m->id)], *text;
    json_t *meta;

    /* The retry keeps everything but retries, eta and the delivery tag. */
    text = kiln__celery_retry_message(m, 1800000000.5);
    if (text) {
        CHECK(kiln__celery_decode(text, strlen(text), 64u << 20, &again, err, sizeof(err)) == 0);
        CHECK(!strcmp(again.id, m->id) && !strcmp(again.task, m->task));
        CHECK(again.retries == m->retries + 1);
        CHECK(json_equal(again.args, m->args) && json_equal(again.kwargs, m->kwargs));
        kiln__celery_msg_free(&again);
        free(text);
    }
    /* Re-encoding what was read. */
    spec.task = m->task;
    spec.id = m->id;
    spec.args = m->args;
    spec.kwargs = m->kwargs;
    spec.embed = m->embed;
    spec.queue = m->routing_key[0] ? m->routing_key : "celery";
    spec.priority = m->priority;
    spec.retries = m->retries;
    spec.eta = m->eta;
    spec.expires = m->expires;
    spec.soft_time_limit = m->soft_time_limit;
    spec.time_limit = m->time_limit;
    spec.root_id = m->root_id;
    spec.parent_id = m->parent_id;
    spec.group = m->group;
    spec.origin = "kiln@fuzz";
    text = kiln__celery_encode(&spec, id, sizeof(id));
    if (text) {
        CHECK(!strcmp(id, m->id));
        CHECK(kiln__celery_decode(text, strlen(text), 64u << 20, &again, err, sizeof(err)) == 0);
        CHECK(!strcmp(again.id, m->id) && !strcmp(again.task, m->task));
        CHECK(json_equal(again.args, m->args) && json_equal(again.kwargs, m->kwargs));
        CHECK(again.retries == m->retries);
        kiln__celery_msg_free(&again);
        free(text);
    }
    /* A result meta of the args, with the message's ids. */
    text = kiln__celery_result(m->id, "SUCCESS", m->args, NULL, m);
    if (text) {
        meta = json_loads(text, 0, NULL);
        CHECK(meta && json_equal(json_object_get(meta, "result"), m->args));
        CHECK(!strcmp(json_string_value(json_object_get(meta, "task_id")), m->id));
        json_decref(meta);
        free(text);
    }
}

static void
check_time(const char *s)
{
    char buf[64];
    double t, back;

    if (kiln__celery_parse_time(s, &t) != 0)
        return;
    CHECK(isfinite(t));
    kiln__celery_format_time(t, buf, sizeof(buf));
    if (!buf[0]) /* an offset moved it out of years 1..9999 */
        return;
    CHECK(kiln__celery_parse_time(buf, &back) == 0);
    /* Microseconds, within what a double holds at that distance from 1970. */
    CHECK(fabs(back - t) <= 1e-6 + fabs(t) * 1e-15);
}

/* The scanner on the raw bytes as one JSON text: whatever it builds,
 * jansson reads the same; the spans it gives are the first two items. */
static void
check_scan(const char *text, size_t n)
{
    size_t span[4];
    json_t *v = kiln__celery_scan_value(text, n, span), *j;

    if (!v)
        return;
    j = json_loadb(text, n, JSON_DECODE_ANY, NULL);
    CHECK(j && json_equal(v, j));
    if (json_is_array(v) && json_array_size(v) >= 2) {
        json_t *a = json_loadb(text + span[0], span[1], JSON_DECODE_ANY, NULL);
        json_t *k = json_loadb(text + span[2], span[3], JSON_DECODE_ANY, NULL);
        CHECK(a && k && json_equal(a, json_array_get(v, 0)) && json_equal(k, json_array_get(v, 1)));
        json_decref(a);
        json_decref(k);
    } else {
        CHECK(span[0] == 0 && span[1] == 0 && span[2] == 0 && span[3] == 0);
    }
    json_decref(v);
    json_decref(j);
}

static int
same_msg(const kiln__task_msg_t *a, const kiln__task_msg_t *b)
{
    return !strcmp(a->id, b->id) && !strcmp(a->task, b->task) && json_equal(a->args, b->args) &&
           json_equal(a->kwargs, b->kwargs) && (a->embed == NULL) == (b->embed == NULL) &&
           (!a->embed || json_equal(a->embed, b->embed)) && a->retries == b->retries &&
           a->eta == b->eta && a->expires == b->expires &&
           a->soft_time_limit == b->soft_time_limit && a->time_limit == b->time_limit &&
           !strcmp(a->root_id, b->root_id) && !strcmp(a->parent_id, b->parent_id) &&
           !strcmp(a->group, b->group) && a->priority == b->priority &&
           !strcmp(a->reply_to, b->reply_to) && !strcmp(a->routing_key, b->routing_key) &&
           !strcmp(a->exchange, b->exchange);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const size_t bodies[] = {0, 64, 4096, 1u << 20};
    kiln__task_msg_t m;
    char err[512], *copy;
    int rc;

    if (size < 1)
        return 0;
    err[0] = 'x';
    rc = kiln__celery_decode((const char *)data + 1, size - 1, bodies[data[0] & 3], &m, err,
                             sizeof(err));
    {
        kiln__task_msg_t slow;
        char serr[512];
        int src = kiln__celery_decode_slow((const char *)data + 1, size - 1, bodies[data[0] & 3],
                                           &slow, serr, sizeof(serr));
        CHECK(src == rc);
        CHECK(rc < 0 ? !strcmp(err, serr) && !strcmp(m.id, slow.id) : same_msg(&m, &slow));
        kiln__celery_msg_free(&slow);
    }
    if (rc < 0) {
        CHECK(rc == -EPROTO || rc == -EMEDIUMTYPE || rc == -E2BIG || rc == -ENOMEM);
        CHECK(err[0] != '\0' && strlen(err) < sizeof(err));
        CHECK(!m.envelope && !m.args && !m.kwargs && !m.embed && !m.body && !m.args_text);
        CHECK(strlen(m.id) < sizeof(m.id) && strlen(m.task) < sizeof(m.task));
    } else {
        CHECK(rc == 0);
        CHECK(m.id[0] && m.task[0]);
        CHECK(json_is_array(m.args) && json_is_object(m.kwargs));
        CHECK(!m.embed || json_is_object(m.embed));
        CHECK(m.retries >= 0 && m.priority >= -1 && m.priority <= 9);
        CHECK(m.time_limit >= 0 && m.soft_time_limit >= 0);
        /* The text the TASK frame copies is the same args and kwargs. */
        CHECK(!m.args_text == !m.kwargs_text);
        if (m.args_text) {
            json_t *a = json_loadb(m.args_text, m.args_len, JSON_DECODE_ANY, NULL);
            json_t *k = json_loadb(m.kwargs_text, m.kwargs_len, JSON_DECODE_ANY, NULL);
            CHECK(a && k && json_equal(a, m.args) && json_equal(k, m.kwargs));
            json_decref(a);
            json_decref(k);
        }
        check_written(&m);
        kiln__celery_msg_free(&m);
    }
    check_scan((const char *)data + 1, size - 1);
    copy = malloc(size);
    if (copy) {
        memcpy(copy, data + 1, size - 1);
        copy[size - 1] = '\0';
        check_time(copy);
        free(copy);
    }
    return 0;
}
