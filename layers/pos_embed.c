#include "patchgrad/layers/pos_embed.h"

#include <math.h>

pg_tensor *pg_pos_embed_learned(pg_params *ps, const char *name, int64_t tokens, int64_t dim,
                                pg_rng *rng) {
  if (!ps || !name || !rng) {
    pg_fail(PG_ERR_ARG, "pg_pos_embed_learned: params, name and rng must not be NULL");
    return NULL;
  }
  if (tokens < 1 || dim < 1) {
    pg_fail(PG_ERR_ARG, "pg_pos_embed_learned: tokens and dim must be >= 1, got tokens %lld, dim %lld",
            (long long)tokens, (long long)dim);
    return NULL;
  }
  pg_tensor *t = pg_params_add(ps, PG_PARAM_EMBEDDING, 3, (int64_t[]){1, tokens, dim}, "%s", name);
  if (t && pg_fill_trunc_normal(t, 0.0f, 0.02f, -2.0f, 2.0f, rng)) return NULL;
  return t;
}

/* Checks data_dim, grid and dim; returns the token count through *tokens. */
static pg_status check_table(const char *who, int data_dim, const int64_t *grid, int64_t dim,
                             int64_t *tokens) {
  if (data_dim < 1 || data_dim > 3)
    return pg_fail(PG_ERR_ARG, "%s: data_dim must be 1, 2 or 3, got %d", who, data_dim);
  if (!grid) return pg_fail(PG_ERR_ARG, "%s: grid must not be NULL", who);
  *tokens = 1;
  for (int a = 0; a < data_dim; a++) {
    if (grid[a] < 1)
      return pg_fail(PG_ERR_ARG, "%s: grid[%d] must be >= 1, got %lld", who, a, (long long)grid[a]);
    *tokens *= grid[a];
  }
  if (dim < 1 || dim % (2 * data_dim))
    return pg_fail(PG_ERR_ARG,
                   "%s: dim must be a positive multiple of 2 * data_dim = %d (a sin and a cos "
                   "half per axis), got %lld",
                   who, 2 * data_dim, (long long)dim);
  return PG_OK;
}

pg_status pg_sincos_pos_embed_fill(pg_tensor *t, int data_dim, const int64_t *grid) {
  const char *who = "pg_sincos_pos_embed_fill";
  if (!t) return pg_fail(PG_ERR_ARG, "%s: the tensor is NULL", who);
  int64_t dim = t->ndim >= 1 ? t->shape[t->ndim - 1] : 0, tokens;
  if (check_table(who, data_dim, grid, dim, &tokens)) return pg_last_status();
  bool shape_ok = (t->ndim == 2 && t->shape[0] == tokens) ||
                  (t->ndim == 3 && t->shape[0] == 1 && t->shape[1] == tokens);
  if (!shape_ok)
    return pg_fail(PG_ERR_ARG, "%s: the tensor must be [1, %lld, dim] or [%lld, dim] for this grid, got %s",
                   who, (long long)tokens, (long long)tokens, pg_shape_of(t));
  const int64_t part = dim / data_dim, half = part / 2;
  for (int64_t token = 0; token < tokens; token++) {
    float *row = t->data + token * dim;
    int64_t rest = token;
    /* Part k encodes axis data_dim - 1 - k: peel the axes off the row-major
     * token index from the last one, which is part 0. */
    for (int k = 0; k < data_dim; k++) {
      int axis = data_dim - 1 - k;
      double pos = (double)(rest % grid[axis]);
      rest /= grid[axis];
      float *out = row + k * part;
      for (int64_t j = 0; j < half; j++) {
        double omega = 1.0 / pow(10000.0, (double)j / (double)half);
        out[j] = (float)sin(pos * omega);
        out[half + j] = (float)cos(pos * omega);
      }
    }
  }
  return PG_OK;
}

pg_tensor *pg_sincos_pos_embed_buffer(pg_params *ps, const char *name, int data_dim,
                                      const int64_t *grid, int64_t dim) {
  const char *who = "pg_sincos_pos_embed_buffer";
  int64_t tokens;
  if (!ps || !name) {
    pg_fail(PG_ERR_ARG, "%s: params and name must not be NULL", who);
    return NULL;
  }
  if (check_table(who, data_dim, grid, dim, &tokens)) return NULL;
  pg_tensor *t = pg_params_add(ps, PG_PARAM_BUFFER, 3, (int64_t[]){1, tokens, dim}, "%s", name);
  if (t && pg_sincos_pos_embed_fill(t, data_dim, grid)) return NULL;
  return t;
}
