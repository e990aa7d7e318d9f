/*
 * cli_run.c -- `kiln run`: run tasks in sandboxed children, no broker.
 *
 * The plugin is first described by a probe child (the supervisor never
 * loads it), its default policy merged with the command line's overrides,
 * then a pool of children runs the task, or every task of a batch.
 */
#include "cli.h"
#include "log.h"
#include "parse.h"
#include "pool.h"
#include "probe_cache.h"
#include "roots.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BATCH_BYTES (64u << 20)
#define MAX_FILES       16

static const char run_usage[] =
    "usage: kiln run PLUGIN.so TASK [options]\n"
    "       kiln run PLUGIN.so --batch FILE [options]\n"
    "\n"
    "Run a task of PLUGIN.so in a sandboxed child and print its result as JSON on\n"
    "stdout (exit 0), or its error with the cause on stderr (exit 1).\n"
    "\n"
    "options:\n"
    "  --args JSON              positional arguments, a JSON array (default [])\n"
    "  --kwargs JSON            keyword arguments, a JSON object (default {})\n"
    "  --file NAME=PATH         hand PATH to the task, opened read-only, as file NAME\n"
    "                           (with --batch, every task gets the same files)\n"
    "  --out NAME=PATH          hand PATH to the task, created or truncated, as file NAME\n"
    "  --root DIR               allow files beneath DIR (repeatable; default: the current\n"
    "                           directory)\n"
    "  --memory SIZE            memory cap per child, e.g. 200M, 1G (default: the plugin's)\n"
    "  --time-limit S           hard time limit in seconds: the child is killed\n"
    "  --soft-time-limit S      soft time limit in seconds: the handler is told\n"
    "  --profile NAME           sandbox profile: compute, network or threads\n"
    "  --file-size SIZE         largest file a child may write (default 1G)\n"
    "  --max-tasks-per-child N  recycle a child after N tasks\n"
    "  --concurrency N          children to run (batch mode; default 1)\n"
    "  --settings JSON          the plugin's settings, a JSON object (what the config's\n"
    "                           pools.<plugin>.settings gives the worker)\n"
    "  --batch FILE             run the tasks in FILE (- for stdin), one JSON object per\n"
    "                           line: {\"task\": T, \"args\": [...], \"kwargs\": {...}};\n"
    "                           prints one JSON line per task, in order\n"
    "  -v, --verbose            log what the supervisor does\n"
    "  -h, --help               show this help\n"
    "\n"
    "A plugin is described (its tasks and policy) by a sandboxed probe child; the\n"
    "description of an unchanged plugin file is kept in $KILN_CACHE_DIR (default\n"
    "~/.cache/kiln) and reused, so later runs start one child, not two.\n"
    "KILN_PROBE_CACHE=0 always probes.\n";

typedef struct run_task {
    kiln__job_t job;
    struct run_state *st;
    size_t index;
    char *line; /* batch: finished output line */
    int done;
    int ok;
} run_task_t;

typedef struct run_state {
    uv_loop_t loop;
    kiln__super_t sup;
    kiln__pool_t *pool;
    kiln__pool_cfg_t cfg;
    int have_memory, have_time, have_soft, have_profile, have_mtpc, have_fsize;
    int cached; /* the plugin's description came from the probe cache */
    const char *plugin_arg;
    char plugin[PATH_MAX];
    const char *task;
    json_t *args, *kwargs;
    json_t *file_names;
    int fds[MAX_FILES];
    int nfds;
    const char *batch;
    run_task_t *tasks;
    size_t ntasks, printed, finished;
    int verbose;
    int exit_code;
    int shutting_down;
    uv_signal_t sigint, sigterm;
} run_state_t;

static void
run_shutdown(run_state_t *st, int code, double grace)
{
    if (code > st->exit_code)
        st->exit_code = code;
    if (st->shutting_down)
        return;
    st->shutting_down = 1;
    if (st->pool) {
        kiln__pool_t *p = st->pool;
        st->pool = NULL;
        kiln__pool_close(p, grace, NULL, NULL);
    }
    uv_close((uv_handle_t *)&st->sigint, NULL);
    uv_close((uv_handle_t *)&st->sigterm, NULL);
    kiln__super_close(&st->sup);
}

static void
on_log(kiln__job_t *job, int level, const char *message)
{
    kiln__log(level < 0 ? 0 : level > 3 ? 3 : level, "task %s: %s", job->task, message);
}

static void
on_progress(kiln__job_t *job, double fraction, const char *message)
{
    kiln__log(KILN__LOG_INFO, "task %s: progress %.0f%%%s%s", job->task, fraction * 100.0,
              message ? ": " : "", message ? message : "");
}

static void
flush_batch(run_state_t *st)
{
    while (st->printed < st->ntasks && st->tasks[st->printed].done) {
        fputs(st->tasks[st->printed].line, stdout);
        fputc('\n', stdout);
        free(st->tasks[st->printed].line);
        st->tasks[st->printed].line = NULL;
        st->printed++;
    }
    fflush(stdout);
}

static void
on_done(kiln__job_t *job, const kiln__outcome_t *o)
{
    run_task_t *t = job->data;
    run_state_t *st = t->st;

    t->done = 1;
    t->ok = o->state == KILN__DONE_SUCCESS;
    st->finished++;
    if (st->batch) {
        json_t *line;
        if (o->state == KILN__DONE_SUCCESS)
            line = json_pack("{s:s,s:s,s:O}", "task", job->task, "status", "SUCCESS", "result",
                             o->result);
        else if (o->state == KILN__DONE_RETRY)
            line =
                json_pack("{s:s,s:s,s:s,s:s,s:f}", "task", job->task, "status", "RETRY", "exc_type",
                          o->exc_type, "exc_message", o->exc_message, "countdown", o->countdown);
        else
            line = json_pack("{s:s,s:s,s:s,s:s}", "task", job->task, "status", "FAILURE",
                             "exc_type", o->exc_type, "exc_message", o->exc_message);
        t->line = line ? json_dumps(line, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
        json_decref(line);
        if (!t->ok)
            st->exit_code = KILN__EXIT_FAILED;
        flush_batch(st);
    } else {
        if (o->state == KILN__DONE_SUCCESS) {
            char *s = json_dumps(o->result, JSON_COMPACT | JSON_ENCODE_ANY);
            printf("%s\n", s ? s : "null");
            fflush(stdout);
            free(s);
        } else if (o->state == KILN__DONE_RETRY) {
            kiln__cli_error("%s asked to be retried in %g s: %s", job->task, o->countdown,
                            o->exc_message);
            st->exit_code = KILN__EXIT_FAILED;
        } else {
            kiln__cli_error("%s failed: %s: %s", job->task, o->exc_type, o->exc_message);
            st->exit_code = KILN__EXIT_FAILED;
        }
    }
    if (st->finished == st->ntasks)
        run_shutdown(st, st->exit_code, 5.0);
}

static int
policy_from_hello(run_state_t *st, const json_t *hello)
{
    json_t *pol = json_object_get(hello, "policy");
    const char *profile = json_string_value(json_object_get(pol, "profile"));
    kiln__pool_cfg_t *cfg = &st->cfg;
    json_int_t mem = json_integer_value(json_object_get(pol, "memory_bytes"));
    json_int_t mtpc = json_integer_value(json_object_get(pol, "max_tasks_per_child"));

    if (!st->have_profile && profile && kiln__profile_parse(profile, &cfg->profile) < 0) {
        kiln__cli_error("plugin %s refused: its policy names an unknown sandbox profile \"%s\"",
                        st->plugin, profile);
        return KILN__EXIT_REFUSED;
    }
    if (!st->have_memory && mem > 0)
        cfg->memory_bytes = (uint64_t)mem;
    if (!st->have_time)
        cfg->time_limit = json_number_value(json_object_get(pol, "time_limit"));
    if (!st->have_soft)
        cfg->soft_time_limit = json_number_value(json_object_get(pol, "soft_time_limit"));
    if (!st->have_mtpc && mtpc > 0)
        cfg->max_tasks_per_child = (uint32_t)mtpc;
    return 0;
}

static int
has_task(const json_t *hello, const char *task)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(hello, "tasks"), i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), task) == 0)
            return 1;
    }
    return 0;
}

static void
on_probe(kiln__super_t *s, const kiln__plugin_info_t *info, void *arg)
{
    run_state_t *st = arg;
    char err[512];
    size_t i;

    if (info->error[0]) {
        kiln__cli_error("plugin %s refused: %s: %s", st->plugin, info->error_type, info->error);
        run_shutdown(st, KILN__EXIT_REFUSED, 5.0);
        return;
    }
    if (!st->cached)
        kiln__probe_cache_put(st->plugin, info->hello);
    if (policy_from_hello(st, info->hello) != 0) {
        run_shutdown(st, KILN__EXIT_REFUSED, 5.0);
        return;
    }
    for (i = 0; i < st->ntasks; i++) {
        if (!has_task(info->hello, st->tasks[i].job.task)) {
            char *names = json_dumps(json_object_get(info->hello, "tasks"), JSON_COMPACT);
            kiln__cli_error("plugin %s has no task \"%s\"; its tasks: %s",
                            json_string_value(json_object_get(info->hello, "name")),
                            st->tasks[i].job.task, names ? names : "[]");
            free(names);
            run_shutdown(st, KILN__EXIT_USAGE, 5.0);
            return;
        }
    }
    if (kiln__pool_new(s, &st->cfg, &st->pool, err, sizeof(err)) < 0) {
        kiln__cli_error("cannot start children: %s", err);
        run_shutdown(st, KILN__EXIT_SYSTEM, 5.0);
        return;
    }
    kiln__log_info("running %zu task(s) of %s: profile %s, memory %llu bytes, time limit %g s",
                   st->ntasks, st->plugin, kiln__profile_name(st->cfg.profile),
                   (unsigned long long)st->cfg.memory_bytes, st->cfg.time_limit);
    for (i = 0; i < st->ntasks; i++) {
        int rc = kiln__pool_submit(st->pool, &st->tasks[i].job);
        if (rc < 0) {
            kiln__cli_error("cannot queue task %s: %s", st->tasks[i].job.task, strerror(-rc));
            run_shutdown(st, KILN__EXIT_SYSTEM, 5.0);
            return;
        }
    }
}

static void
on_signal(uv_signal_t *h, int signum)
{
    run_state_t *st = h->data;
    kiln__cli_error("interrupted by %s; stopping children",
                    signum == SIGINT ? "SIGINT" : "SIGTERM");
    run_shutdown(st, KILN__EXIT_FAILED, 0);
}

static int
add_file(run_state_t *st, const kiln__roots_t *roots, const char *spec, int mode)
{
    const char *eq = strchr(spec, '=');
    char name[128], err[1200];
    int fd;

    if (!eq || eq == spec || !eq[1] || (size_t)(eq - spec) >= sizeof(name)) {
        kiln__cli_error("%s \"%s\" is not NAME=PATH", mode ? "--out" : "--file", spec);
        return -1;
    }
    if (st->nfds >= MAX_FILES) {
        kiln__cli_error("too many files (at most %d)", MAX_FILES);
        return -1;
    }
    memcpy(name, spec, (size_t)(eq - spec));
    name[eq - spec] = '\0';
    fd = kiln__roots_open(roots, eq + 1, mode, err, sizeof(err));
    if (fd < 0) {
        kiln__cli_error("%s %s: %s", mode ? "--out" : "--file", name, err);
        return -1;
    }
    st->fds[st->nfds++] = fd;
    json_array_append_new(st->file_names, json_string(name));
    return 0;
}

/* Read the batch file: one JSON object per line.  0 or -1 with a message. */
static int
load_batch(run_state_t *st)
{
    FILE *f = strcmp(st->batch, "-") == 0 ? stdin : fopen(st->batch, "r");
    char *line = NULL;
    size_t cap = 0, total = 0, lineno = 0;
    ssize_t n;

    if (!f) {
        kiln__cli_error("--batch %s: %s", st->batch, strerror(errno));
        return -1;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t jerr;
        json_t *o, *args = NULL, *kwargs = NULL;
        const char *task = NULL;
        run_task_t *t;

        lineno++;
        total += (size_t)n;
        if (total > MAX_BATCH_BYTES) {
            kiln__cli_error("--batch %s: larger than %u MB", st->batch, MAX_BATCH_BYTES >> 20);
            goto fail;
        }
        if (strspn(line, " \t\r\n") == (size_t)n)
            continue;
        o = json_loadb(line, (size_t)n, 0, &jerr);
        if (!o ||
            json_unpack_ex(o, &jerr, 0, "{s:s,s?o,s?o}", "task", &task, "args", &args, "kwargs",
                           &kwargs) < 0 ||
            (args && !json_is_array(args)) || (kwargs && !json_is_object(kwargs)) ||
            strlen(task) >= sizeof(st->tasks[0].job.task)) {
            kiln__cli_error("--batch %s line %zu: %s", st->batch, lineno,
                            !o                                    ? jerr.text
                            : (args && !json_is_array(args))      ? "\"args\" is not an array"
                            : (kwargs && !json_is_object(kwargs)) ? "\"kwargs\" is not an object"
                            : task && strlen(task) >= 256         ? "task name too long"
                                                                  : jerr.text);
            json_decref(o);
            goto fail;
        }
        t = realloc(st->tasks, (st->ntasks + 1) * sizeof(*t));
        if (!t) {
            json_decref(o);
            goto fail;
        }
        st->tasks = t;
        t = &st->tasks[st->ntasks];
        memset(t, 0, sizeof(*t));
        snprintf(t->job.task, sizeof(t->job.task), "%s", task);
        snprintf(t->job.id, sizeof(t->job.id), "batch-%zu", st->ntasks + 1);
        t->job.args = args ? json_incref(args) : json_array();
        t->job.kwargs = kwargs ? json_incref(kwargs) : json_object();
        t->index = st->ntasks++;
        json_decref(o);
    }
    free(line);
    if (f != stdin)
        fclose(f);
    if (st->ntasks == 0) {
        kiln__cli_error("--batch %s: no tasks", st->batch);
        return -1;
    }
    return 0;
fail:
    free(line);
    if (f != stdin)
        fclose(f);
    return -1;
}

enum {
    OPT_ARGS = 256,
    OPT_KWARGS,
    OPT_FILE,
    OPT_OUT,
    OPT_ROOT,
    OPT_MEMORY,
    OPT_TIME,
    OPT_SOFT,
    OPT_PROFILE,
    OPT_FSIZE,
    OPT_MTPC,
    OPT_CONC,
    OPT_BATCH,
    OPT_SETTINGS,
};

int
kiln__cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"args", required_argument, NULL, OPT_ARGS},
        {"kwargs", required_argument, NULL, OPT_KWARGS},
        {"file", required_argument, NULL, OPT_FILE},
        {"out", required_argument, NULL, OPT_OUT},
        {"root", required_argument, NULL, OPT_ROOT},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"time-limit", required_argument, NULL, OPT_TIME},
        {"soft-time-limit", required_argument, NULL, OPT_SOFT},
        {"profile", required_argument, NULL, OPT_PROFILE},
        {"file-size", required_argument, NULL, OPT_FSIZE},
        {"max-tasks-per-child", required_argument, NULL, OPT_MTPC},
        {"concurrency", required_argument, NULL, OPT_CONC},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"settings", required_argument, NULL, OPT_SETTINGS},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static run_state_t st;
    const char *file_specs[MAX_FILES * 2];
    int file_modes[MAX_FILES * 2], nspecs = 0;
    kiln__roots_t roots;
    char err[1024];
    uint64_t u;
    int c, rc, i;

    memset(&st, 0, sizeof(st));
    kiln__roots_init(&roots);
    st.args = json_array();
    st.kwargs = json_object();
    st.file_names = json_array();
    st.cfg.concurrency = 1;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case OPT_ARGS:
            if (kiln__cli_json_arg("--args", optarg, 1, &st.args) < 0)
                return KILN__EXIT_USAGE;
            break;
        case OPT_KWARGS:
            if (kiln__cli_json_arg("--kwargs", optarg, 0, &st.kwargs) < 0)
                return KILN__EXIT_USAGE;
            break;
        case OPT_SETTINGS: {
            json_t *o = NULL;
            char *s;
            if (kiln__cli_json_arg("--settings", optarg, 0, &o) < 0)
                return KILN__EXIT_USAGE;
            s = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            if (!s || strlen(s) >= sizeof(st.cfg.settings)) {
                kiln__cli_error("--settings: over %zu bytes encoded", sizeof(st.cfg.settings) - 1);
                free(s);
                return KILN__EXIT_USAGE;
            }
            snprintf(st.cfg.settings, sizeof(st.cfg.settings), "%s", s);
            free(s);
            break;
        }
        case OPT_FILE:
        case OPT_OUT:
            if (nspecs >= MAX_FILES * 2) {
                kiln__cli_error("too many files (at most %d)", MAX_FILES);
                return KILN__EXIT_USAGE;
            }
            file_modes[nspecs] = c == OPT_OUT ? KILN__FILE_WRITE : KILN__FILE_READ;
            file_specs[nspecs++] = optarg;
            break;
        case OPT_ROOT:
            if (kiln__roots_add(&roots, optarg, err, sizeof(err)) < 0) {
                kiln__cli_error("--root: %s", err);
                return KILN__EXIT_USAGE;
            }
            break;
        case OPT_MEMORY:
        case OPT_FSIZE:
            if (kiln__parse_size(optarg, &u, err, sizeof(err)) < 0) {
                kiln__cli_error("%s: %s", c == OPT_MEMORY ? "--memory" : "--file-size", err);
                return KILN__EXIT_USAGE;
            }
            if (c == OPT_MEMORY) {
                if (u < (8u << 20)) {
                    kiln__cli_error("--memory: %s is below the 8M a child needs to start", optarg);
                    return KILN__EXIT_USAGE;
                }
                st.cfg.memory_bytes = u;
                st.have_memory = 1;
            } else {
                st.cfg.fsize_bytes = u;
                st.have_fsize = 1;
            }
            break;
        case OPT_TIME:
        case OPT_SOFT: {
            double d;
            if (kiln__parse_duration(optarg, &d, err, sizeof(err)) < 0) {
                kiln__cli_error("%s: %s", c == OPT_TIME ? "--time-limit" : "--soft-time-limit",
                                err);
                return KILN__EXIT_USAGE;
            }
            if (c == OPT_TIME) {
                if (d <= 0) {
                    kiln__cli_error("--time-limit must be above 0");
                    return KILN__EXIT_USAGE;
                }
                st.cfg.time_limit = d;
                st.have_time = 1;
            } else {
                st.cfg.soft_time_limit = d;
                st.have_soft = 1;
            }
            break;
        }
        case OPT_PROFILE:
            if (kiln__profile_parse(optarg, &st.cfg.profile) < 0) {
                kiln__cli_error("--profile: unknown profile \"%s\" (compute, network or threads)",
                                optarg);
                return KILN__EXIT_USAGE;
            }
            st.have_profile = 1;
            break;
        case OPT_MTPC:
        case OPT_CONC:
            if (kiln__parse_uint(optarg, 1, c == OPT_CONC ? 256 : 1000000, &u, err, sizeof(err)) <
                0) {
                kiln__cli_error("%s: %s", c == OPT_CONC ? "--concurrency" : "--max-tasks-per-child",
                                err);
                return KILN__EXIT_USAGE;
            }
            if (c == OPT_CONC) {
                st.cfg.concurrency = (uint32_t)u;
            } else {
                st.cfg.max_tasks_per_child = (uint32_t)u;
                st.have_mtpc = 1;
            }
            break;
        case OPT_BATCH:
            st.batch = optarg;
            break;
        case 'v':
            st.verbose = 1;
            break;
        case 'h':
            fputs(run_usage, stdout);
            return KILN__EXIT_OK;
        default:
            if (optopt)
                kiln__cli_error("run: option %s needs a value or is unknown; see 'kiln run --help'",
                                argv[optind - 1]);
            else
                kiln__cli_error("run: unknown option %s; see 'kiln run --help'", argv[optind - 1]);
            return KILN__EXIT_USAGE;
        }
    }
    kiln__log_init("supervisor", st.verbose ? KILN__LOG_INFO : KILN__LOG_WARN);
    if (optind >= argc || (!st.batch && optind + 1 >= argc) || argc - optind > 2 ||
        (st.batch && argc - optind != 1)) {
        fputs(run_usage, stderr);
        return KILN__EXIT_USAGE;
    }
    st.plugin_arg = argv[optind];
    if (!realpath(st.plugin_arg, st.plugin)) {
        kiln__cli_error("plugin %s refused: %s", st.plugin_arg, strerror(errno));
        return KILN__EXIT_REFUSED;
    }
    if (!st.batch) {
        st.task = argv[optind + 1];
        if (strlen(st.task) >= sizeof(st.tasks[0].job.task)) {
            kiln__cli_error("task name is too long");
            return KILN__EXIT_USAGE;
        }
        st.tasks = calloc(1, sizeof(*st.tasks));
        if (!st.tasks)
            return KILN__EXIT_SYSTEM;
        snprintf(st.tasks[0].job.task, sizeof(st.tasks[0].job.task), "%s", st.task);
        snprintf(st.tasks[0].job.id, sizeof(st.tasks[0].job.id), "run-%d", (int)getpid());
        st.tasks[0].job.args = json_incref(st.args);
        st.tasks[0].job.kwargs = json_incref(st.kwargs);
        st.ntasks = 1;
        st.cfg.concurrency = 1;
    } else if (load_batch(&st) < 0) {
        return KILN__EXIT_USAGE;
    }
    if (roots.n == 0 && kiln__roots_add(&roots, ".", err, sizeof(err)) < 0) {
        kiln__cli_error("%s", err);
        return KILN__EXIT_USAGE;
    }
    for (i = 0; i < nspecs; i++)
        if (add_file(&st, &roots, file_specs[i], file_modes[i]) < 0)
            return KILN__EXIT_USAGE;
    kiln__roots_free(&roots);
    /* Every task gets its own duplicates of the files (a batch shares them). */
    for (i = 0; i < (int)st.ntasks && st.nfds > 0; i++) {
        int f;
        st.tasks[i].job.files = json_incref(st.file_names);
        for (f = 0; f < st.nfds; f++) {
            int d = fcntl(st.fds[f], F_DUPFD_CLOEXEC, 3);
            if (d < 0) {
                kiln__cli_error("cannot duplicate a file descriptor: %s", strerror(errno));
                return KILN__EXIT_SYSTEM;
            }
            st.tasks[i].job.fds[f] = d;
        }
        st.tasks[i].job.nfds = st.nfds;
    }
    for (i = 0; i < st.nfds; i++)
        close(st.fds[i]);
    for (i = 0; i < (int)st.ntasks; i++) {
        st.tasks[i].st = &st;
        st.tasks[i].job.data = &st.tasks[i];
        st.tasks[i].job.soft_time_limit = -1;
        st.tasks[i].job.on_done = on_done;
        st.tasks[i].job.on_log = on_log;
        st.tasks[i].job.on_progress = st.verbose ? on_progress : NULL;
    }
    snprintf(st.cfg.plugin_path, sizeof(st.cfg.plugin_path), "%s", st.plugin);

    /* The zygote is forked here, while the process is still small. */
    uv_loop_init(&st.loop);
    rc = kiln__super_init(&st.sup, &st.loop, st.cfg.concurrency + 1, err, sizeof(err));
    if (rc < 0) {
        kiln__cli_error("cannot set up the sandbox: %s", err);
        return KILN__EXIT_SYSTEM;
    }
    kiln__cli_report_sandbox(&st.sup, st.verbose);
    uv_signal_init(&st.loop, &st.sigint);
    uv_signal_init(&st.loop, &st.sigterm);
    st.sigint.data = st.sigterm.data = &st;
    uv_signal_start(&st.sigint, on_signal, SIGINT);
    uv_signal_start(&st.sigterm, on_signal, SIGTERM);
    {
        /* A plugin file described before needs no probe child. */
        kiln__plugin_info_t info;
        memset(&info, 0, sizeof(info));
        info.hello = kiln__probe_cache_get(st.plugin);
        if (info.hello) {
            kiln__log_info("plugin %s: description from the probe cache", st.plugin);
            st.cached = 1;
            on_probe(&st.sup, &info, &st);
            json_decref(info.hello);
        } else if (kiln__plugin_probe(&st.sup, st.plugin, on_probe, &st) < 0) {
            kiln__cli_error("cannot start a probe child");
            run_shutdown(&st, KILN__EXIT_SYSTEM, 5.0);
        }
    }
    uv_run(&st.loop, UV_RUN_DEFAULT);
    uv_loop_close(&st.loop);
    for (i = 0; i < (int)st.ntasks; i++) {
        json_decref(st.tasks[i].job.args);
        json_decref(st.tasks[i].job.kwargs);
        json_decref(st.tasks[i].job.files);
        free(st.tasks[i].line);
    }
    free(st.tasks);
    json_decref(st.args);
    json_decref(st.kwargs);
    json_decref(st.file_names);
    return st.exit_code;
}
