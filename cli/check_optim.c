/* `patchgrad check` handlers of the optimizer ops (casefile.md):
 *   sgd:         lr, momentum, dampening, nesterov, weight_decay, steps
 *   adam, adamw: lr, beta1, beta2, eps, weight_decay, steps (and amsgrad)
 * Inputs `param` and `grads [steps, *param.shape]`; `out` is the parameter
 * after `steps` updates, the i-th with gradient grads[i]. Absent settings take
 * torch.optim's defaults (SGD has no default lr: it must be given). */
#include <math.h>
#include <string.h>

#include "check_ops.h"
#include "patchgrad/optim/optimizer.h"

static void read_config(pg_case *c, pg_optim_kind kind, pg_optim_config *cfg) {
  *cfg = kind == PG_OPTIM_SGD ? pg_optim_sgd(NAN)
         : kind == PG_OPTIM_ADAM ? pg_optim_adam(1e-3) : pg_optim_adamw(1e-3);
  cfg->lr = pg_case_attr_double(c, "lr", cfg->lr);
  cfg->weight_decay = pg_case_attr_double(c, "weight_decay", cfg->weight_decay);
  if (kind == PG_OPTIM_SGD) {
    cfg->momentum = pg_case_attr_double(c, "momentum", cfg->momentum);
    cfg->dampening = pg_case_attr_double(c, "dampening", cfg->dampening);
    cfg->nesterov = pg_case_attr_int(c, "nesterov", 0) != 0;
  } else {
    cfg->beta1 = pg_case_attr_double(c, "beta1", cfg->beta1);
    cfg->beta2 = pg_case_attr_double(c, "beta2", cfg->beta2);
    cfg->eps = pg_case_attr_double(c, "eps", cfg->eps);
    cfg->amsgrad = pg_case_attr_int(c, "amsgrad", 0) != 0;
  }
  if (!c->error && isnan(cfg->lr)) pg_case_fail(c, "missing attribute 'lr' (sgd has no default)");
}

/* grads must be [steps_available, *param.shape]. */
static bool grads_fit(pg_case *c, const pg_tensor *param, const pg_tensor *grads) {
  bool fit = grads->ndim == param->ndim + 1;
  for (int i = 0; fit && i < param->ndim; i++) fit = grads->shape[i + 1] == param->shape[i];
  if (!fit)
    pg_case_fail(c, "array 'grads' has shape %s, expected [steps] + the shape of 'param' %s",
                 pg_shape_of(grads), pg_shape_of(param));
  return fit;
}

static void check_optimizer(pg_case *c, pg_optim_kind kind) {
  pg_optim_config cfg;
  read_config(c, kind, &cfg);
  pg_tensor *param = pg_case_array(c, "param");
  pg_tensor *grads = pg_case_array(c, "grads");
  if (c->error || !grads_fit(c, param, grads)) return;
  int64_t steps = pg_case_attr_int(c, "steps", grads->shape[0]);
  if (c->error) return;
  if (steps < 0 || steps > grads->shape[0]) {
    pg_case_fail(c, "attribute 'steps' = %lld, but 'grads' holds %lld steps", (long long)steps,
                 (long long)grads->shape[0]);
    return;
  }
  pg_params ps;
  pg_params_init(&ps);
  pg_optimizer opt = {0};
  pg_tensor *p = pg_params_add(&ps, PG_PARAM_WEIGHT, param->ndim, param->shape, "param");
  if (!p || pg_optimizer_init(&opt, &ps, &cfg)) {
    pg_case_fail(c, "%s", pg_last_error());
    goto done;
  }
  const int64_t n = p->numel;
  memcpy(p->data, param->data, (size_t)n * sizeof(float));
  for (int64_t s = 0; s < steps; s++) {
    memcpy(p->grad, grads->data + s * n, (size_t)n * sizeof(float));
    if (pg_optimizer_step(&opt)) {
      pg_case_fail(c, "step %lld: %s", (long long)s, pg_last_error());
      goto done;
    }
  }
  pg_case_compare(c, "out", p);
done:
  pg_optimizer_free(&opt);
  pg_params_free(&ps);
}

void pg_check_sgd(pg_case *c) { check_optimizer(c, PG_OPTIM_SGD); }
void pg_check_adam(pg_case *c) { check_optimizer(c, PG_OPTIM_ADAM); }
void pg_check_adamw(pg_case *c) { check_optimizer(c, PG_OPTIM_ADAMW); }
