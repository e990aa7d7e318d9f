/*
 * test_sandbox_landlock.c -- the filesystem view of a child: system
 * libraries and the plugin's directory readable, nothing writable, nothing
 * else reachable; signals and TCP scoped where the ABI allows.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox.h"
#include "steps.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

static int abi;
static char dir[64];
static char plugin[PATH_MAX];
static char data[PATH_MAX];

static int
open_errno(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

static int
connect_errno(void)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

    if (fd < 0)
        return errno;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(1);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
    close(fd);
    return rc;
}

/* Each check returns 0 when the expectation holds, else its own code. */
static int
child_checks(int profile)
{
    char path[PATH_MAX + 16];

    if (open_errno("/etc/shadow", O_RDONLY) != EACCES)
        return 10;
    if (open_errno("/etc/passwd", O_RDONLY) != EACCES)
        return 11;
    if (open_errno("/etc/ld.so.cache", O_RDONLY) != 0)
        return 12;
    if (open_errno("/usr/lib", O_RDONLY | O_DIRECTORY) != 0)
        return 13;
    if (open_errno(data, O_RDONLY) != 0)
        return 14;
    if (open_errno(data, O_WRONLY) != EACCES)
        return 15;
    snprintf(path, sizeof(path), "%s/new", dir);
    if (open_errno(path, O_WRONLY | O_CREAT) != EACCES)
        return 16;
    if (unlink(data) == 0 || errno != EACCES)
        return 17;
    if (mkdir("/tmp/kiln-landlock-should-not-exist", 0700) == 0 || errno != EACCES)
        return 18;
    if (abi >= 6 && (kill(getppid(), 0) == 0 || errno != EPERM))
        return 19;
    if (abi >= 4 && profile == KILN__PROFILE_COMPUTE && connect_errno() != EACCES)
        return 20;
    if (profile == KILN__PROFILE_NETWORK && connect_errno() != ECONNREFUSED)
        return 21;
    return 0;
}

static int
run_child(int profile)
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char err[KILN__ERRLEN];
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(2);
        if (kiln__landlock_apply(plugin, profile, abi, err, sizeof(err)) < 0)
            _exit(3);
        _exit(child_checks(profile));
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void
require_landlock(void)
{
    if (abi <= 0) {
        print_message("skipped: landlock unavailable (%d)\n", abi);
        skip();
    }
}

static void
test_compute_view(void **state)
{
    (void)state;
    require_landlock();
    assert_int_equal(run_child(KILN__PROFILE_COMPUTE), 0);
}

static void
test_network_view(void **state)
{
    (void)state;
    require_landlock();
    assert_int_equal(run_child(KILN__PROFILE_NETWORK), 0);
}

static void
test_abi_matches_caps(void **state)
{
    kiln__caps_t caps;
    char err[KILN__ERRLEN] = "";

    (void)state;
    kiln__caps_probe(&caps);
    assert_int_equal(caps.landlock_abi, abi > 0 ? abi : 0);
    assert_int_equal(kiln__landlock_apply(plugin, 0, 0, err, sizeof(err)), -EOPNOTSUPP);
    assert_true(strncmp(err, "landlock: ", 10) == 0);
}

static int
setup(void **state)
{
    int fd;

    (void)state;
    abi = kiln__landlock_abi();
    snprintf(dir, sizeof(dir), "/tmp/kiln-landlock-test-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(plugin, sizeof(plugin), "%s/plugin.so", dir);
    snprintf(data, sizeof(data), "%s/model.bin", dir);
    fd = open(data, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    unlink(data);
    rmdir(dir);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compute_view),
        cmocka_unit_test(test_network_view),
        cmocka_unit_test(test_abi_matches_caps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
