/*
 * roots.c -- open a task's files beneath the allowed roots, nowhere else.
 */
#include "roots.h"

#include "kiln_config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

void
kiln__roots_init(kiln__roots_t *r)
{
    memset(r, 0, sizeof(*r));
}

int
kiln__roots_add(kiln__roots_t *r, const char *dir, char *err, size_t errlen)
{
    char real[PATH_MAX];
    int fd;

    if (r->n >= KILN__MAX_ROOTS) {
        snprintf(err, errlen, "too many allowed roots (at most %d)", KILN__MAX_ROOTS);
        return -E2BIG;
    }
    if (!realpath(dir, real)) {
        int e = errno;
        snprintf(err, errlen, "allowed root \"%s\": %s", dir, strerror(e));
        return -e;
    }
    fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "allowed root \"%s\": %s", real, strerror(e));
        return -e;
    }
    snprintf(r->path[r->n], sizeof(r->path[r->n]), "%s", real);
    r->fd[r->n] = fd;
    r->n++;
    return 0;
}

void
kiln__roots_free(kiln__roots_t *r)
{
    int i;
    for (i = 0; i < r->n; i++)
        close(r->fd[i]);
    r->n = 0;
}

static void
roots_list(const kiln__roots_t *r, char *buf, size_t len)
{
    size_t off = 0;
    int i;
    buf[0] = '\0';
    for (i = 0; i < r->n && off < len; i++) {
        int n = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", r->path[i]);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    if (r->n == 0)
        snprintf(buf, len, "(none configured)");
}

int
kiln__roots_open(const kiln__roots_t *r, const char *path, int mode, char *err, size_t errlen)
{
    char abs[PATH_MAX * 2], list[1024];
    struct open_how how;
    int i;

    if (!path || !*path) {
        snprintf(err, errlen, "empty file path");
        return -EINVAL;
    }
    if (path[0] == '/') {
        snprintf(abs, sizeof(abs), "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd))) {
            int e = errno;
            snprintf(err, errlen, "file \"%s\": cannot resolve the current directory: %s", path,
                     strerror(e));
            return -e;
        }
        snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
    }
    memset(&how, 0, sizeof(how));
    how.flags =
        O_CLOEXEC | O_NOCTTY | (mode == KILN__FILE_WRITE ? O_WRONLY | O_CREAT | O_TRUNC : O_RDONLY);
    how.mode = mode == KILN__FILE_WRITE ? 0644 : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    for (i = 0; i < r->n; i++) {
        size_t rl = strlen(r->path[i]);
        const char *rel;
        long fd;
        if (strcmp(r->path[i], "/") == 0)
            rl = 0;
        if (strncmp(abs, r->path[i], rl) != 0 || (abs[rl] != '/' && abs[rl] != '\0'))
            continue;
        rel = abs + rl;
        while (*rel == '/')
            rel++;
        if (!*rel)
            continue;
        fd = syscall(SYS_openat2, r->fd[i], rel, &how, sizeof(how));
        if (fd < 0) {
            int e = errno;
            if (e == EXDEV)
                snprintf(err, errlen,
                         "file \"%s\" escapes the allowed root %s (through \"..\" or "
                         "a symlink)",
                         path, r->path[i]);
            else
                snprintf(err, errlen, "file \"%s\": %s", path, strerror(e));
            return -e;
        }
        if (mode == KILN__FILE_READ) {
            struct stat st;
            if (fstat((int)fd, &st) == 0 && !S_ISREG(st.st_mode)) {
                close((int)fd);
                snprintf(err, errlen, "file \"%s\" is not a regular file", path);
                return -EINVAL;
            }
        }
        return (int)fd;
    }
    roots_list(r, list, sizeof(list));
    snprintf(err, errlen, "file \"%s\" is outside the allowed roots: %s", path, list);
    return -EACCES;
}
