/* Embedding lookup: out[..., :] = table[idx[...], :]. Backward scatter-adds
 * each output row's gradient into the row of the table it came from (a row
 * picked twice receives both). */
#include <string.h>

#include "patchgrad/autograd/op_util.h"
#include "patchgrad/autograd/ops.h"

typedef struct {
  const int64_t *idx; /* a copy of the indices (the caller's array may change before backward) */
} embedding_saved;

static void embedding_backward(pg_ctx *ctx, pg_node *node) {
  const int64_t *idx = ((const embedding_saved *)node->saved)->idx;
  const int64_t d = node->in[0]->shape[1], n_idx = node->out->numel / (d ? d : 1);
  float *gt = pg_grad_accum(ctx, node->in[0]);
  if (!gt || d == 0) return;
  const float *g = node->out->grad;
  for (int64_t i = 0; i < n_idx; i++) {
    float *restrict row = gt + idx[i] * d;
    const float *restrict gi = g + i * d;
    for (int64_t j = 0; j < d; j++) row[j] += gi[j];
  }
}

pg_tensor *pg_embedding(pg_ctx *ctx, pg_tensor *table, int idx_ndim, const int64_t *idx_shape,
                        const int64_t *idx) {
  if (!table) return NULL;
  if (table->ndim != 2) {
    pg_fail(PG_ERR_ARG, "pg_embedding: table %s must have rank 2 ([n, d])", pg_shape_of(table));
    return NULL;
  }
  if (idx_ndim < 0 || idx_ndim >= PG_MAX_DIMS || (idx_ndim > 0 && !idx_shape)) {
    pg_fail(PG_ERR_ARG, "pg_embedding: idx rank %d must be in 0..%d (the output adds an axis)",
            idx_ndim, PG_MAX_DIMS - 1);
    return NULL;
  }
  if (pg_check_shape("pg_embedding (idx_shape)", idx_ndim, idx_shape)) return NULL;
  const int64_t n_idx = pg_shape_numel(idx_ndim, idx_shape), rows = table->shape[0];
  const int64_t d = table->shape[1];
  if (n_idx > 0 && !idx) {
    pg_fail(PG_ERR_ARG, "pg_embedding: idx is NULL but idx_shape holds %lld indices", (long long)n_idx);
    return NULL;
  }
  for (int64_t i = 0; i < n_idx; i++)
    if (idx[i] < 0 || idx[i] >= rows) {
      pg_fail(PG_ERR_ARG, "pg_embedding: index %lld at position %lld is outside [0, %lld) (table %s)",
              (long long)idx[i], (long long)i, (long long)rows, pg_shape_of(table));
      return NULL;
    }
  int64_t shape[PG_MAX_DIMS];
  for (int i = 0; i < idx_ndim; i++) shape[i] = idx_shape[i];
  shape[idx_ndim] = d;
  pg_tensor *out = pg_empty(ctx, idx_ndim + 1, shape);
  if (!out) return NULL;
  PG_FOR(out->numel, i, n_idx,
         memcpy(out->data + i * d, table->data + idx[i] * d, (size_t)d * sizeof(float)));
  pg_node *node = pg_tape_record(ctx, "pg_embedding", embedding_backward, out, 1, &table);
  int64_t *copy = node ? pg_scratch(ctx, (size_t)n_idx * sizeof *copy) : NULL;
  if (copy && n_idx > 0) memcpy(copy, idx, (size_t)n_idx * sizeof *copy);
  PG_SAVE(ctx, node, embedding_saved, .idx = copy);
  return out;
}
