/*
 * video.h -- what the files of the video plugin share.  Nothing here is
 * exported: the plugin is built with -fvisibility=hidden and exports only
 * kiln_plugin (video.c).
 *
 *   video.c      the task table, policy, init/fini, kwargs helpers
 *   limits.c     the operator's settings: limits, validated in init
 *   log.c        FFmpeg's log routed into a buffer (errors name their cause)
 *   io.c         AVIOContext over the descriptors the runtime hands in
 *   input.c      opening the input: container, streams, limits, decoders
 *   probe.c      video.probe
 *   thumb.c      video.thumbnail
 *   transcode.c  video.transcode (video stream, muxing, soft time limit)
 *   audio.c      the audio side of video.transcode: copy or AAC
 *
 * Errors: internal functions return 0 or a negative code and, on failure,
 * fill a video_err_t with the Celery exc_type and a message naming the cause
 * and the thing; the handler passes it to kiln_fail() with the task's name in
 * front.  Types: ValueError (arguments, missing descriptors), VideoError
 * (input FFmpeg cannot read or decode, output it cannot write), LimitExceeded
 * (the input is bigger than a configured limit).
 */
#ifndef KILN_PLUGIN_VIDEO_H
#define KILN_PLUGIN_VIDEO_H

#include <kiln/kiln.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <stdint.h>

#define VIDEO_VALUE_ERROR "ValueError"
#define VIDEO_ERROR       "VideoError"
#define VIDEO_LIMIT_ERROR "LimitExceeded"

/* An error on its way to kiln_fail(). */
typedef struct video_err {
    const char *type; /* static string: one of the types above */
    char msg[900];    /* the cause, without the task name */
} video_err_t;

/* Fill e and return -1. */
int video__fail(video_err_t *e, const char *type, const char *fmt, ...) KILN_PRINTF(3, 4);
/* The same with FFmpeg's words for `averr` and its last error log line
 * appended: "...: Invalid data found when processing input (mov,mp4,...:
 * moov atom not found)". */
int video__fail_av(video_err_t *e, const char *type, int averr, const char *fmt, ...)
    KILN_PRINTF(4, 5);

/* --- limits.c: the settings, each with its default -------------------- */
typedef struct video_limits {
    double max_duration;       /* seconds of input a task accepts */
    int64_t max_width;         /* pixels, of a decoded frame */
    int64_t max_height;        /* pixels */
    int64_t max_pixels;        /* width x height of one decoded frame */
    int64_t max_output_pixels; /* width x height of one transcoded frame */
    int64_t max_frames;        /* video frames a task may decode */
    int64_t probe_size;        /* bytes avformat may read to find the streams */
    double analyze_duration;   /* seconds of input it may analyse for that */
    int threads;               /* codec threads per task: 0 = as many as CPUs (capped) */
} video_limits_t;

/* Read settings into l (defaults for what is absent).  0, or -1 with a
 * message naming the key in err. */
int video__limits_parse(const json_t *settings, video_limits_t *l, char *err, size_t errlen);
/* The limits in force in this child (set by init). */
extern video_limits_t video__limits;

/* --- log.c ------------------------------------------------------------ */
void video__log_install(void);
void video__log_reset(void);
/* The last error FFmpeg logged since the reset, "" if none (copied into buf). */
const char *video__log_last(char *buf, size_t len);

/* --- io.c ------------------------------------------------------------- */
/* An AVIOContext reading (write = 0) or writing (write = 1) descriptor fd
 * from offset 0, seekable when fd is.  NULL when out of memory. */
AVIOContext *video__io_open(int fd, int write);
/* Bytes written so far through a writer (its largest offset). */
int64_t video__io_size(AVIOContext *pb);
/* Write buf as the whole content of fd (from offset 0, then truncated). */
int video__io_write_file(int fd, const void *buf, size_t len);
/* Flushes nothing: frees the buffer and the context; *pb becomes NULL. */
void video__io_close(AVIOContext **pb);

/* --- input.c ---------------------------------------------------------- */
typedef struct video_input {
    AVFormatContext *fmt;
    AVIOContext *pb;
    char label[300];      /* `input "a.mp4"` (kwargs files.input) or `input` */
    int vindex;           /* the video stream, -1 if none */
    int aindex;           /* the best audio stream, -1 if none */
    double duration;      /* seconds, 0 when unknown */
    double vduration;     /* the video stream's own, seconds, 0 when unknown */
    int64_t start;        /* start time, AV_TIME_BASE units (0 when unknown) */
    AVCodecContext *vdec; /* opened by video__input_open_decoder() */
    int64_t frames;       /* video frames decoded so far (max_frames) */
    int decode_errors;    /* consecutive decode failures */
    int last_error;       /* the last decoding error code */
    const video_limits_t *lim;
} video_input_t;

/* Open the task's descriptor "input": container probe (whitelisted
 * formats only), stream info within probe_size/analyze_duration. */
int video__input_open(video_input_t *in, kiln_ctx_t *ctx, const video_limits_t *lim,
                      video_err_t *e);
/* Refuse an input without a video stream or beyond max_duration,
 * max_width, max_height or max_pixels. */
int video__input_check(video_input_t *in, video_err_t *e);
/* Open the video decoder (threads per the limits, max_pixels enforced). */
int video__input_open_decoder(video_input_t *in, video_err_t *e);
/* Feed a video packet (NULL: drain). */
int video__input_send(video_input_t *in, const AVPacket *pkt, video_err_t *e);
/* The next decoded video frame: 0, AVERROR(EAGAIN) (needs a packet),
 * AVERROR_EOF (drained) or -1 with e filled (limit, decode failure). */
int video__input_receive(video_input_t *in, AVFrame *frame, video_err_t *e);
/* A frame's timestamp in seconds from the input's start. */
double video__input_frame_time(const video_input_t *in, const AVFrame *frame);
/* After the last frame (its end at `end` seconds): a VideoError if the
 * video stream's header promised noticeably more, i.e. the file is cut. */
int video__input_check_end(video_input_t *in, double end, video_err_t *e);
/* The read error of av_read_frame() as a VideoError naming where it stopped. */
int video__input_read_error(video_input_t *in, int averr, double at, video_err_t *e);
void video__input_close(video_input_t *in);

/* --- audio.c: the audio of video.transcode ---------------------------- */
typedef enum video_audio_mode {
    VIDEO_AUDIO_NONE, /* no audio in the output */
    VIDEO_AUDIO_COPY, /* AAC packets copied as they are */
    VIDEO_AUDIO_AAC,  /* decoded, resampled, encoded with FFmpeg's native AAC encoder */
} video_audio_mode_t;

typedef struct video_audio {
    video_audio_mode_t mode;
    const video_input_t *in;
    AVStream *ist, *ost;
    AVCodecContext *dec, *enc; /* VIDEO_AUDIO_AAC only */
    struct SwrContext *swr;
    struct AVAudioFifo *fifo;
    uint8_t **conv; /* resampled samples before the FIFO */
    int conv_cap;   /* samples conv holds */
    AVFrame *frame, *out;
    AVPacket *pkt;
    int64_t offset;   /* the input's start, in ist->time_base */
    int64_t next_pts; /* the encoder's next pts (1/sample_rate); AV_NOPTS_VALUE before the first */
    int errors;       /* consecutive decoding failures */
    double end;       /* seconds of audio written */
} video_audio_t;

/* Add the output's audio stream for input stream in->aindex: copied when it
 * is AAC, else an AAC encoder (before avformat_write_header). */
int video__audio_open(video_audio_t *a, const video_input_t *in, AVFormatContext *oc,
                      video_err_t *e);
/* One input packet of the audio stream; written to oc as it is or encoded. */
int video__audio_packet(video_audio_t *a, AVPacket *pkt, AVFormatContext *oc, video_err_t *e);
/* The end: drain the decoder (if drain), the FIFO and the encoder. */
int video__audio_finish(video_audio_t *a, AVFormatContext *oc, int drain, video_err_t *e);
void video__audio_close(video_audio_t *a);

/* --- the tasks, and video.c's helpers for them ----------------------- */
/* Each returns 0 with *result set (a new reference), or -1 with e filled. */
int video__probe(kiln_ctx_t *ctx, json_t **result, video_err_t *e);
int video__thumbnail(kiln_ctx_t *ctx, json_t **result, video_err_t *e);
int video__transcode(kiln_ctx_t *ctx, json_t **result, video_err_t *e);

/* Refuse positional args and kwargs not in `known` (NULL-terminated; files
 * and outputs are always allowed). */
int video__kw_check(kiln_ctx_t *ctx, const char *const *known, video_err_t *e);

/* kwargs[key] as a number in [min, max]; *out unchanged when absent.
 * 1 if present, 0 if absent, -1 with a ValueError naming the key. */
/* "an object", "a string", "a number", ...: for messages. */
const char *video__json_kind(const json_t *v);

int video__kw_number(kiln_ctx_t *ctx, const char *key, double min, double max, double *out,
                     video_err_t *e);
int video__kw_int(kiln_ctx_t *ctx, const char *key, int64_t min, int64_t max, int64_t *out,
                  video_err_t *e);
int video__kw_bool(kiln_ctx_t *ctx, const char *key, int *out, video_err_t *e);
/* kwargs[key] as a string (borrowed), NULL when absent; -1 if not a string. */
int video__kw_string(kiln_ctx_t *ctx, const char *key, const char **out, video_err_t *e);
/* kwargs.files[name] or kwargs.outputs[name], for messages and extensions. */
const char *video__kw_path(kiln_ctx_t *ctx, const char *set, const char *name);
/* The task's descriptor "output", or a ValueError. */
int video__output_fd(kiln_ctx_t *ctx, video_err_t *e);
/* Threads for a codec: the setting, or 0 (auto) capped for the sandbox. */
int video__threads(const video_limits_t *lim);

#endif /* KILN_PLUGIN_VIDEO_H */
