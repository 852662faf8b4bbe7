#include "patchgrad/io/training_run.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

pg_status pg_run_make_dir(const char *who, const char *dir) {
  if (mkdir(dir, 0755) && errno != EEXIST)
    return pg_fail(PG_ERR_IO, "%s: cannot create the output folder %s: %s", who, dir, strerror(errno));
  return PG_OK;
}

const char *pg_run_file(char *path, const char *dir, const char *name) {
  snprintf(path, PG_RUN_PATH_MAX, "%s/%s", dir, name);
  return path;
}

pg_loader *pg_run_open_loader(const char *path, int64_t batch, uint64_t seed) {
  pg_loader_opts lo;
  pg_loader_opts_init(&lo);
  lo.batch_size = batch;
  lo.drop_last = true;
  lo.in_memory = true;
  lo.seed = seed;
  return pg_loader_open(path, &lo);
}

pg_status pg_run_alloc_batch(const char *who, int64_t batch, int64_t per_sample, float **x,
                             int64_t **labels) {
  *x = malloc((size_t)(batch * per_sample) * sizeof(float));
  *labels = malloc((size_t)batch * sizeof(int64_t));
  if (!*x || !*labels) return pg_fail(PG_ERR_MEMORY, "%s: out of memory for a batch", who);
  return PG_OK;
}

double pg_run_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile sig_atomic_t interrupted;
static struct sigaction previous;

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

void pg_run_catch_sigint(void) {
  interrupted = 0;
  struct sigaction sa = {.sa_handler = on_sigint};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &previous);
}

bool pg_run_interrupted(void) { return interrupted; }

void pg_run_release_sigint(void) { sigaction(SIGINT, &previous, NULL); }
