/* MLP: fc1 Linear -> GELU (tanh approximation) -> fc2 Linear, as timm's Mlp
 * in DiT. fc1 and its GELU are one fused op. */
#ifndef PG_MLP_H
#define PG_MLP_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/layers/linear.h"

/* gelu_tanh(x W^T + b) for x [..., in], weight [out, in], bias [out] or NULL,
 * gelu_tanh(z) = 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) (PyTorch's
 * approximate="tanh"). The forward computes GELU's derivative at z while it
 * has tanh at hand and saves that ([..., out]) instead of z, so backward needs
 * no transcendental function. */
PG_API pg_tensor *pg_linear_gelu_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias);

typedef struct {
  pg_linear fc1; /* `<prefix>.fc1.weight` [hidden, in], `.fc1.bias` [hidden] */
  pg_linear fc2; /* `<prefix>.fc2.weight` [out, hidden], `.fc2.bias` [out] */
  int64_t in_features, hidden_features, out_features; /* timm's Mlp names */
} pg_mlp;

/* Both Linears with biases and the given init scheme (DiT: xavier_uniform). */
PG_API pg_status pg_mlp_init(pg_mlp *m, pg_params *ps, const char *prefix, int64_t in_features,
                            int64_t hidden_features, int64_t out_features, pg_linear_init_kind init,
                            float std, pg_rng *rng);
/* x [..., in] -> [..., out]. */
PG_API pg_tensor *pg_mlp_forward(pg_ctx *ctx, const pg_mlp *m, pg_tensor *x);

#endif
