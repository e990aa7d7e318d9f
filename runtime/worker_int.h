/*
 * worker_int.h -- what the worker's files share (worker.c: life, outcomes,
 * dispatch, housekeeping; worker_finish.c: results, acks and the other ways a
 * message leaves; worker_fetch.c: fetching and waiting).  Not for other
 * files: worker.h is the module's interface.
 */
#ifndef KILN_WORKER_INT_H
#define KILN_WORKER_INT_H

#include "broker.h"
#include "celery.h"
#include "roots.h"
#include "worker.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#define KEY_PREFIX      "kiln:"
#define MAX_WAITERS     (KILN__MAX_QUEUES * 4)
#define ETA_INTERVAL_MS 200
#define PROGRESS_MIN_MS 100
#define DEATHS_TTL      86400
#define MAX_FETCH       256
#define BREAKER_JITTER  0.1

/* The scripts, by id (their text: scripts.c, listed in worker.c). */
enum {
    S_FETCH = 0,
    S_ACK,
    S_DEFER,
    S_DEAD,
    S_REQUEUE,
    S_RECLAIM,
    S_RECOVER,
    S_ETA,
    S_DEATH,
    S_BREAKER_UPDATE,
    S_BREAKER_PROBE,
    S_ACK1,
    S_COUNT
};

typedef struct wpool {
    char plugin[64];
    kiln__pool_t *pool;
    int had_fast;   /* a task of this pool has run fast FAST_STREAK times in a row */
    double fast_ms; /* running mean of its fast tasks' run times (ms ticks) */
    unsigned ahead; /* messages held per child beyond the running one: ~HOLD_MS of work */
    kiln__worker_t *w;
    int closing; /* kiln__pool_close called */
    int closed;  /* its close callback ran: the pool is gone */
} wpool_t;

typedef struct breaker {
    char name[256];
    kiln__breaker_conf_t conf;
    char state[16]; /* closed, open, half_open */
    double opened_at_ms;
    long failures;
    struct breaker *next;
} breaker_t;

typedef struct wjob {
    kiln__job_t job; /* first: the pool hands us &job */
    kiln__worker_t *w;
    struct wjob *next, *prev;
    char tag[128];
    char *raw; /* the message as it came */
    size_t rawlen;
    char qkey[160];
    kiln__task_msg_t msg;
    int pool;
    breaker_t *breaker;
    int probe; /* holds the breaker's half-open probe */
    uint64_t last_progress_ms;
    int dispatched;
    int busy;       /* a file open or breaker probe is under way for it */
    char *ack_meta; /* batched ack waiting for the next flush */
    struct wjob *ack_next;
    int finishing;                  /* the outcome is on its way to Redis */
    struct wjob *open_next;         /* file-opening work */
    struct wjob *st_next, *st_prev; /* STARTED not yet written (track_started) */
    int st_pending;
    uint64_t st_ms; /* when it reached its child */
    uv_work_t work;
    kiln__roots_t *roots;
    char open_err[1200];
    int open_rc;
} wjob_t;

typedef struct waiter {
    kiln__worker_t *w;
    kiln__broker_t conn;
    char key[160];
    int outstanding;
} waiter_t;

struct kiln__worker {
    uv_loop_t *loop;
    kiln__config_t cfg;
    kiln__redis_url_t broker_url, backend_url;
    int same_backend;
    kiln__broker_t broker;
    kiln__broker_t backend; /* used only when !same_backend */
    waiter_t waiters[MAX_WAITERS];
    int nwaiters;
    int armed; /* the last fetch found nothing: waiters wait */
    char wid[160];
    char host[128];
    uint64_t seq;
    char sha[S_COUNT][48];
    wpool_t pools[KILN__MAX_POOLS];
    int npools;
    json_t *task_pool; /* task name -> pool index */
    json_t *fast;      /* task name -> runs in a row under SLOW_MS */
    wjob_t *jobs;      /* every message we hold */
    wjob_t *spare;     /* freed jobs kept for reuse (SPARE_JOBS at most) */
    unsigned nspare;
    unsigned njobs;
    unsigned predispatch; /* jobs held but not yet in a pool's queue */
    int fetching;
    unsigned fetch_n; /* messages the fetch under way asked for idle children */
    int started;
    int stopping; /* 1 warm, 2 cold */
    int closed_conns;
    int want_conns;
    uv_timer_t hb_timer, eta_timer, recover_timer, grace_timer, hoard_timer;
    breaker_t *breakers;
    kiln__roots_t roots;
    void (*done)(void *);
    void *done_arg;
    int done_called;
    int pools_closed;
    int unregistering;
    int failed;        /* refused to run (e.g. an evicting Redis) */
    uint64_t quiet_ms; /* do not report Redis as down during this start-up time */
    wjob_t *ack_head, *ack_tail;
    unsigned nacks;
    uv_check_t ack_check;
    uv_timer_t ack_timer;
    wjob_t *st_head, *st_tail; /* running tasks whose STARTED is due */
    uv_timer_t st_timer;
};

#define ACK_BATCH         256
#define ACK_MIN           16 /* a batch this big goes out at once */
#define ACK_CHUNK         64 /* acks per script call (3 arguments each, see kiln__w_script()) */
#define ACK_DELAY_MS      1  /* a smaller one waits at most this long */
#define FAST_STREAK       32
#define SLOW_MS           20.0 /* one run this long and a task is no longer fast */
#define AHEAD             32 /* messages held ahead per child of a fast pool (behind it or queued) */
#define MAX_FAST_TASKS    64
#define MAX_FAST_PATTERNS 16
#define HOARD_CHECK_MS    5
#define SPARE_JOBS        64   /* freed jobs kept for reuse */
#define HOLD_MS           10.0 /* work held ahead per child of a fast pool, at most */
/* STARTED is written once a task has run this long.  A task done sooner goes
 * straight to its final state: no poller could have told the difference, and
 * a fast pool saves two Redis writes per task. */
#define STARTED_DELAY_MS 2

/* worker.c */
double kiln__w_now_epoch(void);
kiln__broker_t *kiln__w_result_conn(kiln__worker_t *w);
void kiln__w_key_inflight(const kiln__worker_t *w, char *a, size_t alen);
/* EVALSHA (or EVAL) of script `id` with its keys and arguments (al may be
 * NULL: strlen).  At most 297 keys and arguments together: -E2BIG past. */
int kiln__w_script(kiln__worker_t *w, kiln__broker_t *b, int flags, int id, kiln__broker_cb cb,
                   void *data, int nkeys, int nargs, const char **av, const size_t *al);
/* A fetched message: decode it and start it, or settle it at once. */
void kiln__w_take(kiln__worker_t *w, const char *tag, const char *raw, size_t rawlen);
/* Every job and pool gone after a stop: call the done callback. */
void kiln__w_maybe_done(kiln__worker_t *w);

/* worker_finish.c: how a message leaves our hands, and a job's memory */
wjob_t *kiln__w_job_alloc(kiln__worker_t *w);
char *kiln__w_meta_for(wjob_t *j, const char *status, const json_t *result);
void kiln__w_finish(kiln__worker_t *w, wjob_t *j, int id, const char **keys, int nkeys,
                    const char **args, const size_t *argl, int nargs, const char *meta);
void kiln__w_write_state(kiln__worker_t *w, wjob_t *j, const char *status, const json_t *result);
void kiln__w_ack_with(kiln__worker_t *w, wjob_t *j, const char *status, const json_t *result);
void kiln__w_flush_acks(kiln__worker_t *w);
void kiln__w_ack_check_cb(uv_check_t *h);
void kiln__w_fail_with(kiln__worker_t *w, wjob_t *j, const char *exc_type, const char *message);
void kiln__w_requeue(kiln__worker_t *w, wjob_t *j);
void kiln__w_defer(kiln__worker_t *w, wjob_t *j, const char *message, size_t mlen, double when,
                   const char *meta);
void kiln__w_dead_letter(kiln__worker_t *w, wjob_t *j, const char *reason, json_t *deaths,
                         const char *exc_type);

/* worker_fetch.c: fetching as many messages as there are idle children */
void kiln__w_note_speed(kiln__worker_t *w, wpool_t *wp, const char *task, double ms);
void kiln__w_maybe_fetch(kiln__worker_t *w);
void kiln__w_waiter_ready(kiln__broker_t *b);

#endif
