#include "patchgrad/layers/attention.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/layers/attention_fused.h"
#include "patchgrad/autograd/blas_internal.h"
#include "patchgrad/autograd/kernels.h"
#include "patchgrad/autograd/op.h"

/* One attention call, described once for forward and backward: where each
 * head's q, k, v (and their gradients) sit, and what was saved. Head n of
 * batch entry b starts at base + b*T*ld + n*d; rows are ld floats apart. */
typedef struct {
  int64_t batch, tokens, heads, dk, dv;
  const float *q, *k, *v;
  int64_t q_ld, k_ld, v_ld;
  float *out;                  /* [B, T, heads*dv] */
  float scale;                 /* the factor of q k^T: 1/sqrt(dk) unless given */
  bool causal;
  const uint8_t *pad;          /* [B, T], 1 = masked key; forward only */
  float dropout;               /* 0 unless training */
  const uint64_t *seeds;       /* one dropout seed per (b, n), forward only */
  float *probs;                /* [B, heads, T, T], the softmax (before dropout) */
  uint8_t *keep;               /* [B, heads, T, T] dropout keep-mask, or NULL */
} sdpa_plan;

/* Gradient destinations of one backward: dq/dk/dv laid out like q/k/v (NULL
 * when not needed), each with its own beta (0 when the buffer is fresh). */
typedef struct {
  float *dq, *dk, *dv;
  int64_t dq_ld, dk_ld, dv_ld;
  float beta_q, beta_k, beta_v;
} sdpa_grads;

/* ---- The general path: heads too large for the fused kernel ----
 * One (batch, head) pair after the other, each product on all of BLIS's
 * threads (large at these sizes; and BLIS on one thread would allocate a
 * team per call) and in float32 under autocast too, as the fused kernel;
 * the softmax rows of kernels.h in parallel over the rows. */

/* Softmax of one row of scaled scores, in place, over the keys this query may
 * see (j < limit, not padded): kernels.h's pg_softmax_row; hidden keys get 0
 * and a row that sees nothing becomes zeros. */
static void masked_softmax_row(float *s, int64_t tokens, int64_t limit, const uint8_t *pad) {
  bool any = false;
  for (int64_t j = 0; j < limit; j++) {
    if (pad && pad[j]) s[j] = -INFINITY; /* pg_expf(-inf) = 0 exactly */
    else any = true;
  }
  if (any) pg_softmax_row(s, s, limit);
  for (int64_t j = any ? limit : 0; j < tokens; j++) s[j] = 0.0f;
}

/* dst = probs * keep / (1 - p): the weights that actually multiplied v. With
 * rng, the keep-mask is drawn first (row-major, into keep when non-NULL). */
static void apply_dropout(float *dst, const float *probs, uint8_t *keep, int64_t n, float p,
                          pg_rng *rng) {
  const float rescale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; i++) {
    const bool k = rng ? pg_rng_uniform(rng) >= p : keep[i];
    if (rng && keep) keep[i] = k;
    dst[i] = k ? probs[i] * rescale : 0.0f;
  }
}

/* scratch: 2 T x T blocks. */
static void general_forward(const sdpa_plan *pl, float *scratch) {
  const int64_t T = pl->tokens, TT = T * T, out_ld = pl->heads * pl->dv;
  for (int64_t bn = 0; bn < pl->batch * pl->heads; bn++) {
    const int64_t b = bn / pl->heads, n = bn % pl->heads;
    float *p = pl->probs ? pl->probs + bn * TT : scratch;
    const float *q = pl->q + b * T * pl->q_ld + n * pl->dk;
    const float *k = pl->k + b * T * pl->k_ld + n * pl->dk;
    const float *v = pl->v + b * T * pl->v_ld + n * pl->dv;
    /* scores = scale * q k^T, straight into the probabilities' storage */
    pg_gemm_float32(false, true, T, T, pl->dk, pl->scale, q, pl->q_ld, k, pl->k_ld, 0.0f, p, T);
    const uint8_t *pad = pl->pad ? pl->pad + b * T : NULL;
    PG_FOR(TT, i, T, masked_softmax_row(p + i * T, T, pl->causal ? i + 1 : T, pad));
    const float *weights = p;
    if (pl->dropout > 0.0f) {
      pg_rng rng;
      pg_rng_seed(&rng, pl->seeds[bn]);
      float *dropped = scratch + TT;
      apply_dropout(dropped, p, pl->keep ? pl->keep + bn * TT : NULL, TT, pl->dropout, &rng);
      weights = dropped;
    }
    pg_gemm_float32(false, false, T, pl->dv, T, 1.0f, weights, T, v, pl->v_ld, 0.0f,
            pl->out + b * T * out_ld + n * pl->dv, out_ld);
  }
}

/* scratch: 2 T x T blocks. */
static void general_backward(const sdpa_plan *pl, const sdpa_grads *g, const float *dout,
                             float *scratch) {
  const int64_t T = pl->tokens, TT = T * T, out_ld = pl->heads * pl->dv;
  float *ds = scratch, *dropped = scratch + TT;
  const float rescale = pl->keep ? 1.0f / (1.0f - pl->dropout) : 1.0f;
  for (int64_t bn = 0; bn < pl->batch * pl->heads; bn++) {
    const int64_t b = bn / pl->heads, n = bn % pl->heads;
    const float *p = pl->probs + bn * TT;
    const uint8_t *keep = pl->keep ? pl->keep + bn * TT : NULL;
    const float *q = pl->q + b * T * pl->q_ld + n * pl->dk;
    const float *k = pl->k + b * T * pl->k_ld + n * pl->dk;
    const float *v = pl->v + b * T * pl->v_ld + n * pl->dv;
    const float *go = dout + b * T * out_ld + n * pl->dv;
    /* dv = weights^T dout, with the weights that multiplied v */
    if (g->dv) {
      const float *weights = p;
      if (keep) {
        apply_dropout(dropped, p, (uint8_t *)keep, TT, pl->dropout, NULL);
        weights = dropped;
      }
      pg_gemm_float32(true, false, T, pl->dv, T, 1.0f, weights, T, go, out_ld, g->beta_v,
              g->dv + b * T * g->dv_ld + n * pl->dv, g->dv_ld);
    }
    if (!g->dq && !g->dk) continue;
    /* d(weights) = dout v^T, through dropout, then through the softmax
     * (kernels.h's row). Masked weights are 0 in p, so their scores get no
     * gradient. */
    pg_gemm_float32(false, true, T, T, pl->dv, 1.0f, go, out_ld, v, pl->v_ld, 0.0f, ds, T);
    PG_FOR(TT, i, T, {
      float *dsr = ds + i * T;
      if (keep)
        for (int64_t j = 0; j < T; j++) dsr[j] = keep[i * T + j] ? dsr[j] * rescale : 0.0f;
      pg_softmax_grad_row(p + i * T, dsr, dsr, T, false);
    });
    /* scores = scale * q k^T: dq = scale * ds k, dk = scale * ds^T q */
    if (g->dq)
      pg_gemm_float32(false, false, T, pl->dk, T, pl->scale, ds, T, k, pl->k_ld, g->beta_q,
              g->dq + b * T * g->dq_ld + n * pl->dk, g->dq_ld);
    if (g->dk)
      pg_gemm_float32(true, false, T, pl->dk, T, pl->scale, ds, T, q, pl->q_ld, g->beta_k,
              g->dk + b * T * g->dk_ld + n * pl->dk, g->dk_ld);
  }
}

/* Fills the parts of the plan that forward and backward share and allocates
 * what the call saves; returns false (error set) when memory runs out. */
static bool sdpa_prepare(pg_ctx *ctx, sdpa_plan *pl, bool save, float dropout, pg_rng *rng) {
  int64_t pairs = pl->batch * pl->heads, TT = pl->tokens * pl->tokens;
  if (pl->scale == PG_SDPA_DEFAULT_SCALE) pl->scale = pg_attention_scale(pl->dk);
  pl->dropout = ctx->training ? dropout : 0.0f;
  if (save) {
    pl->probs = pg_scratch(ctx, (size_t)(pairs * TT) * sizeof(float));
    if (!pl->probs) return false;
  }
  if (pl->dropout > 0.0f) {
    uint64_t *seeds = pg_scratch(ctx, (size_t)pairs * sizeof(uint64_t));
    if (!seeds) return false;
    /* One seed per (b, n), drawn in order: the masks do not depend on how
     * the pairs are spread over threads. */
    for (int64_t i = 0; i < pairs; i++) seeds[i] = pg_rng_next(rng);
    pl->seeds = seeds;
    if (save) {
      pl->keep = pg_scratch(ctx, (size_t)(pairs * TT));
      if (!pl->keep) return false;
    }
  }
  return true;
}

/* ---- Dispatch: the fused kernel (attention_fused.h) when the heads fit,
 * else the general path ---- */

static pg_attn_fused_args fused_args(const sdpa_plan *pl) {
  return (pg_attn_fused_args){.batch = pl->batch, .tokens = pl->tokens, .heads = pl->heads,
                              .dk = pl->dk, .dv = pl->dv, .q = pl->q, .k = pl->k, .v = pl->v,
                              .q_ld = pl->q_ld, .k_ld = pl->k_ld, .v_ld = pl->v_ld,
                              .out = pl->out, .out_ld = pl->heads * pl->dv, .scale = pl->scale,
                              .probs = pl->probs, .causal = pl->causal, .pad = pl->pad,
                              .dropout = pl->dropout, .seeds = pl->seeds, .keep = pl->keep};
}

/* The multiply-adds of one call (forward: scores and output), for the
 * threading policy. */
static int64_t sdpa_work(const sdpa_plan *pl) {
  return pl->batch * pl->heads * pl->tokens * pl->tokens * (pl->dk + pl->dv);
}

/* Scratch for one call (the fused kernel's per thread, or the general
 * path's two T x T blocks); NULL with the tape marked broken when out of
 * memory. */
static float *sdpa_scratch(pg_ctx *ctx, const pg_attn_fused_args *a, bool fused, int threads) {
  const int64_t floats = fused ? pg_attn_fused_scratch_floats(a, threads) : 2 * a->tokens * a->tokens;
  return pg_scratch(ctx, (size_t)floats * sizeof(float));
}

static bool run_forward(pg_ctx *ctx, const sdpa_plan *pl) {
  const pg_attn_fused_args a = fused_args(pl);
  const bool fused = pg_attn_fused_fits(pl->tokens, pl->dk, pl->dv);
  const int threads = pg_parallel_threads(sdpa_work(pl));
  float *scratch = sdpa_scratch(ctx, &a, fused, threads);
  if (!scratch) return false;
  if (fused) pg_attn_fused_forward(&a, scratch, threads);
  else general_forward(pl, scratch);
  return true;
}

static void run_backward(pg_ctx *ctx, const sdpa_plan *pl, const sdpa_grads *g, const float *dout) {
  const pg_attn_fused_args a = fused_args(pl);
  const bool fused = pg_attn_fused_fits(pl->tokens, pl->dk, pl->dv);
  const int threads = pg_parallel_threads(sdpa_work(pl));
  float *scratch = sdpa_scratch(ctx, &a, fused, threads);
  if (!scratch) return;
  if (fused) {
    pg_attn_fused_grads fg = {.dout = dout, .dq = g->dq, .dk = g->dk, .dv = g->dv,
                              .dq_ld = g->dq_ld, .dk_ld = g->dk_ld, .dv_ld = g->dv_ld,
                              .acc_q = g->beta_q != 0.0f, .acc_k = g->beta_k != 0.0f,
                              .acc_v = g->beta_v != 0.0f};
    pg_attn_fused_backward(&a, &fg, scratch, threads);
  } else {
    general_backward(pl, g, dout, scratch);
  }
}

static pg_status check_heads(const char *who, int heads, int64_t width, const char *what) {
  if (heads < 1) return pg_fail(PG_ERR_ARG, "%s: heads must be >= 1, got %d", who, heads);
  if (width % heads)
    return pg_fail(PG_ERR_ARG, "%s: %s %lld is not divisible by heads %d", who, what,
                   (long long)width, heads);
  return PG_OK;
}

/* What both ops save: the plan of the call (in the arena). */
typedef struct {
  const sdpa_plan *plan;
} sdpa_saved;

/* ---- packed q, k, v (the multi-head path) ---- */

static void sdpa_packed_backward(pg_ctx *ctx, pg_node *node) {
  const sdpa_plan *pl = ((const sdpa_saved *)node->saved)->plan;
  pg_tensor *qkv = node->in[0];
  bool fresh;
  float *g = pg_grad_dest(ctx, qkv, &fresh);
  if (!g) return;
  int64_t h = pl->heads * pl->dk, ld = 3 * h;
  float beta = fresh ? 0.0f : 1.0f;
  sdpa_grads grads = {g, g + h, g + 2 * h, ld, ld, ld, beta, beta, beta};
  run_backward(ctx, pl, &grads, node->out->grad);
}

pg_tensor *pg_sdpa_packed_op(pg_ctx *ctx, pg_tensor *qkv, int heads, bool causal,
                             const uint8_t *key_padding_mask) {
  if (!qkv) return NULL;
  if (qkv->ndim != 3 || qkv->shape[2] % 3) {
    pg_fail(PG_ERR_ARG, "pg_sdpa_packed_op: qkv must be [B, T, 3h], got %s", pg_shape_of(qkv));
    return NULL;
  }
  int64_t h = qkv->shape[2] / 3;
  if (check_heads("pg_sdpa_packed_op", heads, h, "hidden size h")) return NULL;
  sdpa_plan *pl = pg_scratch(ctx, sizeof *pl);
  pg_tensor *out = pg_empty(ctx, PG_SHAPE(qkv->shape[0], qkv->shape[1], h));
  if (!pl || !out) return NULL;
  int64_t ld = 3 * h;
  *pl = (sdpa_plan){.batch = qkv->shape[0], .tokens = qkv->shape[1], .heads = heads,
                    .dk = h / heads, .dv = h / heads,
                    .q = qkv->data, .k = qkv->data + h, .v = qkv->data + 2 * h,
                    .q_ld = ld, .k_ld = ld, .v_ld = ld, .out = out->data,
                    .causal = causal, .pad = key_padding_mask};
  bool save = pg_needs_grad(ctx, 1, &qkv);
  if (!sdpa_prepare(ctx, pl, save, 0.0f, NULL) || !run_forward(ctx, pl)) return NULL;
  pl->pad = NULL; /* the caller's mask need not outlive the call */
  pg_node *node = pg_tape_record(ctx, "pg_sdpa_packed_op", sdpa_packed_backward, out, 1, &qkv);
  PG_SAVE(ctx, node, sdpa_saved, .plan = pl);
  return out;
}

/* ---- separate q, k, v ---- */

static void sdpa_backward_separate(pg_ctx *ctx, pg_node *node) {
  const sdpa_plan *pl = ((const sdpa_saved *)node->saved)->plan;
  bool fq, fk, fv;
  float *dq = pg_grad_dest(ctx, node->in[0], &fq);
  float *dk = pg_grad_dest(ctx, node->in[1], &fk);
  float *dv = pg_grad_dest(ctx, node->in[2], &fv);
  sdpa_grads grads = {dq, dk, dv, pl->q_ld, pl->k_ld, pl->v_ld,
                      fq ? 0.0f : 1.0f, fk ? 0.0f : 1.0f, fv ? 0.0f : 1.0f};
  run_backward(ctx, pl, &grads, node->out->grad);
}

float pg_attention_scale(int64_t size) { return size > 0 ? (float)(1.0 / sqrt((double)size)) : 1.0f; }

pg_tensor *pg_sdpa_op(pg_ctx *ctx, pg_tensor *q, pg_tensor *k, pg_tensor *v, int heads,
                      bool causal, const uint8_t *key_padding_mask, float dropout, float scale,
                      pg_rng *rng) {
  if (!q || !k || !v) return NULL;
  pg_tensor *qkv[3] = {q, k, v};
  const char *names[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; i++)
    if (qkv[i]->ndim != 3 || qkv[i]->shape[0] != q->shape[0] || qkv[i]->shape[1] != q->shape[1]) {
      pg_fail(PG_ERR_ARG, "pg_sdpa_op: q, k, v must be [B, T, width] with equal B and T; q is %s, %s is %s",
              pg_shape_of(q), names[i], pg_shape_of(qkv[i]));
      return NULL;
    }
  if (k->shape[2] != q->shape[2]) {
    pg_fail(PG_ERR_ARG, "pg_sdpa_op: q %s and k %s must have the same width", pg_shape_of(q), pg_shape_of(k));
    return NULL;
  }
  if (check_heads("pg_sdpa_op", heads, q->shape[2], "the width of q") ||
      check_heads("pg_sdpa_op", heads, v->shape[2], "the width of v"))
    return NULL;
  if (!(dropout >= 0.0f && dropout < 1.0f)) {
    pg_fail(PG_ERR_ARG, "pg_sdpa_op: dropout must be in [0, 1), got %g", (double)dropout);
    return NULL;
  }
  if (dropout > 0.0f && ctx->training && !rng) {
    pg_fail(PG_ERR_ARG, "pg_sdpa_op: dropout %g in training needs a random generator (rng is NULL)", (double)dropout);
    return NULL;
  }
  if (!isfinite(scale)) {
    pg_fail(PG_ERR_ARG, "pg_sdpa_op: scale must be finite (0 for the default 1/sqrt(dk)), got %g", (double)scale);
    return NULL;
  }
  sdpa_plan *pl = pg_scratch(ctx, sizeof *pl);
  pg_tensor *out = pg_empty(ctx, PG_SHAPE(q->shape[0], q->shape[1], v->shape[2]));
  if (!pl || !out) return NULL;
  *pl = (sdpa_plan){.batch = q->shape[0], .tokens = q->shape[1], .heads = heads,
                    .dk = q->shape[2] / heads, .dv = v->shape[2] / heads,
                    .q = q->data, .k = k->data, .v = v->data,
                    .q_ld = q->shape[2], .k_ld = k->shape[2], .v_ld = v->shape[2],
                    .out = out->data, .scale = scale, .causal = causal, .pad = key_padding_mask};
  bool save = pg_needs_grad(ctx, 3, qkv);
  if (!sdpa_prepare(ctx, pl, save, dropout, rng) || !run_forward(ctx, pl)) return NULL;
  pl->pad = NULL;
  pl->seeds = NULL;
  pg_node *node = pg_tape_record(ctx, "pg_sdpa_op", sdpa_backward_separate, out, 3, qkv);
  PG_SAVE(ctx, node, sdpa_saved, .plan = pl);
  return out;
}

/* ---- multi-head self-attention ---- */

pg_tensor *pg_attention_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *qkv_weight, pg_tensor *qkv_bias,
                           pg_tensor *proj_weight, pg_tensor *proj_bias, int heads, bool causal,
                           const uint8_t *key_padding_mask) {
  if (!x || !qkv_weight || !proj_weight) return NULL;
  if (x->ndim != 3) {
    pg_fail(PG_ERR_ARG, "pg_attention_op: x must be [B, T, h], got %s", pg_shape_of(x));
    return NULL;
  }
  int64_t h = x->shape[2];
  if (qkv_weight->ndim != 2 || qkv_weight->shape[0] != 3 * h || qkv_weight->shape[1] != h) {
    pg_fail(PG_ERR_ARG, "pg_attention_op: qkv_weight must be [3h, h] = [%lld, %lld] for x %s, got %s",
            (long long)(3 * h), (long long)h, pg_shape_of(x), pg_shape_of(qkv_weight));
    return NULL;
  }
  if (proj_weight->ndim != 2 || proj_weight->shape[0] != h || proj_weight->shape[1] != h) {
    pg_fail(PG_ERR_ARG, "pg_attention_op: proj_weight must be [h, h] = [%lld, %lld] for x %s, got %s",
            (long long)h, (long long)h, pg_shape_of(x), pg_shape_of(proj_weight));
    return NULL;
  }
  if (check_heads("pg_attention_op", heads, h, "hidden size h")) return NULL;
  pg_tensor *qkv = pg_linear_op(ctx, x, qkv_weight, qkv_bias);
  pg_tensor *heads_out = pg_sdpa_packed_op(ctx, qkv, heads, causal, key_padding_mask);
  return pg_linear_op(ctx, heads_out, proj_weight, proj_bias);
}

pg_status pg_attention_init(pg_attention *a, pg_params *ps, const char *prefix, int64_t hidden,
                            int heads, bool qkv_bias, pg_linear_init_kind init, float std,
                            pg_rng *rng) {
  if (!a || !ps || !prefix) return pg_fail(PG_ERR_ARG, "pg_attention_init: layer, params and prefix must not be NULL");
  memset(a, 0, sizeof *a);
  if (hidden < 1) return pg_fail(PG_ERR_ARG, "pg_attention_init '%s': hidden must be >= 1, got %lld", prefix, (long long)hidden);
  if (heads < 1 || hidden % heads)
    return pg_fail(PG_ERR_ARG, "pg_attention_init '%s': heads must be >= 1 and divide hidden %lld, got %d",
                   prefix, (long long)hidden, heads);
  char name[PG_PARAM_NAME_MAX];
  snprintf(name, sizeof name, "%s.qkv", prefix);
  pg_status st = pg_linear_init(&a->qkv, ps, name, hidden, 3 * hidden, qkv_bias, init, std, rng);
  if (st) return st;
  snprintf(name, sizeof name, "%s.proj", prefix);
  st = pg_linear_init(&a->proj, ps, name, hidden, hidden, true, init, std, rng);
  if (st) return st;
  a->hidden = hidden;
  a->heads = heads;
  return PG_OK;
}

pg_tensor *pg_attention_forward(pg_ctx *ctx, const pg_attention *a, pg_tensor *x, bool causal,
                                const uint8_t *key_padding_mask) {
  if (!x) return NULL;
  if (!a || !a->qkv.weight || !a->proj.weight) {
    pg_fail(PG_ERR_ARG, "pg_attention_forward: the layer is not initialised");
    return NULL;
  }
  return pg_attention_op(ctx, x, a->qkv.weight, a->qkv.bias, a->proj.weight, a->proj.bias,
                         a->heads, causal, key_padding_mask);
}
