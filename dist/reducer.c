/* Bucketed, overlapped gradient averaging (reducer.h). */
#include "patchgrad/dist/reducer.h"
#include "mpi_error.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef PG_HAVE_MPI
#include <mpi.h>
#endif

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void reset_pending(pg_reducer *r) {
  for (int b = 0; b < r->bucket_count; b++) {
    r->buckets[b].pending = r->buckets[b].params;
    r->buckets[b].started = false;
  }
  r->next_to_start = 0;
}

/* The reducer's own arrays, freed; r is left empty. */
static void release(pg_reducer *r) {
  free(r->offset);
  free(r->bucket_of);
  free(r->buckets);
  free(r->flat);
  free(r->requests);
  memset(r, 0, sizeof *r);
}

pg_status pg_reducer_init(pg_reducer *r, const pg_dist *dist, pg_params *params, size_t bucket_bytes) {
  memset(r, 0, sizeof *r);
  if (bucket_bytes < sizeof(float))
    return pg_fail(PG_ERR_ARG, "pg_reducer_init: bucket_bytes %zu is below one float", bucket_bytes);
  r->dist = dist;
  r->params = params;
  const int n = params->count;
  r->offset = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  r->bucket_of = malloc(sizeof(int) * (size_t)(n ? n : 1));
  r->buckets = calloc((size_t)(n ? n : 1), sizeof(pg_bucket)); /* at most one bucket per parameter */
  if (!r->offset || !r->bucket_of || !r->buckets) goto oom;
  /* reverse parameter order: the last parameters' gradients are final first */
  const int64_t per_bucket = (int64_t)(bucket_bytes / sizeof(float));
  int64_t at = 0;
  for (int i = n - 1; i >= 0; i--) {
    const pg_tensor *t = params->items[i].tensor;
    r->offset[i] = -1;
    r->bucket_of[i] = -1;
    if (!t->requires_grad || !t->grad) continue;
    pg_bucket *cur = r->bucket_count ? &r->buckets[r->bucket_count - 1] : NULL;
    if (!cur || cur->end - cur->begin >= per_bucket) {
      cur = &r->buckets[r->bucket_count++];
      cur->begin = cur->end = at;
    }
    r->offset[i] = at;
    r->bucket_of[i] = r->bucket_count - 1;
    cur->params++;
    at += t->numel;
    cur->end = at;
  }
  r->numel = at;
  if (posix_memalign((void **)&r->flat, 64, sizeof(float) * (size_t)(at ? at : 1))) {
    r->flat = NULL;
    goto oom;
  }
#ifdef PG_HAVE_MPI
  r->requests = malloc(sizeof(MPI_Request) * (size_t)(r->bucket_count ? r->bucket_count : 1));
  if (!r->requests) goto oom;
  for (int b = 0; b < r->bucket_count; b++) ((MPI_Request *)r->requests)[b] = MPI_REQUEST_NULL;
#endif
  /* adopt: each gradient moves into its place in the flat buffer */
  for (int i = 0; i < n; i++) {
    if (r->offset[i] < 0) continue;
    pg_tensor *t = params->items[i].tensor;
    float *dst = r->flat + r->offset[i];
    memcpy(dst, t->grad, sizeof(float) * (size_t)t->numel);
    free(t->grad);
    t->grad = dst;
  }
  reset_pending(r);
  return PG_OK;
oom:
  release(r);
  return pg_fail(PG_ERR_MEMORY, "pg_reducer_init: out of memory for %d parameters", n);
}

void pg_reducer_free(pg_reducer *r) {
  if (!r->params) return;
  /* give every parameter a gradient buffer of its own again */
  for (int i = 0; i < r->params->count; i++) {
    if (r->offset[i] < 0) continue;
    pg_tensor *t = r->params->items[i].tensor;
    float *own = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (own) memcpy(own, t->grad, sizeof(float) * (size_t)t->numel);
    t->grad = own; /* NULL only if out of memory: the tensor then has no gradient */
  }
  release(r);
}


/* Starts buckets next_to_start.. while they are complete. */
static pg_status start_ready(pg_reducer *r, bool all) {
#ifdef PG_HAVE_MPI
  MPI_Request *req = r->requests;
  MPI_Comm comm = *(MPI_Comm *)r->dist->comm;
  while (r->next_to_start < r->bucket_count) {
    pg_bucket *b = &r->buckets[r->next_to_start];
    if (!all && b->pending > 0) break;
    const int64_t len = b->end - b->begin; /* a bucket is < 2^31 floats: bucket_bytes is a size_t of MiB */
    const int rc = MPI_Iallreduce(MPI_IN_PLACE, r->flat + b->begin, (int)len, MPI_FLOAT, MPI_SUM, comm,
                                  &req[r->next_to_start]);
    if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Iallreduce");
    b->started = true;
    r->next_to_start++;
  }
  /* MPI moves non-blocking collectives forward only inside MPI calls */
  if (r->next_to_start > 0) {
    int done = 0;
    const int rc = MPI_Testall(r->next_to_start, req, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Testall");
  }
#else
  (void)all;
  r->next_to_start = r->bucket_count;
#endif
  return PG_OK;
}

pg_status pg_reducer_param_ready(pg_reducer *r, int index) {
  if (index < 0 || index >= r->params->count)
    return pg_fail(PG_ERR_ARG, "pg_reducer_param_ready: index %d outside [0, %d)", index, r->params->count);
  const int b = r->bucket_of[index];
  if (b < 0 || r->buckets[b].pending == 0) return PG_OK;
  r->buckets[b].pending--;
  if (r->dist->size == 1) return PG_OK;
  const double t0 = seconds();
  const pg_status st = start_ready(r, false);
  r->start_seconds += seconds() - t0;
  return st;
}

pg_status pg_reducer_finish(pg_reducer *r) {
  r->steps++;
  if (r->dist->size == 1) {
    reset_pending(r);
    return PG_OK;
  }
  const double t0 = seconds();
  pg_status st = start_ready(r, true);
#ifdef PG_HAVE_MPI
  if (!st) {
    const int rc = MPI_Waitall(r->bucket_count, r->requests, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) st = pg_dist_mpi_fail(rc, "MPI_Waitall");
  }
#endif
  r->wait_seconds += seconds() - t0;
  if (st) return st;
  const float scale = 1.0f / (float)r->dist->size;
  for (int64_t i = 0; i < r->numel; i++) r->flat[i] *= scale;
  reset_pending(r);
  return PG_OK;
}
