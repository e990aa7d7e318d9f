/*
 * broker.c -- a self-reconnecting asynchronous Redis connection.
 */
#include "broker.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* hiredis's own libuv adapter restarts the poll handle on every command
 * (two epoll_ctl calls each time).  This one never polls for POLLOUT while
 * the socket can take the bytes: a write hiredis asks for is done from a
 * prepare handle, just before the loop next waits, so every command queued
 * in one loop iteration goes out in one write(), and the kernel's poll set
 * changes only when the socket is really full (or while connecting). */
typedef struct uvev {
    redisAsyncContext *ac;
    uv_poll_t poll;
    uv_prepare_t prep;
    int events;   /* what the poll handle should have */
    int armed;    /* what the poll handle has */
    int want;     /* hiredis has bytes to write */
    int flushing; /* inside the prepare callback's write */
    int handles;  /* handles still open, for the close callback */
} uvev_t;

static void uvev_cb(uv_poll_t *h, int status, int events);

static void
uvev_update(uvev_t *e)
{
    if (e->events == e->armed)
        return;
    e->armed = e->events;
    if (e->events)
        uv_poll_start(&e->poll, e->events, uvev_cb);
    else
        uv_poll_stop(&e->poll);
}

static void
uvev_cb(uv_poll_t *h, int status, int events)
{
    uvev_t *e = h->data;
    if (status < 0)
        events = e->events; /* let hiredis see the error on its next call */
    if (e->ac && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void
uvev_prep_cb(uv_prepare_t *h)
{
    uvev_t *e = h->data;
    uv_prepare_stop(h);
    if (e->ac && e->want) {
        e->flushing = 1;
        redisAsyncHandleWrite(e->ac); /* may disconnect: e stays valid until closed */
        e->flushing = 0;
    }
}

static void
uvev_add_read(void *p)
{
    uvev_t *e = p;
    e->events |= UV_READABLE;
    uvev_update(e);
}

static void
uvev_del_read(void *p)
{
    uvev_t *e = p;
    e->events &= ~UV_READABLE;
    uvev_update(e);
}

static void
uvev_add_write(void *p)
{
    uvev_t *e = p;
    e->want = 1;
    if (e->flushing || !(e->ac->c.flags & REDIS_CONNECTED)) {
        /* The socket is full, or the connect is in progress: wait for it. */
        e->events |= UV_WRITABLE;
        uvev_update(e);
    } else {
        uv_prepare_start(&e->prep, uvev_prep_cb);
    }
}

static void
uvev_del_write(void *p)
{
    uvev_t *e = p;
    e->want = 0;
    e->events &= ~UV_WRITABLE;
    uvev_update(e);
}

static void
uvev_closed(uv_handle_t *h)
{
    uvev_t *e = h->data;
    if (--e->handles == 0)
        free(e);
}

static void
uvev_cleanup(void *p)
{
    uvev_t *e = p;
    e->ac = NULL;
    e->flushing = 0;
    uv_close((uv_handle_t *)&e->poll, uvev_closed);
    uv_close((uv_handle_t *)&e->prep, uvev_closed);
}

static int
uvev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    uvev_t *e;

    if (ac->ev.data)
        return REDIS_ERR;
    e = calloc(1, sizeof(*e));
    if (!e)
        return REDIS_ERR;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &e->prep);
    e->handles = 2;
    e->ac = ac;
    e->poll.data = e;
    e->prep.data = e;
    ac->ev.addRead = uvev_add_read;
    ac->ev.delRead = uvev_del_read;
    ac->ev.addWrite = uvev_add_write;
    ac->ev.delWrite = uvev_del_write;
    ac->ev.cleanup = uvev_cleanup;
    ac->ev.data = e;
    return REDIS_OK;
}

struct kiln__pending {
    kiln__pending_t *next, *prev;
    kiln__broker_t *b;
    char *cmd; /* formatted RESP command */
    size_t len;
    int durable;
    int sent;
    kiln__broker_cb cb;
    void *data;
};

static void broker_connect(kiln__broker_t *b);
static void broker_send(kiln__broker_t *b, kiln__pending_t *p);

static void
pending_free(kiln__pending_t *p)
{
    free(p->cmd);
    free(p);
}

static void
durable_unlink(kiln__broker_t *b, kiln__pending_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        b->durable_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        b->durable_tail = p->prev;
    p->next = p->prev = NULL;
}

static int
transient_error(const redisReply *r)
{
    static const char *words[] = {"LOADING",  "OOM",      "BUSY",     "MASTERDOWN",
                                  "READONLY", "TRYAGAIN", "NOSCRIPT", NULL};
    int i;
    for (i = 0; words[i]; i++)
        if (strncmp(r->str, words[i], strlen(words[i])) == 0)
            return 1;
    return 0;
}

static void
retry_cb(uv_timer_t *t)
{
    kiln__broker_t *b = t->data;
    if (b->closing)
        return;
    if (!b->ac) {
        broker_connect(b);
        return;
    }
    /* Connected: resend durable commands that got a transient error. */
    if (b->ready) {
        kiln__pending_t *p;
        for (p = b->durable_head; p; p = p->next)
            if (!p->sent)
                broker_send(b, p);
    }
}

static void
schedule_retry(kiln__broker_t *b)
{
    if (b->closing)
        return;
    if (!b->backoff_ms)
        b->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_start(&b->retry_timer, retry_cb, b->backoff_ms, 0);
    b->backoff_ms *= 2;
    if (b->backoff_ms > BACKOFF_MAX_MS)
        b->backoff_ms = BACKOFF_MAX_MS;
}

static void
went_down(kiln__broker_t *b, const char *why)
{
    char where[300];
    snprintf(b->errstr, sizeof(b->errstr), "%s", why);
    if (!b->warned_down && !b->closing && uv_now(b->loop) >= b->quiet_until) {
        kiln__redis_url_format(&b->url, 0, where, sizeof(where));
        kiln__log_warnx("%s: Redis at %s is unreachable (%s); retrying with backoff up to %d s",
                        b->name, where, why, BACKOFF_MAX_MS / 1000);
        b->warned_down = 1;
    }
    if (b->on_down)
        b->on_down(b, why);
}

static void
call_cb(redisAsyncContext *ac, void *r, void *priv)
{
    kiln__pending_t *p = priv;
    kiln__broker_t *b = p->b;
    redisReply *reply = r;

    if (b->inflight > 0)
        b->inflight--;
    if (p->durable) {
        if (!reply) {
            p->sent = 0; /* resent after the next connect */
            return;
        }
        if (reply->type == REDIS_REPLY_ERROR && transient_error(reply)) {
            kiln__log_warnx("%s: Redis answered \"%s\"; will retry", b->name, reply->str);
            p->sent = 0;
            if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && b->ac)
                redisAsyncDisconnect(b->ac); /* reconnect reloads the scripts */
            else
                uv_timer_start(&b->retry_timer, retry_cb, 500, 0);
            return;
        }
        durable_unlink(b, p);
        if (p->cb)
            p->cb(b, reply, p->data);
        pending_free(p);
        return;
    }
    if (p->cb)
        p->cb(b, reply, p->data);
    pending_free(p);
}

static void
broker_send(kiln__broker_t *b, kiln__pending_t *p)
{
    if (redisAsyncFormattedCommand(b->ac, call_cb, p, p->cmd, p->len) == REDIS_OK) {
        p->sent = 1;
        b->inflight++;
    }
}

static void
ready(kiln__broker_t *b)
{
    kiln__pending_t *p;
    char where[300];

    b->ready = 1;
    b->backoff_ms = 0;
    if (b->warned_down || !b->ever_connected) {
        kiln__redis_url_format(&b->url, 0, where, sizeof(where));
        if (b->warned_down)
            kiln__log_warnx("%s: Redis at %s is back", b->name, where);
        else
            kiln__log_info("%s: connected to Redis at %s", b->name, where);
    }
    b->warned_down = 0;
    b->ever_connected = 1;
    for (p = b->durable_head; p; p = p->next)
        if (!p->sent)
            broker_send(b, p);
    if (b->on_ready)
        b->on_ready(b);
}

static void
setup_cb(redisAsyncContext *ac, void *r, void *priv)
{
    kiln__broker_t *b = ac->data;
    redisReply *reply = r;
    int last = priv != NULL;

    if (!reply || b->refused) /* disconnected meanwhile, or credentials refused */
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof(why), "%s", reply->str);
        if (b->on_refused && (strncmp(why, "WRONGPASS", 9) == 0 || strncmp(why, "NOPERM", 6) == 0 ||
                              strstr(why, "invalid password") || strstr(why, "invalid username"))) {
            b->refused = 1; /* no retries: a wrong password does not heal */
            redisAsyncDisconnect(ac);
            b->on_refused(b, why);
            return;
        }
        b->warned_down = 0; /* a refusal is worth logging every time */
        went_down(b, why);
        redisAsyncDisconnect(ac);
        return;
    }
    if (last)
        ready(b);
}

static void
connect_cb(const redisAsyncContext *ac, int status)
{
    kiln__broker_t *b = ac->data;
    redisAsyncContext *c = (redisAsyncContext *)ac;

    if (status != REDIS_OK) {
        went_down(b, ac->errstr[0] ? ac->errstr : "connection failed");
        b->ac = NULL; /* hiredis frees it after this callback */
        schedule_retry(b);
        return;
    }
    if (b->url.password[0]) {
        if (b->url.user[0])
            redisAsyncCommand(c, setup_cb, NULL, "AUTH %s %s", b->url.user, b->url.password);
        else
            redisAsyncCommand(c, setup_cb, NULL, "AUTH %s", b->url.password);
    }
    redisAsyncCommand(c, setup_cb, (void *)1, "SELECT %d", b->url.db);
}

static void
drop_durable(kiln__broker_t *b)
{
    kiln__pending_t *p = b->durable_head;
    while (p) {
        kiln__pending_t *next = p->next;
        pending_free(p);
        p = next;
    }
    b->durable_head = b->durable_tail = NULL;
}

static void
closed(kiln__broker_t *b)
{
    drop_durable(b);
    uv_close((uv_handle_t *)&b->retry_timer, NULL);
    if (b->on_closed)
        b->on_closed(b);
}

static void
disconnect_cb(const redisAsyncContext *ac, int status)
{
    kiln__broker_t *b = ac->data;
    b->ac = NULL;
    b->ready = 0;
    b->inflight = 0;
    if (b->closing) {
        closed(b);
        return;
    }
    if (b->refused)
        return;
    went_down(b, status == REDIS_OK ? "connection closed" : ac->errstr);
    schedule_retry(b);
}

static void
connect_addr(kiln__broker_t *b)
{
    redisAsyncContext *ac;

    if (b->url.unix_socket)
        ac = redisAsyncConnectUnix(b->url.path);
    else
        ac = redisAsyncConnect(b->addr, b->url.port);
    if (!ac) {
        went_down(b, "out of memory");
        schedule_retry(b);
        return;
    }
    if (ac->err) {
        went_down(b, ac->errstr);
        redisAsyncFree(ac);
        schedule_retry(b);
        return;
    }
    ac->data = b;
    /* Keep the reader's buffer between replies instead of freeing it after
     * every large one (a fetch of hundreds of messages). */
    ac->c.reader->maxbuf = 0;
    if (uvev_attach(ac, b->loop) != REDIS_OK) {
        went_down(b, "cannot attach to the event loop");
        redisAsyncFree(ac);
        schedule_retry(b);
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    b->ac = ac;
}

static void
resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    kiln__broker_t *b = req->data;
    b->resolving = 0;
    if (b->closing) {
        uv_freeaddrinfo(res);
        closed(b);
        return;
    }
    if (status < 0 || !res) {
        char why[300];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", b->url.host, uv_strerror(status));
        went_down(b, why);
        uv_freeaddrinfo(res);
        schedule_retry(b);
        return;
    }
    if (res->ai_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, b->addr, sizeof(b->addr));
    else
        uv_ip4_name((struct sockaddr_in *)res->ai_addr, b->addr, sizeof(b->addr));
    uv_freeaddrinfo(res);
    connect_addr(b);
}

static void
broker_connect(kiln__broker_t *b)
{
    struct addrinfo hints;
    struct in6_addr tmp;

    if (b->closing || b->ac || b->resolving)
        return;
    if (b->url.unix_socket || inet_pton(AF_INET, b->url.host, &tmp) == 1 ||
        inet_pton(AF_INET6, b->url.host, &tmp) == 1) {
        snprintf(b->addr, sizeof(b->addr), "%s", b->url.host);
        connect_addr(b);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    b->gai.data = b;
    b->resolving = 1;
    if (uv_getaddrinfo(b->loop, &b->gai, resolved_cb, b->url.host, NULL, &hints) < 0) {
        b->resolving = 0;
        went_down(b, "cannot start name resolution");
        schedule_retry(b);
    }
}

int
kiln__broker_open(kiln__broker_t *b, uv_loop_t *loop, const kiln__redis_url_t *url,
                  const char *name)
{
    memset(b, 0, sizeof(*b) - sizeof(b->errstr));
    b->loop = loop;
    b->url = *url;
    snprintf(b->name, sizeof(b->name), "%s", name);
    uv_timer_init(loop, &b->retry_timer);
    b->retry_timer.data = b;
    /* Connect from the loop, so the caller can finish setting us up. */
    uv_timer_start(&b->retry_timer, retry_cb, 0, 0);
    return 0;
}

static int
enqueue(kiln__broker_t *b, int flags, kiln__broker_cb cb, void *data, char *cmd, size_t len)
{
    kiln__pending_t *p;

    if (!(flags & KILN__CALL_DURABLE) && !b->ready) {
        free(cmd);
        return -ENOTCONN;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        free(cmd);
        return -ENOMEM;
    }
    p->b = b;
    p->cmd = cmd;
    p->len = len;
    p->cb = cb;
    p->data = data;
    p->durable = (flags & KILN__CALL_DURABLE) != 0;
    if (p->durable) {
        p->prev = b->durable_tail;
        if (b->durable_tail)
            b->durable_tail->next = p;
        else
            b->durable_head = p;
        b->durable_tail = p;
    }
    if (b->ready)
        broker_send(b, p);
    return 0;
}

int
kiln__broker_call(kiln__broker_t *b, int flags, kiln__broker_cb cb, void *data, int argc,
                  const char **argv, const size_t *argvlen)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return -ENOMEM;
    return enqueue(b, flags, cb, data, cmd, (size_t)len);
}

int
kiln__broker_callf(kiln__broker_t *b, int flags, kiln__broker_cb cb, void *data, const char *fmt,
                   ...)
{
    char *cmd = NULL;
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -ENOMEM;
    return enqueue(b, flags, cb, data, cmd, (size_t)len);
}

unsigned
kiln__broker_unconfirmed(const kiln__broker_t *b)
{
    unsigned n = 0;
    const kiln__pending_t *p;
    for (p = b->durable_head; p; p = p->next)
        n++;
    return n;
}

void
kiln__broker_close(kiln__broker_t *b)
{
    if (b->closing)
        return;
    b->closing = 1;
    uv_timer_stop(&b->retry_timer);
    /* hiredis answers what was sent (or calls back with NULL), then the
     * disconnect callback drops what is left of the durable list. */
    if (b->ac)
        redisAsyncDisconnect(b->ac);
    else if (!b->resolving)
        closed(b);
}
