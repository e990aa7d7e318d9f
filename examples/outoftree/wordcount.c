/*
 * wordcount: a kiln plugin built outside the kiln tree, against the installed
 * SDK only (sdk/GUIDE.md walks through it).  Beyond what examples/hello shows,
 * it uses keyword arguments, a file handed in by the runtime, progress, the
 * soft time limit, and init/fini hooks.
 *
 *   kiln run wordcount.so wordcount.text --args '["one two three"]'
 *   kiln run wordcount.so wordcount.file --file input=notes.txt --kwargs '{"min_length": 4}'
 */
#include <errno.h>
#include <kiln/kiln.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUF_SIZE       (64 * 1024)
#define PROGRESS_EVERY (1024 * 1024) /* bytes between two progress reports */

/* Allocated once per child by init, reused by every task, freed by fini. */
static unsigned char *buf;

typedef struct count {
    json_int_t min_length; /* words shorter than this are not counted */
    json_int_t words;
    json_int_t lines;
    json_int_t bytes;
    json_int_t cur; /* length of the word being read */
} count_t;

static void
count_feed(count_t *c, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int space = p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r';
        if (!space) {
            c->cur++;
            continue;
        }
        if (c->cur > 0 && c->cur >= c->min_length)
            c->words++;
        c->cur = 0;
        if (p[i] == '\n')
            c->lines++;
    }
    c->bytes += (json_int_t)n;
}

static json_t *
count_result(count_t *c)
{
    if (c->cur > 0 && c->cur >= c->min_length)
        c->words++;
    c->cur = 0;
    return json_pack("{sIsIsI}", "words", c->words, "lines", c->lines, "bytes", c->bytes);
}

/* kwargs {"min_length": N}, N >= 1, default 1. */
static int
count_init(kiln_ctx_t *ctx, count_t *c)
{
    const json_t *min = json_object_get(kiln_kwargs(ctx), "min_length");

    memset(c, 0, sizeof(*c));
    c->min_length = 1;
    if (!min)
        return KILN_OK;
    if (!json_is_integer(min) || json_integer_value(min) < 1)
        return kiln_fail(ctx, "ValueError", "%s: min_length must be an integer >= 1",
                         kiln_task_name(ctx));
    c->min_length = json_integer_value(min);
    return KILN_OK;
}

/* wordcount.text: args ["some text"] -> {"words", "lines", "bytes"} */
static int
text(kiln_ctx_t *ctx)
{
    const json_t *s = json_array_get(kiln_args(ctx), 0);
    count_t c;

    if (!json_is_string(s))
        return kiln_fail(ctx, "TypeError", "wordcount.text: args[0] must be a string");
    if (count_init(ctx, &c) != KILN_OK)
        return KILN_ERR;
    count_feed(&c, (const unsigned char *)json_string_value(s), json_string_length(s));
    return kiln_set_result(ctx, count_result(&c));
}

/* wordcount.file: the task's file "input" -> {"words", "lines", "bytes"} */
static int
file(kiln_ctx_t *ctx)
{
    int fd = kiln_file(ctx, "input"); /* opened by the runtime; it closes it too */
    struct stat st;
    json_int_t size = 0, next_report = PROGRESS_EVERY;
    count_t c;

    if (fd < 0)
        return kiln_fail(ctx, "ValueError", "wordcount.file: no file named \"input\": %s",
                         kiln_strerror(fd));
    if (count_init(ctx, &c) != KILN_OK)
        return KILN_ERR;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        size = (json_int_t)st.st_size;
    for (;;) {
        ssize_t n = read(fd, buf, BUF_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kiln_fail(ctx, "OSError", "wordcount.file: reading \"input\": %s",
                             strerror(errno));
        if (n == 0)
            break;
        count_feed(&c, buf, (size_t)n);
        if (kiln_soft_timeout(ctx))
            return kiln_fail(ctx, "SoftTimeLimitExceeded",
                             "wordcount.file: stopped at the soft time limit after %lld bytes",
                             (long long)c.bytes);
        if (size > 0 && c.bytes >= next_report) {
            kiln_progress(ctx, (double)c.bytes / (double)size, "counting");
            next_report += PROGRESS_EVERY;
        }
    }
    kiln_log(ctx, KILN_LOG_DEBUG, "counted %lld bytes", (long long)c.bytes);
    return kiln_set_result(ctx, count_result(&c));
}

/* Once per child, before its first task. */
static int
init(kiln_ctx_t *ctx)
{
    buf = malloc(BUF_SIZE);
    if (!buf)
        return kiln_fail(ctx, "MemoryError", "cannot allocate the %d-byte read buffer", BUF_SIZE);
    return KILN_OK;
}

/* Once when a child retires normally. */
static void
fini(void)
{
    free(buf);
    buf = NULL;
}

static const kiln_task_t tasks[] = {
    {"wordcount.text", text},
    {"wordcount.file", file},
    {NULL, NULL},
};

KILN_POLICY(policy, .profile = "compute", .memory_bytes = 64u << 20, .soft_time_limit = 50,
            .time_limit = 60, .max_tasks_per_child = 100);
KILN_PLUGIN(.name = "wordcount", .version = "1.0.0", .tasks = tasks, .policy = &policy,
            .init = init, .fini = fini);
