/*
 * broker.h -- one asynchronous Redis connection on the supervisor's libuv
 * loop (hiredis async + its libuv adapter), that reconnects by itself.
 *
 * A connection starts by resolving the host on libuv's thread pool (so the
 * loop never blocks on DNS), connects, AUTHs, SELECTs the database and then
 * calls on_ready.  When Redis goes away it says so once, retries with
 * exponential backoff (100 ms doubling to 5 s), and calls on_ready again.
 *
 * Commands sent with KILN__CALL_DURABLE are kept until Redis answers them
 * without an error; if the connection drops first they are sent again, in
 * order, after the next on_ready (so results and acks are never lost to a
 * dropped connection; every durable command kiln sends is idempotent).
 * Other commands fail with a NULL reply when the connection drops.
 */
#ifndef KILN_BROKER_H
#define KILN_BROKER_H

#include "config.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

typedef struct kiln__broker kiln__broker_t;

/* reply is NULL when the connection dropped (non-durable commands only). */
typedef void (*kiln__broker_cb)(kiln__broker_t *b, redisReply *reply, void *data);

#define KILN__CALL_DURABLE 1

typedef struct kiln__pending kiln__pending_t;

struct kiln__broker {
    uv_loop_t *loop;
    kiln__redis_url_t url;
    char name[64];         /* for logs: "broker", "waiter 3", ... */
    redisAsyncContext *ac; /* NULL while disconnected */
    int ready;             /* AUTH and SELECT done */
    int closing;
    int ever_connected;
    int warned_down; /* logged that Redis is unreachable */
    int refused;     /* Redis refused our credentials: stop trying */
    uint64_t backoff_ms;
    uv_timer_t retry_timer;
    uv_getaddrinfo_t gai;
    int resolving;
    char addr[256];                               /* resolved IP, or the host as given */
    kiln__pending_t *durable_head, *durable_tail; /* durable commands awaiting an answer */
    unsigned inflight;                            /* commands sent, not yet answered */
    void (*on_ready)(kiln__broker_t *b);
    void (*on_down)(kiln__broker_t *b, const char *why);
    void (*on_closed)(kiln__broker_t *b);
    /* Redis refused our credentials (AUTH); NULL = keep retrying. */
    void (*on_refused)(kiln__broker_t *b, const char *why);
    void *data;
    uint64_t quiet_until; /* loop time before which failed connects are not logged */
    char errstr[256];     /* last connection error */
};

/* Start connecting; returns at once.  0 or -errno. */
int kiln__broker_open(kiln__broker_t *b, uv_loop_t *loop, const kiln__redis_url_t *url,
                      const char *name);
/* Send a command (argv form).  0, or -ENOTCONN when not ready and not
 * durable (durable ones are queued until the next connection). */
int kiln__broker_call(kiln__broker_t *b, int flags, kiln__broker_cb cb, void *data, int argc,
                      const char **argv, const size_t *argvlen);
/* printf-style convenience (hiredis format: %s, %b, %d ...). */
int kiln__broker_callf(kiln__broker_t *b, int flags, kiln__broker_cb cb, void *data,
                       const char *fmt, ...);
/* Disconnect; on_closed runs once every handle is closed.  Pending durable
 * commands are dropped (the caller decides whether that loses anything). */
void kiln__broker_close(kiln__broker_t *b);
/* Number of durable commands not yet confirmed. */
unsigned kiln__broker_unconfirmed(const kiln__broker_t *b);

#endif
