/*
 * probe.c -- video.probe: what the container and its streams say.
 *
 * Reads headers and what avformat_find_stream_info() needs (within
 * probe_size and analyze_duration); decodes nothing else.  The size and
 * duration limits are not applied: describing a large file is cheap, and the
 * answer is how a caller learns that thumbnail or transcode would refuse it.
 * Keys whose value the file does not give are left out.
 */
#include "video.h"

#include <libavutil/display.h>
#include <libavutil/pixdesc.h>
#include <math.h>

static const char *const known[] = {NULL};

/* A rational as a number, or NULL when it is unset or invalid. */
static json_t *
rational(AVRational q)
{
    if (q.num <= 0 || q.den <= 0)
        return NULL;
    return json_real(av_q2d(q));
}

static void
set(json_t *o, const char *key, json_t *v)
{
    if (v)
        json_object_set_new(o, key, v);
}

static json_t *
seconds(int64_t ts, AVRational tb)
{
    if (ts == AV_NOPTS_VALUE || ts < 0)
        return NULL;
    return json_real((double)ts * av_q2d(tb));
}

static json_t *
describe_stream(const AVStream *st)
{
    const AVCodecParameters *par = st->codecpar;
    const char *type = av_get_media_type_string(par->codec_type);
    const char *profile = avcodec_profile_name(par->codec_id, par->profile);
    json_t *o = json_object();

    set(o, "index", json_integer(st->index));
    set(o, "type", json_string(type ? type : "unknown"));
    set(o, "codec", json_string(avcodec_get_name(par->codec_id)));
    if (profile)
        set(o, "profile", json_string(profile));
    if (par->bit_rate > 0)
        set(o, "bit_rate", json_integer(par->bit_rate));
    set(o, "duration", seconds(st->duration, st->time_base));
    if (st->nb_frames > 0)
        set(o, "frames", json_integer(st->nb_frames));
    if (par->codec_type == AVMEDIA_TYPE_VIDEO) {
        const char *pix = av_get_pix_fmt_name((enum AVPixelFormat)par->format);
        const uint8_t *matrix = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
        json_t *fps = rational(st->avg_frame_rate);
        if (par->width > 0 && par->height > 0) {
            set(o, "width", json_integer(par->width));
            set(o, "height", json_integer(par->height));
        }
        if (pix)
            set(o, "pix_fmt", json_string(pix));
        set(o, "frame_rate", fps ? fps : rational(st->r_frame_rate));
        if (par->sample_aspect_ratio.num > 0 && par->sample_aspect_ratio.den > 0)
            set(o, "sample_aspect_ratio", rational(par->sample_aspect_ratio));
        if (matrix) {
            double r = av_display_rotation_get((const int32_t *)matrix);
            if (isfinite(r))
                set(o, "rotation", json_real(r == 0 ? 0 : r)); /* as ffprobe prints it */
        }
        if (st->disposition & AV_DISPOSITION_ATTACHED_PIC)
            set(o, "attached_pic", json_true());
    } else if (par->codec_type == AVMEDIA_TYPE_AUDIO) {
        const char *sfmt = av_get_sample_fmt_name((enum AVSampleFormat)par->format);
        char layout[64];
        if (par->sample_rate > 0)
            set(o, "sample_rate", json_integer(par->sample_rate));
        if (par->ch_layout.nb_channels > 0)
            set(o, "channels", json_integer(par->ch_layout.nb_channels));
        if (par->ch_layout.order != AV_CHANNEL_ORDER_UNSPEC &&
            av_channel_layout_describe(&par->ch_layout, layout, sizeof(layout)) > 0)
            set(o, "channel_layout", json_string(layout));
        if (sfmt)
            set(o, "sample_fmt", json_string(sfmt));
    }
    return o;
}

int
video__probe(kiln_ctx_t *ctx, json_t **result, video_err_t *e)
{
    video_input_t in;
    json_t *o, *streams;
    int64_t size;
    unsigned i;

    if (video__kw_check(ctx, known, e) < 0)
        return -1;
    if (video__input_open(&in, ctx, &video__limits, e) < 0) {
        video__input_close(&in);
        return -1;
    }
    o = json_object();
    streams = json_array();
    set(o, "format", json_string(in.fmt->iformat->name));
    if (in.fmt->iformat->long_name)
        set(o, "format_long_name", json_string(in.fmt->iformat->long_name));
    if (in.duration > 0)
        set(o, "duration", json_real(in.duration));
    if (in.fmt->start_time != AV_NOPTS_VALUE)
        set(o, "start_time", json_real((double)in.fmt->start_time / AV_TIME_BASE));
    if (in.fmt->bit_rate > 0)
        set(o, "bit_rate", json_integer(in.fmt->bit_rate));
    size = avio_size(in.pb);
    if (size >= 0)
        set(o, "size", json_integer(size));
    for (i = 0; i < in.fmt->nb_streams; i++)
        json_array_append_new(streams, describe_stream(in.fmt->streams[i]));
    set(o, "streams", streams);
    if (in.vindex >= 0)
        set(o, "video_stream", json_integer(in.vindex));
    if (in.aindex >= 0)
        set(o, "audio_stream", json_integer(in.aindex));
    video__input_close(&in);
    *result = o;
    return 0;
}
