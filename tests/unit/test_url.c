/*
 * test_url.c -- Redis URLs as Celery, kombu and redis-py write them, and the
 * malformed ones, each refused with a message naming the part that is wrong.
 */
#include "config.h"

/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */
#include <errno.h>
#include <stdio.h>
#include <string.h>

static kiln__redis_url_t u;
static char err[1024];

static int
parse(const char *url)
{
    err[0] = '\0';
    return kiln__redis_url_parse(url, &u, err, sizeof(err));
}

/* The URL is refused with -EINVAL and a message holding `want`. */
static void
refused(const char *url, const char *want)
{
    int rc = parse(url);
    if (rc != -EINVAL || !strstr(err, want))
        fail_msg("URL \"%s\": rc %d, message \"%s\"; wanted -EINVAL and \"%s\"", url, rc, err,
                 want);
    if (!strstr(err, "broker URL"))
        fail_msg("URL \"%s\": message \"%s\" does not say it is about the broker URL", url, err);
}

static void
test_tcp(void **state)
{
    (void)state;
    assert_int_equal(parse("redis://localhost:6380/2"), 0);
    assert_int_equal(u.unix_socket, 0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");

    assert_int_equal(parse("redis://"), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);

    assert_int_equal(parse("redis://redis.example.com/"), 0);
    assert_string_equal(u.host, "redis.example.com");
    assert_int_equal(u.port, 6379);

    assert_int_equal(parse("REDIS://10.0.0.1:1"), 0);
    assert_string_equal(u.host, "10.0.0.1");
    assert_int_equal(u.port, 1);

    assert_int_equal(parse("redis://[::1]:7000/1"), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 1);

    assert_int_equal(parse("redis://h:65535/65535"), 0);
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.db, 65535);
}

static void
test_userinfo(void **state)
{
    (void)state;
    /* Celery's usual form: no user, a password */
    assert_int_equal(parse("redis://:secret@redis:6379/0"), 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "secret");
    assert_string_equal(u.host, "redis");

    /* ACL user, %-escapes, an '@' in the password (the last '@' ends it) */
    assert_int_equal(parse("redis://alice:s%40cr%2Fet@h:1/3"), 0);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "s@cr/et");
    assert_int_equal(parse("redis://bob:p@ss@h"), 0);
    assert_string_equal(u.user, "bob");
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.host, "h");

    /* A user without a password (the password then comes from elsewhere) */
    assert_int_equal(parse("redis://alice@h"), 0);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "");
}

static void
test_sockets(void **state)
{
    (void)state;
    assert_int_equal(parse("redis+socket:///run/kiln/redis.sock"), 0);
    assert_int_equal(u.unix_socket, 1);
    assert_string_equal(u.path, "/run/kiln/redis.sock");
    assert_int_equal(u.db, 0);

    assert_int_equal(parse("redis+socket:///tmp/r.sock?virtual_host=3"), 0);
    assert_int_equal(u.db, 3);
    /* kombu also accepts "/N" and an empty virtual host */
    assert_int_equal(parse("redis+socket:///tmp/r.sock?virtual_host=/4"), 0);
    assert_int_equal(u.db, 4);
    assert_int_equal(parse("redis+socket:///tmp/r.sock?virtual_host=/"), 0);
    assert_int_equal(u.db, 0);

    assert_int_equal(parse("unix:///tmp/r.sock?db=5"), 0);
    assert_int_equal(u.unix_socket, 1);
    assert_string_equal(u.path, "/tmp/r.sock");
    assert_int_equal(u.db, 5);

    assert_int_equal(parse("unix://alice:pw@/tmp/my%20dir/r.sock"), 0);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.path, "/tmp/my dir/r.sock");
}

static void
test_bad_scheme(void **state)
{
    (void)state;
    refused("", "empty");
    refused(NULL, "empty");
    refused("localhost:6379", "no scheme");
    refused("amqp://guest@localhost//", "unsupported scheme \"amqp\"");
    refused("sentinel://h:26379", "unsupported scheme");
    refused("rediss://h:6380/0", "TLS");
    refused("rediss://h:6380/0", "not supported");
}

static void
test_bad_port(void **state)
{
    (void)state;
    refused("redis://h:0/0", "port \"0\" is not a number from 1 to 65535");
    refused("redis://h:65536", "port \"65536\"");
    refused("redis://h:abc/1", "port \"abc\"");
    refused("redis://h:/1", "port \"\"");
    refused("redis://h:-1", "port \"-1\"");
    refused("redis://[::1]x", "after the IPv6 address");
    refused("redis://[::1", "closing ']'");
    refused("redis://[]:1", "empty");
    refused("redis://h$t:1", "host name has a character '$'");
}

static void
test_bad_db(void **state)
{
    (void)state;
    refused("redis://h:1/65536", "database \"65536\" is not a database number from 0 to 65535");
    refused("redis://h/-1", "database \"-1\"");
    refused("redis://h/x", "database \"x\"");
    refused("redis://h/1/2", "database \"1/2\"");
    refused("redis://h/99999999999", "database \"99999999999\"");
    refused("redis://h?db=1", "query parameter \"db\" is not supported in a redis:// URL");
}

static void
test_bad_socket(void **state)
{
    char longurl[300];

    (void)state;
    refused("redis+socket://", "missing socket path");
    refused("redis+socket:///", "missing socket path");
    refused("unix://", "missing socket path");
    refused("redis+socket://?virtual_host=1", "missing socket path");
    refused("redis+socket://localhost/tmp/r.sock", "has no host (found \"localhost\")");
    refused("redis+socket:///tmp/r.sock?virtual_host=abc",
            "virtual_host \"abc\" is not a database number");
    refused("redis+socket:///tmp/r.sock?virtual_host=99999", "virtual_host \"99999\"");
    refused("unix:///tmp/r.sock?db=x", "db \"x\"");
    refused("redis+socket:///tmp/r.sock?virtual_host=1&db=2", "given twice");
    refused("redis+socket:///tmp/r.sock?password=x",
            "query parameter \"password\" is not supported");
    snprintf(longurl, sizeof(longurl), "unix:///tmp/%0120d.sock", 0);
    refused(longurl, "longer than the 107 bytes a unix socket address holds");
    refused("unix:///tmp/a%zz.sock", "socket path has a bad %-escape");
}

static void
test_bad_userinfo_never_echoes_the_password(void **state)
{
    (void)state;
    refused("redis://:s3cr%zzet@h", "password has a bad %-escape");
    assert_null(strstr(err, "s3cr"));
    refused("redis://:s3cr%00et@h", "password has a bad %-escape");
    refused("redis://:s3cr/et@h", "write '/' as %2F");
    assert_null(strstr(err, "s3cr"));
    refused("redis://:s3cr?et@h", "'?' as %3F");
    assert_null(strstr(err, "s3cr"));
    refused("redis://:s3cr#et@h", "fragment");
    assert_null(strstr(err, "s3cr"));
    refused("redis://:s3cr et@h", "space or control character");
    refused("redis+socket://:s3cr/et@/tmp/r.sock", "%2F");
    assert_null(strstr(err, "s3cr"));
}

static void
test_long_parts(void **state)
{
    char url[2048];

    (void)state;
    snprintf(url, sizeof(url), "redis://:%0600d@h", 0);
    refused(url, "password is longer than 511 bytes");
    assert_null(strstr(err, "000000"));
    snprintf(url, sizeof(url), "redis://%0200d:x@h", 0);
    refused(url, "user name is longer than 127 bytes");
    snprintf(url, sizeof(url), "redis://%0300d", 0);
    refused(url, "host name is longer than 255 bytes");
}

static void
test_format(void **state)
{
    char buf[1200];
    kiln__redis_url_t back;

    (void)state;
    assert_int_equal(parse("redis://alice:p%40ss%2Fw@h:6380/2"), 0);
    assert_string_equal(kiln__redis_url_format(&u, 0, buf, sizeof(buf)),
                        "redis://alice:***@h:6380/2");
    kiln__redis_url_format(&u, 1, buf, sizeof(buf));
    assert_string_equal(buf, "redis://alice:p%40ss%2Fw@h:6380/2");
    assert_int_equal(kiln__redis_url_parse(buf, &back, err, sizeof(err)), 0);
    assert_memory_equal(&back, &u, sizeof(u));

    assert_int_equal(parse("redis://"), 0);
    assert_string_equal(kiln__redis_url_format(&u, 0, buf, sizeof(buf)),
                        "redis://127.0.0.1:6379/0");

    assert_int_equal(parse("redis://[::1]:7000/1"), 0);
    assert_string_equal(kiln__redis_url_format(&u, 0, buf, sizeof(buf)), "redis://[::1]:7000/1");

    assert_int_equal(parse("unix:///tmp/my%20dir/r.sock?db=3"), 0);
    assert_string_equal(kiln__redis_url_format(&u, 0, buf, sizeof(buf)),
                        "redis+socket:///tmp/my%20dir/r.sock?virtual_host=3");
    assert_int_equal(kiln__redis_url_parse(buf, &back, err, sizeof(err)), 0);
    assert_memory_equal(&back, &u, sizeof(u));

    assert_int_equal(parse("redis+socket://:pw@/run/kiln/redis.sock"), 0);
    assert_string_equal(kiln__redis_url_format(&u, 0, buf, sizeof(buf)),
                        "redis+socket://:***@/run/kiln/redis.sock");

    /* a short buffer is cut, never overrun */
    kiln__redis_url_format(&u, 0, buf, 8);
    assert_string_equal(buf, "redis+s");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_userinfo),
        cmocka_unit_test(test_sockets),
        cmocka_unit_test(test_bad_scheme),
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_bad_db),
        cmocka_unit_test(test_bad_socket),
        cmocka_unit_test(test_bad_userinfo_never_echoes_the_password),
        cmocka_unit_test(test_long_parts),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
