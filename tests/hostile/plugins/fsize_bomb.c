/* hostile_fsize_bomb: write 10 GB to the file handed in as "out".
 * The file-size cap (RLIMIT_FSIZE) must stop it: FileSizeLimitExceeded.  If
 * write() fails instead of the child being killed, the handler reports the
 * errno as an OSError. */
#include <errno.h>
#include <kiln/kiln.h>
#include <string.h>
#include <unistd.h>

#define TOTAL ((long long)10 << 30)
#define CHUNK (1 << 20)

static char chunk[CHUNK];

static int
run(kiln_ctx_t *ctx)
{
    int fd = kiln_file(ctx, "out");
    long long written = 0;

    if (fd < 0)
        return kiln_fail(ctx, "ValueError", "no file \"out\": %s", kiln_strerror(fd));
    memset(chunk, 'x', sizeof(chunk));
    while (written < TOTAL) {
        ssize_t n = write(fd, chunk, sizeof(chunk));
        if (n < 0)
            return kiln_fail(ctx, "OSError", "write at offset %lld: %s", written, strerror(errno));
        written += n;
    }
    return kiln_fail(ctx, "RuntimeError", "file size cap not enforced: wrote %lld bytes", written);
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"fsize_bomb.run", run}, {"fsize_bomb.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 60);
KILN_PLUGIN(.name = "hostile_fsize_bomb", .version = "1.0.0", .tasks = tasks, .policy = &policy);
