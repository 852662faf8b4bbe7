/* Finite-difference gradient checking of any function of tensors.
 *
 * f maps the inputs to one output tensor of any shape. The check draws a
 * fixed random r of the output's shape, runs backward with r as the upstream
 * gradient, and compares every input element's analytic gradient with the
 * central difference (<f(x + eps e_i), r> - <f(x - eps e_i), r>) / (2 eps),
 * the dot products summed in double. The inputs must be heap tensors with
 * requires_grad (pg_tensor_new(..., true)); their data is perturbed and
 * restored, their grad is overwritten. f runs in a context of the checker's. */
#ifndef PG_GRADCHECK_H
#define PG_GRADCHECK_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/tensor.h"

typedef pg_tensor *(*pg_fn)(pg_ctx *ctx, pg_tensor *const *inputs, void *user);

typedef struct {
  double eps;   /* step (default 1e-3) */
  double atol;  /* pass when |analytic - numeric| <= atol + rtol * |numeric| */
  double rtol;  /* (defaults 1e-3 and 1e-2) */
  uint64_t seed;
} pg_gradcheck_opts;

typedef struct {
  bool ok;
  double max_abs_err;  /* the worst element's absolute difference */
  double max_excess;   /* worst |a - n| / (atol + rtol |n|); <= 1 passes */
  int worst_input;     /* where the worst excess is */
  int64_t worst_index;
  double worst_analytic, worst_numeric;
  long checked;        /* elements compared */
} pg_gradcheck_result;

/* opts may be NULL for the defaults. Returns PG_OK when the check ran (read
 * res->ok for the verdict) and an error when f fails or an input is not a
 * heap tensor requiring a gradient. */
PG_API pg_status pg_gradcheck(pg_fn f, void *user, int n_inputs, pg_tensor *const *inputs,
                       const pg_gradcheck_opts *opts, pg_gradcheck_result *res);

#endif
