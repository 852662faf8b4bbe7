#include "patchgrad/layers/mlp.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/autograd/broadcast.h"
#include "patchgrad/autograd/fastmath.h"
#include "patchgrad/autograd/vector_clones.h"

/* GELU, tanh form, in place on z[0..n), and its slope gelu'(z) when slope is
 * non-NULL. With u = c (z + a z^3) and s = sigmoid(2u):
 *   0.5 z (1 + tanh u) = z s,   gelu'(z) = s + 2 z s (1 - s) u'
 * (1 + tanh u = 2s, 1 - tanh^2 u = 4 s (1 - s)): one exp per element, from
 * pg_expf, so that the loop vectorises. */
PG_VECTOR_CLONES static void gelu_range(float *restrict z, float *restrict slope, int64_t n) {
  const float c = 0.7978845608028654f; /* sqrt(2/pi) */
  const float a = 0.044715f;
  if (slope) {
    for (int64_t i = 0; i < n; i++) {
      float x = z[i], x2 = x * x;
      float s = 1.0f / (1.0f + pg_expf(-2.0f * c * (x + a * x2 * x)));
      z[i] = x * s;
      slope[i] = s + 2.0f * x * s * (1.0f - s) * c * (1.0f + 3.0f * a * x2);
    }
  } else {
    for (int64_t i = 0; i < n; i++) {
      float x = z[i];
      z[i] = x / (1.0f + pg_expf(-2.0f * c * (x + a * x * x * x)));
    }
  }
}

PG_VECTOR_CLONES static void scale_range(float *restrict g, const float *restrict slope, int64_t n) {
  for (int64_t i = 0; i < n; i++) g[i] *= slope[i];
}

/* Thread t's share [*lo, *hi) of n elements, cut at multiples of 16 floats
 * so that no two threads write one cache line. */
static void share(int64_t n, int t, int threads, int64_t *lo, int64_t *hi) {
  int64_t per = (n / threads + 15) / 16 * 16;
  *lo = t * per < n ? t * per : n;
  *hi = *lo + per < n ? *lo + per : n;
}

/* Large arrays on every thread; small ones on this one without entering a
 * parallel region (a team of one is allocated afresh by libgomp each time). */
static void gelu(float *z, float *slope, int64_t n) {
  if (!pg_use_threads(n)) {
    gelu_range(z, slope, n);
    return;
  }
#pragma omp parallel
  {
    int64_t lo, hi;
    share(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
    gelu_range(z + lo, slope ? slope + lo : NULL, hi - lo);
  }
}

static void linear_gelu_backward(pg_ctx *ctx, pg_node *node) {
  const float *slope = node->saved; /* gelu'(z) */
  float *dy = node->out->grad;
  int64_t n = node->out->numel;
  /* dz = dy * gelu'(z), in place: the output's gradient is not needed after */
  if (!pg_use_threads(n)) {
    scale_range(dy, slope, n);
  } else {
#pragma omp parallel
    {
      int64_t lo, hi;
      share(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
      scale_range(dy + lo, slope + lo, hi - lo);
    }
  }
  pg_linear_backward_from(ctx, dy, node->iarg[0], node->in[0], node->in[1],
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
  bool record = was && (x->requires_grad || weight->requires_grad || (bias && bias->requires_grad));
  float *slope = record ? pg_ctx_alloc(ctx, (size_t)y->numel * sizeof(float) + 1) : NULL;
  if (record && !slope) return NULL;
  gelu(y->data, slope, y->numel);
  if (!record) return y;
  int64_t in = weight->shape[1];
  pg_node *node = pg_tape_record(ctx, "linear_gelu", linear_gelu_backward, y, bias ? 3 : 2, inputs);
  if (node) {
    node->saved = slope;
    node->iarg[0] = in ? x->numel / in : pg_shape_numel(x->ndim - 1, x->shape);
  }
  return y;
}

pg_status pg_mlp_init(pg_mlp *m, pg_params *ps, const char *prefix, int64_t in, int64_t hidden,
                      int64_t out, pg_linear_init_kind init, float std, pg_rng *rng) {
  if (!m || !ps || !prefix) return pg_fail(PG_ERR_ARG, "pg_mlp_init: layer, params and prefix must not be NULL");
  memset(m, 0, sizeof *m);
  char name[PG_PARAM_NAME_MAX];
  snprintf(name, sizeof name, "%s.fc1", prefix);
  pg_status st = pg_linear_init(&m->fc1, ps, name, in, hidden, true, init, std, rng);
  if (st) return st;
  snprintf(name, sizeof name, "%s.fc2", prefix);
  st = pg_linear_init(&m->fc2, ps, name, hidden, out, true, init, std, rng);
  if (st) return st;
  m->in = in;
  m->hidden = hidden;
  m->out = out;
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
