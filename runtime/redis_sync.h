/*
 * redis_sync.h -- a blocking Redis connection for the command-line tools
 * (`kiln submit`, `kiln status`, `kiln dlq`), over hiredis's synchronous API.
 * The worker's supervisor never uses it: it talks to Redis through hiredis's
 * async API on its libuv loop.
 *
 * Errors stay in the object (hiredis style): a call that fails returns NULL
 * or a negative code and leaves `err` and a message in `errstr` that names
 * the broker's address ("redis+socket:///run/kiln/redis.sock: Connection
 * refused").  The password is never part of a message.
 */
#ifndef KILN_REDIS_SYNC_H
#define KILN_REDIS_SYNC_H

#include "config.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stddef.h>

typedef struct kiln__redis_sync {
    redisContext *ctx;        /* hiredis context (owned); NULL once closed */
    char addr[PATH_MAX + 64]; /* the URL without its password, for messages */
    int err;                  /* 0, or the negative errno of the last failure */
    int io_error;             /* 1: the last failure was the connection, not a Redis error reply */
    char errstr[1024];        /* the last failure, naming addr */
} kiln__redis_sync_t;

/* Connect (TCP or unix socket) within connect_timeout seconds, then AUTH
 * (with the ACL user when the URL has one) and SELECT the URL's db, and
 * PING.  Commands time out after command_timeout seconds (0 = never).
 * 0 with *out set (free with kiln__redis_sync_close), or -errno with a
 * message in err naming the address and the cause. */
int kiln__redis_sync_open(const kiln__redis_url_t *u, double connect_timeout,
                          double command_timeout, kiln__redis_sync_t **out, char *err,
                          size_t errlen);
void kiln__redis_sync_close(kiln__redis_sync_t *r);

/* One command, printf-style as redisCommand.  The reply (free it with
 * freeReplyObject), or NULL on a connection failure or an error reply
 * (r->err, r->errstr say which). */
redisReply *kiln__redis_sync_command(kiln__redis_sync_t *r, const char *fmt, ...);
redisReply *kiln__redis_sync_vcommand(kiln__redis_sync_t *r, const char *fmt, va_list ap);
/* The same with an argument vector (binary-safe). */
redisReply *kiln__redis_sync_argv(kiln__redis_sync_t *r, int argc, const char **argv,
                                  const size_t *argvlen);
/* Send a command without waiting for its reply (SUBSCRIBE). 0 or -errno. */
int kiln__redis_sync_send(kiln__redis_sync_t *r, const char *fmt, ...);
/* Wait at most timeout seconds (< 0: forever) for the next reply: 0 with
 * *reply set, -ETIMEDOUT with *reply NULL when none came (the connection
 * stays usable), or another -errno on a failure. */
int kiln__redis_sync_read(kiln__redis_sync_t *r, double timeout, redisReply **reply);

/* A reply's integer (or the number in a string reply); -1 if neither. */
long long kiln__redis_reply_int(const redisReply *reply);

#endif
