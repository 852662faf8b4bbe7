/* Bucketed, overlapped gradient averaging (reducer.h). */
#include "patchgrad/dist/reducer.h"
#include "mpi_error.h"
#include "patchgrad/autograd/op.h"
#include "patchgrad/autograd/tape.h"

#include <stdint.h>
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

struct pg_reducer_leaf {
  const pg_tensor *tensor;
  int index; /* its parameter entry */
};

static int by_address(const void *a, const void *b) {
  const uintptr_t x = (uintptr_t)((const struct pg_reducer_leaf *)a)->tensor;
  const uintptr_t y = (uintptr_t)((const struct pg_reducer_leaf *)b)->tensor;
  return (x > y) - (x < y);
}

/* The parameter entry of a trainable tensor, -1 for any other tensor. */
static int entry_of(const pg_reducer *r, const pg_tensor *t) {
  int lo = 0, hi = r->n_leaves - 1;
  while (lo <= hi) {
    const int mid = lo + (hi - lo) / 2;
    const pg_tensor *m = r->by_address[mid].tensor;
    if (m == t) return r->by_address[mid].index;
    if ((uintptr_t)m < (uintptr_t)t) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

static void reset_pending(pg_reducer *r) {
  for (int i = 0; r->ready && i < r->params->count; i++) r->ready[i] = false;
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
  free(r->ready);
  free(r->uses);
  free(r->by_address);
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
  r->ready = calloc((size_t)(n ? n : 1), sizeof(bool));
  r->uses = calloc((size_t)(n ? n : 1), sizeof(int));
  r->by_address = malloc(sizeof(struct pg_reducer_leaf) * (size_t)(n ? n : 1));
  if (!r->offset || !r->bucket_of || !r->buckets || !r->ready || !r->uses || !r->by_address) goto oom;
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
    r->by_address[r->n_leaves++] = (struct pg_reducer_leaf){t, i};
    cur->params++;
    at += t->numel;
    cur->end = at;
  }
  r->numel = at;
  qsort(r->by_address, (size_t)r->n_leaves, sizeof *r->by_address, by_address);
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
  if (b < 0 || r->ready[index]) return PG_OK;
  r->ready[index] = true;
  r->buckets[b].pending--;
  if (r->dist->size == 1) return PG_OK;
  const double t0 = seconds();
  const pg_status st = start_ready(r, false);
  r->start_seconds += seconds() - t0;
  return st;
}

/* The sweep's hook: the inputs of a swept record lose one pending reader. */
typedef struct {
  pg_reducer *r;
  pg_status st;
} sweep;

static void after_record(void *self, const pg_node *n) {
  sweep *s = self;
  for (int k = 0; k < n->n_in; k++) {
    const pg_tensor *in = n->in[k];
    if (!in || in->node) continue;
    const int i = entry_of(s->r, in);
    if (i >= 0 && --s->r->uses[i] == 0 && !s->st) s->st = pg_reducer_param_ready(s->r, i);
  }
}

pg_status pg_reducer_backward(pg_reducer *r, pg_ctx *ctx, pg_tensor *loss) {
  if (!loss || !loss->node || loss->numel != 1) return pg_backward(ctx, loss); /* its result or message */
  for (int i = 0; i < r->params->count; i++) r->uses[i] = 0;
  for (const pg_node *n = loss->node; n; n = n->prev)
    for (int k = 0; k < n->n_in; k++) {
      const pg_tensor *in = n->in[k];
      const int i = in && !in->node ? entry_of(r, in) : -1;
      if (i >= 0) r->uses[i]++;
    }
  sweep s = {r, PG_OK};
  const float one = 1.0f;
  const pg_status st = pg_backward_hooked(ctx, loss, &one, after_record, &s);
  return st ? st : s.st;
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
