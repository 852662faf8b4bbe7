#include "patchgrad/layers/mlp.h"

#include <stdio.h>
#include <string.h>

#include "patchgrad/autograd/op.h"
#include "patchgrad/autograd/kernels.h"
#include "patchgrad/autograd/vector_clones.h"

/* GELU, tanh form, in place on z[0..n), and its slope gelu'(z) when slope is
 * non-NULL: kernels.h's pg_gelu_tanhf (one exp per element, so that the
 * loop vectorises), the same numbers as pg_gelu(x, PG_GELU_TANH). */
PG_VECTOR_CLONES static void gelu_range(float *restrict z, float *restrict slope, int64_t n) {
  if (slope)
    for (int64_t i = 0; i < n; i++) z[i] = pg_gelu_tanh_and_slopef(z[i], &slope[i]);
  else
    for (int64_t i = 0; i < n; i++) z[i] = pg_gelu_tanhf(z[i]);
}

PG_VECTOR_CLONES static void scale_range(float *restrict g, const float *restrict slope, int64_t n) {
  for (int64_t i = 0; i < n; i++) g[i] *= slope[i];
}

/* z[lo, hi) (and its slope): one thread's share of gelu_range. */
typedef struct {
  float *z, *slope;
} gelu_job;

static void gelu_slice(void *user, int64_t lo, int64_t hi) {
  const gelu_job *j = user;
  gelu_range(j->z + lo, j->slope ? j->slope + lo : NULL, hi - lo);
}

/* g[lo, hi) *= slope[lo, hi) */
static void scale_slice(void *user, int64_t lo, int64_t hi) {
  const gelu_job *j = user;
  scale_range(j->z + lo, j->slope + lo, hi - lo);
}

typedef struct {
  float *slope; /* gelu'(z) [..., out], z = x W^T + b */
  int64_t rows; /* of x seen as [rows, in] */
} linear_gelu_saved;

static void linear_gelu_backward(pg_ctx *ctx, pg_node *node) {
  const linear_gelu_saved *s = node->saved;
  float *dy = node->out->grad;
  /* dz = dy * gelu'(z), in place: the output's gradient is not needed after */
  pg_parallel_ranges(node->out->numel, scale_slice, &(gelu_job){dy, s->slope});
  pg_linear_backward_from(ctx, dy, s->rows, node->in[0], node->in[1],
                          node->n_in > 2 ? node->in[2] : NULL);
}

pg_tensor *pg_linear_gelu_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias) {
  if (!x || !weight) return NULL;
  if (pg_linear_check_args("pg_linear_gelu_op", x, weight, bias)) return NULL;
  /* The Linear part records nothing of its own (grad mode off around it):
   * this op records one node for both. */
  bool was = pg_set_grad_enabled(ctx, false);
  pg_tensor *y = pg_linear_op(ctx, x, weight, bias);
  pg_set_grad_enabled(ctx, was);
  if (!y) return NULL;
  pg_tensor *inputs[3] = {x, weight, bias};
  const int n_in = bias ? 3 : 2;
  const bool record = pg_needs_grad(ctx, n_in, inputs);
  float *slope = record ? pg_scratch(ctx, (size_t)y->numel * sizeof(float)) : NULL;
  if (record && !slope) return NULL;
  pg_parallel_ranges(y->numel, gelu_slice, &(gelu_job){y->data, slope});
  const int64_t in = weight->shape[1];
  pg_node *node = pg_tape_record(ctx, "pg_linear_gelu_op", linear_gelu_backward, y, n_in, inputs);
  PG_SAVE(ctx, node, linear_gelu_saved, .slope = slope,
          .rows = in ? x->numel / in : pg_shape_numel(x->ndim - 1, x->shape));
  return y;
}

pg_status pg_mlp_init(pg_mlp *m, pg_params *ps, const char *prefix, int64_t in_features,
                      int64_t hidden_features, int64_t out_features, pg_linear_init_kind init,
                      float std, pg_rng *rng) {
  const int64_t in = in_features, hidden = hidden_features, out = out_features;
  if (!m || !ps || !prefix) return pg_fail(PG_ERR_ARG, "pg_mlp_init: layer, params and prefix must not be NULL");
  memset(m, 0, sizeof *m);
  char name[PG_PARAM_NAME_MAX];
  snprintf(name, sizeof name, "%s.fc1", prefix);
  pg_status st = pg_linear_init(&m->fc1, ps, name, in, hidden, true, init, std, rng);
  if (st) return st;
  snprintf(name, sizeof name, "%s.fc2", prefix);
  st = pg_linear_init(&m->fc2, ps, name, hidden, out, true, init, std, rng);
  if (st) return st;
  m->in_features = in;
  m->hidden_features = hidden;
  m->out_features = out;
  return PG_OK;
}

pg_tensor *pg_mlp_forward(pg_ctx *ctx, const pg_mlp *m, pg_tensor *x) {
  if (!x) return NULL;
  if (!m || !m->fc1.weight || !m->fc2.weight) {
    pg_fail(PG_ERR_ARG, "pg_mlp_forward: the layer is not initialised");
    return NULL;
  }
  pg_tensor *h = pg_linear_gelu_op(ctx, x, m->fc1.weight, m->fc1.bias);
  return pg_linear_op(ctx, h, m->fc2.weight, m->fc2.bias);
}
