/*
 * test_config.c -- the JSON config file: the production example loads, and
 * every malformed file is refused with the error code and a message that
 * names the file, the key and the problem, leaving the config as it was.
 */
#include "config.h"

/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static char path[128];
static char err[2048];
static kiln__config_t *cfg;

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/kiln-test-config-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/kiln.json", dir);
    cfg = malloc(sizeof(*cfg));
    if (!cfg)
        return -1;
    kiln__config_defaults(cfg);
    unsetenv("KILN_REDIS_PASSWORD");
    unsetenv("KILN_REDIS_PASSWORD_FILE");
    unsetenv("KILN_BROKER_URL");
    return 0;
}

static int
teardown(void **state)
{
    char cmd[128];
    (void)state;
    free(cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
write_file(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int
load(const char *text)
{
    write_file(path, text);
    err[0] = '\0';
    return kiln__config_load(cfg, path, err, sizeof(err));
}

/* The file is refused with `code`, the config is unchanged, and the message
 * names the file and holds each of the given substrings. */
static void
refused_with(int code, const char *text, const char *want1, const char *want2)
{
    kiln__config_t *before = malloc(sizeof(*before));
    int rc;

    assert_non_null(before);
    memcpy(before, cfg, sizeof(*before));
    rc = load(text);
    if (rc != code || !strstr(err, path) || !strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("config %s\n  -> rc %d, message \"%s\"\n  wanted rc %d and \"%s\"%s%s%s", text, rc,
                 err, code, want1, want2 ? " and \"" : "", want2 ? want2 : "", want2 ? "\"" : "");
    if (memcmp(before, cfg, sizeof(*before)) != 0)
        fail_msg("config %s was refused but changed the configuration", text);
    free(before);
}

#define refused(text, w1, w2) refused_with(-EINVAL, text, w1, w2)

static void
test_defaults(void **state)
{
    kiln__task_conf_t t;

    (void)state;
    assert_int_equal(cfg->nqueues, 1);
    assert_string_equal(cfg->queues[0], "celery");
    assert_string_equal(cfg->broker, "");
    assert_true(cfg->runtime_dir[0] == '/');
    assert_int_equal(cfg->max_message_bytes, 16u << 20);
    assert_true(cfg->result_expires == 86400);
    assert_true(cfg->heartbeat == 10);
    assert_true(cfg->shutdown_grace == 30);
    assert_int_equal(cfg->unknown_task_dlq, 1);
    assert_int_equal(cfg->poison_deaths, 3);
    assert_int_equal(cfg->track_started, 1);
    assert_int_equal(cfg->allow_evicting_redis, 0);
    assert_null(kiln__config_pool(cfg, "image"));
    assert_null(kiln__config_breaker(cfg, "s3"));
    assert_null(kiln__config_alias(cfg, "worker.bulk_email"));
    kiln__config_task(cfg, "image.thumbnail", &t);
    assert_string_equal(t.task, "image.thumbnail");
    assert_int_equal(t.max_retries, -1);
    assert_true(t.retry_backoff == 1 && t.retry_backoff_max == 600);
    assert_int_equal(t.retry_jitter, 1);
    assert_int_equal(t.retry_on_death, 1);
    assert_string_equal(t.breaker, "");
}

static const char production[] =
    "{\n"
    "  \"broker\": \"redis+socket:///run/kiln/redis.sock?virtual_host=1\",\n"
    "  \"result_backend\": \"redis://:pw@cache:6380/2\",\n"
    "  \"password_file\": \"/etc/kiln/redis.pass\",\n"
    "  \"plugins\": \"/usr/lib/kiln/plugins\",\n"
    "  \"runtime_dir\": \"/run/kiln\",\n"
    "  \"queues\": [\"urgent\", \"normal\", \"slow\"],\n"
    "  \"concurrency\": 2,\n"
    "  \"result_expires\": \"1h\",\n"
    "  \"max_message_size\": \"32M\",\n"
    "  \"heartbeat\": 5,\n"
    "  \"shutdown_grace\": \"45s\",\n"
    "  \"unknown_tasks\": \"return\",\n"
    "  \"poison_deaths\": 2,\n"
    "  \"track_started\": false,\n"
    "  \"allow_evicting_redis\": true,\n"
    "  \"roots\": [\"/srv/media\", \"/tmp\"],\n"
    "  \"pools\": {\n"
    "    \"image\": {\"memory\": \"200M\", \"max_tasks_per_child\": 50, \"concurrency\": 4,\n"
    "              \"soft_time_limit\": 20, \"time_limit\": \"30s\", \"profile\": \"compute\"},\n"
    "    \"video\": {\"memory\": \"1G\", \"max_tasks_per_child\": 10, \"max_rss\": 805306368,\n"
    "              \"time_limit\": 600.5}\n"
    "  },\n"
    "  \"tasks\": {\n"
    "    \"image.thumbnail\": {\"max_retries\": 5, \"retry_backoff\": 2, \"retry_backoff_max\": "
    "\"5m\",\n"
    "                        \"retry_jitter\": false, \"breaker\": \"s3\"},\n"
    "    \"email.send_bulk\": {\"retry_on_death\": false}\n"
    "  },\n"
    "  \"breakers\": {\"s3\": {\"failure_threshold\": 3, \"reset_timeout\": \"1m\"}},\n"
    "  \"aliases\": {\"worker.bulk_email\": \"email.send_bulk\"}\n"
    "}\n";

static void
test_production_example(void **state)
{
    const kiln__pool_conf_t *p;
    const kiln__breaker_conf_t *b;
    kiln__task_conf_t t;

    (void)state;
    assert_int_equal(load(production), 0);
    assert_string_equal(cfg->broker, "redis+socket:///run/kiln/redis.sock?virtual_host=1");
    assert_string_equal(cfg->result_backend, "redis://:pw@cache:6380/2");
    assert_string_equal(cfg->password_file, "/etc/kiln/redis.pass");
    assert_string_equal(cfg->plugins_dir, "/usr/lib/kiln/plugins");
    assert_int_equal(cfg->nqueues, 3);
    assert_string_equal(cfg->queues[0], "urgent");
    assert_string_equal(cfg->queues[2], "slow");
    assert_int_equal(cfg->concurrency, 2);
    assert_true(cfg->result_expires == 3600);
    assert_int_equal(cfg->max_message_bytes, 32u << 20);
    assert_true(cfg->heartbeat == 5);
    assert_true(cfg->shutdown_grace == 45);
    assert_int_equal(cfg->unknown_task_dlq, 0);
    assert_int_equal(cfg->poison_deaths, 2);
    assert_int_equal(cfg->track_started, 0);
    assert_int_equal(cfg->allow_evicting_redis, 1);
    assert_int_equal(cfg->nroots, 2);
    assert_string_equal(cfg->roots[1], "/tmp");
    assert_string_equal(cfg->file, path);

    p = kiln__config_pool(cfg, "image");
    assert_non_null(p);
    assert_int_equal(p->memory_bytes, 200u << 20);
    assert_int_equal(p->max_tasks_per_child, 50);
    assert_int_equal(p->concurrency, 4);
    assert_true(p->soft_time_limit == 20 && p->time_limit == 30);
    assert_string_equal(p->profile, "compute");
    p = kiln__config_pool(cfg, "video");
    assert_non_null(p);
    assert_int_equal(p->memory_bytes, 1u << 30);
    assert_int_equal(p->max_tasks_per_child, 10);
    assert_int_equal(p->max_rss_bytes, 768u << 20);
    assert_true(p->time_limit == 600.5);
    assert_int_equal(p->concurrency, 0);
    assert_null(kiln__config_pool(cfg, "audio"));

    kiln__config_task(cfg, "image.thumbnail", &t);
    assert_int_equal(t.max_retries, 5);
    assert_true(t.retry_backoff == 2 && t.retry_backoff_max == 300);
    assert_int_equal(t.retry_jitter, 0);
    assert_int_equal(t.retry_on_death, 1);
    assert_string_equal(t.breaker, "s3");
    kiln__config_task(cfg, "email.send_bulk", &t);
    assert_int_equal(t.max_retries, -1);
    assert_int_equal(t.retry_on_death, 0);

    b = kiln__config_breaker(cfg, "s3");
    assert_non_null(b);
    assert_int_equal(b->failure_threshold, 3);
    assert_true(b->reset_timeout == 60);
    assert_string_equal(kiln__config_alias(cfg, "worker.bulk_email"), "email.send_bulk");
    assert_null(kiln__config_alias(cfg, "email.send_bulk"));

    /* A second file replaces the keys it sets and keeps the others. */
    assert_int_equal(load("{\"queues\": \"a, b\", \"pools\": {}}"), 0);
    assert_int_equal(cfg->nqueues, 2);
    assert_string_equal(cfg->queues[1], "b");
    assert_int_equal(cfg->npools, 0);
    assert_int_equal(cfg->ntasks, 2);
    assert_int_equal(cfg->poison_deaths, 2);
}

static void
test_file_problems(void **state)
{
    char sub[200];

    (void)state;
    assert_int_equal(kiln__config_load(cfg, "/nonexistent/kiln.json", err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/kiln.json"));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(kiln__config_load(cfg, dir, err, sizeof(err)), -EISDIR);
    assert_non_null(strstr(err, "is a directory"));

    refused("", "empty", NULL);
    refused("  \n", "empty", NULL);
    refused("[]", "must hold one JSON object", "got an array");
    refused("{\"queues\": [\"a\",]}", ":1:", NULL); /* jansson's line:column */
    refused("{\n  \"concurrency\": 2\n  \"heartbeat\": 3\n}", ":3:", NULL);
    refused("{\"concurrency\": 1} trailing", "end of file expected", NULL);

    /* Larger than 1 MiB: refused before parsing. */
    snprintf(sub, sizeof(sub), "%s/big.json", dir);
    {
        FILE *f = fopen(sub, "w");
        size_t i;
        assert_non_null(f);
        fputs("{\"tasks\": {", f);
        for (i = 0; i < 100000; i++)
            fprintf(f, "\"t%zu\": {}, ", i);
        fputs("\"x\": {}}}", f);
        fclose(f);
    }
    assert_int_equal(kiln__config_load(cfg, sub, err, sizeof(err)), -EFBIG);
    assert_non_null(strstr(err, "larger than 1024 KiB"));
}

static void
test_unknown_keys(void **state)
{
    (void)state;
    refused("{\"concurency\": 4}", "concurency: unknown key (did you mean \"concurrency\"?)", NULL);
    refused("{\"frobnicate\": 1}", "frobnicate: unknown key (known keys: broker,", NULL);
    refused("{\"pools\": {\"image\": {\"memroy\": \"200M\"}}}",
            "pools.image.memroy: unknown key (did you mean \"memory\"?)", NULL);
    refused("{\"tasks\": {\"image.thumbnail\": {\"retries\": 3}}}",
            "tasks[\"image.thumbnail\"].retries: unknown key", NULL);
    refused("{\"breakers\": {\"s3\": {\"threshold\": 3}}}", "breakers.s3.threshold: unknown key",
            NULL);
    refused("{\"plugins_dir\": \"/x\"}", "did you mean \"plugins\"", NULL);
}

static void
test_wrong_types(void **state)
{
    (void)state;
    refused("{\"concurrency\": \"4\"}", "concurrency: must be a whole number from 0 to 1024",
            "got \"4\"");
    refused("{\"concurrency\": 2.5}", "concurrency: must be a whole number", "got 2.5");
    refused("{\"concurrency\": 5000}", "concurrency: 5000 is out of range (0 to 1024)", NULL);
    refused("{\"track_started\": \"yes\"}", "track_started: must be true or false", "got \"yes\"");
    refused("{\"allow_evicting_redis\": 1}", "allow_evicting_redis: must be true or false",
            "got 1");
    refused("{\"queues\": 5}", "queues: must be a list of queue names", "got 5");
    refused("{\"queues\": []}", "queues: is empty", NULL);
    refused("{\"queues\": [\"a\", 3]}", "queues[1]: must be a queue name", NULL);
    refused("{\"queues\": [\"a\", \"a\"]}", "queues[1]: queue \"a\" is listed twice", NULL);
    refused("{\"queues\": [\"a b\"]}", "queues[0]: queue name \"a b\" contains a space", NULL);
    refused("{\"queues\": \"a,,b\"}", "queues: queue list \"a,,b\" has an empty name", NULL);
    refused("{\"pools\": []}", "pools: must be an object", "got an array");
    refused("{\"pools\": {\"image\": 4}}", "pools.image: must be an object", "got 4");
    refused("{\"pools\": {\"im age\": {}}}", "plugin name \"im age\" may hold only", NULL);
    refused("{\"pools\": {\"image\": {\"profile\": \"gpu\"}}}",
            "pools.image.profile: unknown sandbox profile \"gpu\"", NULL);
    refused("{\"heartbeat\": true}", "heartbeat: must be a duration", "got a boolean");
    refused("{\"heartbeat\": \"soon\"}", "heartbeat: duration \"soon\"", NULL);
    refused("{\"heartbeat\": 0}", "heartbeat: 0 s is below the minimum of 0.1 s", NULL);
    refused("{\"result_expires\": -1}", "result_expires: -1 is not a non-negative number", NULL);
    refused("{\"shutdown_grace\": \"5 minutes\"}", "shutdown_grace: duration \"5 minutes\"", NULL);
    refused("{\"broker\": 6379}", "broker: must be a string", "got 6379");
    refused("{\"broker\": \"\"}", "broker: must not be empty", NULL);
    refused("{\"plugins\": null}", "plugins: must be a string", "got null");
    refused("{\"runtime_dir\": \"run/kiln\"}", "runtime_dir: \"run/kiln\" is not an absolute path",
            NULL);
    refused("{\"roots\": \"/srv\"}", "roots: must be a list of absolute directory paths", NULL);
    refused("{\"roots\": [\"srv\"]}", "roots[0]: \"srv\" is not an absolute path", NULL);
    refused("{\"unknown_tasks\": \"drop\"}", "unknown_tasks: must be \"dead-letter\" or \"return\"",
            "got \"drop\"");
    refused("{\"poison_deaths\": 0}", "poison_deaths: 0 is out of range (1 to 1000)", NULL);
    refused("{\"tasks\": {\"t\": {\"max_retries\": -1}}}",
            "tasks.t.max_retries: -1 is out of range (0 to 1000000)", NULL);
    refused("{\"tasks\": {\"t\": {\"retry_jitter\": \"full\"}}}",
            "tasks.t.retry_jitter: must be true or false", NULL);
    refused("{\"tasks\": {\"t\": {\"breaker\": \"s 3\"}}}", "tasks.t.breaker: breaker name", NULL);
    refused("{\"breakers\": {\"s3\": {\"failure_threshold\": 0}}}",
            "breakers.s3.failure_threshold: 0 is out of range", NULL);
    refused("{\"breakers\": {\"s3\": {\"reset_timeout\": 0}}}",
            "breakers.s3.reset_timeout: 0 s is below", NULL);
}

static void
test_sizes(void **state)
{
    (void)state;
    refused("{\"pools\": {\"image\": {\"memory\": -5}}}",
            "pools.image.memory: -5 is not a positive number of bytes", NULL);
    refused("{\"pools\": {\"image\": {\"memory\": \"-5M\"}}}",
            "pools.image.memory: size \"-5M\" is not a positive number of bytes", NULL);
    refused("{\"pools\": {\"image\": {\"memory\": 0}}}", "0 is not a positive number of bytes",
            NULL);
    refused("{\"pools\": {\"image\": {\"memory\": \"200Q\"}}}", "unknown unit \"Q\"", NULL);
    refused("{\"pools\": {\"image\": {\"memory\": \"1M\"}}}",
            "pools.image.memory: 1048576 bytes is below the minimum of 8388608", NULL);
    refused("{\"pools\": {\"image\": {\"memory\": 2.5}}}", "must be a size", "got 2.5");
    refused("{\"pools\": {\"image\": {\"max_rss\": []}}}", "pools.image.max_rss: must be a size",
            "got an array");
    refused("{\"max_message_size\": \"1G\"}",
            "max_message_size: 1073741824 bytes is above the maximum of 536870912", NULL);
    refused("{\"max_message_size\": 10}", "max_message_size: 10 bytes is below the minimum", NULL);
    refused("{\"pools\": {\"image\": {\"max_tasks_per_child\": 0}}}",
            "pools.image.max_tasks_per_child: 0 is out of range", NULL);
}

static void
test_cross_checks(void **state)
{
    (void)state;
    /* duplicate keys, pools included: the parser refuses them */
    refused("{\"pools\": {\"image\": {\"memory\": \"200M\"}, \"image\": {\"memory\": \"1G\"}}}",
            "duplicate object key", "image");
    refused("{\"concurrency\": 1, \"concurrency\": 2}", "duplicate object key", NULL);
    refused("{\"pools\": {\"image\": {\"soft_time_limit\": 30, \"time_limit\": 30}}}",
            "pools.image: soft_time_limit (30 s) must be below time_limit (30 s)", NULL);
    refused("{\"tasks\": {\"t\": {\"retry_backoff\": 10, \"retry_backoff_max\": 5}}}",
            "tasks.t: retry_backoff_max (5 s) is below retry_backoff (10 s)", NULL);
    /* aliases */
    refused("{\"aliases\": {\"worker.bulk_email\": \"\"}}",
            "aliases[\"worker.bulk_email\"]: is an alias to nothing", NULL);
    refused("{\"aliases\": {\"worker.bulk_email\": null}}",
            "aliases[\"worker.bulk_email\"]: must name the task it runs", "got null");
    refused("{\"aliases\": {\"a.b\": \"a.b\"}}", "is an alias of itself", NULL);
    refused("{\"aliases\": {\"a.x\": \"b.y\", \"b.y\": \"c.z\"}}",
            "aliases[\"a.x\"]: targets \"b.y\", which is itself an alias", NULL);
    refused("{\"aliases\": {\"\": \"b.y\"}}", "the alias is an empty task name", NULL);
    refused("{\"aliases\": {\"a.x\": \"b y\"}}", "the target \"b y\" contains a space", NULL);
    /* URLs are checked when the file is read */
    refused("{\"broker\": \"rediss://h:6380/0\"}", "broker: broker URL: rediss://", "TLS");
    refused("{\"result_backend\": \"redis://h:99999\"}", "result_backend: broker URL: port", NULL);
}

static void
test_set_queues(void **state)
{
    char names[64 * 20];
    int i;

    (void)state;
    assert_int_equal(kiln__config_set_queues(cfg, "urgent, normal ,slow", err, sizeof(err)), 0);
    assert_int_equal(cfg->nqueues, 3);
    assert_string_equal(cfg->queues[0], "urgent");
    assert_string_equal(cfg->queues[1], "normal");
    assert_string_equal(cfg->queues[2], "slow");
    assert_int_equal(kiln__config_set_queues(cfg, "a,,b", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "empty name"));
    assert_int_equal(kiln__config_set_queues(cfg, "", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(kiln__config_set_queues(cfg, "a,b,a", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "queue \"a\" is listed twice"));
    assert_int_equal(kiln__config_set_queues(cfg,
                                             "a,b\x06\x16"
                                             "3",
                                             err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "control character"));
    names[0] = '\0';
    for (i = 0; i < 17; i++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%sq%d", i ? "," : "", i);
    assert_int_equal(kiln__config_set_queues(cfg, names, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "more than 16 queues"));
    /* refused lists leave the last good one */
    assert_int_equal(cfg->nqueues, 3);
    assert_string_equal(cfg->queues[0], "urgent");
}

static void
test_password(void **state)
{
    kiln__redis_url_t u;
    char pf[160], pf2[160];

    (void)state;
    snprintf(pf, sizeof(pf), "%s/pass", dir);
    snprintf(pf2, sizeof(pf2), "%s/pass2", dir);
    write_file(pf, "from-file\r\nsecond line\n");
    write_file(pf2, "from-env-file");

    /* the URL's own password wins */
    assert_int_equal(kiln__redis_url_parse("redis://:inurl@h", &u, err, sizeof(err)), 0);
    setenv("KILN_REDIS_PASSWORD", "from-env", 1);
    assert_int_equal(kiln__config_password(cfg, &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "inurl");

    /* then $KILN_REDIS_PASSWORD */
    assert_int_equal(kiln__redis_url_parse("redis://alice@h", &u, err, sizeof(err)), 0);
    assert_int_equal(kiln__config_password(cfg, &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "from-env");
    assert_string_equal(u.user, "alice");
    unsetenv("KILN_REDIS_PASSWORD");

    /* then $KILN_REDIS_PASSWORD_FILE over the config's password_file */
    snprintf(cfg->password_file, sizeof(cfg->password_file), "%s", pf);
    setenv("KILN_REDIS_PASSWORD_FILE", pf2, 1);
    assert_int_equal(kiln__redis_url_parse("redis://h", &u, err, sizeof(err)), 0);
    assert_int_equal(kiln__config_password(cfg, &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "from-env-file");
    unsetenv("KILN_REDIS_PASSWORD_FILE");

    /* then the first line of password_file */
    assert_int_equal(kiln__redis_url_parse("redis://h", &u, err, sizeof(err)), 0);
    assert_int_equal(kiln__config_password(cfg, &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "from-file");

    /* none at all is fine */
    cfg->password_file[0] = '\0';
    assert_int_equal(kiln__redis_url_parse("redis://h", &u, err, sizeof(err)), 0);
    assert_int_equal(kiln__config_password(cfg, &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "");

    /* a missing or empty file is an error naming it */
    snprintf(cfg->password_file, sizeof(cfg->password_file), "%s/missing", dir);
    assert_int_equal(kiln__config_password(cfg, &u, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "password file"));
    assert_non_null(strstr(err, "/missing"));
    write_file(pf, "\nsecret on line 2\n");
    snprintf(cfg->password_file, sizeof(cfg->password_file), "%s", pf);
    assert_int_equal(kiln__config_password(cfg, &u, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "first line is empty"));
    assert_null(strstr(err, "secret"));
    cfg->password_file[0] = '\0';
}

static void
test_broker_resolution(void **state)
{
    kiln__redis_url_t u;
    char sock[PATH_MAX + 32];
    int embedded;

    (void)state;
    /* --broker first; a password there is refused and not kept */
    assert_int_equal(kiln__config_broker(cfg, "redis://h:1/2", &u, &embedded, err, sizeof(err)), 0);
    assert_int_equal(embedded, 0);
    assert_string_equal(u.host, "h");
    assert_int_equal(kiln__config_broker(cfg, "redis://:pw@h:1/2", &u, &embedded, err, sizeof(err)),
                     -EPERM);
    assert_non_null(strstr(err, "--broker: the URL holds a password"));
    assert_non_null(strstr(err, "KILN_BROKER_URL"));
    assert_non_null(strstr(err, "KILN_REDIS_PASSWORD"));
    assert_null(strstr(err, "pw@"));
    assert_string_equal(u.password, "");
    assert_int_equal(kiln__config_broker(cfg, "rediss://h", &u, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--broker: broker URL: rediss://"));

    /* then $KILN_BROKER_URL, which may hold a password */
    setenv("KILN_BROKER_URL", "redis://:envpw@envhost:7/3", 1);
    assert_int_equal(kiln__config_broker(cfg, NULL, &u, &embedded, err, sizeof(err)), 0);
    assert_string_equal(u.host, "envhost");
    assert_string_equal(u.password, "envpw");
    assert_int_equal(u.db, 3);
    setenv("KILN_BROKER_URL", "redis://h:0", 1);
    assert_int_equal(kiln__config_broker(cfg, NULL, &u, &embedded, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "$KILN_BROKER_URL: broker URL: port"));
    unsetenv("KILN_BROKER_URL");

    /* then the config's broker */
    assert_int_equal(load("{\"broker\": \"unix:///tmp/x.sock?db=4\"}"), 0);
    assert_int_equal(kiln__config_broker(cfg, NULL, &u, &embedded, err, sizeof(err)), 0);
    assert_int_equal(embedded, 0);
    assert_string_equal(u.path, "/tmp/x.sock");
    assert_int_equal(u.db, 4);

    /* else the embedded broker's socket in the runtime directory */
    cfg->broker[0] = '\0';
    snprintf(cfg->runtime_dir, sizeof(cfg->runtime_dir), "/run/kiln-test");
    assert_int_equal(kiln__config_broker(cfg, NULL, &u, &embedded, err, sizeof(err)), 0);
    assert_int_equal(embedded, 1);
    assert_int_equal(u.unix_socket, 1);
    assert_string_equal(u.path, "/run/kiln-test/redis.sock");
    assert_string_equal(kiln__config_embedded_socket(cfg, sock, sizeof(sock)),
                        "/run/kiln-test/redis.sock");

    /* the result backend: --result-backend, the config's, else the broker */
    {
        kiln__redis_url_t broker = u, be;
        assert_int_equal(kiln__config_backend(cfg, NULL, &broker, &be, err, sizeof(err)), 0);
        assert_memory_equal(&be, &broker, sizeof(be));
        assert_int_equal(kiln__config_backend(cfg, "redis://:x@h", &broker, &be, err, sizeof(err)),
                         -EPERM);
        assert_non_null(strstr(err, "--result-backend"));
        assert_int_equal(
            kiln__config_backend(cfg, "redis://rb:6/1", &broker, &be, err, sizeof(err)), 0);
        assert_string_equal(be.host, "rb");
    }
}

static void
test_plugin_settings(void **state)
{
    const kiln__pool_conf_t *p;
    char big[6000];
    size_t n;

    (void)state;
    assert_int_equal(load("{\"pools\": {\"image\": {\"settings\": "
                          "{\"max_pixels\": 100000000, \"x\": [1, \"two\"]}}}}"),
                     0);
    p = kiln__config_pool(cfg, "image");
    assert_non_null(p);
    assert_string_equal(p->settings, "{\"max_pixels\":100000000,\"x\":[1,\"two\"]}");
    refused("{\"pools\": {\"image\": {\"settings\": [1]}}}",
            "pools.image.settings: must be an object", "got an array");
    refused("{\"pools\": {\"image\": {\"settings\": \"max_pixels=5\"}}}",
            "pools.image.settings: must be an object", NULL);
    /* Over the 4095 bytes a child's jail carries. */
    n = (size_t)snprintf(big, sizeof(big), "{\"pools\": {\"image\": {\"settings\": {\"k\": \"");
    memset(big + n, 'a', 4200);
    snprintf(big + n + 4200, sizeof(big) - n - 4200, "\"}}}}");
    refused(big, "pools.image.settings: is 42", "over the limit of 4095");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_production_example, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_queues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_resolution, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
