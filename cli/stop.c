#include "stop.h"

#include <stddef.h>

static volatile sig_atomic_t stop_requested;
static struct sigaction previous;

static void on_sigint(int sig) {
  if (stop_requested) { /* the second one: die of it */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  stop_requested = 1;
}

volatile sig_atomic_t *pg_cli_catch_sigint(void) {
  stop_requested = 0;
  struct sigaction sa = {.sa_handler = on_sigint};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &previous);
  return &stop_requested;
}

void pg_cli_release_sigint(void) { sigaction(SIGINT, &previous, NULL); }
