/*
 * test_frame.c -- the frame codec against well-formed and hostile bytes.
 */
#include "frame.h"

/* cmocka.h needs these first. */
/* clang-format off */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
/* clang-format on */

static void
encode(uint32_t type, uint32_t len, uint64_t id, unsigned char out[KILN__FRAME_HDR])
{
    kiln__frame_hdr_t h = {type, len, id};
    kiln__frame_hdr_encode(&h, out);
}

static void
test_roundtrip_in_chunks(void **state)
{
    unsigned char buf[KILN__FRAME_HDR + 5];
    kiln__frame_reader_t r;
    char err[256];
    size_t off = 0;
    int done = 0;

    (void)state;
    encode(KILN__FRAME_RESULT, 5, 42, buf);
    memcpy(buf + KILN__FRAME_HDR, "{\"a\"}", 5);
    kiln__frame_reader_init(&r);
    /* One byte at a time: the reader must reassemble. */
    while (off < sizeof(buf)) {
        long used = kiln__frame_reader_feed(&r, buf + off, 1, 1, &done, err, sizeof(err));
        assert_int_equal(used, 1);
        off++;
        if (off < sizeof(buf))
            assert_int_equal(done, 0);
    }
    assert_int_equal(done, 1);
    assert_int_equal(r.cur.type, KILN__FRAME_RESULT);
    assert_int_equal(r.cur.task_id, 42);
    assert_string_equal(r.payload, "{\"a\"}");
    kiln__frame_reader_free(&r);
}

static void
test_unknown_type_names_cause(void **state)
{
    unsigned char buf[KILN__FRAME_HDR];
    kiln__frame_reader_t r;
    char err[256];
    int done;

    (void)state;
    encode(999, 0, 0, buf);
    kiln__frame_reader_init(&r);
    assert_int_equal(kiln__frame_reader_feed(&r, buf, sizeof(buf), 1, &done, err, sizeof(err)),
                     -EPROTO);
    assert_non_null(strstr(err, "unknown frame type 999"));
    /* The stream stays dead. */
    assert_int_equal(kiln__frame_reader_feed(&r, buf, 1, 1, &done, err, sizeof(err)), -EPROTO);
    kiln__frame_reader_free(&r);
}

static void
test_oversized_frame_refused_before_allocation(void **state)
{
    unsigned char buf[KILN__FRAME_HDR];
    kiln__frame_reader_t r;
    char err[256];
    int done;

    (void)state;
    encode(KILN__FRAME_RESULT, 1u << 30, 1, buf);
    kiln__frame_reader_init(&r);
    assert_int_equal(kiln__frame_reader_feed(&r, buf, sizeof(buf), 1, &done, err, sizeof(err)),
                     -EPROTO);
    assert_non_null(strstr(err, "claims 1073741824 bytes"));
    assert_null(r.payload);
    kiln__frame_reader_free(&r);
}

static void
test_per_type_caps(void **state)
{
    kiln__frame_hdr_t h;
    char err[256];

    (void)state;
    h = (kiln__frame_hdr_t){KILN__FRAME_READY, 1, 0};
    assert_int_equal(kiln__frame_check(&h, 1, err, sizeof(err)), -EPROTO);
    h = (kiln__frame_hdr_t){KILN__FRAME_LOG, 70000, 0};
    assert_int_equal(kiln__frame_check(&h, 1, err, sizeof(err)), -EPROTO);
    h = (kiln__frame_hdr_t){KILN__FRAME_LOG, 100, 0};
    assert_int_equal(kiln__frame_check(&h, 1, err, sizeof(err)), 0);
    /* A child may not send supervisor frames, nor the other way round. */
    h = (kiln__frame_hdr_t){KILN__FRAME_TASK, 10, 0};
    assert_int_equal(kiln__frame_check(&h, 1, err, sizeof(err)), -EPROTO);
    h = (kiln__frame_hdr_t){KILN__FRAME_RESULT, 10, 0};
    assert_int_equal(kiln__frame_check(&h, 0, err, sizeof(err)), -EPROTO);
}

static void
test_send_recv_with_descriptors(void **state)
{
    int sv[2], pv[2], fds[KILN__FRAME_MAXFDS], nfds = 0;
    kiln__frame_hdr_t h;
    char *payload = NULL, err[256], c = 0;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(pipe(pv), 0);
    assert_int_equal(kiln__frame_send(sv[0], KILN__FRAME_TASK, 7, "{}", 2, &pv[0], 1), 0);
    assert_int_equal(kiln__frame_recv(sv[1], &h, &payload, fds, &nfds, err, sizeof(err)), 0);
    assert_int_equal(h.type, KILN__FRAME_TASK);
    assert_int_equal(h.task_id, 7);
    assert_string_equal(payload, "{}");
    assert_int_equal(nfds, 1);
    assert_int_equal(write(pv[1], "x", 1), 1);
    assert_int_equal(read(fds[0], &c, 1), 1);
    assert_int_equal(c, 'x');
    free(payload);
    close(fds[0]);
    /* EOF mid-header is -EPIPE, with a message. */
    assert_int_equal(write(sv[0], "abc", 3), 3);
    close(sv[0]);
    assert_int_equal(kiln__frame_recv(sv[1], &h, &payload, NULL, NULL, err, sizeof(err)), -EPIPE);
    assert_non_null(strstr(err, "frame header"));
    close(sv[1]);
    close(pv[0]);
    close(pv[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_in_chunks),
        cmocka_unit_test(test_unknown_type_names_cause),
        cmocka_unit_test(test_oversized_frame_refused_before_allocation),
        cmocka_unit_test(test_per_type_caps),
        cmocka_unit_test(test_send_recv_with_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
