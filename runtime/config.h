/*
 * config.h -- the worker's configuration: a JSON file (parsed by jansson)
 * plus command-line overrides.  Every key is validated with a message that
 * names the key and what was expected; unknown keys are errors (a typo must
 * not silently drop a limit).  Units are in the key's documentation below
 * and in docs/config.md.
 */
#ifndef KILN_CONFIG_FILE_H
#define KILN_CONFIG_FILE_H

#include "sandbox.h" /* KILN__SETTINGS_MAX */

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define KILN__MAX_QUEUES    16
#define KILN__MAX_POOLS     32
#define KILN__MAX_TASKCFG   256
#define KILN__MAX_BREAKERS  64
#define KILN__MAX_ALIASES   256
#define KILN__MAX_ROOTS_CFG 16

/* Redis location, from a Celery-style URL. */
typedef struct kiln__redis_url {
    int unix_socket;     /* 1: `path` is a unix socket */
    char host[256];      /* TCP host (default 127.0.0.1) */
    int port;            /* TCP port (default 6379) */
    char path[PATH_MAX]; /* unix socket path */
    int db;              /* database number (default 0) */
    char user[128];      /* ACL user, "" = default */
    char password[512];  /* "" = none */
} kiln__redis_url_t;

/* redis://[[user]:password@]host[:port][/db]
 * rediss:// is refused (no TLS in this build) with a message saying so.
 * User, password and socket path are %-decoded; db is 0..65535; a query
 * string is refused except virtual_host/db on the socket forms.
 * redis+socket:///path/to.sock[?virtual_host=db]   (Celery's form)
 * unix:///path/to.sock[?db=N]                        (redis-py's form)
 * 0 or -EINVAL with a message naming the part that is wrong. */
int kiln__redis_url_parse(const char *url, kiln__redis_url_t *out, char *err, size_t errlen);
/* For logs and for the URL producers should use: the password is shown as
 * "***" unless with_password.  Returns buf. */
const char *kiln__redis_url_format(const kiln__redis_url_t *u, int with_password, char *buf,
                                   size_t len);

/* Per-plugin pool settings (0 / "" = the plugin's default). */
typedef struct kiln__pool_conf {
    char plugin[64];                   /* plugin name, e.g. "image" */
    char profile[32];                  /* "compute", "network", "threads" */
    uint32_t concurrency;              /* children */
    uint64_t memory_bytes;             /* "memory": "200M" */
    uint64_t max_rss_bytes;            /* "max_rss": recycle after a task that crossed it */
    uint32_t max_tasks_per_child;      /* "max_tasks_per_child" */
    double soft_time_limit;            /* seconds */
    double time_limit;                 /* seconds */
    char settings[KILN__SETTINGS_MAX]; /* the plugin's settings, compact JSON, "" = none */
} kiln__pool_conf_t;

/* Per-task failure policy. */
typedef struct kiln__task_conf {
    char task[256];
    int max_retries;          /* -1 = default (3); retries after which the task fails */
    double retry_backoff;     /* base seconds of exponential backoff (default 1) */
    double retry_backoff_max; /* cap in seconds (default 600) */
    int retry_jitter;         /* 1 = full jitter (default), 0 = none */
    int retry_on_death;       /* retry when the child died (cap, crash): default 1 */
    char breaker[64];         /* circuit breaker name, "" = the task name's own */
} kiln__task_conf_t;

typedef struct kiln__breaker_conf {
    char name[64];
    uint32_t failure_threshold; /* consecutive failures that open it (default 5) */
    double reset_timeout;       /* seconds open before one half-open probe (default 30) */
} kiln__breaker_conf_t;

typedef struct kiln__alias {
    char from[256]; /* task name producers send, e.g. "worker.bulk_email" */
    char to[256];   /* a plugin's task, e.g. "email.send_bulk" */
} kiln__alias_t;

typedef struct kiln__config {
    char broker[1024];            /* URL; "" = embedded redis-server */
    char result_backend[1024];    /* URL; "" = the broker's */
    char password_file[PATH_MAX]; /* file whose first line is the Redis password */
    char plugins_dir[PATH_MAX];
    char runtime_dir[PATH_MAX];         /* embedded redis, sockets (default /run/kiln or
                                           $XDG_RUNTIME_DIR/kiln) */
    char queues[KILN__MAX_QUEUES][128]; /* in precedence order; default {"celery"} */
    int nqueues;
    uint32_t concurrency;       /* default per-pool concurrency, 0 = plugin's / CPUs */
    double result_expires;      /* seconds (default 86400), 0 = never */
    uint64_t max_message_bytes; /* body cap (default 16 MiB) */
    double heartbeat;      /* seconds before a silent worker's tasks are recovered (default 10) */
    double shutdown_grace; /* seconds warm shutdown waits (default 30) */
    int unknown_task_dlq;  /* "unknown_tasks": "dead-letter" (1, default) or "return" (0) */
    int poison_deaths;     /* child deaths before a task is dead-lettered (default 3) */
    int track_started;     /* write STARTED (default 1) */
    int allow_evicting_redis; /* override the maxmemory-policy refusal (default 0) */
    char roots[KILN__MAX_ROOTS_CFG][PATH_MAX]; /* allowed roots for task files */
    int nroots;
    kiln__pool_conf_t pools[KILN__MAX_POOLS];
    int npools;
    kiln__task_conf_t tasks[KILN__MAX_TASKCFG];
    int ntasks;
    kiln__breaker_conf_t breakers[KILN__MAX_BREAKERS];
    int nbreakers;
    kiln__alias_t aliases[KILN__MAX_ALIASES];
    int naliases;
    char file[PATH_MAX]; /* the config file last loaded, "" = none (for messages) */
} kiln__config_t;

/* Defaults for every field. */
void kiln__config_defaults(kiln__config_t *c);
/* Read a JSON config file over the defaults.  0 or -errno/-EINVAL with a
 * message naming the file, the key and the problem. */
int kiln__config_load(kiln__config_t *c, const char *path, char *err, size_t errlen);
/* Parse "urgent,normal,slow" into c->queues.  0 or -EINVAL. */
int kiln__config_set_queues(kiln__config_t *c, const char *list, char *err, size_t errlen);
/* Lookups (NULL / defaults when not configured). */
const kiln__pool_conf_t *kiln__config_pool(const kiln__config_t *c, const char *plugin);
/* Fills *out with the task's policy or the defaults. */
void kiln__config_task(const kiln__config_t *c, const char *task, kiln__task_conf_t *out);
const kiln__breaker_conf_t *kiln__config_breaker(const kiln__config_t *c, const char *name);
const char *kiln__config_alias(const kiln__config_t *c, const char *task);
/* The Redis password: the URL's, else $KILN_REDIS_PASSWORD, else the first
 * line of password_file ($KILN_REDIS_PASSWORD_FILE overrides the config). */
int kiln__config_password(const kiln__config_t *c, kiln__redis_url_t *u, char *err, size_t errlen);

/* The embedded broker's unix socket: "<runtime_dir>/redis.sock".  Returns buf. */
const char *kiln__config_embedded_socket(const kiln__config_t *c, char *buf, size_t len);
/* Where the broker is, for `kiln worker` and the CLI tools: `arg` (the
 * --broker option, NULL if not given), else $KILN_BROKER_URL, else the
 * config's broker, else the embedded broker's socket (then *embedded = 1;
 * embedded may be NULL).  A password in `arg` is refused with -EPERM (argv is
 * visible to every user); KILN_BROKER_URL and the config file may hold one.
 * The password is then completed by kiln__config_password.  0 or -errno. */
int kiln__config_broker(const kiln__config_t *c, const char *arg, kiln__redis_url_t *u,
                        int *embedded, char *err, size_t errlen);
/* The result backend: `arg` (--result-backend; a password is refused as for
 * --broker), else the config's result_backend, else a copy of `broker`. */
int kiln__config_backend(const kiln__config_t *c, const char *arg, const kiln__redis_url_t *broker,
                         kiln__redis_url_t *u, char *err, size_t errlen);

#endif
