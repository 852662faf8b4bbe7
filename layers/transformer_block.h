/* The pre-norm transformer encoder block (Dosovitskiy et al., "An Image is
 * Worth 16x16 Words", 2021; timm's Block), built from the layers:
 *
 *   x = x + attn(norm1(x))     multi-head self-attention (fused qkv, proj)
 *   x = x + mlp(norm2(x))      fc1 -> GELU (tanh form) -> fc2
 *
 * Parameters `<prefix>.norm1.weight/bias`, `.attn.qkv.weight/bias`,
 * `.attn.proj.weight/bias`, `.norm2.weight/bias`, `.mlp.fc1.weight/bias`,
 * `.mlp.fc2.weight/bias`, registered in that order (timm's names). */
#ifndef PG_TRANSFORMER_BLOCK_H
#define PG_TRANSFORMER_BLOCK_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/layers/attention.h"
#include "patchgrad/layers/layernorm.h"
#include "patchgrad/layers/mlp.h"

typedef struct {
  pg_layernorm norm1, norm2;
  pg_attention attn;
  pg_mlp mlp;
} pg_transformer_block;

/* hidden h divisible by heads; the MLP is h -> mlp_hidden -> h; LayerNorms
 * with eps ln_eps (weight 1, bias 0); every Linear initialised with `init`
 * (biases 0 unless PG_LINEAR_INIT_DEFAULT). */
PG_API pg_status pg_transformer_block_init(pg_transformer_block *b, pg_params *ps, const char *prefix,
                                           int64_t hidden, int heads, int64_t mlp_hidden,
                                           float ln_eps, pg_linear_init_kind init, pg_rng *rng);
/* x [B, T, h] -> [B, T, h]. */
PG_API pg_tensor *pg_transformer_block_forward(pg_ctx *ctx, const pg_transformer_block *b,
                                               pg_tensor *x);

#endif
