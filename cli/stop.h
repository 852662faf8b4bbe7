/* Ctrl-C for the training commands: the library's training loops take a
 * stop flag (train/run.h) and install no signal handler; the command does. */
#ifndef PG_CLI_STOP_H
#define PG_CLI_STOP_H

#include <signal.h>
#include <stdbool.h>

#include "patchgrad/dist/dist.h"

/* From here to pg_cli_release_sigint, a first Ctrl-C sets the returned flag
 * (the run finishes its step, saves and stops); a second one kills the
 * process as Ctrl-C does by default. Release restores the previous
 * handler. */
volatile sig_atomic_t *pg_cli_catch_sigint(void);
void pg_cli_release_sigint(void);
/* SIGTERM (what mpirun and batch systems send) is caught the same way. */

/* The training commands under mpirun/srun: joins MPI when launched by it
 * (dist.h); 0, or 1 after printing the error as "patchgrad WHO: ...". */
int pg_cli_dist_start(pg_dist *d, const char *who);
/* Ends the process's part in MPI and returns `code`; when the run failed
 * with an error of this rank alone (printed already), ends every rank
 * with pg_dist_abort instead, as the others may wait for it. */
int pg_cli_dist_end(pg_dist *d, pg_status st, bool local_error, int code);

#endif
