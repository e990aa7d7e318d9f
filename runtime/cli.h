/*
 * cli.h -- the kiln command line: one function per subcommand.
 * Each returns the process exit status (see main.c for their meaning).
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <jansson.h>

#define KILN__EXIT_OK      0 /* the task (or every task) succeeded */
#define KILN__EXIT_FAILED  1 /* a task failed; the cause is on stderr */
#define KILN__EXIT_USAGE   2 /* bad command line or input */
#define KILN__EXIT_REFUSED 3 /* the plugin was refused (load error, ABI, constructor) */
#define KILN__EXIT_SYSTEM  4 /* kiln could not set up (sandbox, zygote, ...) */

int kiln__cmd_run(int argc, char **argv);
int kiln__cmd_plugins(int argc, char **argv);
int kiln__cmd_sandbox_check(int argc, char **argv);
int kiln__cmd_worker(int argc, char **argv);
int kiln__cmd_submit(int argc, char **argv);
int kiln__cmd_status(int argc, char **argv);
int kiln__cmd_dlq(int argc, char **argv);

/* Parse --args (want_array) or --kwargs JSON into *out (replacing it); on
 * error prints a message naming the option and the cause and returns -1. */
int kiln__cli_json_arg(const char *opt, const char *text, int want_array, json_t **out);

/* Print "kiln: <message>" on stderr. */
void kiln__cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log the protections the sandbox lacks on this machine (never silently less). */
struct kiln__super;
void kiln__cli_report_sandbox(const struct kiln__super *s, int verbose);

#endif
