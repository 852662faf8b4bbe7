/* Evaluating a model over a whole array of samples, a batch at a time, as
 * PyTorch users write `with torch.no_grad(): model.eval(); for batch in ...`:
 *
 *   pg_status copy_out(pg_ctx *ctx, pg_tensor *x, int64_t first, void *self) {
 *     pg_tensor *y = my_forward(ctx, model, x);     x: [b, *sample_shape]
 *     if (!y) return pg_last_status();
 *     memcpy(out + first * per, y->data, ...);      sample `first` onward
 *     return PG_OK;
 *   }
 *   pg_eval_batches(ctx, data, n, 3, (int64_t[]){H, W, C}, 256, copy_out, &state);
 */
#ifndef PG_AUTOGRAD_BATCHES_H
#define PG_AUTOGRAD_BATCHES_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/autograd/tensor.h"

/* Called once per batch: x is samples [first, first + x->shape[0]) as a
 * tensor of the step's arena (no gradient); returns a status. */
typedef pg_status (*pg_batch_fn)(pg_ctx *ctx, pg_tensor *x, int64_t first, void *self);

/* Runs fn over the n samples of data (float32, each of sample_ndim
 * dimensions sample_shape, packed one after another; borrowed) in batches of
 * `batch` (the last one smaller), with gradients and training mode off:
 * ctx is reset before every batch and at the end, and its two modes are
 * restored. Stops at fn's first error and returns it; an error for batch <
 * 1 or sample_ndim outside [0, 7], naming `who` ("vae", "frechet"). */
PG_API pg_status pg_eval_batches(pg_ctx *ctx, const float *data, int64_t n, int sample_ndim,
                                 const int64_t *sample_shape, int64_t batch, const char *who,
                                 pg_batch_fn fn, void *self);

#endif
