/*
 * pool.h -- supervisor-side bookkeeping of sandboxed children.
 *
 * A kiln__super_t owns what all pools share: the libuv loop, the zygote,
 * the probed kernel capabilities, the compiled seccomp filters and the
 * cgroup slots.  A kiln__pool_t runs one plugin in `concurrency` pre-forked
 * children ("slots"), queues jobs while every child is busy, enforces the
 * hard time limit, and turns every way a child can die into a task error
 * that names the cause.  Nothing here blocks and nothing here runs plugin
 * code.
 */
#ifndef KILN_POOL_H
#define KILN_POOL_H

#include "sandbox.h"
#include "zygote.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

typedef struct kiln__super kiln__super_t;
typedef struct kiln__pool kiln__pool_t;
typedef struct kiln__slot kiln__slot_t;
typedef struct kiln__job kiln__job_t;

enum { KILN__DONE_SUCCESS = 0, KILN__DONE_FAILURE, KILN__DONE_RETRY };

typedef struct kiln__outcome {
    int state;               /* KILN__DONE_* */
    json_t *result;          /* SUCCESS: borrowed for the callback */
    const char *exc_type;    /* FAILURE/RETRY: e.g. "ValueError", "TimeLimitExceeded" */
    const char *exc_message; /* the cause, in words */
    double countdown;        /* RETRY: seconds */
    int child_died;          /* the child died with the task (crash, cap, kill) */
    int shutdown;            /* not the task's fault: the pool closed under it */
    uint64_t child_maxrss;   /* the child's peak RSS in bytes, when it reported one */
    double runtime;          /* seconds from dispatch to outcome */
} kiln__outcome_t;

struct kiln__job {
    /* Filled by the caller.  The pool owns args/kwargs/fds/file names after
     * kiln__pool_submit() returns 0, and releases them; the caller frees the
     * job itself after on_done. */
    char task[256];
    char id[160];
    json_t *args;   /* array (reference taken) */
    json_t *kwargs; /* object (reference taken) */
    json_t *files;  /* array of names, or NULL; names fds[i] */
    /* Optional: args and kwargs as checked JSON text equal to args/kwargs
     * (the message's own bytes), copied into the TASK frame as they are.
     * Borrowed: the caller keeps them alive until on_done. */
    const char *args_text, *kwargs_text;
    size_t args_len, kwargs_len;
    int fds[16];
    int nfds;
    double soft_time_limit; /* seconds; <0 = pool default, 0 = none */
    double time_limit;      /* seconds; <=0 = pool default */
    int fast;               /* known to take milliseconds: may be sent behind a running task */
    void (*on_progress)(kiln__job_t *job, double fraction, const char *message);
    void (*on_log)(kiln__job_t *job, int level, const char *message);
    void (*on_done)(kiln__job_t *job, const kiln__outcome_t *outcome);
    void (*on_start)(kiln__job_t *job); /* sent to a child (may be NULL) */
    void *data;

    /* Pool-private. */
    kiln__job_t *next;
    uint64_t seq;
    uint64_t started_ms;
};

typedef struct kiln__pool_cfg {
    char plugin_path[4096];
    int profile;                  /* enum kiln__profile */
    uint64_t memory_bytes;        /* per child */
    uint64_t fsize_bytes;         /* largest file a child may write */
    double soft_time_limit;       /* seconds, 0 = none */
    double time_limit;            /* seconds, hard */
    uint32_t max_tasks_per_child; /* 0 = unlimited */
    uint32_t concurrency;
    uint32_t nofile;
    uint64_t max_rss_bytes; /* recycle a child after a task that took it past this; 0 = no */
    char settings[KILN__SETTINGS_MAX]; /* plugin settings, compact JSON object or "" */
    void (*on_idle)(void *arg);        /* a child became idle with nothing queued (may be NULL) */
    void *idle_arg;
} kiln__pool_cfg_t;

/* Plugin description from a probe child's HELLO. */
typedef struct kiln__plugin_info {
    json_t *hello; /* {"name","version","abi":[M,m],"tasks":[...],"policy":{...}} */
    char error_type[64];
    char error[1200]; /* non-empty when the plugin was refused */
} kiln__plugin_info_t;

struct kiln__super {
    uv_loop_t *loop;
    kiln__caps_t caps;
    kiln__filters_t filters;
    kiln__cgroup_t cgroup;
    kiln__zygote_t zygote;
    uv_poll_t zpoll;
    kiln__slot_t **slots; /* by global slot id */
    uint32_t nslots;
    uint32_t maxslots;
    uint32_t uid_base; /* children run as uid_base + slot when root */
    uint64_t next_seq;
    unsigned npools; /* alive pools; teardown waits for them */
    int closing;
    char err[512];
};

/* Probe capabilities, compile the filters, set up cgroup slots for up to
 * `maxslots` children and fork the zygote.  Call before uv_signal_start. */
int kiln__super_init(kiln__super_t *s, uv_loop_t *loop, uint32_t maxslots, char *err,
                     size_t errlen);
/* Close pools first (kiln__pool_close); once the last one is gone this stops
 * the zygote, closes the handles and removes the cgroups.  Run the loop
 * afterwards to finish closing. */
void kiln__super_close(kiln__super_t *s);

/* Describe a plugin by loading it in a sandboxed probe child (never in the
 * supervisor).  `cb` runs once; info->error is set if it was refused. */
typedef void (*kiln__probe_cb)(kiln__super_t *s, const kiln__plugin_info_t *info, void *arg);
int kiln__plugin_probe(kiln__super_t *s, const char *path, kiln__probe_cb cb, void *arg);

int kiln__pool_new(kiln__super_t *s, const kiln__pool_cfg_t *cfg, kiln__pool_t **out, char *err,
                   size_t errlen);
/* Queue a job; it runs as soon as a child is idle.  0 or -errno (the job's
 * callbacks then never run). */
int kiln__pool_submit(kiln__pool_t *p, kiln__job_t *job);
/* Children ready for a task right now, minus queued jobs (never negative). */
unsigned kiln__pool_idle(const kiln__pool_t *p);
unsigned kiln__pool_queued(const kiln__pool_t *p);
/* How many tasks marked fast may wait in a child behind the one it runs
 * (capped at the pool's maximum, 16; 0 = none). */
void kiln__pool_set_depth(kiln__pool_t *p, unsigned depth);
/* Tasks sent to children behind the ones they are running (not started). */
unsigned kiln__pool_behind(const kiln__pool_t *p);
/* Take back the jobs still waiting in the pool's own queue (never sent to a
 * child): the caller owns them again and their callbacks will not run.
 * Returns them as a list linked by ->next. */
kiln__job_t *kiln__pool_unqueue(kiln__pool_t *p);
/* How long (ms) the longest-running current task has run; 0 if none runs. */
uint64_t kiln__pool_longest_running(const kiln__pool_t *p);
/* Children that exist (started or running) and children idle right now. */
void kiln__pool_counts(const kiln__pool_t *p, unsigned *children, unsigned *idle);
/* Stop: queued jobs fail with "pool closed", running ones finish (or are
 * killed after `grace` seconds), children retire; then `cb` runs and the
 * pool is freed. */
void kiln__pool_close(kiln__pool_t *p, double grace, void (*cb)(void *arg), void *arg);

/* Fills defaults for fields left zero. */
void kiln__pool_cfg_defaults(kiln__pool_cfg_t *cfg);

#endif
