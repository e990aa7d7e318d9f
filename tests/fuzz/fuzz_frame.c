/*
 * fuzz_frame -- the supervisor's incremental frame reader against arbitrary
 * bytes from a child, fed in chunks of random size.
 *
 * Input: byte 0 = flags (bit 0: bytes come from the child, else from the
 * supervisor; bit 1: the caller takes the payload instead of letting reset
 * free it), bytes 1-4 = seed for the chunk sizes, the rest = the stream.
 *
 * Checks, beyond ASan/UBSan: the reader never consumes more than it was
 * given; short of a whole frame it consumes the whole chunk; every frame it
 * returns is exactly the bytes that were fed, passes kiln__frame_check() and
 * is NUL terminated; a refused header leaves the stream failed with a message.
 */
#include "frame.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint32_t
next_rand(uint32_t *s)
{
    /* xorshift32: deterministic for a given input, so crashes reproduce. */
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static size_t
chunk_size(uint32_t *s, size_t left)
{
    uint32_t r = next_rand(s);
    size_t n;

    switch (r & 3) {
    case 0:
        n = 1;
        break;
    case 1:
        n = 1 + (r >> 2) % KILN__FRAME_HDR;
        break;
    case 2:
        n = 1 + (r >> 2) % 512;
        break;
    default:
        n = left;
        break;
    }
    return n < left ? n : left;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln__frame_reader_t r;
    char err[256];
    size_t pos, frame_start;
    uint32_t seed;
    int from_child, take;

    if (size < 5)
        return 0;
    from_child = data[0] & 1;
    take = (data[0] >> 1) & 1;
    memcpy(&seed, data + 1, 4);
    seed |= 1; /* xorshift must not start at 0 */
    data += 5;
    size -= 5;

    kiln__frame_reader_init(&r);
    pos = 0;
    frame_start = 0;
    while (pos < size) {
        size_t n = chunk_size(&seed, size - pos);
        int done = 0;
        long used;

        err[0] = '\0';
        used = kiln__frame_reader_feed(&r, data + pos, n, from_child, &done, err, sizeof(err));
        if (used < 0) {
            kiln__frame_hdr_t h;
            CHECK(used == -EPROTO || used == -ENOMEM);
            CHECK(r.failed);
            CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
            /* The refused header is the one at frame_start. */
            CHECK(size - frame_start >= KILN__FRAME_HDR);
            kiln__frame_hdr_decode(data + frame_start, &h);
            if (used == -EPROTO)
                CHECK(kiln__frame_check(&h, from_child, err, sizeof(err)) < 0);
            /* A failed stream stays failed. */
            CHECK(kiln__frame_reader_feed(&r, data, size, from_child, &done, err, sizeof(err)) ==
                  -EPROTO);
            CHECK(!done);
            break;
        }
        CHECK((size_t)used <= n);
        pos += (size_t)used;
        if (!done) {
            CHECK((size_t)used == n);
            continue;
        }
        /* A whole frame: exactly the bytes fed, within its type's limit. */
        {
            kiln__frame_hdr_t h;
            CHECK(r.payload != NULL);
            CHECK(r.payload_have == r.cur.len);
            CHECK(pos - frame_start == KILN__FRAME_HDR + (size_t)r.cur.len);
            kiln__frame_hdr_decode(data + frame_start, &h);
            CHECK(h.type == r.cur.type && h.len == r.cur.len && h.task_id == r.cur.task_id);
            CHECK(kiln__frame_check(&r.cur, from_child, err, sizeof(err)) == 0);
            CHECK(memcmp(r.payload, data + frame_start + KILN__FRAME_HDR, r.cur.len) == 0);
            CHECK(r.payload[r.cur.len] == '\0');
        }
        if (take) {
            char *p = r.payload;
            r.payload = NULL;
            free(p);
        }
        kiln__frame_reader_reset(&r);
        frame_start = pos;
    }
    kiln__frame_reader_free(&r);
    return 0;
}
