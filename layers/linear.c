#include "patchgrad/layers/linear.h"

#include <math.h>
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/op.h"

pg_status pg_linear_check_args(const char *who, const pg_tensor *x, const pg_tensor *weight,
                                   const pg_tensor *bias) {
  if (weight->ndim != 2)
    return pg_fail(PG_ERR_ARG, "%s: weight must be [out, in], got %s", who, pg_shape_of(weight));
  if (x->ndim < 1)
    return pg_fail(PG_ERR_ARG, "%s: x must have rank >= 1 ([..., in]), got a scalar", who);
  if (x->shape[x->ndim - 1] != weight->shape[1])
    return pg_fail(PG_ERR_ARG, "%s: x %s has %lld input features, weight %s expects %lld", who,
                   pg_shape_of(x), (long long)x->shape[x->ndim - 1], pg_shape_of(weight),
                   (long long)weight->shape[1]);
  if (bias && (bias->ndim != 1 || bias->shape[0] != weight->shape[0]))
    return pg_fail(PG_ERR_ARG, "%s: bias must be [%lld] to match weight %s, got %s", who,
                   (long long)weight->shape[0], pg_shape_of(weight), pg_shape_of(bias));
  return PG_OK;
}

void pg_linear_backward_from(pg_ctx *ctx, const float *dy, int64_t m, pg_tensor *x,
                             pg_tensor *weight, pg_tensor *bias) {
  int64_t in = weight->shape[1], out = weight->shape[0];
  bool fresh;
  float *dx = pg_grad_dest(ctx, x, &fresh);
  if (dx)
    pg_gemm_auto(false, false, m, in, out, 1.0f, dy, out, weight->data, in, fresh ? 0.0f : 1.0f,
                 dx, in);
  float *dw = pg_grad_dest(ctx, weight, &fresh);
  if (dw)
    pg_gemm_auto(true, false, out, in, m, 1.0f, dy, out, x->data, in, fresh ? 0.0f : 1.0f, dw, in);
  float *db = bias ? pg_grad_dest(ctx, bias, &fresh) : NULL;
  if (db) pg_column_sums(dy, m, out, db, !fresh);
}

typedef struct {
  int64_t rows; /* m: the rows of x [..., in] seen as [m, in] */
} linear_saved;

static void linear_backward(pg_ctx *ctx, pg_node *node) {
  const linear_saved *s = node->saved;
  pg_tensor *x = node->in[0], *weight = node->in[1], *bias = node->n_in > 2 ? node->in[2] : NULL;
  pg_linear_backward_from(ctx, node->out->grad, s->rows, x, weight, bias);
}

pg_tensor *pg_linear_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias) {
  if (!x || !weight) return NULL;
  if (pg_linear_check_args("pg_linear_op", x, weight, bias)) return NULL;
  int64_t in = weight->shape[1], out_features = weight->shape[0];
  int64_t shape[PG_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = out_features;
  pg_tensor *y = pg_empty(ctx, x->ndim, shape);
  if (!y) return NULL;
  int64_t m = in ? x->numel / in : pg_shape_numel(x->ndim - 1, x->shape);
  /* With a bias, each row starts as the bias and the GEMM adds to it (beta 1):
   * one pass over y instead of a GEMM pass and then a bias pass. */
  if (bias)
    PG_FOR(y->numel, i, m, memcpy(y->data + i * out_features, bias->data, (size_t)out_features * sizeof(float)));
  if (in == 0 && !bias) memset(y->data, 0, (size_t)y->numel * sizeof(float));
  if (in > 0)
    pg_gemm_auto(false, true, m, out_features, in, 1.0f, x->data, in, weight->data, in,
                 bias ? 1.0f : 0.0f, y->data, out_features);
  pg_tensor *inputs[3] = {x, weight, bias};
  pg_node *node = pg_tape_record(ctx, "pg_linear_op", linear_backward, y, bias ? 3 : 2, inputs);
  PG_SAVE(ctx, node, linear_saved, .rows = m);
  return y;
}

/* ---- the layer ---- */

pg_status pg_linear_fill(pg_tensor *weight, pg_tensor *bias, pg_linear_init_kind init, float std,
                         pg_rng *rng) {
  if (!weight || weight->ndim != 2)
    return pg_fail(PG_ERR_ARG, "pg_linear_fill: weight must be a [out, in] tensor");
  if (init != PG_LINEAR_INIT_ZEROS && !rng)
    return pg_fail(PG_ERR_ARG, "pg_linear_fill: init kind %d needs a random generator (rng is NULL)", (int)init);
  double in = (double)weight->shape[1], out = (double)weight->shape[0];
  switch (init) {
  case PG_LINEAR_INIT_DEFAULT: {
    /* kaiming_uniform_(a = sqrt(5)) reduces to this bound; bias uses the same one. */
    float bound = in > 0 ? (float)(1.0 / sqrt(in)) : 0.0f;
    pg_fill_uniform(weight, -bound, bound, rng);
    if (bias) pg_fill_uniform(bias, -bound, bound, rng);
    return PG_OK;
  }
  case PG_LINEAR_INIT_XAVIER_UNIFORM: {
    float bound = in + out > 0 ? (float)sqrt(6.0 / (in + out)) : 0.0f;
    pg_fill_uniform(weight, -bound, bound, rng);
    break;
  }
  case PG_LINEAR_INIT_NORMAL:
    if (!(std >= 0.0f) || isinf(std))
      return pg_fail(PG_ERR_ARG, "pg_linear_fill: normal init needs a finite std >= 0, got %g", (double)std);
    pg_fill_normal(weight, 0.0f, std, rng);
    break;
  case PG_LINEAR_INIT_ZEROS:
    pg_fill(weight, 0.0f);
    break;
  default:
    return pg_fail(PG_ERR_ARG, "pg_linear_fill: unknown init kind %d", (int)init);
  }
  if (bias) pg_fill(bias, 0.0f);
  return PG_OK;
}

pg_status pg_linear_init(pg_linear *l, pg_params *ps, const char *prefix, int64_t in_features,
                         int64_t out_features, bool bias, pg_linear_init_kind init, float std,
                         pg_rng *rng) {
  const int64_t in = in_features, out = out_features;
  if (!l || !ps || !prefix) return pg_fail(PG_ERR_ARG, "pg_linear_init: layer, params and prefix must not be NULL");
  memset(l, 0, sizeof *l);
  if (in < 1 || out < 1)
    return pg_fail(PG_ERR_ARG, "pg_linear_init '%s': in and out features must be >= 1, got in %lld, out %lld",
                   prefix, (long long)in, (long long)out);
  if ((unsigned)init > PG_LINEAR_INIT_ZEROS)
    return pg_fail(PG_ERR_ARG, "pg_linear_init '%s': unknown init kind %d", prefix, (int)init);
  if (init != PG_LINEAR_INIT_ZEROS && !rng)
    return pg_fail(PG_ERR_ARG, "pg_linear_init '%s': init kind %d needs a random generator (rng is NULL)", prefix, (int)init);
  if (init == PG_LINEAR_INIT_NORMAL && (!(std >= 0.0f) || isinf(std)))
    return pg_fail(PG_ERR_ARG, "pg_linear_init '%s': normal init needs a finite std >= 0, got %g", prefix, (double)std);
  l->in_features = in;
  l->out_features = out;
  l->weight = pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(out, in), "%s.weight", prefix);
  if (!l->weight) return pg_last_status();
  if (bias) {
    l->bias = pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(out), "%s.bias", prefix);
    if (!l->bias) return pg_last_status();
  }
  return pg_linear_fill(l->weight, l->bias, init, std, rng);
}

pg_tensor *pg_linear_forward(pg_ctx *ctx, const pg_linear *l, pg_tensor *x) {
  if (!x) return NULL;
  if (!l || !l->weight) {
    pg_fail(PG_ERR_ARG, "pg_linear_forward: the layer is not initialised");
    return NULL;
  }
  return pg_linear_op(ctx, x, l->weight, l->bias);
}
