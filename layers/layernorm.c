#include "patchgrad/layers/layernorm.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "patchgrad/autograd/op.h"
#include "patchgrad/autograd/vector_clones.h"

/* Per-row statistics, saved by both ops of this file. */
typedef struct {
  double *mean; /* [rows]; double so that x - mean stays exact for large offsets */
  float *rstd;  /* [rows] 1 / sqrt(var + eps) */
} row_stats_saved;

/* Arena space for the statistics of `rows` rows. */
static bool alloc_stats(pg_ctx *ctx, int64_t rows, row_stats_saved *st) {
  st->mean = pg_scratch(ctx, (size_t)rows * sizeof(double));
  st->rstd = pg_scratch(ctx, (size_t)rows * sizeof(float));
  return st->mean && st->rstd;
}

typedef struct {
  row_stats_saved stats;
  int64_t rows;
  int w_at, b_at; /* positions of weight and bias among the inputs, 0 when absent */
} layernorm_saved;

/* Two passes: the mean first, then the mean of squared
 * deviations. The one-pass E[x^2] - E[x]^2 loses every digit when the mean is
 * large next to the spread. Sums in double; four partial sums for speed. */
static inline __attribute__((always_inline)) void row_stats(const float *restrict x, int64_t d,
                                                            float eps, double *mean, float *rstd) {
  double s[4] = {0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 4 <= d; j += 4)
    for (int l = 0; l < 4; l++) s[l] += x[j + l];
  for (; j < d; j++) s[0] += x[j];
  double m = (s[0] + s[1] + s[2] + s[3]) / (double)d;
  double v[4] = {0, 0, 0, 0};
  for (j = 0; j + 4 <= d; j += 4)
    for (int l = 0; l < 4; l++) {
      double c = x[j + l] - m;
      v[l] += c * c;
    }
  for (; j < d; j++) v[0] += (x[j] - m) * (x[j] - m);
  double var = (v[0] + v[1] + v[2] + v[3]) / (double)d;
  *mean = m;
  *rstd = (float)(1.0 / sqrt(var + (double)eps));
}

typedef struct {
  const row_stats_saved *s;
  const float *x, *dy, *w;
  float *dx;
  bool dx_fresh;
  int64_t d;
} ln_backward_args;

/* Rows r0..r1-1 of the backward; the weight gradient's contributions
 * summed into pdw (this thread's slice of scratch, in double; NULL when not
 * wanted). */
static void ln_backward_rows(const ln_backward_args *a, int64_t r0, int64_t r1, double *pdw) {
  const int64_t d = a->d;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = a->x + r * d, *gr = a->dy + r * d;
    double mean = a->s->mean[r];
    float rstd = a->s->rstd[r];
    if (pdw)
      for (int64_t j = 0; j < d; j++) {
        float xhat = (float)(xr[j] - mean) * rstd;
        pdw[j] += gr[j] * xhat;
      }
    if (!a->dx) continue;
    /* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight. */
    double sum_g = 0, sum_gx = 0;
    for (int64_t j = 0; j < d; j++) {
      float g = a->w ? gr[j] * a->w[j] : gr[j];
      sum_g += g;
      sum_gx += g * (float)(xr[j] - mean) * rstd;
    }
    float mg = (float)(sum_g / (double)d), mgx = (float)(sum_gx / (double)d);
    float *dxr = a->dx + r * d;
    for (int64_t j = 0; j < d; j++) {
      float g = a->w ? gr[j] * a->w[j] : gr[j];
      float xhat = (float)(xr[j] - mean) * rstd;
      float v = rstd * (g - mg - xhat * mgx);
      dxr[j] = a->dx_fresh ? v : dxr[j] + v;
    }
  }
}

static void layernorm_backward(pg_ctx *ctx, pg_node *node) {
  const layernorm_saved *s = node->saved;
  pg_tensor *x = node->in[0];
  pg_tensor *weight = s->w_at ? node->in[s->w_at] : NULL;
  pg_tensor *bias = s->b_at ? node->in[s->b_at] : NULL;
  int64_t d = x->shape[x->ndim - 1], rows = s->rows;
  bool dx_fresh = false, dw_fresh = false, db_fresh = false;
  float *dx = pg_grad_dest(ctx, x, &dx_fresh);
  float *dw = weight ? pg_grad_dest(ctx, weight, &dw_fresh) : NULL;
  float *db = bias ? pg_grad_dest(ctx, bias, &db_fresh) : NULL;
  const ln_backward_args a = {&s->stats, x->data, node->out->grad, weight ? weight->data : NULL,
                              dx, dx_fresh, d};
  /* The bias gradient is the column sums of dy (the one kernel for them). */
  if (db) pg_column_sums(node->out->grad, rows, d, db, !db_fresh);
  /* dw sums over rows: each thread sums its rows into its own slice of
   * scratch, in double, and the slices are added at the end, in thread
   * order. */
  const int threads = pg_parallel_threads(rows * d);
  double *partial = NULL;
  if (dw) {
    partial = pg_scratch(ctx, (size_t)threads * (size_t)d * sizeof(double));
    if (!partial) return;
    memset(partial, 0, (size_t)threads * (size_t)d * sizeof(double));
  }
  if (threads == 1) {
    ln_backward_rows(&a, 0, rows, partial);
  } else {
#pragma omp parallel num_threads(threads)
    {
      int t = omp_get_thread_num(), n = omp_get_num_threads();
      double *pdw = partial ? partial + (size_t)t * (size_t)d : NULL;
      int64_t per = (rows + n - 1) / n, r0 = t * per < rows ? t * per : rows;
      ln_backward_rows(&a, r0, r0 + per < rows ? r0 + per : rows, pdw);
    }
  }
  if (!dw) return;
  for (int64_t j = 0; j < d; j++) {
    double sum = 0;
    for (int t = 0; t < threads; t++) sum += partial[(size_t)t * (size_t)d + (size_t)j];
    dw[j] = (dw_fresh ? 0.0f : dw[j]) + (float)sum;
  }
}

pg_tensor *pg_layernorm_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias, float eps) {
  if (!x) return NULL;
  if (x->ndim < 1) {
    pg_fail(PG_ERR_ARG, "pg_layernorm_op: x must have rank >= 1 ([..., d]), got a scalar");
    return NULL;
  }
  int64_t d = x->shape[x->ndim - 1];
  if (d < 1) {
    pg_fail(PG_ERR_ARG, "pg_layernorm_op: the normalised axis of x %s is empty", pg_shape_of(x));
    return NULL;
  }
  if (!(eps >= 0.0f) || isinf(eps)) {
    pg_fail(PG_ERR_ARG, "pg_layernorm_op: eps must be finite and >= 0, got %g", (double)eps);
    return NULL;
  }
  const pg_tensor *affine[2] = {weight, bias};
  const char *names[2] = {"weight", "bias"};
  for (int i = 0; i < 2; i++)
    if (affine[i] && (affine[i]->ndim != 1 || affine[i]->shape[0] != d)) {
      pg_fail(PG_ERR_ARG, "pg_layernorm_op: %s must be [%lld] for x %s, got %s", names[i],
              (long long)d, pg_shape_of(x), pg_shape_of(affine[i]));
      return NULL;
    }
  pg_tensor *y = pg_empty(ctx, x->ndim, x->shape);
  const int64_t rows = x->numel / d;
  row_stats_saved st;
  if (!y || !alloc_stats(ctx, rows, &st)) return NULL;
  const float *w = weight ? weight->data : NULL, *b = bias ? bias->data : NULL;
  PG_FOR(x->numel, r, rows, {
    const float *xr = x->data + r * d;
    float *yr = y->data + r * d;
    row_stats(xr, d, eps, &st.mean[r], &st.rstd[r]);
    double mean = st.mean[r];
    float rstd = st.rstd[r];
    for (int64_t j = 0; j < d; j++) {
      float v = (float)(xr[j] - mean) * rstd;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
  });
  /* Inputs are x, then weight and bias when present. */
  pg_tensor *inputs[3] = {x, NULL, NULL};
  int n_in = 1, w_at = 0, b_at = 0;
  if (weight) w_at = n_in, inputs[n_in++] = weight;
  if (bias) b_at = n_in, inputs[n_in++] = bias;
  pg_node *node = pg_tape_record(ctx, "pg_layernorm_op", layernorm_backward, y, n_in, inputs);
  PG_SAVE(ctx, node, layernorm_saved, .stats = st, .rows = rows, .w_at = w_at, .b_at = b_at);
  return y;
}

/* ---- LayerNorm fused with modulate ---- */

typedef struct {
  row_stats_saved stats;
  int64_t batch, tokens, d;
} lnmod_saved;

/* The rows of one sample: y = (x - mean) * rstd * (1 + scale) + shift, in the
 * order pg_layernorm_op then pg_modulate_op compute it. */
PG_VECTOR_CLONES static void lnmod_forward_sample(const float *restrict x, const float *restrict shift,
                                                  const float *restrict scale, float *restrict y,
                                                  int64_t tokens, int64_t d, float eps,
                                                  double *restrict mean, float *restrict rstd) {
  for (int64_t t = 0; t < tokens; t++) {
    const float *xr = x + t * d;
    float *yr = y + t * d;
    row_stats(xr, d, eps, &mean[t], &rstd[t]);
    const double m = mean[t];
    const float rs = rstd[t];
    for (int64_t j = 0; j < d; j++) yr[j] = (float)(xr[j] - m) * rs * (1.0f + scale[j]) + shift[j];
  }
}

/* Backward over the rows of one sample, which owns its dshift and dscale
 * rows: with xhat the normalised x and gy = g * (1 + scale),
 *   dshift += g, dscale += g * xhat,
 *   dx = rstd * (gy - mean(gy) - xhat * mean(gy * xhat)). */
PG_VECTOR_CLONES static void lnmod_backward_sample(
    const float *restrict x, const float *restrict g, const float *restrict scale,
    const double *restrict mean, const float *restrict rstd, int64_t tokens, int64_t d,
    float *restrict dx, bool dx_fresh, float *restrict dshift, float *restrict dscale) {
  for (int64_t t = 0; t < tokens; t++) {
    const float *xr = x + t * d, *gr = g + t * d;
    const double m = mean[t];
    const float rs = rstd[t];
    if (dshift)
      for (int64_t j = 0; j < d; j++) dshift[j] += gr[j];
    if (dscale)
      for (int64_t j = 0; j < d; j++) dscale[j] += gr[j] * ((float)(xr[j] - m) * rs);
    if (!dx) continue;
    double sum_g = 0, sum_gx = 0;
    for (int64_t j = 0; j < d; j++) {
      float gy = gr[j] * (1.0f + scale[j]);
      sum_g += gy;
      sum_gx += gy * ((float)(xr[j] - m) * rs);
    }
    const float mg = (float)(sum_g / (double)d), mgx = (float)(sum_gx / (double)d);
    float *dxr = dx + t * d;
    for (int64_t j = 0; j < d; j++) {
      float gy = gr[j] * (1.0f + scale[j]);
      float xhat = (float)(xr[j] - m) * rs;
      float v = rs * (gy - mg - xhat * mgx);
      dxr[j] = dx_fresh ? v : dxr[j] + v;
    }
  }
}

static void lnmod_backward(pg_ctx *ctx, pg_node *node) {
  const lnmod_saved *s = node->saved;
  pg_tensor *x = node->in[0], *shift = node->in[1], *scale = node->in[2];
  const float *g = node->out->grad;
  bool fx, fsh, fsc;
  float *dx = pg_grad_dest(ctx, x, &fx);
  float *dshift = pg_grad_dest(ctx, shift, &fsh);
  float *dscale = pg_grad_dest(ctx, scale, &fsc);
  const int64_t T = s->tokens, d = s->d;
  /* Each sample's rows and its dshift/dscale rows belong to one thread. */
  PG_FOR(x->numel, b, s->batch, {
    float *dsh = dshift ? dshift + b * d : NULL, *dsc = dscale ? dscale + b * d : NULL;
    if (dsh && fsh) memset(dsh, 0, (size_t)d * sizeof(float));
    if (dsc && fsc) memset(dsc, 0, (size_t)d * sizeof(float));
    lnmod_backward_sample(x->data + b * T * d, g + b * T * d, scale->data + b * d,
                          s->stats.mean + b * T, s->stats.rstd + b * T, T, d,
                          dx ? dx + b * T * d : NULL, fx, dsh, dsc);
  });
}

pg_tensor *pg_layernorm_modulate_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *shift, pg_tensor *scale,
                                    float eps) {
  if (!x || !shift || !scale) return NULL;
  const char *who = "pg_layernorm_modulate_op";
  if (x->ndim < 2) {
    pg_fail(PG_ERR_ARG, "%s: x must be [B, ..., d] (rank >= 2), got %s", who, pg_shape_of(x));
    return NULL;
  }
  const int64_t B = x->shape[0], d = x->shape[x->ndim - 1];
  if (d < 1) {
    pg_fail(PG_ERR_ARG, "%s: the normalised axis of x %s is empty", who, pg_shape_of(x));
    return NULL;
  }
  const pg_tensor *vecs[2] = {shift, scale};
  const char *names[2] = {"shift", "scale"};
  for (int i = 0; i < 2; i++)
    if (vecs[i]->ndim != 2 || vecs[i]->shape[0] != B || vecs[i]->shape[1] != d) {
      pg_fail(PG_ERR_ARG, "%s: %s must be [B, d] = [%lld, %lld] for x %s, got %s", who, names[i],
              (long long)B, (long long)d, pg_shape_of(x), pg_shape_of(vecs[i]));
      return NULL;
    }
  if (!(eps >= 0.0f) || isinf(eps)) {
    pg_fail(PG_ERR_ARG, "%s: eps must be finite and >= 0, got %g", who, (double)eps);
    return NULL;
  }
  pg_tensor *y = pg_empty(ctx, x->ndim, x->shape);
  const int64_t rows = x->numel / d, T = B ? rows / B : 0;
  row_stats_saved st;
  if (!y || !alloc_stats(ctx, rows, &st)) return NULL;
  PG_FOR(x->numel, b, B,
         lnmod_forward_sample(x->data + b * T * d, shift->data + b * d, scale->data + b * d,
                              y->data + b * T * d, T, d, eps, st.mean + b * T, st.rstd + b * T));
  pg_node *node = pg_tape_record(ctx, "pg_layernorm_modulate_op", lnmod_backward, y, 3,
                                 (pg_tensor *[]){x, shift, scale});
  PG_SAVE(ctx, node, lnmod_saved, .stats = st, .batch = B, .tokens = T, .d = d);
  return y;
}

pg_status pg_layernorm_init(pg_layernorm *l, pg_params *ps, const char *prefix, int64_t dim,
                            float eps, bool affine) {
  if (!l || !ps || !prefix) return pg_fail(PG_ERR_ARG, "pg_layernorm_init: layer, params and prefix must not be NULL");
  memset(l, 0, sizeof *l);
  if (dim < 1) return pg_fail(PG_ERR_ARG, "pg_layernorm_init '%s': dim must be >= 1, got %lld", prefix, (long long)dim);
  if (!(eps >= 0.0f) || isinf(eps))
    return pg_fail(PG_ERR_ARG, "pg_layernorm_init '%s': eps must be finite and >= 0, got %g", prefix, (double)eps);
  l->dim = dim;
  l->eps = eps;
  if (!affine) return PG_OK;
  l->weight = pg_params_add(ps, PG_PARAM_NORM, PG_SHAPE(dim), "%s.weight", prefix);
  if (!l->weight) return pg_last_status();
  l->bias = pg_params_add(ps, PG_PARAM_NORM, PG_SHAPE(dim), "%s.bias", prefix);
  if (!l->bias) return pg_last_status();
  pg_fill(l->weight, 1.0f);
  return PG_OK;
}

pg_tensor *pg_layernorm_forward(pg_ctx *ctx, const pg_layernorm *l, pg_tensor *x) {
  if (!x) return NULL;
  if (!l || l->dim < 1) {
    pg_fail(PG_ERR_ARG, "pg_layernorm_forward: the layer is not initialised");
    return NULL;
  }
  if (x->ndim < 1 || x->shape[x->ndim - 1] != l->dim) {
    pg_fail(PG_ERR_ARG, "pg_layernorm_forward: x %s must end in the layer's dim %lld", pg_shape_of(x), (long long)l->dim);
    return NULL;
  }
  return pg_layernorm_op(ctx, x, l->weight, l->bias, l->eps);
}
