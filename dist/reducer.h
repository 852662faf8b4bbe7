/* Gradient averaging for data-parallel training, as DDP's Reducer: the
 * gradients of all trainable parameters live in one flat float32 buffer,
 * laid out in reverse parameter order (the order backward finishes them),
 * cut into buckets of about `bucket_bytes`; a bucket is summed over ranks
 * with a non-blocking MPI_Iallreduce as soon as every gradient in it is
 * final, so communication overlaps the rest of the backward sweep.
 *
 *   pg_reducer r;
 *   pg_reducer_init(&r, &dist, &params, 2 << 20);  // adopts every grad buffer
 *   per step: forward; pg_reducer_backward(&r, ctx, loss) (backward that
 *             marks each parameter ready as its gradient becomes final,
 *             or a plain backward with pg_reducer_param_ready calls of
 *             your own, or none: finish starts what is left);
 *             pg_reducer_finish(&r) -> gradients are averaged over ranks;
 *             clip; optimizer step; zero_grad
 *   pg_reducer_free(&r);                            // gives the buffers back
 *
 * Buckets start strictly in bucket order on every rank (MPI requires
 * collectives in the same order everywhere); a bucket that becomes ready
 * before an earlier one waits for it. With one rank every call is a no-op
 * apart from the bookkeeping, and the gradients are untouched (not even
 * multiplied by 1).
 *
 * Ownership: the reducer owns the flat buffer while it lives; each
 * parameter's tensor->grad points into it. pg_reducer_free copies the
 * gradients back into buffers of their own, so the parameters outlive it. */
#ifndef PG_REDUCER_H
#define PG_REDUCER_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/tensor.h"
#include "patchgrad/dist/dist.h"

typedef struct {
  int64_t begin, end;   /* element range in the flat buffer */
  int pending;          /* gradients not yet final this step */
  int params;           /* how many parameters it holds */
  bool started;
  void *request;        /* MPI_Request * while in flight */
} pg_bucket;

typedef struct {
  const pg_dist *dist;
  pg_params *params;
  float *flat;
  int64_t numel;
  int64_t *offset;      /* per parameter entry: start in flat, -1 if not trainable */
  int *bucket_of;       /* per parameter entry: its bucket, -1 if not trainable */
  pg_bucket *buckets;
  int bucket_count, next_to_start;
  void *requests;       /* MPI_Request[bucket_count] */
  /* seconds, summed since init: spent inside pg_reducer_finish waiting for
   * the reductions (communication that backward did not hide), and spent
   * starting and testing them during backward */
  double wait_seconds, start_seconds;
  int64_t steps;
  /* pg_reducer_backward's bookkeeping: per parameter entry, ready this
   * step, and the tape's records still to be swept that read it; the
   * trainable tensors sorted by address, to find a record's inputs */
  bool *ready;
  int *uses;
  struct pg_reducer_leaf *by_address;
  int n_leaves;
} pg_reducer;

/* Errors: out of memory; bucket_bytes < 4. */
PG_API pg_status pg_reducer_init(pg_reducer *r, const pg_dist *dist, pg_params *params,
                                 size_t bucket_bytes);
PG_API void pg_reducer_free(pg_reducer *r);

/* Parameter entry `index` (its place in the pg_params list) has its final
 * gradient for this step. Starts the buckets that are complete, in order,
 * and lets MPI progress the ones in flight. Calling it twice for one
 * parameter in a step counts once. */
PG_API pg_status pg_reducer_param_ready(pg_reducer *r, int index);

/* pg_backward(ctx, loss) that starts averaging while it runs: it counts
 * the tape's records reading each trainable parameter, then, during the
 * sweep (pg_backward_hooked), marks a parameter ready when the last of
 * them has been swept, so the buckets complete in backward order and go
 * out while the earlier layers' backward runs. Allocates nothing. */
PG_API pg_status pg_reducer_backward(pg_reducer *r, pg_ctx *ctx, pg_tensor *loss);

/* Starts every bucket not yet started, waits for all, divides by the number
 * of ranks and resets the per-step counts. Afterwards every rank holds the
 * same averaged gradients. */
PG_API pg_status pg_reducer_finish(pg_reducer *r);

#endif
