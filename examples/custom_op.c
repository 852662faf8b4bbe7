/* A new op written with the op kit (patchgrad/autograd/op.h): RMSNorm over
 * the last axis, y = x / sqrt(mean(x^2) + eps) * weight, as
 * torch.nn.RMSNorm. Forward, backward, saved state, and a check of both
 * against finite differences and a float64 reference.
 * docs/writing_an_op.md walks through this file. */
#include <math.h>
#include <stdio.h>

#include <patchgrad/patchgrad.h>

/* What backward needs besides x and weight: 1/sqrt(mean(x^2) + eps) of
 * every row (an array in the step arena). */
typedef struct {
  const float *rstd; /* [rows] */
  int64_t rows, dim;
} rms_norm_saved;

/* xhat = x * rstd, y = xhat * w. With g = dy * w:
 *   dweight += sum over rows of dy * xhat,
 *   dx (+)= rstd * (g - xhat * mean(g * xhat)). */
static void rms_norm_backward(pg_ctx *ctx, pg_node *node) {
  const rms_norm_saved *s = node->saved;
  pg_tensor *x = node->in[0], *weight = node->in[1];
  const float *dy = node->out->grad;
  const int64_t d = s->dim;
  bool fresh;
  float *dx = pg_grad_dest(ctx, x, &fresh); /* NULL: x needs no gradient */
  if (dx)
    PG_FOR(x->numel, r, s->rows, {
      const float *xr = x->data + r * d, *gr = dy + r * d;
      double dot = 0;
      for (int64_t j = 0; j < d; j++) dot += (double)gr[j] * weight->data[j] * xr[j] * s->rstd[r];
      const float mean_gx = (float)(dot / (double)d);
      for (int64_t j = 0; j < d; j++) {
        const float xhat = xr[j] * s->rstd[r];
        const float v = s->rstd[r] * (gr[j] * weight->data[j] - xhat * mean_gx);
        dx[r * d + j] = fresh ? v : dx[r * d + j] + v;
      }
    });
  float *dw = pg_grad_accum(ctx, weight); /* zeroed on first use: add into it */
  if (dw)
    for (int64_t j = 0; j < d; j++) {
      double sum = 0;
      for (int64_t r = 0; r < s->rows; r++)
        sum += (double)dy[r * d + j] * x->data[r * d + j] * s->rstd[r];
      dw[j] += (float)sum;
    }
}

/* x [..., d], weight [d] -> [..., d]. */
static pg_tensor *rms_norm(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, float eps) {
  if (!x || !weight) return NULL; /* an earlier op failed: its message stands */
  const int64_t d = x->ndim ? x->shape[x->ndim - 1] : 0;
  if (d < 1 || weight->ndim != 1 || weight->shape[0] != d) {
    pg_fail(PG_ERR_ARG, "rms_norm: weight must be [d] for x [..., d], d >= 1; x is %s, weight %s",
            pg_shape_of(x), pg_shape_of(weight));
    return NULL;
  }
  if (!(eps > 0.0f)) {
    pg_fail(PG_ERR_ARG, "rms_norm: eps must be > 0, got %g", (double)eps);
    return NULL;
  }
  const int64_t rows = x->numel / d;
  pg_tensor *y = pg_empty(ctx, x->ndim, x->shape);
  float *rstd = pg_scratch(ctx, (size_t)rows * sizeof *rstd);
  if (!y || !rstd) return NULL;
  PG_FOR(x->numel, r, rows, {
    const float *xr = x->data + r * d;
    double sum_sq = 0;
    for (int64_t j = 0; j < d; j++) sum_sq += (double)xr[j] * xr[j];
    rstd[r] = (float)(1.0 / sqrt(sum_sq / (double)d + eps));
    for (int64_t j = 0; j < d; j++) y->data[r * d + j] = xr[j] * rstd[r] * weight->data[j];
  });
  pg_tensor *inputs[2] = {x, weight};
  pg_node *node = pg_tape_record(ctx, "rms_norm", rms_norm_backward, y, 2, inputs);
  PG_SAVE(ctx, node, rms_norm_saved, .rstd = rstd, .rows = rows, .dim = d);
  return y;
}

/* ---- Checking it ---- */

static pg_tensor *rms_norm_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return rms_norm(ctx, in[0], in[1], 1e-5f);
}

int main(void) {
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(3, 4, 5), true);
  pg_tensor *w = pg_tensor_new(PG_SHAPE(5), true);
  pg_fill_normal(x, 0.0f, 1.0f, &rng);
  pg_fill_normal(w, 1.0f, 0.5f, &rng);

  /* the forward against float64 */
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *y = rms_norm(ctx, x, w, 1e-5f);
  if (!y) {
    fprintf(stderr, "custom_op: %s\n", pg_last_error());
    return 1;
  }
  double worst = 0;
  for (int64_t r = 0; r < 12; r++) {
    double sum_sq = 0;
    for (int j = 0; j < 5; j++) sum_sq += (double)x->data[r * 5 + j] * x->data[r * 5 + j];
    for (int j = 0; j < 5; j++) {
      double want = x->data[r * 5 + j] / sqrt(sum_sq / 5 + 1e-5) * w->data[j];
      worst = fmax(worst, fabs(y->data[r * 5 + j] - want));
    }
  }
  pg_ctx_free(ctx);

  /* the backward against finite differences, for both inputs */
  pg_gradcheck_result res;
  pg_tensor *inputs[2] = {x, w};
  if (pg_gradcheck(rms_norm_fn, NULL, 2, inputs, NULL, &res)) {
    fprintf(stderr, "custom_op: %s\n", pg_last_error());
    return 1;
  }
  printf("rms_norm: forward within %.2g of float64; gradients of %ld elements %s "
         "(worst difference %.2g)\n", worst, res.checked, res.ok ? "match" : "DIFFER",
         res.max_abs_err);
  pg_tensor_free(x);
  pg_tensor_free(w);
  return worst < 1e-5 && res.ok ? 0 : 1;
}
