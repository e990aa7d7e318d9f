/*
 * scripts.h -- Lua scripts run in Redis by the worker (see scripts.c).
 */
#ifndef KILN_SCRIPTS_H
#define KILN_SCRIPTS_H

extern const char kiln__lua_fetch[];
extern const char kiln__lua_ack[];
extern const char kiln__lua_ack1[];
extern const char kiln__lua_defer[];
extern const char kiln__lua_dead[];
extern const char kiln__lua_requeue[];
extern const char kiln__lua_reclaim[];
extern const char kiln__lua_recover[];
extern const char kiln__lua_eta[];
extern const char kiln__lua_death[];
extern const char kiln__lua_breaker_update[];
extern const char kiln__lua_breaker_probe[];

#endif
