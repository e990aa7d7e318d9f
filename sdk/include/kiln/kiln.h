/*
 * kiln.h -- the one public header of the kiln plugin SDK.
 *
 * A plugin is a shared object that defines, with KILN_PLUGIN(), one exported
 * symbol named `kiln_plugin`: its name, version, the ABI it was built for, its
 * tasks (task name -> handler), its default sandbox policy and optional
 * init/fini hooks.  The runtime dlopens the plugin only inside a sandboxed
 * child process, never in the supervisor.
 *
 * Handlers talk to the runtime only through the functions below, which call
 * through a versioned function table that the runtime hands to the plugin
 * before init (the model is the Redis modules API).
 *
 * ABI promise: plugins built against KILN_ABI_MAJOR.x load into any runtime
 * with the same major and a minor >= x.  A minor bump only appends: fields are
 * added at the end of kiln_plugin_t, kiln_policy_t and kiln_api_t, never in
 * the middle, and every struct that crosses the boundary carries its size.
 *
 * JSON: the API exposes jansson's json_t (Debian: libjansson-dev), so this
 * header includes <jansson.h>; that is its only non-standard include.
 *
 * Ownership: pointers the runtime returns are borrowed and stay valid until
 * the handler returns, unless a function says otherwise.  Strings passed in
 * are copied before the call returns.
 */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_ABI_MAJOR 1 /* incompatible changes bump this */
#define KILN_ABI_MINOR 1 /* appended API bumps this */

#define KILN_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define KILN_EXPORT       __attribute__((visibility("default")))
#define KILN_HIDDEN       __attribute__((visibility("hidden")))
#define KILN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KILN_EXPORT
#define KILN_HIDDEN
#define KILN_PRINTF(f, a)
#endif

/* Return codes: 0 or a negative errno-style code. */
#define KILN_OK  0
#define KILN_ERR (-1) /* handler failed; the reason was given with kiln_fail() */

/* Log levels for kiln_log(). */
#define KILN_LOG_DEBUG 0
#define KILN_LOG_INFO  1
#define KILN_LOG_WARN  2
#define KILN_LOG_ERROR 3

/* Opaque per-task context.  Valid only during the call it was passed to. */
typedef struct kiln_ctx kiln_ctx_t;

/* A task handler.  Returns KILN_OK after kiln_set_result() (no result means a
 * JSON null result), or the value of kiln_fail()/kiln_retry(). */
typedef int (*kiln_handler_t)(kiln_ctx_t *ctx);

/* One entry of a plugin's task table; the table ends with {NULL, NULL}. */
typedef struct kiln_task {
    const char *name;       /* Celery task name, e.g. "image.thumbnail" */
    kiln_handler_t handler; /* called once per task, in a sandboxed child */
} kiln_task_t;

/* A plugin's default policy.  Every field may be overridden by the
 * configuration or, for the time limits, by the task message.  Zero means
 * "the runtime default". */
typedef struct kiln_policy {
    uint32_t size;          /* sizeof(kiln_policy_t) as built; set by KILN_POLICY() */
    const char *profile;    /* sandbox profile: "compute" (default), "network", "threads" */
    uint64_t memory_bytes;  /* memory cap per child, bytes (default 256 MiB) */
    double soft_time_limit; /* seconds after which kiln_soft_timeout() is true (default none) */
    double time_limit;      /* hard limit, seconds: the child is killed (default 300) */
    uint32_t max_tasks_per_child; /* recycle the child after this many tasks (default 10000) */
    uint32_t concurrency;         /* children to run for this plugin (default: CPU count) */
} kiln_policy_t;

typedef struct kiln_api kiln_api_t;

/* What a plugin exports, as the symbol `kiln_plugin`.  Use KILN_PLUGIN(). */
typedef struct kiln_plugin {
    uint32_t abi_major;          /* KILN_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;          /* KILN_ABI_MINOR the plugin was built with */
    uint32_t size;               /* sizeof(kiln_plugin_t) as built */
    const char *name;            /* plugin name, e.g. "image" */
    const char *version;         /* plugin's own version string */
    const kiln_task_t *tasks;    /* task table, ends with {NULL, NULL} */
    const kiln_policy_t *policy; /* default policy, or NULL for runtime defaults */
    /* Called once per child after the plugin is loaded and before the first
     * task, still under the loader sandbox (it may read files the loader
     * allows, e.g. a model next to the plugin).  Returns KILN_OK, or fails
     * with kiln_fail(): the child then exits and the failure is reported. */
    int (*init)(kiln_ctx_t *ctx);
    void (*fini)(void);     /* called once when a child retires normally */
    const kiln_api_t **api; /* where the runtime stores its function table */
} kiln_plugin_t;

/* The runtime's function table.  Plugins never call these directly: use the
 * kiln_xxx() wrappers below.  Only ever grows at the end. */
struct kiln_api {
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t size; /* sizeof(kiln_api_t) in the runtime */
    const json_t *(*args)(kiln_ctx_t *ctx);
    const json_t *(*kwargs)(kiln_ctx_t *ctx);
    int (*set_result)(kiln_ctx_t *ctx, json_t *result);
    int (*fail)(kiln_ctx_t *ctx, const char *exc_type, const char *message);
    int (*retry)(kiln_ctx_t *ctx, double countdown, const char *reason);
    int (*progress)(kiln_ctx_t *ctx, double fraction, const char *message);
    void (*log)(kiln_ctx_t *ctx, int level, const char *message);
    int (*soft_timeout)(kiln_ctx_t *ctx);
    int (*file)(kiln_ctx_t *ctx, const char *name);
    const char *(*task_name)(kiln_ctx_t *ctx);
    const char *(*task_id)(kiln_ctx_t *ctx);
    double (*time_left)(kiln_ctx_t *ctx);
    const char *(*strerror)(int code);
    /* ABI 1.1 */
    const json_t *(*settings)(kiln_ctx_t *ctx);
};

/* Set by the runtime before init; defined in the plugin by KILN_PLUGIN(). */
extern KILN_HIDDEN const kiln_api_t *kiln__api;

/* Declare a default policy: KILN_POLICY(name, .profile = "compute", ...). */
#define KILN_POLICY(var, ...)                                                                      \
    static const kiln_policy_t var = {.size = sizeof(kiln_policy_t), __VA_ARGS__}

/* Declare the plugin:
 *   KILN_PLUGIN(.name = "hello", .version = "1.0", .tasks = tasks, .policy = &policy); */
#define KILN_PLUGIN(...)                                                                           \
    KILN_HIDDEN const kiln_api_t *kiln__api;                                                       \
    KILN_EXPORT const kiln_plugin_t kiln_plugin = {.abi_major = KILN_ABI_MAJOR,                    \
                                                   .abi_minor = KILN_ABI_MINOR,                    \
                                                   .size = sizeof(kiln_plugin_t),                  \
                                                   .api = &kiln__api,                              \
                                                   __VA_ARGS__}

/* Positional arguments of the task: a JSON array (borrowed). */
static inline const json_t *
kiln_args(kiln_ctx_t *ctx)
{
    return kiln__api->args(ctx);
}

/* Keyword arguments of the task: a JSON object (borrowed). */
static inline const json_t *
kiln_kwargs(kiln_ctx_t *ctx)
{
    return kiln__api->kwargs(ctx);
}

/* Set the task's result.  Steals the reference to `result` (json_incref()
 * first to keep it).  Returns KILN_OK, or -EINVAL if it cannot be encoded. */
static inline int
kiln_set_result(kiln_ctx_t *ctx, json_t *result)
{
    return kiln__api->set_result(ctx, result);
}

/* Fail the task with an error type (becomes Celery's exc_type, e.g.
 * "ValueError") and a printf-style message.  Returns KILN_ERR, so a handler
 * can `return kiln_fail(...)`. */
static inline KILN_PRINTF(3, 4) int kiln_fail(kiln_ctx_t *ctx, const char *exc_type,
                                              const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return kiln__api->fail(ctx, exc_type, msg);
}

/* Ask for the task to be retried after `countdown` seconds.  Returns KILN_ERR
 * for `return kiln_retry(...)`. */
static inline int
kiln_retry(kiln_ctx_t *ctx, double countdown, const char *reason)
{
    return kiln__api->retry(ctx, countdown, reason);
}

/* Report progress: fraction in [0, 1] and an optional message (may be NULL). */
static inline int
kiln_progress(kiln_ctx_t *ctx, double fraction, const char *message)
{
    return kiln__api->progress(ctx, fraction, message);
}

/* Log a line; it is forwarded to the supervisor's log with the task id. */
static inline KILN_PRINTF(3, 4) void kiln_log(kiln_ctx_t *ctx, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kiln__api->log(ctx, level, msg);
}

/* 1 once the task's soft time limit has passed, else 0.  Long handlers poll
 * this and stop cleanly. */
static inline int
kiln_soft_timeout(kiln_ctx_t *ctx)
{
    return kiln__api->soft_timeout(ctx);
}

/* Seconds left before the soft time limit (or the hard one when there is no
 * soft limit); a large number when there is neither. */
static inline double
kiln_time_left(kiln_ctx_t *ctx)
{
    return kiln__api->time_left(ctx);
}

/* The descriptor of the file the task named `name`, opened by the runtime
 * after checking its path against the allowed roots.  Borrowed: the runtime
 * closes it after the handler returns.  Returns -ENOENT if the task has no
 * such file. */
static inline int
kiln_file(kiln_ctx_t *ctx, const char *name)
{
    return kiln__api->file(ctx, name);
}

/* The running task's name and id (borrowed strings). */
static inline const char *
kiln_task_name(kiln_ctx_t *ctx)
{
    return kiln__api->task_name(ctx);
}

static inline const char *
kiln_task_id(kiln_ctx_t *ctx)
{
    return kiln__api->task_id(ctx);
}

/* A static string describing a negative return code. */
static inline const char *
kiln_strerror(int code)
{
    return kiln__api->strerror(code);
}

/* The plugin's settings (ABI 1.1): the JSON object the operator gave in the
 * configuration (`pools.<plugin>.settings`) or with `kiln run --settings`,
 * an empty object when none was given (borrowed, never NULL).  The same in
 * init and in every task of the child: the place for limits such as the
 * largest image a plugin accepts. */
static inline const json_t *
kiln_settings(kiln_ctx_t *ctx)
{
    return kiln__api->settings(ctx);
}

#ifdef __cplusplus
}
#endif

#endif /* KILN_KILN_H */
