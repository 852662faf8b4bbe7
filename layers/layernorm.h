/* LayerNorm over the last axis, as torch.nn.LayerNorm(d, eps, elementwise_affine):
 * y = (x - mean) / sqrt(var + eps) * weight + bias, var the biased variance.
 * One fused forward and one fused backward, not a chain of generic ops. */
#ifndef PG_LAYERNORM_H
#define PG_LAYERNORM_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/tape.h"

/* x [..., d]; weight and bias [d], both NULL for no affine (or bias alone
 * NULL). Backward saves mean and 1/sqrt(var + eps) per row ([rows] each). */
PG_API pg_tensor *pg_layernorm_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias, float eps);

/* DiT's adaLN normalisation in one op: LayerNorm without affine followed by
 * modulate, LN(x) * (1 + scale) + shift, with x [B, ..., d] and shift,
 * scale [B, d] broadcast over the tokens of each sample. The same numbers
 * as pg_modulate_op(pg_layernorm_op(x, NULL, NULL, eps), shift, scale) with
 * one pass over x each way and no normalised copy kept (backward recomputes
 * it from the saved mean and 1/sqrt(var + eps) per row). */
PG_API pg_tensor *pg_layernorm_modulate_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *shift, pg_tensor *scale,
                                    float eps);

typedef struct {
  pg_tensor *weight, *bias; /* [d] each, NULL without affine */
  int64_t dim;
  float eps;
} pg_layernorm;

/* With affine, registers `<prefix>.weight` (1) and `<prefix>.bias` (0), kind PG_PARAM_NORM. */
PG_API pg_status pg_layernorm_init(pg_layernorm *l, pg_params *ps, const char *prefix, int64_t dim,
                            float eps, bool affine);
PG_API pg_tensor *pg_layernorm_forward(pg_ctx *ctx, const pg_layernorm *l, pg_tensor *x);

#endif
