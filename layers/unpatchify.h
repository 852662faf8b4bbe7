/* Unpatchify: turns tokens back into a channels-last signal, i.e. a
 * transposed convolution, the adjoint of Patchify's convolution.
 *
 *   x [B, *grid, C_embed] -> out [B, *spatial, C_out]
 *   out_s = (g - 1) * stride + patch, or a given output_spatial_shape with
 *   (g-1)*stride + P <= out_s <= (g-1)*stride + P + stride - 1 on every axis
 *   (the extra cells receive only the bias)
 *   weight [C_embed, C_out, P, ...] (PyTorch's ConvTranspose layout), bias [C_out]
 *
 * Overlapping patches (stride < patch) sum their contributions. */
#ifndef PG_UNPATCHIFY_H
#define PG_UNPATCHIFY_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/tensor.h"

/* The op on explicit tensors, recorded on the tape with the gradients of x,
 * weight and bias (bias may be NULL). output_spatial_shape: data_dim sizes,
 * or NULL for the default. NULL with a message on bad input. */
PG_API pg_tensor *pg_unpatchify_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias,
                            int data_dim, int64_t patch, int64_t stride,
                            const int64_t *output_spatial_shape);

/* Initial weights (see README "Patchify and Unpatchify"):
 *  DEFAULT: PyTorch's ConvTranspose default, uniform +-1/sqrt(C_out * P^d)
 *           for weight and bias (its fan comes from the weight's second axis);
 *  ZEROS:   weight and bias 0, so the output is exactly 0 at init (DiT);
 *  FAN_IN:  kaiming_uniform_(mode='fan_out') on the [C_embed, C_out, P...]
 *           weight, i.e. uniform +-sqrt(6 / (C_embed * P^d)), bias 0. */
typedef enum {
  PG_UNPATCH_INIT_DEFAULT,
  PG_UNPATCH_INIT_ZEROS,
  PG_UNPATCH_INIT_FAN_IN,
  PG_UNPATCH_INIT_COUNT, /* the number of schemes, not one */
} pg_unpatch_init;

/* "default", "zeros" or "fan_in"; anything else is an error naming it. */
PG_API pg_status pg_unpatch_init_parse(const char *name, pg_unpatch_init *out);
PG_API const char *pg_unpatch_init_name(pg_unpatch_init scheme);

typedef struct {
  pg_tensor *weight, *bias; /* owned by the pg_params list; bias may be NULL */
  int data_dim;
  int64_t in_features, out_features, patch, stride; /* in_features = C_embed */
} pg_unpatchify;

/* Registers `<prefix>.weight` [C_embed, C_out, P, ...] and `<prefix>.bias`
 * [C_out] in ps and initialises them with weight_init. */
PG_API pg_status pg_unpatchify_init(pg_unpatchify *l, pg_params *ps, const char *prefix,
                             int64_t in_features, int64_t out_features, int data_dim,
                             int64_t patch, int64_t stride, bool bias,
                             pg_unpatch_init weight_init, pg_rng *rng);

PG_API pg_tensor *pg_unpatchify_forward(pg_ctx *ctx, const pg_unpatchify *l, pg_tensor *x,
                                 const int64_t *output_spatial_shape);

#endif
