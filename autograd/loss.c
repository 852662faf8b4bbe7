/* Losses. mse = mean((x - target)^2), a 0-d scalar; both sides get
 * gradients: dx = 2 (x - target) / N * g, dtarget = -dx. */
#include "patchgrad/autograd/op_util.h"
#include "patchgrad/autograd/ops.h"

#define BLOCK ((int64_t)8192)

/* sum of (a - b)^2 over block blk of n elements, in double */
static double squared_error(const float *restrict a, const float *restrict b, int64_t n,
                            int64_t blk) {
  const int64_t off = blk * BLOCK, end = n - off < BLOCK ? n : off + BLOCK;
  double s = 0;
  for (int64_t i = off; i < end; i++) {
    const double d = (double)a[i] - b[i];
    s += d * d;
  }
  return s;
}

/* g (+)= scale * (x - t) over block blk */
static void mse_grad(float *restrict g, const float *restrict x, const float *restrict t,
                     float scale, bool acc, int64_t n, int64_t blk) {
  const int64_t off = blk * BLOCK, end = n - off < BLOCK ? n : off + BLOCK;
  if (acc)
    for (int64_t i = off; i < end; i++) g[i] += scale * (x[i] - t[i]);
  else
    for (int64_t i = off; i < end; i++) g[i] = scale * (x[i] - t[i]);
}

static void mse_backward(pg_ctx *ctx, pg_node *node) {
  const pg_tensor *x = node->in[0], *t = node->in[1];
  const int64_t n = x->numel, blocks = (n + BLOCK - 1) / BLOCK;
  const float scale = 2.0f * node->out->grad[0] / (float)n;
  for (int side = 0; side < 2; side++) {
    bool fresh;
    float *g = pg_grad_dest(ctx, node->in[side], &fresh);
    if (!g) continue;
    const float s = side == 0 ? scale : -scale;
    PG_FOR(n, b, blocks, mse_grad(g, x->data, t->data, s, !fresh, n, b));
  }
}

pg_tensor *pg_mse(pg_ctx *ctx, pg_tensor *x, pg_tensor *target) {
  if (!x || !target) return NULL;
  if (!pg_same_shape(x, target)) {
    pg_fail(PG_ERR_ARG, "pg_mse: x %s and target %s must have the same shape", pg_shape_of(x),
            pg_shape_of(target));
    return NULL;
  }
  pg_tensor *out = pg_empty(ctx, 0, NULL);
  if (!out) return NULL;
  const int64_t n = x->numel, blocks = (n + BLOCK - 1) / BLOCK;
  double sum = 0;
  if (pg_parallel_worth(n)) {
#pragma omp parallel for reduction(+ : sum)
    for (int64_t b = 0; b < blocks; b++) sum += squared_error(x->data, target->data, n, b);
  } else {
    for (int64_t b = 0; b < blocks; b++) sum += squared_error(x->data, target->data, n, b);
  }
  out->data[0] = (float)(sum / (double)n); /* NaN for empty inputs, as in PyTorch */
  pg_tape_record(ctx, "pg_mse", mse_backward, out, 2, (pg_tensor *[]){x, target});
  return out;
}
