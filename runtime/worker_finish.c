/*
 * worker_finish.c -- how a message leaves the worker's hands: results and
 * acks (batched: many tasks per script call), STARTED states, retries into
 * the ETA set, dead letters, requeues; and the memory of a job.  Every way
 * out is a script that writes the result before it removes the in-flight
 * entry (scripts.c).
 */
#include "log.h"
#include "scripts.h"
#include "worker_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- results ------------------------------------------------------------- */

char *
kiln__w_meta_for(wjob_t *j, const char *status, const json_t *result)
{
    return kiln__celery_result(j->msg.id, status, result, NULL, &j->msg);
}

static void
job_unlink(kiln__worker_t *w, wjob_t *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        w->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    w->njobs--;
}

/* Forget a pending STARTED: the task reached another state first. */
static void
started_cancel(wjob_t *j)
{
    kiln__worker_t *w = j->w;
    if (!j->st_pending)
        return;
    if (j->st_prev)
        j->st_prev->st_next = j->st_next;
    else
        w->st_head = j->st_next;
    if (j->st_next)
        j->st_next->st_prev = j->st_prev;
    else
        w->st_tail = j->st_prev;
    j->st_next = j->st_prev = NULL;
    j->st_pending = 0;
}

/* A zeroed job.  Jobs are a few KiB: glibc serves that size from its large
 * bins, consolidating its fast bins first, which cost ~3% of the
 * supervisor per task; a short list of spares avoids it. */
wjob_t *
kiln__w_job_alloc(kiln__worker_t *w)
{
    wjob_t *j = w->spare;
    if (!j)
        return calloc(1, sizeof(*j));
    w->spare = j->next;
    w->nspare--;
    memset(j, 0, sizeof(*j));
    return j;
}

static void
job_free(wjob_t *j)
{
    kiln__worker_t *w = j->w;
    started_cancel(j);
    kiln__celery_msg_free(&j->msg);
    json_decref(j->job.args);
    json_decref(j->job.kwargs);
    json_decref(j->job.files);
    free(j->raw);
    if (w && w->nspare < SPARE_JOBS) {
        j->next = w->spare;
        w->spare = j;
        w->nspare++;
        return;
    }
    free(j);
}

/* The message has left our hands in Redis: forget it. */
static void
finished_cb(kiln__broker_t *b, redisReply *r, void *data)
{
    wjob_t *j = data;
    kiln__worker_t *w = j->w;
    if (r && r->type == REDIS_REPLY_ERROR)
        kiln__log_warnx("task %s[%s]: Redis refused the final update: %s", j->msg.task, j->msg.id,
                        r->str);
    job_unlink(w, j);
    job_free(j);
    kiln__w_maybe_fetch(w);
    kiln__w_maybe_done(w);
}

/* Run one of the finishing scripts: KEYS = inflight, `keys`, [result key];
 * ARGV = tag, `args`, [meta, expires].  Requeue has no result part. */
static void
finish_run(kiln__worker_t *w, wjob_t *j, int id, const char **keys, int nkeys, const char **args,
           const size_t *argl, int nargs, const char *meta, const char *result_key)
{
    char k1[200], exp[32];
    const char *av[16];
    size_t al[16];
    int n = 0, i, with_result = id != S_REQUEUE;

    kiln__w_key_inflight(w, k1, sizeof(k1));
    snprintf(exp, sizeof(exp), "%.0f", w->cfg.result_expires);
    av[n] = k1;
    al[n++] = strlen(k1);
    for (i = 0; i < nkeys; i++) {
        av[n] = keys[i];
        al[n++] = strlen(keys[i]);
    }
    if (with_result) {
        av[n] = result_key ? result_key : "kiln:none";
        al[n] = strlen(av[n]);
        n++;
    }
    av[n] = j->tag;
    al[n++] = strlen(j->tag);
    for (i = 0; i < nargs; i++) {
        av[n] = args[i];
        al[n++] = argl[i];
    }
    if (with_result) {
        av[n] = meta ? meta : "";
        al[n++] = meta ? strlen(meta) : 0;
        av[n] = exp;
        al[n++] = strlen(exp);
    }
    j->finishing = 1;
    if (kiln__w_script(w, &w->broker, KILN__CALL_DURABLE, id, finished_cb, j,
                       1 + nkeys + with_result, n - 1 - nkeys - with_result, av, al) < 0)
        kiln__log_warnx("task %s[%s]: cannot queue a Redis update", j->msg.task, j->msg.id);
}

/* Separate result backend: write the meta there first (durably), then run
 * the broker script without it. */
typedef struct split {
    kiln__worker_t *w;
    wjob_t *j;
    int id;
    char *keys[2];
    int nkeys;
    char *args[2];
    size_t argl[2];
    int nargs;
} split_t;

static void
split_cb(kiln__broker_t *b, redisReply *r, void *data)
{
    split_t *s = data;
    int i;
    finish_run(s->w, s->j, s->id, (const char **)s->keys, s->nkeys, (const char **)s->args, s->argl,
               s->nargs, NULL, NULL);
    for (i = 0; i < s->nkeys; i++)
        free(s->keys[i]);
    for (i = 0; i < s->nargs; i++)
        free(s->args[i]);
    free(s);
}

void
kiln__w_finish(kiln__worker_t *w, wjob_t *j, int id, const char **keys, int nkeys,
               const char **args, const size_t *argl, int nargs, const char *meta)
{
    char rkey[256];

    started_cancel(j);
    snprintf(rkey, sizeof(rkey), "celery-task-meta-%s", j->msg.id);
    if (!meta || !j->msg.id[0] || w->same_backend) {
        finish_run(w, j, id, keys, nkeys, args, argl, nargs, j->msg.id[0] ? meta : NULL, rkey);
        return;
    }
    {
        split_t *s = calloc(1, sizeof(*s));
        char exp[32];
        int i;
        if (!s)
            return;
        s->w = w;
        s->j = j;
        s->id = id;
        s->nkeys = nkeys;
        s->nargs = nargs;
        for (i = 0; i < nkeys; i++)
            s->keys[i] = strdup(keys[i]);
        for (i = 0; i < nargs; i++) {
            s->args[i] = malloc(argl[i] + 1);
            memcpy(s->args[i], args[i], argl[i]);
            s->args[i][argl[i]] = '\0';
            s->argl[i] = argl[i];
        }
        snprintf(exp, sizeof(exp), "%.0f", w->cfg.result_expires);
        j->finishing = 1;
        if (w->cfg.result_expires > 0)
            kiln__broker_callf(&w->backend, KILN__CALL_DURABLE, NULL, NULL, "SET %s %s EX %s", rkey,
                               meta, exp);
        else
            kiln__broker_callf(&w->backend, KILN__CALL_DURABLE, NULL, NULL, "SET %s %s", rkey,
                               meta);
        kiln__broker_callf(&w->backend, KILN__CALL_DURABLE, split_cb, s, "PUBLISH %s %s", rkey,
                           meta);
    }
}

/* A state update that finishes nothing (STARTED, PROGRESS). */
void
kiln__w_write_state(kiln__worker_t *w, wjob_t *j, const char *status, const json_t *result)
{
    char rkey[256], exp[32];
    char *meta;

    started_cancel(j);
    if (!j->msg.id[0])
        return;
    meta = kiln__w_meta_for(j, status, result);
    if (!meta)
        return;
    snprintf(rkey, sizeof(rkey), "celery-task-meta-%s", j->msg.id);
    snprintf(exp, sizeof(exp), "%.0f", w->cfg.result_expires);
    if (w->cfg.result_expires > 0)
        kiln__broker_callf(kiln__w_result_conn(w), 0, NULL, NULL, "SET %s %s EX %s", rkey, meta,
                           exp);
    else
        kiln__broker_callf(kiln__w_result_conn(w), 0, NULL, NULL, "SET %s %s", rkey, meta);
    kiln__broker_callf(kiln__w_result_conn(w), 0, NULL, NULL, "PUBLISH %s %s", rkey, meta);
    free(meta);
}

/* Acks are batched: every ack of one loop iteration goes to Redis as one
 * script call (flushed from a check handle, after I/O).  With a separate
 * result backend the result is written there first (two phases). */
void
kiln__w_ack_with(kiln__worker_t *w, wjob_t *j, const char *status, const json_t *result)
{
    char *meta = kiln__w_meta_for(j, status, result);

    started_cancel(j);
    if (!w->same_backend && meta && j->msg.id[0]) {
        kiln__w_finish(w, j, S_ACK1, NULL, 0, NULL, NULL, 0, meta);
        free(meta);
        return;
    }
    j->finishing = 1;
    j->ack_meta = meta;
    j->ack_next = NULL;
    if (w->ack_tail)
        w->ack_tail->ack_next = j;
    else
        w->ack_head = j;
    w->ack_tail = j;
    w->nacks++;
    if (w->nacks >= ACK_BATCH)
        kiln__w_flush_acks(w);
}

static void
acks_done(kiln__broker_t *b, redisReply *r, void *data)
{
    wjob_t *j = data;
    kiln__worker_t *w = j->w;

    if (r && r->type == REDIS_REPLY_ERROR)
        kiln__log_warnx("Redis refused a batch of acks: %s", r->str);
    while (j) {
        wjob_t *next = j->ack_next;
        job_unlink(w, j);
        job_free(j);
        j = next;
    }
    kiln__w_maybe_fetch(w);
    kiln__w_maybe_done(w);
}

/* One script call for up to ACK_CHUNK acks starting at `head` (a list cut
 * off after them).  Its callback frees the jobs. */
static void
send_acks(kiln__worker_t *w, wjob_t *head, int count)
{
    const char *av[3 * ACK_CHUNK + 2];
    size_t al[3 * ACK_CHUNK + 2];
    char k1[200], exp[32], rkeys[ACK_CHUNK][200];
    wjob_t *j;
    int n = 0, nk, i = 0, rc;

    kiln__w_key_inflight(w, k1, sizeof(k1));
    snprintf(exp, sizeof(exp), "%.0f", w->cfg.result_expires);
    av[n] = k1;
    al[n++] = strlen(k1);
    for (j = head; j && i < count; j = j->ack_next) {
        al[n] = (size_t)snprintf(rkeys[i], sizeof(rkeys[i]), "celery-task-meta-%s", j->msg.id);
        av[n++] = rkeys[i++];
    }
    nk = n;
    av[n] = exp;
    al[n++] = strlen(exp);
    for (j = head; j; j = j->ack_next) {
        av[n] = j->tag;
        al[n++] = strlen(j->tag);
        av[n] = j->ack_meta && j->msg.id[0] ? j->ack_meta : "";
        al[n] = strlen(av[n]);
        n++;
    }
    rc = kiln__w_script(w, &w->broker, KILN__CALL_DURABLE, S_ACK, acks_done, head, nk, n - nk, av,
                        al);
    for (j = head; j; j = j->ack_next) { /* the command holds its own copy */
        free(j->ack_meta);
        j->ack_meta = NULL;
    }
    if (rc < 0) {
        /* Cannot happen short of ENOMEM: the messages stay in flight in
         * Redis and return to their queue when this worker is gone. */
        kiln__log_warnx("cannot queue a batch of %d acks", count);
        acks_done(&w->broker, NULL, head);
    }
}

/* Send every pending ack, ACK_CHUNK per script call (a call's arguments
 * are bounded: see kiln__w_script()). */
void
kiln__w_flush_acks(kiln__worker_t *w)
{
    uv_timer_stop(&w->ack_timer);
    while (w->ack_head) {
        wjob_t *head = w->ack_head, *last = head;
        int count = 1;
        while (last->ack_next && count < ACK_CHUNK) {
            last = last->ack_next;
            count++;
        }
        w->ack_head = last->ack_next;
        last->ack_next = NULL;
        w->nacks -= (unsigned)count;
        send_acks(w, head, count);
    }
    w->ack_tail = NULL;
    w->nacks = 0;
}

static void
ack_timer_cb(uv_timer_t *t)
{
    kiln__w_flush_acks(t->data);
}

/* After each loop iteration: send a full batch of acks now, a small one
 * within ACK_DELAY_MS (more acks then share one script call). */
void
kiln__w_ack_check_cb(uv_check_t *h)
{
    kiln__worker_t *w = h->data;
    if (w->nacks >= ACK_MIN || (w->nacks && w->stopping))
        kiln__w_flush_acks(w);
    else if (w->nacks && !uv_is_active((uv_handle_t *)&w->ack_timer))
        uv_timer_start(&w->ack_timer, ack_timer_cb, ACK_DELAY_MS, 0);
}

void
kiln__w_fail_with(kiln__worker_t *w, wjob_t *j, const char *exc_type, const char *message)
{
    json_t *exc = kiln__celery_exc(exc_type, message);
    kiln__w_ack_with(w, j, "FAILURE", exc);
    json_decref(exc);
}

void
kiln__w_requeue(kiln__worker_t *w, wjob_t *j)
{
    kiln__w_finish(w, j, S_REQUEUE, NULL, 0, NULL, NULL, 0, NULL);
}

/* Into the ETA set, due at `when` (epoch seconds), with an optional state. */
void
kiln__w_defer(kiln__worker_t *w, wjob_t *j, const char *message, size_t mlen, double when,
              const char *meta)
{
    char score[48];
    char *member;
    size_t ql = strlen(j->qkey);
    const char *keys[1] = {KEY_PREFIX "eta"};
    const char *args[2];
    size_t argl[2];

    member = malloc(ql + 1 + mlen);
    if (!member)
        return;
    memcpy(member, j->qkey, ql);
    member[ql] = '\n';
    memcpy(member + ql + 1, message, mlen);
    snprintf(score, sizeof(score), "%.0f", when * 1000.0);
    args[0] = member;
    argl[0] = ql + 1 + mlen;
    args[1] = score;
    argl[1] = strlen(score);
    kiln__w_finish(w, j, S_DEFER, keys, 1, args, argl, 2, meta);
    free(member);
}

void
kiln__w_dead_letter(kiln__worker_t *w, wjob_t *j, const char *reason, json_t *deaths,
                    const char *exc_type)
{
    json_t *entry =
        json_pack("{s:s,s:s,s:s,s:s,s:f,s:o,s:s%}", "reason", reason, "queue", j->qkey, "task",
                  j->msg.task, "id", j->msg.id, "time", kiln__w_now_epoch(), "deaths",
                  deaths ? json_incref(deaths) : json_array(), "message", j->raw, j->rawlen);
    char *s = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    const char *keys[1] = {KEY_PREFIX "dlq"};
    const char *args[1];
    size_t argl[1];
    char *meta = NULL;

    json_decref(entry);
    if (!s)
        return;
    kiln__log_warnx("task %s[%s] dead-lettered: %s", j->msg.task[0] ? j->msg.task : "?",
                    j->msg.id[0] ? j->msg.id : "?", reason);
    if (exc_type && j->msg.id[0]) {
        json_t *exc = kiln__celery_exc(exc_type, reason);
        meta = kiln__w_meta_for(j, "FAILURE", exc);
        json_decref(exc);
    }
    args[0] = s;
    argl[0] = strlen(s);
    kiln__w_finish(w, j, S_DEAD, keys, 1, args, argl, 1, meta);
    free(meta);
    free(s);
}
