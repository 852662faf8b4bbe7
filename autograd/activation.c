/* Activations: relu, silu, gelu (erf and tanh forms), softmax over the last
 * axis, dropout. Forward and backward side by side; the formulas are
 * PyTorch's, so gradients match torch.nn.functional to float rounding.
 * exp, GELU (tanh form) and the softmax rows are the library's one kernel
 * of each (kernels.h), written so that these loops vectorise. */
#include <math.h>
#include <string.h>

#include "patchgrad/autograd/kernels.h"
#include "patchgrad/autograd/op_util.h"
#include "patchgrad/autograd/ops.h"

#define SQRT1_2 0.70710678118654752440f     /* 1/sqrt(2) */
#define INV_SQRT_2PI 0.39894228040143267794f /* 1/sqrt(2 pi) */

/* ---- relu ---- */
PG_UNARY_OP(relu, x > 0.0f ? x : 0.0f, x > 0.0f ? g : 0.0f)

pg_tensor *pg_relu(pg_ctx *ctx, pg_tensor *x) { return pg_unary(ctx, "pg_relu", &relu_op, x, 0); }

/* ---- silu: x * sigmoid(x) ---- */
static inline float sigmoid(float x) { return 1.0f / (1.0f + pg_expf(-x)); }
/* d/dx x s(x) = s(x) (1 + x (1 - s(x))) */
static inline float silu_grad(float x) {
  const float s = sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}
PG_UNARY_OP(silu, x * sigmoid(x), g * silu_grad(x))

pg_tensor *pg_silu(pg_ctx *ctx, pg_tensor *x) { return pg_unary(ctx, "pg_silu", &silu_op, x, 0); }

/* ---- gelu ----
 * erf form:  x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2; derivative
 *            Phi(x) + x phi(x) with phi the normal density.
 * tanh form: kernels.h's pg_gelu_tanhf and its slope (the MLP's fused
 *            Linear+GELU computes the same numbers). */
static inline float gelu_erf_grad(float x) {
  const float cdf = 0.5f * (1.0f + erff(x * SQRT1_2));
  const float pdf = INV_SQRT_2PI * pg_expf(-0.5f * x * x);
  return cdf + x * pdf;
}
PG_UNARY_OP(gelu_erf, 0.5f * x * (1.0f + erff(x * SQRT1_2)), g * gelu_erf_grad(x))
PG_UNARY_OP(gelu_tanh, pg_gelu_tanhf(x), g * pg_gelu_tanh_slopef(x))

pg_tensor *pg_gelu(pg_ctx *ctx, pg_tensor *x, pg_gelu_kind kind) {
  if (!x) return NULL;
  if (kind == PG_GELU_ERF) return pg_unary(ctx, "pg_gelu", &gelu_erf_op, x, 0);
  if (kind == PG_GELU_TANH) return pg_unary(ctx, "pg_gelu", &gelu_tanh_op, x, 0);
  pg_fail(PG_ERR_ARG, "pg_gelu: kind %d is neither PG_GELU_ERF (0) nor PG_GELU_TANH (1)", (int)kind);
  return NULL;
}

/* ---- softmax over the last axis ----
 * kernels.h's pg_softmax_row per row (max-subtracted: stable for inputs of
 * any magnitude); backward pg_softmax_grad_row, gx = y * (g - sum(g * y)). */

static void softmax_backward(pg_ctx *ctx, pg_node *node) {
  const pg_tensor *y = node->out;
  bool fresh;
  float *gx = pg_grad_dest(ctx, node->in[0], &fresh);
  if (!gx) return;
  const int64_t n = y->ndim ? y->shape[y->ndim - 1] : 1, rows = n ? y->numel / n : 0;
  PG_FOR(y->numel, r, rows,
         pg_softmax_grad_row(y->data + r * n, y->grad + r * n, gx + r * n, n, !fresh));
}

pg_tensor *pg_softmax(pg_ctx *ctx, pg_tensor *x) {
  if (!x) return NULL;
  pg_tensor *y = pg_empty(ctx, x->ndim, x->shape);
  if (!y) return NULL;
  const int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1, rows = n ? x->numel / n : 0;
  PG_FOR(x->numel, r, rows, pg_softmax_row(x->data + r * n, y->data + r * n, n));
  pg_tape_record(ctx, "pg_softmax", softmax_backward, y, 1, &x);
  return y;
}

/* ---- dropout ----
 * Keeps each element with probability 1 - p, scaled by 1/(1 - p) so the
 * expectation is unchanged; the keep mask (one byte per element, in the
 * arena) is saved for backward: gx = g * mask / (1 - p). */

typedef struct {
  const unsigned char *mask; /* [numel], 1 = kept */
  float scale;               /* 1 / (1 - p) */
} dropout_saved;

static void dropout_backward(pg_ctx *ctx, pg_node *node) {
  const dropout_saved *s = node->saved;
  const unsigned char *mask = s->mask;
  const pg_tensor *y = node->out;
  const float scale = s->scale;
  bool fresh;
  float *gx = pg_grad_dest(ctx, node->in[0], &fresh);
  if (!gx) return;
  if (fresh)
    for (int64_t i = 0; i < y->numel; i++) gx[i] = mask[i] ? y->grad[i] * scale : 0.0f;
  else
    for (int64_t i = 0; i < y->numel; i++) gx[i] += mask[i] ? y->grad[i] * scale : 0.0f;
}

pg_tensor *pg_dropout(pg_ctx *ctx, pg_tensor *x, float p, pg_rng *rng) {
  if (!x) return NULL;
  if (!(p >= 0.0f && p < 1.0f)) {
    pg_fail(PG_ERR_ARG, "pg_dropout: p = %g is outside [0, 1) (x %s)", (double)p, pg_shape_of(x));
    return NULL;
  }
  if (!ctx->training || p == 0.0f) return x; /* the identity: no copy, no record */
  if (!rng) {
    pg_fail(PG_ERR_ARG, "pg_dropout: rng is NULL (training mode with p = %g needs a generator)",
            (double)p);
    return NULL;
  }
  pg_tensor *y = pg_empty(ctx, x->ndim, x->shape);
  unsigned char *mask = y ? pg_scratch(ctx, (size_t)x->numel) : NULL;
  if (!mask) return NULL;
  const float scale = 1.0f / (1.0f - p);
  /* One draw per element in order, so a seed fixes the mask on any machine
   * and any thread count. */
  for (int64_t i = 0; i < x->numel; i++) {
    mask[i] = pg_rng_uniform(rng) >= p;
    y->data[i] = mask[i] ? x->data[i] * scale : 0.0f;
  }
  pg_node *node = pg_tape_record(ctx, "pg_dropout", dropout_backward, y, 1, &x);
  PG_SAVE(ctx, node, dropout_saved, .mask = mask, .scale = scale);
  return y;
}
