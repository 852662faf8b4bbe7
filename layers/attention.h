/* Attention: the scaled dot-product core, multi-head self-attention with a
 * fused qkv Linear (DiT's, as timm's Attention; docs/dit.md), and a single
 * head with its own key, query and value Linears without bias (the seed
 * notebook's Head), scores scaled by 1/sqrt(head_size), or by the notebook's
 * own 1/sqrt(n_embed) when asked (docs/layers.md, "Attention").
 *
 * Masks: `causal` lets query i see keys 0..i; key_padding_mask [B, T] (1 =
 * this key is padding, as PyTorch's key_padding_mask) hides keys from every
 * query of its batch entry. A query row that sees no key at all gives a zero
 * output and zero gradients (PyTorch gives NaN there).
 *
 * The core reads strided views of q, k and v (no copies). Heads of up to
 * 1024 tokens and 256 channels run through the fused kernel
 * (attention_fused.h: one (batch, head) pair per thread, masks and dropout
 * included); larger ones go pair by pair through BLIS's threaded products.
 * Either way the softmax is max-subtracted, so scores of any magnitude are
 * safe. Backward saves the attention probabilities [B, heads, T, T] (and the
 * dropout keep-mask, one byte per weight, when dropout is active). */
#ifndef PG_ATTENTION_H
#define PG_ATTENTION_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/layers/linear.h"

/* ---- the core: softmax(q k^T * scale + masks) v, per head ---- */

/* The scale argument of pg_sdpa_op that selects the default 1/sqrt(dk), as
 * PyTorch's scaled_dot_product_attention(scale=None). */
#define PG_SDPA_DEFAULT_SCALE 0.0f

/* 1/sqrt(size) in float (rounded once from double): the default scale for
 * heads of width `size` (1 for size < 1). */
PG_API float pg_attention_scale(int64_t size);

/* qkv [B, T, 3h] as a qkv Linear leaves it: q, k, v are its first, second
 * and third h channels, head n uses channels n*hd..(n+1)*hd-1 of each
 * (hd = h / heads), scale 1/sqrt(hd). Returns the heads side by side [B, T, h]. */
PG_API pg_tensor *pg_sdpa_packed_op(pg_ctx *ctx, pg_tensor *qkv, int heads, bool causal,
                             const uint8_t *key_padding_mask);

/* Separate q, k [B, T, heads*dk] and v [B, T, heads*dv] -> [B, T, heads*dv]:
 * softmax(q k^T * scale) v per head, as PyTorch's
 * scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal,
 * scale=scale) on [B, heads, T, d] views. scale: any finite factor, or
 * PG_SDPA_DEFAULT_SCALE (0) for 1/sqrt(dk); a non-finite one is an error.
 * Dropout with probability `dropout` on the attention weights when
 * ctx->training (rng is then required; NULL otherwise is fine). */
PG_API pg_tensor *pg_sdpa_op(pg_ctx *ctx, pg_tensor *q, pg_tensor *k, pg_tensor *v, int heads,
                      bool causal, const uint8_t *key_padding_mask, float dropout, float scale,
                      pg_rng *rng);

/* ---- multi-head self-attention (DiT's; docs/dit.md) ---- */

/* x [B, T, h], qkv_weight [3h, h], qkv_bias [3h] or NULL, proj_weight [h, h],
 * proj_bias [h] or NULL -> [B, T, h]: proj(heads(sdpa(qkv(x)))). */
PG_API pg_tensor *pg_attention_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *qkv_weight, pg_tensor *qkv_bias,
                           pg_tensor *proj_weight, pg_tensor *proj_bias, int heads, bool causal,
                           const uint8_t *key_padding_mask);

typedef struct {
  pg_linear qkv;  /* `<prefix>.qkv.weight` [3h, h], `.qkv.bias` [3h] (optional) */
  pg_linear proj; /* `<prefix>.proj.weight` [h, h], `.proj.bias` [h] */
  int64_t hidden;
  int heads;
} pg_attention;

/* Both Linears get the init scheme (DiT: xavier_uniform, bias 0). */
PG_API pg_status pg_attention_init(pg_attention *a, pg_params *ps, const char *prefix, int64_t hidden,
                            int heads, bool qkv_bias, pg_linear_init_kind init, float std,
                            pg_rng *rng);
PG_API pg_tensor *pg_attention_forward(pg_ctx *ctx, const pg_attention *a, pg_tensor *x, bool causal,
                                const uint8_t *key_padding_mask);

/* ---- a single head (seed style) ---- */

/* x [B, T, n_embed], key/query/value weights [head_size, n_embed] (no
 * biases) -> [B, T, head_size]: softmax(q k^T * scale) v with q, k, v the
 * three Linears of x, dropout on the attention weights in training. scale
 * as pg_sdpa_op's (PG_SDPA_DEFAULT_SCALE: 1/sqrt(head_size)). */
PG_API pg_tensor *pg_attention_head_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *key_weight,
                                pg_tensor *query_weight, pg_tensor *value_weight, bool causal,
                                float dropout, float scale, pg_rng *rng);

/* Which size the single head's scores are scaled by. */
typedef enum {
  /* 1/sqrt(head_size), as multi-head attention and PyTorch's default */
  PG_HEAD_SCALE_HEAD_SIZE = 0,
  /* 1/sqrt(n_embed): the seed notebook's Head, `wei = q @ k.transpose(-2, -1)
   * * C**-0.5` with C the embedding size of x [B, T, C] */
  PG_HEAD_SCALE_N_EMBED = 1,
} pg_head_scale;

typedef struct {
  pg_linear key, query, value; /* `<prefix>.key.weight` [head_size, n_embed], ... */
  int64_t n_embed, head_size;
  float dropout;
  pg_head_scale scale_kind;
  float scale; /* the factor of q k^T that scale_kind selects */
} pg_attention_head;

/* PyTorch's default Linear init (uniform +-1/sqrt(n_embed)), registered in
 * the order key, query, value. dropout in [0, 1); scale_kind one of
 * pg_head_scale (anything else is an error). */
PG_API pg_status pg_attention_head_init(pg_attention_head *h, pg_params *ps, const char *prefix,
                                 int64_t n_embed, int64_t head_size, float dropout,
                                 pg_head_scale scale_kind, pg_rng *rng);
/* rng draws the dropout masks (needed only in training with dropout > 0). */
PG_API pg_tensor *pg_attention_head_forward(pg_ctx *ctx, const pg_attention_head *h, pg_tensor *x,
                                     bool causal, pg_rng *rng);

#endif
