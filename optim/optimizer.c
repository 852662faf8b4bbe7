#include "patchgrad/optim/optimizer.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/optim/update.h"

pg_optim_config pg_optim_sgd(double lr) {
  return (pg_optim_config){.kind = PG_OPTIM_SGD, .lr = lr};
}

pg_optim_config pg_optim_adam(double lr) {
  return (pg_optim_config){.kind = PG_OPTIM_ADAM, .lr = lr, .beta1 = 0.9, .beta2 = 0.999,
                           .eps = 1e-8};
}

pg_optim_config pg_optim_adamw(double lr) {
  pg_optim_config cfg = pg_optim_adam(lr);
  cfg.kind = PG_OPTIM_ADAMW;
  cfg.weight_decay = 0.01;
  return cfg;
}

static const char *const kind_names[] = {"sgd", "adam", "adamw"};

const char *pg_optim_kind_name(pg_optim_kind kind) {
  return (unsigned)kind < 3 ? kind_names[kind] : "unknown";
}

pg_status pg_optim_kind_parse(const char *name, pg_optim_kind *kind) {
  for (int k = 0; k < 3; k++)
    if (name && !strcmp(name, kind_names[k])) {
      *kind = (pg_optim_kind)k;
      return PG_OK;
    }
  return pg_fail(PG_ERR_ARG, "optimizer: unknown name '%s' (expected sgd, adam or adamw)",
                 name ? name : "(null)");
}

/* Each hyper-parameter must be finite and lie in [low, high) (high: none when
 * infinite), as torch.optim checks them. */
static pg_status check_range(const char *field, double v, double low, double high) {
  if (!isfinite(v) || v < low || v >= high) {
    if (isinf(low)) return pg_fail(PG_ERR_ARG, "optimizer: %s = %g must be finite", field, v);
    if (isinf(high))
      return pg_fail(PG_ERR_ARG, "optimizer: %s = %g is out of range (expected a finite value >= %g)",
                     field, v, low);
    return pg_fail(PG_ERR_ARG, "optimizer: %s = %g is out of range (expected %g <= %s < %g)", field,
                   v, low, field, high);
  }
  return PG_OK;
}

pg_status pg_optim_config_check(const pg_optim_config *cfg) {
  if (!cfg) return pg_fail(PG_ERR_ARG, "optimizer: config is NULL");
  if ((unsigned)cfg->kind > PG_OPTIM_ADAMW)
    return pg_fail(PG_ERR_ARG, "optimizer: kind = %d is not sgd, adam or adamw", (int)cfg->kind);
  pg_status st;
  if ((st = check_range("lr", cfg->lr, 0, INFINITY)) ||
      (st = check_range("weight_decay", cfg->weight_decay, 0, INFINITY)))
    return st;
  if (cfg->kind == PG_OPTIM_SGD) {
    if ((st = check_range("momentum", cfg->momentum, 0, INFINITY)) ||
        (st = check_range("dampening", cfg->dampening, -INFINITY, INFINITY)))
      return st;
    if (cfg->nesterov && (cfg->momentum <= 0 || cfg->dampening != 0))
      return pg_fail(PG_ERR_ARG,
                     "optimizer: nesterov needs momentum > 0 and dampening = 0 "
                     "(got momentum %g, dampening %g)",
                     cfg->momentum, cfg->dampening);
    return PG_OK;
  }
  if ((st = check_range("beta1", cfg->beta1, 0, 1)) ||
      (st = check_range("beta2", cfg->beta2, 0, 1)) ||
      (st = check_range("eps", cfg->eps, 0, INFINITY)))
    return st;
  return PG_OK;
}

double pg_optim_decay_for(const pg_optim_config *cfg, pg_param_kind kind) {
  if (cfg->decay_weights_only && kind != PG_PARAM_WEIGHT) return 0.0;
  return cfg->weight_decay;
}

bool pg_optim_param_active(const pg_param *p) {
  return pg_param_trainable(p) && p->tensor->requires_grad && p->tensor->grad;
}

pg_param_group pg_param_group_make(const pg_optim_config *cfg, const char *pattern) {
  return (pg_param_group){.pattern = pattern,
                          .lr = cfg->lr,
                          .weight_decay = cfg->weight_decay,
                          .betas = {cfg->beta1, cfg->beta2},
                          .momentum = cfg->momentum};
}

double pg_optimizer_group_lr(const pg_optimizer *opt, int group) {
  if (!opt || group < 0 || group > opt->n_param_groups) return NAN;
  if (group == 0) return opt->config.lr;
  const double lr = opt->param_groups[group - 1].lr;
  if (!(opt->initial_lr > 0)) return lr;
  if (lr == opt->initial_lr) return opt->config.lr;
  return lr * (opt->config.lr / opt->initial_lr);
}

pg_optim_config pg_optimizer_group_config(const pg_optimizer *opt, int group) {
  pg_optim_config c = opt->config;
  if (group <= 0 || group > opt->n_param_groups) return c;
  const pg_param_group *g = &opt->param_groups[group - 1];
  c.lr = pg_optimizer_group_lr(opt, group);
  c.weight_decay = g->weight_decay;
  c.beta1 = g->betas[0];
  c.beta2 = g->betas[1];
  c.momentum = g->momentum;
  return c;
}

/* The check of a group's config, its message prefixed with the group. */
static pg_status check_group(const pg_optimizer *opt, int group) {
  pg_optim_config c = pg_optimizer_group_config(opt, group);
  pg_status st = pg_optim_config_check(&c);
  if (!st || group == 0) return st;
  char why[256];
  const char *msg = pg_last_error();
  const char *prefix = "optimizer: ";
  snprintf(why, sizeof why, "%s", strncmp(msg, prefix, strlen(prefix)) ? msg : msg + strlen(prefix));
  return pg_fail(st, "param group %d ('%s'): %s", group, opt->param_groups[group - 1].pattern, why);
}

/* A zeroed state buffer shaped like p, named "<p's name>.<what>". */
static pg_tensor *add_state(pg_optimizer *opt, const pg_param *p, const char *what) {
  const pg_tensor *t = p->tensor;
  return pg_params_add(&opt->state, PG_PARAM_BUFFER, t->ndim, t->shape, "%s.%s", p->name, what);
}

/* Copies the groups (patterns included) into opt and checks them. */
static pg_status copy_groups(pg_optimizer *opt, const pg_param_group *groups, int n) {
  if (n < 0) return pg_fail(PG_ERR_ARG, "pg_optimizer_init_groups: n_groups = %d must be >= 0", n);
  if (n > 0 && !groups) return pg_fail(PG_ERR_ARG, "pg_optimizer_init_groups: groups is NULL");
  if (n == 0) return PG_OK;
  opt->param_groups = calloc((size_t)n, sizeof *opt->param_groups);
  if (!opt->param_groups) return pg_fail(PG_ERR_MEMORY, "pg_optimizer_init_groups: out of memory");
  for (int k = 0; k < n; k++) {
    const char *pat = groups[k].pattern;
    if (!pat || !*pat)
      return pg_fail(PG_ERR_ARG, "param group %d: the pattern is %s", k + 1, pat ? "empty" : "NULL");
    size_t len = strlen(pat);
    if (len > PG_PARAM_GROUP_PATTERN_MAX)
      return pg_fail(PG_ERR_ARG, "param group %d: the pattern '%.40s...' is %zu bytes long (at most %d)",
                     k + 1, pat, len, PG_PARAM_GROUP_PATTERN_MAX);
    char *copy = malloc(len + 1);
    if (!copy) return pg_fail(PG_ERR_MEMORY, "pg_optimizer_init_groups: out of memory");
    memcpy(copy, pat, len + 1);
    opt->param_groups[k] = groups[k];
    opt->param_groups[k].pattern = copy;
    opt->param_groups[k].n_params = 0;
    opt->n_param_groups = k + 1;
  }
  for (int k = 1; k <= n; k++) {
    pg_status st = check_group(opt, k);
    if (st) return st;
  }
  return PG_OK;
}

/* Assigns every trainable entry to its group (the first whose pattern
 * matches); a pattern that matches no trainable entry is an error. */
static pg_status assign_groups(pg_optimizer *opt, const pg_params *params, int *group_of) {
  for (int i = 0; i < params->count; i++) {
    group_of[i] = 0;
    if (!pg_param_trainable(&params->items[i])) continue;
    for (int k = 1; k <= opt->n_param_groups; k++)
      if (fnmatch(opt->param_groups[k - 1].pattern, params->items[i].name, 0) == 0) {
        group_of[i] = k;
        opt->param_groups[k - 1].n_params++;
        break;
      }
  }
  for (int k = 1; k <= opt->n_param_groups; k++) {
    const char *pat = opt->param_groups[k - 1].pattern;
    bool trainable = false, buffer = false;
    for (int i = 0; i < params->count; i++)
      if (fnmatch(pat, params->items[i].name, 0) == 0) {
        if (pg_param_trainable(&params->items[i])) trainable = true;
        else buffer = true;
      }
    if (!trainable)
      return pg_fail(PG_ERR_ARG, "param group %d: the pattern '%s' matches no trainable parameter%s",
                     k, pat, buffer ? " (only buffers, which are never trained)" : "");
  }
  return PG_OK;
}

pg_status pg_optimizer_init(pg_optimizer *opt, pg_params *params, const pg_optim_config *cfg) {
  return pg_optimizer_init_groups(opt, params, cfg, NULL, 0);
}

pg_status pg_optimizer_init_groups(pg_optimizer *opt, pg_params *params,
                                   const pg_optim_config *cfg, const pg_param_group *groups,
                                   int n_groups) {
  if (!opt) return pg_fail(PG_ERR_ARG, "pg_optimizer_init: opt is NULL");
  memset(opt, 0, sizeof *opt);
  if (!params) return pg_fail(PG_ERR_ARG, "pg_optimizer_init: params is NULL");
  pg_status st = pg_optim_config_check(cfg);
  if (st) return st;
  opt->config = *cfg;
  opt->initial_lr = cfg->lr;
  opt->params = params;
  opt->params_count = params->count;
  pg_params_init(&opt->state);
  int *group_of = NULL;
  if ((st = copy_groups(opt, groups, n_groups))) goto fail;
  opt->slots = calloc((size_t)(params->count ? params->count : 1), sizeof *opt->slots);
  group_of = calloc((size_t)(params->count ? params->count : 1), sizeof *group_of);
  if (!opt->slots || !group_of) {
    st = pg_fail(PG_ERR_MEMORY, "pg_optimizer_init: out of memory");
    goto fail;
  }
  if ((st = assign_groups(opt, params, group_of))) goto fail;
  for (int i = 0; i < params->count; i++) {
    const pg_param *p = &params->items[i];
    if (!pg_param_trainable(p)) continue;
    pg_optim_slot *s = &opt->slots[opt->n_slots++];
    s->param = p;
    s->group = group_of[i];
    const pg_optim_config c = pg_optimizer_group_config(opt, s->group);
    if (c.kind == PG_OPTIM_SGD) {
      if (c.momentum != 0 && !(s->momentum_buffer = add_state(opt, p, "momentum_buffer")))
        goto fail_last;
    } else {
      if (!(s->exp_avg = add_state(opt, p, "exp_avg")) ||
          !(s->exp_avg_sq = add_state(opt, p, "exp_avg_sq")))
        goto fail_last;
      if (c.amsgrad && !(s->max_exp_avg_sq = add_state(opt, p, "max_exp_avg_sq"))) goto fail_last;
    }
  }
  /* freezing is the only change to the model, made once nothing can fail */
  for (int i = 0; i < opt->n_slots; i++) {
    const pg_optim_slot *s = &opt->slots[i];
    if (s->group > 0 && opt->param_groups[s->group - 1].frozen)
      (void)pg_tensor_set_requires_grad(s->param->tensor, false); /* turning off cannot fail */
  }
  free(group_of);
  return PG_OK;
fail_last:
  st = pg_last_status();
fail:
  free(group_of);
  pg_optimizer_free(opt);
  return st;
}

void pg_optimizer_free(pg_optimizer *opt) {
  if (!opt) return;
  pg_params_free(&opt->state);
  free(opt->slots);
  for (int k = 0; k < opt->n_param_groups; k++) free((char *)opt->param_groups[k].pattern);
  free(opt->param_groups);
  memset(opt, 0, sizeof *opt);
}

void pg_optimizer_zero_grad(pg_optimizer *opt) {
  if (opt && opt->params) pg_params_zero_grad(opt->params);
}

/* Everything a step needs, checked before any parameter changes. */
static pg_status check_step(const pg_optimizer *opt) {
  if (!opt->params) return pg_fail(PG_ERR_STATE, "pg_optimizer_step: optimizer is not initialised");
  for (int k = 0; k <= opt->n_param_groups; k++) {
    pg_status st = check_group(opt, k);
    if (st) return st;
  }
  if (opt->params->count != opt->params_count)
    return pg_fail(PG_ERR_STATE,
                   "pg_optimizer_step: the parameter list has %d entries, %d at init "
                   "(register every parameter before creating the optimizer)",
                   opt->params->count, opt->params_count);
  for (int i = 0; i < opt->n_slots; i++) {
    const pg_optim_slot *s = &opt->slots[i];
    const pg_optim_config c = pg_optimizer_group_config(opt, s->group);
    const char *missing = NULL;
    if (c.kind == PG_OPTIM_SGD) {
      if (c.momentum != 0 && !s->momentum_buffer) missing = "momentum_buffer (momentum was 0 at init)";
    } else if (!s->exp_avg) {
      missing = "exp_avg (the optimizer was created as sgd)";
    } else if (c.amsgrad && !s->max_exp_avg_sq) {
      missing = "max_exp_avg_sq (amsgrad was off at init)";
    }
    if (missing)
      return pg_fail(PG_ERR_STATE, "pg_optimizer_step: parameter '%s' has no %s", s->param->name,
                     missing);
  }
  return PG_OK;
}

pg_status pg_optimizer_step(pg_optimizer *opt) {
  if (!opt) return pg_fail(PG_ERR_ARG, "pg_optimizer_step: opt is NULL");
  pg_status st = check_step(opt);
  if (st) return st;
  for (int i = 0; i < opt->n_slots; i++) {
    pg_optim_slot *s = &opt->slots[i];
    if (!pg_optim_param_active(s->param)) {
      s->skipped++; /* as PyTorch skips p.grad None: no decay, no state, no count */
      continue;
    }
    pg_tensor *t = s->param->tensor;
    const pg_optim_config cfg = pg_optimizer_group_config(opt, s->group);
    const double wd = pg_optim_decay_for(&cfg, s->param->kind);
    const int64_t done = opt->step - s->skipped; /* this parameter's own updates so far */
    if (cfg.kind == PG_OPTIM_SGD)
      pg_sgd_update(&cfg, wd, done, t->numel, t->data, t->grad,
                    s->momentum_buffer ? s->momentum_buffer->data : NULL);
    else
      pg_adam_update(&cfg, wd, done + 1, t->numel, t->data, t->grad, s->exp_avg->data,
                     s->exp_avg_sq->data, s->max_exp_avg_sq ? s->max_exp_avg_sq->data : NULL);
  }
  opt->step++;
  return PG_OK;
}
