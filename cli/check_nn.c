/* `patchgrad check` handlers of the transformer layers (casefile.md):
 *   linear:         bias; x [..., in], params/weight, params/bias
 *   layernorm:      eps, affine; x [..., d], params/weight, params/bias
 *   attention:      heads, causal, qkv_bias; x [B, T, h],
 *                   params/qkv.weight, qkv.bias, proj.weight, proj.bias
 *   attention_head: causal, scale (a single seed-style head, dropout off;
 *                   our own fixtures; scale the factor of q k^T, absent or
 *                   0: 1/sqrt(head_size)); x [B, T, n_embed],
 *                   params/key.weight, query.weight, value.weight */
#include "patchgrad/layers/attention.h"
#include "check_ops.h"
#include "patchgrad/layers/layernorm.h"
#include "patchgrad/layers/linear.h"

void pg_check_linear(pg_case *c) {
  int64_t bias = pg_case_attr_int(c, "bias", 1);
  pg_tensor *x = pg_case_array(c, "x");
  pg_tensor *w = pg_case_array(c, "params/weight");
  pg_tensor *b = bias ? pg_case_array(c, "params/bias") : NULL;
  if (c->error) return;
  pg_tensor *out = pg_linear_op(c->ctx, x, w, b);
  const char *names[] = {"x", "params/weight", "params/bias"};
  pg_tensor *inputs[] = {x, w, b};
  pg_case_check_op(c, out, 3, names, inputs);
}

void pg_check_layernorm(pg_case *c) {
  double eps = pg_case_attr_double(c, "eps", 1e-5);
  int64_t affine = pg_case_attr_int(c, "affine", 1);
  pg_tensor *x = pg_case_array(c, "x");
  pg_tensor *w = affine ? pg_case_array(c, "params/weight") : NULL;
  pg_tensor *b = affine ? pg_case_array(c, "params/bias") : NULL;
  if (c->error) return;
  pg_tensor *out = pg_layernorm_op(c->ctx, x, w, b, (float)eps);
  const char *names[] = {"x", "params/weight", "params/bias"};
  pg_tensor *inputs[] = {x, w, b};
  pg_case_check_op(c, out, 3, names, inputs);
}

void pg_check_attention(pg_case *c) {
  int64_t heads = pg_case_attr_int(c, "heads", -1);
  int64_t causal = pg_case_attr_int(c, "causal", 0);
  int64_t qkv_bias = pg_case_attr_int(c, "qkv_bias", 1);
  if (c->error) return;
  if (heads < 1 || heads > 1 << 20) {
    pg_case_fail(c, heads == -1 ? "missing integer attribute 'heads'"
                                : "attribute 'heads' must be >= 1, got %lld", (long long)heads);
    return;
  }
  pg_tensor *x = pg_case_array(c, "x");
  pg_tensor *qkv_w = pg_case_array(c, "params/qkv.weight");
  pg_tensor *qkv_b = qkv_bias ? pg_case_array(c, "params/qkv.bias") : NULL;
  pg_tensor *proj_w = pg_case_array(c, "params/proj.weight");
  pg_tensor *proj_b = pg_case_array(c, "params/proj.bias");
  if (c->error) return;
  pg_tensor *out = pg_attention_op(c->ctx, x, qkv_w, qkv_b, proj_w, proj_b, (int)heads,
                                   causal != 0, NULL);
  const char *names[] = {"x", "params/qkv.weight", "params/qkv.bias", "params/proj.weight",
                         "params/proj.bias"};
  pg_tensor *inputs[] = {x, qkv_w, qkv_b, proj_w, proj_b};
  pg_case_check_op(c, out, 5, names, inputs);
}

void pg_check_attention_head(pg_case *c) {
  int64_t causal = pg_case_attr_int(c, "causal", 0);
  double scale = pg_case_attr_double(c, "scale", PG_SDPA_DEFAULT_SCALE);
  pg_tensor *x = pg_case_array(c, "x");
  pg_tensor *kw = pg_case_array(c, "params/key.weight");
  pg_tensor *qw = pg_case_array(c, "params/query.weight");
  pg_tensor *vw = pg_case_array(c, "params/value.weight");
  if (c->error) return;
  pg_tensor *out = pg_attention_head_op(c->ctx, x, kw, qw, vw, causal != 0, 0.0f, (float)scale, NULL);
  const char *names[] = {"x", "params/key.weight", "params/query.weight", "params/value.weight"};
  pg_tensor *inputs[] = {x, kw, qw, vw};
  pg_case_check_op(c, out, 4, names, inputs);
}
