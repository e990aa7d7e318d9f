/*
 * task_frame.c -- writing TASK frames (see task_frame.h).
 *
 * Per task, building a jansson object around the message's args and kwargs
 * and dumping it again cost the supervisor more than reading the message.
 * The frame is now mostly memcpy: the names are checked to need no escaping,
 * the limits are printed as integers when they are whole seconds.
 */
#include "task_frame.h"

#include "frame.h"
#include "parse.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WBUF_KEEP (256u * 1024u) /* a buffer larger than this is freed once empty */

int
kiln__wbuf_reserve(kiln__wbuf_t *b, size_t more)
{
    size_t need = b->len + more, cap = b->cap ? b->cap : 4096;
    char *nd;

    if (need <= b->cap)
        return 0;
    while (cap < need)
        cap *= 2;
    nd = realloc(b->data, cap);
    if (!nd)
        return -ENOMEM;
    b->data = nd;
    b->cap = cap;
    return 0;
}

void
kiln__wbuf_reset(kiln__wbuf_t *b)
{
    b->len = 0;
    if (b->cap > WBUF_KEEP)
        kiln__wbuf_free(b);
}

void
kiln__wbuf_free(kiln__wbuf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static char *
put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* A limit in seconds: whole seconds as an integer, else %.17g (exact). */
static char *
put_seconds(char *p, double v)
{
    char tmp[32];
    int n;

    if (v >= 0 && v < 1e15 && v == floor(v)) {
        unsigned long long x = (unsigned long long)v;
        n = 0;
        do {
            tmp[n++] = (char)('0' + x % 10);
            x /= 10;
        } while (x);
        while (n > 0)
            *p++ = tmp[--n];
        return p;
    }
    n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    return put(p, tmp, (size_t)n);
}

/* The payload by hand: everything but the files comes as text. */
static int
payload_text(kiln__wbuf_t *b, const kiln__job_t *job, double soft, double hard)
{
    size_t tl = strlen(job->task), il = strlen(job->id), fl = 2, len;
    char *files = NULL, *p;
    int rc;

    if (job->files && json_array_size(job->files) > 0) {
        if (!(files = json_dumps(job->files, JSON_COMPACT)))
            return -ENOMEM;
        fl = strlen(files);
    }
    len = tl + il + job->args_len + job->kwargs_len + fl + 128;
    if ((rc = kiln__wbuf_reserve(b, len)) < 0) {
        free(files);
        return rc;
    }
    p = b->data + b->len;
    p = put(p, "{\"task\":\"", 9);
    p = put(p, job->task, tl);
    p = put(p, "\",\"id\":\"", 8);
    p = put(p, job->id, il);
    p = put(p, "\",\"args\":", 9);
    p = put(p, job->args_text, job->args_len);
    p = put(p, ",\"kwargs\":", 10);
    p = put(p, job->kwargs_text, job->kwargs_len);
    p = put(p, ",\"files\":", 9);
    p = put(p, files ? files : "[]", fl);
    p = put(p, ",\"soft\":", 8);
    p = put_seconds(p, soft);
    p = put(p, ",\"hard\":", 8);
    p = put_seconds(p, hard);
    *p++ = '}';
    free(files);
    b->len = (size_t)(p - b->data);
    return 0;
}

/* The payload through jansson (names that need escaping, no text). */
static int
payload_json(kiln__wbuf_t *b, const kiln__job_t *job, double soft, double hard)
{
    json_t *msg =
        json_pack("{s:s,s:s,s:O,s:O,s:o,s:f,s:f}", "task", job->task, "id", job->id, "args",
                  job->args, "kwargs", job->kwargs, "files",
                  job->files ? json_incref(job->files) : json_array(), "soft", soft, "hard", hard);
    char *s = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    size_t len;
    int rc;

    json_decref(msg);
    if (!s)
        return -ENOMEM;
    len = strlen(s);
    if ((rc = kiln__wbuf_reserve(b, len)) == 0) {
        memcpy(b->data + b->len, s, len);
        b->len += len;
    }
    free(s);
    return rc;
}

int
kiln__task_frame(kiln__wbuf_t *b, const kiln__job_t *job, double soft, double hard)
{
    kiln__frame_hdr_t h;
    size_t at = b->len;
    int rc;

    if ((rc = kiln__wbuf_reserve(b, KILN__FRAME_HDR)) < 0)
        return rc;
    b->len += KILN__FRAME_HDR;
    if (job->args_text && job->kwargs_text && kiln__json_plain(job->task) &&
        kiln__json_plain(job->id))
        rc = payload_text(b, job, soft, hard);
    else
        rc = payload_json(b, job, soft, hard);
    if (rc == 0 && b->len - at - KILN__FRAME_HDR > KILN__FRAME_MAX)
        rc = -EMSGSIZE;
    if (rc < 0) {
        b->len = at;
        return rc;
    }
    memset(&h, 0, sizeof(h));
    h.type = KILN__FRAME_TASK;
    h.len = (uint32_t)(b->len - at - KILN__FRAME_HDR);
    h.task_id = job->seq;
    kiln__frame_hdr_encode(&h, (unsigned char *)b->data + at);
    return 0;
}
