#include "patchgrad/layers/embedding_layer.h"

#include <math.h>
#include <string.h>

#include "patchgrad/autograd/ops.h"

pg_status pg_embedding_layer_init(pg_embedding_layer *e, pg_params *ps, const char *prefix,
                                  int64_t num_embeddings, int64_t embedding_dim, float std,
                                  pg_rng *rng) {
  const int64_t n = num_embeddings, d = embedding_dim;
  if (!e || !ps || !prefix) return pg_fail(PG_ERR_ARG, "pg_embedding_layer_init: layer, params and prefix must not be NULL");
  memset(e, 0, sizeof *e);
  if (n < 1 || d < 1)
    return pg_fail(PG_ERR_ARG, "pg_embedding_layer_init '%s': num_embeddings and embedding_dim must be >= 1, got %lld and %lld",
                   prefix, (long long)n, (long long)d);
  if (!(std >= 0.0f) || isinf(std))
    return pg_fail(PG_ERR_ARG, "pg_embedding_layer_init '%s': std must be finite and >= 0, got %g", prefix, (double)std);
  if (!rng) return pg_fail(PG_ERR_ARG, "pg_embedding_layer_init '%s': rng is NULL", prefix);
  e->weight = pg_params_add(ps, PG_PARAM_EMBEDDING, PG_SHAPE(n, d), "%s.weight", prefix);
  if (!e->weight) return pg_last_status();
  pg_fill_normal(e->weight, 0.0f, std, rng);
  e->num_embeddings = n;
  e->embedding_dim = d;
  return PG_OK;
}

pg_tensor *pg_embedding_layer_forward(pg_ctx *ctx, const pg_embedding_layer *e, int idx_ndim,
                                      const int64_t *idx_shape, const int64_t *idx) {
  if (!e || !e->weight) {
    pg_fail(PG_ERR_ARG, "pg_embedding_layer_forward: the layer is not initialised");
    return NULL;
  }
  return pg_embedding(ctx, e->weight, idx_ndim, idx_shape, idx);
}
