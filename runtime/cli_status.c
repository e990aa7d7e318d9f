/*
 * cli_status.c -- `kiln status`: what waits in Redis and who works on it.
 *
 * Reads the keys of docs/redis-keys.md: kombu's queue lists (with their
 * priority sub-lists), kiln:eta, kiln:dlq, and the workers' registry
 * (kiln:workers, kiln:hb:<wid>, kiln:worker:<wid>, kiln:inflight:<wid>).
 * It only reads; a dead worker's tasks are recovered by the live workers.
 */
#include "celery.h"
#include "cli.h"
#include "cli_broker.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define MAX_SHOWN_TASKS  20 /* in-flight tasks listed per worker */
#define MAX_QUEUES_SHOWN 128

static const char status_usage[] =
    "usage: kiln status [options]\n"
    "\n"
    "Show the broker's queue depths (with kombu's priority sub-lists), the tasks\n"
    "waiting for their ETA, the dead-letter size, and the workers: live ones with\n"
    "their in-flight tasks, dead ones whose tasks go back to their queues.\n"
    "\n"
    "options:\n"
    "  --queues Q1,Q2           the queues to show (default: celery, the config's\n"
    "                           queues and every queue a registered worker consumes)\n"
    "  --json                   print one JSON object instead of text\n"
    "  --broker URL             redis://host:port/db or redis+socket:///path (default:\n"
    "                           $KILN_BROKER_URL, the config's broker, else the embedded\n"
    "                           broker's socket); no password here\n"
    "  --config FILE            read the broker, password_file and queues from FILE\n"
    "  -h, --help               show this help\n"
    "\n"
    "exit status: 0 shown, 2 usage error, 4 the broker cannot be reached.\n";

static const int priority_steps[] = {0, 3, 6, 9};

typedef struct status {
    kiln__cli_broker_t *b;
    char (*queues)[128];
    int nqueues;
    int fixed;   /* --queues: show only those */
    int failed;  /* a command failed: b->conn->errstr says why */
    json_t *out; /* the whole report */
} status_t;

static double
now_epoch(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void
add_queue(status_t *st, const char *name, size_t len)
{
    int i;
    if (len == 0 || len >= 128 || st->nqueues >= MAX_QUEUES_SHOWN)
        return;
    for (i = 0; i < st->nqueues; i++) {
        if (strlen(st->queues[i]) == len && memcmp(st->queues[i], name, len) == 0)
            return;
    }
    memcpy(st->queues[st->nqueues], name, len);
    st->queues[st->nqueues][len] = '\0';
    st->nqueues++;
}

static void
add_queue_list(status_t *st, const char *list, size_t len)
{
    const char *p = list, *end = list + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t l = comma ? (size_t)(comma - p) : (size_t)(end - p);
        add_queue(st, p, l);
        p += l + 1;
    }
}

/* The integer answer to a command (0 for nil), or -1 with st->failed set. */
static long long
cmd_int(status_t *st, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    long long v;

    if (st->failed)
        return -1;
    va_start(ap, fmt);
    r = kiln__redis_sync_vcommand(st->b->conn, fmt, ap);
    va_end(ap);
    if (!r) {
        st->failed = 1;
        return -1;
    }
    v = kiln__redis_reply_int(r);
    freeReplyObject(r);
    return v < 0 ? 0 : v;
}

static int
collect_queues(status_t *st)
{
    json_t *arr = json_array();
    int i, k;

    json_object_set_new(st->out, "queues", arr);
    for (i = 0; i < st->nqueues; i++) {
        json_t *q = json_object(), *byp = json_object();
        long long total = 0;
        for (k = 0; k < 4; k++) {
            char key[160], step[8];
            long long n;
            kiln__celery_queue_key(st->queues[i], priority_steps[k], key, sizeof(key));
            n = cmd_int(st, "LLEN %s", key);
            snprintf(step, sizeof(step), "%d", priority_steps[k]);
            json_object_set_new(byp, step, json_integer(n));
            total += n;
        }
        json_object_set_new(q, "name", json_string(st->queues[i]));
        json_object_set_new(q, "ready", json_integer(total));
        json_object_set_new(q, "by_priority", byp);
        json_array_append_new(arr, q);
    }
    return 0;
}

/* "celery\x06\x163" -> "celery (priority 3)" for people. */
static json_t *
queue_of_key(const char *key, size_t len)
{
    const char *sep = memmem(key, len, KILN__CELERY_PRIORITY_SEP, 2);
    json_t *o = json_object();
    if (sep) {
        json_object_set_new(o, "queue", json_stringn(key, (size_t)(sep - key)));
        json_object_set_new(o, "priority", json_integer(atoi(sep + 2)));
    } else {
        json_object_set_new(o, "queue", json_stringn(key, len));
        json_object_set_new(o, "priority", json_integer(0));
    }
    return o;
}

static int
cmp_tags(const void *a, const void *b)
{
    const redisReply *x = *(redisReply *const *)a, *y = *(redisReply *const *)b;
    const char *cx = strrchr(x->str, ':'), *cy = strrchr(y->str, ':');
    long long nx = cx ? atoll(cx + 1) : 0, ny = cy ? atoll(cy + 1) : 0;
    return nx < ny ? -1 : nx > ny;
}

/* The first MAX_SHOWN_TASKS in-flight tasks of a worker (oldest tag first). */
static int
collect_inflight(status_t *st, const char *wid, size_t wlen, json_t *w)
{
    redisReply *tags, *msgs = NULL, *qs = NULL;
    const char *argv[2 + MAX_SHOWN_TASKS];
    size_t argl[2 + MAX_SHOWN_TASKS], i, n;
    char hkey[512], qkey[512];
    json_t *tasks = json_array();

    json_object_set_new(w, "tasks", tasks);
    snprintf(hkey, sizeof(hkey), "kiln:inflight:%.*s", (int)wlen, wid);
    snprintf(qkey, sizeof(qkey), "kiln:inflightq:%.*s", (int)wlen, wid);
    tags = kiln__redis_sync_command(st->b->conn, "HKEYS %s", hkey);
    if (!tags)
        return -1;
    if (tags->type != REDIS_REPLY_ARRAY || tags->elements == 0) {
        freeReplyObject(tags);
        return 0;
    }
    qsort(tags->element, tags->elements, sizeof(redisReply *), cmp_tags);
    n = tags->elements < MAX_SHOWN_TASKS ? tags->elements : MAX_SHOWN_TASKS;
    argv[0] = "HMGET";
    argl[0] = 5;
    for (i = 0; i < n; i++) {
        argv[2 + i] = tags->element[i]->str;
        argl[2 + i] = tags->element[i]->len;
    }
    argv[1] = hkey;
    argl[1] = strlen(hkey);
    msgs = kiln__redis_sync_argv(st->b->conn, (int)(2 + n), argv, argl);
    argv[1] = qkey;
    argl[1] = strlen(qkey);
    qs = msgs ? kiln__redis_sync_argv(st->b->conn, (int)(2 + n), argv, argl) : NULL;
    if (!msgs || !qs) {
        freeReplyObject(tags);
        freeReplyObject(msgs);
        return -1;
    }
    for (i = 0; i < n && msgs->type == REDIS_REPLY_ARRAY && i < msgs->elements; i++) {
        const redisReply *m = msgs->element[i];
        const redisReply *q =
            qs->type == REDIS_REPLY_ARRAY && i < qs->elements ? qs->element[i] : NULL;
        json_t *t = json_object();
        kiln__task_msg_t tm;
        char err[512];

        json_object_set_new(t, "tag", json_stringn(tags->element[i]->str, tags->element[i]->len));
        if (m->type != REDIS_REPLY_STRING) {
            /* acked between HKEYS and HMGET */
            json_decref(t);
            continue;
        }
        memset(&tm, 0, sizeof(tm));
        if (kiln__celery_decode(m->str, m->len, st->b->cfg->max_message_bytes, &tm, err,
                                sizeof(err)) == 0) {
            json_object_set_new(t, "id", json_string(tm.id));
            json_object_set_new(t, "task", json_string(tm.task));
            kiln__celery_msg_free(&tm);
        } else {
            json_object_set_new(t, "id", json_string(tm.id));
            json_object_set_new(t, "task", json_string(tm.task));
            json_object_set_new(t, "error", json_string(err));
        }
        if (q && q->type == REDIS_REPLY_STRING) {
            json_t *where = queue_of_key(q->str, q->len);
            json_object_update(t, where);
            json_decref(where);
        }
        json_array_append_new(tasks, t);
    }
    freeReplyObject(tags);
    freeReplyObject(msgs);
    freeReplyObject(qs);
    return 0;
}

static int
collect_workers(status_t *st, redisReply *ws)
{
    json_t *arr = json_array();
    size_t i;
    int live = 0, dead = 0;

    json_object_set_new(st->out, "workers", arr);
    for (i = 0; ws->type == REDIS_REPLY_ARRAY && i + 1 < ws->elements; i += 2) {
        const redisReply *id = ws->element[i], *score = ws->element[i + 1];
        json_t *w = json_object(), *info = json_object();
        redisReply *h;
        long long alive, inflight;
        size_t k;

        if (id->type != REDIS_REPLY_STRING)
            continue;
        json_array_append_new(arr, w);
        json_object_set_new(w, "id", json_stringn(id->str, id->len));
        alive = cmd_int(st, "EXISTS kiln:hb:%b", id->str, id->len);
        if (st->failed)
            return -1;
        json_object_set_new(w, "alive", json_boolean(alive == 1));
        if (alive == 1)
            live++;
        else
            dead++;
        json_object_set_new(
            w, "last_heartbeat",
            json_real(score->type == REDIS_REPLY_STRING ? atof(score->str) / 1000.0 : 0));
        h = kiln__redis_sync_command(st->b->conn, "HGETALL kiln:worker:%b", id->str, id->len);
        if (!h)
            return -1;
        for (k = 0; h->type == REDIS_REPLY_ARRAY && k + 1 < h->elements; k += 2) {
            const redisReply *f = h->element[k], *v = h->element[k + 1];
            if (f->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
                json_object_set_new(info, f->str, json_stringn(v->str, v->len));
        }
        freeReplyObject(h);
        json_object_set_new(w, "host", json_incref(json_object_get(info, "host")));
        if (json_object_get(info, "pid"))
            json_object_set_new(
                w, "pid", json_integer(atoll(json_string_value(json_object_get(info, "pid")))));
        if (json_object_get(info, "queues")) {
            json_t *ql = json_array();
            const char *s = json_string_value(json_object_get(info, "queues"));
            size_t len = strlen(s);
            const char *p = s;
            while (p < s + len) {
                size_t l = strcspn(p, ",");
                if (l)
                    json_array_append_new(ql, json_stringn(p, l));
                p += l + 1;
            }
            json_object_set_new(w, "queues", ql);
        }
        json_object_set_new(w, "info", info);
        inflight = cmd_int(st, "HLEN kiln:inflight:%b", id->str, id->len);
        json_object_set_new(w, "inflight", json_integer(inflight));
        if (collect_inflight(st, id->str, id->len, w) < 0)
            return -1;
    }
    json_object_set_new(st->out, "live_workers", json_integer(live));
    json_object_set_new(st->out, "dead_workers", json_integer(dead));
    return 0;
}

static int
collect(status_t *st)
{
    redisReply *ws;
    char now[32];
    size_t i;

    json_object_set_new(st->out, "broker", json_string(st->b->addr));
    ws = kiln__redis_sync_command(st->b->conn, "ZRANGE kiln:workers 0 -1 WITHSCORES");
    if (!ws)
        return -1;
    /* Every queue a registered worker consumes, after the asked-for ones. */
    for (i = 0; ws->type == REDIS_REPLY_ARRAY && i + 1 < ws->elements; i += 2) {
        redisReply *q;
        if (ws->element[i]->type != REDIS_REPLY_STRING || st->fixed)
            continue;
        q = kiln__redis_sync_command(st->b->conn, "HGET kiln:worker:%b queues", ws->element[i]->str,
                                     ws->element[i]->len);
        if (!q) {
            freeReplyObject(ws);
            return -1;
        }
        if (q->type == REDIS_REPLY_STRING)
            add_queue_list(st, q->str, q->len);
        freeReplyObject(q);
    }
    if (collect_queues(st) < 0 || collect_workers(st, ws) < 0 || st->failed) {
        freeReplyObject(ws);
        return -1;
    }
    freeReplyObject(ws);
    {
        json_t *eta = json_object();
        snprintf(now, sizeof(now), "%.0f", now_epoch() * 1000.0);
        json_object_set_new(eta, "waiting", json_integer(cmd_int(st, "ZCARD kiln:eta")));
        json_object_set_new(eta, "due", json_integer(cmd_int(st, "ZCOUNT kiln:eta -inf %s", now)));
        json_object_set_new(st->out, "eta", eta);
    }
    json_object_set_new(st->out, "dlq", json_integer(cmd_int(st, "LLEN kiln:dlq")));
    return st->failed ? -1 : 0;
}

static void
print_text(const json_t *o)
{
    const json_t *q, *w, *t;
    size_t i, j;
    double now = now_epoch();

    printf("broker: %s\n\n", json_string_value(json_object_get(o, "broker")));
    printf("%-24s %10s   %s\n", "queue", "ready", "by priority 0 / 3 / 6 / 9");
    json_array_foreach(json_object_get(o, "queues"), i, q)
    {
        const json_t *b = json_object_get(q, "by_priority");
        printf("%-24s %10" JSON_INTEGER_FORMAT "   %" JSON_INTEGER_FORMAT " / %" JSON_INTEGER_FORMAT
               " / %" JSON_INTEGER_FORMAT " / %" JSON_INTEGER_FORMAT "\n",
               json_string_value(json_object_get(q, "name")),
               json_integer_value(json_object_get(q, "ready")),
               json_integer_value(json_object_get(b, "0")),
               json_integer_value(json_object_get(b, "3")),
               json_integer_value(json_object_get(b, "6")),
               json_integer_value(json_object_get(b, "9")));
    }
    printf("\nwaiting for their ETA (kiln:eta): %" JSON_INTEGER_FORMAT " (%" JSON_INTEGER_FORMAT
           " due)\n",
           json_integer_value(json_object_get(json_object_get(o, "eta"), "waiting")),
           json_integer_value(json_object_get(json_object_get(o, "eta"), "due")));
    printf("dead letters (kiln:dlq): %" JSON_INTEGER_FORMAT "%s\n",
           json_integer_value(json_object_get(o, "dlq")),
           json_integer_value(json_object_get(o, "dlq")) ? "  (kiln dlq list)" : "");
    printf("\nworkers: %" JSON_INTEGER_FORMAT " live, %" JSON_INTEGER_FORMAT " dead\n",
           json_integer_value(json_object_get(o, "live_workers")),
           json_integer_value(json_object_get(o, "dead_workers")));
    json_array_foreach(json_object_get(o, "workers"), i, w)
    {
        json_int_t inflight = json_integer_value(json_object_get(w, "inflight"));
        const char *queues =
            json_string_value(json_object_get(json_object_get(w, "info"), "queues"));
        if (json_is_true(json_object_get(w, "alive")))
            printf("  %s  live  host %s, pid %" JSON_INTEGER_FORMAT
                   ", queues %s: %" JSON_INTEGER_FORMAT " in flight\n",
                   json_string_value(json_object_get(w, "id")),
                   json_string_value(json_object_get(w, "host")) ?: "?",
                   json_integer_value(json_object_get(w, "pid")), queues ? queues : "?", inflight);
        else
            printf("  %s  DEAD  last heartbeat %.0f s ago: %" JSON_INTEGER_FORMAT
                   " in flight, returned to their queues by the next live worker\n",
                   json_string_value(json_object_get(w, "id")),
                   now - json_real_value(json_object_get(w, "last_heartbeat")), inflight);
        json_array_foreach(json_object_get(w, "tasks"), j, t)
        {
            json_int_t pri = json_integer_value(json_object_get(t, "priority"));
            printf("      %-36s %s", json_string_value(json_object_get(t, "id")) ?: "?",
                   json_string_value(json_object_get(t, "task")) ?: "?");
            if (json_object_get(t, "queue"))
                printf("  (queue %s%s%.0d)", json_string_value(json_object_get(t, "queue")),
                       pri ? ", priority " : "", (int)pri);
            if (json_object_get(t, "error"))
                printf("  [undecodable: %s]", json_string_value(json_object_get(t, "error")));
            printf("\n");
        }
        if (inflight > (json_int_t)json_array_size(json_object_get(w, "tasks")))
            printf("      ... and %" JSON_INTEGER_FORMAT " more\n",
                   inflight - (json_int_t)json_array_size(json_object_get(w, "tasks")));
    }
}

enum { OPT_QUEUES = 256, OPT_JSON, OPT_BROKER, OPT_CONFIG };

int
kiln__cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"queues", required_argument, NULL, OPT_QUEUES},
        {"json", no_argument, NULL, OPT_JSON},
        {"broker", required_argument, NULL, OPT_BROKER},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *broker = NULL, *config = NULL, *queues = NULL;
    kiln__cli_broker_t b;
    status_t st;
    char err[512];
    int c, rc, json = 0, i;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_QUEUES:
            queues = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_BROKER:
            broker = optarg;
            break;
        case OPT_CONFIG:
            config = optarg;
            break;
        case 'h':
            fputs(status_usage, stdout);
            return KILN__EXIT_OK;
        default:
            kiln__cli_error("status: bad option \"%s\"; see 'kiln status --help'",
                            argv[optind - 1]);
            return KILN__EXIT_USAGE;
        }
    }
    if (optind < argc) {
        kiln__cli_error("status: unexpected argument \"%s\"; see 'kiln status --help'",
                        argv[optind]);
        return KILN__EXIT_USAGE;
    }
    memset(&st, 0, sizeof(st));
    st.queues = calloc(MAX_QUEUES_SHOWN, sizeof(*st.queues));
    if (!st.queues)
        return KILN__EXIT_SYSTEM;
    rc = kiln__cli_broker_open(&b, broker, config);
    if (rc != 0)
        goto out;
    st.b = &b;
    if (queues) {
        kiln__config_t *q = b.cfg;
        if (kiln__config_set_queues(q, queues, err, sizeof(err)) < 0) {
            kiln__cli_error("--queues: %s", err);
            rc = KILN__EXIT_USAGE;
            goto out;
        }
        for (i = 0; i < q->nqueues; i++)
            add_queue(&st, q->queues[i], strlen(q->queues[i]));
        st.fixed = 1;
    } else {
        add_queue(&st, "celery", 6);
        for (i = 0; i < b.cfg->nqueues; i++)
            add_queue(&st, b.cfg->queues[i], strlen(b.cfg->queues[i]));
    }
    st.out = json_object();
    if (collect(&st) < 0) {
        rc = kiln__cli_broker_fail(&b, "status");
        goto out;
    }
    if (json) {
        char *s = json_dumps(st.out, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
    } else {
        print_text(st.out);
    }
    fflush(stdout);
out:
    json_decref(st.out);
    free(st.queues);
    kiln__cli_broker_close(&b);
    return rc;
}
