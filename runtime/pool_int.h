/*
 * pool_int.h -- what the pool's files share (pool.c: spawning, dispatch,
 * pools, the supervisor's state; pool_child.c: a child's channel, the frames
 * it sends and its death).  Not for other files: pool.h is the module's
 * interface.
 */
#ifndef KILN_POOL_INT_H
#define KILN_POOL_INT_H

#include "frame.h"
#include "pool.h"
#include "task_frame.h"

#include <stddef.h>
#include <stdint.h>

#define LOAD_TIMEOUT_MS   30000
#define PIPE_DEPTH        16 /* tasks sent behind a running one, fast tasks only */
#define PIPE_LOW          6  /* top up the tasks behind once down to this many */
#define MAX_INIT_FAILURES 3
/* Tasks a child runs before it is recycled, unless the plugin or the config
 * says otherwise (image 50, video 10).  A new jailed child costs ~7 ms of
 * CPU on this project's VM (fork, namespaces, seccomp, Landlock, dlopen,
 * copy-on-write faults): at 1000 that was 30% of the children's CPU for
 * sub-millisecond tasks.  Leaks are bounded by the memory cap and max_rss. */
#define KILN__DEFAULT_MAX_TASKS 10000
#define UID_BASE_DEFAULT        61000

enum slot_state {
    SLOT_FREE = 0, /* no child */
    SLOT_STARTING, /* spawn requested; waiting for HELLO and READY */
    SLOT_IDLE,     /* READY: waiting for a task */
    SLOT_BUSY,     /* running slot->job */
    SLOT_RETIRING, /* told to quit or past max tasks: waiting for its exit */
};

enum kill_reason { KILL_NONE = 0, KILL_TIMEOUT, KILL_LOAD_TIMEOUT, KILL_PROTOCOL, KILL_CLOSE };

typedef struct conn {
    uv_poll_t poll;
    int fd;
    int events;
    kiln__frame_reader_t rd;
    kiln__slot_t *slot;
    kiln__wbuf_t w; /* pending TASK frames */
    size_t woff;
    int wfds[16];
    int nwfds;
} conn_t;

struct kiln__slot {
    kiln__super_t *sup;
    kiln__pool_t *pool;
    uint32_t id;
    uint64_t gen;
    int state;
    pid_t pid;
    conn_t *conn;
    uv_timer_t timer;
    kiln__job_t *job; /* the task the child is running */
    /* Sent behind it, in order, not started yet (tasks marked fast only):
     * the child finds its next task in its socket instead of waiting a
     * round trip, and several go out in one write.  Linked by job->next. */
    kiln__job_t *behind_head, *behind_tail;
    unsigned nbehind;
    int refill;       /* may be topped up in this dispatch */
    int retire_after; /* recycle once the tasks sent behind are done (max_rss crossed) */
    uint32_t tasks_done;
    uint32_t max_tasks; /* this child's task budget (0 = none), see slot_budget */
    int kill_reason;
    long oom_before;
    char cause_type[64]; /* what the child told us before dying */
    char cause[1024];
};

struct kiln__pool {
    kiln__super_t *sup;
    kiln__pool_cfg_t cfg;
    kiln__slot_t **slots;
    uint32_t nslots;
    kiln__job_t *qhead, *qtail;
    unsigned queued;
    unsigned init_failures;
    char broken[1200]; /* set when children cannot start: jobs fail with it */
    char broken_type[64];
    int closing;
    int finished; /* every child gone; freed on the next loop turn */
    uv_timer_t grace_timer;
    uv_prepare_t flush; /* writes the TASK frames queued in one loop turn */
    unsigned depth;     /* tasks that may wait behind a running one (<= PIPE_DEPTH) */
    int handles;        /* open handles; p is freed when the last closes */
    void (*close_cb)(void *);
    void *close_arg;
    /* probe mode */
    int probe;
    kiln__probe_cb probe_cb;
    void *probe_arg;
    int probe_done;
    kiln__plugin_info_t info;
};

/* pool.c */
/* "200 MiB", "1.5 GiB": for messages. */
const char *kiln__p_human_bytes(uint64_t b, char *buf, size_t len);
/* "SIGKILL" for 9. */
const char *kiln__p_signame(int sig);
/* Report the job's outcome to its owner and release what the pool held. */
void kiln__p_job_finish(kiln__slot_t *sl, kiln__job_t *job, kiln__outcome_t *o);
/* The same for a failure of type/msg (`died`: the child died with it). */
void kiln__p_job_fail(kiln__slot_t *sl, kiln__job_t *job, const char *type, const char *msg,
                      int died);
/* The child broke the protocol: record why and kill it. */
void kiln__p_slot_protocol_error(kiln__slot_t *sl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The slot's timer: load timeout or the running task's hard limit. */
void kiln__p_slot_timer_cb(uv_timer_t *t);
/* Ask the zygote for a new child in this slot. */
void kiln__p_slot_spawn(kiln__slot_t *sl);
/* Hand queued jobs to idle children (and behind busy ones, fast tasks). */
void kiln__p_pool_dispatch(kiln__pool_t *p);
/* A closing pool: idle children are told to quit; with none left, it closes. */
void kiln__p_pool_maybe_closed(kiln__pool_t *p);

/* pool_child.c */
/* Poll the channel for `events` (UV_READABLE, UV_WRITABLE). */
void kiln__p_conn_want(conn_t *c, int events);
/* Write pending TASK frames.  0, or -errno if the child is gone. */
int kiln__p_conn_flush(conn_t *c);
/* A probe pool's child said HELLO (or died): report to the prober. */
void kiln__p_probe_report(kiln__pool_t *p);
/* Replies from the zygote: spawned, spawn failed, exited. */
void kiln__p_zygote_cb(uv_poll_t *h, int status, int events);

#endif
