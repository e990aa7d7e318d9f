/*
 * ctx.h -- the per-task context behind the SDK's opaque kiln_ctx_t.
 */
#ifndef KILN_CTX_H
#define KILN_CTX_H

#include <kiln/kiln.h>
#include <stdint.h>

enum {
    KILN__OUTCOME_NONE = 0,
    KILN__OUTCOME_RESULT,
    KILN__OUTCOME_FAIL,
    KILN__OUTCOME_RETRY,
};

struct kiln_ctx {
    uint64_t seq;     /* supervisor's sequence number for this task */
    const char *task; /* borrowed from the TASK payload */
    const char *id;   /* Celery task id, borrowed */
    json_t *args;     /* array */
    json_t *kwargs;   /* object */
    json_t *files;    /* array of names, index i names fds[i] */
    int *fds;
    int nfds;
    double soft_deadline; /* CLOCK_MONOTONIC seconds, 0 = none */
    double hard_deadline;
    int outcome; /* KILN__OUTCOME_* */
    json_t *result;
    double countdown;
    char exc_type[128];
    char exc_message[4096];
};

extern const kiln_api_t kiln__api_table;
/* The plugin's settings object, parsed by the child from its jail before
 * the plugin is loaded (an empty object when none were given). */
extern json_t *kiln__settings;

double kiln__now(void);

#endif /* KILN_CTX_H */
