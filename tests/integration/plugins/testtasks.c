/* testtasks: the tasks the worker integration tests (tests/integration/worker)
 * send through Redis.  Every task is deterministic given its arguments; none
 * keeps state between tasks (a child may run many, or be replaced).
 *
 *   t.echo      [..]                  -> the args (kwargs {"crash": true}: SIGSEGV)
 *   t.mark      [i, seconds]          -> {"i": i}; reports progress 0.5
 *                                        "ran" first (so every execution of
 *                                        the handler shows up as a PROGRESS
 *                                        publish), then sleeps `seconds`
 *   t.sleep     [seconds]             -> seconds, after sleeping that long
 *   t.progress  [step]                -> "done"; sleeps step, progress 0.25
 *                                        "quarter", sleeps, 0.5 "half",
 *                                        sleeps, 1.0 "finished", sleeps
 *   t.retry     kwargs {"until": T,   -> "done" once the wall clock passes
 *               "countdown": C}          epoch second T; before that,
 *                                        kiln_retry(countdown C, default
 *                                        0.2).  (A
 *                                        handler cannot see the retries
 *                                        header, so the deadline stands in.)
 *   t.fail      [message]             -> ValueError(message)
 *   t.crash     []                    -> SIGSEGV in the child
 *   t.alloc     [mb]                  -> the child's pid, after touching mb MiB
 *   t.pid       []                    -> the child's pid (in its pid namespace)
 *   t.copy      kwargs files {"input"} -> bytes copied from the descriptor
 *               outputs {"output"}       "input" to the descriptor "output"
 *   t.settings  []                    -> the plugin's settings object
 *   t.now       []                    -> {"t": the wall clock (epoch seconds)
 *                                        when the handler started}; the
 *                                        benchmark's latency probe
 */
#include <kiln/kiln.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void
sleep_s(double s)
{
    struct timespec ts;
    if (s <= 0)
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static double
arg_num(kiln_ctx_t *ctx, size_t i, double dflt)
{
    const json_t *v = json_array_get(kiln_args(ctx), i);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static int
echo(kiln_ctx_t *ctx)
{
    if (json_is_true(json_object_get(kiln_kwargs(ctx), "crash")))
        raise(SIGSEGV);
    return kiln_set_result(ctx, json_deep_copy(kiln_args(ctx)));
}

static int
mark(kiln_ctx_t *ctx)
{
    json_t *i = json_array_get(kiln_args(ctx), 0);
    kiln_progress(ctx, 0.5, "ran");
    sleep_s(arg_num(ctx, 1, 0));
    return kiln_set_result(ctx, json_pack("{s:O}", "i", i ? i : json_null()));
}

static int
sleep_for(kiln_ctx_t *ctx)
{
    double s = arg_num(ctx, 0, 0);
    sleep_s(s);
    return kiln_set_result(ctx, json_real(s));
}

static int
progress(kiln_ctx_t *ctx)
{
    double step = arg_num(ctx, 0, 0.5);
    sleep_s(step);
    kiln_progress(ctx, 0.25, "quarter");
    sleep_s(step);
    kiln_progress(ctx, 0.5, "half");
    sleep_s(step);
    kiln_progress(ctx, 1.0, "finished");
    sleep_s(step);
    return kiln_set_result(ctx, json_string("done"));
}

static int
retry(kiln_ctx_t *ctx)
{
    const json_t *until = json_object_get(kiln_kwargs(ctx), "until");
    const json_t *cd = json_object_get(kiln_kwargs(ctx), "countdown");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (json_is_number(until) &&
        (double)now.tv_sec + (double)now.tv_nsec / 1e9 < json_number_value(until))
        return kiln_retry(ctx, json_is_number(cd) ? json_number_value(cd) : 0.2, "not yet");
    return kiln_set_result(ctx, json_string("done"));
}

static int
fail(kiln_ctx_t *ctx)
{
    const char *m = json_string_value(json_array_get(kiln_args(ctx), 0));
    return kiln_fail(ctx, "ValueError", "%s", m ? m : "failed");
}

static int
pid(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_integer((json_int_t)getpid()));
}

static int
alloc(kiln_ctx_t *ctx)
{
    size_t mb = (size_t)arg_num(ctx, 0, 1), i;
    volatile char *p = malloc(mb << 20);

    if (!p)
        return kiln_fail(ctx, "MemoryError", "malloc of %zu MiB failed", mb);
    for (i = 0; i < (mb << 20); i += 4096)
        p[i] = 1;
    free((void *)p);
    return pid(ctx);
}

static int
copy(kiln_ctx_t *ctx)
{
    int in = kiln_file(ctx, "input"), out = kiln_file(ctx, "output");
    char buf[4096];
    ssize_t n;
    json_int_t total = 0;

    if (in < 0 || out < 0)
        return kiln_fail(ctx, "ValueError", "t.copy needs files.input and outputs.output");
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n)
            return kiln_fail(ctx, "OSError", "short write");
        total += n;
    }
    if (n < 0)
        return kiln_fail(ctx, "OSError", "read failed");
    return kiln_set_result(ctx, json_integer(total));
}

static int
crash(kiln_ctx_t *ctx)
{
    (void)ctx;
    raise(SIGSEGV);
    *(volatile int *)0 = 1;
    return KILN_ERR;
}

static int
now(kiln_ctx_t *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return kiln_set_result(ctx,
                           json_pack("{s:f}", "t", (double)ts.tv_sec + (double)ts.tv_nsec / 1e9));
}

static int
settings(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_deep_copy(kiln_settings(ctx)));
}

static const kiln_task_t tasks[] = {
    {"t.echo", echo},   {"t.mark", mark}, {"t.sleep", sleep_for}, {"t.progress", progress},
    {"t.retry", retry}, {"t.fail", fail}, {"t.crash", crash},     {"t.now", now},
    {"t.copy", copy},   {"t.pid", pid},   {"t.alloc", alloc},     {"t.settings", settings},
    {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .memory_bytes = 64 << 20, .time_limit = 60);
KILN_PLUGIN(.name = "testtasks", .version = "1.0.0", .tasks = tasks, .policy = &policy);
