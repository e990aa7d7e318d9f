/*
 * audio.c -- the audio of video.transcode.
 *
 * AAC input is copied packet for packet (what `ffmpeg -c:a copy` does).
 * Anything else is decoded, resampled by libswresample to planar float at a
 * rate the encoder supports (the input's when it can), mono or stereo (more
 * channels are downmixed), queued in an AVAudioFifo and encoded by FFmpeg's
 * native AAC encoder in frames of its frame size.  Timestamps start from the
 * input's start time, as the video's do, so both stay in sync.
 */
#include "video.h"

#include <libavutil/audio_fifo.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <string.h>

#define MAX_AUDIO_ERRORS 50 /* consecutive undecodable audio packets before giving up */

/* The supported rate nearest above `rate` (else the highest). */
static int
pick_rate(const AVCodec *enc, int rate)
{
    const int *r = enc->supported_samplerates;
    int above = 0, highest = 0;

    if (rate <= 0)
        return 48000;
    if (!r)
        return rate;
    for (; *r; r++) {
        if (*r == rate)
            return rate;
        if (*r > highest)
            highest = *r;
        if (*r > rate && (above == 0 || *r < above))
            above = *r;
    }
    return above ? above : highest;
}

static int
write_packet(video_audio_t *a, AVPacket *pkt, AVRational tb, AVFormatContext *oc, video_err_t *e)
{
    int rc;

    av_packet_rescale_ts(pkt, tb, a->ost->time_base);
    pkt->stream_index = a->ost->index;
    if (pkt->pts != AV_NOPTS_VALUE) {
        double end = (double)(pkt->pts + pkt->duration) * av_q2d(a->ost->time_base);
        if (end > a->end)
            a->end = end;
    }
    rc = av_interleaved_write_frame(oc, pkt);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot write audio to the output");
    return 0;
}

int
video__audio_open(video_audio_t *a, const video_input_t *in, AVFormatContext *oc, video_err_t *e)
{
    const AVCodec *dec, *enc;
    AVCodecParameters *par;
    int rc, channels;

    memset(a, 0, sizeof(*a));
    a->in = in;
    a->next_pts = AV_NOPTS_VALUE;
    if (in->aindex < 0)
        return 0;
    a->ist = in->fmt->streams[in->aindex];
    par = a->ist->codecpar;
    a->offset = av_rescale_q(in->start, AV_TIME_BASE_Q, a->ist->time_base);
    a->ost = avformat_new_stream(oc, NULL);
    a->pkt = av_packet_alloc();
    if (!a->ost || !a->pkt)
        return video__fail(e, "MemoryError", "out of memory adding the audio stream");
    if (par->codec_id == AV_CODEC_ID_AAC) {
        rc = avcodec_parameters_copy(a->ost->codecpar, par);
        if (rc < 0)
            return video__fail_av(e, VIDEO_ERROR, rc, "cannot copy the AAC audio");
        a->ost->codecpar->codec_tag = 0;
        a->ost->time_base = a->ist->time_base;
        a->mode = VIDEO_AUDIO_COPY;
        return 0;
    }

    dec = avcodec_find_decoder(par->codec_id);
    enc = avcodec_find_encoder_by_name("aac");
    if (!dec)
        return video__fail(e, VIDEO_ERROR, "%s: no decoder for its %s audio", in->label,
                           avcodec_get_name(par->codec_id));
    if (!enc)
        return video__fail(e, VIDEO_ERROR, "this FFmpeg has no aac encoder");
    a->dec = avcodec_alloc_context3(dec);
    a->enc = avcodec_alloc_context3(enc);
    a->frame = av_frame_alloc();
    a->out = av_frame_alloc();
    if (!a->dec || !a->enc || !a->frame || !a->out)
        return video__fail(e, "MemoryError", "out of memory opening the audio codecs");
    rc = avcodec_parameters_to_context(a->dec, par);
    if (rc >= 0) {
        a->dec->pkt_timebase = a->ist->time_base;
        rc = avcodec_open2(a->dec, dec, NULL);
    }
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "%s: cannot open the %s audio decoder", in->label,
                              dec->name);

    channels = par->ch_layout.nb_channels >= 2 ? 2 : 1;
    av_channel_layout_default(&a->enc->ch_layout, channels);
    a->enc->sample_rate = pick_rate(enc, par->sample_rate);
    a->enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
    a->enc->time_base = (AVRational){1, a->enc->sample_rate};
    if (oc->oformat->flags & AVFMT_GLOBALHEADER)
        a->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    rc = avcodec_open2(a->enc, enc, NULL);
    if (rc >= 0)
        rc = avcodec_parameters_from_context(a->ost->codecpar, a->enc);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot open the AAC encoder (%d Hz, %d ch)",
                              a->enc->sample_rate, channels);
    a->ost->time_base = a->enc->time_base;
    a->fifo = av_audio_fifo_alloc(a->enc->sample_fmt, channels, a->enc->frame_size);
    if (!a->fifo)
        return video__fail(e, "MemoryError", "out of memory for the audio queue");
    a->out->format = a->enc->sample_fmt;
    a->out->sample_rate = a->enc->sample_rate;
    a->out->nb_samples = a->enc->frame_size;
    rc = av_channel_layout_copy(&a->out->ch_layout, &a->enc->ch_layout);
    if (rc >= 0)
        rc = av_frame_get_buffer(a->out, 0);
    if (rc < 0)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot allocate an audio frame");
    a->mode = VIDEO_AUDIO_AAC;
    return 0;
}

/* Encode one frame of up to frame_size samples from the FIFO (NULL: flush). */
static int
encode(video_audio_t *a, int samples, AVFormatContext *oc, video_err_t *e)
{
    AVFrame *f = NULL;
    int rc;

    if (samples > 0) {
        rc = av_frame_make_writable(a->out);
        if (rc < 0)
            return video__fail_av(e, VIDEO_ERROR, rc, "cannot reuse the audio frame");
        a->out->nb_samples = samples;
        if (av_audio_fifo_read(a->fifo, (void **)a->out->data, samples) < samples)
            return video__fail(e, VIDEO_ERROR, "the audio queue ran short");
        a->out->pts = a->next_pts;
        a->next_pts += samples;
        f = a->out;
    }
    rc = avcodec_send_frame(a->enc, f);
    if (rc < 0 && rc != AVERROR_EOF)
        return video__fail_av(e, VIDEO_ERROR, rc, "cannot encode AAC audio");
    for (;;) {
        rc = avcodec_receive_packet(a->enc, a->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0)
            return video__fail_av(e, VIDEO_ERROR, rc, "cannot encode AAC audio");
        if (write_packet(a, a->pkt, a->enc->time_base, oc, e) < 0)
            return -1;
    }
}

/* Resample `in` (NULL: what swresample holds back) into the FIFO. */
static int
queue(video_audio_t *a, const AVFrame *in, video_err_t *e)
{
    int want, got, rc;

    if (!a->swr) {
        AVChannelLayout layout;
        if (!in)
            return 0;
        /* A layout of unknown order (just a channel count): the usual one. */
        if (in->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
            av_channel_layout_default(&layout, in->ch_layout.nb_channels);
        else if (av_channel_layout_copy(&layout, &in->ch_layout) < 0)
            return video__fail(e, "MemoryError", "out of memory");
        rc = swr_alloc_set_opts2(&a->swr, &a->enc->ch_layout, a->enc->sample_fmt,
                                 a->enc->sample_rate, &layout, (enum AVSampleFormat)in->format,
                                 in->sample_rate, 0, NULL);
        av_channel_layout_uninit(&layout);
        if (rc >= 0)
            rc = swr_init(a->swr);
        if (rc < 0)
            return video__fail_av(e, VIDEO_ERROR, rc,
                                  "cannot resample %d-channel %d Hz audio to AAC",
                                  in->ch_layout.nb_channels, in->sample_rate);
    }
    want = swr_get_out_samples(a->swr, in ? in->nb_samples : 0);
    if (want <= 0)
        return 0;
    if (want > a->conv_cap) {
        if (a->conv)
            av_freep(&a->conv[0]);
        av_freep(&a->conv);
        rc = av_samples_alloc_array_and_samples(&a->conv, NULL, a->enc->ch_layout.nb_channels, want,
                                                a->enc->sample_fmt, 0);
        if (rc < 0) {
            a->conv_cap = 0;
            return video__fail_av(e, VIDEO_ERROR, rc, "cannot allocate %d audio samples", want);
        }
        a->conv_cap = want;
    }
    got = swr_convert(a->swr, a->conv, want, in ? (const uint8_t **)in->extended_data : NULL,
                      in ? in->nb_samples : 0);
    if (got < 0)
        return video__fail_av(e, VIDEO_ERROR, got, "cannot resample the audio");
    if (got > 0 && av_audio_fifo_write(a->fifo, (void **)a->conv, got) < got)
        return video__fail(e, "MemoryError", "out of memory queueing audio");
    return 0;
}

/* Decoded frames into the FIFO, full encoder frames out of it. */
static int
drain_decoder(video_audio_t *a, AVFormatContext *oc, video_err_t *e)
{
    for (;;) {
        int rc = avcodec_receive_frame(a->dec, a->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0) {
            if (++a->errors >= MAX_AUDIO_ERRORS)
                return video__fail_av(e, VIDEO_ERROR, rc, "%s: its audio cannot be decoded",
                                      a->in->label);
            continue;
        }
        a->errors = 0;
        if (a->next_pts == AV_NOPTS_VALUE) {
            int64_t ts = a->frame->best_effort_timestamp;
            a->next_pts = ts == AV_NOPTS_VALUE
                              ? 0
                              : av_rescale_q(ts - a->offset, a->ist->time_base, a->enc->time_base);
            if (a->next_pts < 0)
                a->next_pts = 0;
        }
        rc = queue(a, a->frame, e);
        av_frame_unref(a->frame);
        if (rc < 0)
            return -1;
        while (av_audio_fifo_size(a->fifo) >= a->enc->frame_size)
            if (encode(a, a->enc->frame_size, oc, e) < 0)
                return -1;
    }
}

int
video__audio_packet(video_audio_t *a, AVPacket *pkt, AVFormatContext *oc, video_err_t *e)
{
    int rc;

    if (a->mode == VIDEO_AUDIO_COPY) {
        if (pkt->pts != AV_NOPTS_VALUE)
            pkt->pts -= a->offset;
        if (pkt->dts != AV_NOPTS_VALUE)
            pkt->dts -= a->offset;
        return write_packet(a, pkt, a->ist->time_base, oc, e);
    }
    if (a->mode != VIDEO_AUDIO_AAC) {
        av_packet_unref(pkt);
        return 0;
    }
    rc = avcodec_send_packet(a->dec, pkt);
    av_packet_unref(pkt);
    if (rc < 0 && rc != AVERROR(EAGAIN) && ++a->errors >= MAX_AUDIO_ERRORS)
        return video__fail_av(e, VIDEO_ERROR, rc, "%s: its audio cannot be decoded", a->in->label);
    return drain_decoder(a, oc, e);
}

int
video__audio_finish(video_audio_t *a, AVFormatContext *oc, int drain, video_err_t *e)
{
    int left;

    if (a->mode != VIDEO_AUDIO_AAC)
        return 0;
    if (drain) {
        avcodec_send_packet(a->dec, NULL);
        if (drain_decoder(a, oc, e) < 0)
            return -1;
    }
    if (a->next_pts != AV_NOPTS_VALUE && queue(a, NULL, e) < 0)
        return -1;
    while ((left = av_audio_fifo_size(a->fifo)) > 0)
        if (encode(a, left < a->enc->frame_size ? left : a->enc->frame_size, oc, e) < 0)
            return -1;
    return encode(a, 0, oc, e);
}

void
video__audio_close(video_audio_t *a)
{
    if (a->conv)
        av_freep(&a->conv[0]);
    av_freep(&a->conv);
    av_audio_fifo_free(a->fifo);
    a->fifo = NULL;
    swr_free(&a->swr);
    avcodec_free_context(&a->dec);
    avcodec_free_context(&a->enc);
    av_frame_free(&a->frame);
    av_frame_free(&a->out);
    av_packet_free(&a->pkt);
}
