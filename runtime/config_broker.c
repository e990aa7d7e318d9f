/*
 * config_broker.c -- where the broker is and its password: --broker, then
 * $KILN_BROKER_URL, then the config file's broker, then the embedded
 * broker's socket; the password from the URL, $KILN_REDIS_PASSWORD, or a
 * password file.  A password is never taken from the command line.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* First line of a password file, bounded. */
static int
read_password_file(const char *path, const char *origin, kiln__redis_url_t *u, char *err,
                   size_t errlen)
{
    char buf[sizeof(u->password) + 2];
    size_t n = 0, len;
    int fd, e;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        snprintf(err, errlen, "password file %s (%s): %s", path, origin, strerror(e));
        return -e;
    }
    while (n < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            close(fd);
            snprintf(err, errlen, "password file %s (%s): %s", path, origin, strerror(e));
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (memchr(buf, '\n', n))
            break;
    }
    close(fd);
    buf[n] = '\0';
    len = strcspn(buf, "\r\n");
    buf[len] = '\0';
    if (len == 0) {
        snprintf(err, errlen, "password file %s (%s): the first line is empty", path, origin);
        return -EINVAL;
    }
    if (len >= sizeof(u->password)) {
        snprintf(err, errlen, "password file %s (%s): the password is longer than %zu bytes", path,
                 origin, sizeof(u->password) - 1);
        return -EINVAL;
    }
    memcpy(u->password, buf, len + 1);
    return 0;
}

int
kiln__config_password(const kiln__config_t *c, kiln__redis_url_t *u, char *err, size_t errlen)
{
    const char *env = getenv("KILN_REDIS_PASSWORD");
    const char *file = getenv("KILN_REDIS_PASSWORD_FILE");

    if (u->password[0])
        return 0;
    if (env && *env) {
        if (strlen(env) >= sizeof(u->password)) {
            snprintf(err, errlen, "$KILN_REDIS_PASSWORD is longer than %zu bytes",
                     sizeof(u->password) - 1);
            return -EINVAL;
        }
        snprintf(u->password, sizeof(u->password), "%s", env);
        return 0;
    }
    if (file && *file)
        return read_password_file(file, "$KILN_REDIS_PASSWORD_FILE", u, err, errlen);
    if (c && c->password_file[0])
        return read_password_file(c->password_file, c->file[0] ? c->file : "password_file", u, err,
                                  errlen);
    return 0;
}

const char *
kiln__config_embedded_socket(const kiln__config_t *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s/redis.sock", c->runtime_dir);
    return buf;
}

int
kiln__config_broker(const kiln__config_t *c, const char *arg, kiln__redis_url_t *u, int *embedded,
                    char *err, size_t errlen)
{
    const char *env = getenv("KILN_BROKER_URL");
    char why[768];

    if (embedded)
        *embedded = 0;
    if (arg && *arg) {
        if (kiln__redis_url_parse(arg, u, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "--broker: %s", why);
            return -EINVAL;
        }
        if (u->password[0]) {
            memset(u->password, 0, sizeof(u->password));
            snprintf(err, errlen,
                     "--broker: the URL holds a password, and a command line is visible to "
                     "every user of this machine; put the URL in $KILN_BROKER_URL instead, or "
                     "the password in $KILN_REDIS_PASSWORD or a password file "
                     "($KILN_REDIS_PASSWORD_FILE, or password_file in the config)");
            return -EPERM;
        }
    } else if (env && *env) {
        if (kiln__redis_url_parse(env, u, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "$KILN_BROKER_URL: %s", why);
            return -EINVAL;
        }
    } else if (c->broker[0]) {
        if (kiln__redis_url_parse(c->broker, u, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s: broker: %s", c->file[0] ? c->file : "config", why);
            return -EINVAL;
        }
    } else {
        memset(u, 0, sizeof(*u));
        u->unix_socket = 1;
        if (strlen(c->runtime_dir) + sizeof("/redis.sock") >
            sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(err, errlen,
                     "runtime_dir %s is too long for the embedded broker's unix socket "
                     "(%zu bytes at most)",
                     c->runtime_dir,
                     sizeof(((struct sockaddr_un *)0)->sun_path) - sizeof("/redis.sock"));
            return -ENAMETOOLONG;
        }
        kiln__config_embedded_socket(c, u->path, sizeof(u->path));
        if (embedded)
            *embedded = 1;
    }
    return kiln__config_password(c, u, err, errlen);
}

int
kiln__config_backend(const kiln__config_t *c, const char *arg, const kiln__redis_url_t *broker,
                     kiln__redis_url_t *u, char *err, size_t errlen)
{
    char why[768];

    if (arg && *arg) {
        if (kiln__redis_url_parse(arg, u, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "--result-backend: %s", why);
            return -EINVAL;
        }
        if (u->password[0]) {
            memset(u->password, 0, sizeof(u->password));
            snprintf(err, errlen,
                     "--result-backend: the URL holds a password, and a command line is "
                     "visible to every user of this machine; put the password in "
                     "$KILN_REDIS_PASSWORD or a password file instead");
            return -EPERM;
        }
    } else if (c->result_backend[0]) {
        if (kiln__redis_url_parse(c->result_backend, u, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s: result_backend: %s", c->file[0] ? c->file : "config", why);
            return -EINVAL;
        }
    } else {
        *u = *broker;
        return 0;
    }
    return kiln__config_password(c, u, err, errlen);
}
