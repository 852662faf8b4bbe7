/* pg_eval_batches (batches.h). */
#include "patchgrad/autograd/batches.h"

#include "patchgrad/autograd/tape.h"

pg_status pg_eval_batches(pg_ctx *ctx, const float *data, int64_t n, int sample_ndim,
                          const int64_t *sample_shape, int64_t batch, const char *who,
                          pg_batch_fn fn, void *self) {
  if (batch < 1) return pg_fail(PG_ERR_ARG, "%s: batch must be >= 1, got %lld", who, (long long)batch);
  if (sample_ndim < 0 || sample_ndim > PG_MAX_DIMS - 1)
    return pg_fail(PG_ERR_ARG, "%s: a sample of %d dimensions (at most %d)", who, sample_ndim, PG_MAX_DIMS - 1);
  int64_t shape[PG_MAX_DIMS], per = 1;
  for (int d = 0; d < sample_ndim; d++) per *= shape[d + 1] = sample_shape[d];
  const bool grad_was = pg_set_grad_enabled(ctx, false);
  const bool training_was = pg_set_training(ctx, false);
  pg_status st = PG_OK;
  for (int64_t s = 0; s < n && !st; s += batch) {
    shape[0] = n - s < batch ? n - s : batch;
    pg_ctx_reset(ctx);
    pg_tensor *x = pg_from_array(ctx, sample_ndim + 1, shape, data + s * per);
    st = x ? fn(ctx, x, s, self) : pg_last_status();
  }
  pg_ctx_reset(ctx);
  pg_set_grad_enabled(ctx, grad_was);
  pg_set_training(ctx, training_was);
  return st;
}
