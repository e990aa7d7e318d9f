/*
 * probe_cache.c -- plugin descriptions remembered between `kiln run`s.
 *
 * `kiln run` needs a plugin's description (its tasks and default policy)
 * before it can jail the child that runs the task, and only a sandboxed probe
 * child may load the plugin to read it.  A probe costs a second child per
 * invocation, and for a plugin with heavy libraries (FFmpeg's hundred) a
 * second load of them.  The description of a plugin file that has not
 * changed does not change either, so the first probe's is kept: one small
 * JSON file per plugin in the user's cache directory, named by a hash of the
 * plugin's path, device, inode, size and modification time and of kiln's
 * version, and holding those same facts, checked on every read.
 *
 * The cache directory must belong to the user and be writable by nobody
 * else, or it is not used; files are written whole (rename) and read with a
 * size cap.  A description read back is validated like a probe's HELLO.
 * KILN_PROBE_CACHE=0 turns the cache off; KILN_CACHE_DIR moves it.
 */
#include "probe_cache.h"

#include "kiln_config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENTRY (256u << 10)

/* The cache directory, created (0700) if missing.  0, or -1: no cache. */
static int
cache_dir(char *buf, size_t len)
{
    const char *env = getenv("KILN_PROBE_CACHE"), *d = getenv("KILN_CACHE_DIR");
    struct stat st;
    int n;

    if (env && strcmp(env, "0") == 0)
        return -1;
    if (d && *d)
        n = snprintf(buf, len, "%s", d);
    else if ((d = getenv("XDG_CACHE_HOME")) && *d == '/')
        n = snprintf(buf, len, "%s/kiln", d);
    else if ((d = getenv("HOME")) && *d == '/')
        n = snprintf(buf, len, "%s/.cache/kiln", d);
    else
        return -1;
    if (n < 0 || (size_t)n >= len)
        return -1;
    if (lstat(buf, &st) < 0) {
        char parent[PATH_MAX];
        char *slash;
        snprintf(parent, sizeof(parent), "%s", buf);
        slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = '\0';
            (void)mkdir(parent, 0700); /* e.g. ~/.cache */
        }
        if (mkdir(buf, 0700) < 0 || lstat(buf, &st) < 0)
            return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
        return -1;
    return 0;
}

/* What identifies this build of the plugin file, as a string. */
static int
identity(const char *plugin, char *buf, size_t len)
{
    char real[PATH_MAX];
    struct stat st;
    int n;

    if (!realpath(plugin, real) || stat(real, &st) < 0)
        return -1;
    n = snprintf(buf, len, "%s|%ju|%ju|%jd|%jd.%09ld|%s", real, (uintmax_t)st.st_dev,
                 (uintmax_t)st.st_ino, (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec,
                 st.st_mtim.tv_nsec, KILN_VERSION);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int
entry_path(const char *plugin, char *id, size_t idlen, char *path, size_t len)
{
    char dir[PATH_MAX];
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    const unsigned char *p;
    int n;

    if (cache_dir(dir, sizeof(dir)) < 0 || identity(plugin, id, idlen) < 0)
        return -1;
    for (p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    n = snprintf(path, len, "%s/plugin-%016" PRIx64 ".json", dir, h);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

json_t *
kiln__probe_cache_get(const char *plugin)
{
    char id[PATH_MAX + 128], path[PATH_MAX], *buf;
    json_error_t je;
    json_t *entry, *hello = NULL;
    struct stat st;
    ssize_t n;
    int fd;

    if (entry_path(plugin, id, sizeof(id), path, sizeof(path)) < 0)
        return NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 022) || st.st_size <= 0 || st.st_size > MAX_ENTRY) {
        close(fd);
        return NULL;
    }
    buf = malloc((size_t)st.st_size);
    n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    entry = n == st.st_size ? json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &je) : NULL;
    free(buf);
    if (json_is_object(entry) && json_is_string(json_object_get(entry, "identity")) &&
        strcmp(json_string_value(json_object_get(entry, "identity")), id) == 0) {
        json_t *h = json_object_get(entry, "hello");
        if (json_is_object(h) && json_is_string(json_object_get(h, "name")) &&
            json_is_array(json_object_get(h, "tasks")) &&
            json_is_object(json_object_get(h, "policy")))
            hello = json_incref(h);
    }
    json_decref(entry);
    return hello;
}

void
kiln__probe_cache_put(const char *plugin, const json_t *hello)
{
    char id[PATH_MAX + 128], path[PATH_MAX], tmp[PATH_MAX + 32];
    json_t *entry;
    char *text;
    int fd, ok;

    if (!hello || entry_path(plugin, id, sizeof(id), path, sizeof(path)) < 0)
        return;
    entry = json_pack("{s:s,s:O}", "identity", id, "hello", hello);
    text = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    if (!text)
        return;
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        size_t len = strlen(text);
        ok = write(fd, text, len) == (ssize_t)len;
        ok &= close(fd) == 0;
        if (!ok || rename(tmp, path) < 0)
            (void)unlink(tmp);
    }
    free(text);
}
