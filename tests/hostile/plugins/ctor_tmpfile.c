/* hostile_ctor_tmpfile: a constructor that creates MARKER under /tmp at
 * dlopen.  The child may not create files: either the loader filter traps the
 * open (kiln refuses the plugin naming the syscall) or Landlock refuses it
 * with EACCES (the plugin loads and ctor_tmpfile.run reports the errno as a
 * PermissionError).  MARKER must never appear. */
#include <errno.h>
#include <fcntl.h>
#include <kiln/kiln.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MARKER "/tmp/kiln-hostile-ctor-tmpfile"

static char seen[256] = "constructor did not run";
static int denied;

__attribute__((constructor)) static void
hostile_ctor(void)
{
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        denied = 1;
        snprintf(seen, sizeof(seen), "constructor: open %s: %s", MARKER, strerror(errno));
        return;
    }
    if (write(fd, "pwned\n", 6) < 0)
        snprintf(seen, sizeof(seen), "constructor: created %s, write: %s", MARKER, strerror(errno));
    else
        snprintf(seen, sizeof(seen), "constructor: created %s", MARKER);
    close(fd);
}

static int
run(kiln_ctx_t *ctx)
{
    return kiln_fail(ctx, denied ? "PermissionError" : "RuntimeError", "%s", seen);
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {
    {"ctor_tmpfile.run", run}, {"ctor_tmpfile.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);
KILN_PLUGIN(.name = "hostile_ctor_tmpfile", .version = "1.0.0", .tasks = tasks, .policy = &policy);
