/*
 * child.c -- a child's life: jail, load the plugin, serve tasks, exit.
 *
 * Everything here runs in the forked child.  The child trusts nothing but
 * its own memory: a malformed frame from the supervisor ends it with
 * KILN__EXIT_PROTOCOL.  It leaves only with _exit().
 */
#include "child.h"

#include "ctx.h"
#include "frame.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_TASKS_IN_PLUGIN 4096
#define INBOX_FDS           (4 * KILN__FRAME_MAXFDS)

/* Send the peak RSS with every outcome (the pool recycles on max_rss). */
static int report_rss;

/* What the supervisor sent, read in large chunks: a fast pool gets several
 * TASK frames in one write, and they cost one read here.  Descriptors queue
 * in arrival order; each TASK takes as many as its "files" array names (the
 * kernel delivers a frame's descriptors with the read that reaches its first
 * byte, so they are always here before the frame is parsed). */
typedef struct inbox {
    unsigned char buf[65536];
    size_t len, off;
    int fds[INBOX_FDS];
    int nfds;
    kiln__frame_reader_t rd;
} inbox_t;

/* The next whole frame.  0, -EPIPE at EOF, or another -errno (malformed). */
static int
inbox_next(inbox_t *ib, kiln__frame_hdr_t *h, char **payload, char *err, size_t errlen)
{
    for (;;) {
        struct msghdr msg;
        struct iovec iov;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * KILN__FRAME_MAXFDS)];
        } ctl;
        struct cmsghdr *c;
        ssize_t n;

        while (ib->off < ib->len) {
            int done = 0;
            long used = kiln__frame_reader_feed(&ib->rd, ib->buf + ib->off, ib->len - ib->off, 0,
                                                &done, err, errlen);
            if (used < 0)
                return (int)used;
            ib->off += (size_t)used;
            if (done) {
                *h = ib->rd.cur;
                *payload = ib->rd.payload;
                ib->rd.payload = NULL;
                kiln__frame_reader_reset(&ib->rd);
                return 0;
            }
        }
        ib->off = ib->len = 0;
        memset(&msg, 0, sizeof(msg));
        iov.iov_base = ib->buf;
        iov.iov_len = sizeof(ib->buf);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        n = recvmsg(KILN__CHILD_FD, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "reading from the supervisor: %s", strerror(errno));
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            int got, i;
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (i = 0; i < got; i++) {
                int one;
                memcpy(&one, CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(int));
                if (ib->nfds < INBOX_FDS)
                    ib->fds[ib->nfds++] = one;
                else
                    close(one);
            }
        }
        if (msg.msg_flags & MSG_CTRUNC) {
            snprintf(err, errlen, "descriptors from the supervisor were truncated");
            return -EPROTO;
        }
        ib->len = (size_t)n;
    }
}

/* Take the first `n` queued descriptors into out[].  -EPROTO if fewer came. */
static int
inbox_take_fds(inbox_t *ib, size_t n, int *out)
{
    if (n > KILN__FRAME_MAXFDS || n > (size_t)ib->nfds)
        return -EPROTO;
    memcpy(out, ib->fds, n * sizeof(int));
    memmove(ib->fds, ib->fds + n, ((size_t)ib->nfds - n) * sizeof(int));
    ib->nfds -= (int)n;
    return 0;
}

static void
send_initfail(const char *type, const char *message)
{
    json_t *o = json_pack("{s:s,s:s}", "type", type, "message", message);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) {
        size_t len = strlen(s);
        (void)kiln__frame_send(KILN__CHILD_FD, KILN__FRAME_INITFAIL, 0, s,
                               len > 65536 ? 65536 : len, NULL, 0);
    }
    free(s);
    json_decref(o);
}

static void __attribute__((noreturn)) die_initfail(const char *type, const char *message)
{
    send_initfail(type, message);
    _exit(KILN__EXIT_INITFAIL);
}

int
kiln__plugin_check(const kiln_plugin_t *p, char *err, size_t errlen)
{
    size_t i;

    /* Only the first three fields are read before the ABI is known. */
    if (p->abi_major != KILN_ABI_MAJOR || p->abi_minor > KILN_ABI_MINOR) {
        snprintf(err, errlen,
                 "built for ABI %u.%u, runtime provides %d.%d (same major and a "
                 "minor no newer than the runtime's are required)",
                 p->abi_major, p->abi_minor, KILN_ABI_MAJOR, KILN_ABI_MINOR);
        return -EINVAL;
    }
    if (p->size < offsetof(kiln_plugin_t, api) + sizeof(p->api)) {
        snprintf(err, errlen, "kiln_plugin is %u bytes, too small for ABI %u.%u", p->size,
                 p->abi_major, p->abi_minor);
        return -EINVAL;
    }
    if (!p->name || !*p->name || !p->version || !p->tasks || !p->api) {
        snprintf(err, errlen, "kiln_plugin lacks a name, version, task table or api slot");
        return -EINVAL;
    }
    for (i = 0; p->tasks[i].name; i++) {
        if (i >= MAX_TASKS_IN_PLUGIN) {
            snprintf(err, errlen, "task table has more than %d entries or no {NULL, NULL} end",
                     MAX_TASKS_IN_PLUGIN);
            return -EINVAL;
        }
        if (!p->tasks[i].handler || strlen(p->tasks[i].name) > 200) {
            snprintf(err, errlen, "task %zu has no handler or a name over 200 bytes", i);
            return -EINVAL;
        }
    }
    if (p->policy && p->policy->size < offsetof(kiln_policy_t, concurrency) + 4) {
        snprintf(err, errlen, "policy struct is %u bytes, too small", p->policy->size);
        return -EINVAL;
    }
    return 0;
}

static json_t *
describe(const kiln_plugin_t *p)
{
    json_t *tasks = json_array(), *policy = json_object();
    size_t i;

    for (i = 0; p->tasks[i].name; i++)
        json_array_append_new(tasks, json_string(p->tasks[i].name));
    if (p->policy) {
        const kiln_policy_t *pol = p->policy;
        if (pol->profile)
            json_object_set_new(policy, "profile", json_string(pol->profile));
        json_object_set_new(policy, "memory_bytes", json_integer((json_int_t)pol->memory_bytes));
        json_object_set_new(policy, "soft_time_limit", json_real(pol->soft_time_limit));
        json_object_set_new(policy, "time_limit", json_real(pol->time_limit));
        json_object_set_new(policy, "max_tasks_per_child",
                            json_integer((json_int_t)pol->max_tasks_per_child));
        json_object_set_new(policy, "concurrency", json_integer((json_int_t)pol->concurrency));
    }
    return json_pack("{s:s,s:s,s:[i,i],s:o,s:o,s:b,s:b}", "name", p->name, "version", p->version,
                     "abi", (int)p->abi_major, (int)p->abi_minor, "tasks", tasks, "policy", policy,
                     "init", p->init != NULL, "fini", p->fini != NULL);
}

static void
close_fds(int *fds, int n)
{
    int i;
    for (i = 0; i < n; i++)
        close(fds[i]);
}

static void
send_outcome(kiln_ctx_t *ctx, int rc)
{
    json_t *o;
    uint32_t type;
    char *s;

    if (ctx->outcome == KILN__OUTCOME_FAIL) {
        type = KILN__FRAME_FAIL;
        o = json_pack("{s:s,s:s}", "exc_type", ctx->exc_type, "exc_message", ctx->exc_message);
    } else if (ctx->outcome == KILN__OUTCOME_RETRY) {
        type = KILN__FRAME_RETRY;
        o = json_pack("{s:f,s:s}", "countdown", ctx->countdown, "reason", ctx->exc_message);
    } else if (rc != KILN_OK) {
        char msg[160];
        type = KILN__FRAME_FAIL;
        snprintf(msg, sizeof(msg), "handler returned %d without calling kiln_fail()", rc);
        o = json_pack("{s:s,s:s}", "exc_type", "RuntimeError", "exc_message", msg);
    } else {
        type = KILN__FRAME_RESULT;
        o = json_pack("{s:O}", "result", ctx->result ? ctx->result : json_null());
    }
    if (o && report_rss) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            json_object_set_new(o, "rss_kb", json_integer((json_int_t)ru.ru_maxrss));
    }
    s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        static const char enc[] = "{\"exc_type\":\"EncodeError\",\"exc_message\":\"the result "
                                  "cannot be encoded as JSON\"}";
        (void)kiln__frame_send(KILN__CHILD_FD, KILN__FRAME_FAIL, ctx->seq, enc, sizeof(enc) - 1,
                               NULL, 0);
        return;
    }
    if (strlen(s) > KILN__FRAME_MAX) {
        static const char big[] = "{\"exc_type\":\"ResultTooLarge\",\"exc_message\":\"the "
                                  "result is over the 16 MB frame cap; write large data to a "
                                  "file\"}";
        (void)kiln__frame_send(KILN__CHILD_FD, KILN__FRAME_FAIL, ctx->seq, big, sizeof(big) - 1,
                               NULL, 0);
    } else {
        (void)kiln__frame_send(KILN__CHILD_FD, type, ctx->seq, s, strlen(s), NULL, 0);
    }
    free(s);
}

/* Run one TASK frame.  Returns 0, or -1 if the frame was malformed. */
static int
run_task(const kiln_plugin_t *p, const kiln__frame_hdr_t *h, const char *payload, inbox_t *ib)
{
    int fds[KILN__FRAME_MAXFDS], nfds = 0;
    kiln_ctx_t ctx;
    json_error_t jerr;
    json_t *msg = json_loadb(payload, h->len, 0, &jerr);
    const char *task = NULL;
    double soft = 0, hard = 0, now = kiln__now();
    size_t i;
    int rc;

    memset(&ctx, 0, sizeof(ctx));
    ctx.seq = h->task_id;
    if (!msg ||
        json_unpack_ex(msg, &jerr, 0, "{s:s,s?s,s:o,s:o,s?o,s?F,s?F}", "task", &task, "id", &ctx.id,
                       "args", &ctx.args, "kwargs", &ctx.kwargs, "files", &ctx.files, "soft", &soft,
                       "hard", &hard) < 0 ||
        !json_is_array(ctx.args) || !json_is_object(ctx.kwargs) ||
        (ctx.files && !json_is_array(ctx.files))) {
        json_decref(msg);
        return -1;
    }
    nfds = ctx.files ? (int)json_array_size(ctx.files) : 0;
    if (inbox_take_fds(ib, (size_t)nfds, fds) < 0) {
        json_decref(msg);
        return -1;
    }
    ctx.task = task;
    ctx.fds = fds;
    ctx.nfds = nfds;
    ctx.soft_deadline = soft > 0 ? now + soft : 0;
    ctx.hard_deadline = hard > 0 ? now + hard : 0;
    for (i = 0; p->tasks[i].name; i++)
        if (strcmp(p->tasks[i].name, task) == 0)
            break;
    if (!p->tasks[i].name) {
        char m[300];
        snprintf(m, sizeof(m), "plugin %s has no task %s", p->name, task);
        rc = kiln__api_table.fail(&ctx, "NotRegistered", m);
    } else {
        rc = p->tasks[i].handler(&ctx);
    }
    send_outcome(&ctx, rc);
    json_decref(ctx.result);
    json_decref(msg);
    close_fds(fds, nfds);
    return 0;
}

void
kiln__child_main(const kiln__jail_t *jail, const kiln__caps_t *caps, const kiln__filters_t *filters,
                 const kiln__child_opts_t *opts)
{
    char err[KILN__ERRLEN];
    const kiln_plugin_t *p;
    kiln_ctx_t ictx;
    void *so;
    uint32_t done = 0;
    json_t *hello;
    char *s;

    report_rss = jail->report_rss != 0;
    if (kiln__jail_enter(jail, caps, filters, err, sizeof(err)) < 0)
        die_initfail("SandboxError", err);

    if (jail->settings[0]) {
        json_error_t jerr;
        kiln__settings = json_loads(jail->settings, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(kiln__settings))
            die_initfail("ConfigError", "the plugin's settings are not a JSON object");
    } else {
        kiln__settings = json_object();
    }

    so = dlopen(jail->plugin_path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        const char *e = dlerror();
        die_initfail("PluginLoadError", e ? e : "dlopen failed");
    }
    p = dlsym(so, "kiln_plugin");
    if (!p)
        die_initfail("PluginLoadError",
                     "no exported symbol kiln_plugin: not a kiln plugin (declare it with "
                     "KILN_PLUGIN())");
    if (kiln__plugin_check(p, err, sizeof(err)) < 0)
        die_initfail("PluginLoadError", err);
    *p->api = &kiln__api_table;

    hello = describe(p);
    s = hello ? json_dumps(hello, JSON_COMPACT) : NULL;
    json_decref(hello);
    if (!s || kiln__frame_send(KILN__CHILD_FD, KILN__FRAME_HELLO, 0, s, strlen(s), NULL, 0) < 0)
        _exit(KILN__EXIT_PROTOCOL);
    free(s);

    if (opts->probe) {
        kiln__frame_hdr_t h;
        char *payload = NULL;
        (void)kiln__frame_recv(KILN__CHILD_FD, &h, &payload, NULL, NULL, err, sizeof(err));
        _exit(KILN__EXIT_OK);
    }

    if (p->init) {
        memset(&ictx, 0, sizeof(ictx));
        ictx.task = "<init>";
        ictx.args = json_array();
        ictx.kwargs = json_object();
        if (p->init(&ictx) != KILN_OK) {
            char m[4400];
            snprintf(m, sizeof(m), "plugin %s init failed: %s", p->name,
                     ictx.outcome == KILN__OUTCOME_FAIL ? ictx.exc_message : "no reason given");
            die_initfail(ictx.outcome == KILN__OUTCOME_FAIL ? ictx.exc_type : "PluginInitError", m);
        }
    }

    if (kiln__seccomp_apply(&filters->final[jail->profile]) < 0)
        die_initfail("SandboxError", "cannot load the final seccomp filter");
    if (kiln__frame_send(KILN__CHILD_FD, KILN__FRAME_READY, 0, NULL, 0, NULL, 0) < 0)
        _exit(KILN__EXIT_PROTOCOL);

    for (;;) {
        static inbox_t ib;
        kiln__frame_hdr_t h = {0, 0, 0};
        char *payload = NULL;
        int rc = inbox_next(&ib, &h, &payload, err, sizeof(err));

        if (rc == -EPIPE)
            break;
        if (rc < 0)
            _exit(KILN__EXIT_PROTOCOL);
        if (h.type == KILN__FRAME_QUIT) {
            free(payload);
            break;
        }
        rc = run_task(p, &h, payload, &ib);
        free(payload);
        if (rc < 0)
            _exit(KILN__EXIT_PROTOCOL);
        done++;
        if (opts->max_tasks && done >= opts->max_tasks)
            break;
    }
    if (p->fini)
        p->fini();
    _exit(KILN__EXIT_OK);
}
