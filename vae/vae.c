/* The patch VAE's forward pass, module by module in the order of vae.h. */
#include "patchgrad/vae/vae.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/autograd/gaussian.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/layers/pos_embed.h"

#define VAE_LN_EPS 1e-6f

pg_status pg_vae_config_check(const pg_vae_config *c) {
  if (c->height < 1 || c->width < 1)
    return pg_fail(PG_ERR_ARG, "vae: image height and width must be >= 1, got %lld x %lld",
                   (long long)c->height, (long long)c->width);
  if (c->in_channels < 1)
    return pg_fail(PG_ERR_ARG, "vae: in_channels must be >= 1, got %lld", (long long)c->in_channels);
  if (c->patch_size < 1 || c->height % c->patch_size || c->width % c->patch_size)
    return pg_fail(PG_ERR_ARG, "vae: patch_size %lld must be >= 1 and divide the image %lld x %lld",
                   (long long)c->patch_size, (long long)c->height, (long long)c->width);
  if (c->latent_channels < 1)
    return pg_fail(PG_ERR_ARG, "vae: latent_channels must be >= 1, got %lld", (long long)c->latent_channels);
  if (c->heads < 1 || c->hidden < 1 || c->hidden % c->heads)
    return pg_fail(PG_ERR_ARG, "vae: hidden %lld must be a positive multiple of heads %lld",
                   (long long)c->hidden, (long long)c->heads);
  if (c->hidden % 4)
    return pg_fail(PG_ERR_ARG, "vae: hidden must be divisible by 4 (2-D sin-cos table), got %lld",
                   (long long)c->hidden);
  if (c->encoder_depth < 0 || c->encoder_depth > PG_VAE_MAX_DEPTH)
    return pg_fail(PG_ERR_ARG, "vae: encoder_depth must be in 0..%d, got %lld", PG_VAE_MAX_DEPTH,
                   (long long)c->encoder_depth);
  if (c->decoder_depth < 0 || c->decoder_depth > PG_VAE_MAX_DEPTH)
    return pg_fail(PG_ERR_ARG, "vae: decoder_depth must be in 0..%d, got %lld", PG_VAE_MAX_DEPTH,
                   (long long)c->decoder_depth);
  if (c->mlp_ratio < 1)
    return pg_fail(PG_ERR_ARG, "vae: mlp_ratio must be >= 1, got %lld", (long long)c->mlp_ratio);
  return PG_OK;
}

void pg_vae_latent_shape(const pg_vae_config *c, int64_t shape[3]) {
  shape[0] = c->height / c->patch_size;
  shape[1] = c->width / c->patch_size;
  shape[2] = c->latent_channels;
}

/* `<side>.blocks.{i}` for i < depth. */
static pg_status init_blocks(pg_transformer_block *blocks, int64_t depth, pg_params *ps,
                             const char *side, const pg_vae_config *c, pg_rng *rng) {
  char name[PG_PARAM_NAME_MAX];
  for (int64_t i = 0; i < depth; i++) {
    snprintf(name, sizeof name, "%s.blocks.%lld", side, (long long)i);
    if (pg_transformer_block_init(&blocks[i], ps, name, c->hidden, (int)c->heads,
                                  c->mlp_ratio * c->hidden, VAE_LN_EPS,
                                  PG_LINEAR_INIT_XAVIER_UNIFORM, rng))
      return pg_last_status();
  }
  return PG_OK;
}

pg_status pg_vae_init(pg_vae *m, const pg_vae_config *cfg, pg_rng *rng) {
  memset(m, 0, sizeof *m);
  if (pg_vae_config_check(cfg)) return pg_last_status();
  m->cfg = *cfg;
  pg_params *ps = &m->params;
  pg_params_init(ps);
  const int64_t h = cfg->hidden, C = cfg->in_channels, p = cfg->patch_size, L = cfg->latent_channels;
  const int64_t grid[2] = {cfg->height / p, cfg->width / p};

  if (pg_patchify_init(&m->patch_embed, ps, "encoder.patch_embed.proj", C, h, 2, p, p, true, rng) ||
      !(m->enc_pos_embed = pg_sincos_pos_embed_buffer(ps, "encoder.pos_embed", 2, grid, h)) ||
      init_blocks(m->enc_blocks, cfg->encoder_depth, ps, "encoder", cfg, rng) ||
      pg_layernorm_init(&m->enc_norm, ps, "encoder.norm", h, VAE_LN_EPS, true) ||
      pg_linear_init(&m->moments, ps, "encoder.moments", h, 2 * L, true, PG_LINEAR_INIT_XAVIER_UNIFORM, 0, rng) ||
      pg_linear_init(&m->latent_embed, ps, "decoder.latent_embed", L, h, true, PG_LINEAR_INIT_XAVIER_UNIFORM, 0, rng) ||
      !(m->dec_pos_embed = pg_sincos_pos_embed_buffer(ps, "decoder.pos_embed", 2, grid, h)) ||
      init_blocks(m->dec_blocks, cfg->decoder_depth, ps, "decoder", cfg, rng) ||
      pg_layernorm_init(&m->dec_norm, ps, "decoder.norm", h, VAE_LN_EPS, true) ||
      pg_unpatchify_init(&m->unpatchify, ps, "decoder.unpatchify", h, C, 2, p, p, true,
                         PG_UNPATCH_INIT_DEFAULT, rng)) {
    pg_params_free(ps);
    return pg_last_status() ? pg_last_status() : PG_ERR_ARG;
  }
  return PG_OK;
}

void pg_vae_free(pg_vae *m) { pg_params_free(&m->params); }

/* tokens [B, T, h] through the blocks and the final LayerNorm */
static pg_tensor *run_blocks(pg_ctx *ctx, const pg_transformer_block *blocks, int64_t depth,
                             const pg_layernorm *norm, pg_tensor *tok) {
  for (int64_t i = 0; i < depth; i++) tok = pg_transformer_block_forward(ctx, &blocks[i], tok);
  return pg_layernorm_forward(ctx, norm, tok);
}

static bool check_input(const char *who, const pg_tensor *t, int64_t h, int64_t w, int64_t c) {
  if (t->ndim == 4 && t->shape[1] == h && t->shape[2] == w && t->shape[3] == c) return true;
  pg_fail(PG_ERR_ARG, "vae: %s has shape %s, the model takes [B, %lld, %lld, %lld]", who,
          pg_shape_of(t), (long long)h, (long long)w, (long long)c);
  return false;
}

pg_tensor *pg_vae_encode(pg_ctx *ctx, pg_vae *m, pg_tensor *x, pg_tensor **logvar) {
  *logvar = NULL;
  if (!x) return NULL;
  const pg_vae_config *c = &m->cfg;
  if (!check_input("input x", x, c->height, c->width, c->in_channels)) return NULL;
  int64_t ls[3];
  pg_vae_latent_shape(c, ls);
  const int64_t B = x->shape[0], T = ls[0] * ls[1], L = c->latent_channels;

  pg_tensor *tok = pg_reshape(ctx, pg_patchify_forward(ctx, &m->patch_embed, x), 3, (int64_t[]){B, T, c->hidden});
  tok = run_blocks(ctx, m->enc_blocks, c->encoder_depth, &m->enc_norm, pg_add(ctx, tok, m->enc_pos_embed));
  pg_tensor *moments = pg_linear_forward(ctx, &m->moments, tok);
  if (!moments) return NULL;
  pg_tensor *parts[2]; /* mean, logvar: diffusers' torch.chunk(moments, 2, dim=channels) */
  if (pg_chunk(ctx, moments, 2, 2, parts)) return NULL;
  const int64_t shape[4] = {B, ls[0], ls[1], L};
  pg_tensor *mean = pg_reshape(ctx, parts[0], 4, shape);
  *logvar = pg_reshape(ctx, parts[1], 4, shape);
  return *logvar ? mean : NULL;
}

pg_tensor *pg_vae_decode(pg_ctx *ctx, pg_vae *m, pg_tensor *z) {
  if (!z) return NULL;
  const pg_vae_config *c = &m->cfg;
  int64_t ls[3];
  pg_vae_latent_shape(c, ls);
  if (!check_input("latent z", z, ls[0], ls[1], ls[2])) return NULL;
  const int64_t B = z->shape[0], T = ls[0] * ls[1];

  pg_tensor *tok = pg_linear_forward(ctx, &m->latent_embed, pg_reshape(ctx, z, 3, (int64_t[]){B, T, ls[2]}));
  tok = run_blocks(ctx, m->dec_blocks, c->decoder_depth, &m->dec_norm, pg_add(ctx, tok, m->dec_pos_embed));
  tok = pg_reshape(ctx, tok, 4, (int64_t[]){B, ls[0], ls[1], c->hidden});
  return pg_unpatchify_forward(ctx, &m->unpatchify, tok, NULL);
}

pg_status pg_vae_forward(pg_ctx *ctx, pg_vae *m, pg_tensor *x, pg_tensor *eps, pg_rng *rng,
                         pg_vae_output *out) {
  memset(out, 0, sizeof *out);
  out->mean = pg_vae_encode(ctx, m, x, &out->logvar);
  if (!out->mean) return pg_last_status();
  if (!eps) {
    if (!rng) return pg_fail(PG_ERR_ARG, "vae: neither eps nor a generator to draw it from");
    eps = pg_normal(ctx, out->mean->ndim, out->mean->shape, 0.0f, 1.0f, rng);
  }
  out->eps = eps;
  out->z = pg_reparameterize_eps(ctx, out->mean, out->logvar, eps);
  out->recon = pg_vae_decode(ctx, m, out->z);
  return out->recon ? PG_OK : pg_last_status();
}

pg_tensor *pg_vae_loss(pg_ctx *ctx, const pg_vae_output *out, pg_tensor *x, float beta,
                       pg_tensor **rec, pg_tensor **kl) {
  pg_tensor *r = pg_mse(ctx, out->recon, x);
  pg_tensor *k = pg_kl_normal(ctx, out->mean, out->logvar);
  if (rec) *rec = r;
  if (kl) *kl = k;
  return pg_add(ctx, r, pg_mul_scalar(ctx, k, beta));
}

#define CKPT_CASE (PG_FIELD_CKPT | PG_FIELD_CASE)
const pg_config_field pg_vae_config_fields[] = {
    {"height", PG_FIELD_INT, offsetof(pg_vae_config, height), CKPT_CASE, .required = true},
    {"width", PG_FIELD_INT, offsetof(pg_vae_config, width), CKPT_CASE, .required = true},
    {"in_channels", PG_FIELD_INT, offsetof(pg_vae_config, in_channels), CKPT_CASE, .required = true},
    {"patch_size", PG_FIELD_INT, offsetof(pg_vae_config, patch_size), CKPT_CASE, .required = true,
     .flag = "--patch", .metavar = "P", .min = 1, .max = 1 << 10},
    {"latent_channels", PG_FIELD_INT, offsetof(pg_vae_config, latent_channels), CKPT_CASE, .required = true,
     .flag = "--latent-channels", .metavar = "C", .min = 1, .max = 1 << 10},
    {"hidden", PG_FIELD_INT, offsetof(pg_vae_config, hidden), CKPT_CASE, .required = true,
     .flag = "--hidden", .metavar = "H", .min = 4, .max = 1 << 16},
    {"encoder_depth", PG_FIELD_INT, offsetof(pg_vae_config, encoder_depth), CKPT_CASE, .required = true,
     .flag = "--encoder-depth", .metavar = "D", .min = 0, .max = PG_VAE_MAX_DEPTH},
    {"decoder_depth", PG_FIELD_INT, offsetof(pg_vae_config, decoder_depth), CKPT_CASE, .required = true,
     .flag = "--decoder-depth", .metavar = "D", .min = 0, .max = PG_VAE_MAX_DEPTH},
    {"heads", PG_FIELD_INT, offsetof(pg_vae_config, heads), CKPT_CASE, .def = 1,
     .flag = "--heads", .metavar = "N", .min = 1, .max = 1 << 10},
    {"mlp_ratio", PG_FIELD_INT, offsetof(pg_vae_config, mlp_ratio), CKPT_CASE, .def = 4,
     .flag = "--mlp-ratio", .metavar = "R", .min = 1, .max = 64},
};
_Static_assert(sizeof pg_vae_config_fields / sizeof *pg_vae_config_fields == PG_VAE_CONFIG_FIELDS,
               "PG_VAE_CONFIG_FIELDS counts the rows of pg_vae_config_fields");

pg_status pg_vae_config_to_kv(const pg_vae_config *c, pg_kv *kv) {
  pg_status st = pg_kv_set_string(kv, "model", "vae");
  return st ? st : pg_kv_set_fields(kv, c, PG_VAE_CONFIG_FIELDS, pg_vae_config_fields);
}

pg_status pg_vae_config_from_kv(const pg_kv *kv, pg_vae_config *c) {
  const char *model = NULL;
  if (pg_kv_get_string(kv, "model", &model) != 1)
    return pg_fail(PG_ERR_FORMAT, "checkpoint config: no 'model' key, so not a VAE (a DiT checkpoint?)");
  if (strcmp(model, "vae"))
    return pg_fail(PG_ERR_FORMAT, "checkpoint config: model is '%s', not a VAE ('vae')", model);
  if (pg_kv_get_fields(kv, c, PG_VAE_CONFIG_FIELDS, pg_vae_config_fields)) return pg_last_status();
  return pg_vae_config_check(c);
}
