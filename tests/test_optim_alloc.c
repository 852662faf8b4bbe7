/* The optimizer side of a training step allocates nothing: after the first
 * step, SGD / Adam / AdamW updates, gradient clipping, a schedule and the EMA
 * (update and swap) make no malloc/calloc/realloc call, on a model mixing
 * small parameters (one thread) and large ones (OpenMP), whose alternation is
 * what would make libgomp allocate thread teams. Counted by the allocation
 * counter linked into this program (cli/alloc_count.c, as test_alloc_free.c);
 * under AddressSanitizer, which must own every allocation, it reads 0. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/optim/clip.h"
#include "patchgrad/optim/ema.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/optim/update.h"

/* cli/alloc_count.c, linked into this program, counts every heap allocation
 * of the process (0 under AddressSanitizer, where it is compiled out). */
static long allocations(void) { return pg_alloc_count(); }

/* One optimizer-side step: gradients (a cheap deterministic pattern), clip
 * by norm and value, schedule, update, EMA update, EMA swap there and back. */
static void step(pg_params *ps, pg_optimizer *opt, const pg_schedule *sched, pg_ema *ema) {
  for (int i = 0; i < ps->count; i++) {
    pg_tensor *t = ps->items[i].tensor;
    if (!t->grad) continue;
    for (int64_t j = 0; j < t->numel; j++) t->grad[j] = (float)((j * 7 + opt->step) % 13) - 6.0f;
  }
  pg_clip_grad_norm(ps, 1.0, 2.0);
  pg_clip_grad_value(ps, 0.5);
  pg_schedule_apply(sched, opt);
  pg_optimizer_step(opt);
  pg_optimizer_zero_grad(opt);
  pg_ema_update(ema);
  pg_ema_swap(ema);
  pg_ema_swap(ema);
}

static void check_no_allocation_groups(pg_optim_config cfg, const pg_param_group *groups, int n_groups) {
  pg_params ps;
  pg_params_init(&ps);
  /* small, large, small, large, buffer: thread counts alternate every call */
  assert_non_null(pg_params_add(&ps, PG_PARAM_BIAS, PG_SHAPE(100), "a.bias"));
  assert_non_null(pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(256, 512), "a.weight"));
  assert_non_null(pg_params_add(&ps, PG_PARAM_NORM, PG_SHAPE(512), "norm.weight"));
  assert_non_null(pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(512, 200), "b.weight"));
  assert_non_null(pg_params_add(&ps, PG_PARAM_BUFFER, PG_SHAPE(64), "pos_embed"));
  assert_true(ps.items[1].tensor->numel >= PG_OPTIM_PARALLEL_MIN);
  pg_optimizer opt;
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, groups, n_groups), PG_OK);
  pg_schedule sched = pg_schedule_make(PG_SCHEDULE_COSINE, cfg.lr);
  sched.warmup_steps = 3;
  sched.total_steps = 20;
  pg_ema ema;
  assert_int_equal(pg_ema_init(&ema, &ps, 0.99), PG_OK);

  step(&ps, &opt, &sched, &ema);
  const long before = allocations();
  for (int s = 2; s <= 10; s++) step(&ps, &opt, &sched, &ema);
  const long after = allocations(); /* read before any assertion: cmocka allocates */
  assert_int_equal(opt.step, 10);
  assert_int_equal(after - before, 0);
  if (pg_alloc_count_active()) {
    /* the counter is live */
    pg_params probe;
    pg_params_init(&probe);
    pg_params_add(&probe, PG_PARAM_WEIGHT, PG_SHAPE(2), "w");
    assert_true(allocations() > after);
    pg_params_free(&probe);
  }
  pg_ema_free(&ema);
  pg_optimizer_free(&opt);
  pg_params_free(&ps);
}

static void check_no_allocation(pg_optim_config cfg) { check_no_allocation_groups(cfg, NULL, 0); }

static void test_sgd_steps_allocate_nothing(void **state) {
  (void)state;
  pg_optim_config cfg = pg_optim_sgd(0.1);
  cfg.momentum = 0.9;
  cfg.nesterov = true;
  cfg.weight_decay = 1e-4;
  check_no_allocation(cfg);
}

static void test_adam_steps_allocate_nothing(void **state) {
  (void)state;
  pg_optim_config cfg = pg_optim_adam(1e-3);
  cfg.amsgrad = true;
  check_no_allocation(cfg);
  cfg = pg_optim_adamw(1e-3);
  cfg.decay_weights_only = true;
  check_no_allocation(cfg);
}

/* Param groups (their own lr, decay, betas or momentum) and a frozen group:
 * still no allocation. */
static void test_groups_allocate_nothing(void **state) {
  (void)state;
  const pg_optim_config cfgs[2] = {pg_optim_sgd(0.1), pg_optim_adamw(1e-3)};
  for (int k = 0; k < 2; k++) {
    pg_param_group g[3] = {pg_param_group_make(&cfgs[k], "*.bias"),
                           pg_param_group_make(&cfgs[k], "b.*"),
                           pg_param_group_make(&cfgs[k], "norm.*")};
    g[0].weight_decay = 0;
    g[1].lr = 3 * cfgs[k].lr;
    g[1].momentum = 0.9;
    g[1].betas[0] = 0.8;
    g[2].frozen = true;
    check_no_allocation_groups(cfgs[k], g, 3);
  }
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sgd_steps_allocate_nothing),
      cmocka_unit_test(test_adam_steps_allocate_nothing),
      cmocka_unit_test(test_groups_allocate_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
