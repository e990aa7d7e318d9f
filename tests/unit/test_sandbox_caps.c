/*
 * test_sandbox_caps.c -- the capability probe and its report: every
 * protection gets one line, "applied" or "unavailable: <why>".
 */
#include "sandbox.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

static const char *const protections[] = {
    "seccomp",           "landlock",         "user namespace", "pid namespace",
    "network namespace", "ipc namespace",    "uts namespace",  "memory cgroup",
    "pids cgroup",       "unprivileged uid", "no_new_privs",   "parent-death signal",
    "descriptors",       "rlimits",
};

static void
assert_reported(const char *report)
{
    size_t i;

    for (i = 0; i < sizeof(protections) / sizeof(protections[0]); i++) {
        char applied[64], unavailable[80];
        snprintf(applied, sizeof(applied), "%s: applied", protections[i]);
        snprintf(unavailable, sizeof(unavailable), "%s: unavailable: ", protections[i]);
        if (strstr(report, applied) == NULL && strstr(report, unavailable) == NULL)
            fail_msg("report does not mention \"%s\":\n%s", protections[i], report);
    }
}

static void
test_report_mentions_each_protection(void **state)
{
    kiln__caps_t caps;
    char report[8192];
    size_t n;

    (void)state;
    assert_int_equal(kiln__caps_probe(&caps), 0);
    n = kiln__caps_report(&caps, report, sizeof(report));
    assert_int_equal(n, strlen(report));
    assert_reported(report);
    assert_int_equal(caps.is_root, geteuid() == 0);
}

static void
test_report_says_why(void **state)
{
    kiln__caps_t caps;
    char report[8192];

    (void)state;
    memset(&caps, 0, sizeof(caps));
    snprintf(caps.why[KILN__CAP_LANDLOCK], sizeof(caps.why[0]), "no landlock here");
    kiln__caps_report(&caps, report, sizeof(report));
    assert_reported(report);
    assert_non_null(strstr(report, "landlock: unavailable: no landlock here\n"));
    assert_non_null(strstr(report, "seccomp: unavailable: "));
    assert_null(strstr(report, "seccomp: applied"));
}

static void
test_report_bounded(void **state)
{
    kiln__caps_t caps;
    char small[40];

    (void)state;
    kiln__caps_probe(&caps);
    memset(small, 'x', sizeof(small));
    assert_true(kiln__caps_report(&caps, small, sizeof(small)) < sizeof(small));
    assert_int_equal(small[sizeof(small) - 1], '\0');
    assert_int_equal(kiln__caps_report(&caps, small, 0), 0);
}

static void
test_probe_matches_this_machine(void **state)
{
    kiln__caps_t caps;

    (void)state;
    kiln__caps_probe(&caps);
    /* Anything the probe says is missing comes with a reason. */
    if (!caps.seccomp)
        assert_true(caps.why[KILN__CAP_SECCOMP][0] != '\0');
    if (!caps.landlock_abi)
        assert_true(caps.why[KILN__CAP_LANDLOCK][0] != '\0');
    if (!caps.userns)
        assert_true(caps.why[KILN__CAP_USERNS][0] != '\0');
    if (!caps.pidns)
        assert_true(caps.why[KILN__CAP_PIDNS][0] != '\0');
    if (!caps.netns)
        assert_true(caps.why[KILN__CAP_NETNS][0] != '\0');
    if (!caps.ipcns)
        assert_true(caps.why[KILN__CAP_IPCNS][0] != '\0');
    if (!caps.utsns)
        assert_true(caps.why[KILN__CAP_UTSNS][0] != '\0');
    if (!caps.cgroup_memory)
        assert_true(caps.why[KILN__CAP_CGROUP_MEMORY][0] != '\0');
    if (!caps.cgroup_pids)
        assert_true(caps.why[KILN__CAP_CGROUP_PIDS][0] != '\0');
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_mentions_each_protection),
        cmocka_unit_test(test_report_says_why),
        cmocka_unit_test(test_report_bounded),
        cmocka_unit_test(test_probe_matches_this_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
