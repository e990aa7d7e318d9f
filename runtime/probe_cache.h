/*
 * probe_cache.h -- plugin descriptions remembered between `kiln run`s
 * (probe_cache.c says how and why).
 */
#ifndef KILN_PROBE_CACHE_H
#define KILN_PROBE_CACHE_H

#include <jansson.h>

/* The description a probe child gave for this very plugin file (same path,
 * inode, size and mtime, same kiln version), or NULL: probe it.  New
 * reference. */
json_t *kiln__probe_cache_get(const char *plugin);

/* Remember a successful probe's description.  Failures are silent: the
 * cache only saves time. */
void kiln__probe_cache_put(const char *plugin, const json_t *hello);

#endif
