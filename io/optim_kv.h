/* An optimizer's settings as a key/value list, so that checkpoints store them
 * as attributes of /optim with torch.optim's names (lr, weight_decay, beta1,
 * ...), a resumed run gets them back, and a resume that changes them is
 * refused with one clear line. docs/optim.md lists every key.
 *
 * Keys (attributes of /optim; `step` is written by io/checkpoint.c):
 *   optimizer            "sgd", "adam" or "adamw"
 *   lr, weight_decay, momentum, dampening, beta1, beta2, eps   doubles: the
 *                        config (param group 0); lr is the last scheduled lr
 *   decay_weights_only, nesterov, amsgrad                      ints 0/1
 * and, written by pg_optimizer_to_kv only:
 *   initial_lr           the lr the optimizer was created with (the
 *                        schedule's base; pg_optimizer's initial_lr)
 *   param_groups         the number n of explicit param groups (0: none)
 *   param_groups.K.pattern, .lr, .weight_decay, .beta1, .beta2, .momentum,
 *   .frozen              param group K = 1..n (lr: its lr at schedule factor
 *                        1; frozen 0/1)
 *   skipped_steps        only when some parameter sat out steps: tokens
 *                        "I:N" or "I-J:N" separated by spaces, meaning the
 *                        trainable parameters I (to J) in registration order
 *                        (the optimizer's slots) skipped N steps each; text
 *                        beyond one attribute continues in skipped_steps.1,
 *                        skipped_steps.2, ... */
#ifndef PG_OPTIM_KV_H
#define PG_OPTIM_KV_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/io/kv.h"
#include "patchgrad/optim/optimizer.h"

/* Replaces kv's content with every field of cfg ("optimizer" holds the kind
 * name; booleans are ints 0/1). */
PG_API pg_status pg_optim_config_to_kv(const pg_optim_config *cfg, pg_kv *kv);
/* The inverse; a missing or mistyped key, or an unknown one, is an error
 * naming it, and the result is checked with pg_optim_config_check. The keys
 * of pg_optimizer_to_kv (initial_lr, param_groups..., skipped_steps...) are
 * accepted and not read here. */
PG_API pg_status pg_optim_config_from_kv(const pg_kv *kv, pg_optim_config *cfg);

/* Replaces kv's content with the whole optimizer's settings: the config
 * (pg_optim_config_to_kv), initial_lr, the param groups and the skipped
 * steps (the keys above). Errors: out of memory. */
PG_API pg_status pg_optimizer_to_kv(const pg_optimizer *opt, pg_kv *kv);

/* The param groups stored in kv, in order, into groups[0..cap); *n receives
 * their number (0 when kv has no param_groups key, as in a checkpoint
 * written before groups existed). Each pattern points into kv (valid while
 * kv is neither changed nor freed); n_params is 0. Errors (PG_ERR_FORMAT,
 * naming the key): a missing or mistyped key, frozen not 0/1, more groups
 * than cap (PG_ERR_ARG). Ready for pg_optimizer_init_groups. */
PG_API pg_status pg_optim_groups_from_kv(const pg_kv *kv, pg_param_group *groups, int cap, int *n);

/* Compares the settings stored in a checkpoint (kv, as pg_optimizer_to_kv or
 * pg_optim_config_to_kv wrote them) with those of opt, the optimizer this
 * run built. PG_OK when every setting that shapes the trajectory agrees.
 * Otherwise PG_ERR_ARG, and pg_last_error() is one line naming the first
 * difference and both values, e.g.
 *   "the checkpoint was trained with adamw, this run uses sgd"
 *   "optimizer weight_decay: checkpoint 0.01, this run 0.05"
 *   "param groups: checkpoint 2 ('*.bias', 'norm.*'), this run 1 ('*.bias')"
 *   "param group 1 pattern: checkpoint '*.bias', this run 'norm.*'"
 *   "param group 1 ('*.bias') weight_decay: checkpoint 0, this run 0.01"
 *   "param group 2 ('embed.*') frozen: checkpoint yes, this run no"
 * Compared, in this order: the kind; lr (initial_lr against
 * opt->initial_lr, skipped when the checkpoint has no initial_lr), weight_decay,
 * betas (Adam, AdamW) or momentum, dampening and nesterov (SGD), eps and
 * amsgrad (Adam, AdamW), decay_weights_only; the number of groups; per group
 * pattern, lr, weight_decay, betas or momentum, frozen. The current lr and
 * the skipped steps are state, not settings, and are not compared.
 * may_differ: a NULL-terminated list of field names not to compare (in the
 * config and in every group), among "lr", "weight_decay", "betas",
 * "momentum", "dampening", "nesterov", "eps", "amsgrad",
 * "decay_weights_only", "frozen"; NULL compares everything. An unknown name
 * is PG_ERR_ARG; a malformed kv is PG_ERR_FORMAT naming the key. */
PG_API pg_status pg_optimizer_check_kv(const pg_kv *stored, const pg_optimizer *opt,
                                       const char *const *may_differ);

/* Sets every slot's `skipped` from kv's skipped_steps (0 for the slots it
 * does not name, and for all when the key is absent). Call it on resume
 * after restoring opt->step (a parameter cannot have skipped more steps than
 * were done). Errors (nothing changes then): a malformed token, a parameter
 * index beyond the optimizer's, a count above opt->step (PG_ERR_FORMAT). */
PG_API pg_status pg_optimizer_restore_kv(pg_optimizer *opt, const pg_kv *kv);

#endif
