/*
 * cli_broker.h -- what the broker-facing commands (`kiln submit`, `kiln
 * status`, `kiln dlq`) share: finding the broker and connecting to it.
 */
#ifndef KILN_CLI_BROKER_H
#define KILN_CLI_BROKER_H

#include "config.h"
#include "redis_sync.h"

#define KILN__CLI_CONNECT_TIMEOUT 5.0  /* seconds to reach the broker */
#define KILN__CLI_COMMAND_TIMEOUT 60.0 /* seconds for one command's reply */

typedef struct kiln__cli_broker {
    kiln__config_t *cfg;      /* defaults, plus --config FILE when given (owned) */
    kiln__redis_url_t url;    /* where the broker is, password included */
    int embedded;             /* 1: no broker was named; url is the embedded one's socket */
    kiln__redis_sync_t *conn; /* the connection (owned) */
    char addr[PATH_MAX + 64]; /* url without its password, for messages */
} kiln__cli_broker_t;

/* Load --config (NULL: none), resolve the broker (--broker, $KILN_BROKER_URL,
 * the config's broker, the embedded socket) and connect.  Returns 0, or the
 * exit status after printing why: KILN__EXIT_USAGE for a bad config or URL
 * (or a password on the command line), KILN__EXIT_SYSTEM when the broker
 * cannot be reached (the message names its address and the cause). */
int kiln__cli_broker_open(kiln__cli_broker_t *b, const char *broker_arg, const char *config_path);
void kiln__cli_broker_close(kiln__cli_broker_t *b);
/* Print the connection's last error (naming the broker) after `what`, and
 * return KILN__EXIT_SYSTEM. */
int kiln__cli_broker_fail(kiln__cli_broker_t *b, const char *what);

#endif
