/*
 * frame.h -- the framed protocol between the supervisor and a child.
 *
 * A frame is a fixed 16-byte header (type, payload length, task id) plus a
 * payload of at most KILN__FRAME_MAX bytes (modelled on OpenBSD's imsg).
 * Payloads are JSON objects unless the type says otherwise.  Descriptors
 * travel with KILN__FRAME_TASK as SCM_RIGHTS ancillary data.
 *
 * The child is the hostile side: the supervisor checks every header with
 * kiln__frame_check() before it reads a payload, and a child that sends an
 * unknown type, a length above the cap or for its type, or bytes that do not
 * parse is killed and its task failed with that cause.
 */
#ifndef KILN_FRAME_H
#define KILN_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define KILN__FRAME_HDR    16
#define KILN__FRAME_MAX    (16u * 1024u * 1024u + 65536u) /* JSON payloads up to ~16 MB */
#define KILN__FRAME_MAXFDS 16                             /* descriptors per task */

enum kiln__frame_type {
    /* supervisor -> child */
    KILN__FRAME_TASK = 1, /* {"task","id","args","kwargs","files":[names],"soft","hard"} + fds */
    KILN__FRAME_QUIT = 2, /* no payload: run fini and exit */

    /* child -> supervisor */
    KILN__FRAME_HELLO = 16,    /* {"name","version","abi":[maj,min],"tasks":[..],"policy":{..}} */
    KILN__FRAME_INITFAIL = 17, /* {"type","message"}: jail or plugin init failed */
    KILN__FRAME_RESULT = 18,   /* {"result": any} */
    KILN__FRAME_FAIL = 19,     /* {"exc_type","exc_message"} */
    KILN__FRAME_RETRY = 20,    /* {"countdown","reason"} */
    KILN__FRAME_PROGRESS = 21, /* {"fraction","message"} */
    KILN__FRAME_LOG = 22,      /* {"level","message"} */
    KILN__FRAME_SECCOMP = 23,  /* {"nr": syscall number}: trapped, child exits */
    KILN__FRAME_READY = 24,    /* no payload: final filter applied, waiting for a task */
};

typedef struct kiln__frame_hdr {
    uint32_t type;
    uint32_t len;     /* payload bytes after the header */
    uint64_t task_id; /* supervisor-assigned sequence number; 0 when none */
} kiln__frame_hdr_t;

/* Encode a header into 16 bytes (host byte order: both ends are this host). */
void kiln__frame_hdr_encode(const kiln__frame_hdr_t *h, unsigned char out[KILN__FRAME_HDR]);
void kiln__frame_hdr_decode(const unsigned char in[KILN__FRAME_HDR], kiln__frame_hdr_t *h);

/* Check a header received from a child (or from the supervisor, in the
 * child): known type for that direction, length within the cap and within
 * what that type may carry.  0 or -EPROTO with a message naming the cause. */
int kiln__frame_check(const kiln__frame_hdr_t *h, int from_child, char *err, size_t errlen);

const char *kiln__frame_type_name(uint32_t type);

/* Blocking helpers used by the child (and by tests): send one frame with
 * optional descriptors; receive one frame into a malloc'd payload (NUL
 * terminated for convenience) plus any descriptors.  Return 0, -EPIPE on EOF,
 * or a negative errno. */
int kiln__frame_send(int fd, uint32_t type, uint64_t task_id, const void *payload, size_t len,
                     const int *fds, int nfds);
int kiln__frame_recv(int fd, kiln__frame_hdr_t *h, char **payload, int *fds, int *nfds, char *err,
                     size_t errlen);

/* Incremental decoder for the supervisor's non-blocking reads: feed bytes,
 * pull complete frames.  Holds at most one frame (header + capped payload). */
typedef struct kiln__frame_reader {
    unsigned char hdr[KILN__FRAME_HDR];
    size_t hdr_have;
    kiln__frame_hdr_t cur;
    char *payload; /* malloc'd once the header checks out */
    size_t payload_have;
    int failed; /* set once a bad header was seen: the stream is dead */
} kiln__frame_reader_t;

void kiln__frame_reader_init(kiln__frame_reader_t *r);
void kiln__frame_reader_free(kiln__frame_reader_t *r);
/* Consume bytes from buf.  Returns bytes consumed (>= 0); *done is set when a
 * whole frame is ready in r->cur/r->payload (NUL terminated; the caller takes
 * the payload and calls kiln__frame_reader_reset()).  Returns -EPROTO with a
 * message when the header fails kiln__frame_check(). */
long kiln__frame_reader_feed(kiln__frame_reader_t *r, const unsigned char *buf, size_t len,
                             int from_child, int *done, char *err, size_t errlen);
void kiln__frame_reader_reset(kiln__frame_reader_t *r);

#endif /* KILN_FRAME_H */
