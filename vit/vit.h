/* A Vision Transformer classifier (Dosovitskiy et al., "An Image is Worth
 * 16x16 Words", 2021), built from the library's layers, with timm's
 * parameter names:
 *
 *   x [B, H, W, C] (channels last: the latents of latents.h)
 *   patch_embed.proj   Patchify(C -> h, patch p, stride p)   -> [B, T, h], T = (H/p)(W/p)
 *   cls_token [1, 1, h] prepended to the tokens              -> [B, 1 + T, h]
 *   pos_embed [1, 1 + T, h] (learned) added
 *   blocks.{i}, depth of them (pre-norm):
 *     x = x + attn(norm1(x))      multi-head (qkv, proj) or one seed-style head
 *     x = x + mlp(norm2(x))       fc1 -> GELU (tanh form) -> fc2
 *   norm (LayerNorm) of the class token, head Linear(h, num_classes) -> logits [B, K]
 *
 * LayerNorms use eps 1e-6 (timm's ViT). With single_head, each block's
 * attention is one seed-style Head (the Head of the notebook this project
 * grew from: `attn.key.weight`, `attn.query.weight`, `attn.value.weight`
 * [h, h], no bias, no output projection) instead of multi-head attention
 * with its fused `attn.qkv` and `attn.proj`, so the two can be compared on
 * the same task.
 *
 * Initialisation: the patch embedding as PyTorch's Conv default; cls_token
 * and pos_embed truncated normal std 0.02 (timm); block Linears
 * xavier_uniform with zero biases (the original JAX ViT; the single head
 * keeps PyTorch's Linear default, as its layer defines); head normal std 0.02
 * with zero bias (timm); LayerNorms weight 1, bias 0. */
#ifndef PG_VIT_H
#define PG_VIT_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>

#include "patchgrad/layers/attention.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/layers/layernorm.h"
#include "patchgrad/layers/linear.h"
#include "patchgrad/layers/mlp.h"
#include "patchgrad/autograd/params.h"
#include "patchgrad/layers/patchify.h"

#define PG_VIT_MAX_DEPTH 64

typedef struct {
  int64_t height, width; /* input latents H, W (the patch size divides both) */
  int64_t in_channels;   /* C */
  int64_t patch_size;    /* p */
  int64_t hidden;        /* h, divisible by heads */
  int64_t depth;
  int64_t heads;         /* multi-head only; the single head spans all of h */
  int64_t mlp_ratio;     /* MLP width = mlp_ratio * h */
  int64_t num_classes;   /* K >= 1 */
  bool single_head;      /* seed-style Head instead of multi-head attention */
} pg_vit_config;

typedef struct {
  pg_layernorm norm1, norm2;
  pg_attention attn;           /* multi-head */
  pg_attention_head head_attn; /* single head (prefix `blocks.{i}.attn` too) */
  pg_mlp mlp;
} pg_vit_block;

typedef struct {
  pg_vit_config cfg;
  pg_params params; /* owns every tensor below */
  pg_patchify patch_embed;
  pg_tensor *cls_token; /* [1, 1, h] */
  pg_tensor *pos_embed; /* [1, 1 + T, h] */
  pg_vit_block blocks[PG_VIT_MAX_DEPTH];
  pg_layernorm norm;
  pg_linear head;
} pg_vit;

/* Checks a config; the message names the first bad field and its value. */
PG_API pg_status pg_vit_config_check(const pg_vit_config *cfg);
/* Builds the model, initialised from rng. On error m holds nothing. */
PG_API pg_status pg_vit_init(pg_vit *m, const pg_vit_config *cfg, pg_rng *rng);
PG_API void pg_vit_free(pg_vit *m);

/* Logits [B, num_classes] for x [B, H, W, C]. Records on ctx's tape. */
PG_API pg_tensor *pg_vit_forward(pg_ctx *ctx, pg_vit *m, pg_tensor *x);
/* The penultimate features [B, hidden] for x [B, H, W, C]: the normed class
 * token, norm(x[:, 0]), which is what the head reads (pg_vit_forward is the
 * head applied to these). The feature network of the Frechet distance
 * (frechet.h). Records on ctx's tape; NULL with a message on a bad shape. */
PG_API pg_tensor *pg_vit_features(pg_ctx *ctx, pg_vit *m, pg_tensor *x);

/* The config's settings, one row each (io/kv.h): the checkpoint's integer
 * keys in this order, the attributes of a `vit` case of `patchgrad check`,
 * and the model flags of `patchgrad classify train` (the input shape and
 * the classes come from the data and have no flag). */
#define PG_VIT_CONFIG_FIELDS 10
PG_API extern const pg_config_field pg_vit_config_fields[];

/* Config <-> a checkpoint's key/value list: "model" = "vit" (which marks
 * it), the integer settings, and "attention" = "multi_head" or
 * "single_head". */
PG_API pg_status pg_vit_config_to_kv(const pg_vit_config *c, pg_kv *kv);
PG_API pg_status pg_vit_config_from_kv(const pg_kv *kv, pg_vit_config *c);

/* FLOPs of one forward pass's matrix products for a batch (for steps/s
 * estimates and the README). */
PG_API double pg_vit_forward_gemm_flops(const pg_vit_config *c, int64_t batch);

#endif
