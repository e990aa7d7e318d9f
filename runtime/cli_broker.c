/*
 * cli_broker.c -- finding and reaching the broker for the CLI tools.
 */
#include "cli_broker.h"

#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
kiln__cli_broker_open(kiln__cli_broker_t *b, const char *broker_arg, const char *config_path)
{
    char err[2048];
    int rc;

    memset(b, 0, sizeof(*b));
    b->cfg = malloc(sizeof(*b->cfg));
    if (!b->cfg) {
        kiln__cli_error("out of memory");
        return KILN__EXIT_SYSTEM;
    }
    kiln__config_defaults(b->cfg);
    if (config_path && kiln__config_load(b->cfg, config_path, err, sizeof(err)) < 0) {
        kiln__cli_error("%s", err);
        return KILN__EXIT_USAGE;
    }
    rc = kiln__config_broker(b->cfg, broker_arg, &b->url, &b->embedded, err, sizeof(err));
    if (rc < 0) {
        kiln__cli_error("%s", err);
        /* A password file that cannot be read is set-up, not usage. */
        return rc == -EINVAL || rc == -EPERM ? KILN__EXIT_USAGE : KILN__EXIT_SYSTEM;
    }
    kiln__redis_url_format(&b->url, 0, b->addr, sizeof(b->addr));
    rc = kiln__redis_sync_open(&b->url, KILN__CLI_CONNECT_TIMEOUT, KILN__CLI_COMMAND_TIMEOUT,
                               &b->conn, err, sizeof(err));
    if (rc < 0) {
        if (b->embedded)
            kiln__cli_error("%s (no --broker, $KILN_BROKER_URL or config broker was given, so "
                            "kiln looked for the embedded broker that `kiln worker` starts)",
                            err);
        else
            kiln__cli_error("%s", err);
        return KILN__EXIT_SYSTEM;
    }
    return 0;
}

void
kiln__cli_broker_close(kiln__cli_broker_t *b)
{
    kiln__redis_sync_close(b->conn);
    b->conn = NULL;
    if (b->cfg)
        memset(&b->url.password, 0, sizeof(b->url.password));
    free(b->cfg);
    b->cfg = NULL;
}

int
kiln__cli_broker_fail(kiln__cli_broker_t *b, const char *what)
{
    kiln__cli_error("%s: %s", what, b->conn ? b->conn->errstr : "not connected");
    return KILN__EXIT_SYSTEM;
}
