/* The update kernels: one plain loop over one parameter's flat buffer, with
 * the state buffers of the same length. pg_optimizer_step calls them once per
 * parameter; they are public so that a custom loop can reuse them.
 *
 * Each follows torch.optim's single-tensor code (1.13) operation by
 * operation, in float32, with the hyper-parameters rounded to float32 where
 * PyTorch rounds them (Python scalars passed to float tensor ops) and the
 * scalar bias corrections computed in double as Python does. */
#ifndef PG_OPTIM_UPDATE_H
#define PG_OPTIM_UPDATE_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/optim/optimizer.h"

/* Loops over at least this many elements are split across the OpenMP
 * threads; below it starting a team costs more than the loop. */
#define PG_OPTIM_PARALLEL_MIN ((int64_t)1 << 15)

/* True when a loop over n elements should use the OpenMP threads: it is
 * large, there is more than one thread, and we are not in a parallel region. */
PG_API bool pg_optim_use_threads(int64_t n);

/* Calls range(user, lo, hi) to cover [0, n): once per OpenMP thread on
 * consecutive slices when pg_optim_use_threads(n), else once on this thread without entering OpenMP at all
 * (libgomp allocates a thread team for a region it cannot reuse, and a
 * training step must not call malloc). Slices start on multiples of 16. */
PG_API void pg_optim_parallel(int64_t n, void (*range)(void *user, int64_t lo, int64_t hi), void *user);

/* torch.optim.SGD for one parameter. step: updates done before this one
 * (0 selects the first-step rule: momentum_buffer = d_p, no dampening).
 * momentum_buffer may be NULL only when cfg->momentum == 0. */
PG_API void pg_sgd_update(const pg_optim_config *cfg, double weight_decay, int64_t step, int64_t n,
                   float *param, const float *grad, float *momentum_buffer);

/* torch.optim.Adam (cfg->kind PG_OPTIM_ADAM: L2 decay added to the gradient)
 * or AdamW (PG_OPTIM_ADAMW: param *= 1 - lr * weight_decay first) for one
 * parameter. step: the number of this update, from 1 (PyTorch's state step
 * after its increment). max_exp_avg_sq is used (and must be non-NULL) when
 * cfg->amsgrad is set. */
PG_API void pg_adam_update(const pg_optim_config *cfg, double weight_decay, int64_t step, int64_t n,
                    float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                    float *max_exp_avg_sq);

#endif
