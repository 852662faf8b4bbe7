/* Gradient clipping, learning-rate schedules and the EMA, against values
 * computed by hand (the arithmetic is in the comments). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/optim/clip.h"
#include "patchgrad/optim/ema.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/optim/summary.h"

/* ---- Clipping ---- */

/* weight [3, 4] with gradient (3, 4, 0, ...): norm 5; bias [4] with gradient
 * (12, 0, 0, 0): norm 12; a buffer, which has no gradient. Total 2-norm
 * sqrt(25 + 144) = 13, 1-norm 3 + 4 + 12 = 19, inf-norm 12. */
static void make_grads(pg_params *ps) {
  pg_params_init(ps);
  pg_tensor *w = pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(3, 4), "fc.weight");
  pg_tensor *b = pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(4), "fc.bias");
  pg_tensor *buf = pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(2), "pos_embed");
  w->grad[0] = 3;
  w->grad[1] = 4;
  b->grad[0] = 12;
  buf->data[0] = 1000; /* a buffer's value never counts */
}

static void test_clip_grad_norm(void **state) {
  (void)state;
  pg_params ps;
  make_grads(&ps);
  pg_tensor *w = ps.items[0].tensor, *b = ps.items[1].tensor;

  /* under the limit: the norm comes back, gradients untouched (coef clamps to 1) */
  assert_true(pg_clip_grad_norm(&ps, 100.0, 2.0) == 13.0);
  assert_true(w->grad[0] == 3 && w->grad[1] == 4 && b->grad[0] == 12);

  /* over: every gradient times 6.5 / (13 + 1e-6) = 0.49999996... */
  assert_true(pg_clip_grad_norm(&ps, 6.5, 2.0) == 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  float want_w[] = {(float)(3 * coef), (float)(4 * coef)}, want_b = (float)(12 * coef);
  assert_close(w->grad, want_w, 2, 0, 1e-7);
  assert_close(b->grad, &want_b, 1, 0, 1e-7);
  assert_true(w->grad[0] < 1.5f); /* the 1e-6 keeps the result just under max_norm */
  /* the clipped gradients now have norm max_norm (up to the 1e-6) */
  assert_close(&(float){(float)pg_clip_grad_norm(&ps, 100.0, 2.0)}, &(float){6.5f}, 1, 0, 1e-6);

  pg_params_free(&ps);
  make_grads(&ps);
  w = ps.items[0].tensor;
  b = ps.items[1].tensor;
  /* inf-norm: max |g| = 12; coef = 6 / (12 + 1e-6) */
  assert_true(pg_clip_grad_norm(&ps, 6.0, INFINITY) == 12.0);
  float want_inf = (float)(12 * (6.0 / (12.0 + 1e-6)));
  assert_close(b->grad, &want_inf, 1, 0, 1e-7);
  pg_params_free(&ps);
  make_grads(&ps);
  /* 1-norm: 3 + 4 + 12 = 19 */
  assert_close(&(float){(float)pg_clip_grad_norm(&ps, 1e9, 1.0)}, &(float){19.0f}, 1, 0, 1e-7);
  /* 3-norm: (27 + 64 + 1728)^(1/3) = 1819^(1/3) */
  assert_close(&(float){(float)pg_clip_grad_norm(&ps, 1e9, 3.0)}, &(float){(float)cbrt(1819.0)}, 1, 0, 1e-6);

  /* a NaN gradient gives a NaN norm (the caller skips the step) */
  ps.items[1].tensor->grad[3] = NAN;
  assert_true(isnan(pg_clip_grad_norm(&ps, 1.0, 2.0)));

  /* bad arguments: -1 and a message */
  assert_true(pg_clip_grad_norm(&ps, -1.0, 2.0) == -1.0);
  assert_error_contains("max_norm = -1 must be >= 0");
  assert_true(pg_clip_grad_norm(&ps, 1.0, 0.0) == -1.0);
  assert_error_contains("norm_type = 0 must be > 0");
  assert_true(pg_clip_grad_norm(NULL, 1.0, 2.0) == -1.0);
  assert_error_contains("params is NULL");

  /* no trainable parameter: norm 0, as torch returns tensor(0.) */
  pg_params empty;
  pg_params_init(&empty);
  assert_true(pg_clip_grad_norm(&empty, 1.0, 2.0) == 0.0);
  pg_params_free(&empty);
  pg_params_free(&ps);
}

static void test_clip_grad_value(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_tensor *w = pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(5), "w");
  float g[] = {-3.0f, 0.5f, 2.0f, -0.25f, NAN};
  memcpy(w->grad, g, sizeof g);
  assert_int_equal(pg_clip_grad_value(&ps, 1.0), PG_OK);
  float want[] = {-1.0f, 0.5f, 1.0f, -0.25f};
  assert_close(w->grad, want, 4, 0, 0);
  assert_true(isnan(w->grad[4])); /* clamp keeps NaN, as torch.clamp_ does */
  assert_int_equal(pg_clip_grad_value(&ps, -0.5), PG_ERR_ARG);
  assert_error_contains("clip_value = -0.5 must be >= 0");
  pg_params_free(&ps);
}

/* A frozen tensor (requires_grad off) neither enters the norm nor is
 * scaled or clamped, whatever its gradient buffer holds. */
static void test_clip_skips_frozen(void **state) {
  (void)state;
  pg_params ps;
  make_grads(&ps);
  pg_tensor *w = ps.items[0].tensor, *b = ps.items[1].tensor;
  assert_int_equal(pg_tensor_set_requires_grad(b, false), PG_OK);
  /* the weight's norm alone: 5; coef 2.5 / (5 + 1e-6) */
  assert_true(pg_clip_grad_norm(&ps, 2.5, 2.0) == 5.0);
  float want_w = (float)(3 * (2.5 / (5.0 + 1e-6)));
  assert_close(w->grad, &want_w, 1, 0, 1e-7);
  assert_true(b->grad[0] == 12);
  const float max_w = w->grad[1]; /* 4 * coef, the largest */
  assert_true(pg_clip_grad_norm(&ps, 1e9, INFINITY) == max_w);
  assert_int_equal(pg_clip_grad_value(&ps, 1.0), PG_OK);
  assert_true(w->grad[0] == 1 && b->grad[0] == 12);
  /* nothing trainable left: norm 0 */
  assert_int_equal(pg_tensor_set_requires_grad(w, false), PG_OK);
  assert_true(pg_clip_grad_norm(&ps, 1.0, 2.0) == 0.0);
  pg_params_free(&ps);
}

/* ---- Schedules ---- */

static void expect_lrs(const pg_schedule *s, int n, const int64_t *steps, const double *want) {
  assert_int_equal(pg_schedule_check(s), PG_OK);
  for (int i = 0; i < n; i++) {
    double got = pg_schedule_lr(s, steps[i]);
    if (!(fabs(got - want[i]) <= 1e-12))
      fail_msg("schedule %s, step %lld: lr %.15g, want %.15g", pg_schedule_name(s->kind),
               (long long)steps[i], got, want[i]);
  }
}

static void test_schedules(void **state) {
  (void)state;
  pg_schedule s = pg_schedule_make(PG_SCHEDULE_CONSTANT, 0.1);
  expect_lrs(&s, 3, (int64_t[]){0, 1, 1000000}, (double[]){0.1, 0.1, 0.1});

  /* warmup over 4 updates: 0.1 * step / 4, then 0.1 */
  s = pg_schedule_make(PG_SCHEDULE_WARMUP, 0.1);
  s.warmup_steps = 4;
  expect_lrs(&s, 6, (int64_t[]){0, 1, 2, 3, 4, 99}, (double[]){0, 0.025, 0.05, 0.075, 0.1, 0.1});

  /* cosine, base 1, min 0.1, warmup 2, total 10: after warmup
   * 0.1 + 0.9 * 0.5 * (1 + cos(pi * (step - 2) / 8)):
   * step 2 -> 1; 4 -> 0.1 + 0.45 * (1 + 1/sqrt 2) = 0.868198051533946;
   * 6 -> 0.55; 8 -> 0.1 + 0.45 * (1 - 1/sqrt 2) = 0.231801948466054; 10 and on -> 0.1 */
  s = pg_schedule_make(PG_SCHEDULE_COSINE, 1.0);
  s.warmup_steps = 2;
  s.total_steps = 10;
  s.min_lr = 0.1;
  expect_lrs(&s, 9, (int64_t[]){0, 1, 2, 4, 6, 8, 10, 11, 500},
             (double[]){0, 0.5, 1.0, 0.868198051533946, 0.55, 0.231801948466054, 0.1, 0.1, 0.1});
  /* Hugging Face's get_cosine_schedule_with_warmup(warmup 0, total 4) at step 1: 0.5 (1 + cos(pi/4)) */
  s = pg_schedule_make(PG_SCHEDULE_COSINE, 2.0);
  s.total_steps = 4;
  expect_lrs(&s, 3, (int64_t[]){0, 1, 2}, (double[]){2.0, 1.7071067811865475, 1.0});

  /* step decay: 0.1 * 0.5 ^ floor(step / 3) (torch StepLR) */
  s = pg_schedule_make(PG_SCHEDULE_STEP, 0.1);
  assert_true(s.gamma == 0.1);
  s.step_size = 3;
  s.gamma = 0.5;
  expect_lrs(&s, 7, (int64_t[]){0, 2, 3, 5, 6, 9, -4}, (double[]){0.1, 0.1, 0.05, 0.05, 0.025, 0.0125, 0.1});
  s.warmup_steps = 2; /* then decays count from the end of the warmup */
  expect_lrs(&s, 5, (int64_t[]){0, 1, 2, 4, 5}, (double[]){0, 0.05, 0.1, 0.1, 0.05});

  /* applied before a step: the lr for opt.step */
  pg_optimizer opt = {0};
  opt.step = 5;
  pg_schedule_apply(&s, &opt);
  assert_true(opt.config.lr == 0.05);

  /* names */
  const char *names[] = {"constant", "warmup", "cosine", "step"};
  for (int k = 0; k < 4; k++) {
    pg_schedule_kind kind;
    assert_int_equal(pg_schedule_parse(names[k], &kind), PG_OK);
    assert_int_equal(kind, k);
    assert_string_equal(pg_schedule_name(kind), names[k]);
  }
  pg_schedule_kind kind;
  assert_int_equal(pg_schedule_parse("linear", &kind), PG_ERR_ARG);
  assert_error_contains("unknown name 'linear' (expected constant, warmup, cosine or step)");

  /* settings that do not fit the kind */
  s = pg_schedule_make(PG_SCHEDULE_CONSTANT, 0.1);
  s.warmup_steps = 10;
  assert_int_equal(pg_schedule_check(&s), PG_ERR_ARG);
  assert_error_contains("constant has no warmup");
  s = pg_schedule_make(PG_SCHEDULE_COSINE, 0.1);
  s.warmup_steps = 10;
  s.total_steps = 10;
  assert_int_equal(pg_schedule_check(&s), PG_ERR_ARG);
  assert_error_contains("total_steps = 10 must exceed warmup_steps = 10");
  s.total_steps = 20;
  s.min_lr = 0.2;
  assert_int_equal(pg_schedule_check(&s), PG_ERR_ARG);
  assert_error_contains("min_lr = 0.2");
  s = pg_schedule_make(PG_SCHEDULE_STEP, 0.1);
  assert_int_equal(pg_schedule_check(&s), PG_ERR_ARG);
  assert_error_contains("step_size = 0 must be > 0");
  s = pg_schedule_make(PG_SCHEDULE_WARMUP, -1);
  assert_int_equal(pg_schedule_check(&s), PG_ERR_ARG);
  assert_error_contains("base_lr = -1");
}

/* ---- EMA ---- */

static void make_model(pg_params *ps) {
  pg_params_init(ps);
  pg_rng rng;
  pg_rng_seed(&rng, 11);
  pg_fill_normal(pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(3, 5), "blocks.0.weight"), 0, 1, &rng);
  pg_fill_normal(pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(4), "pos_embed"), 0, 1, &rng);
  pg_fill_normal(pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(5), "blocks.0.bias"), 0, 1, &rng);
}

static void test_ema(void **state) {
  (void)state;
  pg_params model;
  make_model(&model);
  pg_ema ema;
  assert_int_equal(pg_ema_init(&ema, &model, 0.9), PG_OK);
  /* the same names, in order, as buffers holding a copy */
  assert_int_equal(ema.shadow.count, model.count);
  for (int i = 0; i < model.count; i++) {
    assert_string_equal(ema.shadow.items[i].name, model.items[i].name);
    assert_int_equal(ema.shadow.items[i].kind, PG_PARAM_BUFFER);
    assert_null(ema.shadow.items[i].tensor->grad);
    assert_true(pg_same_shape(ema.shadow.items[i].tensor, model.items[i].tensor));
    assert_memory_equal(ema.shadow.items[i].tensor->data, model.items[i].tensor->data,
                        (size_t)model.items[i].tensor->numel * 4);
  }

  /* three "training steps" that move the parameters; the expected EMA is the
   * recurrence e = 0.9 e + 0.1 p computed in double */
  pg_tensor *w = model.items[0].tensor, *pos = model.items[1].tensor;
  double want[15];
  for (int j = 0; j < 15; j++) want[j] = w->data[j];
  float pos0 = pos->data[0];
  pg_rng rng;
  pg_rng_seed(&rng, 12);
  for (int s = 0; s < 3; s++) {
    for (int j = 0; j < 15; j++) {
      w->data[j] += pg_rng_normal(&rng);
      want[j] = 0.9 * want[j] + 0.1 * w->data[j];
    }
    pos->data[0] = 99.0f; /* buffers are not averaged */
    assert_int_equal(pg_ema_update(&ema), PG_OK);
  }
  for (int j = 0; j < 15; j++) {
    float wj = (float)want[j];
    assert_close(&ema.shadow.items[0].tensor->data[j], &wj, 1, 1e-6, 1e-6);
  }
  assert_true(ema.shadow.items[1].tensor->data[0] == pos0);

  /* swap in, evaluate, swap back: values exchanged exactly */
  float trained[15], averaged[15];
  memcpy(trained, w->data, sizeof trained);
  memcpy(averaged, ema.shadow.items[0].tensor->data, sizeof averaged);
  assert_int_equal(pg_ema_swap(&ema), PG_OK);
  assert_true(ema.swapped);
  assert_memory_equal(w->data, averaged, sizeof averaged);
  assert_memory_equal(ema.shadow.items[0].tensor->data, trained, sizeof trained);
  assert_int_equal(pg_ema_update(&ema), PG_ERR_STATE);
  assert_error_contains("swapped into the model");
  assert_int_equal(pg_ema_swap(&ema), PG_OK);
  assert_false(ema.swapped);
  assert_memory_equal(w->data, trained, sizeof trained);
  assert_memory_equal(ema.shadow.items[0].tensor->data, averaged, sizeof averaged);

  /* DiT's decay: one update moves the average by 1e-4 of the difference */
  pg_ema dit;
  assert_int_equal(pg_ema_init(&dit, &model, 0.9999), PG_OK);
  float e0 = dit.shadow.items[2].tensor->data[0];
  model.items[2].tensor->data[0] = e0 + 1.0f;
  assert_int_equal(pg_ema_update(&dit), PG_OK);
  float want_dit = e0 + 1e-4f;
  assert_close(&dit.shadow.items[2].tensor->data[0], &want_dit, 1, 1e-6, 0);
  pg_ema_free(&dit);

  /* a model that changed since init, a bad decay */
  assert_non_null(pg_params_add(&model, PG_PARAM_WEIGHT, PG_SHAPE(2), "late.weight"));
  assert_int_equal(pg_ema_update(&ema), PG_ERR_STATE);
  assert_error_contains("the model has 4 entries, 3 when the EMA was created");
  assert_int_equal(pg_ema_swap(&ema), PG_ERR_STATE);
  pg_ema_free(&ema);
  assert_int_equal(pg_ema_init(&ema, &model, 1.5), PG_ERR_ARG);
  assert_error_contains("decay = 1.5 must lie in [0, 1]");
  assert_int_equal(pg_ema_init(&ema, NULL, 0.5), PG_ERR_ARG);
  pg_params_free(&model);
}

/* Warm-up: update n uses min(decay, (1 + n) / (10 + n)); the recurrence in
 * double with those decays, and the numbers of optim/ema.h. */
static void test_ema_warmup(void **state) {
  (void)state;
  pg_params model;
  make_model(&model);
  pg_ema ema;
  assert_int_equal(pg_ema_init(&ema, &model, 0.999), PG_OK);
  assert_true(pg_ema_decay_at(&ema, 0) == 0.999); /* off: the decay itself */
  ema.warmup = true;
  assert_true(fabs(pg_ema_decay_at(&ema, 0) - 0.1) < 1e-15);
  assert_true(fabs(pg_ema_decay_at(&ema, 8) - 0.5) < 1e-15);
  assert_true(fabs(pg_ema_decay_at(&ema, 80) - 0.9) < 1e-15);
  assert_true(fabs(pg_ema_decay_at(&ema, 890) - 0.99) < 1e-15);
  assert_true(pg_ema_decay_at(&ema, 100000) == 0.999); /* capped by the decay */
  pg_tensor *w = model.items[0].tensor;
  double want[15];
  for (int j = 0; j < 15; j++) want[j] = w->data[j];
  pg_rng rng;
  pg_rng_seed(&rng, 13);
  for (int n = 0; n < 20; n++) {
    const double d = fmin(0.999, (1.0 + n) / (10.0 + n));
    for (int j = 0; j < 15; j++) {
      w->data[j] += pg_rng_normal(&rng);
      want[j] = d * want[j] + (1 - d) * w->data[j];
    }
    assert_int_equal(pg_ema_update(&ema), PG_OK);
  }
  assert_int_equal(ema.updates, 20);
  for (int j = 0; j < 15; j++) {
    float wj = (float)want[j];
    assert_close(&ema.shadow.items[0].tensor->data[j], &wj, 1, 1e-5, 1e-5);
  }
  /* after 20 updates the average is mostly the recent weights: the first
   * weights keep prod_n d_n = 0.1 * 0.18 * ... of their share, under 1% */
  double kept = 1;
  for (int n = 0; n < 20; n++) kept *= fmin(0.999, (1.0 + n) / (10.0 + n));
  assert_true(kept < 0.01);
  pg_ema_free(&ema);
  pg_params_free(&model);
}

/* The shadow of a frozen parameter is its value, bit for bit, from the
 * first update after freezing; the others keep averaging. */
static void test_ema_follows_frozen(void **state) {
  (void)state;
  pg_params model;
  make_model(&model);
  pg_tensor *w = model.items[0].tensor, *b = model.items[2].tensor;
  for (int64_t j = 0; j < w->numel; j++) w->data[j] = 0.0913f + 0.37f * (float)j; /* values where */
  pg_ema ema;                                    /* 0.9999 x + 1e-4 x drifts in float32 */
  assert_int_equal(pg_ema_init(&ema, &model, 0.9999), PG_OK);
  assert_int_equal(pg_tensor_set_requires_grad(w, false), PG_OK); /* frozen from the start */
  bool formula_drifts = false;
  for (int64_t j = 0; j < w->numel; j++) {
    float x = w->data[j], once = (float)((double)x * (float)(1.0 - 0.9999) + x * (float)0.9999);
    formula_drifts |= once != x;
  }
  assert_true(formula_drifts); /* so copying is what keeps it exact */
  pg_rng rng;
  pg_rng_seed(&rng, 13);
  for (int s = 0; s < 50; s++) {
    for (int64_t j = 0; j < b->numel; j++) b->data[j] += pg_rng_normal(&rng);
    assert_int_equal(pg_ema_update(&ema), PG_OK);
    assert_memory_equal(ema.shadow.items[0].tensor->data, w->data, (size_t)w->numel * 4);
  }
  assert_true(memcmp(ema.shadow.items[2].tensor->data, b->data, (size_t)b->numel * 4) != 0);
  /* frozen mid-run: the next update makes the shadow the frozen value */
  assert_int_equal(pg_tensor_set_requires_grad(b, false), PG_OK);
  assert_int_equal(pg_ema_update(&ema), PG_OK);
  for (int s = 0; s < 3; s++) {
    assert_int_equal(pg_ema_update(&ema), PG_OK);
    assert_memory_equal(ema.shadow.items[2].tensor->data, b->data, (size_t)b->numel * 4);
  }
  pg_ema_free(&ema);
  pg_params_free(&model);
}

/* ---- Parameter counts per module ---- */

static void test_module_counts(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  struct {
    pg_param_kind kind;
    int64_t rows, cols;
    const char *name;
  } entries[] = {
      {PG_PARAM_WEIGHT, 4, 8, "x_embedder.proj.weight"},
      {PG_PARAM_BIAS, 4, 1, "x_embedder.proj.bias"},
      {PG_PARAM_BUFFER, 16, 4, "pos_embed"},
      {PG_PARAM_WEIGHT, 4, 4, "t_embedder.mlp.0.weight"},
      {PG_PARAM_BIAS, 4, 1, "t_embedder.mlp.0.bias"},
      {PG_PARAM_WEIGHT, 4, 4, "t_embedder.mlp.2.weight"},
      {PG_PARAM_WEIGHT, 12, 4, "blocks.0.attn.qkv.weight"},
      {PG_PARAM_BIAS, 12, 1, "blocks.0.attn.qkv.bias"},
      {PG_PARAM_WEIGHT, 16, 4, "blocks.0.mlp.fc1.weight"},
      {PG_PARAM_WEIGHT, 12, 4, "blocks.1.attn.qkv.weight"},
      {PG_PARAM_BIAS, 12, 1, "blocks.1.attn.qkv.bias"},
      {PG_PARAM_WEIGHT, 16, 4, "blocks.1.mlp.fc1.weight"},
      {PG_PARAM_WEIGHT, 8, 4000, "final_layer.linear.weight"},
  };
  for (size_t i = 0; i < sizeof entries / sizeof *entries; i++)
    assert_non_null(pg_params_add(&ps, entries[i].kind, PG_SHAPE(entries[i].rows, entries[i].cols),
                                  "%s", entries[i].name));
  assert_int_equal(pg_tensor_set_requires_grad(ps.items[0].tensor, false), PG_OK); /* frozen */

  pg_module_count m[10];
  assert_int_equal(pg_params_count_modules(&ps, 1, m, 10), 6);
  const char *names1[] = {"x_embedder", "pos_embed", "t_embedder", "blocks.0", "blocks.1", "final_layer"};
  const int64_t params1[] = {36, 64, 36, 124, 124, 32000}, trainable1[] = {4, 0, 36, 124, 124, 32000};
  const int tensors1[] = {2, 1, 3, 3, 3, 1};
  for (int i = 0; i < 6; i++) {
    assert_string_equal(m[i].name, names1[i]);
    assert_int_equal(m[i].params, params1[i]);
    assert_int_equal(m[i].trainable, trainable1[i]);
    assert_int_equal(m[i].tensors, tensors1[i]);
  }
  /* depth 2: a ModuleList index stays with its list */
  assert_int_equal(pg_params_count_modules(&ps, 2, m, 10), 9);
  const char *names2[] = {"x_embedder.proj", "pos_embed",     "t_embedder.mlp.0",
                          "t_embedder.mlp.2", "blocks.0.attn", "blocks.0.mlp",
                          "blocks.1.attn",    "blocks.1.mlp",  "final_layer.linear"};
  for (int i = 0; i < 9; i++) assert_string_equal(m[i].name, names2[i]);
  /* too little room: the count, and the first modules filled */
  assert_int_equal(pg_params_count_modules(&ps, 2, m, 3), 9);
  assert_string_equal(m[2].name, "t_embedder.mlp.0");
  assert_int_equal(pg_params_count_modules(&ps, 0, m, 8), -1);
  assert_error_contains("depth = 0 must be >= 1");

  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  assert_int_equal(pg_params_print_summary(&ps, 1, f), PG_OK);
  fclose(f);
  assert_string_equal(text,
                      "module              params      trainable\n"
                      "x_embedder              36              4\n"
                      "pos_embed               64              0\n"
                      "t_embedder              36             36\n"
                      "blocks.0               124            124\n"
                      "blocks.1               124            124\n"
                      "final_layer         32,000         32,000\n"
                      "Total params: 32,384\n"
                      "Trainable params: 32,288\n"
                      "Non-trainable params: 96\n");
  free(text);
  pg_params_free(&ps);
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clip_grad_norm), cmocka_unit_test(test_clip_grad_value),
      cmocka_unit_test(test_schedules),      cmocka_unit_test(test_ema),
      cmocka_unit_test(test_ema_warmup),
      cmocka_unit_test(test_clip_skips_frozen), cmocka_unit_test(test_ema_follows_frozen),
      cmocka_unit_test(test_module_counts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
