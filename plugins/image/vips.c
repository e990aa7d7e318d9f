/*
 * vips.c -- libvips, loaded by init rather than linked: image.so itself
 * needs only libc and jansson, so the probe child that reads the plugin's
 * task table does not map libvips and its ~100 libraries.  init, still under
 * the loader filter, opens libvips (the ABI this plugin was compiled
 * against, by soname), resolves every function the plugin calls, and starts
 * it.
 */
#include "image.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

image__vips_t image__vips;

int
image__vips_open(image__err_t *e)
{
    /* libtool's soname major: what VIPS_INIT() checks the library against. */
    int abi = VIPS_LIBRARY_CURRENT - VIPS_LIBRARY_AGE;
    char soname[64];
    void *lib;

    snprintf(soname, sizeof(soname), "libvips.so.%d", abi);
    lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return image__fail(e, "PluginInitError", "cannot load %s (Debian: libvips42): %s", soname,
                           dlerror());
#define IMAGE__VIPS_RESOLVE(f)                                                                     \
    image__vips.f = (__typeof__(image__vips.f))dlsym(lib, #f);                                     \
    if (!image__vips.f)                                                                            \
        return image__fail(e, "PluginInitError", "%s has no function %s", soname, #f);
    IMAGE__VIPS_FUNCTIONS(IMAGE__VIPS_RESOLVE)
#undef IMAGE__VIPS_RESOLVE
    if (image__vips.vips_version(3) - image__vips.vips_version(5) != abi)
        return image__fail(e, "PluginInitError", "%s has ABI %d, the plugin was built for %d",
                           soname, image__vips.vips_version(3) - image__vips.vips_version(5), abi);
    return 0;
}
