/*
 * scripts.c -- the Lua scripts that make the worker's Redis state changes
 * atomic (see docs/redis-keys.md).  Each runs as one unit in Redis: a
 * message is always in a queue, in some worker's in-flight hash, in the ETA
 * set or in the dead-letter list, never in two and never in none.
 *
 * Common trailing arguments of the scripts that finish a message: a result
 * key (last KEYS entry), its meta (ARGV) and expiry in seconds; an empty meta
 * writes no result.  The result is written before the in-flight entry is
 * removed, and a failing write aborts the script before that removal.
 */
#include "scripts.h"

/* In-flight entries live in one hash per worker: field "<seq>\t<queue key>"
 * (the delivery tag: where the message goes back on recovery), value the raw
 * message. */
#define QUEUE_OF(F) "string.sub(" F ", (string.find(" F ", '\\t', 1, true) or 0) + 1)"

/* KEYS: inflight, queue keys in precedence order...
 * ARGV: messages for idle children (taken whatever they are), messages to
 * take ahead (only while the next one matches one of the patterns: tasks
 * known to be fast), first sequence number, patterns...
 * Returns {tag, message, ...}. */
const char kiln__lua_fetch[] =
    "local n = tonumber(ARGV[1]) local ahead = tonumber(ARGV[2]) local seq = tonumber(ARGV[3])\n"
    "local out = {} local fields = {} local took = 0\n"
    "local function fast(m)\n"
    "  for j = 4, #ARGV do if string.find(m, ARGV[j], 1, true) then return true end end\n"
    "  return false\n"
    "end\n"
    /* A few calls per fetch, not per message: the oldest messages are the
     * list's tail (kombu LPUSHes), read with LRANGE and cut with LTRIM. */
    "for i = 2, #KEYS do\n"
    "  local want = n + ahead - took\n"
    "  if want <= 0 then break end\n"
    "  local ms = redis.call('LRANGE', KEYS[i], -want, -1)\n"
    "  local k = 0\n"
    "  for x = #ms, 1, -1 do\n"
    "    local m = ms[x]\n"
    "    if took >= n and not fast(m) then break end\n"
    "    local tag = seq .. '\\t' .. KEYS[i]\n"
    "    seq = seq + 1 took = took + 1 k = k + 1\n"
    "    fields[#fields + 1] = tag fields[#fields + 1] = m\n"
    "    out[#out + 1] = tag out[#out + 1] = m\n"
    "  end\n"
    "  if k > 0 then redis.call('LTRIM', KEYS[i], 0, -k - 1) end\n"
    "  if k < #ms then break end\n"
    "end\n"
    "if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end\n"
    "return out\n";

#define WRITE_RESULT(K, A)                                                                         \
    "if ARGV[" #A "] ~= '' then\n"                                                                 \
    "  if tonumber(ARGV[" #A " + 1]) > 0 then\n"                                                   \
    "    redis.call('SET', KEYS[" #K "], ARGV[" #A "], 'EX', ARGV[" #A " + 1])\n"                  \
    "  else redis.call('SET', KEYS[" #K "], ARGV[" #A "]) end\n"                                   \
    "  redis.call('PUBLISH', KEYS[" #K "], ARGV[" #A "])\n"                                        \
    "end\n"

/* KEYS: inflight, then result keys.  ARGV: expires, then (tag, meta) pairs,
 * one per result key: many tasks acked in one call. */
const char kiln__lua_ack[] = "local ex = tonumber(ARGV[1]) local tags = {}\n"
                             "for i = 2, #KEYS do\n"
                             "  local meta = ARGV[2 * i - 1]\n"
                             "  if meta ~= '' then\n"
                             "    if ex > 0 then redis.call('SET', KEYS[i], meta, 'EX', ex)\n"
                             "    else redis.call('SET', KEYS[i], meta) end\n"
                             "    redis.call('PUBLISH', KEYS[i], meta)\n"
                             "  end\n"
                             "  tags[#tags + 1] = ARGV[2 * i - 2]\n"
                             "end\n"
                             "if #tags > 0 then redis.call('HDEL', KEYS[1], unpack(tags)) end\n"
                             "return #KEYS - 1\n";

/* KEYS: inflight, result key.  ARGV: tag, meta, expires.  One ack. */
const char kiln__lua_ack1[] = WRITE_RESULT(2, 2) "redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                                 "return 1\n";

/* KEYS: inflight, eta, result key.
 * ARGV: tag, eta member, score ms, meta, expires. */
const char kiln__lua_defer[] = WRITE_RESULT(3, 4) "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])\n"
                                                  "redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                                  "return 1\n";

/* KEYS: inflight, dlq, result key.  ARGV: tag, entry, meta, expires. */
const char kiln__lua_dead[] = WRITE_RESULT(3, 3) "redis.call('LPUSH', KEYS[2], ARGV[2])\n"
                                                 "redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                                 "return 1\n";

/* KEYS: inflight.  ARGV: tag.  Back to the consumer end of the queue named
 * in the tag: it runs next. */
const char kiln__lua_requeue[] =
    "local m = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if m then redis.call('RPUSH', " QUEUE_OF("ARGV[1]") ", m) end\n"
                                                         "redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                                         "return m and 1 or 0\n";

/* KEYS: inflight.  ARGV: tags to keep (known locally).  Every other entry of
 * this worker goes back to its queue (after a reconnect: a fetch whose
 * answer was lost). */
const char kiln__lua_reclaim[] =
    "local keep = {}\n"
    "for i = 1, #ARGV do keep[ARGV[i]] = true end\n"
    "local all = redis.call('HGETALL', KEYS[1]) local n = 0\n"
    "for i = 1, #all, 2 do\n"
    "  local f = all[i]\n"
    "  if not keep[f] then\n"
    "    redis.call('RPUSH', " QUEUE_OF("f") ", all[i + 1])\n"
                                             "    redis.call('HDEL', KEYS[1], f)\n"
                                             "    n = n + 1\n"
                                             "  end\n"
                                             "end\n"
                                             "return n\n";

/* KEYS: kiln:workers.  ARGV: prefix ("kiln:").  Every worker whose heartbeat
 * key expired gets its in-flight messages pushed back.  Returns the count. */
const char kiln__lua_recover[] =
    "local p = ARGV[1] local moved = 0\n"
    "for _, w in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do\n"
    "  if redis.call('EXISTS', p .. 'hb:' .. w) == 0 then\n"
    "    local inf = redis.call('HGETALL', p .. 'inflight:' .. w)\n"
    "    for i = 1, #inf, 2 do\n"
    "      local f = inf[i]\n"
    "      redis.call('RPUSH', " QUEUE_OF(
        "f") ", inf[i + 1])\n"
             "      moved = moved + 1\n"
             "    end\n"
             "    redis.call('DEL', p .. 'inflight:' .. w, p .. 'worker:' .. w)\n"
             "    redis.call('ZREM', KEYS[1], w)\n"
             "  end\n"
             "end\n"
             "return moved\n";

/* KEYS: kiln:eta.  ARGV: now ms, limit.  Moves due members
 * "<queue key>\n<message>" to the consumer end of their queue. */
const char kiln__lua_eta[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
    "for _, m in ipairs(due) do\n"
    "  local nl = string.find(m, '\\n', 1, true)\n"
    "  if nl then redis.call('RPUSH', string.sub(m, 1, nl - 1), string.sub(m, nl + 1)) end\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "end\n"
    "return #due\n";

/* KEYS: deaths key.  ARGV: entry, ttl seconds.  Returns every death so far. */
const char kiln__lua_death[] = "redis.call('RPUSH', KEYS[1], ARGV[1])\n"
                               "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
                               "return redis.call('LRANGE', KEYS[1], 0, -1)\n";

/* KEYS: breaker hash.  ARGV: outcome (1 ok, 0 failure), threshold, now ms.
 * Returns {state, failures, opened_at}. */
const char kiln__lua_breaker_update[] =
    "local st = redis.call('HGET', KEYS[1], 'state') or 'closed'\n"
    "local f = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')\n"
    "local at = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')\n"
    "if ARGV[1] == '1' then st = 'closed' f = 0\n"
    "else\n"
    "  f = f + 1\n"
    "  if st == 'half_open' or f >= tonumber(ARGV[2]) then st = 'open' at = tonumber(ARGV[3]) end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'state', st, 'failures', f, 'opened_at', at)\n"
    "redis.call('HDEL', KEYS[1], 'probe')\n"
    "return {st, tostring(f), tostring(at)}\n";

/* KEYS: breaker hash.  ARGV: worker id, now ms, reset ms.  Take the
 * half-open probe if the reset timeout has passed.  Returns {state,
 * failures, opened_at, granted (1/0)}. */
const char kiln__lua_breaker_probe[] =
    "local st = redis.call('HGET', KEYS[1], 'state') or 'closed'\n"
    "local f = redis.call('HGET', KEYS[1], 'failures') or '0'\n"
    "local at = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')\n"
    "local ok = 0\n"
    "if st == 'closed' then ok = 1\n"
    "elseif st == 'open' and tonumber(ARGV[2]) >= at + tonumber(ARGV[3]) then\n"
    "  st = 'half_open' ok = 1\n"
    "  redis.call('HSET', KEYS[1], 'state', st, 'probe', ARGV[1])\n"
    "end\n"
    "return {st, tostring(f), tostring(at), tostring(ok)}\n";
