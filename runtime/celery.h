/*
 * celery.h -- Celery message protocol 2 over kombu's Redis transport, and
 * Celery's Redis result backend format.  Pure functions: no I/O, no libuv,
 * no hiredis, so they can be unit-tested and fuzzed alone.
 *
 * A kombu Redis message is a JSON envelope:
 *   {"body": "<base64 of the (optionally compressed) JSON [args, kwargs, embed]>",
 *    "content-encoding": "utf-8", "content-type": "application/json",
 *    "headers": {"lang": "py", "task": NAME, "id": ID, "retries": N, "eta": ISO|null,
 *                "expires": ISO|null, "timelimit": [hard|null, soft|null], "root_id",
 *                "parent_id", "group", "compression"?: "application/x-gzip", ...},
 *    "properties": {"correlation_id": ID, "reply_to": ..., "delivery_mode": 2,
 *                   "delivery_info": {"exchange": "", "routing_key": QUEUE},
 *                   "priority": 0, "body_encoding": "base64", "delivery_tag": UUID}}
 * Anything that is not JSON (pickle, yaml, msgpack) is never deserialized.
 */
#ifndef KILN_CELERY_H
#define KILN_CELERY_H

#include <jansson.h>
#include <stddef.h>

#define KILN__CELERY_PRIORITY_SEP "\x06\x16"

typedef struct kiln__task_msg {
    json_t *envelope; /* the decoded envelope (owned); only the fields read
                         here when `raw` is set (the fast path) */
    char *raw;        /* a copy of the message when envelope is slim (owned) */
    size_t rawlen;
    char id[160];            /* headers.id */
    char task[256];          /* headers.task */
    json_t *args;            /* array (owned reference) */
    json_t *kwargs;          /* object (owned reference) */
    json_t *embed;           /* object: callbacks, errbacks, chain, chord (owned), or NULL */
    char *body;              /* the plain body text when the fast path read it (owned) */
    const char *args_text;   /* args as written in body (args_len bytes), or NULL */
    const char *kwargs_text; /* kwargs as written in body, or NULL */
    size_t args_len, kwargs_len;
    long retries;           /* headers.retries, 0 if absent */
    double eta;             /* epoch seconds; 0 = none */
    double expires;         /* epoch seconds; 0 = none */
    double soft_time_limit; /* headers.timelimit[1] (Celery: [hard, soft]); 0 = none */
    double time_limit;      /* headers.timelimit[0]; 0 = none */
    char root_id[160];
    char parent_id[160];
    char group[160];
    int priority; /* properties.priority clamped to 0..9 (kombu), -1 if absent */
    char reply_to[160];
    char routing_key[256]; /* properties.delivery_info.routing_key */
    char exchange[256];
} kiln__task_msg_t;

/* Decode one raw message.  `max_body` bounds the body after base64 and
 * decompression (a zip bomb stops there).  Returns 0, or:
 *   -EMEDIUMTYPE  content type or body encoding is not JSON/base64 (message
 *                 was not deserialized; dead-letter it),
 *   -E2BIG        the body is over max_body,
 *   -EPROTO       malformed: bad JSON, bad base64, a missing or mistyped field,
 *                 an unknown compression;
 * always with a message naming the cause in `err`.  On error *out holds
 * whatever id/task could be read (for the dead-letter entry), nothing owned. */
int kiln__celery_decode(const char *data, size_t len, size_t max_body, kiln__task_msg_t *out,
                        char *err, size_t errlen);
/* The same without the fast path (jansson on the whole message): for tests
 * and the fuzzer, which check that both agree. */
int kiln__celery_decode_slow(const char *data, size_t len, size_t max_body, kiln__task_msg_t *out,
                             char *err, size_t errlen);
void kiln__celery_msg_free(kiln__task_msg_t *m);

/* What `kiln submit` (and retries) need to build a protocol-2 message. */
typedef struct kiln__celery_new {
    const char *task;
    const char *id;       /* NULL: a new uuid4 is generated */
    const json_t *args;   /* array, NULL = [] */
    const json_t *kwargs; /* object, NULL = {} */
    const json_t *embed;  /* NULL = {"callbacks":null,"errbacks":null,"chain":null,"chord":null} */
    const char *queue;    /* routing key, e.g. "celery" */
    int priority;         /* -1 = none */
    long retries;
    double eta;                              /* epoch seconds, 0 = none */
    double expires;                          /* epoch seconds, 0 = none */
    double soft_time_limit, time_limit;      /* 0 = none */
    const char *root_id, *parent_id, *group; /* NULL = none (root_id defaults to id) */
    const char *origin;                      /* e.g. "kiln@host" */
} kiln__celery_new_t;

/* A malloc'd JSON envelope (NUL-terminated) a Python Celery worker accepts,
 * and the id used (copied into id_out, 37+ bytes).  NULL with errno ENOMEM,
 * or EINVAL (no task or queue, args not an array, kwargs not an object). */
char *kiln__celery_encode(const kiln__celery_new_t *spec, char *id_out, size_t id_len);

/* The same message with retries+1, a new eta (epoch seconds) and a new
 * properties.delivery_tag, for a retry; the body (still compressed if it
 * was), id and everything else kept.  Malloc'd, NULL on error (EINVAL: no
 * envelope, or retries already at the 2^31-1 that decode accepts). */
char *kiln__celery_retry_message(const kiln__task_msg_t *m, double eta);

/* Celery's result meta as its Redis backend stores it:
 * {"status", "result", "traceback", "children": [], "date_done": ISO|null,
 *  ["group_id"], ["parent_id"], "task_id"} in that order.  `result` is borrowed.
 * date_done is set for READY states (SUCCESS, FAILURE, REVOKED).  Malloc'd. */
char *kiln__celery_result(const char *task_id, const char *status, const json_t *result,
                          const char *traceback, const kiln__task_msg_t *m);

/* {"exc_type": T, "exc_message": [message], "exc_module": M} where M makes
 * Python raise the right class: "builtins" for Python's built-in exceptions
 * (ValueError, KeyError, MemoryError, ...), "celery.exceptions" for
 * TimeLimitExceeded, SoftTimeLimitExceeded, Retry, NotRegistered,
 * "billiard.exceptions" for WorkerLostError, else "kiln.exceptions" (Celery
 * then makes a class of that name).  New reference. */
json_t *kiln__celery_exc(const char *exc_type, const char *message);

/* The Redis key of a queue at a priority: "q" for priority <= 0 or none,
 * else "q\x06\x16<step>" with kombu's steps [0, 3, 6, 9] (step = the largest
 * step <= priority).  Returns buf. */
const char *kiln__celery_queue_key(const char *queue, int priority, char *buf, size_t len);

/* ISO 8601 ("2026-11-24T06:50:00.123456+00:00", "...Z", or naive = UTC) to
 * epoch seconds, and back as Python's isoformat() writes it (UTC, ".ffffff"
 * only when non-zero, "+00:00"; "" outside years 1..9999).  -EINVAL if bad. */
int kiln__celery_parse_time(const char *iso, double *epoch);
void kiln__celery_format_time(double epoch, char *buf, size_t len);

/* A random uuid4 string (36 chars + NUL) into buf (>= 37 bytes). */
void kiln__celery_uuid(char *buf, size_t len);

#endif
