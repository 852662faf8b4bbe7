/* Reductions: sum and mean over any set of axes, with keepdims. The sums
 * accumulate in double (pg_reduce_to). Backward spreads the output's
 * gradient back over the reduced axes (times 1/count for mean). */
#include "patchgrad/autograd/op_util.h"
#include "patchgrad/autograd/ops.h"

/* x's shape with the reduced axes (bits of `mask`) set to 1. */
static void kept_shape(const pg_tensor *x, int64_t mask, int64_t *shape) {
  for (int i = 0; i < x->ndim; i++) shape[i] = (mask >> i) & 1 ? 1 : x->shape[i];
}

typedef struct {
  int64_t mask; /* bit i set: axis i of x was reduced */
  float scale;  /* 1 (sum) or 1/count (mean) */
} reduce_saved;

static void reduce_backward(pg_ctx *ctx, pg_node *node) {
  const reduce_saved *s = node->saved;
  const pg_tensor *x = node->in[0];
  bool fresh;
  float *gx = pg_grad_dest(ctx, node->in[0], &fresh);
  if (!gx) return;
  int64_t shape[PG_MAX_DIMS];
  kept_shape(x, s->mask, shape);
  const float scale = s->scale;
  pg_bcast plan; /* gx = g (broadcast over the reduced axes) * scale */
  pg_bcast_plan(&plan, x->ndim, x->shape, x->ndim, shape, 0, NULL);
  pg_bcast_apply(&plan, pg_kernel_mul, node->out->grad, &scale, gx, !fresh);
}

static pg_tensor *reduce(pg_ctx *ctx, const char *who, pg_tensor *x, int n_axes, const int *axes,
                         bool keepdims, bool mean) {
  if (!x) return NULL;
  if (n_axes < 0 || n_axes > x->ndim || (n_axes > 0 && !axes)) {
    pg_fail(PG_ERR_ARG, "%s: n_axes = %d must be in 0..%d with a list of axes (x %s)", who, n_axes,
            x->ndim, pg_shape_of(x));
    return NULL;
  }
  int64_t mask = n_axes == 0 ? ((int64_t)1 << x->ndim) - 1 : 0;
  for (int i = 0; i < n_axes; i++) {
    int ax;
    if (!pg_norm_axis(axes[i], x->ndim, &ax)) {
      pg_fail(PG_ERR_ARG, "%s: axis %d is out of range for x %s (rank %d)", who, axes[i],
              pg_shape_of(x), x->ndim);
      return NULL;
    }
    if ((mask >> ax) & 1) {
      pg_fail(PG_ERR_ARG, "%s: axis %d is listed twice (x %s)", who, axes[i], pg_shape_of(x));
      return NULL;
    }
    mask |= (int64_t)1 << ax;
  }
  int64_t kept[PG_MAX_DIMS], shape[PG_MAX_DIMS], count = 1;
  int nd = 0;
  kept_shape(x, mask, kept);
  for (int i = 0; i < x->ndim; i++) {
    if ((mask >> i) & 1) count *= x->shape[i];
    if (keepdims || !((mask >> i) & 1)) shape[nd++] = kept[i];
  }
  pg_tensor *out = pg_empty(ctx, nd, shape);
  if (!out) return NULL;
  /* The mean of nothing is NaN, as in PyTorch. */
  const double scale = mean ? 1.0 / (double)count : 1.0;
  pg_reduce_to(x->ndim, x->shape, x->data, x->ndim, kept, scale, out->data, false);
  pg_node *node = pg_tape_record(ctx, who, reduce_backward, out, 1, &x);
  PG_SAVE(ctx, node, reduce_saved, .mask = mask, .scale = (float)scale);
  return out;
}

pg_tensor *pg_sum(pg_ctx *ctx, pg_tensor *x, int n_axes, const int *axes, bool keepdims) {
  return reduce(ctx, "pg_sum", x, n_axes, axes, keepdims, false);
}

pg_tensor *pg_mean(pg_ctx *ctx, pg_tensor *x, int n_axes, const int *axes, bool keepdims) {
  return reduce(ctx, "pg_mean", x, n_axes, axes, keepdims, true);
}
