/* Ctrl-C and SIGTERM for the training commands: the library's training
 * loops take a stop flag (train/run.h) and install no signal handler; the
 * command does. */
#ifndef PG_CLI_STOP_H
#define PG_CLI_STOP_H

#include <signal.h>
#include <stdbool.h>

#include "patchgrad/dist/dist.h"

/* From here to pg_cli_release_sigint, a first SIGINT (Ctrl-C), SIGTERM
 * (what schedulers and `timeout` send) or SIGUSR1 (what OpenMPI's mpirun
 * forwards to every rank without aborting the job) sets the returned flag
 * to the signal's number: the run finishes its step, saves and stops. A second
 * one kills the process as the signal does by default. Release restores
 * the previous handlers. */
volatile sig_atomic_t *pg_cli_catch_sigint(void);
void pg_cli_release_sigint(void);

/* The training commands under mpirun/srun: joins MPI when launched by it
 * (dist.h); 0, or 1 after printing the error as "patchgrad WHO: ...". */
int pg_cli_dist_start(pg_dist *d, const char *who);
/* Ends the process's part in MPI and returns `code`; when the run failed
 * with an error of this rank alone (printed already), ends every rank
 * with pg_dist_abort instead, as the others may wait for it. */
int pg_cli_dist_end(pg_dist *d, pg_status st, bool local_error, int code);

/* The exit status of a run the flag stopped: 128 + the signal that set it,
 * as a shell reports a process that signal killed (130 for SIGINT, 143 for
 * SIGTERM); 130 when no signal reached this process (under MPI, another
 * rank's stopped the run). */
int pg_cli_stop_status(void);

#endif
