/* Embedding: a learned table [n, d] whose rows are picked by integer
 * indices, as torch.nn.Embedding (normal init, PG_PARAM_EMBEDDING). The
 * lookup itself is pg_embedding of ops.h (scatter-add backward). */
#ifndef PG_EMBEDDING_LAYER_H
#define PG_EMBEDDING_LAYER_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/tape.h"

typedef struct {
  pg_tensor *weight; /* `<prefix>.weight` [num_embeddings, embedding_dim] */
  int64_t num_embeddings, embedding_dim;
} pg_embedding_layer;

/* Registers `<prefix>.weight` [num_embeddings, embedding_dim], filled with
 * normal(0, std) (PyTorch's default is std 1; DiT's label table uses 0.02). */
PG_API pg_status pg_embedding_layer_init(pg_embedding_layer *e, pg_params *ps, const char *prefix,
                                         int64_t num_embeddings, int64_t embedding_dim, float std,
                                         pg_rng *rng);
/* Rows picked by the prod(idx_shape) indices -> idx_shape + [embedding_dim];
 * an index outside [0, num_embeddings) is an error naming it. */
PG_API pg_tensor *pg_embedding_layer_forward(pg_ctx *ctx, const pg_embedding_layer *e, int idx_ndim,
                                      const int64_t *idx_shape, const int64_t *idx);

#endif
