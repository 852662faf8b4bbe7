/* The update kernels: one plain loop over one parameter's flat buffer, with
 * the state buffers of the same length. pg_optimizer_step calls them once per
 * parameter; they are public so that a custom loop can reuse them.
 *
 * Each follows torch.optim's single-tensor code (1.13) operation by
 * operation, in float32, with the hyper-parameters rounded to float32 where
 * PyTorch rounds them (Python scalars passed to float tensor ops) and the
 * scalar bias corrections computed in double as Python does. Threads: OpenMP
 * over elements when n >= PG_OPTIM_PARALLEL_MIN. */
#ifndef PG_OPTIM_UPDATE_H
#define PG_OPTIM_UPDATE_H

#include <stdint.h>

#include "optimizer.h"

/* Below this many elements a parameter is updated by one thread: starting a
 * team costs more than the loop. */
#define PG_OPTIM_PARALLEL_MIN 32768

/* torch.optim.SGD for one parameter. step: updates done before this one
 * (0 selects the first-step rule: momentum_buffer = d_p, no dampening).
 * momentum_buffer may be NULL only when cfg->momentum == 0. */
void pg_sgd_update(const pg_optim_config *cfg, double weight_decay, int64_t step, int64_t n,
                   float *restrict param, const float *restrict grad,
                   float *restrict momentum_buffer);

/* torch.optim.Adam (cfg->kind PG_OPTIM_ADAM: L2 decay added to the gradient)
 * or AdamW (PG_OPTIM_ADAMW: param *= 1 - lr * weight_decay first) for one
 * parameter. step: the number of this update, from 1 (PyTorch's state step
 * after its increment). max_exp_avg_sq is used (and must be non-NULL) when
 * cfg->amsgrad is set. */
void pg_adam_update(const pg_optim_config *cfg, double weight_decay, int64_t step, int64_t n,
                    float *restrict param, const float *restrict grad, float *restrict exp_avg,
                    float *restrict exp_avg_sq, float *restrict max_exp_avg_sq);

#endif
