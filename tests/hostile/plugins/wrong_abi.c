/* hostile_wrong_abi: a plugin that claims ABI 99.0.  The kiln_plugin_t is
 * built by hand instead of with KILN_PLUGIN(), which would stamp the real
 * version.  kiln must refuse it, saying which versions, without calling into
 * it: wrong_abi.ok never runs. */
#include <kiln/kiln.h>

static int
ok(kiln_ctx_t *ctx)
{
    return kiln_set_result(ctx, json_string("ok"));
}

static const kiln_task_t tasks[] = {{"wrong_abi.ok", ok}, {NULL, NULL}};
KILN_POLICY(policy, .profile = "compute", .time_limit = 20);

KILN_HIDDEN const kiln_api_t *kiln__api;
KILN_EXPORT const kiln_plugin_t kiln_plugin = {.abi_major = 99,
                                               .abi_minor = 0,
                                               .size = sizeof(kiln_plugin_t),
                                               .name = "hostile_wrong_abi",
                                               .version = "1.0.0",
                                               .tasks = tasks,
                                               .policy = &policy,
                                               .api = &kiln__api};
