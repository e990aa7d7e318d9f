/*
 * main.c -- kiln's entry point: dispatch to a subcommand.
 */
#include "cli.h"
#include "kiln_config.h"

#include <kiln/kiln.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: kiln [--help] [--version] COMMAND [ARGS]\n"
    "\n"
    "Run Celery tasks in sandboxed, pre-forked children.\n"
    "\n"
    "commands:\n"
    "  worker                 consume Celery tasks from Redis with sandboxed pools\n"
    "  submit TASK            send a task in Celery's format (--wait for its result)\n"
    "  status                 queue depths, workers and their in-flight tasks, dead letters\n"
    "  dlq list|requeue|purge the dead-letter list\n"
    "  run PLUGIN.so TASK     run one task (or --batch FILE) in a sandboxed child, no broker\n"
    "  plugins DIR            list the plugins in DIR, their tasks and policies\n"
    "  sandbox-check          show which protections this machine gives children\n"
    "\n"
    "Run 'kiln COMMAND --help' for a command's options.\n"
    "\n"
    "exit status: 0 success, 1 task failed, 2 usage error, 3 plugin refused,\n"
    "4 kiln could not set up its sandbox or reach the broker.\n";

int
main(int argc, char **argv)
{
    const char *cmd;

    /* A peer that goes away (Redis restarting, a child dying) must be an
     * EPIPE on that connection, never a signal that kills the supervisor. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fputs(usage, stderr);
        return KILN__EXIT_USAGE;
    }
    cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return KILN__EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("kiln %s (plugin ABI %d.%d)\n", KILN_VERSION, KILN_ABI_MAJOR, KILN_ABI_MINOR);
        return KILN__EXIT_OK;
    }
    if (strcmp(cmd, "run") == 0)
        return kiln__cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "plugins") == 0)
        return kiln__cmd_plugins(argc - 1, argv + 1);
    if (strcmp(cmd, "worker") == 0)
        return kiln__cmd_worker(argc - 1, argv + 1);
    if (strcmp(cmd, "submit") == 0)
        return kiln__cmd_submit(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return kiln__cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "dlq") == 0)
        return kiln__cmd_dlq(argc - 1, argv + 1);
    if (strcmp(cmd, "sandbox-check") == 0)
        return kiln__cmd_sandbox_check(argc - 1, argv + 1);
    kiln__cli_error("unknown command \"%s\"; run 'kiln --help' for the list", cmd);
    return KILN__EXIT_USAGE;
}
