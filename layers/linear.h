/* Linear: y = x W^T + b over the last axis, as torch.nn.Linear.
 *
 * pg_linear_op is the op on explicit tensors (any rank [..., in], one GEMM
 * over all leading axes); pg_linear is the layer that owns `<prefix>.weight`
 * [out, in] and `<prefix>.bias` [out] in a parameter list. */
#ifndef PG_LINEAR_H
#define PG_LINEAR_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/tape.h"

/* x [..., in], weight [out, in], bias [out] or NULL -> [..., out].
 * Backward: dX = dY W, dW = dY^T X, db = column sums of dY (saves nothing:
 * it reads x and weight, which the step keeps alive). */
PG_API pg_tensor *pg_linear_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias);

typedef enum {
  PG_LINEAR_INIT_DEFAULT,        /* PyTorch: weight and bias uniform in +-1/sqrt(in) */
  PG_LINEAR_INIT_XAVIER_UNIFORM, /* weight uniform in +-sqrt(6/(in+out)), bias 0 */
  PG_LINEAR_INIT_NORMAL,         /* weight normal(0, std), bias 0 */
  PG_LINEAR_INIT_ZEROS,          /* weight and bias 0 */
} pg_linear_init_kind;

typedef struct {
  pg_tensor *weight; /* [out_features, in_features], owned by the parameter list */
  pg_tensor *bias;   /* [out_features] or NULL */
  int64_t in_features, out_features;
} pg_linear;

/* Registers `<prefix>.weight` (PG_PARAM_WEIGHT) and, when bias, `<prefix>.bias`
 * (PG_PARAM_BIAS) in ps and initialises them; std is read only by
 * PG_LINEAR_INIT_NORMAL, rng may be NULL only for PG_LINEAR_INIT_ZEROS. */
PG_API pg_status pg_linear_init(pg_linear *l, pg_params *ps, const char *prefix, int64_t in_features,
                               int64_t out_features, bool bias, pg_linear_init_kind init, float std,
                               pg_rng *rng);
PG_API pg_tensor *pg_linear_forward(pg_ctx *ctx, const pg_linear *l, pg_tensor *x);

/* Fills an existing weight (and bias, may be NULL) with one of the schemes;
 * for layers whose weights are Linear-like ([out, in]). */
PG_API pg_status pg_linear_fill(pg_tensor *weight, pg_tensor *bias, pg_linear_init_kind init, float std,
                         pg_rng *rng);

/* Checks x, weight, bias as pg_linear_op does; messages start with `who`. */
PG_API pg_status pg_linear_check_args(const char *who, const pg_tensor *x, const pg_tensor *weight,
                               const pg_tensor *bias);

/* Shared by the ops that end in a Linear's backward (fused Linear+GELU):
 * given dY [m, out], adds (or writes, when the destination is fresh) the
 * gradients of x [m, in], weight and bias. */
PG_API void pg_linear_backward_from(pg_ctx *ctx, const float *dy, int64_t m, pg_tensor *x,
                             pg_tensor *weight, pg_tensor *bias);

#endif
