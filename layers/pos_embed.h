/* Position embeddings for patch tokens: a learned table, or the fixed sin-cos
 * table of 1, 2 or 3 grid axes (DiT's in 2-D; docs/dit.md).
 *
 * Sin-cos: dim is split into data_dim equal parts; part k encodes grid axis
 * (data_dim - 1 - k) with the 1-D rule (for a part of d channels,
 * omega_j = 1 / 10000^(j / (d/2)), j < d/2, channels [sin(pos * omega_j)...,
 * cos(pos * omega_j)...]). In 2-D the first half thus encodes the column and
 * the second the row: exactly DiT's get_2d_sincos_pos_embed. Tokens are in
 * row-major grid order. dim must be divisible by 2 * data_dim. */
#ifndef PG_POS_EMBED_H
#define PG_POS_EMBED_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/tensor.h"

/* Registers a learned table `name` [1, tokens, dim] (PG_PARAM_EMBEDDING,
 * no weight decay), drawn from a normal of std 0.02 truncated to [-2, 2]
 * (PyTorch's trunc_normal_ defaults, as timm uses them). NULL on error. */
PG_API pg_tensor *pg_pos_embed_learned(pg_params *ps, const char *name, int64_t tokens, int64_t dim,
                                pg_rng *rng);

/* Fills t, of shape [1, T, dim] or [T, dim] with T = the product of the
 * data_dim sizes in grid, with the sin-cos table (computed in double). */
PG_API pg_status pg_sincos_pos_embed_fill(pg_tensor *t, int data_dim, const int64_t *grid);

/* Registers `name` [1, T, dim] as a PG_PARAM_BUFFER (saved in checkpoints,
 * never trained) and fills it with the sin-cos table. NULL on error. */
PG_API pg_tensor *pg_sincos_pos_embed_buffer(pg_params *ps, const char *name, int data_dim,
                                      const int64_t *grid, int64_t dim);

#endif
