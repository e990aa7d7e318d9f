/*
 * test_parse.c -- sizes, durations and counts from the command line.
 */
#include "parse.h"

/* cmocka.h needs these first. */
/* clang-format off */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

static void
test_sizes(void **state)
{
    uint64_t v;
    char err[256];

    (void)state;
    assert_int_equal(kiln__parse_size("200M", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 200ull << 20);
    assert_int_equal(kiln__parse_size("1G", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 1ull << 30);
    assert_int_equal(kiln__parse_size("512MiB", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(kiln__parse_size("1.5GB", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 3ull << 29);
    assert_int_equal(kiln__parse_size("4096", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 4096);
}

static void
test_bad_sizes_name_the_cause(void **state)
{
    uint64_t v;
    char err[256];

    (void)state;
    assert_int_equal(kiln__parse_size("", &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(kiln__parse_size("-5M", &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(kiln__parse_size("12Q", &v, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown unit"));
    assert_int_equal(kiln__parse_size("10Mx", &v, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "trailing"));
    assert_int_equal(kiln__parse_size("abc", &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(kiln__parse_size("0", &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(kiln__parse_size("99999999T", &v, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(kiln__parse_size("nan", &v, err, sizeof(err)), -EINVAL);
}

static void
test_durations(void **state)
{
    double d;
    char err[256];

    (void)state;
    assert_int_equal(kiln__parse_duration("30", &d, err, sizeof(err)), 0);
    assert_true(d == 30.0);
    assert_int_equal(kiln__parse_duration("500ms", &d, err, sizeof(err)), 0);
    assert_true(d == 0.5);
    assert_int_equal(kiln__parse_duration("2m", &d, err, sizeof(err)), 0);
    assert_true(d == 120.0);
    assert_int_equal(kiln__parse_duration("1h", &d, err, sizeof(err)), 0);
    assert_true(d == 3600.0);
    assert_int_equal(kiln__parse_duration("1.5s", &d, err, sizeof(err)), 0);
    assert_true(d == 1.5);
    assert_int_equal(kiln__parse_duration("-1", &d, err, sizeof(err)), -EINVAL);
    assert_int_equal(kiln__parse_duration("5 parsecs", &d, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown unit"));
    assert_int_equal(kiln__parse_duration("inf", &d, err, sizeof(err)), -EINVAL);
    assert_int_equal(kiln__parse_duration("", &d, err, sizeof(err)), -EINVAL);
}

static void
test_uints(void **state)
{
    uint64_t v;
    char err[256];

    (void)state;
    assert_int_equal(kiln__parse_uint("8", 1, 16, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 8);
    assert_int_equal(kiln__parse_uint("0", 1, 16, &v, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(kiln__parse_uint("8x", 1, 16, &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(kiln__parse_uint("-3", 0, 16, &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(kiln__parse_uint("99999999999999999999999", 0, 16, &v, err, sizeof(err)),
                     -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_bad_sizes_name_the_cause),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_uints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
