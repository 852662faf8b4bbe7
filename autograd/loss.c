/* Losses. mse = mean((x - target)^2), a 0-d scalar; both sides get
 * gradients: dx = 2 (x - target) / N * g, dtarget = -dx. */
#include "op_util.h"
#include "ops.h"

static void mse_backward(pg_ctx *ctx, pg_node *node) {
  const pg_tensor *x = node->in[0], *t = node->in[1];
  const int64_t n = x->numel;
  const float scale = 2.0f * node->out->grad[0] / (float)n;
  bool fresh;
  for (int side = 0; side < 2; side++) {
    float *g = pg_grad_dest(ctx, node->in[side], &fresh);
    if (!g) continue;
    const float s = side == 0 ? scale : -scale;
#pragma omp parallel for if (n > PG_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) g[i] = (fresh ? 0.0f : g[i]) + s * (x->data[i] - t->data[i]);
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
  const float *restrict a = x->data, *restrict b = target->data;
  const int64_t n = x->numel;
  double sum = 0;
#pragma omp parallel for reduction(+ : sum) if (n > PG_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    const double d = (double)a[i] - b[i];
    sum += d * d;
  }
  out->data[0] = (float)(sum / (double)n); /* NaN for empty inputs, as in PyTorch */
  pg_tape_record(ctx, "pg_mse", mse_backward, out, 2, (pg_tensor *[]){x, target});
  return out;
}
