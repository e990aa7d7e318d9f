/*
 * redis_sync.c -- a blocking Redis connection for the command-line tools.
 */
#include "redis_sync.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static struct timeval
to_timeval(double s)
{
    struct timeval tv;
    if (s < 0.001)
        s = 0.001;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static double
now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_error(kiln__redis_sync_t *r, int code, int io, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
set_error(kiln__redis_sync_t *r, int code, int io, const char *fmt, ...)
{
    va_list ap;
    r->err = code;
    r->io_error = io;
    va_start(ap, fmt);
    vsnprintf(r->errstr, sizeof(r->errstr), fmt, ap);
    va_end(ap);
}

/* The context failed (I/O, EOF, protocol): record it. */
static void
set_io_error(kiln__redis_sync_t *r)
{
    const char *why = r->ctx && r->ctx->errstr[0] ? r->ctx->errstr : "connection failed";
    int code = -EIO;

    if (r->ctx && r->ctx->err == REDIS_ERR_EOF)
        code = -ECONNRESET;
    else if (strstr(why, "timed out") || strstr(why, "temporarily unavailable"))
        code = -ETIMEDOUT;
    set_error(r, code, 1, "lost the connection to the broker at %s: %s%s", r->addr, why,
              code == -ETIMEDOUT ? " (no reply in time)" : "");
}

static redisReply *
check(kiln__redis_sync_t *r, redisReply *reply)
{
    if (!reply) {
        set_io_error(r);
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        set_error(r, -EPROTO, 0, "the broker at %s answered: %.*s", r->addr,
                  (int)(reply->len > 600 ? 600 : reply->len), reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    r->err = 0;
    r->io_error = 0;
    return reply;
}

redisReply *
kiln__redis_sync_vcommand(kiln__redis_sync_t *r, const char *fmt, va_list ap)
{
    if (!r->ctx || r->ctx->err) {
        set_io_error(r);
        return NULL;
    }
    return check(r, redisvCommand(r->ctx, fmt, ap));
}

redisReply *
kiln__redis_sync_command(kiln__redis_sync_t *r, const char *fmt, ...)
{
    va_list ap;
    redisReply *reply;

    va_start(ap, fmt);
    reply = kiln__redis_sync_vcommand(r, fmt, ap);
    va_end(ap);
    return reply;
}

redisReply *
kiln__redis_sync_argv(kiln__redis_sync_t *r, int argc, const char **argv, const size_t *argvlen)
{
    if (!r->ctx || r->ctx->err) {
        set_io_error(r);
        return NULL;
    }
    return check(r, redisCommandArgv(r->ctx, argc, argv, argvlen));
}

int
kiln__redis_sync_send(kiln__redis_sync_t *r, const char *fmt, ...)
{
    va_list ap;
    int rc, done = 0;

    if (!r->ctx || r->ctx->err) {
        set_io_error(r);
        return r->err;
    }
    va_start(ap, fmt);
    rc = redisvAppendCommand(r->ctx, fmt, ap);
    va_end(ap);
    while (rc == REDIS_OK && !done)
        rc = redisBufferWrite(r->ctx, &done);
    if (rc != REDIS_OK) {
        set_io_error(r);
        return r->err;
    }
    return 0;
}

int
kiln__redis_sync_read(kiln__redis_sync_t *r, double timeout, redisReply **reply)
{
    double deadline = timeout >= 0 ? now_mono() + timeout : 0;

    *reply = NULL;
    if (!r->ctx || r->ctx->err) {
        set_io_error(r);
        return r->err;
    }
    for (;;) {
        void *rep = NULL;
        struct pollfd pfd = {.fd = r->ctx->fd, .events = POLLIN};
        int ms = -1, n;

        if (redisGetReplyFromReader(r->ctx, &rep) != REDIS_OK) {
            set_io_error(r);
            return r->err;
        }
        if (rep) {
            *reply = rep;
            return 0;
        }
        if (timeout >= 0) {
            double left = deadline - now_mono();
            if (left <= 0)
                return -ETIMEDOUT;
            ms = (int)ceil(left * 1000.0);
        }
        n = poll(&pfd, 1, ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            set_error(r, -errno, 1, "waiting for the broker at %s: poll: %s", r->addr,
                      strerror(errno));
            return r->err;
        }
        if (n == 0)
            return -ETIMEDOUT;
        if (redisBufferRead(r->ctx) != REDIS_OK) {
            set_io_error(r);
            return r->err;
        }
    }
}

long long
kiln__redis_reply_int(const redisReply *reply)
{
    char *end;
    long long v;

    if (!reply)
        return -1;
    if (reply->type == REDIS_REPLY_INTEGER)
        return reply->integer;
    if (reply->type != REDIS_REPLY_STRING || reply->len == 0 || reply->len > 20)
        return -1;
    errno = 0;
    v = strtoll(reply->str, &end, 10);
    return errno || *end ? -1 : v;
}

/* AUTH, SELECT and PING on a fresh connection.  0 or -errno, errstr set. */
static int
handshake(kiln__redis_sync_t *r, const kiln__redis_url_t *u)
{
    redisReply *reply;

    if (u->password[0]) {
        if (u->user[0])
            reply = redisCommand(r->ctx, "AUTH %s %s", u->user, u->password);
        else
            reply = redisCommand(r->ctx, "AUTH %s", u->password);
        if (!reply) {
            set_io_error(r);
            return r->err;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            if (u->user[0])
                set_error(r, -EACCES, 0, "the broker at %s refused the password of user \"%s\": %s",
                          r->addr, u->user, reply->str);
            else
                set_error(r, -EACCES, 0, "the broker at %s refused the password: %s", r->addr,
                          reply->str);
            freeReplyObject(reply);
            return r->err;
        }
        freeReplyObject(reply);
    }
    if (u->db) {
        reply = redisCommand(r->ctx, "SELECT %d", u->db);
        if (!reply) {
            set_io_error(r);
            return r->err;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            int noauth = strncmp(reply->str, "NOAUTH", 6) == 0;
            set_error(r, noauth ? -EACCES : -EINVAL, 0,
                      "the broker at %s refused database %d: %s%s", r->addr, u->db, reply->str,
                      noauth ? " (give the password in $KILN_REDIS_PASSWORD, a password file or "
                               "$KILN_BROKER_URL)"
                             : "");
            freeReplyObject(reply);
            return r->err;
        }
        freeReplyObject(reply);
    }
    reply = redisCommand(r->ctx, "PING");
    if (!reply) {
        set_io_error(r);
        return r->err;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        int noauth = strncmp(reply->str, "NOAUTH", 6) == 0;
        set_error(r, noauth ? -EACCES : -EPROTO, 0, "the broker at %s answered PING with: %s%s",
                  r->addr, reply->str,
                  noauth ? " (it needs a password: set $KILN_REDIS_PASSWORD, "
                           "$KILN_REDIS_PASSWORD_FILE, password_file in the config, or put it "
                           "in $KILN_BROKER_URL)"
                         : "");
        freeReplyObject(reply);
        return r->err;
    }
    freeReplyObject(reply);
    return 0;
}

int
kiln__redis_sync_open(const kiln__redis_url_t *u, double connect_timeout, double command_timeout,
                      kiln__redis_sync_t **out, char *err, size_t errlen)
{
    kiln__redis_sync_t *r;
    int rc;

    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    kiln__redis_url_format(u, 0, r->addr, sizeof(r->addr));
    errno = 0;
    if (u->unix_socket)
        r->ctx = redisConnectUnixWithTimeout(u->path, to_timeval(connect_timeout));
    else
        r->ctx = redisConnectWithTimeout(u->host, u->port, to_timeval(connect_timeout));
    if (!r->ctx) {
        snprintf(err, errlen, "cannot connect to the broker at %s: out of memory", r->addr);
        free(r);
        return -ENOMEM;
    }
    if (r->ctx->err) {
        int e = errno ? errno : ECONNREFUSED;
        snprintf(err, errlen, "cannot connect to the broker at %s: %s", r->addr, r->ctx->errstr);
        kiln__redis_sync_close(r);
        return -e;
    }
    if (command_timeout > 0 && redisSetTimeout(r->ctx, to_timeval(command_timeout)) != REDIS_OK) {
        snprintf(err, errlen, "cannot set a timeout on the connection to %s: %s", r->addr,
                 r->ctx->errstr);
        kiln__redis_sync_close(r);
        return -EIO;
    }
    rc = handshake(r, u);
    if (rc < 0) {
        snprintf(err, errlen, "%s", r->errstr);
        kiln__redis_sync_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void
kiln__redis_sync_close(kiln__redis_sync_t *r)
{
    if (!r)
        return;
    if (r->ctx)
        redisFree(r->ctx);
    free(r);
}
