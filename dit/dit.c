/* The DiT forward pass, module by module in the order of docs/dit.md. */
#include "patchgrad/dit/dit.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/layers/modulate.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/layers/pos_embed.h"

pg_status pg_dit_config_check(const pg_dit_config *c) {
  if (c->input_size < 1) return pg_fail(PG_ERR_ARG, "dit: input_size must be >= 1, got %lld", (long long)c->input_size);
  if (c->in_channels < 1) return pg_fail(PG_ERR_ARG, "dit: in_channels must be >= 1, got %lld", (long long)c->in_channels);
  if (c->patch_size < 1 || c->input_size % c->patch_size)
    return pg_fail(PG_ERR_ARG, "dit: patch_size %lld must be >= 1 and divide input_size %lld",
                   (long long)c->patch_size, (long long)c->input_size);
  if (c->depth < 1 || c->depth > PG_DIT_MAX_DEPTH)
    return pg_fail(PG_ERR_ARG, "dit: depth must be in 1..%d, got %lld", PG_DIT_MAX_DEPTH, (long long)c->depth);
  if (c->heads < 1 || c->hidden < 1 || c->hidden % c->heads)
    return pg_fail(PG_ERR_ARG, "dit: hidden %lld must be a positive multiple of heads %lld",
                   (long long)c->hidden, (long long)c->heads);
  if (c->hidden % 4)
    return pg_fail(PG_ERR_ARG, "dit: hidden must be divisible by 4 (2D sin-cos table), got %lld", (long long)c->hidden);
  if (c->mlp_ratio < 1) return pg_fail(PG_ERR_ARG, "dit: mlp_ratio must be >= 1, got %lld", (long long)c->mlp_ratio);
  if (c->num_classes < 0) return pg_fail(PG_ERR_ARG, "dit: num_classes must be >= 0, got %lld", (long long)c->num_classes);
  if (!(c->class_dropout >= 0 && c->class_dropout < 1))
    return pg_fail(PG_ERR_ARG, "dit: class_dropout must be in [0, 1), got %g", c->class_dropout);
  return PG_OK;
}

#define CKPT_CASE (PG_FIELD_CKPT | PG_FIELD_CASE)
const pg_config_field pg_dit_config_fields[] = {
    {"input_size", PG_FIELD_INT, offsetof(pg_dit_config, input_size), CKPT_CASE, .required = true},
    {"in_channels", PG_FIELD_INT, offsetof(pg_dit_config, in_channels), CKPT_CASE, .required = true},
    {"patch_size", PG_FIELD_INT, offsetof(pg_dit_config, patch_size), CKPT_CASE, .required = true,
     .flag = "--patch", .metavar = "P", .min = 1, .max = 1 << 10},
    {"hidden", PG_FIELD_INT, offsetof(pg_dit_config, hidden), CKPT_CASE, .required = true,
     .flag = "--hidden", .metavar = "H", .min = 4, .max = 1 << 16},
    {"depth", PG_FIELD_INT, offsetof(pg_dit_config, depth), CKPT_CASE, .required = true,
     .flag = "--depth", .metavar = "D", .min = 1, .max = PG_DIT_MAX_DEPTH},
    {"heads", PG_FIELD_INT, offsetof(pg_dit_config, heads), CKPT_CASE, .required = true,
     .flag = "--heads", .metavar = "N", .min = 1, .max = 1 << 10},
    {"mlp_ratio", PG_FIELD_INT, offsetof(pg_dit_config, mlp_ratio), CKPT_CASE, .def = 4,
     .flag = "--mlp-ratio", .metavar = "R", .min = 1, .max = 64},
    {"num_classes", PG_FIELD_INT, offsetof(pg_dit_config, num_classes), CKPT_CASE, .required = true},
    /* a training setting: not in case files (the forward does not use it) */
    {"class_dropout", PG_FIELD_FLOAT, offsetof(pg_dit_config, class_dropout), PG_FIELD_CKPT, .def = 0.1,
     .flag = "--class-dropout", .metavar = "P", .min = 0, .max = 0.999,
     .help = "label dropout for classifier-free guidance"},
};
_Static_assert(sizeof pg_dit_config_fields / sizeof *pg_dit_config_fields == PG_DIT_CONFIG_FIELDS,
               "PG_DIT_CONFIG_FIELDS counts the rows of pg_dit_config_fields");

pg_status pg_dit_config_to_kv(const pg_dit_config *c, pg_kv *kv) {
  return pg_kv_set_fields(kv, c, PG_DIT_CONFIG_FIELDS, pg_dit_config_fields);
}

pg_status pg_dit_config_from_kv(const pg_kv *kv, pg_dit_config *c) {
  pg_status st = pg_kv_get_fields(kv, c, PG_DIT_CONFIG_FIELDS, pg_dit_config_fields);
  return st ? st : pg_dit_config_check(c);
}

static void xavier_uniform(pg_tensor *w, int64_t fan_out, int64_t fan_in, pg_rng *rng) {
  float bound = sqrtf(6.0f / (float)(fan_in + fan_out));
  pg_fill_uniform(w, -bound, bound, rng);
}

pg_status pg_dit_init(pg_dit *m, const pg_dit_config *cfg, pg_rng *rng) {
  memset(m, 0, sizeof *m);
  if (pg_dit_config_check(cfg)) return pg_last_status();
  m->cfg = *cfg;
  pg_params *ps = &m->params;
  pg_params_init(ps);
  const int64_t h = cfg->hidden, C = cfg->in_channels, p = cfg->patch_size;
  const int64_t grid = cfg->input_size / p, T = grid * grid;

  /* Every Linear: xavier_uniform weight, zero bias (DiT's _basic_init); the
   * special cases below overwrite it afterwards, as DiT does. */
  if (pg_patchify_init(&m->x_embedder, ps, "x_embedder.conv", C, h, 2, p, p, true, rng)) goto fail;
  xavier_uniform(m->x_embedder.weight, h, C * p * p, rng);
  pg_fill(m->x_embedder.bias, 0.0f);

  m->pos_embed = pg_params_add(ps, PG_PARAM_BUFFER, 3, (int64_t[]){1, T, h}, "pos_embed");
  if (!m->pos_embed) goto fail;
  if (pg_sincos_pos_embed_fill(m->pos_embed, 2, (int64_t[]){grid, grid})) goto fail;

  if (pg_linear_init(&m->t_mlp0, ps, "t_embedder.mlp.0", PG_DIT_FREQ_DIM, h, true, PG_LINEAR_INIT_NORMAL, 0.02f, rng) ||
      pg_linear_init(&m->t_mlp2, ps, "t_embedder.mlp.2", h, h, true, PG_LINEAR_INIT_NORMAL, 0.02f, rng))
    goto fail;

  if (cfg->num_classes > 0) {
    m->y_table = pg_params_add(ps, PG_PARAM_EMBEDDING, 2, (int64_t[]){cfg->num_classes + 1, h},
                               "y_embedder.embedding_table.weight");
    if (!m->y_table) goto fail;
    pg_fill_normal(m->y_table, 0.0f, 0.02f, rng);
  }

  char name[PG_PARAM_NAME_MAX];
  for (int i = 0; i < cfg->depth; i++) {
    pg_dit_block *b = &m->blocks[i];
    snprintf(name, sizeof name, "blocks.%d.adaLN_modulation.1", i);
    if (pg_linear_init(&b->adaln, ps, name, h, 6 * h, true, PG_LINEAR_INIT_ZEROS, 0, rng)) goto fail;
    snprintf(name, sizeof name, "blocks.%d.attn", i);
    if (pg_attention_init(&b->attn, ps, name, h, (int)cfg->heads, true, PG_LINEAR_INIT_XAVIER_UNIFORM, 0, rng))
      goto fail;
    snprintf(name, sizeof name, "blocks.%d.mlp", i);
    if (pg_mlp_init(&b->mlp, ps, name, h, cfg->mlp_ratio * h, h, PG_LINEAR_INIT_XAVIER_UNIFORM, 0, rng))
      goto fail;
  }
  if (pg_linear_init(&m->final_adaln, ps, "final_layer.adaLN_modulation.1", h, 2 * h, true,
                     PG_LINEAR_INIT_ZEROS, 0, rng) ||
      pg_unpatchify_init(&m->final_unpatchify, ps, "final_layer.unpatchify.deconv", h, C, 2, p, p,
                         true, PG_UNPATCH_INIT_ZEROS, rng))
    goto fail;
  return PG_OK;
fail:
  pg_params_free(ps);
  return pg_last_status() ? pg_last_status() : PG_ERR_ARG;
}

void pg_dit_free(pg_dit *m) { pg_params_free(&m->params); }

/* SiLU(c) -> Linear -> n equal chunks of [B, h] (adaLN's shift/scale/gate). */
static pg_status adaln_chunks(pg_ctx *ctx, const pg_linear *l, pg_tensor *silu_c, int n,
                              pg_tensor **out) {
  pg_tensor *mod = pg_linear_forward(ctx, l, silu_c);
  if (!mod) return pg_last_status();
  return pg_chunk(ctx, mod, 1, n, out);
}

pg_tensor *pg_dit_forward(pg_ctx *ctx, pg_dit *m, pg_tensor *x, const float *t, const int64_t *y) {
  if (!x) return NULL;
  const pg_dit_config *c = &m->cfg;
  if (x->ndim != 4 || x->shape[1] != c->input_size || x->shape[2] != c->input_size ||
      x->shape[3] != c->in_channels) {
    pg_fail(PG_ERR_ARG, "dit: input x has shape %s, the model takes [B, %lld, %lld, %lld]",
            pg_shape_of(x), (long long)c->input_size, (long long)c->input_size,
            (long long)c->in_channels);
    return NULL;
  }
  if (c->num_classes > 0 && !y) {
    pg_fail(PG_ERR_ARG, "dit: the model is conditional (num_classes %lld): labels y are needed",
            (long long)c->num_classes);
    return NULL;
  }
  const int64_t B = x->shape[0], h = c->hidden, grid = c->input_size / c->patch_size;
  const int64_t T = grid * grid;

  /* 1-2. patch tokens [B, T, h] plus the fixed position table */
  pg_tensor *tok = pg_patchify_forward(ctx, &m->x_embedder, x);
  tok = pg_add(ctx, pg_reshape(ctx, tok, 3, (int64_t[]){B, T, h}), m->pos_embed);

  /* 3-5. conditioning c = t_emb (+ y_emb), used as SiLU(c) by every adaLN */
  pg_tensor *freq = pg_empty(ctx, 2, (int64_t[]){B, PG_DIT_FREQ_DIM});
  if (!freq) return NULL;
  pg_dit_timestep_embedding(t, B, freq->data);
  pg_tensor *cond = pg_linear_forward(ctx, &m->t_mlp2, pg_silu(ctx, pg_linear_forward(ctx, &m->t_mlp0, freq)));
  if (m->y_table) cond = pg_add(ctx, cond, pg_embedding(ctx, m->y_table, 1, &B, y));
  pg_tensor *silu_c = pg_silu(ctx, cond);
  if (!tok || !silu_c) return NULL;

  /* 6. blocks */
  for (int i = 0; i < c->depth; i++) {
    const pg_dit_block *b = &m->blocks[i];
    pg_tensor *mod[6]; /* shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp */
    if (adaln_chunks(ctx, &b->adaln, silu_c, 6, mod)) return NULL;
    pg_tensor *hn = pg_layernorm_modulate_op(ctx, tok, mod[0], mod[1], 1e-6f);
    tok = pg_gated_residual_op(ctx, tok, mod[2], pg_attention_forward(ctx, &b->attn, hn, false, NULL));
    hn = pg_layernorm_modulate_op(ctx, tok, mod[3], mod[4], 1e-6f);
    tok = pg_gated_residual_op(ctx, tok, mod[5], pg_mlp_forward(ctx, &b->mlp, hn));
    if (!tok) return NULL;
  }

  /* 7. final layer: adaLN modulate, then Unpatchify back to [B, H, W, C] */
  pg_tensor *fin[2]; /* shift, scale */
  if (adaln_chunks(ctx, &m->final_adaln, silu_c, 2, fin)) return NULL;
  pg_tensor *hn = pg_layernorm_modulate_op(ctx, tok, fin[0], fin[1], 1e-6f);
  hn = pg_reshape(ctx, hn, 4, (int64_t[]){B, grid, grid, h});
  return pg_unpatchify_forward(ctx, &m->final_unpatchify, hn, NULL);
}

void pg_dit_timestep_embedding(const float *t, int64_t batch, float *out) {
  const int half = PG_DIT_FREQ_DIM / 2;
  double f[PG_DIT_FREQ_DIM / 2]; /* the frequencies, once for the batch */
  for (int k = 0; k < half; k++) f[k] = exp(-log(10000.0) * k / half);
  for (int64_t b = 0; b < batch; b++)
    for (int k = 0; k < half; k++) {
      /* In double: t * f reaches 1000 rad, where float32 would lose 1e-4. */
      double a = (double)t[b] * f[k];
      out[b * PG_DIT_FREQ_DIM + k] = (float)cos(a);
      out[b * PG_DIT_FREQ_DIM + half + k] = (float)sin(a);
    }
}

double pg_dit_forward_gemm_flops(const pg_dit_config *c, int64_t batch) {
  const double B = (double)batch, h = (double)c->hidden, p = (double)c->patch_size;
  const double grid = (double)(c->input_size / c->patch_size), T = grid * grid;
  const double patch_in = (double)c->in_channels * p * p, hm = (double)c->mlp_ratio * h;
  double f = 2 * B * T * patch_in * h;                 /* x_embedder */
  f += 2 * B * PG_DIT_FREQ_DIM * h + 2 * B * h * h;    /* t_embedder */
  double block = 2 * B * h * 6 * h                     /* adaLN */
                 + 2 * B * T * h * 3 * h               /* qkv */
                 + 2 * 2 * B * T * T * h               /* QK^T and PV over all heads */
                 + 2 * B * T * h * h                   /* proj */
                 + 2 * 2 * B * T * h * hm;             /* fc1 and fc2 */
  f += (double)c->depth * block;
  f += 2 * B * h * 2 * h + 2 * B * T * h * patch_in;   /* final adaLN, unpatchify */
  return f;
}
