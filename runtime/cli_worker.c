/*
 * cli_worker.c -- `kiln worker`: serve Celery queues with sandboxed pools.
 *
 * Start-up: read the config, fork the zygote while small, describe every
 * plugin in the plugin directory with a probe child, make one pool per
 * plugin, then connect to Redis (or start a private redis-server) and fetch.
 * Signals: SIGTERM or SIGINT once = warm shutdown; twice, or SIGQUIT = cold.
 */
#include "cli.h"
#include "config.h"
#include "log.h"
#include "parse.h"
#include "pool.h"
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WORKER_MAX_SLOTS 64

static const char worker_usage[] =
    "usage: kiln worker [options]\n"
    "\n"
    "Consume Celery tasks from Redis and run each in a sandboxed child of the\n"
    "plugin that serves it; write Celery's results.  Acks late: a message leaves\n"
    "Redis only after its result is written.\n"
    "\n"
    "options:\n"
    "  --broker URL            redis://[user@]host:port/db or\n"
    "                          redis+socket:///path/to.sock?virtual_host=db\n"
    "                          (default $KILN_BROKER_URL, else the config's, else a\n"
    "                          private redis-server in the runtime directory)\n"
    "  --result-backend URL    where results go (default: the broker)\n"
    "  --plugins DIR           plugin directory (default: the config's)\n"
    "  --queues Q1,Q2,...      queues in order of precedence (default celery)\n"
    "  --concurrency N         children per plugin (default: the plugin's, else CPUs)\n"
    "  --config FILE           JSON configuration (see docs/config.md)\n"
    "  --allow-evicting-redis  run even if Redis may evict queued tasks\n"
    "  -v, --verbose           log every task\n"
    "  -h, --help              show this help\n"
    "\n"
    "Passwords are never taken from the command line: use KILN_BROKER_URL,\n"
    "KILN_REDIS_PASSWORD, or the config's password_file.\n";

typedef struct wstate {
    uv_loop_t loop;
    kiln__super_t sup;
    kiln__config_t cfg;
    kiln__redis_url_t broker, backend;
    kiln__worker_t *worker;
    char **names;
    size_t n, next;
    int pools;
    int exit_code;
    int signals;
    int shutting;
    uv_signal_t sigterm, sigint, sigquit;
    uv_process_t redis;
    int redis_running;
    int redis_exited;
    int verbose;
} wstate_t;

static void probe_next(wstate_t *st);

static void
redis_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    wstate_t *st = p->data;
    st->redis_running = 0;
    st->redis_exited = 1;
    if (!st->shutting)
        kiln__log_warnx("the embedded redis-server exited (status %lld, signal %d)",
                        (long long)status, sig);
    uv_close((uv_handle_t *)p, NULL);
}

static void
stopped(void *arg)
{
    wstate_t *st = arg;
    if (kiln__worker_failed(st->worker))
        st->exit_code = KILN__EXIT_FAILED;
    uv_close((uv_handle_t *)&st->sigterm, NULL);
    uv_close((uv_handle_t *)&st->sigint, NULL);
    uv_close((uv_handle_t *)&st->sigquit, NULL);
    if (st->redis_running)
        uv_process_kill(&st->redis, SIGTERM);
    kiln__super_close(&st->sup);
    kiln__log_info("worker %s stopped", kiln__worker_id(st->worker));
}

static void
on_signal(uv_signal_t *h, int signum)
{
    wstate_t *st = h->data;
    st->signals++;
    st->shutting = 1;
    if (!st->worker || !st->pools) {
        st->exit_code = KILN__EXIT_FAILED;
        return;
    }
    kiln__worker_shutdown(st->worker, signum == SIGQUIT || st->signals > 1);
}

static void
start_pool(wstate_t *st, const char *file, const json_t *hello)
{
    const json_t *pol = json_object_get(hello, "policy");
    const char *name = json_string_value(json_object_get(hello, "name"));
    const char *profile = json_string_value(json_object_get(pol, "profile"));
    const kiln__pool_conf_t *pc = kiln__config_pool(&st->cfg, name);
    kiln__pool_cfg_t cfg;
    kiln__pool_t *pool;
    char err[512];

    memset(&cfg, 0, sizeof(cfg));
    if (snprintf(cfg.plugin_path, sizeof(cfg.plugin_path), "%s/%s", st->cfg.plugins_dir, file) >=
        (int)sizeof(cfg.plugin_path)) {
        kiln__log_warnx("plugin %s: path too long", file);
        return;
    }
    if (profile && kiln__profile_parse(profile, &cfg.profile) < 0) {
        kiln__log_warnx("plugin %s: unknown profile \"%s\" in its policy; not serving it", file,
                        profile);
        return;
    }
    cfg.memory_bytes = (uint64_t)json_integer_value(json_object_get(pol, "memory_bytes"));
    cfg.time_limit = json_number_value(json_object_get(pol, "time_limit"));
    cfg.soft_time_limit = json_number_value(json_object_get(pol, "soft_time_limit"));
    cfg.max_tasks_per_child =
        (uint32_t)json_integer_value(json_object_get(pol, "max_tasks_per_child"));
    cfg.concurrency = (uint32_t)json_integer_value(json_object_get(pol, "concurrency"));
    if (st->cfg.concurrency)
        cfg.concurrency = st->cfg.concurrency;
    if (pc) {
        if (pc->profile[0] && kiln__profile_parse(pc->profile, &cfg.profile) < 0) {
            kiln__log_warnx("config pools.%s.profile \"%s\" is unknown; not serving it", name,
                            pc->profile);
            return;
        }
        if (pc->concurrency)
            cfg.concurrency = pc->concurrency;
        if (pc->memory_bytes)
            cfg.memory_bytes = pc->memory_bytes;
        if (pc->max_rss_bytes)
            cfg.max_rss_bytes = pc->max_rss_bytes;
        if (pc->max_tasks_per_child)
            cfg.max_tasks_per_child = pc->max_tasks_per_child;
        if (pc->soft_time_limit > 0)
            cfg.soft_time_limit = pc->soft_time_limit;
        if (pc->time_limit > 0)
            cfg.time_limit = pc->time_limit;
        memcpy(cfg.settings, pc->settings, sizeof(cfg.settings));
    }
    kiln__pool_cfg_defaults(&cfg); /* what the pool will use, for the log line */
    cfg.on_idle = kiln__worker_kick;
    cfg.idle_arg = st->worker;
    if (kiln__pool_new(&st->sup, &cfg, &pool, err, sizeof(err)) < 0) {
        kiln__log_warnx("plugin %s: cannot start its pool: %s", file, err);
        return;
    }
    if (kiln__worker_add_pool(st->worker, name, json_object_get(hello, "tasks"), pool) < 0) {
        kiln__log_warnx("plugin %s: too many plugins", file);
        kiln__pool_close(pool, 0, NULL, NULL);
        return;
    }
    st->pools++;
    {
        char *tasks = json_dumps(json_object_get(hello, "tasks"), JSON_COMPACT);
        kiln__log_info("pool %s: %u children, profile %s, memory %llu MiB, time limit %g s, "
                       "max %u tasks per child; tasks %s",
                       name, cfg.concurrency, kiln__profile_name(cfg.profile),
                       (unsigned long long)(cfg.memory_bytes >> 20), cfg.time_limit,
                       cfg.max_tasks_per_child, tasks ? tasks : "[]");
        free(tasks);
    }
}

static void
on_probe(kiln__super_t *s, const kiln__plugin_info_t *info, void *arg)
{
    wstate_t *st = arg;
    const char *file = st->names[st->next - 1];

    if (info->error[0])
        kiln__log_warnx("plugin %s refused: %s: %s", file, info->error_type, info->error);
    else if (!st->shutting)
        start_pool(st, file, info->hello);
    probe_next(st);
}

static void
probe_next(wstate_t *st)
{
    char path[PATH_MAX * 2];

    if (st->shutting && st->pools == 0) {
        kiln__super_close(&st->sup);
        uv_close((uv_handle_t *)&st->sigterm, NULL);
        uv_close((uv_handle_t *)&st->sigint, NULL);
        uv_close((uv_handle_t *)&st->sigquit, NULL);
        return;
    }
    if (st->next < st->n) {
        snprintf(path, sizeof(path), "%s/%s", st->cfg.plugins_dir, st->names[st->next++]);
        if (kiln__plugin_probe(&st->sup, path, on_probe, st) < 0) {
            kiln__log_warnx("cannot start a probe child for %s", path);
            probe_next(st);
        }
        return;
    }
    if (st->pools == 0) {
        kiln__cli_error("worker: no plugin in %s could be loaded; nothing to serve",
                        st->cfg.plugins_dir);
        st->exit_code = KILN__EXIT_REFUSED;
        st->shutting = 1;
        kiln__super_close(&st->sup);
        uv_close((uv_handle_t *)&st->sigterm, NULL);
        uv_close((uv_handle_t *)&st->sigint, NULL);
        uv_close((uv_handle_t *)&st->sigquit, NULL);
        return;
    }
    kiln__log(KILN__LOG_WARN < kiln__log_level() ? KILN__LOG_WARN : kiln__log_level(),
              "worker %s: serving %d plugin(s) from queues %s%s", kiln__worker_id(st->worker),
              st->pools, st->cfg.queues[0], st->cfg.nqueues > 1 ? ",..." : "");
    kiln__worker_start(st->worker, stopped, st);
}

static int
list_plugins(wstate_t *st)
{
    struct dirent *de;
    DIR *d = opendir(st->cfg.plugins_dir);

    if (!d) {
        kiln__cli_error("worker: plugin directory %s: %s", st->cfg.plugins_dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        char **nn;
        if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
            continue;
        nn = realloc(st->names, (st->n + 1) * sizeof(*nn));
        if (!nn)
            break;
        st->names = nn;
        st->names[st->n++] = strdup(de->d_name);
    }
    closedir(d);
    if (st->n == 0) {
        kiln__cli_error("worker: no *.so plugins in %s", st->cfg.plugins_dir);
        return -1;
    }
    return 0;
}

/* Start Debian's redis-server on a unix socket in the runtime directory:
 * appendonly on, noeviction, so queued tasks survive a restart. */
static int
start_embedded(wstate_t *st)
{
    static char sock[PATH_MAX], logf[PATH_MAX];
    char url[PATH_MAX + 64];
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    char *args[24];
    int n = 0, rc;

    if (mkdir(st->cfg.runtime_dir, 0700) < 0 && errno != EEXIST) {
        kiln__cli_error("worker: runtime directory %s: %s", st->cfg.runtime_dir, strerror(errno));
        return -1;
    }
    if (snprintf(sock, sizeof(sock), "%s/redis.sock", st->cfg.runtime_dir) >= (int)sizeof(sock) ||
        snprintf(logf, sizeof(logf), "%s/redis.log", st->cfg.runtime_dir) >= (int)sizeof(logf)) {
        kiln__cli_error("worker: runtime directory path too long");
        return -1;
    }
    args[n++] = "redis-server";
    args[n++] = "--port";
    args[n++] = "0";
    args[n++] = "--unixsocket";
    args[n++] = sock;
    args[n++] = "--unixsocketperm";
    args[n++] = "700";
    args[n++] = "--dir";
    args[n++] = st->cfg.runtime_dir;
    args[n++] = "--appendonly";
    args[n++] = "yes";
    args[n++] = "--maxmemory-policy";
    args[n++] = "noeviction";
    args[n++] = "--save";
    args[n++] = "";
    args[n++] = "--logfile";
    args[n++] = logf;
    args[n++] = "--daemonize";
    args[n++] = "no";
    args[n] = NULL;
    memset(&o, 0, sizeof(o));
    memset(io, 0, sizeof(io));
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_IGNORE;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    o.file = "redis-server";
    o.args = args;
    o.exit_cb = redis_exit_cb;
    o.stdio = io;
    o.stdio_count = 3;
    st->redis.data = st;
    rc = uv_spawn(&st->loop, &st->redis, &o);
    if (rc < 0) {
        kiln__cli_error("worker: cannot start the embedded redis-server: %s (install Debian's "
                        "redis-server, or pass --broker)",
                        uv_strerror(rc));
        return -1;
    }
    st->redis_running = 1;
    memset(&st->broker, 0, sizeof(st->broker));
    st->broker.unix_socket = 1;
    snprintf(st->broker.path, sizeof(st->broker.path), "%s", sock);
    snprintf(url, sizeof(url), "redis+socket://%s", sock);
    fprintf(stderr,
            "kiln: started a private redis-server (appendonly, noeviction); producers use "
            "broker_url = \"%s\"\n",
            url);
    return 0;
}

enum {
    OPT_BROKER = 256,
    OPT_BACKEND,
    OPT_PLUGINS,
    OPT_QUEUES,
    OPT_CONC,
    OPT_CONFIG,
    OPT_EVICT,
};

int
kiln__cmd_worker(int argc, char **argv)
{
    static const struct option opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"result-backend", required_argument, NULL, OPT_BACKEND},
        {"plugins", required_argument, NULL, OPT_PLUGINS},
        {"queues", required_argument, NULL, OPT_QUEUES},
        {"concurrency", required_argument, NULL, OPT_CONC},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"allow-evicting-redis", no_argument, NULL, OPT_EVICT},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static wstate_t st;
    const char *broker = NULL, *backend = NULL, *plugins = NULL, *queues = NULL, *config = NULL;
    char err[1024], real[PATH_MAX];
    uint64_t u;
    int c, evict = 0, conc = 0, embedded = 0;
    size_t i;

    memset(&st, 0, sizeof(st));
    kiln__config_defaults(&st.cfg);
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case OPT_BROKER:
            broker = optarg;
            break;
        case OPT_BACKEND:
            backend = optarg;
            break;
        case OPT_PLUGINS:
            plugins = optarg;
            break;
        case OPT_QUEUES:
            queues = optarg;
            break;
        case OPT_CONC:
            if (kiln__parse_uint(optarg, 1, 256, &u, err, sizeof(err)) < 0) {
                kiln__cli_error("--concurrency: %s", err);
                return KILN__EXIT_USAGE;
            }
            conc = (int)u;
            break;
        case OPT_CONFIG:
            config = optarg;
            break;
        case OPT_EVICT:
            evict = 1;
            break;
        case 'v':
            st.verbose = 1;
            break;
        case 'h':
            fputs(worker_usage, stdout);
            return KILN__EXIT_OK;
        default:
            kiln__cli_error("worker: unknown option or missing value: %s; see 'kiln worker --help'",
                            argv[optind - 1]);
            return KILN__EXIT_USAGE;
        }
    }
    if (optind < argc) {
        kiln__cli_error("worker: unexpected argument \"%s\"", argv[optind]);
        return KILN__EXIT_USAGE;
    }
    kiln__log_init("supervisor", st.verbose ? KILN__LOG_INFO : KILN__LOG_WARN);
    if (config && kiln__config_load(&st.cfg, config, err, sizeof(err)) < 0) {
        kiln__cli_error("%s", err);
        return KILN__EXIT_USAGE;
    }
    if (queues && kiln__config_set_queues(&st.cfg, queues, err, sizeof(err)) < 0) {
        kiln__cli_error("--queues: %s", err);
        return KILN__EXIT_USAGE;
    }
    if (conc)
        st.cfg.concurrency = (uint32_t)conc;
    if (evict)
        st.cfg.allow_evicting_redis = 1;
    if (plugins)
        snprintf(st.cfg.plugins_dir, sizeof(st.cfg.plugins_dir), "%s", plugins);
    if (!st.cfg.plugins_dir[0]) {
        kiln__cli_error("worker: no plugin directory: pass --plugins DIR or set \"plugins\" in the "
                        "config");
        return KILN__EXIT_USAGE;
    }
    if (!realpath(st.cfg.plugins_dir, real)) {
        kiln__cli_error("worker: plugin directory %s: %s", st.cfg.plugins_dir, strerror(errno));
        return KILN__EXIT_USAGE;
    }
    snprintf(st.cfg.plugins_dir, sizeof(st.cfg.plugins_dir), "%s", real);

    /* Broker: --broker, else $KILN_BROKER_URL, else the config's, else a
     * private redis-server; results go to the broker unless told otherwise. */
    if (kiln__config_broker(&st.cfg, broker, &st.broker, &embedded, err, sizeof(err)) < 0) {
        kiln__cli_error("worker: %s", err);
        return KILN__EXIT_USAGE;
    }
    if (list_plugins(&st) < 0)
        return KILN__EXIT_USAGE;

    /* The zygote is forked here, while the process is still small. */
    uv_loop_init(&st.loop);
    if (kiln__super_init(&st.sup, &st.loop, WORKER_MAX_SLOTS, err, sizeof(err)) < 0) {
        kiln__cli_error("cannot set up the sandbox: %s", err);
        return KILN__EXIT_SYSTEM;
    }
    kiln__cli_report_sandbox(&st.sup, st.verbose);
    if (embedded && start_embedded(&st) < 0) {
        st.shutting = 1;
        kiln__super_close(&st.sup);
        uv_run(&st.loop, UV_RUN_DEFAULT);
        return KILN__EXIT_SYSTEM;
    }
    if (kiln__config_backend(&st.cfg, backend, &st.broker, &st.backend, err, sizeof(err)) < 0) {
        kiln__cli_error("worker: %s", err);
        return KILN__EXIT_USAGE;
    }
    if (kiln__worker_new(&st.loop, &st.cfg, &st.broker, &st.backend, &st.worker, err, sizeof(err)) <
        0) {
        kiln__cli_error("worker: %s", err);
        return KILN__EXIT_USAGE;
    }
    if (embedded)
        kiln__worker_quiet_start(st.worker, 3000);
    uv_signal_init(&st.loop, &st.sigterm);
    uv_signal_init(&st.loop, &st.sigint);
    uv_signal_init(&st.loop, &st.sigquit);
    st.sigterm.data = st.sigint.data = st.sigquit.data = &st;
    uv_signal_start(&st.sigterm, on_signal, SIGTERM);
    uv_signal_start(&st.sigint, on_signal, SIGINT);
    uv_signal_start(&st.sigquit, on_signal, SIGQUIT);
    probe_next(&st);
    uv_run(&st.loop, UV_RUN_DEFAULT);
    uv_loop_close(&st.loop);
    kiln__worker_free(st.worker);
    for (i = 0; i < st.n; i++)
        free(st.names[i]);
    free(st.names);
    return st.exit_code;
}
