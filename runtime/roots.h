/*
 * roots.h -- capability-style file access for tasks.
 *
 * A task names its files by path; the supervisor opens each only if it lies
 * beneath one of the configured allowed roots, resolving with openat2's
 * RESOLVE_BENEATH so that neither ".." nor a symlink can escape, and hands
 * the descriptor to the child.  The child itself cannot open anything.
 */
#ifndef KILN_ROOTS_H
#define KILN_ROOTS_H

#include <stddef.h>

#define KILN__MAX_ROOTS 16

typedef struct kiln__roots {
    int n;
    char path[KILN__MAX_ROOTS][4096]; /* absolute, canonical */
    int fd[KILN__MAX_ROOTS];          /* O_PATH directory descriptors */
} kiln__roots_t;

void kiln__roots_init(kiln__roots_t *r);
/* Add a directory (resolved with realpath).  0 or -errno with a message. */
int kiln__roots_add(kiln__roots_t *r, const char *dir, char *err, size_t errlen);
void kiln__roots_free(kiln__roots_t *r);

enum { KILN__FILE_READ = 0, KILN__FILE_WRITE = 1 };

/* Open `path` for a task: read-only, or (WRITE) created/truncated 0644.
 * Returns the descriptor or -errno with a message naming the path and the
 * roots.  May block on slow disks: call from a thread, not the loop. */
int kiln__roots_open(const kiln__roots_t *r, const char *path, int mode, char *err, size_t errlen);

#endif
