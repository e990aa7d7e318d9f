/*
 * worker_fetch.c -- taking messages from the queues: as many as there are
 * idle children, plus, for tasks known to be fast, about HOLD_MS of work per
 * child; learning which tasks are fast; giving back what waits behind a task
 * that turned slow; and, when the queues are empty, waiting on them with one
 * blocking BLMOVE per queue key (it returns when a list has something,
 * without taking it).
 */
#include "log.h"
#include "scripts.h"
#include "worker_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fetching ------------------------------------------------------------- */

/* Fetch-ahead.  A message is fetched for an idle child whatever it is.  A
 * few more per child are fetched ahead only while the next message in the
 * queue is a task known to be fast (its last FAST_STREAK runs each took under
 * SLOW_MS, loop jitter included): children of very fast tasks then need no Redis round trip
 * between tasks, and a slow task is never held while another worker could
 * run it.  Should a known-fast task turn slow, hoard_cb gives back within
 * HOARD_CHECK_MS whatever waits behind it. */
void
kiln__w_note_speed(kiln__worker_t *w, wpool_t *wp, const char *task, double ms)
{
    json_t *v = json_object_get(w->fast, task);
    json_int_t streak = ms < SLOW_MS ? json_integer_value(v) + 1 : 0;

    if (strspn(task, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-") !=
        strlen(task))
        return; /* only names that need no JSON escaping can be matched */
    if (!v && json_object_size(w->fast) >= MAX_FAST_TASKS)
        return;
    json_object_set_new(w->fast, task, json_integer(streak));
    if (ms < SLOW_MS) {
        /* Hold about HOLD_MS of work per child: 32 sub-millisecond tasks,
         * one 10 ms task.  (Run times are whole loop milliseconds; their
         * mean still tracks the true time.) */
        double per, a;
        wp->fast_ms = wp->fast_ms > 0 ? 0.95 * wp->fast_ms + 0.05 * ms : (ms > 0 ? ms : 0.05);
        per = wp->fast_ms > 0.05 ? wp->fast_ms : 0.05;
        a = HOLD_MS / per;
        wp->ahead = a >= AHEAD ? AHEAD : a < 1 ? 1 : (unsigned)a;
        kiln__pool_set_depth(wp->pool, (wp->ahead + 1) / 2);
    }
    if (streak >= FAST_STREAK)
        wp->had_fast = 1;
}

/* Messages for idle children (*ahead: extra ones allowed for fast tasks,
 * 0 until at least half of that allowance is free, so that fetches ahead
 * come in batches rather than one message at a time). */
static unsigned
capacity(kiln__worker_t *w, unsigned *ahead)
{
    long idle_total = 0, allowed = 0, held = (long)w->predispatch, n, ahead_cap = 0;
    int i;
    for (i = 0; i < w->npools; i++) {
        unsigned children, idle;
        kiln__pool_counts(w->pools[i].pool, &children, &idle);
        idle_total += (long)idle;
        allowed += (long)idle + (w->pools[i].had_fast ? (long)children * w->pools[i].ahead : 0);
        ahead_cap += w->pools[i].had_fast ? (long)children * w->pools[i].ahead : 0;
        held +=
            (long)kiln__pool_queued(w->pools[i].pool) + (long)kiln__pool_behind(w->pools[i].pool);
    }
    n = idle_total - held;
    if (n < 0)
        n = 0;
    allowed -= held + n;
    *ahead = allowed > 0 && (n > 0 || 2 * allowed >= ahead_cap) ? (unsigned)allowed : 0;
    return (unsigned)n;
}

static void
hoard_cb(uv_timer_t *t)
{
    kiln__worker_t *w = t->data;
    int i, waiting = 0;

    for (i = 0; i < w->npools; i++) {
        wpool_t *wp = &w->pools[i];
        kiln__job_t *job;
        waiting += kiln__pool_queued(wp->pool) > 0;
        if (!kiln__pool_queued(wp->pool) ||
            kiln__pool_longest_running(wp->pool) < (uint64_t)SLOW_MS)
            continue;
        job = kiln__pool_unqueue(wp->pool);
        while (job) {
            wjob_t *j = (wjob_t *)job;
            job = job->next;
            j->dispatched = 0;
            json_object_set_new(w->fast, j->job.task, json_integer(0)); /* not fast now */
            kiln__w_requeue(w, j);
        }
    }
    if (!waiting)
        uv_timer_stop(t); /* restarted when a fetch leaves messages waiting */
}

static void arm_waiters(kiln__worker_t *w);

static void
fetch_cb(kiln__broker_t *b, redisReply *r, void *data)
{
    kiln__worker_t *w = data;
    size_t i;

    w->fetching = 0;
    if (!r) /* connection dropped: on_ready reclaims what the script took */
        return;
    if (r->type != REDIS_REPLY_ARRAY) {
        if (r->type == REDIS_REPLY_ERROR)
            kiln__log_warnx("fetch failed: %s", r->str);
        return;
    }
    for (i = 0; i + 1 < r->elements; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            r->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        kiln__w_take(w, r->element[i]->str, r->element[i + 1]->str, r->element[i + 1]->len);
    }
    for (i = 0; i < (size_t)w->npools; i++) {
        if (kiln__pool_queued(w->pools[i].pool) && !uv_is_active((uv_handle_t *)&w->hoard_timer))
            uv_timer_start(&w->hoard_timer, hoard_cb, HOARD_CHECK_MS, HOARD_CHECK_MS);
    }
    if (r->elements == 0 && w->fetch_n > 0) {
        w->armed = 1; /* nothing even for an idle child: wait for the queues */
        arm_waiters(w);
    } else if (r->elements > 0) {
        w->armed = 0;
        kiln__w_maybe_fetch(w);
    }
}

void
kiln__w_maybe_fetch(kiln__worker_t *w)
{
    char k1[200], nbuf[16], abuf[16], seq[32], pats[MAX_FAST_PATTERNS][300];
    const char *av[1 + MAX_WAITERS + 3 + MAX_FAST_PATTERNS];
    unsigned n, ahead;
    int i, k = 0, np = 0;
    const char *name;
    json_t *v;

    if (!w->started || w->stopping || w->fetching || !w->broker.ready)
        return;
    n = capacity(w, &ahead);
    if (n > MAX_FETCH)
        n = MAX_FETCH;
    if (ahead > MAX_FETCH - n)
        ahead = MAX_FETCH - n;
    json_object_foreach(w->fast, name, v)
    {
        if (json_integer_value(v) >= FAST_STREAK && np < MAX_FAST_PATTERNS)
            snprintf(pats[np++], sizeof(pats[0]), "\"task\": \"%s\"", name);
    }
    if (np == 0)
        ahead = 0;
    if (n == 0 && ahead == 0)
        return;
    /* Acks first: Redis then never sees more in flight than we hold. */
    kiln__w_flush_acks(w);
    kiln__w_key_inflight(w, k1, sizeof(k1));
    av[k++] = k1;
    for (i = 0; i < w->nwaiters; i++)
        av[k++] = w->waiters[i].key;
    snprintf(nbuf, sizeof(nbuf), "%u", n);
    snprintf(abuf, sizeof(abuf), "%u", ahead);
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)w->seq);
    w->seq += n + ahead;
    av[k++] = nbuf;
    av[k++] = abuf;
    av[k++] = seq;
    for (i = 0; i < np; i++)
        av[k++] = pats[i];
    w->fetching = 1;
    w->fetch_n = n;
    if (kiln__w_script(w, &w->broker, 0, S_FETCH, fetch_cb, w, 1 + w->nwaiters, 3 + np, av, NULL) <
        0)
        w->fetching = 0;
}

static void waiter_issue(waiter_t *wt);

static void
waiter_cb(kiln__broker_t *b, redisReply *r, void *data)
{
    waiter_t *wt = data;
    kiln__worker_t *w = wt->w;
    wt->outstanding = 0;
    if (!r || w->stopping)
        return;
    if (r->type == REDIS_REPLY_STRING) {
        w->armed = 0;
        kiln__w_maybe_fetch(w);
    } else if (w->armed) {
        waiter_issue(wt);
    }
}

static void
waiter_issue(waiter_t *wt)
{
    if (wt->outstanding || !wt->conn.ready)
        return;
    if (kiln__broker_callf(&wt->conn, 0, waiter_cb, wt, "BLMOVE %s %s RIGHT RIGHT 2", wt->key,
                           wt->key) == 0)
        wt->outstanding = 1;
}

static void
arm_waiters(kiln__worker_t *w)
{
    int i;
    if (w->stopping)
        return;
    for (i = 0; i < w->nwaiters; i++)
        waiter_issue(&w->waiters[i]);
}

void
kiln__w_waiter_ready(kiln__broker_t *b)
{
    waiter_t *wt = b->data;
    if (wt->w->armed)
        waiter_issue(wt);
}
