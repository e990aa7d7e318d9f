/*
 * worker.h -- the Celery-compatible worker: fetch from Redis only for idle
 * children, run in pools, write Celery's results, ack late.
 *
 * The worker owns its Redis connections (one for commands, one blocking
 * "waiter" per queue key while it has idle children and nothing to fetch),
 * its heartbeat, recovery of dead workers' in-flight messages, the ETA set,
 * retries, poison detection, dead letters and circuit breakers.  It never
 * blocks and never runs plugin code: tasks run in the pools' children.
 */
#ifndef KILN_WORKER_H
#define KILN_WORKER_H

#include "config.h"
#include "pool.h"

#include <jansson.h>
#include <uv.h>

typedef struct kiln__worker kiln__worker_t;

/* Create a worker on `loop` with the config (copied) and the broker and
 * result-backend locations.  Returns 0 or -errno with a message. */
int kiln__worker_new(uv_loop_t *loop, const kiln__config_t *cfg, const kiln__redis_url_t *broker,
                     const kiln__redis_url_t *backend, kiln__worker_t **out, char *err,
                     size_t errlen);
/* Serve the tasks named in `tasks` (a JSON array of names, borrowed) with
 * `pool` (whose cfg.on_idle should be kiln__worker_kick with this worker). */
int kiln__worker_add_pool(kiln__worker_t *w, const char *plugin, const json_t *tasks,
                          kiln__pool_t *pool);
/* Connect and start fetching.  `stopped` runs once, after a shutdown (asked
 * for, or the worker's own, e.g. refusing an evicting Redis) has put every
 * message back in Redis or acked it and closed the connections. */
void kiln__worker_start(kiln__worker_t *w, void (*stopped)(void *arg), void *arg);
/* Warm (cold = 0): stop fetching, let running tasks finish within the grace
 * period, requeue the rest.  Cold: requeue everything in flight now.  Calling
 * it again with cold = 1 turns a warm shutdown cold. */
void kiln__worker_shutdown(kiln__worker_t *w, int cold);
/* For a pool's on_idle: a child became free, fetch for it.  arg = worker. */
void kiln__worker_kick(void *arg);
/* Nonzero if the worker refused to run (the reason was logged). */
int kiln__worker_failed(const kiln__worker_t *w);
const char *kiln__worker_id(const kiln__worker_t *w);
/* Before start: Redis is expected to come up within `ms` (an embedded
 * redis-server starting); failures to connect are not logged until then. */
void kiln__worker_quiet_start(kiln__worker_t *w, uint64_t ms);
void kiln__worker_free(kiln__worker_t *w);

#endif
