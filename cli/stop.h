/* Ctrl-C for the training commands: the library's training loops take a
 * stop flag (train/run.h) and install no signal handler; the command does. */
#ifndef PG_CLI_STOP_H
#define PG_CLI_STOP_H

#include <signal.h>

/* From here to pg_cli_release_sigint, a first Ctrl-C sets the returned flag
 * (the run finishes its step, saves and stops); a second one kills the
 * process as Ctrl-C does by default. Release restores the previous
 * handler. */
volatile sig_atomic_t *pg_cli_catch_sigint(void);
void pg_cli_release_sigint(void);

#endif
