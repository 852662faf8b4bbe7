#include "patchgrad/optim/schedule.h"

#include <math.h>
#include <string.h>

static const char *const names[] = {"constant", "warmup", "cosine", "step"};
#define N_KINDS 4

pg_schedule pg_schedule_make(pg_schedule_kind kind, double base_lr) {
  return (pg_schedule){.kind = kind, .base_lr = base_lr, .gamma = 0.1};
}

const char *pg_schedule_name(pg_schedule_kind kind) {
  return (unsigned)kind < N_KINDS ? names[kind] : "unknown";
}

pg_status pg_schedule_parse(const char *name, pg_schedule_kind *kind) {
  for (int k = 0; k < N_KINDS; k++)
    if (name && !strcmp(name, names[k])) {
      *kind = (pg_schedule_kind)k;
      return PG_OK;
    }
  return pg_fail(PG_ERR_ARG, "schedule: unknown name '%s' (expected constant, warmup, cosine or step)",
                 name ? name : "(null)");
}

pg_status pg_schedule_check(const pg_schedule *s) {
  if (!s) return pg_fail(PG_ERR_ARG, "schedule: NULL");
  if ((unsigned)s->kind >= N_KINDS)
    return pg_fail(PG_ERR_ARG, "schedule: kind = %d is not a schedule", (int)s->kind);
  const char *name = names[s->kind];
  if (!(s->base_lr >= 0) || isinf(s->base_lr))
    return pg_fail(PG_ERR_ARG, "schedule %s: base_lr = %g must be finite and >= 0", name, s->base_lr);
  if (s->warmup_steps < 0)
    return pg_fail(PG_ERR_ARG, "schedule %s: warmup_steps = %lld must be >= 0", name,
                   (long long)s->warmup_steps);
  switch (s->kind) {
  case PG_SCHEDULE_CONSTANT:
    if (s->warmup_steps)
      return pg_fail(PG_ERR_ARG, "schedule constant: warmup_steps = %lld, but constant has no "
                     "warmup (use the 'warmup' schedule)", (long long)s->warmup_steps);
    break;
  case PG_SCHEDULE_WARMUP:
    break;
  case PG_SCHEDULE_COSINE:
    if (s->total_steps <= s->warmup_steps)
      return pg_fail(PG_ERR_ARG, "schedule cosine: total_steps = %lld must exceed warmup_steps = %lld",
                     (long long)s->total_steps, (long long)s->warmup_steps);
    if (!(s->min_lr >= 0 && s->min_lr <= s->base_lr))
      return pg_fail(PG_ERR_ARG, "schedule cosine: min_lr = %g must lie in [0, base_lr = %g]",
                     s->min_lr, s->base_lr);
    break;
  case PG_SCHEDULE_STEP:
    if (s->step_size <= 0)
      return pg_fail(PG_ERR_ARG, "schedule step: step_size = %lld must be > 0",
                     (long long)s->step_size);
    if (!(s->gamma > 0) || isinf(s->gamma))
      return pg_fail(PG_ERR_ARG, "schedule step: gamma = %g must be finite and > 0", s->gamma);
    break;
  }
  return PG_OK;
}

double pg_schedule_lr(const pg_schedule *s, int64_t step) {
  if (step < 0) step = 0;
  if (s->kind == PG_SCHEDULE_CONSTANT) return s->base_lr;
  if (step < s->warmup_steps) return s->base_lr * (double)step / (double)s->warmup_steps;
  const int64_t since = step - s->warmup_steps;
  switch (s->kind) {
  case PG_SCHEDULE_COSINE: {
    const int64_t span = s->total_steps - s->warmup_steps;
    double progress = span > 0 ? (double)since / (double)span : 1.0;
    if (progress > 1.0) progress = 1.0;
    const double pi = 3.14159265358979323846;
    return s->min_lr + (s->base_lr - s->min_lr) * 0.5 * (1.0 + cos(pi * progress));
  }
  case PG_SCHEDULE_STEP:
    return s->step_size > 0 ? s->base_lr * pow(s->gamma, (double)(since / s->step_size)) : s->base_lr;
  default:
    return s->base_lr;
  }
}

void pg_schedule_apply(const pg_schedule *s, pg_optimizer *opt) {
  opt->config.lr = pg_schedule_lr(s, opt->step);
}
