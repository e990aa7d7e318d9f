/*
 * pool_child.c -- one child as the supervisor hears it: its channel (TASK
 * frames out, descriptors with them), the frames it sends back, and its
 * death.  Every byte from a child is untrusted: frames are checked against
 * the per-type cap before their payload is read, payloads are parsed with
 * jansson, and a child that sends anything out of place is killed and its
 * task failed with ProtocolError naming the cause.  A death is explained
 * from what we know: a trapped syscall it reported, the hard timer we fired,
 * the cgroup's OOM counter, or the signal that ended it.
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

void
kiln__p_conn_want(conn_t *c, int events)
{
    if (c->events != events) {
        c->events = events;
        uv_poll_start(&c->poll, events, conn_cb);
    }
}

/* Try to flush pending TASK bytes.  0, or -errno if the child is gone. */
int
kiln__p_conn_flush(conn_t *c)
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
                kiln__p_conn_want(c, UV_READABLE | UV_WRITABLE);
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
    kiln__p_conn_want(c, UV_READABLE);
    return 0;
}

/* ---- frames from a child ------------------------------------------------ */

void
kiln__p_probe_report(kiln__pool_t *p)
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
        kiln__p_slot_protocol_error(sl, "HELLO frame lacks a name or a task list");
        return;
    }
    if (p->probe) {
        p->info.hello = json_incref(o);
        kiln__p_probe_report(p);
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
            kiln__p_slot_protocol_error(sl, "RESULT frame has no \"result\" member");
            return;
        }
        out.state = KILN__DONE_SUCCESS;
        out.result = r;
    } else if (type == KILN__FRAME_FAIL) {
        if (json_unpack(o, "{s:s,s:s}", "exc_type", &t, "exc_message", &m) < 0) {
            kiln__p_slot_protocol_error(sl, "FAIL frame lacks exc_type or exc_message strings");
            return;
        }
        out.state = KILN__DONE_FAILURE;
        out.exc_type = t;
        out.exc_message = m;
    } else {
        if (json_unpack(o, "{s:F,s?s}", "countdown", &cd, "reason", &m) < 0) {
            kiln__p_slot_protocol_error(sl, "RETRY frame lacks a numeric countdown");
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
        kiln__p_job_finish(sl, job, &out);
        sl->job = next;
        next->started_ms = uv_now(sl->sup->loop);
        uv_timer_start(&sl->timer, kiln__p_slot_timer_cb, (uint64_t)(hard * 1000.0) + 1, 0);
        if (next->on_start)
            next->on_start(next);
        kiln__p_pool_dispatch(sl->pool);
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
        uv_timer_start(&sl->timer, kiln__p_slot_timer_cb, 5000, 0);
    } else {
        sl->state = SLOT_IDLE;
    }
    kiln__p_job_finish(sl, job, &out);
    kiln__p_pool_dispatch(sl->pool);
}

static void
handle_frame(kiln__slot_t *sl, const kiln__frame_hdr_t *h, const char *payload)
{
    json_error_t jerr;
    json_t *o = NULL;

    if (h->len > 0) {
        o = json_loadb(payload, h->len, 0, &jerr);
        if (!json_is_object(o)) {
            kiln__p_slot_protocol_error(sl, "%s frame is not a JSON object: %s",
                                        kiln__frame_type_name(h->type),
                                        o ? "wrong type" : jerr.text);
            json_decref(o);
            return;
        }
    }
    switch (h->type) {
    case KILN__FRAME_HELLO:
        if (sl->state != SLOT_STARTING || !o)
            kiln__p_slot_protocol_error(sl, "unexpected HELLO frame");
        else
            handle_hello(sl, o);
        break;
    case KILN__FRAME_INITFAIL: {
        const char *t = NULL, *m = NULL;
        if (sl->state != SLOT_STARTING || !o ||
            json_unpack(o, "{s:s,s:s}", "type", &t, "message", &m) < 0) {
            kiln__p_slot_protocol_error(sl, "malformed or unexpected INITFAIL frame");
            break;
        }
        snprintf(sl->cause_type, sizeof(sl->cause_type), "%s", t);
        snprintf(sl->cause, sizeof(sl->cause), "%s", m);
        break;
    }
    case KILN__FRAME_READY:
        if (sl->state != SLOT_STARTING || sl->pool->probe) {
            kiln__p_slot_protocol_error(sl, "unexpected READY frame");
            break;
        }
        uv_timer_stop(&sl->timer);
        sl->state = SLOT_IDLE;
        sl->pool->init_failures = 0;
        kiln__p_pool_dispatch(sl->pool);
        break;
    case KILN__FRAME_RESULT:
    case KILN__FRAME_FAIL:
    case KILN__FRAME_RETRY:
        if (sl->state != SLOT_BUSY || !sl->job || h->task_id != sl->job->seq || !o)
            kiln__p_slot_protocol_error(
                sl, "%s frame for task %llu while %s", kiln__frame_type_name(h->type),
                (unsigned long long)h->task_id, sl->job ? "running another task" : "no task runs");
        else
            handle_outcome(sl, h->type, o);
        break;
    case KILN__FRAME_PROGRESS: {
        double f = 0;
        const char *m = NULL;
        if (sl->state != SLOT_BUSY || !sl->job || h->task_id != sl->job->seq || !o ||
            json_unpack(o, "{s:F,s?s}", "fraction", &f, "message", &m) < 0)
            kiln__p_slot_protocol_error(sl, "malformed or unexpected PROGRESS frame");
        else if (sl->job->on_progress)
            sl->job->on_progress(sl->job, f, m);
        break;
    }
    case KILN__FRAME_LOG: {
        int level = 1;
        const char *m = NULL;
        if (!o || json_unpack(o, "{s:i,s:s}", "level", &level, "message", &m) < 0) {
            kiln__p_slot_protocol_error(sl, "malformed LOG frame");
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
            kiln__p_slot_protocol_error(sl, "malformed SECCOMP frame");
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
        kiln__p_slot_protocol_error(sl, "unexpected %s frame", kiln__frame_type_name(h->type));
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
                    kiln__p_slot_protocol_error(c->slot, "%s", err);
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
        if (kiln__p_conn_flush(c) < 0) {
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
                     kiln__p_human_bytes(cfg->memory_bytes, b, sizeof(b)));
        } else if (sig == SIGXFSZ) {
            snprintf(type, tlen, "FileSizeLimitExceeded");
            snprintf(msg, mlen, "the child wrote past the file size cap of %s (SIGXFSZ)",
                     kiln__p_human_bytes(cfg->fsize_bytes, b, sizeof(b)));
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
            snprintf(msg, mlen, "the child died by %s (%s)", kiln__p_signame(sig), strsignal(sig));
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
        kiln__p_job_fail(sl, job, type, msg, 1);
    } else if (was == SLOT_STARTING) {
        if (p->probe) {
            snprintf(p->info.error_type, sizeof(p->info.error_type), "%s", type);
            snprintf(p->info.error, sizeof(p->info.error), "%s", msg);
            kiln__p_probe_report(p);
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
        kiln__p_probe_report(p);
    }
    if (p->closing && p->qhead) {
        /* Nothing will run them here any more (the tasks that were behind
         * this child, say): hand them back as not run, so that the caller
         * requeues them now. */
        snprintf(p->broken_type, sizeof(p->broken_type), "WorkerLostError");
        snprintf(p->broken, sizeof(p->broken), "the pool closed before the task ran");
        kiln__p_pool_dispatch(p);
        p->broken[0] = '\0';
    }
    sl->state = SLOT_FREE;
    sl->pid = 0;
    sl->kill_reason = KILL_NONE;
    sl->cause[0] = sl->cause_type[0] = '\0';
    sl->tasks_done = 0;
    if (!p->closing && !p->probe && !p->broken[0])
        kiln__p_slot_spawn(sl);
    kiln__p_pool_dispatch(p);
    kiln__p_pool_maybe_closed(p);
}

void
kiln__p_zygote_cb(uv_poll_t *h, int status, int events)
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
