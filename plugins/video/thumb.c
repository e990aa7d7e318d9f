/*
 * thumb.c -- video.thumbnail: one frame, as JPEG or PNG.
 *
 * Seeks to the key frame at or before `at`, decodes up to the first frame at
 * or after it (what `ffmpeg -ss AT -i IN -frames:v 1` picks), scales it with
 * swscale (bicubic) to `width` keeping the display aspect, turns it upright
 * when the stream carries a rotation (phones do; the ffmpeg command does the
 * same), and encodes it with libavcodec's mjpeg or png encoder.  The encoded
 * bytes become the whole content of the output descriptor.
 */
#include "video.h"

#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#define JPEG_QSCALE 2 /* mjpeg quantiser scale, 2 (best) .. 31; as ffmpeg -q:v 2 */

static const char *const known[] = {"at", "width", "format", NULL};

typedef struct thumb {
    video_input_t in;
    AVPacket *pkt;
    AVFrame *frame, *best, *scaled, *rotated;
    AVCodecContext *enc;
    struct SwsContext *sws;
} thumb_t;

/* "jpeg" or "png": the format kwarg, else the output path's extension, else jpeg. */
static int
pick_format(kiln_ctx_t *ctx, const char **format, video_err_t *e)
{
    const char *f, *path, *dot, *slash;

    if (video__kw_string(ctx, "format", &f, e) < 0)
        return -1;
    if (f) {
        if (strcasecmp(f, "jpeg") == 0 || strcasecmp(f, "jpg") == 0)
            *format = "jpeg";
        else if (strcasecmp(f, "png") == 0)
            *format = "png";
        else
            return video__fail(e, VIDEO_VALUE_ERROR, "format \"%.32s\" is not jpeg or png", f);
        return 0;
    }
    *format = "jpeg";
    path = video__kw_path(ctx, "outputs", "output");
    if (!path)
        return 0;
    dot = strrchr(path, '.');
    slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return 0;
    if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0)
        *format = "jpeg";
    else if (strcasecmp(dot, ".png") == 0)
        *format = "png";
    else
        return video__fail(e, VIDEO_VALUE_ERROR,
                           "cannot tell the format from the output's extension \"%.16s\"; pass "
                           "format \"jpeg\" or \"png\"",
                           dot);
    return 0;
}

/* Seek to the key frame at or before `at` (seconds from the start).  A
 * container that cannot seek is decoded from the start instead. */
static void
seek(thumb_t *t, double at)
{
    const AVStream *st = t->in.fmt->streams[t->in.vindex];
    int64_t ts;

    if (at <= 0)
        return;
    ts = av_rescale_q((int64_t)llround(at * AV_TIME_BASE) + t->in.start, AV_TIME_BASE_Q,
                      st->time_base);
    if (av_seek_frame(t->in.fmt, t->in.vindex, ts, AVSEEK_FLAG_BACKWARD) >= 0)
        avcodec_flush_buffers(t->in.vdec);
}

/* Decode until the first frame at or after `at`; t->best holds it, or the
 * last frame when the stream ends before `at` (*ended).  *when is its time. */
static int
decode_until(thumb_t *t, double at, double *when, int *ended, video_err_t *e)
{
    double eps = 1e-4; /* timestamps are rounded to the stream's time base */
    int draining = 0, have = 0, rc;

    *when = -1;
    *ended = 0;
    for (;;) {
        if (!draining) {
            rc = av_read_frame(t->in.fmt, t->pkt);
            if (rc == AVERROR_EOF) {
                draining = 1;
                if (video__input_send(&t->in, NULL, e) < 0)
                    return -1;
            } else if (rc < 0) {
                /* A frame already decoded past `at` is not needed; others are. */
                return video__input_read_error(&t->in, rc, have ? *when : -1, e);
            } else {
                int mine = t->pkt->stream_index == t->in.vindex;
                rc = mine ? video__input_send(&t->in, t->pkt, e) : 0;
                av_packet_unref(t->pkt);
                if (rc < 0)
                    return -1;
                if (!mine)
                    continue;
            }
        }
        for (;;) {
            double ft;
            rc = video__input_receive(&t->in, t->frame, e);
            if (rc == AVERROR(EAGAIN))
                break;
            if (rc == AVERROR_EOF) {
                if (!have)
                    return video__fail_av(e, VIDEO_ERROR,
                                          t->in.last_error ? t->in.last_error : AVERROR_INVALIDDATA,
                                          "%s: no frame of its %s video could be decoded",
                                          t->in.label, t->in.vdec->codec->name);
                *ended = 1; /* the stream ended before `at`: the last frame */
                return 0;
            }
            if (rc < 0)
                return -1;
            ft = video__input_frame_time(&t->in, t->frame);
            av_frame_unref(t->best);
            av_frame_move_ref(t->best, t->frame);
            have = 1;
            *when = ft;
            if (ft < 0 || ft + eps >= at) /* no timestamps: the first frame will do */
                return 0;
        }
    }
}

/* Clockwise quarter turns that make the stream upright (0..3), from its
 * display matrix, as the ffmpeg command's autorotation reads it. */
static int
quarter_turns(const AVStream *st)
{
    const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
    double theta;

    if (!m)
        return 0;
    theta = -round(av_display_rotation_get((const int32_t *)m));
    if (isnan(theta))
        return 0;
    theta -= 360 * floor(theta / 360 + 0.9 / 360);
    return (int)lround(theta / 90) % 4;
}

/* One plane of w x h pixels of bpp bytes, turned clockwise `turns` times. */
static void
rotate_plane(const uint8_t *src, int sls, uint8_t *dst, int dls, int w, int h, int bpp, int turns)
{
    int x, y;

    for (y = 0; y < h; y++) {
        const uint8_t *row = src + (size_t)y * sls;
        for (x = 0; x < w; x++) {
            uint8_t *to;
            if (turns == 1)
                to = dst + (size_t)x * dls + (size_t)(h - 1 - y) * bpp;
            else if (turns == 2)
                to = dst + (size_t)(h - 1 - y) * dls + (size_t)(w - 1 - x) * bpp;
            else
                to = dst + (size_t)(w - 1 - x) * dls + (size_t)y * bpp;
            memcpy(to, row + (size_t)x * bpp, (size_t)bpp);
        }
    }
}

/* t->scaled turned upright into t->rotated (RGB24 or a planar 8-bit YUV). */
static int
rotate(thumb_t *t, int turns, video_err_t *e)
{
    const AVFrame *s = t->scaled;
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get((enum AVPixelFormat)s->format);
    int rc, p;

    t->rotated = av_frame_alloc();
    if (!t->rotated)
        return video__fail(e, "MemoryError", "out of memory");
    t->rotated->format = s->format;
    t->rotated->width = turns % 2 ? s->height : s->width;
    t->rotated->height = turns % 2 ? s->width : s->height;
    rc = av_frame_get_buffer(t->rotated, 0);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot allocate a frame to rotate");
    for (p = 0; p < 4 && s->data[p]; p++) {
        int sub = p > 0 && !(d->flags & AV_PIX_FMT_FLAG_RGB);
        int w = sub ? AV_CEIL_RSHIFT(s->width, d->log2_chroma_w) : s->width;
        int h = sub ? AV_CEIL_RSHIFT(s->height, d->log2_chroma_h) : s->height;
        int bpp = d->flags & AV_PIX_FMT_FLAG_PLANAR ? 1 : d->nb_components;
        rotate_plane(s->data[p], s->linesize[p], t->rotated->data[p], t->rotated->linesize[p], w, h,
                     bpp, turns);
    }
    return 0;
}

static int
encode(thumb_t *t, const char *format, int64_t want_w, int fd, json_t **result, video_err_t *e)
{
    const AVFrame *src = t->best;
    int png = strcmp(format, "png") == 0;
    const AVCodec *codec = avcodec_find_encoder(png ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG);
    enum AVPixelFormat pix = png ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_YUVJ420P;
    AVRational sar = src->sample_aspect_ratio;
    const video_limits_t *lim = t->in.lim;
    int turns = quarter_turns(t->in.fmt->streams[t->in.vindex]);
    double display_w, display_h;
    int64_t w, h, sw, sh;
    const int *coef;
    AVFrame *pic;
    AVPacket *out = t->pkt;
    int rc;

    /* The display size: storage size times the sample aspect ratio, turned
     * upright.  w x h is the thumbnail, sw x sh what swscale makes. */
    if (sar.num <= 0 || sar.den <= 0)
        sar = t->in.fmt->streams[t->in.vindex]->sample_aspect_ratio;
    display_w = src->width * (sar.num > 0 && sar.den > 0 ? av_q2d(sar) : 1.0);
    display_h = src->height;
    if (turns % 2) {
        double x = display_w;
        display_w = display_h;
        display_h = x;
    }
    w = want_w > 0 ? want_w : (int64_t)llround(display_w);
    h = (int64_t)llround((double)w * display_h / display_w);
    if (w < 1)
        w = 1;
    if (h < 1)
        h = 1;
    sw = turns % 2 ? h : w;
    sh = turns % 2 ? w : h;
    if (w > lim->max_width || h > lim->max_height || w * h > lim->max_pixels)
        return video__fail(e, VIDEO_LIMIT_ERROR,
                           "a %lldx%lld thumbnail is above max_width %lld, max_height %lld or "
                           "max_pixels %lld",
                           (long long)w, (long long)h, (long long)lim->max_width,
                           (long long)lim->max_height, (long long)lim->max_pixels);
    if (!codec)
        return video__fail(e, VIDEO_ERROR, "this FFmpeg has no %s encoder", format);

    t->sws = sws_getContext(src->width, src->height, (enum AVPixelFormat)src->format, (int)sw,
                            (int)sh, pix, SWS_BICUBIC, NULL, NULL, NULL);
    t->scaled = av_frame_alloc();
    t->enc = avcodec_alloc_context3(codec);
    if (!t->sws || !t->scaled || !t->enc)
        return video__fail(
            e, VIDEO_ERROR, "cannot convert a %dx%d %s frame to %lldx%lld", src->width, src->height,
            av_get_pix_fmt_name((enum AVPixelFormat)src->format), (long long)w, (long long)h);
    /* Limited or full range in, as the frame says; JPEG is full range out. */
    coef = sws_getCoefficients(src->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_DEFAULT);
    sws_setColorspaceDetails(t->sws, coef, src->color_range == AVCOL_RANGE_JPEG,
                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    t->scaled->format = pix;
    t->scaled->width = (int)sw;
    t->scaled->height = (int)sh;
    rc = av_frame_get_buffer(t->scaled, 0);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot allocate a %lldx%lld frame", (long long)w,
                              (long long)h);
    sws_scale(t->sws, (const uint8_t *const *)src->data, src->linesize, 0, src->height,
              t->scaled->data, t->scaled->linesize);
    pic = t->scaled;
    if (turns) {
        if (rotate(t, turns, e) < 0)
            return -1;
        pic = t->rotated;
    }

    t->enc->width = (int)w;
    t->enc->height = (int)h;
    t->enc->pix_fmt = pix;
    t->enc->time_base = (AVRational){1, 25};
    t->enc->color_range = AVCOL_RANGE_JPEG;
    if (!png) {
        t->enc->flags |= AV_CODEC_FLAG_QSCALE;
        t->enc->global_quality = FF_QP2LAMBDA * JPEG_QSCALE;
        pic->quality = t->enc->global_quality;
    }
    pic->pts = 0;
    rc = avcodec_open2(t->enc, codec, NULL);
    if (rc >= 0)
        rc = avcodec_send_frame(t->enc, pic);
    if (rc >= 0)
        rc = avcodec_send_frame(t->enc, NULL);
    if (rc >= 0)
        rc = avcodec_receive_packet(t->enc, out);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot encode the %lldx%lld %s", (long long)w,
                              (long long)h, format);
    rc = video__io_write_file(fd, out->data, (size_t)out->size);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot write the %s to the output", format);
    *result = json_pack("{s:I,s:I,s:s,s:f,s:I}", "width", (json_int_t)w, "height", (json_int_t)h,
                        "format", format, "at", 0.0, "bytes", (json_int_t)out->size);
    av_packet_unref(out);
    return 0;
}

int
video__thumbnail(kiln_ctx_t *ctx, json_t **result, video_err_t *e)
{
    const video_limits_t *lim = &video__limits;
    const char *format = "jpeg";
    double at = 0, when;
    int64_t width = 0;
    thumb_t t;
    int fd, ended, rc = -1;

    memset(&t, 0, sizeof(t));
    if (video__kw_check(ctx, known, e) < 0 || video__kw_number(ctx, "at", 0, 1e9, &at, e) < 0 ||
        video__kw_int(ctx, "width", 1, lim->max_width, &width, e) < 0 ||
        pick_format(ctx, &format, e) < 0)
        return -1;
    fd = video__output_fd(ctx, e);
    if (fd < 0)
        return -1;
    if (video__input_open(&t.in, ctx, lim, e) < 0 || video__input_check(&t.in, e) < 0)
        goto out;
    if (t.in.duration > 0 && at > t.in.duration) {
        video__fail(e, VIDEO_VALUE_ERROR, "at %g s is beyond the end of %s (%.3f s)", at,
                    t.in.label, t.in.duration);
        goto out;
    }
    if (video__input_open_decoder(&t.in, e) < 0)
        goto out;
    t.pkt = av_packet_alloc();
    t.frame = av_frame_alloc();
    t.best = av_frame_alloc();
    if (!t.pkt || !t.frame || !t.best) {
        video__fail(e, "MemoryError", "out of memory");
        goto out;
    }
    seek(&t, at);
    if (decode_until(&t, at, &when, &ended, e) < 0)
        goto out;
    if (ended && when >= 0) {
        /* The frames ran out before `at`: a cut file, or `at` is in the
         * last frame's time (or past it, when the duration is unknown). */
        AVRational fps = av_guess_frame_rate(t.in.fmt, t.in.fmt->streams[t.in.vindex], NULL);
        double end = when + (fps.num > 0 && fps.den > 0 ? av_q2d(av_inv_q(fps)) : 0);
        if (video__input_check_end(&t.in, end, e) < 0)
            goto out;
        if (t.in.duration <= 0 && end + 1.0 < at) {
            video__fail(e, VIDEO_VALUE_ERROR, "at %g s is beyond the last frame of %s (%.3f s)", at,
                        t.in.label, when);
            goto out;
        }
    }
    if (encode(&t, format, width, fd, result, e) < 0)
        goto out;
    json_object_set_new(*result, "at",
                        json_real(when >= 0 ? floor(when * 1000 + 0.5) / 1000 : 0.0));
    rc = 0;
out:
    sws_freeContext(t.sws);
    avcodec_free_context(&t.enc);
    av_frame_free(&t.rotated);
    av_frame_free(&t.scaled);
    av_frame_free(&t.best);
    av_frame_free(&t.frame);
    av_packet_free(&t.pkt);
    video__input_close(&t.in);
    return rc;
}
