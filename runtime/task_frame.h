/*
 * task_frame.h -- the TASK frame a child receives, written straight into
 * the channel's pending bytes.
 *
 * The payload is the JSON object the child reads:
 *   {"task":T,"id":I,"args":[...],"kwargs":{...},"files":[...],"soft":S,"hard":H}
 * When the job carries its args and kwargs as the producer wrote them
 * (checked JSON text, see kiln__job_t), they are copied as they are and the
 * object is written by hand; otherwise jansson dumps it.  Either way the
 * child parses the same document.
 */
#ifndef KILN_TASK_FRAME_H
#define KILN_TASK_FRAME_H

#include "pool.h"

#include <stddef.h>

/* Bytes waiting to be written to a child: a buffer kept between writes. */
typedef struct kiln__wbuf {
    char *data;
    size_t len, cap;
} kiln__wbuf_t;

/* Room for `more` bytes past len.  0 or -ENOMEM. */
int kiln__wbuf_reserve(kiln__wbuf_t *b, size_t more);
/* Empty it; the memory is kept unless it grew past a few pages. */
void kiln__wbuf_reset(kiln__wbuf_t *b);
void kiln__wbuf_free(kiln__wbuf_t *b);

/* Append a whole TASK frame (header and payload) for `job` with the given
 * limits in seconds.  0, -ENOMEM, or -EMSGSIZE (payload over
 * KILN__FRAME_MAX); on error b is as it was. */
int kiln__task_frame(kiln__wbuf_t *b, const kiln__job_t *job, double soft, double hard);

#endif
