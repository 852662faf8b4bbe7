#include "patchgrad/optim/ema.h"

#include <string.h>

#include "patchgrad/optim/update.h"

/* The model's list must still be the one the EMA copied: same length, same
 * names and shapes in order. */
static pg_status check_model(const pg_ema *ema, const char *who) {
  if (!ema->model) return pg_fail(PG_ERR_STATE, "%s: the EMA is not initialised", who);
  if (ema->model->count != ema->shadow.count)
    return pg_fail(PG_ERR_STATE, "%s: the model has %d entries, %d when the EMA was created", who,
                   ema->model->count, ema->shadow.count);
  for (int i = 0; i < ema->shadow.count; i++)
    if (ema->model->items[i].tensor->numel != ema->shadow.items[i].tensor->numel)
      return pg_fail(PG_ERR_STATE, "%s: entry '%s' changed size since the EMA was created", who,
                     ema->model->items[i].name);
  return PG_OK;
}

typedef struct {
  float *ema, *model;
  float decay, rest;
} ema_args;

/* ema.mul_(decay).add_(param, alpha=1-decay): one FMA in PyTorch's kernel;
 * the double product is exact, so one rounding as there. */
static void update_range(void *user, int64_t lo, int64_t hi) {
  const ema_args *a = user;
  float *restrict e = a->ema;
  const float *restrict w = a->model;
  const float decay = a->decay, rest = a->rest;
  for (int64_t j = lo; j < hi; j++) e[j] = (float)((double)w[j] * rest + e[j] * decay);
}

static void swap_range(void *user, int64_t lo, int64_t hi) {
  const ema_args *a = user;
  float *restrict e = a->ema, *restrict w = a->model;
  for (int64_t j = lo; j < hi; j++) {
    float t = e[j];
    e[j] = w[j];
    w[j] = t;
  }
}

pg_status pg_ema_init(pg_ema *ema, pg_params *model, double decay) {
  if (!ema) return pg_fail(PG_ERR_ARG, "pg_ema_init: ema is NULL");
  memset(ema, 0, sizeof *ema);
  if (!model) return pg_fail(PG_ERR_ARG, "pg_ema_init: model is NULL");
  if (!(decay >= 0 && decay <= 1))
    return pg_fail(PG_ERR_ARG, "pg_ema_init: decay = %g must lie in [0, 1]", decay);
  ema->decay = decay;
  pg_params_init(&ema->shadow);
  for (int i = 0; i < model->count; i++) {
    const pg_param *p = &model->items[i];
    pg_tensor *copy = pg_params_add(&ema->shadow, PG_PARAM_BUFFER, p->tensor->ndim,
                                    p->tensor->shape, "%s", p->name);
    if (!copy) {
      pg_status st = pg_last_status();
      pg_ema_free(ema);
      return st;
    }
    memcpy(copy->data, p->tensor->data, (size_t)p->tensor->numel * sizeof(float));
  }
  ema->model = model;
  return PG_OK;
}

void pg_ema_free(pg_ema *ema) {
  if (!ema) return;
  pg_params_free(&ema->shadow);
  memset(ema, 0, sizeof *ema);
}

pg_status pg_ema_update(pg_ema *ema) {
  if (!ema) return pg_fail(PG_ERR_ARG, "pg_ema_update: ema is NULL");
  pg_status st = check_model(ema, "pg_ema_update");
  if (st) return st;
  if (ema->swapped)
    return pg_fail(PG_ERR_STATE, "pg_ema_update: the EMA weights are swapped into the model "
                   "(call pg_ema_swap again first)");
  const double decay = pg_ema_decay_at(ema, ema->updates);
  for (int i = 0; i < ema->shadow.count; i++) {
    const pg_param *p = &ema->model->items[i];
    if (!pg_param_trainable(p)) continue;
    if (!p->tensor->requires_grad) { /* frozen: the shadow is the value itself */
      memcpy(ema->shadow.items[i].tensor->data, p->tensor->data, (size_t)p->tensor->numel * sizeof(float));
      continue;
    }
    ema_args a = {.ema = ema->shadow.items[i].tensor->data, .model = p->tensor->data,
                  .decay = (float)decay, .rest = (float)(1.0 - decay)};
    pg_optim_parallel(p->tensor->numel, update_range, &a);
  }
  ema->updates++;
  return PG_OK;
}

double pg_ema_decay_at(const pg_ema *ema, int64_t n) {
  if (!ema->warmup) return ema->decay;
  const double ramp = (1.0 + (double)n) / (10.0 + (double)n);
  return ramp < ema->decay ? ramp : ema->decay;
}

pg_status pg_ema_swap(pg_ema *ema) {
  if (!ema) return pg_fail(PG_ERR_ARG, "pg_ema_swap: ema is NULL");
  pg_status st = check_model(ema, "pg_ema_swap");
  if (st) return st;
  for (int i = 0; i < ema->shadow.count; i++) {
    ema_args a = {.ema = ema->shadow.items[i].tensor->data, .model = ema->model->items[i].tensor->data};
    pg_optim_parallel(ema->shadow.items[i].tensor->numel, swap_range, &a);
  }
  ema->swapped = !ema->swapped;
  return PG_OK;
}
