/* Gradient clipping over the entries of a parameter list that the optimizer
 * updates (pg_optim_param_active: buffers, tensors with requires_grad off
 * and tensors without a gradient buffer are skipped, so a frozen tensor
 * neither enters the norm nor has its gradient scaled), as torch.nn.utils
 * does it over the parameters that have a .grad. Call between backward and
 * the optimizer step. */
#ifndef PG_CLIP_H
#define PG_CLIP_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/params.h"

/* torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type): the total
 * norm is the norm of the per-parameter gradient norms (norm_type p > 0, or
 * INFINITY for the largest |g|); every gradient is multiplied by
 * clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1 (so
 * gradients under the limit are untouched), in float32 as PyTorch does.
 * Returns the total norm before clipping (a float32 value). A non-finite
 * norm is returned as is, gradients then scaled like PyTorch's
 * error_if_nonfinite=False; check the result with isfinite() to skip a step.
 * A bad argument returns -1 with a message (max_norm < 0, norm_type <= 0). */
PG_API double pg_clip_grad_norm(pg_params *ps, double max_norm, double norm_type);

/* torch.nn.utils.clip_grad_value_: every gradient element clamped to
 * [-clip_value, clip_value] (NaN stays NaN). clip_value < 0 is an error. */
PG_API pg_status pg_clip_grad_value(pg_params *ps, double clip_value);

#endif
