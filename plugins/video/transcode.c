/*
 * transcode.c -- video.transcode: H.264 (libx264) in MP4 at a target height.
 *
 * One thread reads packets, decodes the video (the decoder's own threads
 * help), scales each frame with swscale (bicubic, as the ffmpeg command's
 * scale filter) and encodes it with libx264 (its own threads, as many as the
 * ffmpeg command gives it); audio goes through audio.c.  The MP4 is written
 * through an AVIOContext on the output descriptor; the muxer seeks back to
 * finish it, so the output must be a regular file.
 *
 * The soft time limit is polled before every packet.  When it passes, the
 * reading stops, the encoders are flushed and the trailer written, so the
 * output is a valid, shorter MP4; the task then fails with
 * SoftTimeLimitExceeded saying how far it got.  Progress (the fraction of the
 * input's duration done) goes out at most every PROGRESS_INTERVAL seconds.
 */
#include "video.h"

#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <string.h>
#include <time.h>

#define PROGRESS_INTERVAL 0.25 /* seconds between two progress reports */

static const char *const known[] = {"height", "crf", "preset", "audio", NULL};

static const char *const presets[] = {"ultrafast", "superfast", "veryfast", "faster",
                                      "fast",      "medium",    "slow",     "slower",
                                      "veryslow",  "placebo",   NULL};

typedef struct job {
    kiln_ctx_t *ctx;
    video_input_t in;
    video_audio_t audio;
    AVFormatContext *oc;
    AVIOContext *opb;
    AVCodecContext *enc;
    AVStream *ost;
    struct SwsContext *sws;
    AVFrame *frame, *scaled;
    AVPacket *pkt;
    int64_t offset;   /* the input's start, in the video stream's time base */
    int64_t last_pts; /* the last pts given to the encoder (its time base) */
    int64_t frames;   /* frames encoded */
    double at;        /* seconds of input encoded */
    double frame_dur; /* seconds, one frame at the nominal rate */
    double next_report;
} job_t;

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Encoded packets to the muxer; NULL frame: flush. */
static int
encode(job_t *j, AVFrame *f, video_err_t *e)
{
    int rc = avcodec_send_frame(j->enc, f);

    if (rc < 0 && rc != AVERROR_EOF)
        return video__fail_av(e, VIDEO_ERROR, rc, "libx264 refused frame %lld",
                              (long long)j->frames + 1);
    for (;;) {
        rc = avcodec_receive_packet(j->enc, j->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0)
            return video__fail_av(e, VIDEO_ERROR, rc, "libx264 failed after %lld frames",
                                  (long long)j->frames);
        av_packet_rescale_ts(j->pkt, j->enc->time_base, j->ost->time_base);
        j->pkt->stream_index = j->ost->index;
        rc = av_interleaved_write_frame(j->oc, j->pkt);
        if (rc < 0)
            return video__fail_av(e, VIDEO_ERROR, rc, "cannot write video to the output");
    }
}

/* A decoded frame: scaled to the output size (unless it has it) and encoded. */
static int
video_frame(job_t *j, AVFrame *f, video_err_t *e)
{
    int64_t pts = f->best_effort_timestamp;
    AVFrame *pic = f;
    int rc;

    if (pts == AV_NOPTS_VALUE)
        pts = j->last_pts == INT64_MIN ? 0
                                       : j->last_pts + (f->pkt_duration > 0 ? f->pkt_duration : 1);
    else
        pts -= j->offset;
    if (pts <= j->last_pts) /* a repeated or reordered timestamp: drop, as ffmpeg does */
        return 0;
    j->last_pts = pts;
    if (f->width != j->enc->width || f->height != j->enc->height || f->format != j->enc->pix_fmt) {
        j->sws = sws_getCachedContext(j->sws, f->width, f->height, (enum AVPixelFormat)f->format,
                                      j->enc->width, j->enc->height, j->enc->pix_fmt, SWS_BICUBIC,
                                      NULL, NULL, NULL);
        if (!j->sws)
            return video__fail(e, VIDEO_ERROR, "cannot scale a %dx%d %s frame to %dx%d", f->width,
                               f->height, av_get_pix_fmt_name((enum AVPixelFormat)f->format),
                               j->enc->width, j->enc->height);
        rc = av_frame_make_writable(j->scaled);
        if (rc < 0)
            return video__fail_av(e, VIDEO_ERROR, rc, "cannot allocate a frame");
        sws_scale(j->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height,
                  j->scaled->data, j->scaled->linesize);
        pic = j->scaled;
    }
    pic->pts = pts;
    pic->pict_type = AV_PICTURE_TYPE_NONE;
    if (encode(j, pic, e) < 0)
        return -1;
    j->frames++;
    j->at = (double)pts * av_q2d(j->enc->time_base);
    return 0;
}

static void
progress(job_t *j)
{
    char msg[96];
    double t = now();

    if (t < j->next_report || j->in.duration <= 0)
        return;
    j->next_report = t + PROGRESS_INTERVAL;
    snprintf(msg, sizeof(msg), "%.1f s of %.1f s", j->at, j->in.duration);
    kiln_progress(j->ctx, j->at >= j->in.duration ? 1.0 : j->at / j->in.duration, msg);
}

/* Decoded frames to the encoder until the decoder wants a packet. */
static int
pump(job_t *j, video_err_t *e)
{
    for (;;) {
        int rc = video__input_receive(&j->in, j->frame, e);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0)
            return -1;
        rc = video_frame(j, j->frame, e);
        av_frame_unref(j->frame);
        if (rc < 0)
            return -1;
    }
}

/* Read, decode, encode until the end or the soft time limit (*stopped). */
static int
run(job_t *j, int *stopped, video_err_t *e)
{
    int rc;

    *stopped = 0;
    j->next_report = now() + PROGRESS_INTERVAL;
    for (;;) {
        if (kiln_soft_timeout(j->ctx)) {
            *stopped = 1;
            return 0;
        }
        rc = av_read_frame(j->in.fmt, j->pkt);
        if (rc == AVERROR_EOF)
            break;
        if (rc < 0)
            return video__input_read_error(&j->in, rc, j->at, e);
        if (j->pkt->stream_index == j->in.vindex) {
            rc = video__input_send(&j->in, j->pkt, e);
            av_packet_unref(j->pkt);
            if (rc < 0 || pump(j, e) < 0)
                return -1;
            progress(j);
        } else if (j->audio.mode != VIDEO_AUDIO_NONE &&
                   j->pkt->stream_index == j->audio.ist->index) {
            if (video__audio_packet(&j->audio, j->pkt, j->oc, e) < 0)
                return -1;
        } else {
            av_packet_unref(j->pkt);
        }
    }
    if (video__input_send(&j->in, NULL, e) < 0 || pump(j, e) < 0)
        return -1;
    if (j->frames > 0 && video__input_check_end(&j->in, j->at + j->frame_dur, e) < 0)
        return -1;
    if (j->frames == 0)
        return video__fail_av(
            e, VIDEO_ERROR, j->in.last_error ? j->in.last_error : AVERROR_INVALIDDATA,
            "%s: no frame of its %s video could be decoded", j->in.label, j->in.vdec->codec->name);
    return 0;
}

/* A rotation flag (phones) goes to the output as it is: the frames stay as
 * stored and players turn them, as they did the input's. */
static int
copy_rotation(const AVStream *ist, AVStream *ost)
{
    size_t size = 0;
    const uint8_t *m = av_stream_get_side_data(ist, AV_PKT_DATA_DISPLAYMATRIX, &size);
    uint8_t *to;

    if (!m || size == 0)
        return 0;
    to = av_stream_new_side_data(ost, AV_PKT_DATA_DISPLAYMATRIX, size);
    if (!to)
        return -1;
    memcpy(to, m, size);
    return 0;
}

/* The output: MP4 over the descriptor, libx264 at out_w x out_h, audio. */
static int
open_output(job_t *j, int fd, int out_w, int out_h, double crf, const char *preset, int want_audio,
            video_err_t *e)
{
    const AVStream *ist = j->in.fmt->streams[j->in.vindex];
    const AVCodecParameters *par = ist->codecpar;
    const AVCodec *x264 = avcodec_find_encoder_by_name("libx264");
    AVRational fps = av_guess_frame_rate(j->in.fmt, (AVStream *)ist, NULL);
    AVRational sar = par->sample_aspect_ratio;
    int rc;

    if (!x264)
        return video__fail(e, VIDEO_ERROR, "this FFmpeg has no libx264 encoder");
    rc = avformat_alloc_output_context2(&j->oc, NULL, "mp4", NULL);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot set up the MP4 muxer");
    j->opb = video__io_open(fd, 1);
    j->enc = avcodec_alloc_context3(x264);
    j->ost = avformat_new_stream(j->oc, NULL);
    j->scaled = av_frame_alloc();
    if (!j->opb || !j->enc || !j->ost || !j->scaled)
        return video__fail(e, "MemoryError", "out of memory setting up the output");
    if (!(j->opb->seekable & AVIO_SEEKABLE_NORMAL))
        return video__fail(e, VIDEO_VALUE_ERROR,
                           "the output must be a regular file: the MP4 muxer seeks back to "
                           "finish it");
    j->oc->pb = j->opb;
    j->oc->flags |= AVFMT_FLAG_CUSTOM_IO;

    j->enc->width = out_w;
    j->enc->height = out_h;
    j->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    j->enc->time_base = ist->time_base; /* the input's timestamps, as they are */
    if (fps.num > 0 && fps.den > 0) {
        j->enc->framerate = fps; /* x264's rate control works from this */
        j->frame_dur = av_q2d(av_inv_q(fps));
    }
    /* The display aspect stays: the sample aspect ratio absorbs the rounding. */
    if (sar.num <= 0 || sar.den <= 0)
        sar = (AVRational){1, 1};
    av_reduce(&j->enc->sample_aspect_ratio.num, &j->enc->sample_aspect_ratio.den,
              (int64_t)sar.num * out_h * par->width, (int64_t)sar.den * out_w * par->height,
              INT32_MAX);
    j->enc->color_range = AVCOL_RANGE_MPEG;
    j->enc->colorspace = par->color_space;
    j->enc->color_primaries = par->color_primaries;
    j->enc->color_trc = par->color_trc;
    j->enc->thread_count = video__threads(j->in.lim);
    if (j->oc->oformat->flags & AVFMT_GLOBALHEADER)
        j->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    av_opt_set(j->enc->priv_data, "preset", preset, 0);
    av_opt_set_double(j->enc->priv_data, "crf", crf, 0);
    rc = avcodec_open2(j->enc, x264, NULL);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot open libx264 at %dx%d", out_w, out_h);
    rc = avcodec_parameters_from_context(j->ost->codecpar, j->enc);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot describe the H.264 stream");
    j->ost->time_base = j->enc->time_base;
    j->ost->sample_aspect_ratio = j->enc->sample_aspect_ratio;
    if (copy_rotation(ist, j->ost) < 0)
        return video__fail(e, "MemoryError", "out of memory");
    if (fps.num > 0)
        j->ost->avg_frame_rate = fps;

    j->scaled->format = j->enc->pix_fmt;
    j->scaled->width = out_w;
    j->scaled->height = out_h;
    rc = av_frame_get_buffer(j->scaled, 0);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot allocate a %dx%d frame", out_w, out_h);

    if (want_audio && video__audio_open(&j->audio, &j->in, j->oc, e) < 0)
        return -1;
    rc = avformat_write_header(j->oc, NULL);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot write the MP4 header");
    return 0;
}

/* The end of the output: encoders flushed, trailer written. */
static int
finish(job_t *j, int drain, video_err_t *e)
{
    int rc;

    if (encode(j, NULL, e) < 0)
        return -1;
    if (video__audio_finish(&j->audio, j->oc, drain, e) < 0)
        return -1;
    rc = av_write_trailer(j->oc);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot finish the MP4");
    return 0;
}

int
video__transcode(kiln_ctx_t *ctx, json_t **result, video_err_t *e)
{
    const video_limits_t *lim = &video__limits;
    const char *preset = "veryfast";
    double crf = 23, duration;
    int64_t height = 0;
    int want_audio = 1, stopped = 0, out_w, out_h, fd, rc = -1, i;
    const AVCodecParameters *par;
    job_t j;

    memset(&j, 0, sizeof(j));
    j.ctx = ctx;
    j.last_pts = INT64_MIN;
    if (video__kw_check(ctx, known, e) < 0 ||
        video__kw_int(ctx, "height", 16, lim->max_height, &height, e) < 0 ||
        video__kw_number(ctx, "crf", 0, 51, &crf, e) < 0 ||
        video__kw_string(ctx, "preset", &preset, e) < 0 ||
        video__kw_bool(ctx, "audio", &want_audio, e) < 0)
        return -1;
    if (height % 2)
        return video__fail(e, VIDEO_VALUE_ERROR, "height %lld is odd; H.264 4:2:0 needs it even",
                           (long long)height);
    if (!preset)
        preset = "veryfast";
    for (i = 0; presets[i] && strcmp(presets[i], preset) != 0; i++)
        ;
    if (!presets[i])
        return video__fail(e, VIDEO_VALUE_ERROR,
                           "preset \"%.32s\" is not an x264 preset (ultrafast, superfast, "
                           "veryfast, faster, fast, medium, slow, slower, veryslow, placebo)",
                           preset);
    fd = video__output_fd(ctx, e);
    if (fd < 0)
        return -1;
    if (video__input_open(&j.in, ctx, lim, e) < 0 || video__input_check(&j.in, e) < 0 ||
        video__input_open_decoder(&j.in, e) < 0)
        goto out;

    /* Width from the height and the stored aspect, rounded to even (what
     * ffmpeg's scale=-2:H gives); height defaults to the input's. */
    par = j.in.fmt->streams[j.in.vindex]->codecpar;
    out_h = height ? (int)height : par->height & ~1;
    out_w = (int)av_rescale(out_h, par->width, (int64_t)par->height * 2) * 2;
    if (out_w < 2)
        out_w = 2;
    if (out_w > lim->max_width) {
        video__fail(e, VIDEO_LIMIT_ERROR,
                    "height %d%s makes the output %dx%d, above max_width %lld", out_h,
                    height ? "" : " (the input's)", out_w, out_h, (long long)lim->max_width);
        goto out;
    }
    if ((int64_t)out_w * out_h > lim->max_output_pixels) {
        video__fail(e, VIDEO_LIMIT_ERROR,
                    "height %d%s makes the output %dx%d, %lld pixels, above max_output_pixels "
                    "%lld",
                    out_h, height ? "" : " (the input's)", out_w, out_h, (long long)out_w * out_h,
                    (long long)lim->max_output_pixels);
        goto out;
    }
    j.offset = av_rescale_q(j.in.start, AV_TIME_BASE_Q, j.in.fmt->streams[j.in.vindex]->time_base);
    j.frame = av_frame_alloc();
    j.pkt = av_packet_alloc();
    if (!j.frame || !j.pkt) {
        video__fail(e, "MemoryError", "out of memory");
        goto out;
    }
    if (open_output(&j, fd, out_w, out_h, crf, preset, want_audio, e) < 0)
        goto out;
    if (run(&j, &stopped, e) < 0 || finish(&j, !stopped, e) < 0)
        goto out;
    duration = j.frames ? j.at + j.frame_dur : 0;
    if (j.audio.end > duration)
        duration = j.audio.end;
    if (stopped) {
        video__fail(e, "SoftTimeLimitExceeded",
                    "stopped at %.1f s of %.1f s: soft time limit; the output is a valid MP4 "
                    "of the first %.1f s (%lld frames)",
                    j.at, j.in.duration, duration, (long long)j.frames);
        goto out;
    }
    kiln_progress(ctx, 1.0, "done");
    *result =
        json_pack("{s:i,s:i,s:f,s:I,s:I,s:s,s:o}", "width", out_w, "height", out_h, "duration",
                  floor(duration * 1000 + 0.5) / 1000, "frames", (json_int_t)j.frames, "bytes",
                  (json_int_t)video__io_size(j.opb), "video_codec", "h264", "audio_codec",
                  j.audio.mode == VIDEO_AUDIO_NONE ? json_null() : json_string("aac"));
    json_object_set_new(*result, "audio",
                        json_string(j.audio.mode == VIDEO_AUDIO_COPY  ? "copied"
                                    : j.audio.mode == VIDEO_AUDIO_AAC ? "encoded"
                                                                      : "none"));
    rc = 0;
out:
    video__audio_close(&j.audio);
    sws_freeContext(j.sws);
    avcodec_free_context(&j.enc);
    if (j.oc)
        avformat_free_context(j.oc);
    video__io_close(&j.opb);
    av_frame_free(&j.scaled);
    av_frame_free(&j.frame);
    av_packet_free(&j.pkt);
    video__input_close(&j.in);
    return rc;
}
