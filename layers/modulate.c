#include "patchgrad/layers/modulate.h"

#include <string.h>

#include "patchgrad/autograd/op.h"

/* x is [B, ..., h]: B samples of `tokens` rows of h values each. */
typedef struct {
  int64_t batch, tokens, hidden;
} per_sample;

static pg_status check_per_sample(const char *who, const pg_tensor *x, const char *vec_name,
                                  const pg_tensor *vec, per_sample *ps) {
  if (x->ndim < 2)
    return pg_fail(PG_ERR_ARG, "%s: x must be [B, ..., h] (rank >= 2), got %s", who, pg_shape_of(x));
  int64_t b = x->shape[0], h = x->shape[x->ndim - 1];
  if (vec->ndim != 2 || vec->shape[0] != b || vec->shape[1] != h)
    return pg_fail(PG_ERR_ARG, "%s: %s must be [B, h] = [%lld, %lld] for x %s, got %s", who,
                   vec_name, (long long)b, (long long)h, pg_shape_of(x), pg_shape_of(vec));
  ps->batch = b;
  ps->hidden = h;
  ps->tokens = (b > 0 && h > 0) ? x->numel / (b * h) : 0;
  return PG_OK;
}

/* ---- modulate ---- */

static void modulate_backward(pg_ctx *ctx, pg_node *node) {
  pg_tensor *x = node->in[0], *shift = node->in[1], *scale = node->in[2];
  const per_sample d = *(const per_sample *)node->saved;
  const float *g = node->out->grad;
  bool fx, fsh, fsc;
  float *dx = pg_grad_dest(ctx, x, &fx);
  float *dshift = pg_grad_dest(ctx, shift, &fsh);
  float *dscale = pg_grad_dest(ctx, scale, &fsc);
  /* Each sample's rows and its shift/scale gradients belong to one thread. */
  PG_FOR(x->numel, b, d.batch, {
    const float *sc = scale->data + b * d.hidden;
    float *dsh = dshift ? dshift + b * d.hidden : NULL, *dsc = dscale ? dscale + b * d.hidden : NULL;
    if (dsh && fsh) memset(dsh, 0, (size_t)d.hidden * sizeof(float));
    if (dsc && fsc) memset(dsc, 0, (size_t)d.hidden * sizeof(float));
    for (int64_t t = 0; t < d.tokens; t++) {
      int64_t row = (b * d.tokens + t) * d.hidden;
      const float *gr = g + row, *xr = x->data + row;
      if (dx) {
        float *dxr = dx + row;
        for (int64_t j = 0; j < d.hidden; j++) {
          float v = gr[j] * (1.0f + sc[j]);
          dxr[j] = fx ? v : dxr[j] + v;
        }
      }
      if (dsh)
        for (int64_t j = 0; j < d.hidden; j++) dsh[j] += gr[j];
      if (dsc)
        for (int64_t j = 0; j < d.hidden; j++) dsc[j] += gr[j] * xr[j];
    }
  });
}

pg_tensor *pg_modulate_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *shift, pg_tensor *scale) {
  if (!x || !shift || !scale) return NULL;
  per_sample d;
  if (check_per_sample("pg_modulate_op", x, "shift", shift, &d) ||
      check_per_sample("pg_modulate_op", x, "scale", scale, &d))
    return NULL;
  pg_tensor *out = pg_empty(ctx, x->ndim, x->shape);
  if (!out) return NULL;
  PG_FOR(x->numel, r, d.batch * d.tokens, {
    int64_t b = r / d.tokens;
    const float *sh = shift->data + b * d.hidden, *sc = scale->data + b * d.hidden;
    const float *xr = x->data + r * d.hidden;
    float *o = out->data + r * d.hidden;
    for (int64_t j = 0; j < d.hidden; j++) o[j] = xr[j] * (1.0f + sc[j]) + sh[j];
  });
  pg_tensor *inputs[3] = {x, shift, scale};
  pg_node *node = pg_tape_record(ctx, "pg_modulate_op", modulate_backward, out, 3, inputs);
  pg_node_save(ctx, node, &d, sizeof d); /* the geometry */
  return out;
}

/* ---- gated residual ---- */

static void gated_residual_backward(pg_ctx *ctx, pg_node *node) {
  pg_tensor *x = node->in[0], *gate = node->in[1], *y = node->in[2];
  const per_sample d = *(const per_sample *)node->saved;
  float *g = node->out->grad;
  /* dx = g: an intermediate x without a gradient yet adopts the output's
   * buffer (pg_grad_adopt) instead of receiving a copy; only after g has
   * been read for dy and dgate, and never when x is also gate or y. */
  const bool adopt = x != y && x != gate && pg_grad_adoptable(x);
  bool fx = false, fg, fy;
  float *dx = adopt ? NULL : pg_grad_dest(ctx, x, &fx);
  float *dgate = pg_grad_dest(ctx, gate, &fg);
  float *dy = pg_grad_dest(ctx, y, &fy);
  /* Each sample's rows and its dgate row belong to one thread. */
  PG_FOR(x->numel, b, d.batch, {
    const float *ga = gate->data + b * d.hidden;
    float *dga = dgate ? dgate + b * d.hidden : NULL;
    if (dga && fg) memset(dga, 0, (size_t)d.hidden * sizeof(float));
    for (int64_t t = 0; t < d.tokens; t++) {
      int64_t row = (b * d.tokens + t) * d.hidden;
      const float *gr = g + row, *yr = y->data + row;
      if (dx) {
        float *dxr = dx + row;
        for (int64_t j = 0; j < d.hidden; j++) dxr[j] = fx ? gr[j] : dxr[j] + gr[j];
      }
      if (dy) {
        float *dyr = dy + row;
        for (int64_t j = 0; j < d.hidden; j++) {
          float v = gr[j] * ga[j];
          dyr[j] = fy ? v : dyr[j] + v;
        }
      }
      if (dga)
        for (int64_t j = 0; j < d.hidden; j++) dga[j] += gr[j] * yr[j];
    }
  });
  if (adopt) pg_grad_adopt(x, g);
}

pg_tensor *pg_gated_residual_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *gate, pg_tensor *y) {
  if (!x || !gate || !y) return NULL;
  if (!pg_same_shape(x, y)) {
    pg_fail(PG_ERR_ARG, "pg_gated_residual_op: x %s and y %s must have the same shape",
            pg_shape_of(x), pg_shape_of(y));
    return NULL;
  }
  per_sample d;
  if (check_per_sample("pg_gated_residual_op", x, "gate", gate, &d)) return NULL;
  pg_tensor *out = pg_empty(ctx, x->ndim, x->shape);
  if (!out) return NULL;
  PG_FOR(x->numel, r, d.batch * d.tokens, {
    const float *ga = gate->data + (r / d.tokens) * d.hidden;
    const float *xr = x->data + r * d.hidden, *yr = y->data + r * d.hidden;
    float *o = out->data + r * d.hidden;
    for (int64_t j = 0; j < d.hidden; j++) o[j] = xr[j] + ga[j] * yr[j];
  });
  pg_tensor *inputs[3] = {x, gate, y};
  pg_node *node = pg_tape_record(ctx, "pg_gated_residual_op", gated_residual_backward, out, 3, inputs);
  pg_node_save(ctx, node, &d, sizeof d); /* the geometry */
  return out;
}
