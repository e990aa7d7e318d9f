/*
 * cli_plugins.c -- `kiln plugins DIR`: describe every plugin in a directory.
 *
 * Each .so is loaded by its own sandboxed probe child, one after another;
 * the supervisor reads only what the child reports.
 */
#include "cli.h"
#include "log.h"
#include "pool.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char plugins_usage[] =
    "usage: kiln plugins [--json] DIR\n"
    "\n"
    "List the plugins (*.so) in DIR with their version, ABI, tasks and default\n"
    "policy.  Each is loaded in a sandboxed child, never in kiln itself; a\n"
    "plugin kiln refuses is listed with the reason.\n"
    "\n"
    "options:\n"
    "  --json      one JSON object per plugin\n"
    "  -h, --help  show this help\n";

typedef struct plugins_state {
    uv_loop_t loop;
    kiln__super_t sup;
    char dir[PATH_MAX];
    char **names;
    size_t n, next;
    int json;
    int refused;
} plugins_state_t;

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void probe_next(plugins_state_t *st);

static void
print_human(const char *file, const json_t *h)
{
    const json_t *pol = json_object_get(h, "policy");
    const char *profile = json_string_value(json_object_get(pol, "profile"));
    json_int_t mem = json_integer_value(json_object_get(pol, "memory_bytes"));
    json_int_t mtpc = json_integer_value(json_object_get(pol, "max_tasks_per_child"));
    json_int_t conc = json_integer_value(json_object_get(pol, "concurrency"));
    double soft = json_number_value(json_object_get(pol, "soft_time_limit"));
    double hard = json_number_value(json_object_get(pol, "time_limit"));
    const json_t *tasks = json_object_get(h, "tasks");
    size_t i;

    printf("%s: %s %s (ABI %lld.%lld)\n", file, json_string_value(json_object_get(h, "name")),
           json_string_value(json_object_get(h, "version")),
           json_integer_value(json_array_get(json_object_get(h, "abi"), 0)),
           json_integer_value(json_array_get(json_object_get(h, "abi"), 1)));
    printf("  tasks:");
    for (i = 0; i < json_array_size(tasks); i++)
        printf("%s %s", i ? "," : "", json_string_value(json_array_get(tasks, i)));
    printf("\n  policy: profile=%s memory=", profile ? profile : "compute");
    if (mem > 0)
        printf("%lld MiB", (long long)(mem >> 20));
    else
        printf("default");
    printf(" soft_time_limit=");
    if (soft > 0)
        printf("%g s", soft);
    else
        printf("none");
    printf(" time_limit=");
    if (hard > 0)
        printf("%g s", hard);
    else
        printf("default");
    printf(" max_tasks_per_child=");
    if (mtpc > 0)
        printf("%lld", (long long)mtpc);
    else
        printf("default");
    printf(" concurrency=");
    if (conc > 0)
        printf("%lld\n", (long long)conc);
    else
        printf("cpus\n");
}

static void
on_probe(kiln__super_t *s, const kiln__plugin_info_t *info, void *arg)
{
    plugins_state_t *st = arg;
    const char *file = st->names[st->next - 1];

    if (info->error[0]) {
        st->refused++;
        if (st->json) {
            json_t *o = json_pack("{s:s,s:s,s:s}", "file", file, "refused", info->error,
                                  "error_type", info->error_type);
            char *j = json_dumps(o, JSON_COMPACT);
            printf("%s\n", j);
            free(j);
            json_decref(o);
        } else {
            printf("%s: refused: %s: %s\n", file, info->error_type, info->error);
        }
    } else if (st->json) {
        json_t *o = json_deep_copy(info->hello);
        char *j;
        json_object_set_new(o, "file", json_string(file));
        j = json_dumps(o, JSON_COMPACT);
        printf("%s\n", j);
        free(j);
        json_decref(o);
    } else {
        print_human(file, info->hello);
    }
    fflush(stdout);
    probe_next(st);
}

static void
probe_next(plugins_state_t *st)
{
    char path[PATH_MAX * 2];

    if (st->next >= st->n) {
        kiln__super_close(&st->sup);
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", st->dir, st->names[st->next++]);
    if (kiln__plugin_probe(&st->sup, path, on_probe, st) < 0) {
        kiln__cli_error("cannot start a probe child for %s", path);
        kiln__super_close(&st->sup);
    }
}

int
kiln__cmd_plugins(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static plugins_state_t st;
    struct dirent *de;
    char err[512];
    DIR *d;
    int c;
    size_t i;

    memset(&st, 0, sizeof(st));
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            st.json = 1;
        } else if (c == 'h') {
            fputs(plugins_usage, stdout);
            return KILN__EXIT_OK;
        } else {
            kiln__cli_error("plugins: unknown option %s; see 'kiln plugins --help'",
                            argv[optind - 1]);
            return KILN__EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fputs(plugins_usage, stderr);
        return KILN__EXIT_USAGE;
    }
    kiln__log_init("supervisor", KILN__LOG_WARN);
    if (!realpath(argv[optind], st.dir)) {
        kiln__cli_error("plugins: %s: %s", argv[optind], strerror(errno));
        return KILN__EXIT_USAGE;
    }
    d = opendir(st.dir);
    if (!d) {
        kiln__cli_error("plugins: %s: %s", st.dir, strerror(errno));
        return KILN__EXIT_USAGE;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        char **nn;
        if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
            continue;
        nn = realloc(st.names, (st.n + 1) * sizeof(*nn));
        if (!nn)
            break;
        st.names = nn;
        st.names[st.n++] = strdup(de->d_name);
    }
    closedir(d);
    if (st.n == 0) {
        kiln__cli_error("plugins: no *.so files in %s", st.dir);
        free(st.names);
        return KILN__EXIT_USAGE;
    }
    qsort(st.names, st.n, sizeof(*st.names), cmp_names);

    uv_loop_init(&st.loop);
    if (kiln__super_init(&st.sup, &st.loop, 2, err, sizeof(err)) < 0) {
        kiln__cli_error("cannot set up the sandbox: %s", err);
        return KILN__EXIT_SYSTEM;
    }
    probe_next(&st);
    uv_run(&st.loop, UV_RUN_DEFAULT);
    uv_loop_close(&st.loop);
    for (i = 0; i < st.n; i++)
        free(st.names[i]);
    free(st.names);
    return st.refused ? KILN__EXIT_REFUSED : KILN__EXIT_OK;
}
