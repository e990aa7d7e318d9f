/*
 * log.c -- FFmpeg's log, kept instead of printed.
 *
 * In a child, fd 2 is /dev/null, so av_log's default output goes nowhere;
 * worse, FFmpeg says why it refused an input ("moov atom not found") only in
 * its log, not in the error code.  This callback keeps the last line logged
 * at error level or worse, so video__fail_av() can put it in the task's
 * message.  Codec threads log too: the buffer is behind a mutex.
 */
#include "video.h"

#include <libavutil/log.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char last[400];

static void callback(void *avcl, int level, const char *fmt, va_list vl)
    __attribute__((format(printf, 3, 0)));

static void
callback(void *avcl, int level, const char *fmt, va_list vl)
{
    const AVClass *avc = avcl ? *(const AVClass *const *)avcl : NULL;
    char line[sizeof(last)];
    size_t n = 0;

    if (level > AV_LOG_ERROR)
        return;
    if (avc && avc->item_name) {
        int k = snprintf(line, sizeof(line), "%s: ", avc->item_name(avcl));
        n = k > 0 && (size_t)k < sizeof(line) ? (size_t)k : 0;
    }
    vsnprintf(line + n, sizeof(line) - n, fmt, vl);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    if (n == 0)
        return;
    pthread_mutex_lock(&lock);
    memcpy(last, line, n + 1);
    pthread_mutex_unlock(&lock);
}

void
video__log_install(void)
{
    av_log_set_callback(callback);
}

void
video__log_reset(void)
{
    pthread_mutex_lock(&lock);
    last[0] = '\0';
    pthread_mutex_unlock(&lock);
}

const char *
video__log_last(char *buf, size_t len)
{
    pthread_mutex_lock(&lock);
    snprintf(buf, len, "%s", last);
    pthread_mutex_unlock(&lock);
    return buf;
}
