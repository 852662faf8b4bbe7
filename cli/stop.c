#include "stop.h"

#include "args.h"

#include <stddef.h>
#include <stdio.h>

static volatile sig_atomic_t stop_requested;
static struct sigaction previous_int, previous_term, previous_usr1;

static void on_stop(int sig) {
  if (stop_requested) { /* the second one: die of it */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  stop_requested = sig;
}

volatile sig_atomic_t *pg_cli_catch_sigint(void) {
  stop_requested = 0;
  /* SA_RESTART: a system call the signal interrupts (a read of the data,
   * MPI's own waits) resumes instead of failing with EINTR */
  struct sigaction sa = {.sa_handler = on_stop, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &previous_int);
  sigaction(SIGTERM, &sa, &previous_term);
  sigaction(SIGUSR1, &sa, &previous_usr1);
  return &stop_requested;
}

void pg_cli_release_sigint(void) {
  sigaction(SIGINT, &previous_int, NULL);
  sigaction(SIGTERM, &previous_term, NULL);
  sigaction(SIGUSR1, &previous_usr1, NULL);
}

int pg_cli_stop_status(void) { return 128 + (stop_requested ? (int)stop_requested : SIGINT); }

int pg_cli_dist_start(pg_dist *d, const char *who) {
  if (!pg_dist_init(d, NULL, NULL)) return 0;
  pg_cli_print_error(who, pg_last_error());
  return 1;
}

int pg_cli_dist_end(pg_dist *d, pg_status st, bool local_error, int code) {
  if (st && local_error) pg_dist_abort(d, code); /* other ranks may wait for this one */
  pg_dist_finalize(d);
  return code;
}
