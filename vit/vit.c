/* The ViT forward pass, module by module in the order of vit.h. */
#include "patchgrad/vit/vit.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/autograd/ops.h"
#include "patchgrad/layers/pos_embed.h"

#define VIT_LN_EPS 1e-6f

pg_status pg_vit_config_check(const pg_vit_config *c) {
  if (c->height < 1 || c->width < 1)
    return pg_fail(PG_ERR_ARG, "vit: input height and width must be >= 1, got %lld x %lld",
                   (long long)c->height, (long long)c->width);
  if (c->in_channels < 1)
    return pg_fail(PG_ERR_ARG, "vit: in_channels must be >= 1, got %lld", (long long)c->in_channels);
  if (c->patch_size < 1 || c->height % c->patch_size || c->width % c->patch_size)
    return pg_fail(PG_ERR_ARG, "vit: patch_size %lld must be >= 1 and divide the input %lld x %lld",
                   (long long)c->patch_size, (long long)c->height, (long long)c->width);
  if (c->depth < 1 || c->depth > PG_VIT_MAX_DEPTH)
    return pg_fail(PG_ERR_ARG, "vit: depth must be in 1..%d, got %lld", PG_VIT_MAX_DEPTH,
                   (long long)c->depth);
  if (c->hidden < 1) return pg_fail(PG_ERR_ARG, "vit: hidden must be >= 1, got %lld", (long long)c->hidden);
  if (!c->single_head && (c->heads < 1 || c->hidden % c->heads))
    return pg_fail(PG_ERR_ARG, "vit: hidden %lld must be a positive multiple of heads %lld",
                   (long long)c->hidden, (long long)c->heads);
  if (c->mlp_ratio < 1)
    return pg_fail(PG_ERR_ARG, "vit: mlp_ratio must be >= 1, got %lld", (long long)c->mlp_ratio);
  if (c->num_classes < 1)
    return pg_fail(PG_ERR_ARG, "vit: num_classes must be >= 1, got %lld", (long long)c->num_classes);
  return PG_OK;
}

static int64_t vit_tokens(const pg_vit_config *c) {
  return (c->height / c->patch_size) * (c->width / c->patch_size);
}

pg_status pg_vit_init(pg_vit *m, const pg_vit_config *cfg, pg_rng *rng) {
  memset(m, 0, sizeof *m);
  if (pg_vit_config_check(cfg)) return pg_last_status();
  m->cfg = *cfg;
  pg_params *ps = &m->params;
  pg_params_init(ps);
  const int64_t h = cfg->hidden, T = vit_tokens(cfg);
  char name[PG_PARAM_NAME_MAX];

  if (pg_patchify_init(&m->patch_embed, ps, "patch_embed.proj", cfg->in_channels, h, 2,
                       cfg->patch_size, cfg->patch_size, true, rng))
    goto fail;
  /* The class token: one learned vector that every image starts with; its
   * final state is what the head reads. No weight decay (as timm). */
  m->cls_token = pg_params_add(ps, PG_PARAM_EMBEDDING, 3, (int64_t[]){1, 1, h}, "cls_token");
  if (!m->cls_token) goto fail;
  pg_fill_trunc_normal(m->cls_token, 0.0f, 0.02f, -2.0f, 2.0f, rng);
  if (!(m->pos_embed = pg_pos_embed_learned(ps, "pos_embed", 1 + T, h, rng))) goto fail;

  for (int i = 0; i < cfg->depth; i++) {
    pg_vit_block *b = &m->blocks[i];
    snprintf(name, sizeof name, "blocks.%d.norm1", i);
    if (pg_layernorm_init(&b->norm1, ps, name, h, VIT_LN_EPS, true)) goto fail;
    snprintf(name, sizeof name, "blocks.%d.attn", i);
    if (cfg->single_head ? pg_attention_head_init(&b->head_attn, ps, name, h, h, 0.0f, PG_HEAD_SCALE_HEAD_SIZE, rng)
                         : pg_attention_init(&b->attn, ps, name, h, (int)cfg->heads, true,
                                             PG_LINEAR_INIT_XAVIER_UNIFORM, 0, rng))
      goto fail;
    snprintf(name, sizeof name, "blocks.%d.norm2", i);
    if (pg_layernorm_init(&b->norm2, ps, name, h, VIT_LN_EPS, true)) goto fail;
    snprintf(name, sizeof name, "blocks.%d.mlp", i);
    if (pg_mlp_init(&b->mlp, ps, name, h, cfg->mlp_ratio * h, h, PG_LINEAR_INIT_XAVIER_UNIFORM, 0, rng))
      goto fail;
  }
  if (pg_layernorm_init(&m->norm, ps, "norm", h, VIT_LN_EPS, true) ||
      pg_linear_init(&m->head, ps, "head", h, cfg->num_classes, true, PG_LINEAR_INIT_NORMAL, 0.02f, rng))
    goto fail;
  return PG_OK;
fail:
  pg_params_free(ps);
  return pg_last_status() ? pg_last_status() : PG_ERR_ARG;
}

void pg_vit_free(pg_vit *m) { pg_params_free(&m->params); }

pg_tensor *pg_vit_features(pg_ctx *ctx, pg_vit *m, pg_tensor *x) {
  if (!x) return NULL;
  const pg_vit_config *c = &m->cfg;
  if (x->ndim != 4 || x->shape[1] != c->height || x->shape[2] != c->width ||
      x->shape[3] != c->in_channels) {
    pg_fail(PG_ERR_ARG, "vit: input x has shape %s, the model takes [B, %lld, %lld, %lld]",
            pg_shape_of(x), (long long)c->height, (long long)c->width, (long long)c->in_channels);
    return NULL;
  }
  const int64_t B = x->shape[0], h = c->hidden, T = vit_tokens(c);

  /* patch tokens [B, T, h], the class token in front, positions added */
  pg_tensor *tok = pg_reshape(ctx, pg_patchify_forward(ctx, &m->patch_embed, x), 3, (int64_t[]){B, T, h});
  pg_tensor *cls = pg_broadcast_to(ctx, m->cls_token, 3, (int64_t[]){B, 1, h});
  tok = pg_concat(ctx, 2, (pg_tensor *[]){cls, tok}, 1);
  tok = pg_add(ctx, tok, m->pos_embed);

  /* pre-norm encoder blocks */
  for (int i = 0; i < c->depth; i++) {
    const pg_vit_block *b = &m->blocks[i];
    pg_tensor *hn = pg_layernorm_forward(ctx, &b->norm1, tok);
    pg_tensor *att = c->single_head ? pg_attention_head_forward(ctx, &b->head_attn, hn, false, NULL)
                                    : pg_attention_forward(ctx, &b->attn, hn, false, NULL);
    tok = pg_add(ctx, tok, att);
    tok = pg_add(ctx, tok, pg_mlp_forward(ctx, &b->mlp, pg_layernorm_forward(ctx, &b->norm2, tok)));
    if (!tok) return NULL;
  }

  /* LayerNorm acts per token, so normalising only the class token gives the
   * same logits as normalising all of them and then picking it. */
  pg_tensor *cls_out = pg_reshape(ctx, pg_slice(ctx, tok, 1, 0, 1), 2, (int64_t[]){B, h});
  return pg_layernorm_forward(ctx, &m->norm, cls_out);
}

pg_tensor *pg_vit_forward(pg_ctx *ctx, pg_vit *m, pg_tensor *x) {
  return pg_linear_forward(ctx, &m->head, pg_vit_features(ctx, m, x));
}

#define CKPT_CASE (PG_FIELD_CKPT | PG_FIELD_CASE)
const pg_config_field pg_vit_config_fields[] = {
    {"height", PG_FIELD_INT, offsetof(pg_vit_config, height), CKPT_CASE, .required = true},
    {"width", PG_FIELD_INT, offsetof(pg_vit_config, width), CKPT_CASE, .required = true},
    {"in_channels", PG_FIELD_INT, offsetof(pg_vit_config, in_channels), CKPT_CASE, .required = true},
    {"patch_size", PG_FIELD_INT, offsetof(pg_vit_config, patch_size), CKPT_CASE, .required = true,
     .flag = "--patch", .metavar = "P", .min = 1, .max = 1 << 10},
    {"hidden", PG_FIELD_INT, offsetof(pg_vit_config, hidden), CKPT_CASE, .required = true,
     .flag = "--hidden", .metavar = "H", .min = 1, .max = 1 << 16},
    {"depth", PG_FIELD_INT, offsetof(pg_vit_config, depth), CKPT_CASE, .required = true,
     .flag = "--depth", .metavar = "D", .min = 1, .max = PG_VIT_MAX_DEPTH},
    {"heads", PG_FIELD_INT, offsetof(pg_vit_config, heads), CKPT_CASE, .def = 1,
     .flag = "--heads", .metavar = "N", .min = 1, .max = 1 << 10},
    {"mlp_ratio", PG_FIELD_INT, offsetof(pg_vit_config, mlp_ratio), CKPT_CASE, .def = 4,
     .flag = "--mlp-ratio", .metavar = "R", .min = 1, .max = 64},
    {"num_classes", PG_FIELD_INT, offsetof(pg_vit_config, num_classes), CKPT_CASE, .required = true},
    /* 0/1 in case files; a checkpoint says "attention" = "single_head" or "multi_head" */
    {"single_head", PG_FIELD_BOOL, offsetof(pg_vit_config, single_head), PG_FIELD_CASE,
     .flag = "--single-head",
     .help = "one seed-style attention head (key/query/value Linears, no projection) per block "
             "instead of multi-head attention"},
};
_Static_assert(sizeof pg_vit_config_fields / sizeof *pg_vit_config_fields == PG_VIT_CONFIG_FIELDS,
               "PG_VIT_CONFIG_FIELDS counts the rows of pg_vit_config_fields");

pg_status pg_vit_config_to_kv(const pg_vit_config *c, pg_kv *kv) {
  pg_status st = pg_kv_set_string(kv, "model", "vit");
  st = st ? st : pg_kv_set_fields(kv, c, PG_VIT_CONFIG_FIELDS, pg_vit_config_fields);
  st = st ? st : pg_kv_set_string(kv, "attention", c->single_head ? "single_head" : "multi_head");
  return st;
}

pg_status pg_vit_config_from_kv(const pg_kv *kv, pg_vit_config *c) {
  const char *model = NULL, *attention = NULL;
  if (pg_kv_get_string(kv, "model", &model) != 1)
    return pg_fail(PG_ERR_FORMAT, "checkpoint config: no 'model' key, so not a ViT classifier "
                                  "(a DiT checkpoint?)");
  if (strcmp(model, "vit"))
    return pg_fail(PG_ERR_FORMAT, "checkpoint config: model is '%s', not a ViT classifier ('vit')", model);
  if (pg_kv_get_fields(kv, c, PG_VIT_CONFIG_FIELDS, pg_vit_config_fields)) return pg_last_status();
  if (pg_kv_get_string(kv, "attention", &attention) != 1 ||
      (strcmp(attention, "single_head") && strcmp(attention, "multi_head")))
    return pg_fail(PG_ERR_FORMAT, "checkpoint config: 'attention' must be \"multi_head\" or \"single_head\", got '%s'",
                   attention ? attention : "(absent)");
  c->single_head = !strcmp(attention, "single_head");
  return pg_vit_config_check(c);
}

double pg_vit_forward_gemm_flops(const pg_vit_config *c, int64_t batch) {
  const double B = (double)batch, h = (double)c->hidden, p = (double)c->patch_size;
  const double T = (double)vit_tokens(c), S = T + 1, hm = (double)c->mlp_ratio * h;
  double f = 2 * B * T * (double)c->in_channels * p * p * h; /* patch_embed */
  double attn = c->single_head ? 2 * B * S * h * 3 * h                   /* key, query, value */
                               : 2 * B * S * h * 3 * h + 2 * B * S * h * h; /* qkv, proj */
  attn += 2 * 2 * B * S * S * h;                                          /* QK^T and PV */
  f += (double)c->depth * (attn + 2 * 2 * B * S * h * hm);                /* + fc1, fc2 */
  return f + 2 * B * h * (double)c->num_classes;                          /* head */
}
