#include "patchgrad/layers/transformer_block.h"

#include <stdio.h>

#include "patchgrad/autograd/ops.h"

pg_status pg_transformer_block_init(pg_transformer_block *b, pg_params *ps, const char *prefix,
                                    int64_t hidden, int heads, int64_t mlp_hidden, float ln_eps,
                                    pg_linear_init_kind init, pg_rng *rng) {
  char name[PG_PARAM_NAME_MAX];
  snprintf(name, sizeof name, "%s.norm1", prefix);
  if (pg_layernorm_init(&b->norm1, ps, name, hidden, ln_eps, true)) return pg_last_status();
  snprintf(name, sizeof name, "%s.attn", prefix);
  if (pg_attention_init(&b->attn, ps, name, hidden, heads, true, init, 0, rng)) return pg_last_status();
  snprintf(name, sizeof name, "%s.norm2", prefix);
  if (pg_layernorm_init(&b->norm2, ps, name, hidden, ln_eps, true)) return pg_last_status();
  snprintf(name, sizeof name, "%s.mlp", prefix);
  return pg_mlp_init(&b->mlp, ps, name, hidden, mlp_hidden, hidden, init, 0, rng);
}

pg_tensor *pg_transformer_block_forward(pg_ctx *ctx, const pg_transformer_block *b, pg_tensor *x) {
  pg_tensor *att = pg_attention_forward(ctx, &b->attn, pg_layernorm_forward(ctx, &b->norm1, x), false, NULL);
  x = pg_add(ctx, x, att);
  return pg_add(ctx, x, pg_mlp_forward(ctx, &b->mlp, pg_layernorm_forward(ctx, &b->norm2, x)));
}
