/*
 * io.c -- AVIOContext over a descriptor the runtime handed in.
 *
 * Handlers cannot open files (the final seccomp filter answers EACCES), so
 * avformat reads and writes through these callbacks instead of its file
 * protocol.  Each context keeps its own offset and uses pread/pwrite, so a
 * descriptor shared with another task (kiln run --batch duplicates one
 * descriptor for every task) is read from the start every time.  A pipe falls
 * back to read/write and is not seekable (MP4 output then fails: the muxer
 * needs to seek back to write the moov box).
 */
#include "video.h"

#include <errno.h>
#include <libavutil/mem.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_BUFFER (64 * 1024)

typedef struct io_fd {
    int fd;
    int seekable;
    int64_t pos;  /* our offset */
    int64_t high; /* largest offset written */
} io_fd_t;

static int
io_read(void *opaque, uint8_t *buf, int n)
{
    io_fd_t *f = opaque;
    ssize_t r;

    do
        r = f->seekable ? pread(f->fd, buf, (size_t)n, (off_t)f->pos) : read(f->fd, buf, (size_t)n);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return AVERROR(errno);
    if (r == 0)
        return AVERROR_EOF;
    f->pos += r;
    return (int)r;
}

static int
io_write(void *opaque, uint8_t *buf, int n)
{
    io_fd_t *f = opaque;
    int done = 0;

    while (done < n) {
        ssize_t r = f->seekable ? pwrite(f->fd, buf + done, (size_t)(n - done), (off_t)f->pos)
                                : write(f->fd, buf + done, (size_t)(n - done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return AVERROR(errno);
        if (r == 0)
            return AVERROR(EIO);
        done += (int)r;
        f->pos += r;
    }
    if (f->pos > f->high)
        f->high = f->pos;
    return n;
}

static int64_t
io_seek(void *opaque, int64_t offset, int whence)
{
    io_fd_t *f = opaque;
    struct stat st;
    int64_t to;

    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE || whence == SEEK_END) {
        if (fstat(f->fd, &st) < 0)
            return AVERROR(errno);
        if (!S_ISREG(st.st_mode))
            return AVERROR(ENOSYS);
        if (whence == AVSEEK_SIZE)
            return (int64_t)st.st_size;
        to = (int64_t)st.st_size + offset;
    } else if (whence == SEEK_SET) {
        to = offset;
    } else if (whence == SEEK_CUR) {
        to = f->pos + offset;
    } else {
        return AVERROR(EINVAL);
    }
    if (to < 0)
        return AVERROR(EINVAL);
    f->pos = to;
    return to;
}

AVIOContext *
video__io_open(int fd, int write)
{
    io_fd_t *f = av_mallocz(sizeof(*f));
    unsigned char *buf = av_malloc(IO_BUFFER);
    AVIOContext *pb;

    if (!f || !buf) {
        av_free(f);
        av_free(buf);
        return NULL;
    }
    f->fd = fd;
    f->seekable = lseek(fd, 0, SEEK_CUR) >= 0;
    pb = avio_alloc_context(buf, IO_BUFFER, write, f, write ? NULL : io_read,
                            write ? io_write : NULL, f->seekable ? io_seek : NULL);
    if (!pb) {
        av_free(f);
        av_free(buf);
        return NULL;
    }
    return pb;
}

int64_t
video__io_size(AVIOContext *pb)
{
    return pb ? ((io_fd_t *)pb->opaque)->high : 0;
}

void
video__io_close(AVIOContext **pb)
{
    if (!*pb)
        return;
    av_freep(&(*pb)->opaque);
    av_freep(&(*pb)->buffer);
    avio_context_free(pb);
}

int
video__io_write_file(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t r = pwrite(fd, p + done, len - done, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == ESPIPE) /* a pipe: plain writes */
            r = write(fd, p + done, len - done);
        if (r < 0)
            return AVERROR(errno);
        if (r == 0)
            return AVERROR(EIO);
        done += (size_t)r;
    }
    if (ftruncate(fd, (off_t)len) < 0 && errno != EINVAL)
        return AVERROR(errno);
    return 0;
}
