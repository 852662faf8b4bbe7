/* Optimizers: SGD, Adam and AdamW, step for step the same as torch.optim
 * (1.13, single-tensor path), in float32. docs/optim.md tells the whole
 * story (freezing, param groups, schedules, checkpoints) with examples.
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
 * Freezing, as torch.optim skips a parameter whose .grad is None: at each
 * step a parameter whose tensor has requires_grad false
 * (pg_tensor_set_requires_grad(t, false)) or no gradient buffer is skipped
 * entirely: no weight decay, no moment or momentum update, and its own step
 * count (PyTorch's state[p]['step']) does not advance; its value and state
 * stay bit-identical until it takes part again, and then it continues from
 * its own count (Adam's bias correction, SGD's first-step rule). A parameter
 * that requires grad but received no gradient this step holds zeros (the
 * buffer is zeroed by pg_optimizer_zero_grad, PyTorch's
 * zero_grad(set_to_none=False)) and is updated like any other, as in
 * PyTorch. Clipping (optim/clip.h) and the EMA (optim/ema.h) skip frozen
 * tensors the same way.
 *
 * Parameter groups, as torch.optim's param_groups: pg_optimizer_init_groups
 * takes groups selected by fnmatch(3) globs over the parameter names; each
 * has its own lr, weight_decay, betas (Adam, AdamW) or momentum (SGD) and
 * can be frozen. Every parameter goes to the first group whose pattern
 * matches its name; the rest form param group 0, the default group, whose
 * hyper-parameters are `config`. Explicit groups are param groups 1..n
 * (opt->param_groups[0..n-1]), in the order given.
 *
 * State, for checkpoints (save and restore it with generic code):
 *  - `step`: the number of pg_optimizer_step calls done (the schedule's step).
 *  - each slot's `skipped`: the steps its parameter sat out; its own update
 *    count is step - skipped (0 for every parameter of a run that never
 *    freezes). io/optim_kv.h stores them with the groups.
 *  - `config`: every hyper-parameter, including the current lr.
 *  - `state`: a pg_params list of PG_PARAM_BUFFER tensors owned by the
 *    optimizer, shaped like their parameter and named like PyTorch's
 *    state_dict keys after the parameter's name:
 *        SGD (momentum != 0)   "<param>.momentum_buffer"
 *        Adam, AdamW           "<param>.exp_avg", "<param>.exp_avg_sq",
 *                              and with amsgrad "<param>.max_exp_avg_sq"
 *    All of it is created (zeroed) by pg_optimizer_init, in parameter order,
 *    for every trainable entry (frozen ones included, so they can be
 *    unfrozen); a step allocates nothing. Restoring = writing those tensors'
 *    data, `step` and the slots' `skipped` in place. SGD's first-step rule
 *    (buffer = gradient) is keyed on the parameter's own count being 0, so a
 *    restored step > 0 continues the momentum correctly.
 *
 * The config and the groups' hyper-parameters may be changed between steps
 * (lr schedules do); turning on momentum or amsgrad after init, when their
 * buffers do not exist, is an error at the next step. */
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

/* Longest group pattern (bytes, without the terminating 0): checkpoints
 * store a pattern as one string attribute. */
#define PG_PARAM_GROUP_PATTERN_MAX 200

/* One param group, as an entry of torch.optim's param_groups.
 *
 * lr is the group's lr when the schedule's factor is 1 (its initial_lr in
 * PyTorch). The step uses lr * config.lr / initial_lr (see pg_optimizer), so
 * a schedule, which sets config.lr, scales every group's lr by the same
 * factor, as LambdaLR does over param_groups.
 *
 * frozen: pg_optimizer_init_groups turns requires_grad off on the group's
 * tensors, so backward computes no gradient for them and the optimizer,
 * clipping and the EMA skip them (see "Freezing" above). Setting the field
 * later has no effect; freeze or unfreeze a tensor with
 * pg_tensor_set_requires_grad. */
typedef struct {
  const char *pattern; /* fnmatch(3) glob, flags 0: '*' also matches '.', so
                          "blocks.*" takes every tensor of every block. In the
                          groups given to init: the caller's string. In
                          opt->param_groups: a copy owned by the optimizer. */
  double lr;           /* lr */
  double weight_decay; /* weight_decay (decay_weights_only still applies) */
  double betas[2];     /* betas: Adam and AdamW (config.beta1, beta2 for group 0) */
  double momentum;     /* momentum: SGD (init creates momentum buffers for
                          the groups whose momentum is not 0) */
  bool frozen;
  int n_params;        /* set by init: the trainable parameters it took */
} pg_param_group;

/* A group with cfg's lr, weight_decay, betas and momentum, not frozen, and
 * pattern (not copied here); edit what differs. */
PG_API pg_param_group pg_param_group_make(const pg_optim_config *cfg, const char *pattern);

/* One trained parameter and its state tensors (NULL when not used). */
typedef struct {
  const pg_param *param;
  pg_tensor *momentum_buffer;
  pg_tensor *exp_avg, *exp_avg_sq, *max_exp_avg_sq;
  int group;       /* its param group: 0 the default, k the group param_groups[k-1] */
  int64_t skipped; /* steps it sat out (frozen or without gradient buffer) */
} pg_optim_slot;

typedef struct {
  pg_optim_config config; /* the shared settings and param group 0's lr,
                             weight_decay, betas, momentum */
  double initial_lr;      /* config.lr at init: the groups' lrs scale by
                             config.lr / initial_lr (none when it is 0) */
  int64_t step;     /* updates done so far */
  pg_params state;  /* owned: the buffers above, by name */
  pg_params *params; /* the model's list, not owned */
  int params_count;  /* its length at init, to detect later registrations */
  pg_optim_slot *slots;
  int n_slots;
  pg_param_group *param_groups; /* owned: param groups 1..n_param_groups */
  int n_param_groups;
} pg_optimizer;

/* Checks the config, creates the state for every trainable entry of params
 * (which must outlive the optimizer). On error the optimizer holds nothing.
 * The same as pg_optimizer_init_groups with no groups. */
PG_API pg_status pg_optimizer_init(pg_optimizer *opt, pg_params *params, const pg_optim_config *cfg);

/* pg_optimizer_init with param groups 1..n_groups (groups may be NULL when
 * n_groups is 0). The groups and their patterns are copied. Each trainable
 * parameter goes to the first group whose pattern matches its name, the rest
 * to group 0 (config); buffers are never in a group. Frozen groups get
 * requires_grad off on their tensors (only when init succeeds).
 * Errors (nothing is changed then): a NULL, empty or too long pattern; a
 * pattern that matches no trainable parameter (the message names the group
 * and the pattern, and says when it matches only buffers); a group's
 * hyper-parameters out of range, checked as pg_optim_config_check does with
 * the group's values ("param group 2 ('*.bias'): weight_decay = -1 ...").
 * A group whose pattern matches only parameters an earlier group took is
 * kept, with n_params 0. */
PG_API pg_status pg_optimizer_init_groups(pg_optimizer *opt, pg_params *params,
                                          const pg_optim_config *cfg, const pg_param_group *groups,
                                          int n_groups);
PG_API void pg_optimizer_free(pg_optimizer *opt);

/* One update of every parameter that takes part (pg_optim_param_active),
 * each with its group's hyper-parameters and its own update count; the
 * others count one more skipped step. Then step += 1.
 * Errors (bad config or group values, a parameter list changed since init, a
 * state buffer missing) leave every parameter and the state untouched. */
PG_API pg_status pg_optimizer_step(pg_optimizer *opt);

/* Zeroes the gradients of the parameters (set_to_none=False in PyTorch). */
PG_API void pg_optimizer_zero_grad(pg_optimizer *opt);

/* True when a step updates p: a trainable entry whose tensor requires grad
 * and has a gradient buffer. Clipping and the EMA use the same test. */
PG_API bool pg_optim_param_active(const pg_param *p);

/* The lr param group `group` uses at the next step (0: config.lr; k:
 * param_groups[k-1].lr * config.lr / initial_lr, exactly config.lr when
 * that group's lr equals initial_lr, unscaled when initial_lr is 0).
 * NAN for a group index out of range. */
PG_API double pg_optimizer_group_lr(const pg_optimizer *opt, int group);

/* The config a parameter of param group `group` is updated with: config
 * with that group's lr (as pg_optimizer_group_lr), weight_decay, betas and
 * momentum. Group 0 (or an index out of range) gives config as is. */
PG_API pg_optim_config pg_optimizer_group_config(const pg_optimizer *opt, int group);

/* The weight decay a parameter of that kind receives under cfg. */
PG_API double pg_optim_decay_for(const pg_optim_config *cfg, pg_param_kind kind);

#endif
