/* Optimizers: SGD, Adam and AdamW, step for step the same as torch.optim
 * (1.13, single-tensor path), in float32.
 *
 * Usage:
 *   pg_optimizer opt;
 *   pg_optim_config cfg = pg_optim_adamw(1e-4);   // torch defaults, then edit
 *   cfg.decay_weights_only = true;                // no decay on biases, norms, embeddings
 *   if (pg_optimizer_init(&opt, &model_params, &cfg)) -> error in pg_last_error()
 *   per step: forward, pg_backward, (clip), pg_optimizer_step(&opt), pg_optimizer_zero_grad(&opt)
 *   pg_optimizer_free(&opt);
 *
 * What is updated: every entry of the model's pg_params list except
 * PG_PARAM_BUFFER entries, using the gradient in its tensor's `grad`.
 *
 * State, for checkpoints (save and restore it with generic code):
 *  - `step`: the number of updates done (PyTorch keeps one per parameter as
 *    state[p]['step']; here all parameters step together).
 *  - `config`: every hyper-parameter, including the current lr.
 *  - `state`: a pg_params list of PG_PARAM_BUFFER tensors owned by the
 *    optimizer, shaped like their parameter and named like PyTorch's
 *    state_dict keys after the parameter's name:
 *        SGD (momentum != 0)   "<param>.momentum_buffer"
 *        Adam, AdamW           "<param>.exp_avg", "<param>.exp_avg_sq",
 *                              and with amsgrad "<param>.max_exp_avg_sq"
 *    All of it is created (zeroed) by pg_optimizer_init, in parameter order;
 *    a step allocates nothing. Restoring = writing those tensors' data and
 *    `step` in place. SGD's first-step rule (buffer = gradient) is keyed on
 *    step == 0, so a restored step > 0 continues the momentum correctly.
 *
 * The config may be changed between steps (lr schedules do); turning on
 * momentum or amsgrad after init, when their buffers do not exist, is an
 * error at the next step. */
#ifndef PG_OPTIMIZER_H
#define PG_OPTIMIZER_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/params.h"

typedef enum { PG_OPTIM_SGD, PG_OPTIM_ADAM, PG_OPTIM_ADAMW } pg_optim_kind;

/* Each field names the torch.optim argument it mirrors. */
typedef struct {
  pg_optim_kind kind;
  double lr;           /* lr */
  double weight_decay; /* weight_decay: SGD and Adam add wd * param to the
                          gradient (L2); AdamW multiplies the parameter by
                          1 - lr * wd before the update (decoupled) */
  /* Parameter groups in one switch: true applies weight_decay to
   * PG_PARAM_WEIGHT entries only, not to biases, norms and embeddings (the
   * PyTorch equivalent is two param groups, the second with weight_decay=0). */
  bool decay_weights_only;
  /* SGD */
  double momentum;  /* momentum */
  double dampening; /* dampening */
  bool nesterov;    /* nesterov (needs momentum > 0 and dampening == 0) */
  /* Adam, AdamW */
  double beta1, beta2; /* betas=(beta1, beta2) */
  double eps;          /* eps */
  bool amsgrad;        /* amsgrad */
} pg_optim_config;

/* Configs holding torch.optim's defaults for everything but lr:
 * SGD: momentum 0, dampening 0, nesterov off, weight_decay 0.
 * Adam: betas (0.9, 0.999), eps 1e-8, weight_decay 0, amsgrad off.
 * AdamW: the same with weight_decay 0.01. */
PG_API pg_optim_config pg_optim_sgd(double lr);
PG_API pg_optim_config pg_optim_adam(double lr);
PG_API pg_optim_config pg_optim_adamw(double lr);

/* "sgd", "adam", "adamw" <-> kind; parsing an unknown name is an error
 * listing the known ones. */
PG_API const char *pg_optim_kind_name(pg_optim_kind kind);
PG_API pg_status pg_optim_kind_parse(const char *name, pg_optim_kind *kind);

/* Checks every hyper-parameter as torch.optim does (lr >= 0, 0 <= beta < 1,
 * ...); the message names the field and its value. */
PG_API pg_status pg_optim_config_check(const pg_optim_config *cfg);

/* One trained parameter and its state tensors (NULL when not used). */
typedef struct {
  const pg_param *param;
  pg_tensor *momentum_buffer;
  pg_tensor *exp_avg, *exp_avg_sq, *max_exp_avg_sq;
} pg_optim_slot;

typedef struct {
  pg_optim_config config;
  int64_t step;     /* updates done so far */
  pg_params state;  /* owned: the buffers above, by name */
  pg_params *params; /* the model's list, not owned */
  int params_count;  /* its length at init, to detect later registrations */
  pg_optim_slot *slots;
  int n_slots;
} pg_optimizer;

/* Checks the config, creates the state for every trainable entry of params
 * (which must outlive the optimizer). On error the optimizer holds nothing. */
PG_API pg_status pg_optimizer_init(pg_optimizer *opt, pg_params *params, const pg_optim_config *cfg);
PG_API void pg_optimizer_free(pg_optimizer *opt);

/* One update of every trainable parameter with config.lr, then step += 1.
 * Errors (bad config, a parameter list changed since init, a parameter
 * without a gradient buffer) leave every parameter and the state untouched. */
PG_API pg_status pg_optimizer_step(pg_optimizer *opt);

/* Zeroes the gradients of the parameters (set_to_none=False in PyTorch). */
PG_API void pg_optimizer_zero_grad(pg_optimizer *opt);

/* The weight decay a parameter of that kind receives under cfg. */
PG_API double pg_optim_decay_for(const pg_optim_config *cfg, pg_param_kind kind);

#endif
