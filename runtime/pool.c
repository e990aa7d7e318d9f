/*
 * pool.c -- children as seen from the supervisor: spawn, feed, time, bury.
 *
 * This file spawns children (through the zygote), deals tasks to them
 * (pipelining known-fast ones behind the running task), holds the hard
 * timer, recycles children after their budget, runs pools and probes, and
 * owns the supervisor's shared state.  pool_child.c hears each child: its
 * channel, the frames it sends, its death.
 */
#include "child.h"
#include "frame.h"
#include "log.h"
#include "pool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void pool_finish_cb(uv_timer_t *t);
static void pool_flush_cb(uv_prepare_t *h);

/* ---- helpers ---------------------------------------------------------- */

const char *
kiln__p_human_bytes(uint64_t b, char *buf, size_t len)
{
    if (b >= (1ull << 30) && b % (1ull << 30) == 0)
        snprintf(buf, len, "%llu GiB", (unsigned long long)(b >> 30));
    else if (b >= (1ull << 20))
        snprintf(buf, len, "%llu MiB", (unsigned long long)(b >> 20));
    else
        snprintf(buf, len, "%llu bytes", (unsigned long long)b);
    return buf;
}

const char *
kiln__p_signame(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGABRT:
        return "SIGABRT";
    case SIGILL:
        return "SIGILL";
    case SIGFPE:
        return "SIGFPE";
    case SIGKILL:
        return "SIGKILL";
    case SIGTERM:
        return "SIGTERM";
    case SIGSYS:
        return "SIGSYS";
    case SIGXCPU:
        return "SIGXCPU";
    case SIGXFSZ:
        return "SIGXFSZ";
    case SIGPIPE:
        return "SIGPIPE";
    case SIGTRAP:
        return "SIGTRAP";
    default:
        return "signal";
    }
}

void
kiln__pool_cfg_defaults(kiln__pool_cfg_t *cfg)
{
    if (!cfg->memory_bytes)
        cfg->memory_bytes = 256ull << 20;
    if (!cfg->fsize_bytes)
        cfg->fsize_bytes = 1ull << 30;
    if (cfg->time_limit <= 0)
        cfg->time_limit = 300;
    if (!cfg->max_tasks_per_child)
        cfg->max_tasks_per_child = KILN__DEFAULT_MAX_TASKS;
    if (!cfg->concurrency) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->concurrency = n > 0 ? (uint32_t)n : 1;
    }
    if (!cfg->nofile)
        cfg->nofile = 64;
}

/* ---- outcomes ----------------------------------------------------------- */

static void job_release(kiln__job_t *job);

void
kiln__p_job_finish(kiln__slot_t *sl, kiln__job_t *job, kiln__outcome_t *o)
{
    uint64_t now = uv_now(sl->sup->loop);
    o->runtime = job->started_ms ? (double)(now - job->started_ms) / 1000.0 : 0;
    if (sl->job == job)
        sl->job = NULL;
    uv_timer_stop(&sl->timer);
    job_release(job);
    if (job->on_done)
        job->on_done(job, o);
}

void
kiln__p_job_fail(kiln__slot_t *sl, kiln__job_t *job, const char *type, const char *msg, int died)
{
    kiln__outcome_t o;
    memset(&o, 0, sizeof(o));
    o.state = KILN__DONE_FAILURE;
    o.exc_type = type;
    o.exc_message = msg;
    o.child_died = died;
    o.shutdown = sl->kill_reason == KILL_CLOSE;
    kiln__p_job_finish(sl, job, &o);
}

static void
job_release(kiln__job_t *job)
{
    int i;
    json_decref(job->args);
    json_decref(job->kwargs);
    json_decref(job->files);
    job->args = job->kwargs = job->files = NULL;
    job->args_text = job->kwargs_text = NULL;
    for (i = 0; i < job->nfds; i++)
        close(job->fds[i]);
    job->nfds = 0;
}

/* Kill the current child of a slot through the zygote. */
static void
slot_kill(kiln__slot_t *sl, int reason)
{
    if (!sl->kill_reason)
        sl->kill_reason = reason;
    if (kiln__zygote_kill(&sl->sup->zygote, sl->id, sl->gen, SIGKILL) < 0)
        kiln__log_warn("slot %u: cannot ask the zygote to kill its child", sl->id);
}

void
kiln__p_slot_protocol_error(kiln__slot_t *sl, const char *fmt, ...)
{
    va_list ap;
    if (sl->kill_reason == KILL_PROTOCOL)
        return;
    snprintf(sl->cause_type, sizeof(sl->cause_type), "ProtocolError");
    va_start(ap, fmt);
    vsnprintf(sl->cause, sizeof(sl->cause), fmt, ap);
    va_end(ap);
    kiln__log_warnx("child %d (slot %u): %s; killing it", (int)sl->pid, sl->id, sl->cause);
    if (sl->conn)
        uv_poll_stop(&sl->conn->poll);
    slot_kill(sl, KILL_PROTOCOL);
}

/* ---- spawning ----------------------------------------------------------- */

void
kiln__p_slot_timer_cb(uv_timer_t *t)
{
    kiln__slot_t *sl = t->data;
    if (sl->state == SLOT_BUSY) {
        kiln__log(KILN__LOG_INFO, "task %s[%s] passed its hard time limit; killing child %d",
                  sl->job ? sl->job->task : "?", sl->job ? sl->job->id : "?", (int)sl->pid);
        slot_kill(sl, KILL_TIMEOUT);
    } else if (sl->state == SLOT_STARTING) {
        slot_kill(sl, KILL_LOAD_TIMEOUT);
    } else if (sl->state == SLOT_RETIRING) {
        slot_kill(sl, KILL_CLOSE);
    }
}

/* How many tasks the child about to start in `sl` may run.  The first
 * children of a pool get staggered budgets (slot k of n: max * (n - k) / n),
 * later ones the full max_tasks_per_child: children of equal speed then
 * retire one at a time, never all together, and the pool never stops while
 * they all start again (gunicorn's max_requests_jitter, made even). */
static uint32_t
slot_budget(const kiln__pool_t *p, const kiln__slot_t *sl)
{
    uint32_t max = p->cfg.max_tasks_per_child, n = p->nslots, k, b;

    if (!max || sl->gen != 1 || n < 2)
        return max;
    for (k = 0; k < n && p->slots[k] != sl; k++)
        ;
    if (k == n)
        return max;
    b = (uint32_t)((uint64_t)max * (n - k) / n);
    return b ? b : 1;
}

void
kiln__p_slot_spawn(kiln__slot_t *sl)
{
    kiln__super_t *s = sl->sup;
    kiln__pool_t *p = sl->pool;
    kiln__jail_t *jail;
    char err[256];
    int sv[2];
    conn_t *c;

    jail = calloc(1, sizeof(*jail));
    c = calloc(1, sizeof(*c));
    if (!jail || !c || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        kiln__log_warn("slot %u: cannot prepare a child", sl->id);
        free(jail);
        free(c);
        return;
    }
    sl->gen++;
    sl->max_tasks = slot_budget(p, sl);
    jail->slot = sl->id;
    jail->profile = p->cfg.profile;
    jail->memory_bytes = p->cfg.memory_bytes;
    jail->fsize_bytes = p->cfg.fsize_bytes;
    jail->cpu_seconds = (uint32_t)(p->cfg.time_limit * 2 + 5);
    if (p->cfg.max_tasks_per_child) {
        double cpu = (p->cfg.time_limit + 1) * p->cfg.max_tasks_per_child + 5;
        jail->cpu_seconds = cpu < 4e9 ? (uint32_t)cpu : 4000000000u;
    }
    jail->nofile = p->cfg.nofile;
    jail->nproc = p->cfg.profile == KILN__PROFILE_THREADS ? 64 : 1;
    if (s->caps.is_root) {
        jail->uid = s->uid_base + sl->id;
        jail->gid = s->uid_base + sl->id;
    }
    snprintf(jail->plugin_path, sizeof(jail->plugin_path), "%s", p->cfg.plugin_path);
    snprintf(jail->settings, sizeof(jail->settings), "%s", p->cfg.settings);
    jail->report_rss = p->cfg.max_rss_bytes > 0;
    if (s->cgroup.memory_dir[0] || s->cgroup.pids_dir[0]) {
        if (kiln__cgroup_slot_procs(&s->cgroup, sl->id, jail->cgroup_memory_procs,
                                    jail->cgroup_pids_procs) < 0)
            kiln__log_warnx("slot %u: cgroup paths too long; using rlimits only", sl->id);
        else if (kiln__cgroup_slot_limit(&s->cgroup, sl->id, p->cfg.memory_bytes, jail->nproc + 8,
                                         err, sizeof(err)) < 0)
            kiln__log_warnx("slot %u: %s", sl->id, err);
    }
    sl->oom_before = kiln__cgroup_slot_oom_kills(&s->cgroup, sl->id);

    c->fd = sv[0];
    c->slot = sl;
    kiln__frame_reader_init(&c->rd);
    uv_poll_init(s->loop, &c->poll, c->fd);
    c->poll.data = c;
    kiln__p_conn_want(c, UV_READABLE);
    sl->conn = c;
    sl->state = SLOT_STARTING;
    sl->pid = 0;
    uv_timer_start(&sl->timer, kiln__p_slot_timer_cb, LOAD_TIMEOUT_MS, 0);
    if (kiln__zygote_spawn(&s->zygote, sl->id, sl->gen, jail, p->probe, sl->max_tasks, sv[1]) < 0) {
        kiln__log_warn("slot %u: cannot ask the zygote for a child", sl->id);
        snprintf(sl->cause_type, sizeof(sl->cause_type), "WorkerLostError");
        snprintf(sl->cause, sizeof(sl->cause), "the zygote refused the spawn request");
    }
    close(sv[1]);
    free(jail);
}

/* ---- dispatch ------------------------------------------------------------ */

/* Append a TASK frame for `job` to the child's pending bytes; the caller
 * flushes.  Descriptors travel only with the first frame of a write (the
 * dispatcher never queues a task with files behind another).  0 or -errno. */
static int
slot_send_task(kiln__slot_t *sl, kiln__job_t *job, int behind)
{
    kiln__pool_cfg_t *cfg = &sl->pool->cfg;
    conn_t *c = sl->conn;
    double soft = job->soft_time_limit < 0 ? cfg->soft_time_limit : job->soft_time_limit;
    double hard = job->time_limit > 0 ? job->time_limit : cfg->time_limit;
    int i, rc;

    if (job->nfds > 0 && c->w.len > 0)
        return -EBUSY;
    if ((rc = kiln__task_frame(&c->w, job, soft, hard)) < 0)
        return rc;
    for (i = 0; i < job->nfds; i++)
        c->wfds[i] = job->fds[i];
    c->nwfds = job->nfds;
    job->nfds = 0; /* the channel closes them once sent */

    if (behind) {
        /* Its timer starts when the child reaches it. */
        job->next = NULL;
        if (sl->behind_tail)
            sl->behind_tail->next = job;
        else
            sl->behind_head = job;
        sl->behind_tail = job;
        sl->nbehind++;
        return 0;
    }
    sl->job = job;
    sl->state = SLOT_BUSY;
    job->started_ms = uv_now(sl->sup->loop);
    uv_timer_start(&sl->timer, kiln__p_slot_timer_cb, (uint64_t)(hard * 1000.0) + 1, 0);
    if (job->on_start)
        job->on_start(job);
    return 0;
}

/* May the head of the queue go behind the task `sl` is running? */
static int
slot_takes_behind(const kiln__slot_t *sl, const kiln__pool_t *p)
{
    const kiln__job_t *job = p->qhead;
    if (!sl->conn || sl->state != SLOT_BUSY || sl->retire_after || sl->kill_reason || !job ||
        !job->fast || job->nfds > 0 || !sl->refill || sl->nbehind >= p->depth)
        return 0;
    if (sl->conn->woff > 0)
        return 0; /* a write is half done: wait for it */
    if (sl->max_tasks && sl->tasks_done + 2 + sl->nbehind > sl->max_tasks)
        return 0;
    return 1;
}

static void
pool_flush_cb(uv_prepare_t *h)
{
    kiln__pool_t *p = h->data;
    uint32_t i;

    uv_prepare_stop(h);
    for (i = 0; i < p->nslots; i++) {
        kiln__slot_t *sl = p->slots[i];
        if (sl->conn && sl->conn->w.len > sl->conn->woff && !(sl->conn->events & UV_WRITABLE) &&
            kiln__p_conn_flush(sl->conn) < 0)
            slot_kill(sl, KILL_PROTOCOL);
    }
}

static kiln__job_t *
pool_pop(kiln__pool_t *p)
{
    kiln__job_t *job = p->qhead;
    p->qhead = job->next;
    if (!p->qhead)
        p->qtail = NULL;
    p->queued--;
    job->next = NULL;
    return job;
}

void
kiln__p_pool_dispatch(kiln__pool_t *p)
{
    uint32_t i;
    int more;

    if (p->broken[0]) {
        while (p->qhead) {
            kiln__job_t *job = pool_pop(p);
            kiln__outcome_t o;
            job_release(job);
            memset(&o, 0, sizeof(o));
            o.state = KILN__DONE_FAILURE;
            o.exc_type = p->broken_type;
            o.exc_message = p->broken;
            o.shutdown = p->closing;
            if (job->on_done)
                job->on_done(job, &o);
        }
        kiln__p_pool_maybe_closed(p);
        return;
    }
    /* Idle children first, one task each. */
    for (i = 0; i < p->nslots && p->qhead; i++) {
        kiln__slot_t *sl = p->slots[i];
        kiln__job_t *job;
        int rc;
        if (!sl->conn || sl->state != SLOT_IDLE || sl->conn->w.len > 0)
            continue;
        job = pool_pop(p);
        rc = slot_send_task(sl, job, 0);
        if (rc < 0) {
            char m[160];
            snprintf(m, sizeof(m), "cannot send the task to child %d: %s", (int)sl->pid,
                     strerror(-rc));
            kiln__p_job_fail(sl, job, "WorkerLostError", m, 0);
            if (sl->state == SLOT_BUSY)
                sl->state = SLOT_IDLE;
            slot_kill(sl, KILL_PROTOCOL);
        }
    }
    /* Then, for tasks marked fast, up to PIPE_DEPTH behind each running
     * one, dealt round the children so that none hoards them.  A child is
     * topped up only once it is down to PIPE_LOW: several tasks then share
     * one write and one wake-up of the child. */
    for (i = 0; i < p->nslots; i++)
        p->slots[i]->refill = p->slots[i]->nbehind <= p->depth * PIPE_LOW / PIPE_DEPTH;
    do {
        more = 0;
        for (i = 0; i < p->nslots && p->qhead; i++) {
            kiln__slot_t *sl = p->slots[i];
            kiln__job_t *job;
            if (!slot_takes_behind(sl, p))
                continue;
            job = pool_pop(p);
            if (slot_send_task(sl, job, 1) < 0) {
                kiln__p_job_fail(sl, job, "WorkerLostError", "cannot send the task to its child",
                                 0);
                slot_kill(sl, KILL_PROTOCOL);
                continue;
            }
            more = 1;
        }
    } while (more && p->qhead);
    /* One write per child for everything it was given in this loop turn. */
    for (i = 0; i < p->nslots; i++) {
        if (p->slots[i]->conn && p->slots[i]->conn->w.len > 0) {
            uv_prepare_start(&p->flush, pool_flush_cb);
            break;
        }
    }
    if (!p->closing && !p->qhead && p->cfg.on_idle) {
        for (i = 0; i < p->nslots; i++) {
            if (p->slots[i]->state == SLOT_IDLE) {
                p->cfg.on_idle(p->cfg.idle_arg);
                break;
            }
        }
    }
    kiln__p_pool_maybe_closed(p);
}

/* ---- pools ---------------------------------------------------------------- */

static int
slot_alloc(kiln__super_t *s, kiln__pool_t *p, kiln__slot_t **out)
{
    kiln__slot_t *sl;
    uint32_t id;

    for (id = 0; id < s->nslots; id++)
        if (!s->slots[id])
            break;
    if (id == s->nslots) {
        if (s->nslots >= s->maxslots)
            return -ENOSPC;
        s->nslots++;
    }
    sl = calloc(1, sizeof(*sl));
    if (!sl)
        return -ENOMEM;
    sl->sup = s;
    sl->pool = p;
    sl->id = id;
    uv_timer_init(s->loop, &sl->timer);
    sl->timer.data = sl;
    s->slots[id] = sl;
    *out = sl;
    return 0;
}

static void
slot_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
pool_closed(uv_handle_t *h)
{
    kiln__pool_t *p = h->data;
    if (--p->handles == 0)
        free(p);
}

static void super_teardown(kiln__super_t *s);

static void
pool_free(kiln__pool_t *p)
{
    kiln__super_t *s = p->sup;
    uint32_t i;
    for (i = 0; i < p->nslots; i++) {
        kiln__slot_t *sl = p->slots[i];
        p->sup->slots[sl->id] = NULL;
        uv_close((uv_handle_t *)&sl->timer, slot_timer_closed);
    }
    json_decref(p->info.hello);
    free(p->slots);
    uv_close((uv_handle_t *)&p->grace_timer, pool_closed);
    uv_close((uv_handle_t *)&p->flush, pool_closed);
    s->npools--;
    if (s->closing && s->npools == 0)
        super_teardown(s);
}

static int
pool_create(kiln__super_t *s, const kiln__pool_cfg_t *cfg, int probe, kiln__pool_t **out, char *err,
            size_t errlen)
{
    kiln__pool_t *p = calloc(1, sizeof(*p));
    uint32_t i;

    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->sup = s;
    s->npools++;
    p->cfg = *cfg;
    kiln__pool_cfg_defaults(&p->cfg);
    p->probe = probe;
    if (probe)
        p->cfg.concurrency = 1;
    p->slots = calloc(p->cfg.concurrency, sizeof(kiln__slot_t *));
    if (!p->slots) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    uv_timer_init(s->loop, &p->grace_timer);
    p->grace_timer.data = p;
    p->depth = PIPE_DEPTH;
    uv_prepare_init(s->loop, &p->flush);
    p->flush.data = p;
    p->handles = 2;
    for (i = 0; i < p->cfg.concurrency; i++) {
        int rc = slot_alloc(s, p, &p->slots[i]);
        if (rc < 0) {
            snprintf(err, errlen, "no child slot left (%u in use, %u configured)", s->nslots,
                     s->maxslots);
            p->nslots = i;
            pool_free(p);
            return rc;
        }
        p->nslots = i + 1;
    }
    for (i = 0; i < p->nslots; i++)
        kiln__p_slot_spawn(p->slots[i]);
    *out = p;
    return 0;
}

int
kiln__pool_new(kiln__super_t *s, const kiln__pool_cfg_t *cfg, kiln__pool_t **out, char *err,
               size_t errlen)
{
    return pool_create(s, cfg, 0, out, err, errlen);
}

int
kiln__plugin_probe(kiln__super_t *s, const char *path, kiln__probe_cb cb, void *arg)
{
    kiln__pool_cfg_t cfg;
    kiln__pool_t *p;
    char err[256];
    int rc;

    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.plugin_path, sizeof(cfg.plugin_path), "%s", path);
    cfg.profile = KILN__PROFILE_COMPUTE;
    cfg.concurrency = 1;
    cfg.time_limit = 30;
    rc = pool_create(s, &cfg, 1, &p, err, sizeof(err));
    if (rc < 0)
        return rc;
    p->probe_cb = cb;
    p->probe_arg = arg;
    p->closing = 1; /* frees itself once the probe child has exited */
    return 0;
}

int
kiln__pool_submit(kiln__pool_t *p, kiln__job_t *job)
{
    if (p->closing)
        return -ESHUTDOWN;
    if (!json_is_array(job->args) || !json_is_object(job->kwargs))
        return -EINVAL;
    job->seq = ++p->sup->next_seq;
    job->next = NULL;
    if (p->qtail)
        p->qtail->next = job;
    else
        p->qhead = job;
    p->qtail = job;
    p->queued++;
    kiln__p_pool_dispatch(p);
    return 0;
}

unsigned
kiln__pool_idle(const kiln__pool_t *p)
{
    unsigned idle = 0;
    uint32_t i;
    for (i = 0; i < p->nslots; i++)
        if (p->slots[i]->state == SLOT_IDLE)
            idle++;
    return idle > p->queued ? idle - p->queued : 0;
}

unsigned
kiln__pool_queued(const kiln__pool_t *p)
{
    return p->queued;
}

void
kiln__pool_set_depth(kiln__pool_t *p, unsigned depth)
{
    p->depth = depth > PIPE_DEPTH ? PIPE_DEPTH : depth;
}

unsigned
kiln__pool_behind(const kiln__pool_t *p)
{
    unsigned n = 0;
    uint32_t i;
    for (i = 0; i < p->nslots; i++)
        n += p->slots[i]->nbehind;
    return n;
}

kiln__job_t *
kiln__pool_unqueue(kiln__pool_t *p)
{
    kiln__job_t *list = p->qhead;
    p->qhead = p->qtail = NULL;
    p->queued = 0;
    return list;
}

uint64_t
kiln__pool_longest_running(const kiln__pool_t *p)
{
    uint64_t now = uv_now(p->sup->loop), longest = 0;
    uint32_t i;
    for (i = 0; i < p->nslots; i++) {
        const kiln__job_t *job = p->slots[i]->job;
        if (p->slots[i]->state == SLOT_BUSY && job && now - job->started_ms > longest)
            longest = now - job->started_ms;
    }
    return longest;
}

void
kiln__pool_counts(const kiln__pool_t *p, unsigned *children, unsigned *idle)
{
    uint32_t i;
    *children = 0;
    *idle = 0;
    for (i = 0; i < p->nslots; i++) {
        if (p->slots[i]->state == SLOT_IDLE)
            (*idle)++;
        if (p->slots[i]->state == SLOT_IDLE || p->slots[i]->state == SLOT_BUSY)
            (*children)++;
    }
}

void
kiln__p_pool_maybe_closed(kiln__pool_t *p)
{
    uint32_t i;
    if (!p->closing)
        return;
    for (i = 0; i < p->nslots; i++) {
        kiln__slot_t *sl = p->slots[i];
        if (sl->state == SLOT_IDLE) {
            if (sl->conn)
                (void)kiln__frame_send(sl->conn->fd, KILN__FRAME_QUIT, 0, NULL, 0, NULL, 0);
            sl->state = SLOT_RETIRING;
            uv_timer_start(&sl->timer, kiln__p_slot_timer_cb, 5000, 0);
        }
        if (sl->state != SLOT_FREE)
            return;
    }
    /* Finish on the next loop turn: callers up the stack still hold p. */
    if (!p->finished) {
        p->finished = 1;
        uv_timer_stop(&p->grace_timer);
        uv_timer_start(&p->grace_timer, pool_finish_cb, 0, 0);
    }
}

static void
pool_finish_cb(uv_timer_t *t)
{
    kiln__pool_t *p = t->data;
    void (*cb)(void *) = p->close_cb;
    void *arg = p->close_arg;

    if (p->probe && !p->probe_done)
        kiln__p_probe_report(p);
    pool_free(p);
    if (cb)
        cb(arg);
}

static void
grace_cb(uv_timer_t *t)
{
    kiln__pool_t *p = t->data;
    uint32_t i;
    for (i = 0; i < p->nslots; i++)
        if (p->slots[i]->state != SLOT_FREE)
            slot_kill(p->slots[i], KILL_CLOSE);
}

void
kiln__pool_close(kiln__pool_t *p, double grace, void (*cb)(void *arg), void *arg)
{
    p->closing = 1;
    p->close_cb = cb;
    p->close_arg = arg;
    snprintf(p->broken_type, sizeof(p->broken_type), "WorkerLostError");
    snprintf(p->broken, sizeof(p->broken), "the pool closed before the task ran");
    kiln__p_pool_dispatch(p);
    p->broken[0] = '\0';
    if (grace >= 0 && !p->finished)
        uv_timer_start(&p->grace_timer, grace_cb, (uint64_t)(grace * 1000.0), 0);
    kiln__p_pool_maybe_closed(p);
}

/* ---- the supervisor's shared state ---------------------------------------- */

int
kiln__super_init(kiln__super_t *s, uv_loop_t *loop, uint32_t maxslots, char *err, size_t errlen)
{
    int rc;

    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->maxslots = maxslots;
    s->uid_base = UID_BASE_DEFAULT;
    s->slots = calloc(maxslots, sizeof(kiln__slot_t *));
    if (!s->slots) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = kiln__caps_probe(&s->caps);
    if (rc < 0) {
        snprintf(err, errlen, "probing sandbox capabilities: %s", strerror(-rc));
        return rc;
    }
    rc = kiln__seccomp_compile(&s->filters, err, errlen);
    if (rc < 0)
        return rc;
    rc = kiln__cgroup_setup(&s->cgroup, &s->caps, maxslots, err, errlen);
    if (rc < 0) {
        /* Not fatal: rlimits still cap memory.  Say so. */
        kiln__log_warnx("memory/pids cgroups unavailable, falling back to rlimits: %s", err);
        memset(&s->cgroup, 0, sizeof(s->cgroup));
    }
    rc = kiln__zygote_start(&s->zygote, &s->caps, &s->filters, err, errlen);
    if (rc < 0)
        return rc;
    uv_poll_init(loop, &s->zpoll, s->zygote.fd);
    s->zpoll.data = s;
    uv_poll_start(&s->zpoll, UV_READABLE, kiln__p_zygote_cb);
    return 0;
}

static void
super_teardown(kiln__super_t *s)
{
    uv_close((uv_handle_t *)&s->zpoll, NULL);
    kiln__zygote_stop(&s->zygote);
    kiln__cgroup_teardown(&s->cgroup);
    kiln__seccomp_free(&s->filters);
    free(s->slots);
    s->slots = NULL;
}

void
kiln__super_close(kiln__super_t *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    if (s->npools == 0)
        super_teardown(s);
}
