/* Learning-rate schedules: the lr for the update that follows `step`
 * completed updates (pg_optimizer's `step`), a pure function of the step.
 * Apply one before each update: pg_schedule_apply(&sched, &opt); then
 * pg_optimizer_step(&opt).
 *
 * Warmup (kinds warmup, cosine, step): lr = base_lr * step / warmup_steps for
 * step < warmup_steps, so the first update has lr 0 - the convention of
 * Hugging Face's get_constant_schedule_with_warmup and
 * get_cosine_schedule_with_warmup, which a PyTorch twin can use as is.
 * After the warmup, with s = step - warmup_steps:
 *   constant  base_lr (no warmup allowed)
 *   warmup    base_lr
 *   cosine    min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * min(1, s / (total_steps - warmup_steps))))
 *             (stays at min_lr after total_steps; HF's min_lr is 0)
 *   step      base_lr * gamma ^ floor(s / step_size)   (torch StepLR) */
#ifndef PG_SCHEDULE_H
#define PG_SCHEDULE_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/optim/optimizer.h"

typedef enum {
  PG_SCHEDULE_CONSTANT,
  PG_SCHEDULE_WARMUP,
  PG_SCHEDULE_COSINE,
  PG_SCHEDULE_STEP,
} pg_schedule_kind;

typedef struct {
  pg_schedule_kind kind;
  double base_lr;
  int64_t warmup_steps; /* warmup, cosine, step */
  int64_t total_steps;  /* cosine: the step where lr reaches min_lr */
  double min_lr;        /* cosine */
  int64_t step_size;    /* step: updates between decays */
  double gamma;         /* step: factor per decay */
} pg_schedule;

/* A schedule of that kind with base_lr, everything else 0 except gamma 0.1
 * (torch StepLR's default); set the fields the kind uses. */
PG_API pg_schedule pg_schedule_make(pg_schedule_kind kind, double base_lr);

/* The fields must fit the kind: base_lr >= 0, warmup_steps >= 0 (0 for
 * constant), cosine total_steps > warmup_steps and 0 <= min_lr <= base_lr,
 * step step_size > 0 and gamma > 0. The message names the field and value. */
PG_API pg_status pg_schedule_check(const pg_schedule *s);

/* The lr for the update after `step` updates (step < 0 counts as 0). */
PG_API double pg_schedule_lr(const pg_schedule *s, int64_t step);

/* opt->config.lr = pg_schedule_lr(s, opt->step). With param groups, every
 * group's lr follows by the same factor config.lr / opt->initial_lr (see
 * pg_optimizer_group_lr), as torch's LambdaLR scales every group's
 * initial_lr by one lambda; so base_lr should be the lr the optimizer was
 * created with. Setting config.lr directly has the same effect. */
PG_API void pg_schedule_apply(const pg_schedule *s, pg_optimizer *opt);

/* "constant", "warmup", "cosine", "step" (for a --schedule flag). An unknown
 * name is an error listing the known ones. */
PG_API pg_status pg_schedule_parse(const char *name, pg_schedule_kind *kind);
PG_API const char *pg_schedule_name(pg_schedule_kind kind);

#endif
