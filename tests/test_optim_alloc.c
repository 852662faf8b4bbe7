/* The optimizer side of a training step allocates nothing: after the first
 * step, SGD / Adam / AdamW updates, gradient clipping, a schedule and the EMA
 * (update and swap) make no malloc/calloc/realloc call, on a model mixing
 * small parameters (one thread) and large ones (OpenMP), whose alternation is
 * what would make libgomp allocate thread teams. Counted by a malloc
 * interposer compiled into this program (as in test_alloc_free.c); under
 * AddressSanitizer, which must own every allocation, the count is skipped. */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "clip.h"
#include "ema.h"
#include "optimizer.h"
#include "schedule.h"
#include "update.h"

#if defined(__SANITIZE_ADDRESS__)
#define COUNT_MALLOC 0
static long allocations(void) { return 0; }
#else
#define COUNT_MALLOC 1
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *p);

static long alloc_calls; /* atomic: OpenMP threads may allocate too */
static void counted(void) { __atomic_add_fetch(&alloc_calls, 1, __ATOMIC_RELAXED); }
void *malloc(size_t size) { return counted(), __libc_malloc(size); }
void *calloc(size_t n, size_t size) { return counted(), __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { return counted(), __libc_realloc(p, size); }
void free(void *p) { __libc_free(p); }
void *aligned_alloc(size_t alignment, size_t size) { return counted(), __libc_memalign(alignment, size); }
void *memalign(size_t alignment, size_t size) { return counted(), __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
  counted();
  void *p = __libc_memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
static long allocations(void) { return __atomic_load_n(&alloc_calls, __ATOMIC_RELAXED); }
#endif

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

static void check_no_allocation(pg_optim_config cfg) {
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
  assert_int_equal(pg_optimizer_init(&opt, &ps, &cfg), PG_OK);
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
#if COUNT_MALLOC
  /* the interposer is live */
  pg_params probe;
  pg_params_init(&probe);
  pg_params_add(&probe, PG_PARAM_WEIGHT, PG_SHAPE(2), "w");
  assert_true(allocations() > after);
  pg_params_free(&probe);
#endif
  pg_ema_free(&ema);
  pg_optimizer_free(&opt);
  pg_params_free(&ps);
}

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

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sgd_steps_allocate_nothing),
      cmocka_unit_test(test_adam_steps_allocate_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
