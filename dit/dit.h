/* The toy DiT denoiser defined in docs/dit.md, built from the library's
 * layers.
 *
 * Parameters live in the model's own pg_params list under the checkpoint
 * names of docs/dit.md (x_embedder.conv.weight, blocks.0.attn.qkv.weight, ...);
 * pos_embed is a PG_PARAM_BUFFER (saved, never trained). A forward pass
 * records on ctx's tape like any op; its activations live in ctx's arena. */
#ifndef PG_DIT_H
#define PG_DIT_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/io/kv.h"
#include "patchgrad/layers/attention.h"
#include "patchgrad/layers/layernorm.h"
#include "patchgrad/layers/linear.h"
#include "patchgrad/layers/mlp.h"
#include "patchgrad/autograd/params.h"
#include "patchgrad/layers/patchify.h"
#include "patchgrad/layers/unpatchify.h"

#define PG_DIT_FREQ_DIM 256
#define PG_DIT_MAX_DEPTH 64

typedef struct {
  int64_t input_size;   /* H = W */
  int64_t in_channels;  /* C (the output has C channels too) */
  int64_t patch_size;   /* must divide input_size */
  int64_t hidden;       /* divisible by heads and by 4 */
  int64_t depth;
  int64_t heads;
  int64_t mlp_ratio;    /* 4 */
  int64_t num_classes;  /* 0: unconditional */
  float class_dropout;  /* 0.1; used by the trainer, not by the forward */
} pg_dit_config;

typedef struct {
  pg_linear adaln;      /* adaLN_modulation.1: SiLU(c) -> 6h */
  pg_attention attn;
  pg_mlp mlp;
} pg_dit_block;

typedef struct {
  pg_dit_config cfg;
  pg_params params;     /* owns every tensor below */
  pg_patchify x_embedder;
  pg_tensor *pos_embed; /* [1, T, h], fixed 2D sin-cos */
  pg_linear t_mlp0, t_mlp2;
  pg_tensor *y_table;   /* [num_classes + 1, h]; NULL when unconditional */
  pg_dit_block blocks[PG_DIT_MAX_DEPTH];
  pg_linear final_adaln; /* final_layer.adaLN_modulation.1: SiLU(c) -> 2h */
  pg_unpatchify final_unpatchify;
} pg_dit;

/* Checks a config; the message names the first bad field and its value. */
PG_API pg_status pg_dit_config_check(const pg_dit_config *cfg);

/* The config's settings, one row each (io/kv.h): the checkpoint's keys in
 * this order, the attributes of a `dit` case of `patchgrad check`, and the
 * model flags of `patchgrad train` (input_size, in_channels and num_classes
 * come from the data and have no flag). */
#define PG_DIT_CONFIG_FIELDS 9
PG_API extern const pg_config_field pg_dit_config_fields[];

/* Config <-> a checkpoint's key/value list (the trainer writes it, the
 * sampler and `train --resume` read it back; the config is checked). */
PG_API pg_status pg_dit_config_to_kv(const pg_dit_config *c, pg_kv *kv);
PG_API pg_status pg_dit_config_from_kv(const pg_kv *kv, pg_dit_config *c);
/* Builds the model with DiT's initialisation (docs/dit.md) from rng. */
PG_API pg_status pg_dit_init(pg_dit *m, const pg_dit_config *cfg, pg_rng *rng);
PG_API void pg_dit_free(pg_dit *m);

/* eps prediction [B, H, W, C] for x [B, H, W, C], timesteps t [B] (floats),
 * labels y [B] (NULL when unconditional; the null class is num_classes). */
PG_API pg_tensor *pg_dit_forward(pg_ctx *ctx, pg_dit *m, pg_tensor *x, const float *t, const int64_t *y);

/* DiT's sinusoidal frequency embedding of the timesteps (docs/dit.md) into
 * out [B, 256], cosines first. */
PG_API void pg_dit_timestep_embedding(const float *t, int64_t batch, float *out);

/* FLOPs of one forward pass's matrix products for a batch (for the benchmark). */
PG_API double pg_dit_forward_gemm_flops(const pg_dit_config *cfg, int64_t batch);

#endif
