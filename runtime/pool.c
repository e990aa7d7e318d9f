/*
 * pool.c -- children as seen from the supervisor: spawn, feed, time, bury.
 *
 * Every byte from a child is untrusted.  Frames are checked against the
 * per-type cap before their payload is read, payloads are parsed with
 * jansson, and a child that sends anything out of place is killed and its
 * task failed with ProtocolError naming the cause.  A child's death is
 * explained from what we know: a trapped syscall it reported, the hard
 * timer we fired, the cgroup's OOM counter, or the signal that ended it.
 */
#include "pool.h"

#include "child.h"
#include "frame.h"
#include "log.h"
#include "task_frame.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOAD_TIMEOUT_MS   30000
#define PIPE_DEPTH        16 /* tasks sent behind a running one, fast tasks only */
#define PIPE_LOW          6  /* top up the tasks behind once down to this many */
#define MAX_INIT_FAILURES 3
/* Tasks a child runs before it is recycled, unless the plugin or the config
 * says otherwise (image 50, video 10).  A new jailed child costs ~7 ms of
 * CPU on this project's VM (fork, namespaces, seccomp, Landlock, dlopen,
 * copy-on-write faults): at 1000 that was 30% of the children's CPU for
 * sub-millisecond tasks.  Leaks are bounded by the memory cap and max_rss. */
#define KILN__DEFAULT_MAX_TASKS 10000
#define UID_BASE_DEFAULT        61000

enum slot_state {
    SLOT_FREE = 0, /* no child */
    SLOT_STARTING, /* spawn requested; waiting for HELLO and READY */
    SLOT_IDLE,     /* READY: waiting for a task */
    SLOT_BUSY,     /* running slot->job */
    SLOT_RETIRING, /* told to quit or past max tasks: waiting for its exit */
};

enum kill_reason { KILL_NONE = 0, KILL_TIMEOUT, KILL_LOAD_TIMEOUT, KILL_PROTOCOL, KILL_CLOSE };

typedef struct conn {
    uv_poll_t poll;
    int fd;
    int events;
    kiln__frame_reader_t rd;
    kiln__slot_t *slot;
    kiln__wbuf_t w; /* pending TASK frames */
    size_t woff;
    int wfds[16];
    int nwfds;
} conn_t;

struct kiln__slot {
    kiln__super_t *sup;
    kiln__pool_t *pool;
    uint32_t id;
    uint64_t gen;
    int state;
    pid_t pid;
    conn_t *conn;
    uv_timer_t timer;
    kiln__job_t *job; /* the task the child is running */
    /* Sent behind it, in order, not started yet (tasks marked fast only):
     * the child finds its next task in its socket instead of waiting a
     * round trip, and several go out in one write.  Linked by job->next. */
    kiln__job_t *behind_head, *behind_tail;
    unsigned nbehind;
    int refill;       /* may be topped up in this dispatch */
    int retire_after; /* recycle once the tasks sent behind are done (max_rss crossed) */
    uint32_t tasks_done;
    uint32_t max_tasks; /* this child's task budget (0 = none), see slot_budget */
    int kill_reason;
    long oom_before;
    char cause_type[64]; /* what the child told us before dying */
    char cause[1024];
};

struct kiln__pool {
    kiln__super_t *sup;
    kiln__pool_cfg_t cfg;
    kiln__slot_t **slots;
    uint32_t nslots;
    kiln__job_t *qhead, *qtail;
    unsigned queued;
    unsigned init_failures;
    char broken[1200]; /* set when children cannot start: jobs fail with it */
    char broken_type[64];
    int closing;
    int finished; /* every child gone; freed on the next loop turn */
    uv_timer_t grace_timer;
    uv_prepare_t flush; /* writes the TASK frames queued in one loop turn */
    unsigned depth;     /* tasks that may wait behind a running one (<= PIPE_DEPTH) */
    int handles;        /* open handles; p is freed when the last closes */
    void (*close_cb)(void *);
    void *close_arg;
    /* probe mode */
    int probe;
    kiln__probe_cb probe_cb;
    void *probe_arg;
    int probe_done;
    kiln__plugin_info_t info;
};

static void slot_spawn(kiln__slot_t *sl);
static void slot_timer_cb(uv_timer_t *t);
static void pool_dispatch(kiln__pool_t *p);
static void pool_maybe_closed(kiln__pool_t *p);
static void pool_finish_cb(uv_timer_t *t);
static void pool_flush_cb(uv_prepare_t *h);

/* ---- helpers ---------------------------------------------------------- */

static const char *
human_bytes(uint64_t b, char *buf, size_t len)
{
    if (b >= (1ull << 30) && b % (1ull << 30) == 0)
        snprintf(buf, len, "%llu GiB", (unsigned long long)(b >> 30));
    else if (b >= (1ull << 20))
        snprintf(buf, len, "%llu MiB", (unsigned long long)(b >> 20));
    else
        snprintf(buf, len, "%llu bytes", (unsigned long long)b);
    return buf;
}

static const char *
signame(int sig)
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

/* ---- the child's channel ---------------------------------------------- */

static void
conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    int i;
    close(c->fd);
    for (i = 0; i < c->nwfds; i++)
        close(c->wfds[i]);
    kiln__wbuf_free(&c->w);
    kiln__frame_reader_free(&c->rd);
    free(c);
}

static void
conn_close(conn_t *c)
{
    if (!c)
        return;
    if (c->slot && c->slot->conn == c)
        c->slot->conn = NULL;
    c->slot = NULL;
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, conn_closed);
}

static void conn_cb(uv_poll_t *h, int status, int events);

static void
conn_want(conn_t *c, int events)
{
    if (c->events != events) {
        c->events = events;
        uv_poll_start(&c->poll, events, conn_cb);
    }
}

/* Try to flush pending TASK bytes.  0, or -errno if the child is gone. */
static int
conn_flush(conn_t *c)
{
    while (c->woff < c->w.len) {
        struct iovec iov = {c->w.data + c->woff, c->w.len - c->woff};
        struct msghdr msg;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * 16)];
        } ctl;
        ssize_t n;

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (c->nwfds > 0) {
            struct cmsghdr *cm;
            memset(&ctl, 0, sizeof(ctl));
            msg.msg_control = ctl.buf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)c->nwfds);
            cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)c->nwfds);
            memcpy(CMSG_DATA(cm), c->wfds, sizeof(int) * (size_t)c->nwfds);
        }
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_want(c, UV_READABLE | UV_WRITABLE);
                return 0;
            }
            return -errno;
        }
        if (c->nwfds > 0) {
            int i;
            for (i = 0; i < c->nwfds; i++)
                close(c->wfds[i]);
            c->nwfds = 0;
        }
        c->woff += (size_t)n;
    }
    kiln__wbuf_reset(&c->w);
    c->woff = 0;
    conn_want(c, UV_READABLE);
    return 0;
}

/* ---- outcomes ----------------------------------------------------------- */

static void job_release(kiln__job_t *job);

static void
job_finish(kiln__slot_t *sl, kiln__job_t *job, kiln__outcome_t *o)
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

static void
job_fail(kiln__slot_t *sl, kiln__job_t *job, const char *type, const char *msg, int died)
{
    kiln__outcome_t o;
    memset(&o, 0, sizeof(o));
    o.state = KILN__DONE_FAILURE;
    o.exc_type = type;
    o.exc_message = msg;
    o.child_died = died;
    o.shutdown = sl->kill_reason == KILL_CLOSE;
    job_finish(sl, job, &o);
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

static void slot_protocol_error(kiln__slot_t *sl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
slot_protocol_error(kiln__slot_t *sl, const char *fmt, ...)
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

/* ---- frames from a child ------------------------------------------------ */

static void
probe_report(kiln__pool_t *p)
{
    if (p->probe_done)
        return;
    p->probe_done = 1;
    if (p->probe_cb)
        p->probe_cb(p->sup, &p->info, p->probe_arg);
}

static void
handle_hello(kiln__slot_t *sl, json_t *o)
{
    kiln__pool_t *p = sl->pool;
    json_t *tasks = json_object_get(o, "tasks");
    if (!json_is_string(json_object_get(o, "name")) || !json_is_array(tasks)) {
        slot_protocol_error(sl, "HELLO frame lacks a name or a task list");
        return;
    }
    if (p->probe) {
        p->info.hello = json_incref(o);
        probe_report(p);
        (void)kiln__frame_send(sl->conn->fd, KILN__FRAME_QUIT, 0, NULL, 0, NULL, 0);
        sl->state = SLOT_RETIRING;
    }
}

static void
handle_outcome(kiln__slot_t *sl, uint32_t type, json_t *o)
{
    kiln__job_t *job = sl->job;
    kiln__outcome_t out;
    const char *t = NULL, *m = NULL;
    double cd = 0;

    memset(&out, 0, sizeof(out));
    {
        json_int_t kb = json_integer_value(json_object_get(o, "rss_kb"));
        if (kb > 0 && kb < (json_int_t)1 << 40)
            out.child_maxrss = (uint64_t)kb * 1024u;
    }
    if (type == KILN__FRAME_RESULT) {
        json_t *r = json_object_get(o, "result");
        if (!r) {
            slot_protocol_error(sl, "RESULT frame has no \"result\" member");
            return;
        }
        out.state = KILN__DONE_SUCCESS;
        out.result = r;
    } else if (type == KILN__FRAME_FAIL) {
        if (json_unpack(o, "{s:s,s:s}", "exc_type", &t, "exc_message", &m) < 0) {
            slot_protocol_error(sl, "FAIL frame lacks exc_type or exc_message strings");
            return;
        }
        out.state = KILN__DONE_FAILURE;
        out.exc_type = t;
        out.exc_message = m;
    } else {
        if (json_unpack(o, "{s:F,s?s}", "countdown", &cd, "reason", &m) < 0) {
            slot_protocol_error(sl, "RETRY frame lacks a numeric countdown");
            return;
        }
        out.state = KILN__DONE_RETRY;
        out.exc_type = "Retry";
        out.exc_message = m ? m : "";
        out.countdown = cd;
    }
    sl->tasks_done++;
    if (sl->behind_head) {
        /* The child has started the first task sent behind this one. */
        kiln__job_t *next = sl->behind_head;
        double hard = next->time_limit > 0 ? next->time_limit : sl->pool->cfg.time_limit;
        if (sl->pool->cfg.max_rss_bytes && out.child_maxrss > sl->pool->cfg.max_rss_bytes)
            sl->retire_after = 1;
        sl->behind_head = next->next;
        if (!sl->behind_head)
            sl->behind_tail = NULL;
        sl->nbehind--;
        next->next = NULL;
        job_finish(sl, job, &out);
        sl->job = next;
        next->started_ms = uv_now(sl->sup->loop);
        uv_timer_start(&sl->timer, slot_timer_cb, (uint64_t)(hard * 1000.0) + 1, 0);
        if (next->on_start)
            next->on_start(next);
        pool_dispatch(sl->pool);
        return;
    }
    if (sl->max_tasks && sl->tasks_done >= sl->max_tasks) {
        kiln__log(KILN__LOG_INFO, "child %d (slot %u) ran its %u tasks; recycling it", (int)sl->pid,
                  sl->id, sl->max_tasks);
        sl->state = SLOT_RETIRING; /* the child exits on its own */
    } else if (sl->retire_after ||
               (sl->pool->cfg.max_rss_bytes && out.child_maxrss > sl->pool->cfg.max_rss_bytes)) {
        kiln__log(KILN__LOG_INFO,
                  "child %d (slot %u) reached %llu MiB RSS, above max_rss; "
                  "recycling it",
                  (int)sl->pid, sl->id, (unsigned long long)(out.child_maxrss >> 20));
        (void)kiln__frame_send(sl->conn->fd, KILN__FRAME_QUIT, 0, NULL, 0, NULL, 0);
        sl->state = SLOT_RETIRING;
        uv_timer_start(&sl->timer, slot_timer_cb, 5000, 0);
    } else {
        sl->state = SLOT_IDLE;
    }
    job_finish(sl, job, &out);
    pool_dispatch(sl->pool);
}

static void
handle_frame(kiln__slot_t *sl, const kiln__frame_hdr_t *h, const char *payload)
{
    json_error_t jerr;
    json_t *o = NULL;

    if (h->len > 0) {
        o = json_loadb(payload, h->len, 0, &jerr);
        if (!json_is_object(o)) {
            slot_protocol_error(sl, "%s frame is not a JSON object: %s",
                                kiln__frame_type_name(h->type), o ? "wrong type" : jerr.text);
            json_decref(o);
            return;
        }
    }
    switch (h->type) {
    case KILN__FRAME_HELLO:
        if (sl->state != SLOT_STARTING || !o)
            slot_protocol_error(sl, "unexpected HELLO frame");
        else
            handle_hello(sl, o);
        break;
    case KILN__FRAME_INITFAIL: {
        const char *t = NULL, *m = NULL;
        if (sl->state != SLOT_STARTING || !o ||
            json_unpack(o, "{s:s,s:s}", "type", &t, "message", &m) < 0) {
            slot_protocol_error(sl, "malformed or unexpected INITFAIL frame");
            break;
        }
        snprintf(sl->cause_type, sizeof(sl->cause_type), "%s", t);
        snprintf(sl->cause, sizeof(sl->cause), "%s", m);
        break;
    }
    case KILN__FRAME_READY:
        if (sl->state != SLOT_STARTING || sl->pool->probe) {
            slot_protocol_error(sl, "unexpected READY frame");
            break;
        }
        uv_timer_stop(&sl->timer);
        sl->state = SLOT_IDLE;
        sl->pool->init_failures = 0;
        pool_dispatch(sl->pool);
        break;
    case KILN__FRAME_RESULT:
    case KILN__FRAME_FAIL:
    case KILN__FRAME_RETRY:
        if (sl->state != SLOT_BUSY || !sl->job || h->task_id != sl->job->seq || !o)
            slot_protocol_error(sl, "%s frame for task %llu while %s",
                                kiln__frame_type_name(h->type), (unsigned long long)h->task_id,
                                sl->job ? "running another task" : "no task runs");
        else
            handle_outcome(sl, h->type, o);
        break;
    case KILN__FRAME_PROGRESS: {
        double f = 0;
        const char *m = NULL;
        if (sl->state != SLOT_BUSY || !sl->job || h->task_id != sl->job->seq || !o ||
            json_unpack(o, "{s:F,s?s}", "fraction", &f, "message", &m) < 0)
            slot_protocol_error(sl, "malformed or unexpected PROGRESS frame");
        else if (sl->job->on_progress)
            sl->job->on_progress(sl->job, f, m);
        break;
    }
    case KILN__FRAME_LOG: {
        int level = 1;
        const char *m = NULL;
        if (!o || json_unpack(o, "{s:i,s:s}", "level", &level, "message", &m) < 0) {
            slot_protocol_error(sl, "malformed LOG frame");
        } else if (sl->job && sl->job->on_log) {
            sl->job->on_log(sl->job, level, m);
        } else {
            kiln__log(level < 0 ? 0 : level > 3 ? 3 : level, "child %d: %s", (int)sl->pid, m);
        }
        break;
    }
    case KILN__FRAME_SECCOMP: {
        json_int_t nr = -1;
        char nbuf[64];
        if (!o || json_unpack(o, "{s:I}", "nr", &nr) < 0 || nr < 0 || nr > 4096) {
            slot_protocol_error(sl, "malformed SECCOMP frame");
            break;
        }
        snprintf(sl->cause_type, sizeof(sl->cause_type), "SandboxViolation");
        snprintf(sl->cause, sizeof(sl->cause), "forbidden syscall %s under profile %s%s",
                 kiln__syscall_name((int)nr, nbuf, sizeof(nbuf)),
                 kiln__profile_name(sl->pool->cfg.profile),
                 sl->state == SLOT_STARTING ? " (while loading the plugin)" : "");
        break;
    }
    default:
        slot_protocol_error(sl, "unexpected %s frame", kiln__frame_type_name(h->type));
        break;
    }
    json_decref(o);
}

/* Read what the child sent.  Returns -1 at EOF or on a protocol error. */
static int
conn_read_ex(conn_t *c, int draining)
{
    unsigned char buf[65536];
    int short_read;

    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        size_t off = 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        if (n == 0)
            return -1;
        short_read = (size_t)n < sizeof(buf);
        while (off < (size_t)n) {
            char err[256];
            int done = 0;
            long used = kiln__frame_reader_feed(&c->rd, buf + off, (size_t)n - off, 1, &done, err,
                                                sizeof(err));
            if (used < 0) {
                if (c->slot)
                    slot_protocol_error(c->slot, "%s", err);
                return -1;
            }
            off += (size_t)used;
            if (done) {
                kiln__frame_hdr_t h = c->rd.cur;
                char *payload = c->rd.payload;
                c->rd.payload = NULL;
                kiln__frame_reader_reset(&c->rd);
                if (c->slot)
                    handle_frame(c->slot, &h, payload);
                free(payload);
                if (!c->slot || c->slot->kill_reason == KILL_PROTOCOL)
                    return -1;
            }
        }
        /* A short read drained the socket; the poll tells us of more. */
        if (short_read && !draining)
            return 0;
    }
}

static int
conn_read(conn_t *c)
{
    return conn_read_ex(c, 0);
}

static void
conn_cb(uv_poll_t *h, int status, int events)
{
    conn_t *c = h->data;

    if (status < 0 || !c->slot) {
        uv_poll_stop(h);
        return;
    }
    if (events & UV_WRITABLE) {
        if (conn_flush(c) < 0) {
            uv_poll_stop(h);
            return;
        }
    }
    if (events & UV_READABLE) {
        if (conn_read(c) < 0)
            uv_poll_stop(h); /* EOF: the zygote will tell us how it died */
    }
}

/* ---- a child's death ---------------------------------------------------- */

static void
explain_death(kiln__slot_t *sl, int status, char *type, size_t tlen, char *msg, size_t mlen)
{
    const kiln__pool_cfg_t *cfg = &sl->pool->cfg;
    char b[64];
    long oom;

    if (sl->kill_reason == KILL_TIMEOUT) {
        snprintf(type, tlen, "TimeLimitExceeded");
        snprintf(msg, mlen, "hard time limit of %g s exceeded; the child was killed",
                 sl->job && sl->job->time_limit > 0 ? sl->job->time_limit : cfg->time_limit);
        return;
    }
    if (sl->cause[0]) {
        snprintf(type, tlen, "%s", sl->cause_type);
        snprintf(msg, mlen, "%s", sl->cause);
        return;
    }
    if (sl->kill_reason == KILL_LOAD_TIMEOUT) {
        snprintf(type, tlen, "PluginLoadError");
        snprintf(msg, mlen, "the child did not finish loading the plugin within %d s",
                 LOAD_TIMEOUT_MS / 1000);
        return;
    }
    if (sl->kill_reason == KILL_CLOSE) {
        snprintf(type, tlen, "WorkerLostError");
        snprintf(msg, mlen, "the worker shut down before the task finished");
        return;
    }
    oom = kiln__cgroup_slot_oom_kills(&sl->sup->cgroup, sl->id);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (sig == SIGKILL && oom >= 0 && oom > sl->oom_before) {
            snprintf(type, tlen, "MemoryLimitExceeded");
            snprintf(msg, mlen, "the child was killed by the memory cap of %s (cgroup OOM kill)",
                     human_bytes(cfg->memory_bytes, b, sizeof(b)));
        } else if (sig == SIGXFSZ) {
            snprintf(type, tlen, "FileSizeLimitExceeded");
            snprintf(msg, mlen, "the child wrote past the file size cap of %s (SIGXFSZ)",
                     human_bytes(cfg->fsize_bytes, b, sizeof(b)));
        } else if (sig == SIGXCPU) {
            snprintf(type, tlen, "CpuLimitExceeded");
            snprintf(msg, mlen, "the child used up its CPU time cap (SIGXCPU)");
        } else if (sig == SIGSYS) {
            snprintf(type, tlen, "SandboxViolation");
            snprintf(msg, mlen,
                     "the child was killed by SIGSYS: a syscall forbidden under "
                     "profile %s",
                     kiln__profile_name(cfg->profile));
        } else {
            snprintf(type, tlen, "WorkerLostError");
            snprintf(msg, mlen, "the child died by %s (%s)", signame(sig), strsignal(sig));
        }
        return;
    }
    snprintf(type, tlen, "WorkerLostError");
    if (WIFEXITED(status) && WEXITSTATUS(status) == KILN__EXIT_PROTOCOL)
        snprintf(msg, mlen, "the child left after a protocol error on its channel");
    else
        snprintf(msg, mlen, "the child exited with status %d during the task",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static void
slot_exited(kiln__slot_t *sl, int status)
{
    kiln__pool_t *p = sl->pool;
    int was = sl->state;
    char type[64], msg[1200];

    /* Frames sent just before death (a result, a SECCOMP report) count. */
    if (sl->conn && sl->kill_reason != KILL_PROTOCOL)
        (void)conn_read_ex(sl->conn, 1);
    conn_close(sl->conn);
    uv_timer_stop(&sl->timer);
    explain_death(sl, status, type, sizeof(type), msg, sizeof(msg));

    if (sl->behind_head) {
        /* Sent behind the task that died; they never started: run them
         * elsewhere, first, in their order. */
        kiln__log(KILN__LOG_INFO,
                  "child %d (slot %u) died with %u task(s) sent behind its own; "
                  "they go back to the front of the queue",
                  (int)sl->pid, sl->id, sl->nbehind);
        sl->behind_tail->next = p->qhead;
        p->qhead = sl->behind_head;
        if (!p->qtail)
            p->qtail = sl->behind_tail;
        p->queued += sl->nbehind;
        sl->behind_head = sl->behind_tail = NULL;
        sl->nbehind = 0;
    }
    sl->retire_after = 0;
    if (sl->job) {
        kiln__job_t *job = sl->job;
        kiln__log(KILN__LOG_INFO, "child %d (slot %u) died with task %s[%s]: %s: %s", (int)sl->pid,
                  sl->id, job->task, job->id, type, msg);
        job_fail(sl, job, type, msg, 1);
    } else if (was == SLOT_STARTING) {
        if (p->probe) {
            snprintf(p->info.error_type, sizeof(p->info.error_type), "%s", type);
            snprintf(p->info.error, sizeof(p->info.error), "%s", msg);
            probe_report(p);
        } else if (!p->closing) {
            p->init_failures++;
            kiln__log_warnx("child %d (slot %u) failed to start: %s: %s", (int)sl->pid, sl->id,
                            type, msg);
            if (p->init_failures >= MAX_INIT_FAILURES) {
                snprintf(p->broken_type, sizeof(p->broken_type), "%s", type);
                snprintf(p->broken, sizeof(p->broken), "%s", msg);
            }
        }
    } else if (was != SLOT_RETIRING && !p->closing) {
        kiln__log_warnx("idle child %d (slot %u) died: %s", (int)sl->pid, sl->id, msg);
    }
    if (p->probe && !p->probe_done) {
        snprintf(p->info.error_type, sizeof(p->info.error_type), "%s", type);
        snprintf(p->info.error, sizeof(p->info.error), "%s", msg);
        probe_report(p);
    }
    if (p->closing && p->qhead) {
        /* Nothing will run them here any more (the tasks that were behind
         * this child, say): hand them back as not run, so that the caller
         * requeues them now. */
        snprintf(p->broken_type, sizeof(p->broken_type), "WorkerLostError");
        snprintf(p->broken, sizeof(p->broken), "the pool closed before the task ran");
        pool_dispatch(p);
        p->broken[0] = '\0';
    }
    sl->state = SLOT_FREE;
    sl->pid = 0;
    sl->kill_reason = KILL_NONE;
    sl->cause[0] = sl->cause_type[0] = '\0';
    sl->tasks_done = 0;
    if (!p->closing && !p->probe && !p->broken[0])
        slot_spawn(sl);
    pool_dispatch(p);
    pool_maybe_closed(p);
}

static void
zygote_cb(uv_poll_t *h, int status, int events)
{
    kiln__super_t *s = h->data;

    for (;;) {
        kiln__zrep_t rep;
        kiln__slot_t *sl;
        int rc = kiln__zygote_read(&s->zygote, &rep);
        if (rc == 0)
            return;
        if (rc < 0) {
            if (!s->closing)
                kiln__fatalx("the zygote is gone (%s); cannot start children", strerror(-rc));
            uv_poll_stop(h);
            return;
        }
        if (rep.slot >= s->nslots || !(sl = s->slots[rep.slot]) || rep.gen != sl->gen)
            continue; /* a child of a slot that moved on */
        switch (rep.op) {
        case KILN__ZREP_SPAWNED:
            sl->pid = rep.pid;
            break;
        case KILN__ZREP_SPAWNFAIL:
            snprintf(sl->cause_type, sizeof(sl->cause_type), "WorkerLostError");
            snprintf(sl->cause, sizeof(sl->cause), "cannot fork a child: %s", strerror(rep.err));
            slot_exited(sl, 0);
            break;
        case KILN__ZREP_EXITED:
            slot_exited(sl, rep.status);
            break;
        default:
            break;
        }
    }
}

/* ---- spawning ----------------------------------------------------------- */

static void
slot_timer_cb(uv_timer_t *t)
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

static void
slot_spawn(kiln__slot_t *sl)
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
    conn_want(c, UV_READABLE);
    sl->conn = c;
    sl->state = SLOT_STARTING;
    sl->pid = 0;
    uv_timer_start(&sl->timer, slot_timer_cb, LOAD_TIMEOUT_MS, 0);
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
    uv_timer_start(&sl->timer, slot_timer_cb, (uint64_t)(hard * 1000.0) + 1, 0);
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
            conn_flush(sl->conn) < 0)
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

static void
pool_dispatch(kiln__pool_t *p)
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
        pool_maybe_closed(p);
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
            job_fail(sl, job, "WorkerLostError", m, 0);
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
                job_fail(sl, job, "WorkerLostError", "cannot send the task to its child", 0);
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
    pool_maybe_closed(p);
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
        slot_spawn(p->slots[i]);
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
    pool_dispatch(p);
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

static void
pool_maybe_closed(kiln__pool_t *p)
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
            uv_timer_start(&sl->timer, slot_timer_cb, 5000, 0);
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
        probe_report(p);
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
    pool_dispatch(p);
    p->broken[0] = '\0';
    if (grace >= 0 && !p->finished)
        uv_timer_start(&p->grace_timer, grace_cb, (uint64_t)(grace * 1000.0), 0);
    pool_maybe_closed(p);
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
    uv_poll_start(&s->zpoll, UV_READABLE, zygote_cb);
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
