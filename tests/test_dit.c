/* The DiT and its diffusion objective: the public reference cases, finite
 * differences through a whole (tiny, randomly initialised) model, over-
 * fitting a fixed batch with Adam and with SGD + momentum, deterministic DDIM
 * sampling, and guidance at scale 1 being the conditional model. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/dit/diffusion.h"
#include "patchgrad/dit/dit.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/autograd/tape.h"

static const pg_dit_config tiny = {.input_size = 4, .in_channels = 2, .patch_size = 2,
                                   .hidden = 8, .depth = 1, .heads = 2, .mlp_ratio = 2,
                                   .num_classes = 3, .class_dropout = 0.1f};

/* DiT zero-initialises its output and adaLN layers; to see gradients flow
 * everywhere, give every parameter small random values. */
static void randomise(pg_dit *m, uint64_t seed) {
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  for (int i = 0; i < m->params.count; i++)
    if (m->params.items[i].kind != PG_PARAM_BUFFER)
      pg_fill_normal(m->params.items[i].tensor, 0.0f, 0.3f, &rng);
}

static void test_public_cases(void **state) {
  (void)state;
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s/patchgrad check %s > /dev/null", PG_BUILD_DIR,
           pg_test_data("cases-public.h5"));
  assert_int_equal(system(cmd), 0);
}

typedef struct {
  pg_dit *m;
  float t[2];
  int64_t y[2];
} dit_fn_data;

/* The model as a function of its input and a few of its parameters. */
static pg_tensor *dit_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  dit_fn_data *d = user;
  return pg_dit_forward(ctx, d->m, in[0], d->t, d->y);
}

static void test_gradcheck_whole_model(void **state) {
  (void)state;
  pg_dit m;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  assert_int_equal(pg_dit_init(&m, &tiny, &rng), PG_OK);
  randomise(&m, 2);
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 4, 4, 2), 1.0f, 3);
  dit_fn_data d = {.m = &m, .t = {3.0f, 700.0f}, .y = {0, 3}};
  /* the input and one parameter of each kind of layer */
  const char *names[] = {"x_embedder.conv.weight", "t_embedder.mlp.0.weight",
                         "y_embedder.embedding_table.weight", "blocks.0.adaLN_modulation.1.weight",
                         "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc2.bias",
                         "final_layer.unpatchify.deconv.weight"};
  pg_tensor *inputs[8] = {x};
  for (int i = 0; i < 7; i++) {
    pg_param *p = pg_params_find(&m.params, names[i]);
    assert_non_null(p);
    inputs[i + 1] = p->tensor;
  }
  pg_gradcheck_opts o = {.eps = 1e-2, .atol = 2e-3, .rtol = 2e-2};
  assert_gradcheck(dit_fn, &d, 8, inputs, &o);
  pg_tensor_free(x);
  pg_dit_free(&m);
}

static void test_errors(void **state) {
  (void)state;
  pg_dit m;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  pg_dit_config bad = tiny;
  bad.patch_size = 3;
  assert_int_equal(pg_dit_init(&m, &bad, &rng), PG_ERR_ARG);
  assert_error_contains("patch_size 3");
  bad = tiny;
  bad.hidden = 6;
  assert_int_equal(pg_dit_init(&m, &bad, &rng), PG_ERR_ARG);
  assert_error_contains("hidden must be divisible by 4 (2D sin-cos table), got 6");
  assert_int_equal(pg_dit_init(&m, &tiny, &rng), PG_OK);
  pg_ctx *ctx = pg_ctx_new(0);
  float t[1] = {1};
  int64_t y[1] = {0};
  assert_null(pg_dit_forward(ctx, &m, pg_zeros(ctx, PG_SHAPE(1, 4, 4, 3)), t, y));
  assert_error_contains("[1, 4, 4, 3]");
  assert_null(pg_dit_forward(ctx, &m, pg_zeros(ctx, PG_SHAPE(1, 4, 4, 2)), t, NULL));
  assert_error_contains("labels");
  y[0] = 4; /* the null class is 3 */
  assert_null(pg_dit_forward(ctx, &m, pg_zeros(ctx, PG_SHAPE(1, 4, 4, 2)), t, y));
  pg_ctx_free(ctx);
  pg_dit_free(&m);
}

/* A fixed batch at fixed (t, eps): the loss must fall tenfold. */
static double overfit(pg_optim_config oc, int steps) {
  pg_dit_config c = {.input_size = 8, .in_channels = 4, .patch_size = 2, .hidden = 32,
                     .depth = 2, .heads = 4, .mlp_ratio = 4, .num_classes = 10};
  pg_dit m;
  pg_rng rng;
  pg_rng_seed(&rng, 7);
  assert_int_equal(pg_dit_init(&m, &c, &rng), PG_OK);
  pg_optimizer opt;
  assert_int_equal(pg_optimizer_init(&opt, &m.params, &oc), PG_OK);
  pg_diffusion d;
  pg_diffusion_init(&d);
  enum { B = 8, N = 8 * 8 * 4 };
  static float x0[B * N], eps[B * N];
  float t[B];
  int64_t y[B];
  for (int i = 0; i < B * N; i++) x0[i] = pg_rng_normal(&rng), eps[i] = pg_rng_normal(&rng);
  for (int b = 0; b < B; b++) t[b] = (float)(100 * b + 50), y[b] = b;
  pg_ctx *ctx = pg_ctx_new(0);
  double first = 0, last = 0;
  for (int s = 0; s < steps; s++) {
    pg_ctx_reset(ctx);
    pg_tensor *x = pg_from_array(ctx, PG_SHAPE(B, 8, 8, 4), x0);
    pg_tensor *loss = pg_diffusion_loss(ctx, &m, &d, x, y, false, NULL, t, eps);
    assert_non_null(loss);
    if (s == 0) first = loss->data[0];
    last = loss->data[0];
    assert_int_equal(pg_backward(ctx, loss), PG_OK);
    assert_int_equal(pg_optimizer_step(&opt), PG_OK);
    pg_optimizer_zero_grad(&opt);
  }
  pg_ctx_free(ctx);
  pg_optimizer_free(&opt);
  pg_dit_free(&m);
  print_message("    loss %.4f -> %.4f after %d steps\n", first, last, steps);
  assert_true(first > 0.5); /* the zero-initialised output predicts eps = 0 */
  return last / first;
}

static void test_overfit_adam(void **state) {
  (void)state;
  pg_optim_config oc = pg_optim_adam(2e-3);
  assert_true(overfit(oc, 300) < 0.1);
}

static void test_overfit_sgd_momentum(void **state) {
  (void)state;
  pg_optim_config oc = pg_optim_sgd(0.1);
  oc.momentum = 0.9;
  assert_true(overfit(oc, 300) < 0.1);
}

static void test_ddim_deterministic(void **state) {
  (void)state;
  pg_dit m;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  assert_int_equal(pg_dit_init(&m, &tiny, &rng), PG_OK);
  randomise(&m, 5);
  pg_diffusion d;
  pg_diffusion_init(&d);
  pg_ctx *ctx = pg_ctx_new(0);
  int64_t y[3] = {0, 1, 2};
  float a[3 * 32], b[3 * 32], c[3 * 32];
  pg_sampler_opts o = {.kind = PG_SAMPLER_DDIM, .steps = 10, .cfg_scale = 2.0f, .seed = 42};
  assert_int_equal(pg_diffusion_sample(ctx, &m, &d, &o, 3, y, a, NULL, NULL), PG_OK);
  assert_int_equal(pg_diffusion_sample(ctx, &m, &d, &o, 3, y, b, NULL, NULL), PG_OK);
  assert_memory_equal(a, b, sizeof a);
  o.seed = 43;
  assert_int_equal(pg_diffusion_sample(ctx, &m, &d, &o, 3, y, c, NULL, NULL), PG_OK);
  assert_memory_not_equal(a, c, sizeof a);
  for (int i = 0; i < 3 * 32; i++) assert_true(isfinite(a[i]));
  /* DDPM runs all 1000 steps and is deterministic per seed too */
  o.kind = PG_SAMPLER_DDPM;
  assert_int_equal(pg_diffusion_sample(ctx, &m, &d, &o, 3, y, a, NULL, NULL), PG_OK);
  assert_int_equal(pg_diffusion_sample(ctx, &m, &d, &o, 3, y, b, NULL, NULL), PG_OK);
  assert_memory_equal(a, b, sizeof a);
  o.kind = PG_SAMPLER_DDIM;
  o.steps = 0;
  assert_int_equal(pg_diffusion_sample(ctx, &m, &d, &o, 3, y, a, NULL, NULL), PG_ERR_ARG);
  assert_error_contains("DDIM steps");
  pg_ctx_free(ctx);
  pg_dit_free(&m);
}

static void test_cfg_scale_one_is_conditional(void **state) {
  (void)state;
  pg_dit m;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  assert_int_equal(pg_dit_init(&m, &tiny, &rng), PG_OK);
  randomise(&m, 9);
  pg_ctx *ctx = pg_ctx_new(0);
  float x[2 * 32], cond[2 * 32], guided[2 * 32], near[2 * 32];
  for (int i = 0; i < 64; i++) x[i] = pg_rng_normal(&rng);
  int64_t y[2] = {2, 0};
  float t[2] = {500, 500};
  pg_set_grad_enabled(ctx, false);
  pg_tensor *out = pg_dit_forward(ctx, &m, pg_from_array(ctx, PG_SHAPE(2, 4, 4, 2), x), t, y);
  memcpy(cond, out->data, sizeof cond);
  assert_int_equal(pg_diffusion_eps(ctx, &m, x, 2, 500, y, 1.0f, guided), PG_OK);
  assert_close(guided, cond, 64, 0, 0);
  /* just above 1 the guided path (labels and null class as one batch of 4)
   * runs, and gives the conditional prediction plus a tiny null term */
  assert_int_equal(pg_diffusion_eps(ctx, &m, x, 2, 500, y, 1.0001f, near), PG_OK);
  assert_close(near, cond, 64, 1e-3, 1e-3);
  assert_memory_not_equal(near, cond, sizeof near);
  pg_ctx_free(ctx);
  pg_dit_free(&m);
}

static void test_diffusion_schedule(void **state) {
  (void)state;
  pg_diffusion d;
  pg_diffusion_init(&d);
  assert_true(fabs(d.beta[0] - 1e-4) < 1e-12);
  assert_true(fabs(d.beta[999] - 0.02) < 1e-12);
  double abar = 1;
  for (int t = 0; t < 1000; t++) abar *= 1 - d.beta[t];
  assert_true(fabs(d.alpha_bar[999] - abar) < 1e-15);
  /* the value DiT's schedule gives at T-1 */
  assert_true(fabs(d.alpha_bar[999] - 4.035829e-05) < 1e-9);
  float x0[2] = {1, -2}, eps[2] = {0.5f, 0.25f}, t[1] = {0}, xt[2];
  pg_diffusion_q_sample(&d, x0, eps, t, 1, 2, xt);
  assert_true(fabsf(xt[0] - (sqrtf(0.9999f) * 1 + 0.01f * 0.5f)) < 1e-6f);
}

/* The cosine schedule against its formula (values computed in float64 by
 * Python from Nichol and Dhariwal's eq. 17), min-SNR weighting against the
 * per-sample losses weighted by hand, and the config keys. */
static void test_cosine_schedule_and_min_snr(void **state) {
  (void)state;
  pg_diffusion d;
  assert_int_equal(pg_diffusion_init_with(&d, PG_NOISE_COSINE, 0), PG_OK);
  assert_true(fabs(d.alpha_bar[0] - 0.999958715775178) < 1e-12);
  assert_true(fabs(d.alpha_bar[500] - 0.49228517244880304) < 1e-12);
  assert_true(fabs(d.alpha_bar[979] - 0.0009711930298712572) < 1e-14);
  assert_true(fabs(d.beta[999] - 0.999) < 1e-15); /* clipped */
  assert_int_equal(pg_diffusion_init_with(&d, PG_NOISE_LINEAR, -1), PG_ERR_ARG);
  assert_error_contains("min-SNR gamma must be a finite number >= 0 (0: off), got -1");

  /* min-SNR-5 = mean_b w_b mse_b, w_b = min(SNR, 5) / SNR */
  pg_dit m;
  pg_rng rng;
  pg_rng_seed(&rng, 3);
  assert_int_equal(pg_dit_init(&m, &tiny, &rng), PG_OK);
  randomise(&m, 4);
  enum { B = 4, N = 32 };
  float x0[B * N], eps[B * N], t[B] = {20, 150, 400, 900};
  int64_t y[B] = {0, 1, 2, 0};
  for (int i = 0; i < B * N; i++) x0[i] = pg_rng_normal(&rng), eps[i] = pg_rng_normal(&rng);
  pg_diffusion plain, weighted;
  pg_diffusion_init(&plain);
  assert_int_equal(pg_diffusion_init_with(&weighted, PG_NOISE_LINEAR, 5), PG_OK);
  pg_ctx *ctx = pg_ctx_new(0);
  double want = 0, w_small = 1;
  for (int b = 0; b < B; b++) {
    pg_ctx_reset(ctx);
    pg_tensor *one = pg_diffusion_loss(ctx, &m, &plain, pg_from_array(ctx, PG_SHAPE(1, 4, 4, 2), x0 + b * N),
                                       y + b, false, NULL, t + b, eps + b * N);
    assert_non_null(one);
    const double ab = plain.alpha_bar[(int)t[b]], snr = ab / (1 - ab), w = (snr < 5 ? snr : 5) / snr;
    if (b == 0) w_small = w;
    want += w * one->data[0] / B;
  }
  assert_true(w_small < 0.1); /* t = 20: SNR far above 5 */
  pg_ctx_reset(ctx);
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(B, 4, 4, 2), x0);
  pg_tensor *loss = pg_diffusion_loss(ctx, &m, &weighted, x, y, false, NULL, t, eps);
  assert_non_null(loss);
  assert_int_equal(loss->ndim, 0);
  assert_true(fabs(loss->data[0] - want) < 1e-6 * want);
  assert_int_equal(pg_backward(ctx, loss), PG_OK); /* the weighting is on the tape */
  pg_ctx_free(ctx);
  pg_dit_free(&m);

  /* config keys: none for the defaults, both otherwise, read back */
  pg_kv kv;
  pg_kv_init(&kv);
  assert_int_equal(pg_diffusion_to_kv(&plain, &kv), PG_OK);
  assert_int_equal(kv.count, 0);
  assert_int_equal(pg_diffusion_init_with(&d, PG_NOISE_COSINE, 5), PG_OK);
  assert_int_equal(pg_diffusion_to_kv(&d, &kv), PG_OK);
  pg_diffusion back;
  assert_int_equal(pg_diffusion_from_kv(&kv, "c.h5", &back), PG_OK);
  assert_int_equal(back.schedule, PG_NOISE_COSINE);
  assert_true(back.min_snr_gamma == 5);
  assert_true(back.alpha_bar[500] == d.alpha_bar[500]);
  pg_kv_clear(&kv);
  assert_int_equal(pg_kv_set_string(&kv, "noise_schedule", "quadratic"), PG_OK);
  assert_int_equal(pg_diffusion_from_kv(&kv, "c.h5", &back), PG_ERR_ARG);
  assert_error_contains("c.h5: config: noise schedule 'quadratic' is not linear or cosine");
  pg_kv_free(&kv);
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_public_cases),
      cmocka_unit_test(test_gradcheck_whole_model),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_diffusion_schedule),
      cmocka_unit_test(test_cosine_schedule_and_min_snr),
      cmocka_unit_test(test_overfit_adam),
      cmocka_unit_test(test_overfit_sgd_momentum),
      cmocka_unit_test(test_ddim_deterministic),
      cmocka_unit_test(test_cfg_scale_one_is_conditional),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
