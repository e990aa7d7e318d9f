/*
 * test_config_example.c -- the shipped example config loads, with the
 * production numbers the docs promise (image 200 MB / 50 tasks, video 1 GB /
 * 10 tasks).
 */
#include "config.h"

/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

static void
test_example_loads(void **state)
{
    static kiln__config_t c;
    const kiln__pool_conf_t *image, *video;
    char err[1024] = "";

    (void)state;
    kiln__config_defaults(&c);
    if (kiln__config_load(&c, KILN_SOURCE_DIR "/examples/config/kiln.json", err, sizeof(err)) < 0)
        fail_msg("example config does not load: %s", err);
    image = kiln__config_pool(&c, "image");
    video = kiln__config_pool(&c, "video");
    assert_non_null(image);
    assert_non_null(video);
    assert_int_equal(image->memory_bytes, 200ull << 20);
    assert_int_equal(image->max_tasks_per_child, 50);
    assert_int_equal(video->memory_bytes, 1ull << 30);
    assert_int_equal(video->max_tasks_per_child, 10);
    assert_string_equal(kiln__config_alias(&c, "worker.bulk_email"), "email.send_bulk");
    assert_int_equal(c.nqueues, 3);
    assert_string_equal(c.queues[0], "urgent");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
