#include "embedding_layer.h"

#include <math.h>
#include <string.h>

static void lookup_backward(pg_ctx *ctx, pg_node *node) {
  pg_tensor *table = node->in[0];
  float *dt = pg_grad_accum(ctx, table); /* rows never picked get 0 */
  if (!dt) return;
  const int64_t *idx = node->saved;
  int64_t n_idx = node->iarg[0], d = table->shape[1];
  const float *g = node->out->grad;
  /* Serial on purpose: two positions may pick the same row. */
  for (int64_t i = 0; i < n_idx; i++) {
    float *row = dt + idx[i] * d;
    const float *gi = g + i * d;
    for (int64_t j = 0; j < d; j++) row[j] += gi[j];
  }
}

pg_tensor *pg_embedding_lookup_op(pg_ctx *ctx, pg_tensor *table, int idx_ndim,
                                  const int64_t *idx_shape, const int64_t *idx) {
  if (!table) return NULL;
  if (table->ndim != 2) {
    pg_fail(PG_ERR_ARG, "pg_embedding_lookup_op: table must be [n, d], got %s", pg_shape_of(table));
    return NULL;
  }
  if (idx_ndim < 0 || idx_ndim + 1 > PG_MAX_DIMS) {
    pg_fail(PG_ERR_ARG, "pg_embedding_lookup_op: indices of rank %d give an output of rank %d (at most %d)",
            idx_ndim, idx_ndim + 1, PG_MAX_DIMS);
    return NULL;
  }
  if (pg_check_shape("pg_embedding_lookup_op (idx_shape)", idx_ndim, idx_shape)) return NULL;
  int64_t n_idx = pg_shape_numel(idx_ndim, idx_shape), n = table->shape[0], d = table->shape[1];
  if (n_idx > 0 && !idx) {
    pg_fail(PG_ERR_ARG, "pg_embedding_lookup_op: idx is NULL for %lld indices", (long long)n_idx);
    return NULL;
  }
  for (int64_t i = 0; i < n_idx; i++)
    if (idx[i] < 0 || idx[i] >= n) {
      pg_fail(PG_ERR_ARG, "pg_embedding_lookup_op: index %lld at position %lld is outside [0, %lld) of table %s",
              (long long)idx[i], (long long)i, (long long)n, pg_shape_of(table));
      return NULL;
    }
  int64_t shape[PG_MAX_DIMS];
  if (idx_ndim) memcpy(shape, idx_shape, (size_t)idx_ndim * sizeof *shape);
  shape[idx_ndim] = d;
  pg_tensor *out = pg_empty(ctx, idx_ndim + 1, shape);
  if (!out) return NULL;
  for (int64_t i = 0; i < n_idx; i++)
    memcpy(out->data + i * d, table->data + idx[i] * d, (size_t)d * sizeof(float));
  pg_node *node = pg_tape_record(ctx, "embedding", lookup_backward, out, 1, &table);
  if (node) {
    /* The caller's index array need not outlive the call. */
    int64_t *saved = pg_ctx_alloc(ctx, (size_t)n_idx * sizeof *saved + 1);
    if (!saved) {
      ctx->tape_broken = true;
      return NULL;
    }
    if (n_idx) memcpy(saved, idx, (size_t)n_idx * sizeof *saved);
    node->saved = saved;
    node->iarg[0] = n_idx;
  }
  return out;
}

pg_status pg_embedding_layer_init(pg_embedding_layer *e, pg_params *ps, const char *prefix,
                                  int64_t n, int64_t d, float std, pg_rng *rng) {
  if (!e || !ps || !prefix) return pg_fail(PG_ERR_ARG, "pg_embedding_layer_init: layer, params and prefix must not be NULL");
  memset(e, 0, sizeof *e);
  if (n < 1 || d < 1)
    return pg_fail(PG_ERR_ARG, "pg_embedding_layer_init '%s': n and d must be >= 1, got n %lld, d %lld",
                   prefix, (long long)n, (long long)d);
  if (!(std >= 0.0f) || isinf(std))
    return pg_fail(PG_ERR_ARG, "pg_embedding_layer_init '%s': std must be finite and >= 0, got %g", prefix, (double)std);
  if (!rng) return pg_fail(PG_ERR_ARG, "pg_embedding_layer_init '%s': rng is NULL", prefix);
  e->weight = pg_params_add(ps, PG_PARAM_EMBEDDING, PG_SHAPE(n, d), "%s.weight", prefix);
  if (!e->weight) return pg_last_status();
  pg_fill_normal(e->weight, 0.0f, std, rng);
  e->n = n;
  e->d = d;
  return PG_OK;
}

pg_tensor *pg_embedding_layer_forward(pg_ctx *ctx, const pg_embedding_layer *e, int idx_ndim,
                                      const int64_t *idx_shape, const int64_t *idx) {
  if (!e || !e->weight) {
    pg_fail(PG_ERR_ARG, "pg_embedding_layer_forward: the layer is not initialised");
    return NULL;
  }
  return pg_embedding_lookup_op(ctx, e->weight, idx_ndim, idx_shape, idx);
}
