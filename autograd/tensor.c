#include "patchgrad/autograd/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Context ---- */

pg_ctx *pg_ctx_new(size_t chunk_bytes) {
  pg_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    pg_fail(PG_ERR_MEMORY, "pg_ctx_new: out of memory");
    return NULL;
  }
  pg_arena_init(&ctx->arena, chunk_bytes);
  ctx->grad_enabled = true;
  ctx->training = true;
  return ctx;
}

void pg_ctx_free(pg_ctx *ctx) {
  if (!ctx) return;
  pg_arena_free(&ctx->arena);
  free(ctx);
}

void pg_ctx_reset(pg_ctx *ctx) {
  pg_arena_reset(&ctx->arena);
  ctx->tape = NULL;
  ctx->tape_len = 0;
  ctx->tape_broken = false;
  ctx->free_grads = ctx->spare_blocks = NULL;
}

bool pg_set_grad_enabled(pg_ctx *ctx, bool enabled) {
  bool was = ctx->grad_enabled;
  ctx->grad_enabled = enabled;
  return was;
}

bool pg_set_training(pg_ctx *ctx, bool training) {
  bool was = ctx->training;
  ctx->training = training;
  return was;
}

void *pg_ctx_alloc(pg_ctx *ctx, size_t bytes) { return pg_arena_alloc(&ctx->arena, bytes); }

/* ---- Shapes ---- */

int64_t pg_shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

pg_status pg_check_shape(const char *who, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > PG_MAX_DIMS)
    return pg_fail(PG_ERR_ARG, "%s: rank %d is outside 0..%d", who, ndim, PG_MAX_DIMS);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return pg_fail(PG_ERR_ARG, "%s: axis %d has negative size %lld", who, i, (long long)shape[i]);
    if (shape[i] && n > INT64_MAX / 4 / shape[i])
      return pg_fail(PG_ERR_ARG, "%s: shape too large", who);
    n *= shape[i];
  }
  return PG_OK;
}

bool pg_same_shape(const pg_tensor *a, const pg_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

const char *pg_shape_of(const pg_tensor *t) {
  static _Thread_local char ring[8][128];
  static _Thread_local int next;
  char *buf = ring[next++ & 7];
  long long s[PG_MAX_DIMS];
  for (int i = 0; i < t->ndim; i++) s[i] = (long long)t->shape[i];
  return pg_shape_str(buf, 128, t->ndim, s);
}

static void set_shape(pg_tensor *t, int ndim, const int64_t *shape) {
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  for (int i = ndim; i < PG_MAX_DIMS; i++) t->shape[i] = 1;
  t->numel = pg_shape_numel(ndim, shape);
}

/* ---- Heap tensors ---- */

pg_tensor *pg_tensor_new(int ndim, const int64_t *shape, bool requires_grad) {
  if (pg_check_shape("pg_tensor_new", ndim, shape)) return NULL;
  pg_tensor *t = calloc(1, sizeof *t);
  if (!t) goto oom;
  set_shape(t, ndim, shape);
  t->heap = true;
  t->data = calloc((size_t)(t->numel ? t->numel : 1), sizeof(float));
  if (!t->data) goto oom;
  if (requires_grad && pg_tensor_set_requires_grad(t, true)) goto oom;
  return t;
oom:
  pg_tensor_free(t);
  pg_fail(PG_ERR_MEMORY, "pg_tensor_new: out of memory");
  return NULL;
}

void pg_tensor_free(pg_tensor *t) {
  if (!t || !t->heap) return;
  free(t->data);
  free(t->grad);
  free(t);
}

pg_status pg_tensor_set_requires_grad(pg_tensor *t, bool requires_grad) {
  t->requires_grad = requires_grad;
  if (requires_grad && t->heap && !t->grad) {
    t->grad = calloc((size_t)(t->numel ? t->numel : 1), sizeof(float));
    if (!t->grad) return pg_fail(PG_ERR_MEMORY, "pg_tensor_set_requires_grad: out of memory");
  }
  return PG_OK;
}

void pg_tensor_zero_grad(pg_tensor *t) {
  if (t && t->grad) memset(t->grad, 0, (size_t)t->numel * sizeof(float));
}

/* ---- Step tensors ---- */

pg_tensor *pg_empty(pg_ctx *ctx, int ndim, const int64_t *shape) {
  if (pg_check_shape("pg_empty", ndim, shape)) return NULL;
  pg_tensor *t = pg_arena_alloc(&ctx->arena, sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  set_shape(t, ndim, shape);
  t->data = pg_arena_alloc(&ctx->arena, (size_t)t->numel * sizeof(float));
  return t->data ? t : NULL;
}

pg_tensor *pg_view(pg_ctx *ctx, pg_tensor *src, int ndim, const int64_t *shape) {
  if (!src || pg_check_shape("pg_view", ndim, shape)) return NULL;
  if (pg_shape_numel(ndim, shape) != src->numel) {
    pg_fail(PG_ERR_ARG, "pg_view: %lld elements cannot view a tensor of shape %s",
            (long long)pg_shape_numel(ndim, shape), pg_shape_of(src));
    return NULL;
  }
  pg_tensor *t = pg_arena_alloc(&ctx->arena, sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  set_shape(t, ndim, shape);
  t->data = src->data;
  return t;
}

pg_tensor *pg_full(pg_ctx *ctx, int ndim, const int64_t *shape, float value) {
  pg_tensor *t = pg_empty(ctx, ndim, shape);
  if (t) pg_fill(t, value);
  return t;
}

pg_tensor *pg_zeros(pg_ctx *ctx, int ndim, const int64_t *shape) {
  pg_tensor *t = pg_empty(ctx, ndim, shape);
  if (t) memset(t->data, 0, (size_t)t->numel * sizeof(float));
  return t;
}

pg_tensor *pg_ones(pg_ctx *ctx, int ndim, const int64_t *shape) {
  return pg_full(ctx, ndim, shape, 1.0f);
}

pg_tensor *pg_from_array(pg_ctx *ctx, int ndim, const int64_t *shape, const float *values) {
  pg_tensor *t = pg_empty(ctx, ndim, shape);
  if (t) memcpy(t->data, values, (size_t)t->numel * sizeof(float));
  return t;
}

pg_tensor *pg_uniform(pg_ctx *ctx, int ndim, const int64_t *shape, float low, float high, pg_rng *rng) {
  pg_tensor *t = pg_empty(ctx, ndim, shape);
  if (t) pg_fill_uniform(t, low, high, rng);
  return t;
}

pg_tensor *pg_normal(pg_ctx *ctx, int ndim, const int64_t *shape, float mean, float std, pg_rng *rng) {
  pg_tensor *t = pg_empty(ctx, ndim, shape);
  if (t) pg_fill_normal(t, mean, std, rng);
  return t;
}

pg_tensor *pg_arange(pg_ctx *ctx, int64_t n, float start, float step) {
  pg_tensor *t = pg_empty(ctx, 1, &n);
  if (t)
    for (int64_t i = 0; i < n; i++) t->data[i] = start + (float)i * step;
  return t;
}

/* ---- Filling ---- */

void pg_fill(pg_tensor *t, float value) {
  for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
}

void pg_fill_uniform(pg_tensor *t, float low, float high, pg_rng *rng) {
  for (int64_t i = 0; i < t->numel; i++) t->data[i] = low + (high - low) * pg_rng_uniform(rng);
}

void pg_fill_normal(pg_tensor *t, float mean, float std, pg_rng *rng) {
  for (int64_t i = 0; i < t->numel; i++) t->data[i] = mean + std * pg_rng_normal(rng);
}

/* P(low <= X <= high) for X ~ Normal(mean, std > 0), in double. */
static double normal_mass(double mean, double std, double low, double high) {
  const double a = (low - mean) / (std * sqrt(2.0)), b = (high - mean) / (std * sqrt(2.0));
  /* erfc on the side away from the mean keeps small tails accurate */
  if (a >= 0) return 0.5 * (erfc(a) - erfc(b));
  if (b <= 0) return 0.5 * (erfc(-b) - erfc(-a));
  return 1.0 - 0.5 * (erfc(-a) + erfc(b));
}

pg_status pg_fill_trunc_normal(pg_tensor *t, float mean, float std, float low, float high,
                               pg_rng *rng) {
  const char *who = "pg_fill_trunc_normal";
  if (isnan(mean) || isnan(std) || isnan(low) || isnan(high))
    return pg_fail(PG_ERR_ARG, "%s: NaN among mean %g, std %g, low %g, high %g", who, (double)mean,
                   (double)std, (double)low, (double)high);
  if (!(std >= 0.0f) || isinf(std) || isinf(mean))
    return pg_fail(PG_ERR_ARG, "%s: needs a finite mean and a finite std >= 0, got mean %g, std %g",
                   who, (double)mean, (double)std);
  if (low > high)
    return pg_fail(PG_ERR_ARG, "%s: low %g is above high %g", who, (double)low, (double)high);
  const double mass = std > 0.0f ? normal_mass(mean, std, low, high) : (low <= mean && mean <= high);
  if (!(mass >= PG_TRUNC_NORMAL_MIN_MASS))
    return pg_fail(PG_ERR_ARG,
                   "%s: [%g, %g] holds %.3g of Normal(%g, %g), less than %g: redrawing would not end",
                   who, (double)low, (double)high, mass, (double)mean, (double)std,
                   PG_TRUNC_NORMAL_MIN_MASS);
  for (int64_t i = 0; i < t->numel; i++) {
    float v;
    do v = mean + std * pg_rng_normal(rng);
    while (v < low || v > high);
    t->data[i] = v;
  }
  return PG_OK;
}
