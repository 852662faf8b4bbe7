/* A single attention head, as the seed notebook's Head: its own key, query
 * and value Linears without bias, scores scaled by 1/sqrt(head_size) (or by
 * the notebook's 1/sqrt(n_embed), PG_HEAD_SCALE_N_EMBED), an optional causal
 * mask and dropout on the attention weights. The attention itself is the
 * shared core of attention.c with one head. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/layers/attention.h"

pg_tensor *pg_attention_head_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *key_weight,
                                pg_tensor *query_weight, pg_tensor *value_weight, bool causal,
                                float dropout, float scale, pg_rng *rng) {
  if (!x || !key_weight || !query_weight || !value_weight) return NULL;
  if (x->ndim != 3) {
    pg_fail(PG_ERR_ARG, "pg_attention_head_op: x must be [B, T, n_embed], got %s", pg_shape_of(x));
    return NULL;
  }
  if (!pg_same_shape(key_weight, query_weight) || !pg_same_shape(key_weight, value_weight)) {
    pg_fail(PG_ERR_ARG, "pg_attention_head_op: key, query and value weights must share the shape [head_size, n_embed]; got %s, %s, %s",
            pg_shape_of(key_weight), pg_shape_of(query_weight), pg_shape_of(value_weight));
    return NULL;
  }
  pg_tensor *k = pg_linear_op(ctx, x, key_weight, NULL);
  pg_tensor *q = pg_linear_op(ctx, x, query_weight, NULL);
  pg_tensor *v = pg_linear_op(ctx, x, value_weight, NULL);
  return pg_sdpa_op(ctx, q, k, v, 1, causal, NULL, dropout, scale, rng);
}

pg_status pg_attention_head_init(pg_attention_head *h, pg_params *ps, const char *prefix,
                                 int64_t n_embed, int64_t head_size, float dropout,
                                 pg_head_scale scale_kind, pg_rng *rng) {
  if (!h || !ps || !prefix) return pg_fail(PG_ERR_ARG, "pg_attention_head_init: layer, params and prefix must not be NULL");
  memset(h, 0, sizeof *h);
  if (n_embed < 1 || head_size < 1)
    return pg_fail(PG_ERR_ARG, "pg_attention_head_init '%s': n_embed and head_size must be >= 1, got %lld and %lld",
                   prefix, (long long)n_embed, (long long)head_size);
  if (!(dropout >= 0.0f && dropout < 1.0f))
    return pg_fail(PG_ERR_ARG, "pg_attention_head_init '%s': dropout must be in [0, 1), got %g", prefix, (double)dropout);
  if (scale_kind != PG_HEAD_SCALE_HEAD_SIZE && scale_kind != PG_HEAD_SCALE_N_EMBED)
    return pg_fail(PG_ERR_ARG, "pg_attention_head_init '%s': scale_kind must be PG_HEAD_SCALE_HEAD_SIZE (0) or "
                   "PG_HEAD_SCALE_N_EMBED (1), got %d", prefix, (int)scale_kind);
  pg_linear *parts[3] = {&h->key, &h->query, &h->value};
  const char *names[3] = {"key", "query", "value"};
  for (int i = 0; i < 3; i++) {
    char name[PG_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, names[i]);
    pg_status st = pg_linear_init(parts[i], ps, name, n_embed, head_size, false,
                                  PG_LINEAR_INIT_DEFAULT, 0.0f, rng);
    if (st) return st;
  }
  h->n_embed = n_embed;
  h->head_size = head_size;
  h->dropout = dropout;
  h->scale_kind = scale_kind;
  h->scale = pg_attention_scale(scale_kind == PG_HEAD_SCALE_N_EMBED ? n_embed : head_size);
  return PG_OK;
}

pg_tensor *pg_attention_head_forward(pg_ctx *ctx, const pg_attention_head *h, pg_tensor *x,
                                     bool causal, pg_rng *rng) {
  if (!x) return NULL;
  if (!h || !h->key.weight) {
    pg_fail(PG_ERR_ARG, "pg_attention_head_forward: the layer is not initialised");
    return NULL;
  }
  return pg_attention_head_op(ctx, x, h->key.weight, h->query.weight, h->value.weight, causal,
                              h->dropout, h->scale, rng);
}
