/*
 * cli_dlq.c -- `kiln dlq list|requeue|purge`: the dead-letter list kiln:dlq.
 *
 * Entries are JSON, newest at the left (docs/redis-keys.md):
 *   {"reason", "queue" (the queue key), "task", "id", "time" (epoch s),
 *    "deaths": [...], "message": "<raw message>"}
 * A requeue is one Lua script per entry: LREM the exact entry, LPUSH its
 * message to its queue, DEL the task's death count; an entry someone else
 * already took is left alone.
 */
#include "celery.h"
#include "cli.h"
#include "cli_broker.h"
#include "parse.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DLQ_KEY       "kiln:dlq"
#define DEFAULT_LIMIT 50
#define PAGE          100
#define MAX_DECODE    (512u << 20) /* Redis's own bulk limit: only to check it decodes */

static const char dlq_usage[] =
    "usage: kiln dlq list [--limit N] [--json]\n"
    "       kiln dlq requeue ID... | --all\n"
    "       kiln dlq purge --yes\n"
    "\n"
    "The dead-letter list (kiln:dlq): tasks kiln gave up on, with the reason (a child\n"
    "killed N times, a message it cannot decode, a task no plugin serves, ...).\n"
    "\n"
    "  list        newest first: time, id, task, queue, child deaths, reason\n"
    "  requeue     push each entry's message back to its queue (the producer end, as\n"
    "              a new submission) and remove the entry, atomically; the message is\n"
    "              sent unchanged (headers.retries is kept) and the task's death count\n"
    "              is cleared, so it gets the full number of deaths again.  Entries\n"
    "              whose message kiln cannot decode are left in place.\n"
    "  purge       delete every entry (needs --yes)\n"
    "\n"
    "options:\n"
    "  --limit N                list at most N entries (default 50)\n"
    "  --json                   list: print a JSON array of the entries as stored\n"
    "  --all                    requeue: every entry\n"
    "  --yes                    purge: really delete\n"
    "  --broker URL             redis://host:port/db or redis+socket:///path (default:\n"
    "                           $KILN_BROKER_URL, the config's broker, else the embedded\n"
    "                           broker's socket); no password here\n"
    "  --config FILE            read the broker and password_file from FILE\n"
    "  -h, --help               show this help\n"
    "\n"
    "exit status: 0 done, 1 an ID was not found or an entry could not be requeued,\n"
    "2 usage error, 4 the broker cannot be reached.\n";

/* KEYS: dlq, queue key[, deaths key].  ARGV: entry, message, LREM count
 * (1: first from the head, -1: first from the tail). */
static const char lua_requeue[] =
    "if redis.call('LREM', KEYS[1], ARGV[3], ARGV[1]) == 0 then return 0 end\n"
    "redis.call('LPUSH', KEYS[2], ARGV[2])\n"
    "if KEYS[3] then redis.call('DEL', KEYS[3]) end\n"
    "return 1\n";

/* KEYS: dlq.  Returns how many entries it deleted. */
static const char lua_purge[] = "local n = redis.call('LLEN', KEYS[1])\n"
                                "redis.call('DEL', KEYS[1])\n"
                                "return n\n";

static const char *
str_field(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : NULL;
}

static void
format_time(const json_t *t, char *buf, size_t len)
{
    if (json_is_number(t)) {
        double v = json_number_value(t);
        if (v > 1e11) /* milliseconds */
            v /= 1000.0;
        kiln__celery_format_time(v, buf, len);
        /* 2026-11-24T06:50:00.123456+00:00 -> 2026-11-24 06:50:00 */
        if (strlen(buf) >= 19) {
            buf[10] = ' ';
            buf[19] = '\0';
        }
    } else if (json_is_string(t)) {
        snprintf(buf, len, "%s", json_string_value(t));
    } else {
        snprintf(buf, len, "?");
    }
}

/* "celery\x06\x163" -> "celery/3" for a terminal. */
static void
show_queue(const char *key, char *buf, size_t len)
{
    const char *sep = key ? strstr(key, KILN__CELERY_PRIORITY_SEP) : NULL;
    if (!key)
        snprintf(buf, len, "?");
    else if (sep)
        snprintf(buf, len, "%.*s/%s", (int)(sep - key), key, sep + 2);
    else
        snprintf(buf, len, "%s", key);
}

static int
dlq_list(kiln__cli_broker_t *b, long limit, int json)
{
    redisReply *r, *n;
    json_t *all = json_array();
    size_t i;

    n = kiln__redis_sync_command(b->conn, "LLEN " DLQ_KEY);
    if (!n)
        return kiln__cli_broker_fail(b, "dlq list");
    r = kiln__redis_sync_command(b->conn, "LRANGE " DLQ_KEY " 0 %ld", limit - 1);
    if (!r) {
        freeReplyObject(n);
        return kiln__cli_broker_fail(b, "dlq list");
    }
    if (!json)
        printf("%-19s  %-36s  %-24s  %-12s  %6s  %s\n", "time (UTC)", "id", "task", "queue",
               "deaths", "reason");
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        json_t *o = e->type == REDIS_REPLY_STRING ? json_loadb(e->str, e->len, 0, NULL) : NULL;
        char when[64], q[160];

        if (!json_is_object(o)) {
            if (json)
                json_array_append_new(all,
                                      json_pack("{s:s,s:s%}", "error", "not a JSON object", "raw",
                                                e->str ? e->str : "", e->str ? e->len : 0));
            else
                printf("%-19s  %-36s  (entry %zu is not kiln's JSON: %.60s)\n", "?", "?", i,
                       e->str ? e->str : "");
            json_decref(o);
            continue;
        }
        if (json) {
            json_array_append(all, o);
        } else {
            format_time(json_object_get(o, "time"), when, sizeof(when));
            show_queue(str_field(o, "queue"), q, sizeof(q));
            printf("%-19s  %-36s  %-24s  %-12s  %6zu  %s\n", when, str_field(o, "id") ?: "?",
                   str_field(o, "task") ?: "?", q, json_array_size(json_object_get(o, "deaths")),
                   str_field(o, "reason") ?: "?");
        }
        json_decref(o);
    }
    if (json) {
        char *s = json_dumps(all, JSON_COMPACT);
        printf("%s\n", s ? s : "[]");
        free(s);
    } else if ((long long)r->elements < kiln__redis_reply_int(n)) {
        printf("(the newest %zu of %lld; --limit N shows more)\n", r->elements,
               kiln__redis_reply_int(n));
    } else if (r->elements == 0) {
        printf("(the dead-letter list is empty)\n");
    }
    fflush(stdout);
    json_decref(all);
    freeReplyObject(r);
    freeReplyObject(n);
    return KILN__EXIT_OK;
}

/* Requeue one entry (`raw` exactly as stored).  1 requeued, 0 skipped (with
 * a message), -1 on a broker error. */
static int
requeue_entry(kiln__cli_broker_t *b, const char *raw, size_t rawlen, int from_tail)
{
    json_t *o = json_loadb(raw, rawlen, 0, NULL);
    const char *msg = str_field(o, "message"), *id = str_field(o, "id"),
               *task = str_field(o, "task"), *queue = str_field(o, "queue");
    char qkey[256], deaths[256], err[512], shown[160];
    kiln__task_msg_t m;
    redisReply *r;
    const char *argv[9];
    size_t argl[9];
    int rc, nkeys;

    memset(&m, 0, sizeof(m));
    if (!json_is_object(o) || !msg) {
        kiln__cli_error("dlq requeue: %s[%s]: the entry holds no message to requeue; left in "
                        "place",
                        task ? task : "?", id ? id : "?");
        json_decref(o);
        return 0;
    }
    rc = kiln__celery_decode(msg, strlen(msg), MAX_DECODE, &m, err, sizeof(err));
    if (rc < 0) {
        kiln__cli_error("dlq requeue: %s[%s]: left in place: kiln cannot decode its message "
                        "(%s), so a worker would dead-letter it again",
                        task ? task : "?", id ? id : "?", err);
        json_decref(o);
        return 0;
    }
    if (queue && !strchr(queue, '\n'))
        snprintf(qkey, sizeof(qkey), "%s", queue);
    else if (m.routing_key[0])
        kiln__celery_queue_key(m.routing_key, m.priority, qkey, sizeof(qkey));
    else
        snprintf(qkey, sizeof(qkey), "celery");
    argv[0] = "EVAL";
    argv[1] = lua_requeue;
    argv[3] = DLQ_KEY;
    argv[4] = qkey;
    nkeys = 2;
    if (m.id[0]) {
        snprintf(deaths, sizeof(deaths), "kiln:deaths:%s", m.id);
        argv[5] = deaths;
        nkeys = 3;
    }
    argv[2] = nkeys == 3 ? "3" : "2";
    argv[3 + nkeys] = raw;
    argv[4 + nkeys] = msg;
    argv[5 + nkeys] = from_tail ? "-1" : "1";
    for (rc = 0; rc < 6 + nkeys; rc++)
        argl[rc] = strlen(argv[rc]);
    argl[3 + nkeys] = rawlen;
    r = kiln__redis_sync_argv(b->conn, 6 + nkeys, argv, argl);
    if (!r) {
        kiln__cli_broker_fail(b, "dlq requeue");
        kiln__celery_msg_free(&m);
        json_decref(o);
        return -1;
    }
    rc = kiln__redis_reply_int(r) == 1;
    freeReplyObject(r);
    show_queue(qkey, shown, sizeof(shown));
    if (rc)
        printf("requeued %s (%s) to queue %s; headers.retries kept at %ld, death count "
               "cleared\n",
               m.id, m.task, shown, m.retries);
    else
        kiln__cli_error("dlq requeue: %s[%s] was taken from the dead-letter list meanwhile; "
                        "nothing done",
                        m.task, m.id);
    fflush(stdout);
    kiln__celery_msg_free(&m);
    json_decref(o);
    return rc;
}

static int
dlq_requeue_all(kiln__cli_broker_t *b)
{
    redisReply *n, *e;
    long long total, i, skipped = 0, done = 0;

    n = kiln__redis_sync_command(b->conn, "LLEN " DLQ_KEY);
    if (!n)
        return kiln__cli_broker_fail(b, "dlq requeue");
    total = kiln__redis_reply_int(n);
    freeReplyObject(n);
    /* Oldest first, so the queue keeps their order; new dead letters that
     * arrive meanwhile (at the head) are not touched. */
    for (i = 0; i < total; i++) {
        int rc;
        e = kiln__redis_sync_command(b->conn, "LINDEX " DLQ_KEY " %lld", -1 - skipped);
        if (!e)
            return kiln__cli_broker_fail(b, "dlq requeue");
        if (e->type != REDIS_REPLY_STRING) {
            freeReplyObject(e);
            break;
        }
        rc = requeue_entry(b, e->str, e->len, 1);
        freeReplyObject(e);
        if (rc < 0)
            return KILN__EXIT_SYSTEM;
        if (rc == 0)
            skipped++;
        else
            done++;
    }
    printf("requeued %lld of %lld dead letter(s)\n", done, total);
    return skipped ? KILN__EXIT_FAILED : KILN__EXIT_OK;
}

static int
dlq_requeue_ids(kiln__cli_broker_t *b, char **ids, int nids)
{
    json_t *found = json_array(); /* raw entries to requeue */
    char *seen = calloc(nids > 0 ? (size_t)nids : 1, 1);
    long long start = 0;
    size_t i;
    int k, rc = KILN__EXIT_OK, done = 0;

    if (!seen) {
        json_decref(found);
        return KILN__EXIT_SYSTEM;
    }
    for (;;) {
        redisReply *r = kiln__redis_sync_command(b->conn, "LRANGE " DLQ_KEY " %lld %lld", start,
                                                 start + PAGE - 1);
        if (!r) {
            free(seen);
            json_decref(found);
            return kiln__cli_broker_fail(b, "dlq requeue");
        }
        for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            const redisReply *e = r->element[i];
            json_t *o = e->type == REDIS_REPLY_STRING ? json_loadb(e->str, e->len, 0, NULL) : NULL;
            const char *id = str_field(o, "id");
            for (k = 0; id && k < nids; k++) {
                if (strcmp(id, ids[k]) == 0) {
                    seen[k] = 1;
                    json_array_append_new(found, json_stringn(e->str, e->len));
                    break;
                }
            }
            json_decref(o);
        }
        i = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        freeReplyObject(r);
        if (i < PAGE)
            break;
        start += PAGE;
    }
    for (k = 0; k < nids; k++) {
        if (!seen[k]) {
            kiln__cli_error("dlq requeue: no dead letter with id %s", ids[k]);
            rc = KILN__EXIT_FAILED;
        }
    }
    for (i = 0; i < json_array_size(found); i++) {
        json_t *s = json_array_get(found, i);
        int r = requeue_entry(b, json_string_value(s), json_string_length(s), 0);
        if (r < 0) {
            rc = KILN__EXIT_SYSTEM;
            break;
        }
        if (r == 0)
            rc = KILN__EXIT_FAILED;
        else
            done++;
    }
    if (rc != KILN__EXIT_SYSTEM)
        printf("requeued %d dead letter(s)\n", done);
    free(seen);
    json_decref(found);
    return rc;
}

static int
dlq_purge(kiln__cli_broker_t *b, int yes)
{
    redisReply *r;
    long long n;

    if (!yes) {
        r = kiln__redis_sync_command(b->conn, "LLEN " DLQ_KEY);
        if (!r)
            return kiln__cli_broker_fail(b, "dlq purge");
        n = kiln__redis_reply_int(r);
        freeReplyObject(r);
        kiln__cli_error("dlq purge deletes all %lld dead letter(s) for good; add --yes to do "
                        "it",
                        n);
        return KILN__EXIT_USAGE;
    }
    r = kiln__redis_sync_command(b->conn, "EVAL %s 1 %s", lua_purge, DLQ_KEY);
    if (!r)
        return kiln__cli_broker_fail(b, "dlq purge");
    n = kiln__redis_reply_int(r);
    freeReplyObject(r);
    printf("purged %lld dead letter(s)\n", n);
    return KILN__EXIT_OK;
}

enum { OPT_LIMIT = 256, OPT_JSON, OPT_ALL, OPT_YES, OPT_BROKER, OPT_CONFIG };

int
kiln__cmd_dlq(int argc, char **argv)
{
    static const struct option opts[] = {
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"json", no_argument, NULL, OPT_JSON},
        {"all", no_argument, NULL, OPT_ALL},
        {"yes", no_argument, NULL, OPT_YES},
        {"broker", required_argument, NULL, OPT_BROKER},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *broker = NULL, *config = NULL, *sub;
    long limit = DEFAULT_LIMIT;
    int c, rc, json = 0, all = 0, yes = 0, have_limit = 0, nargs;
    kiln__cli_broker_t b;
    char err[256];
    uint64_t u;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(dlq_usage, stdout);
        return KILN__EXIT_OK;
    }
    if (argc < 2 || argv[1][0] == '-') {
        kiln__cli_error("dlq: list, requeue or purge? see 'kiln dlq --help'");
        return KILN__EXIT_USAGE;
    }
    sub = argv[1];
    if (strcmp(sub, "list") != 0 && strcmp(sub, "requeue") != 0 && strcmp(sub, "purge") != 0) {
        kiln__cli_error("dlq: unknown subcommand \"%s\" (list, requeue or purge)", sub);
        return KILN__EXIT_USAGE;
    }
    argc--;
    argv++;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_LIMIT:
            if (kiln__parse_uint(optarg, 1, 1000000, &u, err, sizeof(err)) < 0) {
                kiln__cli_error("--limit: %s", err);
                return KILN__EXIT_USAGE;
            }
            limit = (long)u;
            have_limit = 1;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_ALL:
            all = 1;
            break;
        case OPT_YES:
            yes = 1;
            break;
        case OPT_BROKER:
            broker = optarg;
            break;
        case OPT_CONFIG:
            config = optarg;
            break;
        case 'h':
            fputs(dlq_usage, stdout);
            return KILN__EXIT_OK;
        default:
            kiln__cli_error("dlq %s: bad option \"%s\"; see 'kiln dlq --help'", sub,
                            argv[optind - 1]);
            return KILN__EXIT_USAGE;
        }
    }
    nargs = argc - optind;
    if (strcmp(sub, "list") == 0 && (nargs || all || yes)) {
        kiln__cli_error("dlq list takes only --limit N and --json");
        return KILN__EXIT_USAGE;
    }
    if (strcmp(sub, "requeue") == 0 && ((nargs == 0) == !all || json || yes || have_limit)) {
        kiln__cli_error("dlq requeue takes task ids or --all (one of the two)");
        return KILN__EXIT_USAGE;
    }
    if (strcmp(sub, "purge") == 0 && (nargs || all || json || have_limit)) {
        kiln__cli_error("dlq purge takes only --yes");
        return KILN__EXIT_USAGE;
    }
    rc = kiln__cli_broker_open(&b, broker, config);
    if (rc == 0) {
        if (strcmp(sub, "list") == 0)
            rc = dlq_list(&b, limit, json);
        else if (strcmp(sub, "purge") == 0)
            rc = dlq_purge(&b, yes);
        else if (all)
            rc = dlq_requeue_all(&b);
        else
            rc = dlq_requeue_ids(&b, argv + optind, nargs);
    }
    kiln__cli_broker_close(&b);
    return rc;
}
