/* Patchify: cuts a channels-last signal into patches and embeds each one,
 * i.e. a strided convolution with kernel patch_size on every spatial axis and
 * no padding.
 *
 *   x [B, *spatial, C_in] -> out [B, *grid, C_out]
 *   grid_s = floor((s - patch) / stride) + 1   (pixels past the last full
 *                                               patch are dropped)
 *   weight [C_out, C_in, P, ...] (PyTorch's Conv layout), bias [C_out]
 *
 * stride < patch: overlapping patches; stride > patch: gaps. With the
 * identity weight it is a plain patch splitter (unfold). */
#ifndef PG_PATCHIFY_H
#define PG_PATCHIFY_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/tensor.h"

/* The op on explicit tensors, recorded on the tape with the gradients of x,
 * weight and bias (bias may be NULL). NULL with a message on bad input. */
PG_API pg_tensor *pg_patchify_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias,
                          int data_dim, int64_t patch, int64_t stride);

/* The layer: its parameters live in a pg_params list, the struct only points
 * at them. */
typedef struct {
  pg_tensor *weight, *bias; /* bias NULL when created without one */
  int data_dim;
  int64_t in_features, out_features, patch, stride;
} pg_patchify;

/* Registers `<prefix>.weight` [C_out, C_in, P, ...] and `<prefix>.bias`
 * [C_out] in ps and initialises them as PyTorch's Conv does: uniform in
 * (-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in * P^data_dim.
 * (DiT's patch embedding uses the prefix "x_embedder.conv".) */
PG_API pg_status pg_patchify_init(pg_patchify *l, pg_params *ps, const char *prefix,
                           int64_t in_features, int64_t out_features, int data_dim,
                           int64_t patch, int64_t stride, bool bias, pg_rng *rng);

PG_API pg_tensor *pg_patchify_forward(pg_ctx *ctx, const pg_patchify *l, pg_tensor *x);

#endif
