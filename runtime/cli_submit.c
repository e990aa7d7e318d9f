/*
 * cli_submit.c -- `kiln submit`: send one task in Celery's format, as
 * `celery_app.send_task()` would, and optionally wait for its result.
 *
 * The message is LPUSHed to kombu's queue list (a priority sub-list when
 * --priority asks for one), so any Celery worker could run it too; a task
 * due later (--countdown, --eta) waits in the kiln:eta sorted set instead
 * (docs/redis-keys.md), which kiln workers move to the queue when it is due.
 * A broker that cannot be reached is an error (exit 4), never a task
 * silently queued nowhere.
 */
#include "celery.h"
#include "cli.h"
#include "cli_broker.h"
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ETA_KEY       "kiln:eta"
#define META_PREFIX   "celery-task-meta-"
#define POLL_INTERVAL 2.0  /* seconds between GETs while subscribed (a missed PUBLISH) */
#define PENDING_HINT  10.0 /* seconds of PENDING before saying nothing consumes it */

static const char submit_usage[] =
    "usage: kiln submit TASK [options]\n"
    "\n"
    "Send TASK to the broker as a Celery message (protocol 2, JSON), as a Python\n"
    "application's send_task() would, and print its id.  Any Celery or kiln worker\n"
    "that consumes the queue can run it.\n"
    "\n"
    "options:\n"
    "  --args JSON              positional arguments, a JSON array (default [])\n"
    "  --kwargs JSON            keyword arguments, a JSON object (default {})\n"
    "  --queue Q                queue (default celery)\n"
    "  --priority N             0 to 9; kombu's Redis transport serves 0 first (steps 0, 3,\n"
    "                           6, 9 each have their own list)\n"
    "  --countdown S            run no earlier than S seconds from now\n"
    "  --eta ISO                run no earlier than ISO (2026-11-24T06:50:00Z; naive = UTC)\n"
    "  --expires S              discard the task if it has not started within S seconds\n"
    "                           (or at an ISO time)\n"
    "  --time-limit S           hard time limit: the child running it is killed\n"
    "  --soft-time-limit S      soft time limit: the task is told\n"
    "  --wait                   wait for the result: show progress on stderr, print the\n"
    "                           result as JSON on stdout (exit 0), or the error (exit 1)\n"
    "  --timeout S              with --wait: give up after S seconds (exit 1; the task stays\n"
    "                           queued)\n"
    "  --json                   print JSON: {\"id\", \"task\", \"queue\", \"key\", \"priority\",\n"
    "                           \"eta\", \"delayed\"}; with --wait, the result meta as\n"
    "                           Celery stores it\n"
    "  --broker URL             redis://host:port/db or redis+socket:///path (default:\n"
    "                           $KILN_BROKER_URL, the config's broker, else the embedded\n"
    "                           broker's socket); no password here: use $KILN_BROKER_URL,\n"
    "                           $KILN_REDIS_PASSWORD or a password file\n"
    "  --config FILE            read the broker and password_file from FILE\n"
    "  -h, --help               show this help\n"
    "\n"
    "exit status: 0 sent (with --wait: succeeded), 1 the task failed or --timeout passed,\n"
    "2 usage error, 4 the broker cannot be reached.\n";

typedef struct submit {
    const char *task;
    json_t *args, *kwargs;
    const char *queue;
    int priority;
    double countdown;
    int have_countdown;
    double eta, expires, time_limit, soft_time_limit;
    int wait, json;
    double timeout; /* < 0: none */
    const char *broker, *config;
} submit_t;

static double
now_epoch(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double
now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
check_name(const char *what, const char *s, size_t max)
{
    const char *p;
    if (!*s) {
        kiln__cli_error("%s is empty", what);
        return -1;
    }
    if (strlen(s) >= max) {
        kiln__cli_error("%s \"%.40s...\" is longer than %zu bytes", what, s, max - 1);
        return -1;
    }
    for (p = s; *p; p++) {
        if (iscntrl((unsigned char)*p) || isspace((unsigned char)*p)) {
            kiln__cli_error("%s \"%s\" contains a space or control character", what, s);
            return -1;
        }
    }
    return 0;
}

/* A duration in seconds from now, or an ISO time: the epoch it names. */
static int
parse_when(const char *opt, const char *text, double *epoch)
{
    char err[256];
    double d;

    if (kiln__parse_duration(text, &d, err, sizeof(err)) == 0) {
        *epoch = now_epoch() + d;
        return 0;
    }
    if (kiln__celery_parse_time(text, epoch) == 0)
        return 0;
    kiln__cli_error("%s: \"%s\" is neither a number of seconds nor an ISO 8601 time", opt, text);
    return -1;
}

/* --- does anything consume the queue? ------------------------------------- */

static int
list_has(const char *list, size_t len, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = list, *end = list + len;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t l = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (l == nlen && memcmp(p, name, l) == 0)
            return 1;
        p += l + 1;
    }
    return 0;
}

/* 1 when a live kiln worker consumes the queue or (unless kiln_only) a
 * Celery worker declared it (kombu's binding set), 0 when nothing seems to,
 * -1 on a broker error (the task is sent; this is only a hint). */
static int
queue_has_consumer(kiln__cli_broker_t *b, const char *queue, int kiln_only)
{
    redisReply *ws, *r;
    size_t i;
    int found = 0;

    ws = kiln__redis_sync_command(b->conn, "ZRANGE kiln:workers 0 -1");
    if (!ws)
        return -1;
    for (i = 0; ws->type == REDIS_REPLY_ARRAY && i < ws->elements && !found; i++) {
        const redisReply *w = ws->element[i];
        if (w->type != REDIS_REPLY_STRING)
            continue;
        r = kiln__redis_sync_command(b->conn, "EXISTS kiln:hb:%b", w->str, w->len);
        if (!r)
            break;
        if (kiln__redis_reply_int(r) == 1) {
            freeReplyObject(r);
            r = kiln__redis_sync_command(b->conn, "HGET kiln:worker:%b queues", w->str, w->len);
            if (!r)
                break;
            if (r->type == REDIS_REPLY_STRING && list_has(r->str, r->len, queue))
                found = 1;
        }
        freeReplyObject(r);
    }
    freeReplyObject(ws);
    if (found || kiln_only)
        return found;
    /* A Celery worker binds its queue on the exchange of the same name
     * (and "celery" on "celery"): kombu keeps _kombu.binding.<exchange>. */
    r = kiln__redis_sync_command(b->conn, "EXISTS _kombu.binding.%s", queue);
    if (!r)
        return -1;
    found = kiln__redis_reply_int(r) == 1;
    freeReplyObject(r);
    return found;
}

/* Redis's allkeys-* policies may evict a queue list under memory pressure:
 * the task would vanish.  Say so (the worker refuses to start on such a
 * Redis; here the task is sent all the same).  A Redis whose CONFIG is
 * disabled says nothing. */
static void
warn_if_evicting(kiln__cli_broker_t *b)
{
    redisReply *r = kiln__redis_sync_command(b->conn, "CONFIG GET maxmemory-policy");

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING &&
        strncmp(r->element[1]->str, "allkeys-", 8) == 0)
        fprintf(stderr,
                "kiln: warning: the broker at %s has maxmemory-policy %s: under memory pressure "
                "Redis may evict queued tasks (use noeviction or a volatile-* policy)\n",
                b->addr, r->element[1]->str);
    freeReplyObject(r);
}

/* --- waiting for the result ------------------------------------------------- */

typedef struct waiter {
    submit_t *s;
    const char *id;
    char last[64];   /* last state shown */
    char *last_meta; /* last meta shown (dedupe) */
    int done, exit_code;
} waiter_t;

static void
show_exc(const json_t *exc, char *buf, size_t len)
{
    const char *type = json_string_value(json_object_get(exc, "exc_type"));
    json_t *msg = json_object_get(exc, "exc_message");
    char *m = NULL;
    const char *text = "";

    if (json_is_array(msg) && json_array_size(msg) == 1 && json_is_string(json_array_get(msg, 0)))
        text = json_string_value(json_array_get(msg, 0));
    else if (json_is_string(msg))
        text = json_string_value(msg);
    else if (msg && !(json_is_array(msg) && json_array_size(msg) == 0))
        text = m = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, len, "%s: %s", type ? type : "Exception", text ? text : "");
    free(m);
}

/* Show one meta; set w->done when it is final. */
static void
on_meta(waiter_t *w, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *meta, *result;
    const char *status;
    char line[2048];

    if (w->last_meta && strlen(w->last_meta) == len && memcmp(w->last_meta, data, len) == 0)
        return;
    free(w->last_meta);
    w->last_meta = strndup(data, len);
    meta = json_loadb(data, len, 0, &jerr);
    status = json_string_value(json_object_get(meta, "status"));
    if (!meta || !status) {
        kiln__cli_error("%s[%s]: the result backend holds something that is not Celery result "
                        "meta: %s",
                        w->s->task, w->id, meta ? "no \"status\"" : jerr.text);
        json_decref(meta);
        w->done = 1;
        w->exit_code = KILN__EXIT_FAILED;
        return;
    }
    result = json_object_get(meta, "result");
    if (strcmp(status, "SUCCESS") == 0) {
        char *out = json_dumps(w->s->json ? meta : (result ? result : json_null()),
                               JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%s\n", out ? out : "null");
        fflush(stdout);
        free(out);
        w->done = 1;
        w->exit_code = KILN__EXIT_OK;
    } else if (strcmp(status, "FAILURE") == 0 || strcmp(status, "REVOKED") == 0) {
        if (w->s->json) {
            char *out = json_dumps(meta, JSON_COMPACT);
            printf("%s\n", out ? out : "{}");
            fflush(stdout);
            free(out);
        }
        if (strcmp(status, "REVOKED") == 0) {
            kiln__cli_error("%s was revoked", w->s->task);
        } else {
            show_exc(result, line, sizeof(line));
            kiln__cli_error("%s failed: %s", w->s->task, line);
        }
        w->done = 1;
        w->exit_code = KILN__EXIT_FAILED;
    } else if (strcmp(status, "PENDING") == 0) {
        /* nothing to show */
    } else if (strcmp(status, "STARTED") == 0) {
        const char *host = json_string_value(json_object_get(result, "hostname"));
        json_t *pid = json_object_get(result, "pid");
        if (host && json_is_integer(pid))
            fprintf(stderr, "kiln: %s[%s] STARTED on %s (pid %" JSON_INTEGER_FORMAT ")\n",
                    w->s->task, w->id, host, json_integer_value(pid));
        else
            fprintf(stderr, "kiln: %s[%s] STARTED\n", w->s->task, w->id);
    } else if (strcmp(status, "PROGRESS") == 0) {
        json_t *f = json_object_get(result, "fraction");
        json_t *cur = json_object_get(result, "current"), *tot = json_object_get(result, "total");
        const char *msg = json_string_value(json_object_get(result, "message"));
        if (json_is_number(f))
            snprintf(line, sizeof(line), "%.0f%%", json_number_value(f) * 100.0);
        else if (json_is_number(cur) && json_is_number(tot) && json_number_value(tot) > 0)
            snprintf(line, sizeof(line), "%.0f%%",
                     json_number_value(cur) * 100.0 / json_number_value(tot));
        else {
            char *d = json_dumps(result ? result : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
            snprintf(line, sizeof(line), "%.1000s", d ? d : "");
            free(d);
        }
        fprintf(stderr, "kiln: %s[%s] PROGRESS %s%s%s\n", w->s->task, w->id, line, msg ? ": " : "",
                msg ? msg : "");
    } else if (strcmp(status, "RETRY") == 0) {
        show_exc(result, line, sizeof(line));
        fprintf(stderr, "kiln: %s[%s] RETRY after %s\n", w->s->task, w->id, line);
    } else {
        char *d = json_dumps(result ? result : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(stderr, "kiln: %s[%s] %s %.1000s\n", w->s->task, w->id, status, d ? d : "");
        free(d);
    }
    snprintf(w->last, sizeof(w->last), "%s", status);
    json_decref(meta);
}

/* GET the meta now (a result written before we subscribed, or a PUBLISH
 * we missed).  0, or an exit status on a broker error. */
static int
poll_meta(kiln__cli_broker_t *b, waiter_t *w, const char *key)
{
    redisReply *r = kiln__redis_sync_command(b->conn, "GET %s", key);
    if (!r)
        return kiln__cli_broker_fail(b, "waiting for the result");
    if (r->type == REDIS_REPLY_STRING)
        on_meta(w, r->str, r->len);
    freeReplyObject(r);
    return 0;
}

/* A second connection SUBSCRIBEd to the task's result channel, made before
 * the task is sent so that no state it publishes is missed.  0, or an exit
 * status after saying why. */
static int
subscribe_result(kiln__cli_broker_t *b, const char *id, kiln__redis_sync_t **out)
{
    kiln__redis_sync_t *sub = NULL;
    redisReply *confirm = NULL;
    char err[2048];
    int rc;

    *out = NULL;
    rc = kiln__redis_sync_open(&b->url, KILN__CLI_CONNECT_TIMEOUT, 0, &sub, err, sizeof(err));
    if (rc < 0) {
        kiln__cli_error("%s", err);
        return KILN__EXIT_SYSTEM;
    }
    if (kiln__redis_sync_send(sub, "SUBSCRIBE " META_PREFIX "%s", id) < 0 ||
        kiln__redis_sync_read(sub, KILN__CLI_COMMAND_TIMEOUT, &confirm) < 0) {
        kiln__cli_error("cannot subscribe to the result: %s",
                        sub->err ? sub->errstr : "no confirmation");
        kiln__redis_sync_close(sub);
        return KILN__EXIT_SYSTEM;
    }
    if (confirm->type != REDIS_REPLY_ARRAY) {
        kiln__cli_error("cannot subscribe to the result: the broker at %s answered %s", b->addr,
                        confirm->type == REDIS_REPLY_ERROR ? confirm->str : "something else");
        freeReplyObject(confirm);
        kiln__redis_sync_close(sub);
        return KILN__EXIT_SYSTEM;
    }
    freeReplyObject(confirm);
    *out = sub;
    return 0;
}

/* Show the task's states until it is done; `sub` is subscribed (closed here). */
static int
wait_result(kiln__cli_broker_t *b, submit_t *s, const char *id, kiln__redis_sync_t *sub)
{
    waiter_t w = {.s = s, .id = id};
    char key[256];
    double start = now_mono(), next_poll, hinted = 0;
    int rc;

    snprintf(key, sizeof(key), META_PREFIX "%s", id);
    rc = poll_meta(b, &w, key);
    next_poll = now_mono() + POLL_INTERVAL;
    while (rc == 0 && !w.done) {
        redisReply *msg = NULL;
        double t = now_mono(), slice = next_poll - t;
        int r;

        if (s->timeout >= 0 && t - start >= s->timeout) {
            kiln__cli_error("timed out after %g s waiting for %s[%s] (last state: %s); the task "
                            "stays queued and may still run",
                            s->timeout, s->task, id, w.last[0] ? w.last : "PENDING");
            rc = KILN__EXIT_FAILED;
            break;
        }
        if (!hinted && !w.last[0] && t - start >= PENDING_HINT) {
            hinted = 1;
            fprintf(stderr,
                    "kiln: %s[%s] still PENDING after %.0f s: is a worker consuming queue "
                    "\"%s\"? (kiln status shows them)\n",
                    s->task, id, PENDING_HINT, s->queue);
        }
        if (s->timeout >= 0 && start + s->timeout - t < slice)
            slice = start + s->timeout - t;
        if (slice < 0)
            slice = 0;
        r = kiln__redis_sync_read(sub, slice, &msg);
        if (r == -ETIMEDOUT) {
            rc = poll_meta(b, &w, key);
            next_poll = now_mono() + POLL_INTERVAL;
            continue;
        }
        if (r < 0) {
            kiln__cli_error("waiting for the result: %s", sub->errstr);
            rc = KILN__EXIT_SYSTEM;
            break;
        }
        /* ["message", channel, payload] (or the ["subscribe", ...] confirmation) */
        if (msg->type == REDIS_REPLY_ARRAY && msg->elements == 3 &&
            msg->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(msg->element[0]->str, "message") == 0 &&
            msg->element[2]->type == REDIS_REPLY_STRING)
            on_meta(&w, msg->element[2]->str, msg->element[2]->len);
        else if (msg->type == REDIS_REPLY_ERROR) {
            kiln__cli_error("waiting for the result: the broker at %s answered: %s", b->addr,
                            msg->str);
            rc = KILN__EXIT_SYSTEM;
        }
        freeReplyObject(msg);
    }
    kiln__redis_sync_close(sub);
    free(w.last_meta);
    return rc ? rc : w.exit_code;
}

/* --- sending ---------------------------------------------------------------- */

static int
send_task(kiln__cli_broker_t *b, submit_t *s)
{
    kiln__celery_new_t spec;
    char id[64], want_id[64], qkey[256], host[128], origin[200], when[64];
    char *msg, *member = NULL;
    kiln__redis_sync_t *sub = NULL;
    redisReply *r;
    double now = now_epoch();
    int delayed = s->eta > now + 0.001, rc = 0, consumer;

    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(origin, sizeof(origin), "kiln-submit-%d@%s", (int)getpid(), host);
    memset(&spec, 0, sizeof(spec));
    spec.task = s->task;
    spec.args = s->args;
    spec.kwargs = s->kwargs;
    spec.queue = s->queue;
    spec.priority = s->priority;
    spec.eta = s->eta;
    spec.expires = s->expires;
    spec.soft_time_limit = s->soft_time_limit;
    spec.time_limit = s->time_limit;
    spec.origin = origin;
    if (s->wait) {
        kiln__celery_uuid(want_id, sizeof(want_id));
        spec.id = want_id;
        rc = subscribe_result(b, want_id, &sub);
        if (rc)
            return rc;
    }
    msg = kiln__celery_encode(&spec, id, sizeof(id));
    if (!msg) {
        kiln__cli_error("cannot encode the message for %s (out of memory?)", s->task);
        kiln__redis_sync_close(sub);
        return KILN__EXIT_SYSTEM;
    }
    kiln__celery_queue_key(s->queue, s->priority, qkey, sizeof(qkey));
    warn_if_evicting(b);
    if (delayed) {
        size_t ql = strlen(qkey), ml = strlen(msg);
        char score[32];
        const char *argv[4];
        size_t argl[4];

        member = malloc(ql + 1 + ml);
        if (!member) {
            free(msg);
            kiln__redis_sync_close(sub);
            kiln__cli_error("out of memory");
            return KILN__EXIT_SYSTEM;
        }
        memcpy(member, qkey, ql);
        member[ql] = '\n';
        memcpy(member + ql + 1, msg, ml);
        snprintf(score, sizeof(score), "%.0f", floor(s->eta * 1000.0));
        argv[0] = "ZADD";
        argv[1] = ETA_KEY;
        argv[2] = score;
        argv[3] = member;
        argl[0] = 4;
        argl[1] = strlen(ETA_KEY);
        argl[2] = strlen(score);
        argl[3] = ql + 1 + ml;
        r = kiln__redis_sync_argv(b->conn, 4, argv, argl);
    } else {
        const char *argv[3] = {"LPUSH", qkey, msg};
        size_t argl[3] = {5, strlen(qkey), strlen(msg)};
        r = kiln__redis_sync_argv(b->conn, 3, argv, argl);
    }
    free(member);
    free(msg);
    if (!r) {
        kiln__cli_error("%s was NOT sent: %s", s->task, b->conn->errstr);
        kiln__redis_sync_close(sub);
        return KILN__EXIT_SYSTEM;
    }
    freeReplyObject(r);

    if (s->eta > 0)
        kiln__celery_format_time(s->eta, when, sizeof(when));
    if (s->json && !s->wait) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s%,s:o,s:o,s:b}", "id", id, "task", s->task, "queue",
                              s->queue, "key", qkey, strlen(qkey), "priority",
                              s->priority >= 0 ? json_integer(s->priority) : json_null(), "eta",
                              s->eta > 0 ? json_string(when) : json_null(), "delayed", delayed);
        char *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
        printf("%s\n", out ? out : "{}");
        free(out);
        json_decref(o);
    } else if (!s->wait) {
        printf("%s\n", id);
    }
    fflush(stdout);
    if (delayed) {
        fprintf(stderr, "kiln: %s[%s] waits in %s until %s, then goes to queue \"%s\"\n", s->task,
                id, ETA_KEY, when, s->queue);
    } else if (s->wait) {
        fprintf(stderr, "kiln: %s[%s] sent to queue \"%s\"\n", s->task, id, s->queue);
    }
    consumer = queue_has_consumer(b, s->queue, delayed);
    if (consumer == 0 && delayed)
        fprintf(stderr,
                "kiln: warning: no live kiln worker consumes queue \"%s\"; only kiln workers "
                "move due tasks from %s to their queue\n",
                s->queue, ETA_KEY);
    else if (consumer == 0)
        fprintf(stderr,
                "kiln: warning: no live kiln worker consumes queue \"%s\" and no Celery worker "
                "declared it; the task waits in Redis until one does\n",
                s->queue);
    if (s->wait)
        rc = wait_result(b, s, id, sub);
    return rc;
}

enum {
    OPT_ARGS = 256,
    OPT_KWARGS,
    OPT_QUEUE,
    OPT_PRIORITY,
    OPT_COUNTDOWN,
    OPT_ETA,
    OPT_EXPIRES,
    OPT_TIME,
    OPT_SOFT,
    OPT_WAIT,
    OPT_TIMEOUT,
    OPT_JSON,
    OPT_BROKER,
    OPT_CONFIG,
};

int
kiln__cmd_submit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"args", required_argument, NULL, OPT_ARGS},
        {"kwargs", required_argument, NULL, OPT_KWARGS},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"priority", required_argument, NULL, OPT_PRIORITY},
        {"countdown", required_argument, NULL, OPT_COUNTDOWN},
        {"eta", required_argument, NULL, OPT_ETA},
        {"expires", required_argument, NULL, OPT_EXPIRES},
        {"time-limit", required_argument, NULL, OPT_TIME},
        {"soft-time-limit", required_argument, NULL, OPT_SOFT},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", no_argument, NULL, OPT_JSON},
        {"broker", required_argument, NULL, OPT_BROKER},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    submit_t s;
    kiln__cli_broker_t b;
    char err[512];
    uint64_t u;
    double d;
    int c, rc, have_eta = 0, have_timeout = 0;

    memset(&s, 0, sizeof(s));
    s.args = json_array();
    s.kwargs = json_object();
    s.queue = "celery";
    s.priority = -1;
    s.timeout = -1;
    optind = 1;
    opterr = 0;
    rc = KILN__EXIT_USAGE;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_ARGS:
            if (kiln__cli_json_arg("--args", optarg, 1, &s.args) < 0)
                goto out;
            break;
        case OPT_KWARGS:
            if (kiln__cli_json_arg("--kwargs", optarg, 0, &s.kwargs) < 0)
                goto out;
            break;
        case OPT_QUEUE:
            if (check_name("--queue", optarg, 128) < 0 || strchr(optarg, ',')) {
                if (strchr(optarg, ','))
                    kiln__cli_error("--queue takes one queue, not a list: \"%s\"", optarg);
                goto out;
            }
            s.queue = optarg;
            break;
        case OPT_PRIORITY:
            if (kiln__parse_uint(optarg, 0, 9, &u, err, sizeof(err)) < 0) {
                kiln__cli_error("--priority: %s (kombu's Redis transport has priorities 0 to 9, "
                                "0 served first)",
                                err);
                goto out;
            }
            s.priority = (int)u;
            break;
        case OPT_COUNTDOWN:
            if (kiln__parse_duration(optarg, &d, err, sizeof(err)) < 0) {
                kiln__cli_error("--countdown: %s", err);
                goto out;
            }
            s.countdown = d;
            s.have_countdown = 1;
            break;
        case OPT_ETA:
            if (kiln__celery_parse_time(optarg, &s.eta) < 0) {
                kiln__cli_error("--eta: \"%s\" is not an ISO 8601 time such as "
                                "2026-11-24T06:50:00Z",
                                optarg);
                goto out;
            }
            have_eta = 1;
            break;
        case OPT_EXPIRES:
            if (parse_when("--expires", optarg, &s.expires) < 0)
                goto out;
            break;
        case OPT_TIME:
        case OPT_SOFT:
            if (kiln__parse_duration(optarg, &d, err, sizeof(err)) < 0) {
                kiln__cli_error("%s: %s", c == OPT_TIME ? "--time-limit" : "--soft-time-limit",
                                err);
                goto out;
            }
            if (d <= 0) {
                kiln__cli_error("%s must be above 0",
                                c == OPT_TIME ? "--time-limit" : "--soft-time-limit");
                goto out;
            }
            if (c == OPT_TIME)
                s.time_limit = d;
            else
                s.soft_time_limit = d;
            break;
        case OPT_WAIT:
            s.wait = 1;
            break;
        case OPT_TIMEOUT:
            if (kiln__parse_duration(optarg, &s.timeout, err, sizeof(err)) < 0) {
                kiln__cli_error("--timeout: %s", err);
                goto out;
            }
            have_timeout = 1;
            break;
        case OPT_JSON:
            s.json = 1;
            break;
        case OPT_BROKER:
            s.broker = optarg;
            break;
        case OPT_CONFIG:
            s.config = optarg;
            break;
        case 'h':
            fputs(submit_usage, stdout);
            rc = KILN__EXIT_OK;
            goto out;
        default:
            if (optopt && optopt < 256)
                kiln__cli_error("submit: unknown option \"-%c\"; see 'kiln submit --help'", optopt);
            else
                kiln__cli_error("submit: bad option \"%s\"; see 'kiln submit --help'",
                                argv[optind - 1]);
            goto out;
        }
    }
    if (optind >= argc) {
        kiln__cli_error("submit: which task? usage: kiln submit TASK [options]");
        goto out;
    }
    if (argc - optind > 1) {
        kiln__cli_error("submit: one task at a time (got \"%s\" after \"%s\")", argv[optind + 1],
                        argv[optind]);
        goto out;
    }
    s.task = argv[optind];
    if (check_name("the task name", s.task, 256) < 0)
        goto out;
    if (have_eta && s.have_countdown) {
        kiln__cli_error("submit: give --countdown or --eta, not both");
        goto out;
    }
    if (have_timeout && !s.wait) {
        kiln__cli_error("submit: --timeout needs --wait");
        goto out;
    }
    if (s.have_countdown)
        s.eta = s.countdown > 0 ? now_epoch() + s.countdown : 0;
    if (s.expires > 0 && s.expires <= (s.eta > 0 ? s.eta : now_epoch())) {
        kiln__cli_error("submit: --expires is %s, so the task would expire before it is due",
                        s.eta > 0 ? "before its --eta/--countdown" : "in the past");
        goto out;
    }
    if (s.soft_time_limit > 0 && s.time_limit > 0 && s.soft_time_limit >= s.time_limit) {
        kiln__cli_error("submit: --soft-time-limit (%g s) must be below --time-limit (%g s)",
                        s.soft_time_limit, s.time_limit);
        goto out;
    }
    rc = kiln__cli_broker_open(&b, s.broker, s.config);
    if (rc == 0)
        rc = send_task(&b, &s);
    kiln__cli_broker_close(&b);
out:
    json_decref(s.args);
    json_decref(s.kwargs);
    return rc;
}
