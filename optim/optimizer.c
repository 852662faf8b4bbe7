#include "patchgrad/optim/optimizer.h"

#include <math.h>
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

/* A zeroed state buffer shaped like p, named "<p's name>.<what>". */
static pg_tensor *add_state(pg_optimizer *opt, const pg_param *p, const char *what) {
  const pg_tensor *t = p->tensor;
  return pg_params_add(&opt->state, PG_PARAM_BUFFER, t->ndim, t->shape, "%s.%s", p->name, what);
}

pg_status pg_optimizer_init(pg_optimizer *opt, pg_params *params, const pg_optim_config *cfg) {
  if (!opt) return pg_fail(PG_ERR_ARG, "pg_optimizer_init: opt is NULL");
  memset(opt, 0, sizeof *opt);
  if (!params) return pg_fail(PG_ERR_ARG, "pg_optimizer_init: params is NULL");
  pg_status st = pg_optim_config_check(cfg);
  if (st) return st;
  opt->config = *cfg;
  opt->params = params;
  opt->params_count = params->count;
  pg_params_init(&opt->state);
  opt->slots = calloc((size_t)(params->count ? params->count : 1), sizeof *opt->slots);
  if (!opt->slots) return pg_fail(PG_ERR_MEMORY, "pg_optimizer_init: out of memory");
  for (int i = 0; i < params->count; i++) {
    const pg_param *p = &params->items[i];
    if (!pg_param_trainable(p)) continue;
    if (!p->tensor->grad) {
      pg_fail(PG_ERR_ARG, "pg_optimizer_init: parameter '%s' has no gradient buffer", p->name);
      goto fail;
    }
    pg_optim_slot *s = &opt->slots[opt->n_slots++];
    s->param = p;
    if (cfg->kind == PG_OPTIM_SGD) {
      if (cfg->momentum != 0 && !(s->momentum_buffer = add_state(opt, p, "momentum_buffer")))
        goto fail;
    } else {
      if (!(s->exp_avg = add_state(opt, p, "exp_avg")) ||
          !(s->exp_avg_sq = add_state(opt, p, "exp_avg_sq")))
        goto fail;
      if (cfg->amsgrad && !(s->max_exp_avg_sq = add_state(opt, p, "max_exp_avg_sq"))) goto fail;
    }
  }
  return PG_OK;
fail:
  st = pg_last_status();
  pg_optimizer_free(opt);
  return st;
}

void pg_optimizer_free(pg_optimizer *opt) {
  if (!opt) return;
  pg_params_free(&opt->state);
  free(opt->slots);
  memset(opt, 0, sizeof *opt);
}

void pg_optimizer_zero_grad(pg_optimizer *opt) {
  if (opt && opt->params) pg_params_zero_grad(opt->params);
}

/* Everything a step needs, checked before any parameter changes. */
static pg_status check_step(const pg_optimizer *opt) {
  if (!opt->params) return pg_fail(PG_ERR_STATE, "pg_optimizer_step: optimizer is not initialised");
  pg_status st = pg_optim_config_check(&opt->config);
  if (st) return st;
  if (opt->params->count != opt->params_count)
    return pg_fail(PG_ERR_STATE,
                   "pg_optimizer_step: the parameter list has %d entries, %d at init "
                   "(register every parameter before creating the optimizer)",
                   opt->params->count, opt->params_count);
  for (int i = 0; i < opt->n_slots; i++) {
    const pg_optim_slot *s = &opt->slots[i];
    const char *missing = NULL;
    if (opt->config.kind == PG_OPTIM_SGD) {
      if (opt->config.momentum != 0 && !s->momentum_buffer) missing = "momentum_buffer (momentum was 0 at init)";
    } else if (!s->exp_avg) {
      missing = "exp_avg (the optimizer was created as sgd)";
    } else if (opt->config.amsgrad && !s->max_exp_avg_sq) {
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
  const pg_optim_config *cfg = &opt->config;
  for (int i = 0; i < opt->n_slots; i++) {
    const pg_optim_slot *s = &opt->slots[i];
    pg_tensor *t = s->param->tensor;
    double wd = pg_optim_decay_for(cfg, s->param->kind);
    if (cfg->kind == PG_OPTIM_SGD)
      pg_sgd_update(cfg, wd, opt->step, t->numel, t->data, t->grad,
                    s->momentum_buffer ? s->momentum_buffer->data : NULL);
    else
      pg_adam_update(cfg, wd, opt->step + 1, t->numel, t->data, t->grad, s->exp_avg->data,
                     s->exp_avg_sq->data, s->max_exp_avg_sq ? s->max_exp_avg_sq->data : NULL);
  }
  opt->step++;
  return PG_OK;
}
