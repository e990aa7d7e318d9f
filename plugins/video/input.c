/*
 * input.c -- opening the task's input: container, streams, limits, decoder.
 *
 * The input arrives as a descriptor (io.c).  Before FFmpeg parses anything
 * beyond the probe, the detected container must be one of the formats
 * below: demuxers for playlists and references (hls, concat, dash...) and for
 * text or images that merely look like media stay out, and no demuxer may
 * open another resource (io_open refuses).  avformat_find_stream_info() reads
 * at most probe_size bytes / analyze_duration seconds, and the decoders it
 * opens refuse frames above max_pixels, so a hostile header cannot make it
 * read gigabytes or allocate a giant frame.
 */
#include "video.h"

#include <errno.h>
#include <libavutil/imgutils.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_STREAMS        64         /* streams a container may declare */
#define MAX_DECODE_ERRORS  50         /* consecutive undecodable packets before giving up */
#define PROBE_BUFFER_LIMIT (1 << 20)  /* bytes for detecting the container */
#define TRUNCATION_SLACK   1.0        /* seconds of video that may be missing at the end */
#define MIN_PACKET_LIMIT   (16 << 20) /* bytes a sample may hold, whatever max_pixels says */

/* Demuxer names (any of a demuxer's comma-separated names matches). */
static const char *const containers[] = {
    "mov", "mp4", "matroska", "webm", "avi", "mpegts", "mpeg", "flv",  "ogg", "asf",
    "mxf", "nut", "ivf",      "gif",  "wav", "mp3",    "aac",  "flac", NULL,
};

int
video__fail(video_err_t *e, const char *type, const char *fmt, ...)
{
    va_list ap;

    e->type = type;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

int
video__fail_av(video_err_t *e, const char *type, int averr, const char *fmt, ...)
{
    char why[AV_ERROR_MAX_STRING_SIZE], logged[400];
    size_t n;
    va_list ap;

    e->type = type;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    if (av_strerror(averr, why, sizeof(why)) < 0)
        snprintf(why, sizeof(why), "error %d", averr);
    n = strlen(e->msg);
    snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", why);
    video__log_last(logged, sizeof(logged));
    n = strlen(e->msg);
    if (logged[0])
        snprintf(e->msg + n, sizeof(e->msg) - n, " (%s)", logged);
    return -1;
}

static int
container_allowed(const char *name)
{
    char copy[128], *tok, *save = NULL;
    size_t i;

    snprintf(copy, sizeof(copy), "%s", name);
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        for (i = 0; containers[i]; i++)
            if (strcmp(tok, containers[i]) == 0)
                return 1;
    return 0;
}

/* Demuxers must not open anything: no references, playlists or sidecars. */
static int
refuse_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
            AVDictionary **options)
{
    av_log(s, AV_LOG_ERROR, "refused to open \"%.100s\": the input must be self-contained\n", url);
    return AVERROR(EPERM);
}

static const char *
type_name(enum AVMediaType t)
{
    const char *s = av_get_media_type_string(t);
    return s ? s : "unknown";
}

/* av_read_frame() allocates what a container's index says a sample holds
 * and reads it; a sparse file whose index claims gigabyte samples would
 * fill memory with zeros.  Indexed containers (MP4, MKV with cues, AVI)
 * state every sample's size up front: check them all before reading.  A
 * frame of max_pixels takes at most 4 bytes a pixel even uncompressed. */
static int
check_index(video_input_t *in, video_err_t *e)
{
    int64_t limit = in->lim->max_pixels * 4;
    unsigned i;

    if (limit < MIN_PACKET_LIMIT)
        limit = MIN_PACKET_LIMIT;
    for (i = 0; i < in->fmt->nb_streams; i++) {
        AVStream *st = in->fmt->streams[i];
        int n = avformat_index_get_entries_count(st), k;
        for (k = 0; k < n; k++) {
            const AVIndexEntry *ie = avformat_index_get_entry(st, k);
            /* size is a signed 30-bit field: 512 MiB and up read negative */
            int64_t size = ie ? (ie->size < 0 ? ie->size + (1 << 30) : ie->size) : 0;
            if (size > limit)
                return video__fail(e, VIDEO_ERROR,
                                   "%s: its index says sample %d of stream %u holds %lld bytes, "
                                   "more than a frame of max_pixels %lld can need (%lld)",
                                   in->label, k, i, (long long)size, (long long)in->lim->max_pixels,
                                   (long long)limit);
        }
    }
    return 0;
}

int
video__input_open(video_input_t *in, kiln_ctx_t *ctx, const video_limits_t *lim, video_err_t *e)
{
    const char *path = video__kw_path(ctx, "files", "input");
    const AVInputFormat *ifmt = NULL;
    AVDictionary **opts = NULL;
    struct stat st;
    unsigned probe;
    unsigned i, nb;
    int fd, rc;

    memset(in, 0, sizeof(*in));
    in->vindex = in->aindex = -1;
    in->lim = lim;
    if (path)
        snprintf(in->label, sizeof(in->label), "input \"%.250s\"", path);
    else
        snprintf(in->label, sizeof(in->label), "input");
    fd = kiln_file(ctx, "input");
    if (fd < 0)
        return video__fail(e, VIDEO_VALUE_ERROR,
                           "no input file: name it in kwargs files.input (kiln run: --file "
                           "input=PATH)");
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0)
        return video__fail(e, VIDEO_ERROR, "%s is empty (0 bytes)", in->label);
    in->pb = video__io_open(fd, 0);
    in->fmt = avformat_alloc_context();
    if (!in->pb || !in->fmt)
        return video__fail(e, VIDEO_ERROR, "%s: out of memory opening it", in->label);

    probe = lim->probe_size < PROBE_BUFFER_LIMIT ? (unsigned)lim->probe_size : PROBE_BUFFER_LIMIT;
    rc = av_probe_input_buffer2(in->pb, &ifmt, NULL, NULL, 0, probe);
    if (rc == AVERROR_EOF)
        return video__fail(e, VIDEO_ERROR, "%s ends before its container can be recognised",
                           in->label);
    if (rc < 0 || !ifmt)
        return video__fail_av(e, VIDEO_ERROR, rc < 0 ? rc : AVERROR_INVALIDDATA,
                              "%s is not a media file FFmpeg recognises", in->label);
    if (!container_allowed(ifmt->name))
        return video__fail(e, VIDEO_ERROR,
                           "%s looks like %s (%s), not a video container this plugin reads",
                           in->label, ifmt->name, ifmt->long_name ? ifmt->long_name : "?");

    in->fmt->pb = in->pb;
    in->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    in->fmt->io_open = refuse_open;
    in->fmt->probesize = lim->probe_size;
    in->fmt->max_analyze_duration = (int64_t)(lim->analyze_duration * AV_TIME_BASE);
    in->fmt->max_streams = MAX_STREAMS;
    rc = avformat_open_input(&in->fmt, NULL, ifmt, NULL);
    if (rc < 0) /* in->fmt is freed and NULL; in->pb is ours */
        return video__fail_av(e, VIDEO_ERROR, rc, "%s cannot be read as %s", in->label, ifmt->name);
    if (check_index(in, e) < 0)
        return -1;

    /* The decoders avformat_find_stream_info() opens: one thread, and no
     * frame above max_pixels. */
    nb = in->fmt->nb_streams;
    if (nb > 0) {
        opts = av_calloc(nb, sizeof(AVDictionary *));
        if (!opts)
            return video__fail(e, VIDEO_ERROR, "%s: out of memory", in->label);
        for (i = 0; i < nb; i++) {
            av_dict_set(&opts[i], "threads", "1", 0);
            av_dict_set_int(&opts[i], "max_pixels", lim->max_pixels, 0);
        }
    }
    rc = avformat_find_stream_info(in->fmt, opts);
    for (i = 0; i < nb; i++)
        av_dict_free(&opts[i]);
    av_freep(&opts);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "%s: cannot find its streams", in->label);

    if (in->fmt->duration != AV_NOPTS_VALUE && in->fmt->duration > 0)
        in->duration = (double)in->fmt->duration / AV_TIME_BASE;
    if (in->fmt->start_time != AV_NOPTS_VALUE)
        in->start = in->fmt->start_time;

    rc = av_find_best_stream(in->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (rc >= 0 && (in->fmt->streams[rc]->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
        rc = -1; /* cover art is not the video; look for a real one */
        for (i = 0; i < in->fmt->nb_streams; i++) {
            const AVStream *s = in->fmt->streams[i];
            if (s->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
                !(s->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
                rc = (int)i;
                break;
            }
        }
    }
    in->vindex = rc >= 0 ? rc : -1;
    rc = av_find_best_stream(in->fmt, AVMEDIA_TYPE_AUDIO, -1, in->vindex, NULL, 0);
    in->aindex = rc >= 0 ? rc : -1;
    if (in->vindex >= 0) {
        const AVStream *s = in->fmt->streams[in->vindex];
        if (s->duration != AV_NOPTS_VALUE && s->duration > 0)
            in->vduration = (double)s->duration * av_q2d(s->time_base);
        if (in->duration == 0)
            in->duration = in->vduration;
    }
    return 0;
}

int
video__input_check(video_input_t *in, video_err_t *e)
{
    const video_limits_t *lim = in->lim;
    const AVCodecParameters *par;

    if (in->vindex < 0) {
        char kinds[200] = "";
        size_t n = 0;
        unsigned i;
        for (i = 0; i < in->fmt->nb_streams && n < sizeof(kinds) - 40; i++) {
            const AVCodecParameters *p = in->fmt->streams[i]->codecpar;
            int k = snprintf(kinds + n, sizeof(kinds) - n, "%s%s %s", i ? ", " : "",
                             type_name(p->codec_type), avcodec_get_name(p->codec_id));
            if (k > 0)
                n += (size_t)k;
        }
        return video__fail(e, VIDEO_ERROR, "%s has no video stream (%s)", in->label,
                           in->fmt->nb_streams ? kinds : "no streams at all");
    }
    par = in->fmt->streams[in->vindex]->codecpar;
    if (in->duration > lim->max_duration)
        return video__fail(e, VIDEO_LIMIT_ERROR, "%s lasts %.1f s, above max_duration %g s",
                           in->label, in->duration, lim->max_duration);
    if (par->codec_id == AV_CODEC_ID_NONE)
        return video__fail(e, VIDEO_ERROR, "%s: its video stream has an unknown codec", in->label);
    if (par->width <= 0 || par->height <= 0)
        return video__fail(e, VIDEO_ERROR,
                           "%s: its %s video stream has no frame size (no frame could be "
                           "decoded within probe_size %lld bytes)",
                           in->label, avcodec_get_name(par->codec_id), (long long)lim->probe_size);
    if (par->width > lim->max_width)
        return video__fail(e, VIDEO_LIMIT_ERROR, "%s is %dx%d pixels, wider than max_width %lld",
                           in->label, par->width, par->height, (long long)lim->max_width);
    if (par->height > lim->max_height)
        return video__fail(e, VIDEO_LIMIT_ERROR, "%s is %dx%d pixels, taller than max_height %lld",
                           in->label, par->width, par->height, (long long)lim->max_height);
    if ((int64_t)par->width * par->height > lim->max_pixels)
        return video__fail(e, VIDEO_LIMIT_ERROR,
                           "%s is %dx%d pixels, %lld per frame, above max_pixels %lld", in->label,
                           par->width, par->height, (long long)par->width * par->height,
                           (long long)lim->max_pixels);
    return 0;
}

int
video__input_open_decoder(video_input_t *in, video_err_t *e)
{
    const AVStream *st = in->fmt->streams[in->vindex];
    const AVCodec *dec = avcodec_find_decoder(st->codecpar->codec_id);
    int rc;

    if (!dec)
        return video__fail(e, VIDEO_ERROR, "%s: no decoder for its %s video", in->label,
                           avcodec_get_name(st->codecpar->codec_id));
    in->vdec = avcodec_alloc_context3(dec);
    if (!in->vdec)
        return video__fail(e, VIDEO_ERROR, "%s: out of memory", in->label);
    rc = avcodec_parameters_to_context(in->vdec, st->codecpar);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "%s: bad %s parameters", in->label, dec->name);
    in->vdec->pkt_timebase = st->time_base;
    in->vdec->thread_count = video__threads(in->lim);
    in->vdec->max_pixels = in->lim->max_pixels;
    rc = avcodec_open2(in->vdec, dec, NULL);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "%s: cannot open the %s decoder", in->label,
                              dec->name);
    return 0;
}

static int
decode_error(video_input_t *in, int rc, video_err_t *e)
{
    in->last_error = rc;
    if (rc == AVERROR(ENOMEM))
        return video__fail(e, "MemoryError", "%s: out of memory decoding frame %lld", in->label,
                           (long long)in->frames + 1);
    if (++in->decode_errors < MAX_DECODE_ERRORS)
        return 0;
    return video__fail_av(e, VIDEO_ERROR, rc,
                          "%s: its %s video cannot be decoded (%d failures in a row after %lld "
                          "frames)",
                          in->label, in->vdec->codec->name, in->decode_errors,
                          (long long)in->frames);
}

int
video__input_send(video_input_t *in, const AVPacket *pkt, video_err_t *e)
{
    int rc = avcodec_send_packet(in->vdec, pkt);

    if (rc == 0 || rc == AVERROR_EOF)
        return 0;
    return decode_error(in, rc, e);
}

int
video__input_receive(video_input_t *in, AVFrame *frame, video_err_t *e)
{
    const video_limits_t *lim = in->lim;

    for (;;) {
        int rc = avcodec_receive_frame(in->vdec, frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return rc;
        if (rc < 0) {
            if (decode_error(in, rc, e) < 0)
                return -1;
            continue;
        }
        in->decode_errors = 0;
        if (++in->frames > lim->max_frames) {
            av_frame_unref(frame);
            return video__fail(e, VIDEO_LIMIT_ERROR,
                               "%s: more than max_frames %lld video frames decoded", in->label,
                               (long long)lim->max_frames);
        }
        /* A header may understate the duration: the frames must keep to it. */
        if (video__input_frame_time(in, frame) > lim->max_duration + 1) {
            double t = video__input_frame_time(in, frame);
            av_frame_unref(frame);
            return video__fail(e, VIDEO_LIMIT_ERROR,
                               "%s: a frame at %.1f s, beyond max_duration %g s (the header "
                               "said %.1f s)",
                               in->label, t, lim->max_duration, in->duration);
        }
        /* A stream may change its size midway; each frame must fit. */
        if (frame->width > lim->max_width || frame->height > lim->max_height ||
            (int64_t)frame->width * frame->height > lim->max_pixels) {
            int w = frame->width, h = frame->height;
            av_frame_unref(frame);
            return video__fail(e, VIDEO_LIMIT_ERROR,
                               "%s: frame %lld is %dx%d pixels, above max_width %lld, "
                               "max_height %lld or max_pixels %lld",
                               in->label, (long long)in->frames, w, h, (long long)lim->max_width,
                               (long long)lim->max_height, (long long)lim->max_pixels);
        }
        return 0;
    }
}

double
video__input_frame_time(const video_input_t *in, const AVFrame *frame)
{
    const AVStream *st = in->fmt->streams[in->vindex];
    int64_t ts = frame->best_effort_timestamp;

    if (ts == AV_NOPTS_VALUE)
        ts = frame->pts;
    if (ts == AV_NOPTS_VALUE)
        return -1;
    return (double)ts * av_q2d(st->time_base) - (double)in->start / AV_TIME_BASE;
}

int
video__input_check_end(video_input_t *in, double end, video_err_t *e)
{
    AVRational fps = av_guess_frame_rate(in->fmt, in->fmt->streams[in->vindex], NULL);
    double slack = TRUNCATION_SLACK;

    if (fps.num > 0 && fps.den > 0 && 3 / av_q2d(fps) > slack)
        slack = 3 / av_q2d(fps);
    if (in->vduration <= 0 || end < 0 || end + slack >= in->vduration)
        return 0;
    return video__fail(e, VIDEO_ERROR,
                       "%s is truncated: its video ends at %.2f s, its header says %.2f s",
                       in->label, end, in->vduration);
}

int
video__input_read_error(video_input_t *in, int averr, double at, video_err_t *e)
{
    if (at >= 0)
        return video__fail_av(e, VIDEO_ERROR, averr, "%s is truncated or corrupt at %.1f s",
                              in->label, at);
    return video__fail_av(e, VIDEO_ERROR, averr, "%s is truncated or corrupt", in->label);
}

void
video__input_close(video_input_t *in)
{
    avcodec_free_context(&in->vdec);
    avformat_close_input(&in->fmt);
    video__io_close(&in->pb);
}
