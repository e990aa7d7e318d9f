/* hostile_mmap_sparse: map the whole file handed in as "big" (the test makes
 * a 4 GB sparse file) and read every page.
 *
 * Every page read becomes a page-cache page mapped into the child, so the
 * memory cap must hold here too: the kernel reclaims the clean pages inside
 * the child's memory cgroup (the task then completes), or kills the child
 * (MemoryLimitExceeded), or the address-space limit refuses the mapping
 * (MemoryError naming mmap).  Either way the child's RSS stays under the cap. */
#include <errno.h>
#include <kiln/kiln.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int
run(kiln_ctx_t *ctx)
{
    int fd = kiln_file(ctx, "big");
    struct stat st;
    volatile const unsigned char *p;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned long long pages = 0, sum = 0;
    off_t off;

    if (fd < 0)
        return kiln_fail(ctx, "ValueError", "no file \"big\": %s", kiln_strerror(fd));
    if (fstat(fd, &st) != 0)
        return kiln_fail(ctx, "OSError", "fstat big: %s", strerror(errno));
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return kiln_fail(ctx, "MemoryError", "mmap of %lld bytes: %s", (long long)st.st_size,
                         strerror(errno));
    for (off = 0; off < st.st_size; off += (off_t)page) {
        sum += p[off];
        pages++;
    }
    munmap((void *)p, (size_t)st.st_size);
    return kiln_set_result(
        ctx, json_pack("{s:I,s:I}", "pages", (json_int_t)pages, "sum", (json_int_t)sum));
}

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"mmap_sparse.run", run}, {"mmap_sparse.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .memory_bytes = 128 << 20, .time_limit = 60);
KILN_PLUGIN(.name = "hostile_mmap_sparse", .version = "1.0.0", .tasks = tasks, .policy = &policy);
