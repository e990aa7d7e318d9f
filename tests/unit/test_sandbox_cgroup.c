/*
 * test_sandbox_cgroup.c -- per-slot cgroups: set-up, limits, the OOM
 * counter and peak, teardown, and clean-up after a dead supervisor.
 * Skips (visibly) where this process cannot make cgroups.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

static kiln__caps_t caps;

static int
exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static long long
read_number(const char *path)
{
    char buf[64];
    ssize_t n;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (strncmp(buf, "max", 3) == 0)
        return -2;
    return strtoll(buf, NULL, 10);
}

static void
require_memory(void)
{
    if (!caps.cgroup_memory) {
        print_message("skipped: %s\n", caps.why[KILN__CAP_CGROUP_MEMORY]);
        skip();
    }
}

static void
test_probe_finds_controllers(void **state)
{
    (void)state;
    if (caps.cgroup_memory)
        assert_true(exists(caps.cgroup_memory_root));
    else
        assert_true(caps.why[KILN__CAP_CGROUP_MEMORY][0] != '\0');
    if (caps.cgroup_pids)
        assert_true(exists(caps.cgroup_pids_root));
    else
        assert_true(caps.why[KILN__CAP_CGROUP_PIDS][0] != '\0');
}

static void
test_setup_limit_teardown(void **state)
{
    kiln__cgroup_t cg;
    char err[KILN__ERRLEN] = "", path[PATH_MAX + 64], limit[PATH_MAX + 64];
    char mem[PATH_MAX], pids[PATH_MAX];
    unsigned i;

    (void)state;
    require_memory();
    if (kiln__cgroup_setup(&cg, &caps, 3, err, sizeof(err)) != 0)
        fail_msg("setup: %s", err);
    assert_int_equal(cg.nslots, 3);
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/slot%u", cg.memory_dir, i);
        assert_true(exists(path));
    }
    if (kiln__cgroup_slot_limit(&cg, 2, 96ull << 20, 40, err, sizeof(err)) != 0)
        fail_msg("limit: %s", err);
    snprintf(limit, sizeof(limit), "%s/slot2/%s", cg.memory_dir,
             cg.memory == 1 ? "memory.limit_in_bytes" : "memory.max");
    assert_int_equal(read_number(limit), 96ll << 20);
    if (cg.pids) {
        snprintf(path, sizeof(path), "%s/slot2/pids.max", cg.pids_dir);
        assert_int_equal(read_number(path), 40);
    }
    /* Lowering and raising again both work (v1: memsw ordering). */
    if (kiln__cgroup_slot_limit(&cg, 2, 32ull << 20, 0, err, sizeof(err)) != 0)
        fail_msg("lower: %s", err);
    assert_int_equal(read_number(limit), 32ll << 20);
    if (cg.pids)
        assert_int_equal(read_number(path), -2); /* "max" */
    if (kiln__cgroup_slot_limit(&cg, 2, 1ull << 30, 10, err, sizeof(err)) != 0)
        fail_msg("raise: %s", err);
    assert_int_equal(kiln__cgroup_slot_limit(&cg, 3, 1, 1, err, sizeof(err)), -EINVAL);

    assert_int_equal(kiln__cgroup_slot_procs(&cg, 1, mem, pids), 0);
    snprintf(path, sizeof(path), "%s/slot1/cgroup.procs", cg.memory_dir);
    assert_string_equal(mem, path);
    if (cg.pids == 1) {
        snprintf(path, sizeof(path), "%s/slot1/cgroup.procs", cg.pids_dir);
        assert_string_equal(pids, path);
    } else {
        assert_string_equal(pids, "");
    }
    assert_int_equal(kiln__cgroup_slot_procs(&cg, 7, mem, pids), -EINVAL);

    snprintf(path, sizeof(path), "%s", cg.memory_dir);
    kiln__cgroup_teardown(&cg);
    assert_false(exists(path));
    assert_string_equal(cg.memory_dir, "");
    kiln__cgroup_teardown(&cg); /* twice is harmless */
}

static void
test_oom_kill_counted(void **state)
{
    kiln__cgroup_t cg;
    char err[KILN__ERRLEN] = "", mem[PATH_MAX], pids[PATH_MAX];
    long before;
    int status, sv[2];
    pid_t pid;

    (void)state;
    require_memory();
    if (kiln__cgroup_setup(&cg, &caps, 1, err, sizeof(err)) != 0)
        fail_msg("setup: %s", err);
    if (kiln__cgroup_slot_limit(&cg, 0, 48ull << 20, 64, err, sizeof(err)) != 0)
        fail_msg("limit: %s", err);
    assert_int_equal(kiln__cgroup_slot_procs(&cg, 0, mem, pids), 0);
    before = kiln__cgroup_slot_oom_kills(&cg, 0);
    assert_true(before >= 0);
    assert_int_equal(pipe(sv), 0);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Join the slot, then touch 4x the cap in anonymous memory. */
        const char *files[2] = {mem, pids};
        size_t i, size = 192u << 20;
        char *p;
        for (i = 0; i < 2; i++) {
            int fd;
            if (files[i][0] == '\0')
                continue;
            fd = open(files[i], O_WRONLY);
            if (fd < 0 || write(fd, "0", 1) != 1)
                _exit(2);
            close(fd);
        }
        if (write(sv[1], "j", 1) != 1)
            _exit(3);
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            _exit(4);
        for (i = 0; i < size; i += 4096)
            p[i] = 1;
        _exit(0);
    }
    close(sv[1]);
    {
        char c;
        assert_int_equal(read(sv[0], &c, 1), 1);
        close(sv[0]);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("expected an OOM kill (SIGKILL), status 0x%x", status);
    assert_true(kiln__cgroup_slot_oom_kills(&cg, 0) > before);
    {
        uint64_t peak = kiln__cgroup_slot_peak(&cg, 0);
        if (peak < (40ull << 20) || peak > (49ull << 20))
            fail_msg("peak %llu should be near the 48 MB cap", (unsigned long long)peak);
    }
    if (cg.memory == 1) {
        assert_int_equal(kiln__cgroup_slot_reset_peak(&cg, 0), 0);
        assert_true(kiln__cgroup_slot_peak(&cg, 0) < (1ull << 20));
    } else {
        assert_int_equal(kiln__cgroup_slot_reset_peak(&cg, 0), -EOPNOTSUPP);
    }
    kiln__cgroup_teardown(&cg);
}

static void
test_stale_directories_removed(void **state)
{
    kiln__cgroup_t cg;
    char err[KILN__ERRLEN] = "", stale[PATH_MAX + 64], slot[PATH_MAX + 80];
    pid_t dead;
    int status;

    (void)state;
    require_memory();
    /* A pid that surely is not running: a child we reaped. */
    dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, &status, 0), dead);
    snprintf(stale, sizeof(stale), "%s/kiln-%d", caps.cgroup_memory_root, (int)dead);
    snprintf(slot, sizeof(slot), "%s/slot0", stale);
    assert_int_equal(mkdir(stale, 0755), 0);
    assert_int_equal(mkdir(slot, 0755), 0);
    if (kiln__cgroup_setup(&cg, &caps, 1, err, sizeof(err)) != 0)
        fail_msg("setup: %s", err);
    assert_false(exists(stale));
    kiln__cgroup_teardown(&cg);
}

static void
test_unused_controllers(void **state)
{
    kiln__cgroup_t cg;
    kiln__caps_t none;
    char err[KILN__ERRLEN] = "", mem[PATH_MAX], pids[PATH_MAX];

    (void)state;
    memset(&none, 0, sizeof(none));
    assert_int_equal(kiln__cgroup_setup(&cg, &none, 2, err, sizeof(err)), 0);
    assert_int_equal(kiln__cgroup_slot_limit(&cg, 1, 1 << 20, 5, err, sizeof(err)), 0);
    assert_int_equal(kiln__cgroup_slot_procs(&cg, 1, mem, pids), 0);
    assert_string_equal(mem, "");
    assert_string_equal(pids, "");
    assert_int_equal(kiln__cgroup_slot_oom_kills(&cg, 1), -1);
    assert_int_equal(kiln__cgroup_slot_peak(&cg, 1), 0);
    kiln__cgroup_teardown(&cg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_finds_controllers),
        cmocka_unit_test(test_setup_limit_teardown),
        cmocka_unit_test(test_oom_kill_counted),
        cmocka_unit_test(test_stale_directories_removed),
        cmocka_unit_test(test_unused_controllers),
    };
    kiln__caps_probe(&caps);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
