/*
 * test_task_frame.c -- TASK frames written by hand (args and kwargs as the
 * producer's text) and through jansson say the same to the child.
 */
#include "frame.h"
#include "task_frame.h"

/* cmocka.h needs these first. */
/* clang-format off */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

/* The payload of the frame at b->data + at, parsed, after checking its header. */
static json_t *
frame_at(const kiln__wbuf_t *b, size_t at, uint64_t seq)
{
    kiln__frame_hdr_t h;
    json_error_t je;
    json_t *v;

    kiln__frame_hdr_decode((const unsigned char *)b->data + at, &h);
    assert_int_equal(h.type, KILN__FRAME_TASK);
    assert_int_equal(h.task_id, seq);
    assert_true(at + KILN__FRAME_HDR + h.len <= b->len);
    v = json_loadb(b->data + at + KILN__FRAME_HDR, h.len, 0, &je);
    if (!v)
        fail_msg("payload is not JSON: %s", je.text);
    return v;
}

static void
job_init(kiln__job_t *job, const char *task, const char *id, const char *args, const char *kwargs)
{
    memset(job, 0, sizeof(*job));
    snprintf(job->task, sizeof(job->task), "%s", task);
    snprintf(job->id, sizeof(job->id), "%s", id);
    job->args = json_loads(args, 0, NULL);
    job->kwargs = json_loads(kwargs, 0, NULL);
    job->seq = 7;
}

/* Give the job its args and kwargs as text too (the message's bytes). */
static void
job_text(kiln__job_t *job, const char *args, const char *kwargs)
{
    job->args_text = args;
    job->args_len = strlen(args);
    job->kwargs_text = kwargs;
    job->kwargs_len = strlen(kwargs);
}

static void
job_clear(kiln__job_t *job)
{
    json_decref(job->args);
    json_decref(job->kwargs);
    json_decref(job->files);
}

/* Text and jansson give the same document (but for how whole limits are
 * written); frames append one after another. */
static void
test_text_equals_json(void **state)
{
    const char *args = "[1, \"two\", {\"x\": [3.5, null]}]", *kwargs = "{\"k\": true}";
    kiln__wbuf_t b = {0};
    kiln__job_t job;
    json_t *a, *c;
    size_t second;

    (void)state;
    job_init(&job, "hello.echo", "5f0c-id", args, kwargs);
    assert_int_equal(kiln__task_frame(&b, &job, 50, 60), 0); /* through jansson */
    second = b.len;
    job_text(&job, args, kwargs);
    job.seq = 8;
    assert_int_equal(kiln__task_frame(&b, &job, 50, 60), 0); /* by hand */
    a = frame_at(&b, 0, 7);
    c = frame_at(&b, second, 8);
    /* Limits: 60.0 from jansson, 60 by hand; the child reads numbers. */
    assert_true(json_number_value(json_object_get(a, "hard")) == 60);
    assert_true(json_number_value(json_object_get(c, "soft")) == 50);
    json_object_del(a, "soft");
    json_object_del(a, "hard");
    assert_int_equal(json_object_size(c), 7);
    json_object_set(a, "soft", json_object_get(c, "soft"));
    json_object_set(a, "hard", json_object_get(c, "hard"));
    assert_true(json_equal(a, c));
    assert_string_equal(json_string_value(json_object_get(c, "task")), "hello.echo");
    assert_true(json_equal(json_object_get(c, "args"), job.args));
    assert_int_equal(json_array_size(json_object_get(c, "files")), 0);
    assert_int_equal(json_integer_value(json_object_get(c, "hard")), 60);
    json_decref(a);
    json_decref(c);
    job_clear(&job);
    kiln__wbuf_free(&b);
}

/* Limits that are not whole seconds keep every digit; files are listed. */
static void
test_fractional_limits_and_files(void **state)
{
    kiln__wbuf_t b = {0};
    kiln__job_t job;
    json_t *v;

    (void)state;
    job_init(&job, "image.thumbnail", "id-1", "[]", "{}");
    job_text(&job, "[]", "{}");
    job.files = json_pack("[s,s]", "input", "output");
    assert_int_equal(kiln__task_frame(&b, &job, 0.1, 1e-3), 0);
    v = frame_at(&b, 0, 7);
    assert_true(json_real_value(json_object_get(v, "soft")) == 0.1);
    assert_true(json_real_value(json_object_get(v, "hard")) == 1e-3);
    assert_true(json_equal(json_object_get(v, "files"), job.files));
    json_decref(v);
    job_clear(&job);
    kiln__wbuf_free(&b);
}

/* A name that would need escaping goes through jansson, still exact. */
static void
test_escaped_names(void **state)
{
    kiln__wbuf_t b = {0};
    kiln__job_t job;
    json_t *v;

    (void)state;
    job_init(&job, "odd\"name\\x", "id\nline", "[1]", "{}");
    job_text(&job, "[1]", "{}");
    assert_int_equal(kiln__task_frame(&b, &job, 1, 2), 0);
    v = frame_at(&b, 0, 7);
    assert_string_equal(json_string_value(json_object_get(v, "task")), "odd\"name\\x");
    assert_string_equal(json_string_value(json_object_get(v, "id")), "id\nline");
    json_decref(v);
    job_clear(&job);
    kiln__wbuf_free(&b);
}

/* Over KILN__FRAME_MAX: refused, and what was pending stays as it was. */
static void
test_too_big(void **state)
{
    size_t n = KILN__FRAME_MAX + 16;
    char *big = malloc(n);
    kiln__wbuf_t b = {0};
    kiln__job_t job;
    size_t before;

    (void)state;
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '[';
    big[n - 1] = ']';
    job_init(&job, "t.big", "id-2", "[]", "{}");
    assert_int_equal(kiln__task_frame(&b, &job, 1, 2), 0);
    before = b.len;
    job.args_text = big;
    job.args_len = n;
    job.kwargs_text = "{}";
    job.kwargs_len = 2;
    assert_int_equal(kiln__task_frame(&b, &job, 1, 2), -EMSGSIZE);
    assert_int_equal(b.len, before);
    json_decref(frame_at(&b, 0, 7));
    job_clear(&job);
    kiln__wbuf_free(&b);
    free(big);
}

/* An emptied buffer keeps its memory unless it grew large. */
static void
test_reset_keeps_small_buffers(void **state)
{
    kiln__wbuf_t b = {0};

    (void)state;
    assert_int_equal(kiln__wbuf_reserve(&b, 100), 0);
    b.len = 100;
    kiln__wbuf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_non_null(b.data);
    assert_int_equal(kiln__wbuf_reserve(&b, 1u << 20), 0);
    kiln__wbuf_reset(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_equals_json),
        cmocka_unit_test(test_fractional_limits_and_files),
        cmocka_unit_test(test_escaped_names),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_reset_keeps_small_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
