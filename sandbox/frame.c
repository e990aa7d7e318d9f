/*
 * frame.c -- encode, check and decode supervisor<->child frames.
 */
#include "frame.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void
kiln__frame_hdr_encode(const kiln__frame_hdr_t *h, unsigned char out[KILN__FRAME_HDR])
{
    memcpy(out, &h->type, 4);
    memcpy(out + 4, &h->len, 4);
    memcpy(out + 8, &h->task_id, 8);
}

void
kiln__frame_hdr_decode(const unsigned char in[KILN__FRAME_HDR], kiln__frame_hdr_t *h)
{
    memcpy(&h->type, in, 4);
    memcpy(&h->len, in + 4, 4);
    memcpy(&h->task_id, in + 8, 8);
}

const char *
kiln__frame_type_name(uint32_t type)
{
    switch (type) {
    case KILN__FRAME_TASK:
        return "TASK";
    case KILN__FRAME_QUIT:
        return "QUIT";
    case KILN__FRAME_HELLO:
        return "HELLO";
    case KILN__FRAME_INITFAIL:
        return "INITFAIL";
    case KILN__FRAME_RESULT:
        return "RESULT";
    case KILN__FRAME_FAIL:
        return "FAIL";
    case KILN__FRAME_RETRY:
        return "RETRY";
    case KILN__FRAME_PROGRESS:
        return "PROGRESS";
    case KILN__FRAME_LOG:
        return "LOG";
    case KILN__FRAME_SECCOMP:
        return "SECCOMP";
    case KILN__FRAME_READY:
        return "READY";
    default:
        return "UNKNOWN";
    }
}

/* Largest payload each type may carry; 0 means "no payload". */
static int
frame_limit(uint32_t type, int from_child, uint32_t *max)
{
    if (from_child) {
        switch (type) {
        case KILN__FRAME_HELLO:
            *max = 1u << 20;
            return 0;
        case KILN__FRAME_INITFAIL:
        case KILN__FRAME_FAIL:
        case KILN__FRAME_RETRY:
        case KILN__FRAME_PROGRESS:
        case KILN__FRAME_LOG:
            *max = 64u * 1024u;
            return 0;
        case KILN__FRAME_SECCOMP:
            *max = 256;
            return 0;
        case KILN__FRAME_RESULT:
            *max = KILN__FRAME_MAX;
            return 0;
        case KILN__FRAME_READY:
            *max = 0;
            return 0;
        default:
            return -1;
        }
    }
    switch (type) {
    case KILN__FRAME_TASK:
        *max = KILN__FRAME_MAX;
        return 0;
    case KILN__FRAME_QUIT:
        *max = 0;
        return 0;
    default:
        return -1;
    }
}

int
kiln__frame_check(const kiln__frame_hdr_t *h, int from_child, char *err, size_t errlen)
{
    uint32_t max;

    if (frame_limit(h->type, from_child, &max) < 0) {
        snprintf(err, errlen, "unknown frame type %u from the %s", h->type,
                 from_child ? "child" : "supervisor");
        return -EPROTO;
    }
    if (h->len > max) {
        snprintf(err, errlen, "%s frame claims %u bytes, above the cap of %u for that type",
                 kiln__frame_type_name(h->type), h->len, max);
        return -EPROTO;
    }
    return 0;
}

int
kiln__frame_send(int fd, uint32_t type, uint64_t task_id, const void *payload, size_t len,
                 const int *fds, int nfds)
{
    kiln__frame_hdr_t h = {type, (uint32_t)len, task_id};
    unsigned char hdr[KILN__FRAME_HDR];
    struct iovec iov[2];
    struct msghdr msg;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * KILN__FRAME_MAXFDS)];
    } ctl;
    size_t total = KILN__FRAME_HDR + len, sent = 0;

    if (len > KILN__FRAME_MAX || nfds < 0 || nfds > KILN__FRAME_MAXFDS)
        return -EMSGSIZE;
    kiln__frame_hdr_encode(&h, hdr);
    iov[0].iov_base = hdr;
    iov[0].iov_len = KILN__FRAME_HDR;
    iov[1].iov_base = (void *)payload;
    iov[1].iov_len = len;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = len ? 2 : 1;
    if (nfds > 0) {
        struct cmsghdr *c;
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    while (sent < total) {
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        sent += (size_t)n;
        /* Descriptors went with the first chunk; advance the iovecs. */
        msg.msg_control = NULL;
        msg.msg_controllen = 0;
        while (n > 0 && msg.msg_iovlen > 0) {
            size_t take = (size_t)n < msg.msg_iov->iov_len ? (size_t)n : msg.msg_iov->iov_len;
            msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + take;
            msg.msg_iov->iov_len -= take;
            n -= (ssize_t)take;
            if (msg.msg_iov->iov_len == 0) {
                msg.msg_iov++;
                msg.msg_iovlen--;
            }
        }
    }
    return 0;
}

/* Read exactly len bytes; the first read may carry descriptors. */
static int
read_full(int fd, void *buf, size_t len, int *fds, int *nfds)
{
    size_t have = 0;

    while (have < len) {
        struct iovec iov = {(char *)buf + have, len - have};
        struct msghdr msg;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * KILN__FRAME_MAXFDS)];
        } ctl;
        ssize_t n;

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (fds && nfds) {
            msg.msg_control = ctl.buf;
            msg.msg_controllen = sizeof(ctl.buf);
        }
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        if (fds && nfds) {
            struct cmsghdr *c;
            for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                    int got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                    int i;
                    for (i = 0; i < got; i++) {
                        int one;
                        memcpy(&one, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (*nfds < KILN__FRAME_MAXFDS)
                            fds[(*nfds)++] = one;
                        else
                            close(one);
                    }
                }
            }
        }
        have += (size_t)n;
    }
    return 0;
}

int
kiln__frame_recv(int fd, kiln__frame_hdr_t *h, char **payload, int *fds, int *nfds, char *err,
                 size_t errlen)
{
    unsigned char hdr[KILN__FRAME_HDR];
    char *p;
    int rc;

    *payload = NULL;
    if (nfds)
        *nfds = 0;
    rc = read_full(fd, hdr, sizeof(hdr), fds, nfds);
    if (rc < 0) {
        snprintf(err, errlen, "reading a frame header: %s", strerror(-rc));
        return rc;
    }
    kiln__frame_hdr_decode(hdr, h);
    rc = kiln__frame_check(h, 0, err, errlen);
    if (rc < 0)
        return rc;
    p = malloc((size_t)h->len + 1);
    if (!p) {
        snprintf(err, errlen, "cannot allocate %u bytes for a %s frame", h->len,
                 kiln__frame_type_name(h->type));
        return -ENOMEM;
    }
    rc = read_full(fd, p, h->len, fds, nfds);
    if (rc < 0) {
        free(p);
        snprintf(err, errlen, "reading a %u-byte %s payload: %s", h->len,
                 kiln__frame_type_name(h->type), strerror(-rc));
        return rc;
    }
    p[h->len] = '\0';
    *payload = p;
    return 0;
}

void
kiln__frame_reader_init(kiln__frame_reader_t *r)
{
    memset(r, 0, sizeof(*r));
}

void
kiln__frame_reader_reset(kiln__frame_reader_t *r)
{
    free(r->payload);
    r->payload = NULL;
    r->payload_have = 0;
    r->hdr_have = 0;
    memset(&r->cur, 0, sizeof(r->cur));
}

void
kiln__frame_reader_free(kiln__frame_reader_t *r)
{
    kiln__frame_reader_reset(r);
}

long
kiln__frame_reader_feed(kiln__frame_reader_t *r, const unsigned char *buf, size_t len,
                        int from_child, int *done, char *err, size_t errlen)
{
    size_t used = 0;

    *done = 0;
    if (r->failed) {
        snprintf(err, errlen, "stream already failed");
        return -EPROTO;
    }
    if (r->hdr_have < KILN__FRAME_HDR) {
        size_t take = KILN__FRAME_HDR - r->hdr_have;
        if (take > len)
            take = len;
        memcpy(r->hdr + r->hdr_have, buf, take);
        r->hdr_have += take;
        used += take;
        if (r->hdr_have < KILN__FRAME_HDR)
            return (long)used;
        kiln__frame_hdr_decode(r->hdr, &r->cur);
        if (kiln__frame_check(&r->cur, from_child, err, errlen) < 0) {
            r->failed = 1;
            return -EPROTO;
        }
        /* Bounded by kiln__frame_check() above. */
        r->payload = malloc((size_t)r->cur.len + 1);
        if (!r->payload) {
            r->failed = 1;
            snprintf(err, errlen, "cannot allocate %u bytes for a frame", r->cur.len);
            return -ENOMEM;
        }
        r->payload_have = 0;
    }
    if (r->payload_have < r->cur.len) {
        size_t take = r->cur.len - r->payload_have;
        if (take > len - used)
            take = len - used;
        memcpy(r->payload + r->payload_have, buf + used, take);
        r->payload_have += take;
        used += take;
    }
    if (r->payload_have == r->cur.len) {
        r->payload[r->cur.len] = '\0';
        *done = 1;
    }
    return (long)used;
}
