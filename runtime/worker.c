/*
 * worker.c -- Celery tasks from Redis through sandboxed pools, acked late.
 *
 * A message's life here (docs/redis-keys.md has the keys):
 *
 *   queue --fetch script--> in-flight (ours) --decode--> pool --outcome-->
 *     ack script (result written, then in-flight entry removed), or
 *     defer script (ETA set: countdown, retry backoff, open breaker), or
 *     dead script (dead-letter list: not JSON, malformed, poison), or
 *     requeue script (back to its queue: shutdown, unknown task).
 *
 * We fetch only as many messages as there are idle children.  When a fetch
 * comes back empty, one blocking "waiter" connection per queue key waits
 * (BLMOVE key key: it returns when the list has something, without taking
 * it), so an idle worker costs Redis nothing and a new task starts within a
 * round trip or two.
 *
 * This file holds the worker's life, task outcomes (retries, poison, circuit
 * breakers), dispatch into pools and housekeeping; worker_fetch.c fetches and
 * waits, worker_finish.c writes results and every way a message leaves.
 */
#include "broker.h"
#include "celery.h"
#include "log.h"
#include "roots.h"
#include "scripts.h"
#include "worker_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const script_text[S_COUNT] = {
    kiln__lua_fetch,          kiln__lua_ack,           kiln__lua_defer,
    kiln__lua_dead,           kiln__lua_requeue,       kiln__lua_reclaim,
    kiln__lua_recover,        kiln__lua_eta,           kiln__lua_death,
    kiln__lua_breaker_update, kiln__lua_breaker_probe, kiln__lua_ack1,
};

/* ---- small helpers ------------------------------------------------------- */

double
kiln__w_now_epoch(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

kiln__broker_t *
kiln__w_result_conn(kiln__worker_t *w)
{
    return w->same_backend ? &w->broker : &w->backend;
}

void
kiln__w_key_inflight(const kiln__worker_t *w, char *a, size_t alen)
{
    snprintf(a, alen, KEY_PREFIX "inflight:%s", w->wid);
}

/* EVALSHA when the script is loaded, else EVAL.  argv: KEYS then ARGV. */
int
kiln__w_script(kiln__worker_t *w, kiln__broker_t *b, int flags, int id, kiln__broker_cb cb,
               void *data, int nkeys, int nargs, const char **av, const size_t *al)
{
    const char *argv[300];
    size_t argl[300];
    char nk[16];
    int i, n = 0;

    if (nkeys + nargs + 3 > 300)
        return -E2BIG;
    snprintf(nk, sizeof(nk), "%d", nkeys);
    if (w->sha[id][0] && b == &w->broker) {
        argv[n] = "EVALSHA";
        argl[n++] = 7;
        argv[n] = w->sha[id];
    } else {
        argv[n] = "EVAL";
        argl[n++] = 4;
        argv[n] = script_text[id];
    }
    argl[n] = strlen(argv[n]);
    n++;
    argv[n] = nk;
    argl[n++] = strlen(nk);
    for (i = 0; i < nkeys + nargs; i++) {
        argv[n] = av[i];
        argl[n++] = al ? al[i] : strlen(av[i]);
    }
    return kiln__broker_call(b, flags, cb, data, n, argv, argl);
}

/* ---- breakers ------------------------------------------------------------- */

static breaker_t *
breaker_for(kiln__worker_t *w, const char *task)
{
    kiln__task_conf_t tc;
    const kiln__breaker_conf_t *bc;
    const char *name;
    breaker_t *b;

    kiln__config_task(&w->cfg, task, &tc);
    name = tc.breaker[0] ? tc.breaker : task;
    bc = kiln__config_breaker(&w->cfg, name);
    if (!bc)
        return NULL;
    for (b = w->breakers; b; b = b->next)
        if (strcmp(b->name, name) == 0)
            return b;
    b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->conf = *bc;
    snprintf(b->state, sizeof(b->state), "closed");
    b->next = w->breakers;
    w->breakers = b;
    return b;
}

static void
breaker_store(breaker_t *b, redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    if (r->element[0]->type == REDIS_REPLY_STRING)
        snprintf(b->state, sizeof(b->state), "%s", r->element[0]->str);
    if (r->element[1]->type == REDIS_REPLY_STRING)
        b->failures = atol(r->element[1]->str);
    if (r->element[2]->type == REDIS_REPLY_STRING)
        b->opened_at_ms = atof(r->element[2]->str);
}

static void
breaker_update_cb(kiln__broker_t *bk, redisReply *r, void *data)
{
    breaker_t *b = data;
    char before[16];
    snprintf(before, sizeof(before), "%s", b->state);
    breaker_store(b, r);
    if (strcmp(before, b->state) != 0)
        kiln__log_warnx("circuit breaker %s: %s -> %s (%ld consecutive failures)", b->name, before,
                        b->state, b->failures);
}

static void
breaker_record(kiln__worker_t *w, wjob_t *j, int ok)
{
    char key[320], thr[16], now[32];
    const char *av[4];

    if (!j->breaker)
        return;
    snprintf(key, sizeof(key), KEY_PREFIX "breaker:%s", j->breaker->name);
    snprintf(thr, sizeof(thr), "%u", j->breaker->conf.failure_threshold);
    snprintf(now, sizeof(now), "%.0f", kiln__w_now_epoch() * 1000.0);
    av[0] = key;
    av[1] = ok ? "1" : "0";
    av[2] = thr;
    av[3] = now;
    kiln__w_script(w, &w->broker, 0, S_BREAKER_UPDATE, breaker_update_cb, j->breaker, 1, 3, av,
                   NULL);
}

/* ---- outcomes ------------------------------------------------------------- */

static double
backoff(const kiln__task_conf_t *tc, long retries)
{
    double d = tc->retry_backoff * pow(2.0, (double)(retries < 30 ? retries : 30));
    if (d > tc->retry_backoff_max)
        d = tc->retry_backoff_max;
    if (tc->retry_jitter) {
        unsigned r;
        if (getentropy(&r, sizeof(r)) < 0)
            r = (unsigned)rand();
        d = d * ((double)r / 4294967296.0);
    }
    return d;
}

/* Retry with the given countdown, or fail when out of retries. */
static void
retry_or_fail(kiln__worker_t *w, wjob_t *j, double countdown, const char *exc_type,
              const char *message)
{
    kiln__task_conf_t tc;
    char *next, *meta;
    json_t *exc;

    kiln__config_task(&w->cfg, j->msg.task, &tc);
    if (j->msg.retries >= (tc.max_retries < 0 ? 3 : tc.max_retries)) {
        char m[1400];
        snprintf(m, sizeof(m), "%s (gave up after %ld retries: %s)", message, j->msg.retries,
                 exc_type);
        kiln__w_fail_with(w, j,
                          strcmp(exc_type, "Retry") == 0 ? "MaxRetriesExceededError" : exc_type, m);
        return;
    }
    if (countdown < 0)
        countdown = backoff(&tc, j->msg.retries);
    next = kiln__celery_retry_message(&j->msg, kiln__w_now_epoch() + countdown);
    if (!next) {
        kiln__w_fail_with(w, j, exc_type, message);
        return;
    }
    exc = kiln__celery_exc(strcmp(exc_type, "Retry") == 0 ? "Retry" : exc_type, message);
    meta = kiln__w_meta_for(j, "RETRY", exc);
    json_decref(exc);
    kiln__log(KILN__LOG_INFO, "task %s[%s] retry %ld in %.2f s: %s: %s", j->msg.task, j->msg.id,
              j->msg.retries + 1, countdown, exc_type, message);
    kiln__w_defer(w, j, next, strlen(next), kiln__w_now_epoch() + countdown, meta);
    free(meta);
    free(next);
}

typedef struct death_ctx {
    wjob_t *j;
    char type[64];
    char message[1200];
} death_t;

static void
death_cb(kiln__broker_t *b, redisReply *r, void *data)
{
    death_t *d = data;
    wjob_t *j = d->j;
    kiln__worker_t *w = j->w;
    size_t n = r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    kiln__task_conf_t tc;

    kiln__config_task(&w->cfg, j->msg.task, &tc);
    if (n >= (size_t)w->cfg.poison_deaths) {
        json_t *deaths = json_array();
        size_t i;
        char reason[1400];
        for (i = 0; i < n; i++) {
            json_t *e = r->element[i]->type == REDIS_REPLY_STRING
                            ? json_loads(r->element[i]->str, 0, NULL)
                            : NULL;
            json_array_append_new(deaths, e ? e : json_null());
        }
        snprintf(reason, sizeof(reason), "poison: killed its child %zu times; last: %s: %s", n,
                 d->type, d->message);
        kiln__w_dead_letter(w, j, reason, deaths, d->type);
        json_decref(deaths);
    } else if (!tc.retry_on_death) {
        kiln__w_fail_with(w, j, d->type, d->message);
    } else {
        retry_or_fail(w, j, -1, d->type, d->message);
    }
    free(d);
}

static void
record_death(kiln__worker_t *w, wjob_t *j, const kiln__outcome_t *o)
{
    death_t *d = calloc(1, sizeof(*d));
    char key[256], ttl[16];
    const char *av[3];
    json_t *e;
    char *s;

    if (!d)
        return;
    d->j = j;
    snprintf(d->type, sizeof(d->type), "%s", o->exc_type);
    snprintf(d->message, sizeof(d->message), "%s", o->exc_message);
    e = json_pack("{s:s,s:s,s:f,s:s}", "type", o->exc_type, "message", o->exc_message, "time",
                  kiln__w_now_epoch(), "worker", w->wid);
    s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    snprintf(key, sizeof(key), KEY_PREFIX "deaths:%s", j->msg.id);
    snprintf(ttl, sizeof(ttl), "%d", DEATHS_TTL);
    av[0] = key;
    av[1] = s ? s : "{}";
    av[2] = ttl;
    j->finishing = 1;
    kiln__w_script(w, &w->broker, KILN__CALL_DURABLE, S_DEATH, death_cb, d, 1, 2, av, NULL);
    free(s);
}

static void
on_done(kiln__job_t *job, const kiln__outcome_t *o)
{
    wjob_t *j = (wjob_t *)job;
    kiln__worker_t *w = j->w;
    wpool_t *wp = &w->pools[j->pool];

    kiln__w_note_speed(w, wp, j->job.task, o->runtime * 1000.0);
    if (o->shutdown && w->stopping) {
        kiln__w_requeue(w, j);
        return;
    }
    if (o->state == KILN__DONE_SUCCESS) {
        breaker_record(w, j, 1);
        kiln__w_ack_with(w, j, "SUCCESS", o->result);
    } else if (o->state == KILN__DONE_RETRY) {
        breaker_record(w, j, 0);
        retry_or_fail(w, j, o->countdown, "Retry", o->exc_message);
    } else if (o->child_died) {
        breaker_record(w, j, 0);
        kiln__log_warnx("task %s[%s]: %s: %s", j->msg.task, j->msg.id, o->exc_type, o->exc_message);
        record_death(w, j, o);
    } else {
        breaker_record(w, j, 0);
        kiln__w_fail_with(w, j, o->exc_type, o->exc_message);
    }
}

/* Write STARTED for the tasks that have run STARTED_DELAY_MS (the list is
 * in start order); look again when the next one is due. */
static void
started_timer_cb(uv_timer_t *t)
{
    kiln__worker_t *w = t->data;
    uint64_t now = uv_now(w->loop);

    while (w->st_head && now - w->st_head->st_ms >= STARTED_DELAY_MS)
        kiln__w_write_state(w, w->st_head, "STARTED", NULL); /* unlinks it */
    if (w->st_head)
        uv_timer_start(t, started_timer_cb, w->st_head->st_ms + STARTED_DELAY_MS - now, 0);
}

static void
on_start(kiln__job_t *job)
{
    wjob_t *j = (wjob_t *)job;
    kiln__worker_t *w = j->w;

    if (!w->cfg.track_started || !j->msg.id[0] || j->st_pending)
        return;
    j->st_pending = 1;
    j->st_ms = uv_now(w->loop);
    j->st_next = NULL;
    j->st_prev = w->st_tail;
    if (w->st_tail)
        w->st_tail->st_next = j;
    else
        w->st_head = j;
    w->st_tail = j;
    if (!uv_is_active((uv_handle_t *)&w->st_timer))
        uv_timer_start(&w->st_timer, started_timer_cb, STARTED_DELAY_MS, 0);
}

static void
on_progress(kiln__job_t *job, double fraction, const char *message)
{
    wjob_t *j = (wjob_t *)job;
    uint64_t now = uv_now(j->w->loop);
    json_t *info;

    if (now - j->last_progress_ms < PROGRESS_MIN_MS && fraction < 1.0)
        return;
    j->last_progress_ms = now;
    info = json_pack("{s:f,s:s?}", "fraction", fraction, "message", message);
    kiln__w_write_state(j->w, j, "PROGRESS", info);
    json_decref(info);
}

static void
on_log(kiln__job_t *job, int level, const char *message)
{
    wjob_t *j = (wjob_t *)job;
    kiln__log(level < 0   ? 0
              : level > 3 ? 3
                          : level,
              "task %s[%s]: %s", j->msg.task, j->msg.id, message);
}

/* ---- dispatch ------------------------------------------------------------- */

static void
submit(kiln__worker_t *w, wjob_t *j)
{
    int rc;
    w->predispatch--;
    j->dispatched = 1;
    j->job.on_start = on_start;
    j->job.fast = json_integer_value(json_object_get(w->fast, j->job.task)) >= FAST_STREAK;
    rc = kiln__pool_submit(w->pools[j->pool].pool, &j->job);
    if (rc < 0) {
        j->dispatched = 0;
        if (w->stopping)
            kiln__w_requeue(w, j);
        else
            kiln__w_fail_with(w, j, "WorkerLostError", "the pool refused the task");
        return;
    }
}

/* Open the task's files on the thread pool: the loop never waits on disk. */
static void
open_work(uv_work_t *req)
{
    wjob_t *j = req->data;
    const char *sets[2] = {"files", "outputs"};
    int s;

    j->open_rc = 0;
    for (s = 0; s < 2 && j->open_rc == 0; s++) {
        json_t *obj = json_object_get(j->msg.kwargs, sets[s]);
        const char *name;
        json_t *path;
        if (!obj)
            continue;
        json_object_foreach(obj, name, path)
        {
            int fd;
            if (j->job.nfds >= 16) {
                snprintf(j->open_err, sizeof(j->open_err), "more than 16 files");
                j->open_rc = -E2BIG;
                break;
            }
            fd = kiln__roots_open(j->roots, json_string_value(path),
                                  s ? KILN__FILE_WRITE : KILN__FILE_READ, j->open_err,
                                  sizeof(j->open_err));
            if (fd < 0) {
                j->open_rc = fd;
                break;
            }
            j->job.fds[j->job.nfds++] = fd;
            json_array_append_new(j->job.files, json_string(name));
        }
    }
}

static void
open_done(uv_work_t *req, int status)
{
    wjob_t *j = req->data;
    kiln__worker_t *w = j->w;

    j->busy = 0;
    if (w->stopping) {
        int i;
        for (i = 0; i < j->job.nfds; i++)
            close(j->job.fds[i]);
        j->job.nfds = 0;
        w->predispatch--;
        kiln__w_requeue(w, j);
        return;
    }
    if (j->open_rc < 0 || status < 0) {
        int i;
        for (i = 0; i < j->job.nfds; i++)
            close(j->job.fds[i]);
        j->job.nfds = 0;
        w->predispatch--;
        kiln__w_fail_with(w, j, "PermissionError",
                          j->open_err[0] ? j->open_err : "cannot open files");
        return;
    }
    submit(w, j);
}

/* kwargs "files"/"outputs" must be objects of name -> path strings. */
static int
check_files(wjob_t *j, char *err, size_t errlen)
{
    const char *sets[2] = {"files", "outputs"};
    int s;
    for (s = 0; s < 2; s++) {
        json_t *obj = json_object_get(j->msg.kwargs, sets[s]), *v;
        const char *k;
        if (!obj)
            continue;
        if (!json_is_object(obj)) {
            snprintf(err, errlen, "kwargs.%s must be an object of name -> path", sets[s]);
            return -1;
        }
        json_object_foreach(obj, k, v)
        {
            if (!json_is_string(v) || strlen(k) > 100) {
                snprintf(err, errlen, "kwargs.%s.%s must be a path string", sets[s], k);
                return -1;
            }
        }
    }
    return 0;
}

/* Open the task's files first when it names any; then hand it to its pool. */
static void
start_job(kiln__worker_t *w, wjob_t *j)
{
    if (json_object_get(j->msg.kwargs, "files") || json_object_get(j->msg.kwargs, "outputs")) {
        j->work.data = j;
        j->busy = 1;
        if (uv_queue_work(w->loop, &j->work, open_work, open_done) == 0)
            return;
        j->busy = 0;
        w->predispatch--;
        kiln__w_fail_with(w, j, "WorkerLostError", "cannot queue the file opening work");
        return;
    }
    submit(w, j);
}

static void
probe_cb(kiln__broker_t *b, redisReply *r, void *data)
{
    wjob_t *j = data;
    kiln__worker_t *w = j->w;
    int granted = 0;

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 4 &&
        r->element[3]->type == REDIS_REPLY_STRING)
        granted = atoi(r->element[3]->str);
    breaker_store(j->breaker, r);
    j->busy = 0;
    if (!r || w->stopping) {
        w->predispatch--;
        kiln__w_requeue(w, j);
        return;
    }
    if (!granted) {
        double when = (j->breaker->opened_at_ms / 1000.0) + j->breaker->conf.reset_timeout;
        if (when < kiln__w_now_epoch() + 0.05)
            when = kiln__w_now_epoch() + j->breaker->conf.reset_timeout * BREAKER_JITTER + 0.05;
        w->predispatch--;
        kiln__w_defer(w, j, j->raw, j->rawlen, when, NULL);
        return;
    }
    j->probe = strcmp(j->breaker->state, "half_open") == 0;
    start_job(w, j);
}

void
kiln__w_take(kiln__worker_t *w, const char *tag, const char *raw, size_t rawlen)
{
    const char *qkey = strchr(tag, '\t') ? strchr(tag, '\t') + 1 : "celery";
    wjob_t *j = kiln__w_job_alloc(w);
    char err[1024];
    const char *target;
    json_t *pi;
    int rc;
    double now = kiln__w_now_epoch();

    if (!j)
        return;
    j->w = w;
    snprintf(j->tag, sizeof(j->tag), "%s", tag);
    snprintf(j->qkey, sizeof(j->qkey), "%s", qkey);
    j->raw = malloc(rawlen + 1);
    if (!j->raw) {
        free(j);
        return;
    }
    memcpy(j->raw, raw, rawlen);
    j->raw[rawlen] = '\0';
    j->rawlen = rawlen;
    j->next = w->jobs;
    if (w->jobs)
        w->jobs->prev = j;
    w->jobs = j;
    w->njobs++;

    rc = kiln__celery_decode(raw, rawlen, w->cfg.max_message_bytes, &j->msg, err, sizeof(err));
    if (rc < 0) {
        kiln__w_dead_letter(w, j, err, NULL,
                            rc == -EMEDIUMTYPE ? "ContentDisallowed" : "DecodeError");
        return;
    }
    if (w->stopping) {
        kiln__w_requeue(w, j);
        return;
    }
    if (j->msg.expires > 0 && now > j->msg.expires) {
        json_t *exc = kiln__celery_exc("TaskRevokedError", "expired");
        kiln__log(KILN__LOG_INFO, "task %s[%s] expired; revoked", j->msg.task, j->msg.id);
        kiln__w_ack_with(w, j, "REVOKED", exc);
        json_decref(exc);
        return;
    }
    if (j->msg.eta > now + 0.001) {
        kiln__w_defer(w, j, raw, rawlen, j->msg.eta, NULL);
        return;
    }
    target = kiln__config_alias(&w->cfg, j->msg.task);
    if (!target)
        target = j->msg.task;
    pi = json_object_get(w->task_pool, target);
    if (!pi) {
        char m[600];
        snprintf(m, sizeof(m), "no plugin serves task %s", j->msg.task);
        if (w->cfg.unknown_task_dlq) {
            kiln__w_dead_letter(w, j, m, NULL, "NotRegistered");
        } else {
            kiln__log_warnx("%s; returning it to %s in 5 s", m, j->qkey);
            kiln__w_defer(w, j, raw, rawlen, now + 5.0, NULL);
        }
        return;
    }
    if (check_files(j, err, sizeof(err)) < 0) {
        kiln__w_fail_with(w, j, "ValueError", err);
        return;
    }
    j->pool = (int)json_integer_value(pi);
    snprintf(j->job.task, sizeof(j->job.task), "%s", target);
    snprintf(j->job.id, sizeof(j->job.id), "%s", j->msg.id);
    j->job.args = json_incref(j->msg.args);
    j->job.kwargs = json_incref(j->msg.kwargs);
    j->job.args_text = j->msg.args_text; /* j->msg outlives the job */
    j->job.args_len = j->msg.args_len;
    j->job.kwargs_text = j->msg.kwargs_text;
    j->job.kwargs_len = j->msg.kwargs_len;
    j->job.files = json_array();
    j->job.soft_time_limit = j->msg.soft_time_limit > 0 ? j->msg.soft_time_limit : -1;
    j->job.time_limit = j->msg.time_limit;
    j->job.on_done = on_done;
    j->job.on_progress = on_progress;
    j->job.on_log = on_log;
    j->roots = &w->roots;
    w->predispatch++;
    j->breaker = breaker_for(w, target);
    if (j->breaker && strcmp(j->breaker->state, "closed") != 0) {
        char key[320], now_ms[32], reset[32];
        const char *av[4];
        snprintf(key, sizeof(key), KEY_PREFIX "breaker:%s", j->breaker->name);
        snprintf(now_ms, sizeof(now_ms), "%.0f", now * 1000.0);
        snprintf(reset, sizeof(reset), "%.0f", j->breaker->conf.reset_timeout * 1000.0);
        av[0] = key;
        av[1] = w->wid;
        av[2] = now_ms;
        av[3] = reset;
        j->busy = 1;
        if (kiln__w_script(w, &w->broker, 0, S_BREAKER_PROBE, probe_cb, j, 1, 3, av, NULL) < 0)
            probe_cb(&w->broker, NULL, j);
        return;
    }
    start_job(w, j);
}

/* ---- housekeeping --------------------------------------------------------- */

static void
heartbeat(kiln__worker_t *w)
{
    char hb[256], info[256], ms[32], now[32], queues[2048];
    size_t off = 0;
    int i;

    if (!w->broker.ready || w->unregistering)
        return;
    queues[0] = '\0';
    for (i = 0; i < w->cfg.nqueues && off < sizeof(queues); i++) {
        int n =
            snprintf(queues + off, sizeof(queues) - off, "%s%s", i ? "," : "", w->cfg.queues[i]);
        if (n > 0)
            off += (size_t)n;
    }
    snprintf(hb, sizeof(hb), KEY_PREFIX "hb:%s", w->wid);
    snprintf(info, sizeof(info), KEY_PREFIX "worker:%s", w->wid);
    snprintf(ms, sizeof(ms), "%.0f", w->cfg.heartbeat * 1000.0);
    snprintf(now, sizeof(now), "%.0f", kiln__w_now_epoch() * 1000.0);
    kiln__broker_callf(&w->broker, 0, NULL, NULL, "SET %s 1 PX %s", hb, ms);
    kiln__broker_callf(&w->broker, 0, NULL, NULL, "ZADD " KEY_PREFIX "workers %s %s", now, w->wid);
    kiln__broker_callf(&w->broker, 0, NULL, NULL,
                       "HSET %s host %s pid %d queues %s pools %d heartbeat %s", info, w->host,
                       (int)getpid(), queues, w->npools, now);
}

static void
hb_cb(uv_timer_t *t)
{
    heartbeat(t->data);
}

static void
recover_done(kiln__broker_t *b, redisReply *r, void *data)
{
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        kiln__log_warnx("recovered %lld in-flight message(s) of dead workers", r->integer);
}

static void
recover_cb(uv_timer_t *t)
{
    kiln__worker_t *w = t->data;
    const char *av[2] = {KEY_PREFIX "workers", KEY_PREFIX};
    if (w->broker.ready && !w->stopping)
        kiln__w_script(w, &w->broker, 0, S_RECOVER, recover_done, w, 1, 1, av, NULL);
}

static void
eta_cb(uv_timer_t *t)
{
    kiln__worker_t *w = t->data;
    char now[32];
    const char *av[3];
    if (!w->broker.ready || w->stopping)
        return;
    snprintf(now, sizeof(now), "%.0f", kiln__w_now_epoch() * 1000.0);
    av[0] = KEY_PREFIX "eta";
    av[1] = now;
    av[2] = "500";
    kiln__w_script(w, &w->broker, 0, S_ETA, NULL, NULL, 1, 2, av, NULL);
}

static void
script_loaded(kiln__broker_t *b, redisReply *r, void *data)
{
    kiln__worker_t *w = b->data;
    intptr_t id = (intptr_t)data;
    if (r && r->type == REDIS_REPLY_STRING)
        snprintf(w->sha[id], sizeof(w->sha[id]), "%s", r->str);
}

static void
reclaim_done(kiln__broker_t *b, redisReply *r, void *data)
{
    kiln__worker_t *w = data;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        kiln__log_warnx("returned %lld message(s) whose fetch reply was lost to their queues",
                        r->integer);
    kiln__w_maybe_fetch(w);
}

static void
policy_cb(kiln__broker_t *b, redisReply *r, void *data)
{
    kiln__worker_t *w = data;
    const char *p;
    char policy[64] = "";

    if (!r || r->type != REDIS_REPLY_STRING)
        return;
    p = strstr(r->str, "maxmemory_policy:");
    if (p)
        sscanf(p + 17, "%63[^\r\n]", policy);
    if (strncmp(policy, "allkeys-", 8) == 0) {
        if (w->cfg.allow_evicting_redis) {
            kiln__log_warnx("Redis maxmemory-policy is %s: it may evict queued tasks; running "
                            "anyway because allow_evicting_redis is set",
                            policy);
        } else {
            kiln__log(KILN__LOG_ERROR,
                      "refusing to run: Redis maxmemory-policy is %s, which can evict the keys "
                      "that hold queued tasks; set it to noeviction (or a volatile-* policy with "
                      "TTLs only on results), or pass --allow-evicting-redis",
                      policy);
            w->failed = 1;
            kiln__worker_shutdown(w, 1);
            return;
        }
    }
}

static void
broker_ready(kiln__broker_t *b)
{
    kiln__worker_t *w = b->data;
    const char *av[1 + 4096];
    char k1[200];
    intptr_t i;
    int n = 0;
    wjob_t *j;

    for (i = 0; i < S_COUNT; i++)
        kiln__broker_callf(b, 0, script_loaded, (void *)i, "SCRIPT LOAD %s", script_text[i]);
    kiln__broker_callf(b, 0, policy_cb, w, "INFO memory");
    heartbeat(w);
    /* A fetch whose reply was lost left messages in our hash that we do not
     * know: put them back. */
    kiln__w_key_inflight(w, k1, sizeof(k1));
    av[n++] = k1;
    for (j = w->jobs; j && n < 1 + 4096; j = j->next)
        av[n++] = j->tag;
    kiln__w_script(w, b, 0, S_RECLAIM, reclaim_done, w, 1, n - 1, av, NULL);
}

static void
broker_refused(kiln__broker_t *b, const char *why)
{
    kiln__worker_t *w = b->data;
    char where[300];
    if (w->failed)
        return;
    kiln__redis_url_format(&w->broker_url, 0, where, sizeof(where));
    kiln__log(KILN__LOG_ERROR,
              "Redis at %s refused kiln's credentials (%s): check the user and the password "
              "($KILN_REDIS_PASSWORD, KILN_BROKER_URL or password_file); stopping",
              where, why);
    w->failed = 1;
    kiln__worker_shutdown(w, 1);
}

static void
waiter_refused(kiln__broker_t *b, const char *why)
{
    waiter_t *wt = b->data;
    if (!wt->w->failed)
        broker_refused(&wt->w->broker, why);
}

static void
broker_down(kiln__broker_t *b, const char *why)
{
    kiln__worker_t *w = b->data;
    w->fetching = 0;
}

/* ---- life ------------------------------------------------------------------ */

int
kiln__worker_new(uv_loop_t *loop, const kiln__config_t *cfg, const kiln__redis_url_t *broker,
                 const kiln__redis_url_t *backend, kiln__worker_t **out, char *err, size_t errlen)
{
    kiln__worker_t *w = calloc(1, sizeof(*w));
    unsigned char rnd[6];
    int i, p;

    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    w->loop = loop;
    w->cfg = *cfg;
    w->broker_url = *broker;
    w->backend_url = *backend;
    w->same_backend = memcmp(broker, backend, sizeof(*broker)) == 0;
    w->task_pool = json_object();
    w->fast = json_object();
    if (gethostname(w->host, sizeof(w->host)) < 0)
        snprintf(w->host, sizeof(w->host), "localhost");
    w->host[sizeof(w->host) - 1] = '\0';
    if (getentropy(rnd, sizeof(rnd)) < 0)
        memset(rnd, 0, sizeof(rnd));
    snprintf(w->wid, sizeof(w->wid), "%s:%d:%02x%02x%02x%02x%02x%02x", w->host, (int)getpid(),
             rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    kiln__roots_init(&w->roots);
    for (i = 0; i < cfg->nroots; i++) {
        if (kiln__roots_add(&w->roots, cfg->roots[i], err, errlen) < 0) {
            json_decref(w->task_pool);
            free(w);
            return -EINVAL;
        }
    }
    for (i = 0; i < cfg->nqueues; i++) {
        for (p = 0; p < 4; p++) {
            waiter_t *wt = &w->waiters[w->nwaiters++];
            wt->w = w;
            kiln__celery_queue_key(cfg->queues[i], p * 3, wt->key, sizeof(wt->key));
        }
    }
    *out = w;
    return 0;
}

int
kiln__worker_add_pool(kiln__worker_t *w, const char *plugin, const json_t *tasks,
                      kiln__pool_t *pool)
{
    size_t i;
    json_t *t;

    if (w->npools >= KILN__MAX_POOLS)
        return -ENOSPC;
    snprintf(w->pools[w->npools].plugin, sizeof(w->pools[w->npools].plugin), "%s", plugin);
    w->pools[w->npools].pool = pool;
    w->pools[w->npools].w = w;
    json_array_foreach(tasks, i, t)
    {
        if (json_is_string(t))
            json_object_set_new(w->task_pool, json_string_value(t), json_integer(w->npools));
    }
    w->npools++;
    return 0;
}

static void
conn_closed(kiln__broker_t *b)
{
    kiln__worker_t *w = b->data;
    w->closed_conns++;
    kiln__w_maybe_done(w);
}

static void
waiter_closed(kiln__broker_t *b)
{
    waiter_t *wt = b->data;
    wt->w->closed_conns++;
    kiln__w_maybe_done(wt->w);
}

void
kiln__worker_start(kiln__worker_t *w, void (*stopped)(void *arg), void *arg)
{
    int i;

    w->started = 1;
    w->done = stopped;
    w->done_arg = arg;
    w->want_conns = 1;
    kiln__broker_open(&w->broker, w->loop, &w->broker_url, "broker");
    w->broker.quiet_until = uv_now(w->loop) + w->quiet_ms;
    w->broker.data = w;
    w->broker.on_ready = broker_ready;
    w->broker.on_down = broker_down;
    w->broker.on_refused = broker_refused;
    w->broker.on_closed = conn_closed;
    if (!w->same_backend) {
        kiln__broker_open(&w->backend, w->loop, &w->backend_url, "result backend");
        w->backend.data = w;
        w->backend.on_closed = conn_closed;
        w->want_conns++;
    }
    for (i = 0; i < w->nwaiters; i++) {
        char name[64];
        snprintf(name, sizeof(name), "waiter %d", i);
        kiln__broker_open(&w->waiters[i].conn, w->loop, &w->broker_url, name);
        w->waiters[i].conn.quiet_until = uv_now(w->loop) + w->quiet_ms;
        w->waiters[i].conn.data = &w->waiters[i];
        w->waiters[i].conn.on_ready = kiln__w_waiter_ready;
        w->waiters[i].conn.on_closed = waiter_closed;
        w->waiters[i].conn.on_refused = waiter_refused;
        w->want_conns++;
    }
    uv_check_init(w->loop, &w->ack_check);
    w->ack_check.data = w;
    uv_timer_init(w->loop, &w->ack_timer);
    w->ack_timer.data = w;
    uv_timer_init(w->loop, &w->st_timer);
    w->st_timer.data = w;
    uv_check_start(&w->ack_check, kiln__w_ack_check_cb);
    uv_timer_init(w->loop, &w->hb_timer);
    uv_timer_init(w->loop, &w->eta_timer);
    uv_timer_init(w->loop, &w->recover_timer);
    uv_timer_init(w->loop, &w->grace_timer);
    uv_timer_init(w->loop, &w->hoard_timer);
    w->hb_timer.data = w->eta_timer.data = w->recover_timer.data = w->grace_timer.data = w;
    w->hoard_timer.data = w;
    uv_timer_start(&w->hb_timer, hb_cb, (uint64_t)(w->cfg.heartbeat * 1000.0 / 3.0),
                   (uint64_t)(w->cfg.heartbeat * 1000.0 / 3.0));
    uv_timer_start(&w->eta_timer, eta_cb, ETA_INTERVAL_MS, ETA_INTERVAL_MS);
    uv_timer_start(&w->recover_timer, recover_cb, (uint64_t)(w->cfg.heartbeat * 500.0),
                   (uint64_t)(w->cfg.heartbeat * 500.0));
}

void
kiln__worker_kick(void *arg)
{
    kiln__w_maybe_fetch(arg);
}

void
kiln__worker_quiet_start(kiln__worker_t *w, uint64_t ms)
{
    w->quiet_ms = ms;
}

const char *
kiln__worker_id(const kiln__worker_t *w)
{
    return w->wid;
}

int
kiln__worker_failed(const kiln__worker_t *w)
{
    return w->failed;
}

static void
close_conns(kiln__worker_t *w)
{
    int i;
    kiln__broker_close(&w->broker);
    if (!w->same_backend)
        kiln__broker_close(&w->backend);
    for (i = 0; i < w->nwaiters; i++)
        kiln__broker_close(&w->waiters[i].conn);
}

static void
unregister_cb(kiln__broker_t *b, redisReply *r, void *data)
{
    close_conns(data);
}

static void
pool_closed(void *arg)
{
    wpool_t *wp = arg;
    wp->closed = 1;
    wp->w->pools_closed++;
    kiln__w_maybe_done(wp->w);
}

/* Shutdown, in stages: hold nothing (every message acked or requeued, the
 * pools gone, Redis has confirmed every update), then unregister, then close
 * the connections, then tell the caller. */
void
kiln__w_maybe_done(kiln__worker_t *w)
{
    if (!w->stopping)
        return;
    if (!w->unregistering) {
        char hb[256], info[256];
        if (w->njobs > 0 || w->pools_closed < w->npools || kiln__broker_unconfirmed(&w->broker) ||
            (!w->same_backend && kiln__broker_unconfirmed(&w->backend)))
            return;
        w->unregistering = 1;
        uv_timer_stop(&w->grace_timer);
        snprintf(hb, sizeof(hb), KEY_PREFIX "hb:%s", w->wid);
        snprintf(info, sizeof(info), KEY_PREFIX "worker:%s", w->wid);
        if (w->broker.ready) {
            kiln__broker_callf(&w->broker, 0, NULL, NULL, "ZREM " KEY_PREFIX "workers %s", w->wid);
            if (kiln__broker_callf(&w->broker, 0, unregister_cb, w, "DEL %s %s", hb, info) == 0)
                return;
        }
        close_conns(w);
        return;
    }
    if (w->closed_conns >= w->want_conns && !w->done_called) {
        w->done_called = 1;
        uv_close((uv_handle_t *)&w->hb_timer, NULL);
        uv_close((uv_handle_t *)&w->eta_timer, NULL);
        uv_close((uv_handle_t *)&w->recover_timer, NULL);
        uv_close((uv_handle_t *)&w->grace_timer, NULL);
        uv_close((uv_handle_t *)&w->ack_check, NULL);
        uv_close((uv_handle_t *)&w->ack_timer, NULL);
        uv_close((uv_handle_t *)&w->st_timer, NULL);
        uv_close((uv_handle_t *)&w->hoard_timer, NULL);
        if (w->done)
            w->done(w->done_arg);
    }
}

/* Redis stayed away during shutdown: stop waiting for it.  What it did not
 * confirm stays in this worker's in-flight hash in Redis, and another worker
 * recovers it once this worker's heartbeat expires. */
static void
giveup_cb(uv_timer_t *t)
{
    kiln__worker_t *w = t->data;
    unsigned n = kiln__broker_unconfirmed(&w->broker);
    if (w->unregistering)
        return;
    if (n || w->njobs) {
        kiln__log_warnx("Redis is unreachable: %u update(s) and %u message(s) not confirmed; they "
                        "stay in " KEY_PREFIX "inflight:%s and are recovered by another worker "
                        "%g s after this one stops",
                        n, w->njobs, w->wid, w->cfg.heartbeat);
    }
    w->unregistering = 1;
    close_conns(w);
}

void
kiln__worker_shutdown(kiln__worker_t *w, int cold)
{
    wjob_t *j, *next;
    int i, first = !w->stopping;

    if (w->stopping == 2 || (w->stopping && !cold))
        return;
    w->stopping = cold ? 2 : 1;
    kiln__log_warnx("%s shutdown: no new tasks%s", cold ? "cold" : "warm",
                    cold ? "; requeueing everything in flight"
                         : "; waiting for running tasks to finish");
    /* Fetched but not started: straight back to their queues. */
    for (j = w->jobs; j; j = next) {
        next = j->next;
        if (!j->dispatched && !j->finishing && !j->busy && j->job.args) {
            w->predispatch--;
            kiln__w_requeue(w, j);
        }
    }
    for (i = 0; i < w->npools; i++) {
        wpool_t *wp = &w->pools[i];
        if (wp->closed)
            continue;
        if (first || !wp->closing) {
            wp->closing = 1;
            kiln__pool_close(wp->pool, cold ? 0.0 : w->cfg.shutdown_grace, pool_closed, wp);
        } else {
            kiln__pool_close(wp->pool, 0.0, pool_closed, wp); /* turned cold: kill now */
        }
    }
    uv_timer_start(&w->grace_timer, giveup_cb,
                   (uint64_t)((cold ? 5.0 : w->cfg.shutdown_grace + 5.0) * 1000.0), 0);
    kiln__w_maybe_done(w);
}

void
kiln__worker_free(kiln__worker_t *w)
{
    breaker_t *b = w->breakers;
    while (b) {
        breaker_t *n = b->next;
        free(b);
        b = n;
    }
    while (w->spare) {
        wjob_t *j = w->spare;
        w->spare = j->next;
        free(j);
    }
    kiln__roots_free(&w->roots);
    json_decref(w->task_pool);
    json_decref(w->fast);
    free(w);
}
