/*
 * config.c -- the worker's JSON configuration file (see docs/config.md).
 *
 * jansson parses; this file only validates.  Every key is checked for its
 * type and range, unknown keys are refused (with the nearest known key as a
 * hint), duplicate keys are refused by the parser, and every message reads
 * "FILE: KEY: problem".  A file is applied all or nothing: on error the
 * configuration is left as it was.
 */
#include "config.h"

#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_CONCURRENCY  1024
#define MIN_MEMORY       (8u << 20) /* what a child needs to start (as `kiln run --memory`) */
#define MAX_NAME         64         /* plugin, breaker names: char[64] */

typedef struct loader {
    const char *file;
    char *err;
    size_t errlen;
} loader_t;

static int fail(loader_t *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(loader_t *l, const char *key, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(l->err, l->errlen, "%s: %s: ", l->file, key);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < l->errlen)
        vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* "got 12", "got \"abc\"", "got an object" for messages. */
static const char *
got(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v) || json_is_number(v)) {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(buf, len, "got %.60s%s", s ? s : "?", s && strlen(s) > 60 ? "..." : "");
        free(s);
    } else {
        snprintf(buf, len, "got %s", kiln__json_type(v));
    }
    return buf;
}

/* The path of a nested key: pools.image.memory, tasks["image.thumbnail"].max_retries */
static const char *
key_join(char *buf, size_t len, const char *parent, const char *name)
{
    const char *p;
    int plain = *name != '\0';

    for (p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            plain = 0;
    }
    if (plain)
        snprintf(buf, len, "%s.%s", parent, name);
    else
        snprintf(buf, len, "%s[\"%.200s\"]", parent, name);
    return buf;
}

static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j, prev[64], cur[64];

    if (la >= 63 || lb >= 63)
        return 99;
    for (j = 0; j <= lb; j++)
        prev[j] = j;
    for (i = 1; i <= la; i++) {
        cur[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

static int
unknown_key(loader_t *l, const char *key, const char *name, const char *const *known)
{
    size_t best = 99, d, i;
    const char *hint = NULL;
    char list[512];
    size_t o = 0;

    for (i = 0; known[i]; i++) {
        d = edit_distance(name, known[i]);
        /* "plugins_dir" for "plugins", "max_retries_count" for "max_retries" */
        if (d > 2 && strlen(known[i]) >= 4 && strncmp(name, known[i], strlen(known[i])) == 0)
            d = 2;
        if (d < best) {
            best = d;
            hint = known[i];
        }
    }
    if (hint && best <= 2 && best < strlen(name))
        return fail(l, key, "unknown key (did you mean \"%s\"?)", hint);
    list[0] = '\0';
    for (i = 0; known[i] && o + 1 < sizeof(list); i++) {
        int n = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", known[i]);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    return fail(l, key, "unknown key (known keys: %s)", list);
}

/* --- typed values -------------------------------------------------------- */

static int
get_string(loader_t *l, const char *key, const json_t *v, char *out, size_t outlen)
{
    char g[96];
    const char *s = json_string_value(v);

    if (!json_is_string(v))
        return fail(l, key, "must be a string, %s", got(v, g, sizeof(g)));
    if (!*s)
        return fail(l, key, "must not be empty (leave the key out for the default)");
    if (strlen(s) >= outlen)
        return fail(l, key, "is longer than %zu bytes", outlen - 1);
    if (strlen(s) != json_string_length(v))
        return fail(l, key, "contains a NUL character");
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int
get_path(loader_t *l, const char *key, const json_t *v, char *out, size_t outlen)
{
    int rc = get_string(l, key, v, out, outlen);
    if (rc == 0 && out[0] != '/')
        return fail(l, key, "\"%s\" is not an absolute path", out);
    return rc;
}

static int
get_bool(loader_t *l, const char *key, const json_t *v, int *out)
{
    char g[96];
    if (!json_is_boolean(v))
        return fail(l, key, "must be true or false, %s", got(v, g, sizeof(g)));
    *out = json_is_true(v);
    return 0;
}

static int
get_int(loader_t *l, const char *key, const json_t *v, json_int_t min, json_int_t max,
        json_int_t *out)
{
    char g[96];
    json_int_t i;

    if (!json_is_integer(v))
        return fail(l, key,
                    "must be a whole number from %" JSON_INTEGER_FORMAT " to %" JSON_INTEGER_FORMAT
                    ", %s",
                    min, max, got(v, g, sizeof(g)));
    i = json_integer_value(v);
    if (i < min || i > max)
        return fail(l, key,
                    "%" JSON_INTEGER_FORMAT " is out of range (%" JSON_INTEGER_FORMAT
                    " to %" JSON_INTEGER_FORMAT ")",
                    i, min, max);
    *out = i;
    return 0;
}

/* Bytes: a positive integer, or a string such as "200M" (kiln__parse_size). */
static int
get_size(loader_t *l, const char *key, const json_t *v, uint64_t min, uint64_t max, uint64_t *out)
{
    char g[96], perr[256];
    uint64_t u;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i <= 0)
            return fail(l, key, "%" JSON_INTEGER_FORMAT " is not a positive number of bytes", i);
        u = (uint64_t)i;
    } else if (json_is_string(v)) {
        if (kiln__parse_size(json_string_value(v), &u, perr, sizeof(perr)) < 0)
            return fail(l, key, "%s", perr);
    } else {
        return fail(l, key, "must be a size: bytes as an integer or a string such as \"200M\", %s",
                    got(v, g, sizeof(g)));
    }
    if (u < min)
        return fail(l, key, "%llu bytes is below the minimum of %llu", (unsigned long long)u,
                    (unsigned long long)min);
    if (u > max)
        return fail(l, key, "%llu bytes is above the maximum of %llu", (unsigned long long)u,
                    (unsigned long long)max);
    *out = u;
    return 0;
}

/* Seconds: a number, or a string such as "30s", "5m" (kiln__parse_duration). */
static int
get_duration(loader_t *l, const char *key, const json_t *v, double min, double *out)
{
    char g[96], perr[256];
    double d;

    if (json_is_number(v)) {
        d = json_number_value(v);
        if (!isfinite(d) || d < 0)
            return fail(l, key, "%g is not a non-negative number of seconds", d);
        if (d > 1e9)
            return fail(l, key, "%g seconds is too long", d);
    } else if (json_is_string(v)) {
        if (kiln__parse_duration(json_string_value(v), &d, perr, sizeof(perr)) < 0)
            return fail(l, key, "%s", perr);
    } else {
        return fail(l, key,
                    "must be a duration: seconds as a number or a string such as \"30s\", "
                    "\"5m\", %s",
                    got(v, g, sizeof(g)));
    }
    if (d < min)
        return fail(l, key, "%g s is below the minimum of %g s", d, min);
    *out = d;
    return 0;
}

static int
get_object(loader_t *l, const char *key, const json_t *v)
{
    char g[96];
    if (!json_is_object(v))
        return fail(l, key, "must be an object, %s", got(v, g, sizeof(g)));
    return 0;
}

/* A plugin's settings: any JSON object, kept encoded for the child. */
static int
get_settings(loader_t *l, const char *key, const json_t *v, char *out, size_t outlen)
{
    char *s;
    size_t n;

    if (get_object(l, key, v) < 0)
        return -EINVAL;
    s = json_dumps(v, JSON_COMPACT);
    if (!s)
        return fail(l, key, "cannot be encoded (out of memory)");
    n = strlen(s);
    free(s);
    if (n >= outlen)
        return fail(l, key, "is %zu bytes encoded, over the limit of %zu", n, outlen - 1);
    s = json_dumps(v, JSON_COMPACT);
    snprintf(out, outlen, "%s", s ? s : "");
    free(s);
    return 0;
}

/* Names of plugins and breakers: letters, digits, '_', '-', '.'. */
static int
check_name(loader_t *l, const char *key, const char *what, const char *name, size_t max)
{
    const char *p;
    if (!*name)
        return fail(l, key, "%s name is empty", what);
    if (strlen(name) >= max)
        return fail(l, key, "%s name is longer than %zu bytes", what, max - 1);
    for (p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("_-.", *p))
            return fail(l, key, "%s name \"%s\" may hold only letters, digits, '_', '-' and '.'",
                        what, name);
    }
    return 0;
}

static int
check_task_name(loader_t *l, const char *key, const char *what, const char *name)
{
    const char *p;
    if (!*name)
        return fail(l, key, "%s is an empty task name", what);
    if (strlen(name) >= 256)
        return fail(l, key, "%s is longer than 255 bytes", what);
    for (p = name; *p; p++) {
        if (iscntrl((unsigned char)*p) || *p == ' ')
            return fail(l, key, "%s \"%s\" contains a space or control character", what, name);
    }
    return 0;
}

/* A queue name: what `--queues a,b` can spell and kombu's key scheme allows. */
static int
queue_name_problem(const char *name, size_t len, char *buf, size_t buflen)
{
    size_t i;
    if (len == 0) {
        snprintf(buf, buflen, "an empty queue name");
        return -EINVAL;
    }
    if (len >= 128) {
        snprintf(buf, buflen, "queue name \"%.40s...\" is longer than 127 bytes", name);
        return -EINVAL;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (iscntrl(c) || isspace(c) || c == ',') {
            snprintf(buf, buflen,
                     "queue name \"%.*s\" contains a space, comma or control character", (int)len,
                     name);
            return -EINVAL;
        }
    }
    return 0;
}

/* --- sections -------------------------------------------------------------- */

static const char *const pool_keys[] = {
    "profile",         "concurrency", "memory",   "max_rss", "max_tasks_per_child",
    "soft_time_limit", "time_limit",  "settings", NULL};

static int
load_pool(loader_t *l, const char *key, const char *name, const json_t *o, kiln__pool_conf_t *p)
{
    const char *k;
    json_t *v;
    char sub[512];
    json_int_t i = 0;

    memset(p, 0, sizeof(*p));
    if (check_name(l, key, "plugin", name, sizeof(p->plugin)) < 0 || get_object(l, key, o) < 0)
        return -EINVAL;
    snprintf(p->plugin, sizeof(p->plugin), "%s", name);
    json_object_foreach((json_t *)o, k, v)
    {
        int rc = 0;
        key_join(sub, sizeof(sub), key, k);
        if (strcmp(k, "profile") == 0) {
            rc = get_string(l, sub, v, p->profile, sizeof(p->profile));
            if (rc == 0 && strcmp(p->profile, "compute") != 0 &&
                strcmp(p->profile, "network") != 0 && strcmp(p->profile, "threads") != 0)
                rc = fail(l, sub, "unknown sandbox profile \"%s\" (compute, network or threads)",
                          p->profile);
        } else if (strcmp(k, "concurrency") == 0) {
            rc = get_int(l, sub, v, 1, MAX_CONCURRENCY, &i);
            p->concurrency = (uint32_t)i;
        } else if (strcmp(k, "memory") == 0) {
            rc = get_size(l, sub, v, MIN_MEMORY, UINT64_MAX, &p->memory_bytes);
        } else if (strcmp(k, "max_rss") == 0) {
            rc = get_size(l, sub, v, 1, UINT64_MAX, &p->max_rss_bytes);
        } else if (strcmp(k, "max_tasks_per_child") == 0) {
            rc = get_int(l, sub, v, 1, 1000000000, &i);
            p->max_tasks_per_child = (uint32_t)i;
        } else if (strcmp(k, "soft_time_limit") == 0) {
            rc = get_duration(l, sub, v, 0, &p->soft_time_limit);
        } else if (strcmp(k, "time_limit") == 0) {
            rc = get_duration(l, sub, v, 0, &p->time_limit);
        } else if (strcmp(k, "settings") == 0) {
            rc = get_settings(l, sub, v, p->settings, sizeof(p->settings));
        } else {
            rc = unknown_key(l, sub, k, pool_keys);
        }
        if (rc < 0)
            return rc;
    }
    if (p->soft_time_limit > 0 && p->time_limit > 0 && p->soft_time_limit >= p->time_limit)
        return fail(l, key,
                    "soft_time_limit (%g s) must be below time_limit (%g s): the soft limit "
                    "warns the task before the hard one kills it",
                    p->soft_time_limit, p->time_limit);
    return 0;
}

static void
task_defaults(kiln__task_conf_t *t, const char *name)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->task, sizeof(t->task), "%s", name ? name : "");
    t->max_retries = -1;
    t->retry_backoff = 1;
    t->retry_backoff_max = 600;
    t->retry_jitter = 1;
    t->retry_on_death = 1;
}

static const char *const task_keys[] = {"max_retries",
                                        "retry_backoff",
                                        "retry_backoff_max",
                                        "retry_jitter",
                                        "retry_on_death",
                                        "breaker",
                                        NULL};

static int
load_task(loader_t *l, const char *key, const char *name, const json_t *o, kiln__task_conf_t *t)
{
    const char *k;
    json_t *v;
    char sub[512];
    json_int_t i = 0;

    if (check_task_name(l, key, "the key", name) < 0 || get_object(l, key, o) < 0)
        return -EINVAL;
    task_defaults(t, name);
    json_object_foreach((json_t *)o, k, v)
    {
        int rc;
        key_join(sub, sizeof(sub), key, k);
        if (strcmp(k, "max_retries") == 0) {
            rc = get_int(l, sub, v, 0, 1000000, &i);
            t->max_retries = (int)i;
        } else if (strcmp(k, "retry_backoff") == 0) {
            rc = get_duration(l, sub, v, 0, &t->retry_backoff);
        } else if (strcmp(k, "retry_backoff_max") == 0) {
            rc = get_duration(l, sub, v, 0, &t->retry_backoff_max);
        } else if (strcmp(k, "retry_jitter") == 0) {
            rc = get_bool(l, sub, v, &t->retry_jitter);
        } else if (strcmp(k, "retry_on_death") == 0) {
            rc = get_bool(l, sub, v, &t->retry_on_death);
        } else if (strcmp(k, "breaker") == 0) {
            rc = get_string(l, sub, v, t->breaker, sizeof(t->breaker));
            if (rc == 0)
                rc = check_name(l, sub, "breaker", t->breaker, sizeof(t->breaker));
        } else {
            rc = unknown_key(l, sub, k, task_keys);
        }
        if (rc < 0)
            return rc;
    }
    if (t->retry_backoff_max < t->retry_backoff)
        return fail(l, key, "retry_backoff_max (%g s) is below retry_backoff (%g s)",
                    t->retry_backoff_max, t->retry_backoff);
    return 0;
}

static const char *const breaker_keys[] = {"failure_threshold", "reset_timeout", NULL};

static int
load_breaker(loader_t *l, const char *key, const char *name, const json_t *o,
             kiln__breaker_conf_t *b)
{
    const char *k;
    json_t *v;
    char sub[512];
    json_int_t i = 0;

    memset(b, 0, sizeof(*b));
    if (check_name(l, key, "breaker", name, sizeof(b->name)) < 0 || get_object(l, key, o) < 0)
        return -EINVAL;
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->failure_threshold = 5;
    b->reset_timeout = 30;
    json_object_foreach((json_t *)o, k, v)
    {
        int rc;
        key_join(sub, sizeof(sub), key, k);
        if (strcmp(k, "failure_threshold") == 0) {
            rc = get_int(l, sub, v, 1, 1000000, &i);
            b->failure_threshold = (uint32_t)i;
        } else if (strcmp(k, "reset_timeout") == 0) {
            rc = get_duration(l, sub, v, 0.001, &b->reset_timeout);
        } else {
            rc = unknown_key(l, sub, k, breaker_keys);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int
load_pools(loader_t *l, const json_t *o, kiln__config_t *c)
{
    const char *k;
    json_t *v;
    char sub[512];

    if (get_object(l, "pools", o) < 0)
        return -EINVAL;
    if (json_object_size(o) > KILN__MAX_POOLS)
        return fail(l, "pools", "%zu pools, more than the %d allowed", json_object_size(o),
                    KILN__MAX_POOLS);
    c->npools = 0;
    json_object_foreach((json_t *)o, k, v)
    {
        if (load_pool(l, key_join(sub, sizeof(sub), "pools", k), k, v, &c->pools[c->npools]) < 0)
            return -EINVAL;
        c->npools++;
    }
    return 0;
}

static int
load_tasks(loader_t *l, const json_t *o, kiln__config_t *c)
{
    const char *k;
    json_t *v;
    char sub[512];

    if (get_object(l, "tasks", o) < 0)
        return -EINVAL;
    if (json_object_size(o) > KILN__MAX_TASKCFG)
        return fail(l, "tasks", "%zu tasks, more than the %d allowed", json_object_size(o),
                    KILN__MAX_TASKCFG);
    c->ntasks = 0;
    json_object_foreach((json_t *)o, k, v)
    {
        if (load_task(l, key_join(sub, sizeof(sub), "tasks", k), k, v, &c->tasks[c->ntasks]) < 0)
            return -EINVAL;
        c->ntasks++;
    }
    return 0;
}

static int
load_breakers(loader_t *l, const json_t *o, kiln__config_t *c)
{
    const char *k;
    json_t *v;
    char sub[512];

    if (get_object(l, "breakers", o) < 0)
        return -EINVAL;
    if (json_object_size(o) > KILN__MAX_BREAKERS)
        return fail(l, "breakers", "%zu breakers, more than the %d allowed", json_object_size(o),
                    KILN__MAX_BREAKERS);
    c->nbreakers = 0;
    json_object_foreach((json_t *)o, k, v)
    {
        if (load_breaker(l, key_join(sub, sizeof(sub), "breakers", k), k, v,
                         &c->breakers[c->nbreakers]) < 0)
            return -EINVAL;
        c->nbreakers++;
    }
    return 0;
}

static int
load_aliases(loader_t *l, const json_t *o, kiln__config_t *c)
{
    const char *k;
    json_t *v;
    char sub[512], g[96];
    int i;

    if (get_object(l, "aliases", o) < 0)
        return -EINVAL;
    if (json_object_size(o) > KILN__MAX_ALIASES)
        return fail(l, "aliases", "%zu aliases, more than the %d allowed", json_object_size(o),
                    KILN__MAX_ALIASES);
    c->naliases = 0;
    json_object_foreach((json_t *)o, k, v)
    {
        kiln__alias_t *a = &c->aliases[c->naliases];
        const char *to = json_string_value(v);

        key_join(sub, sizeof(sub), "aliases", k);
        if (check_task_name(l, sub, "the alias", k) < 0)
            return -EINVAL;
        if (!json_is_string(v))
            return fail(l, sub,
                        "must name the task it runs, as a string such as "
                        "\"email.send_bulk\", %s",
                        got(v, g, sizeof(g)));
        if (!*to)
            return fail(l, sub,
                        "is an alias to nothing: name the task it runs, such as "
                        "\"email.send_bulk\"");
        if (check_task_name(l, sub, "the target", to) < 0)
            return -EINVAL;
        if (strcmp(k, to) == 0)
            return fail(l, sub, "is an alias of itself");
        snprintf(a->from, sizeof(a->from), "%s", k);
        snprintf(a->to, sizeof(a->to), "%s", to);
        c->naliases++;
    }
    /* One level only: a target that is itself an alias would need a chain. */
    for (i = 0; i < c->naliases; i++) {
        if (json_object_get(o, c->aliases[i].to))
            return fail(l, key_join(sub, sizeof(sub), "aliases", c->aliases[i].from),
                        "targets \"%s\", which is itself an alias; point it at the task \"%s\" "
                        "runs",
                        c->aliases[i].to, c->aliases[i].to);
    }
    return 0;
}

static int
load_queues(loader_t *l, const json_t *v, kiln__config_t *c)
{
    char sub[64], g[96], why[256];
    size_t i, j;
    json_t *q;

    if (json_is_string(v)) {
        if (kiln__config_set_queues(c, json_string_value(v), why, sizeof(why)) < 0)
            return fail(l, "queues", "%s", why);
        return 0;
    }
    if (!json_is_array(v))
        return fail(l, "queues",
                    "must be a list of queue names such as [\"urgent\", \"normal\"], %s",
                    got(v, g, sizeof(g)));
    if (json_array_size(v) == 0)
        return fail(l, "queues", "is empty (leave the key out for the default, [\"celery\"])");
    if (json_array_size(v) > KILN__MAX_QUEUES)
        return fail(l, "queues", "%zu queues, more than the %d allowed", json_array_size(v),
                    KILN__MAX_QUEUES);
    json_array_foreach(v, i, q)
    {
        snprintf(sub, sizeof(sub), "queues[%zu]", i);
        if (!json_is_string(q))
            return fail(l, sub, "must be a queue name (a string), %s", got(q, g, sizeof(g)));
        if (queue_name_problem(json_string_value(q), json_string_length(q), why, sizeof(why)) < 0)
            return fail(l, sub, "%s", why);
        for (j = 0; j < i; j++) {
            if (strcmp(json_string_value(json_array_get(v, j)), json_string_value(q)) == 0)
                return fail(l, sub, "queue \"%s\" is listed twice", json_string_value(q));
        }
    }
    json_array_foreach(v, i, q)
    {
        snprintf(c->queues[i], sizeof(c->queues[i]), "%s", json_string_value(q));
    }
    c->nqueues = (int)json_array_size(v);
    return 0;
}

static int
load_roots(loader_t *l, const json_t *v, kiln__config_t *c)
{
    char sub[64], g[96];
    size_t i;
    json_t *r;

    if (!json_is_array(v))
        return fail(l, "roots", "must be a list of absolute directory paths, %s",
                    got(v, g, sizeof(g)));
    if (json_array_size(v) > KILN__MAX_ROOTS_CFG)
        return fail(l, "roots", "%zu roots, more than the %d allowed", json_array_size(v),
                    KILN__MAX_ROOTS_CFG);
    c->nroots = 0;
    json_array_foreach(v, i, r)
    {
        snprintf(sub, sizeof(sub), "roots[%zu]", i);
        if (get_path(l, sub, r, c->roots[i], sizeof(c->roots[i])) < 0)
            return -EINVAL;
        c->nroots++;
    }
    return 0;
}

static int
load_url(loader_t *l, const char *key, const json_t *v, char *out, size_t outlen)
{
    kiln__redis_url_t u;
    char why[512];

    if (get_string(l, key, v, out, outlen) < 0)
        return -EINVAL;
    if (kiln__redis_url_parse(out, &u, why, sizeof(why)) < 0)
        return fail(l, key, "%s", why);
    return 0;
}

static const char *const top_keys[] = {"broker",        "result_backend", "password_file",
                                       "plugins",       "runtime_dir",    "queues",
                                       "concurrency",   "result_expires", "max_message_size",
                                       "heartbeat",     "shutdown_grace", "unknown_tasks",
                                       "poison_deaths", "track_started",  "allow_evicting_redis",
                                       "roots",         "pools",          "tasks",
                                       "breakers",      "aliases",        NULL};

static int
load_top(loader_t *l, const json_t *root, kiln__config_t *c)
{
    const char *k;
    json_t *v;
    json_int_t i = 0;
    char g[96];

    if (!json_is_object(root)) {
        snprintf(l->err, l->errlen, "%s: the file must hold one JSON object, %s", l->file,
                 got(root, g, sizeof(g)));
        return -EINVAL;
    }
    json_object_foreach((json_t *)root, k, v)
    {
        int rc;
        if (strcmp(k, "broker") == 0) {
            rc = load_url(l, k, v, c->broker, sizeof(c->broker));
        } else if (strcmp(k, "result_backend") == 0) {
            rc = load_url(l, k, v, c->result_backend, sizeof(c->result_backend));
        } else if (strcmp(k, "password_file") == 0) {
            rc = get_path(l, k, v, c->password_file, sizeof(c->password_file));
        } else if (strcmp(k, "plugins") == 0) {
            rc = get_string(l, k, v, c->plugins_dir, sizeof(c->plugins_dir));
        } else if (strcmp(k, "runtime_dir") == 0) {
            rc = get_path(l, k, v, c->runtime_dir, sizeof(c->runtime_dir));
        } else if (strcmp(k, "queues") == 0) {
            rc = load_queues(l, v, c);
        } else if (strcmp(k, "concurrency") == 0) {
            rc = get_int(l, k, v, 0, MAX_CONCURRENCY, &i);
            c->concurrency = (uint32_t)i;
        } else if (strcmp(k, "result_expires") == 0) {
            rc = get_duration(l, k, v, 0, &c->result_expires);
        } else if (strcmp(k, "max_message_size") == 0) {
            rc = get_size(l, k, v, 1024, 512u << 20, &c->max_message_bytes);
        } else if (strcmp(k, "heartbeat") == 0) {
            rc = get_duration(l, k, v, 0.1, &c->heartbeat);
        } else if (strcmp(k, "shutdown_grace") == 0) {
            rc = get_duration(l, k, v, 0, &c->shutdown_grace);
        } else if (strcmp(k, "unknown_tasks") == 0) {
            const char *s = json_string_value(v);
            rc = 0;
            if (s && strcmp(s, "dead-letter") == 0)
                c->unknown_task_dlq = 1;
            else if (s && strcmp(s, "return") == 0)
                c->unknown_task_dlq = 0;
            else
                rc = fail(l, k, "must be \"dead-letter\" or \"return\", %s", got(v, g, sizeof(g)));
        } else if (strcmp(k, "poison_deaths") == 0) {
            rc = get_int(l, k, v, 1, 1000, &i);
            c->poison_deaths = (int)i;
        } else if (strcmp(k, "track_started") == 0) {
            rc = get_bool(l, k, v, &c->track_started);
        } else if (strcmp(k, "allow_evicting_redis") == 0) {
            rc = get_bool(l, k, v, &c->allow_evicting_redis);
        } else if (strcmp(k, "roots") == 0) {
            rc = load_roots(l, v, c);
        } else if (strcmp(k, "pools") == 0) {
            rc = load_pools(l, v, c);
        } else if (strcmp(k, "tasks") == 0) {
            rc = load_tasks(l, v, c);
        } else if (strcmp(k, "breakers") == 0) {
            rc = load_breakers(l, v, c);
        } else if (strcmp(k, "aliases") == 0) {
            rc = load_aliases(l, v, c);
        } else {
            rc = unknown_key(l, k, k, top_keys);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Read at most MAX_CONFIG_BYTES of path.  0 or -errno with a message. */
static int
read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    struct stat st;
    char *buf;
    size_t n = 0;
    int fd, e;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s: is a directory, not a config file", path);
        return -EISDIR;
    }
    buf = malloc(MAX_CONFIG_BYTES + 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, MAX_CONFIG_BYTES + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            close(fd);
            free(buf);
            snprintf(err, errlen, "%s: %s", path, strerror(e));
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > MAX_CONFIG_BYTES) {
            close(fd);
            free(buf);
            snprintf(err, errlen, "%s: larger than %u KiB; is it the right file?", path,
                     MAX_CONFIG_BYTES >> 10);
            return -EFBIG;
        }
    }
    close(fd);
    *out = buf;
    *outlen = n;
    return 0;
}

/* --- interface ------------------------------------------------------------- */

void
kiln__config_defaults(kiln__config_t *c)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");

    memset(c, 0, sizeof(*c));
    if (geteuid() == 0)
        snprintf(c->runtime_dir, sizeof(c->runtime_dir), "/run/kiln");
    else if (xdg && xdg[0] == '/' && strlen(xdg) + 6 < sizeof(c->runtime_dir))
        snprintf(c->runtime_dir, sizeof(c->runtime_dir), "%s/kiln", xdg);
    else
        snprintf(c->runtime_dir, sizeof(c->runtime_dir), "/tmp/kiln-%u", (unsigned)getuid());
    snprintf(c->queues[0], sizeof(c->queues[0]), "celery");
    c->nqueues = 1;
    c->concurrency = 0;
    c->result_expires = 86400;
    c->max_message_bytes = 16u << 20;
    c->heartbeat = 10;
    c->shutdown_grace = 30;
    c->unknown_task_dlq = 1;
    c->poison_deaths = 3;
    c->track_started = 1;
    c->allow_evicting_redis = 0;
}

int
kiln__config_load(kiln__config_t *c, const char *path, char *err, size_t errlen)
{
    loader_t l = {path, err, errlen};
    kiln__config_t *tmp;
    json_error_t jerr;
    json_t *root;
    char *buf = NULL;
    size_t n = 0;
    int rc;

    rc = read_file(path, &buf, &n, err, errlen);
    if (rc < 0 || !buf)
        return rc < 0 ? rc : -EIO;
    if (strspn(buf, " \t\r\n") == n) {
        free(buf);
        snprintf(err, errlen, "%s: empty (a config file holds one JSON object, e.g. {})", path);
        return -EINVAL;
    }
    root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root) {
        snprintf(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return -EINVAL;
    }
    tmp = malloc(sizeof(*tmp));
    if (!tmp) {
        json_decref(root);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    memcpy(tmp, c, sizeof(*tmp));
    rc = load_top(&l, root, tmp);
    json_decref(root);
    if (rc == 0) {
        snprintf(tmp->file, sizeof(tmp->file), "%s", path);
        memcpy(c, tmp, sizeof(*c));
    }
    free(tmp);
    return rc;
}

int
kiln__config_set_queues(kiln__config_t *c, const char *list, char *err, size_t errlen)
{
    char names[KILN__MAX_QUEUES][128];
    const char *p = list ? list : "";
    int n = 0, i;

    for (;;) {
        const char *end = p + strcspn(p, ",");
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (n >= KILN__MAX_QUEUES) {
            snprintf(err, errlen, "more than %d queues", KILN__MAX_QUEUES);
            return -EINVAL;
        }
        if (queue_name_problem(a, (size_t)(b - a), err, errlen) < 0) {
            if (b == a && list && *list)
                snprintf(err, errlen, "queue list \"%s\" has an empty name (write Q1,Q2,...)",
                         list);
            else if (b == a)
                snprintf(err, errlen, "the queue list is empty (write Q1,Q2,...)");
            return -EINVAL;
        }
        memcpy(names[n], a, (size_t)(b - a));
        names[n][b - a] = '\0';
        for (i = 0; i < n; i++) {
            if (strcmp(names[i], names[n]) == 0) {
                snprintf(err, errlen, "queue \"%s\" is listed twice", names[n]);
                return -EINVAL;
            }
        }
        n++;
        if (!*end)
            break;
        p = end + 1;
    }
    memcpy(c->queues, names, sizeof(names[0]) * (size_t)n);
    c->nqueues = n;
    return 0;
}

const kiln__pool_conf_t *
kiln__config_pool(const kiln__config_t *c, const char *plugin)
{
    int i;
    for (i = 0; i < c->npools; i++) {
        if (strcmp(c->pools[i].plugin, plugin) == 0)
            return &c->pools[i];
    }
    return NULL;
}

void
kiln__config_task(const kiln__config_t *c, const char *task, kiln__task_conf_t *out)
{
    int i;
    for (i = 0; i < c->ntasks; i++) {
        if (strcmp(c->tasks[i].task, task) == 0) {
            *out = c->tasks[i];
            return;
        }
    }
    task_defaults(out, task);
}

const kiln__breaker_conf_t *
kiln__config_breaker(const kiln__config_t *c, const char *name)
{
    int i;
    for (i = 0; i < c->nbreakers; i++) {
        if (strcmp(c->breakers[i].name, name) == 0)
            return &c->breakers[i];
    }
    return NULL;
}

const char *
kiln__config_alias(const kiln__config_t *c, const char *task)
{
    int i;
    for (i = 0; i < c->naliases; i++) {
        if (strcmp(c->aliases[i].from, task) == 0)
            return c->aliases[i].to;
    }
    return NULL;
}
