/* The patch VAE: the Gaussian latent ops (values by hand, finite
 * differences, errors, PyTorch fixtures through `patchgrad check`), the
 * model (names, shapes, finite differences through the whole loss, bad
 * configs), its checkpoints, the pixel-space files it reads and writes, its
 * training, and the `patchgrad vae` commands on a small synthetic dataset
 * (nothing to install). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/gaussian.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/vae/autoencode.h"
#include "patchgrad/vae/train.h"
#include "patchgrad/vit/classify.h"

static const pg_gradcheck_opts loose = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2};

/* ---- the ops ---- */

static void test_reparameterize_values(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *mean = pg_from_array(ctx, PG_SHAPE(2, 3), (float[]){0, 1, -2, 0.5f, 3, 0});
  pg_tensor *logvar = pg_from_array(ctx, PG_SHAPE(2, 3), (float[]){0, -1, 2, 0.3f, -20, 4});
  /* eps given: z = mean + exp(logvar / 2) eps */
  pg_tensor *eps = pg_from_array(ctx, PG_SHAPE(2, 3), (float[]){1, 2, -1, 0, 0.5f, -0.25f});
  pg_tensor *z = pg_reparameterize_eps(ctx, mean, logvar, eps);
  float want[6];
  for (int i = 0; i < 6; i++) want[i] = (float)(mean->data[i] + exp(0.5 * logvar->data[i]) * eps->data[i]);
  assert_close(z->data, want, 6, 1e-7, 1e-6);
  /* eps drawn from rng: the same draws as pg_rng_normal in row-major order */
  pg_rng rng, copy;
  pg_rng_seed(&rng, 42);
  copy = rng;
  pg_tensor *zr = pg_reparameterize(ctx, mean, logvar, &rng);
  for (int i = 0; i < 6; i++) want[i] = (float)(mean->data[i] + exp(0.5 * logvar->data[i]) * pg_rng_normal(&copy));
  assert_close(zr->data, want, 6, 1e-7, 1e-6);
  assert_memory_equal(&rng, &copy, sizeof rng); /* exactly numel draws */
  /* eps = 0: z is the mean */
  pg_tensor *z0 = pg_reparameterize_eps(ctx, mean, logvar, pg_zeros(ctx, PG_SHAPE(2, 3)));
  assert_close(z0->data, mean->data, 6, 0, 0);
  pg_ctx_free(ctx);
}

static void test_kl_values(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  /* at the prior: 0 */
  pg_tensor *k0 = pg_kl_normal(ctx, pg_zeros(ctx, PG_SHAPE(3, 4)), pg_zeros(ctx, PG_SHAPE(3, 4)));
  assert_int_equal(k0->ndim, 0);
  assert_true(k0->data[0] == 0.0f);
  /* B = 2, one element of mean 1 (KL 1/2) and one of variance 2 (KL (2 - 1 - ln 2) / 2):
   * summed per sample, then averaged over the 2 samples */
  pg_tensor *m = pg_from_array(ctx, PG_SHAPE(2, 2), (float[]){1, 0, 0, 0});
  pg_tensor *lv = pg_from_array(ctx, PG_SHAPE(2, 2), (float[]){0, 0, (float)log(2.0), 0});
  pg_tensor *k = pg_kl_normal(ctx, m, lv);
  const double want = (0.5 + 0.5 * (2.0 - 1.0 - log(2.0))) / 2.0;
  assert_close(k->data, ((float[]){(float)want}), 1, 1e-7, 1e-6);
  /* no sample: NaN, a mean over nothing */
  assert_true(isnan(pg_kl_normal(ctx, pg_zeros(ctx, PG_SHAPE(0, 3)), pg_zeros(ctx, PG_SHAPE(0, 3)))->data[0]));
  pg_ctx_free(ctx);
}

static pg_tensor *reparameterize_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return pg_reparameterize_eps(ctx, in[0], in[1], in[2]);
}

static pg_tensor *kl_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return pg_kl_normal(ctx, in[0], in[1]);
}

/* the rng form: the same eps on every call of f (the checker calls it many times) */
static pg_tensor *reparameterize_rng_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  pg_rng rng = *(const pg_rng *)user;
  return pg_reparameterize(ctx, in[0], in[1], &rng);
}

static void test_ops_gradcheck(void **state) {
  (void)state;
  pg_tensor *mean = pg_test_randn(PG_SHAPE(3, 2, 2, 2), 1.5f, 1);
  pg_tensor *logvar = pg_test_randn(PG_SHAPE(3, 2, 2, 2), 2.0f, 2);
  pg_tensor *eps = pg_test_randn(PG_SHAPE(3, 2, 2, 2), 1.0f, 3);
  assert_gradcheck(reparameterize_fn, NULL, 3, ((pg_tensor *[]){mean, logvar, eps}), &loose);
  assert_gradcheck(kl_fn, NULL, 2, ((pg_tensor *[]){mean, logvar}), &loose);
  pg_rng rng;
  pg_rng_seed(&rng, 9);
  assert_gradcheck(reparameterize_rng_fn, &rng, 2, ((pg_tensor *[]){mean, logvar}), &loose);
  pg_tensor_free(mean);
  pg_tensor_free(logvar);
  pg_tensor_free(eps);
}

static void test_ops_errors(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *a = pg_zeros(ctx, PG_SHAPE(2, 3)), *b = pg_zeros(ctx, PG_SHAPE(3, 2));
  assert_null(pg_reparameterize_eps(ctx, a, b, a));
  assert_error_contains("pg_reparameterize_eps: mean [2, 3], logvar [3, 2] and eps [2, 3] must have the same shape");
  assert_null(pg_reparameterize(ctx, a, a, NULL));
  assert_error_contains("pg_reparameterize: rng is NULL");
  assert_null(pg_kl_normal(ctx, a, b));
  assert_error_contains("pg_kl_normal: mean [2, 3] and logvar [3, 2] must have the same shape");
  pg_tensor *s = pg_zeros(ctx, 0, NULL);
  assert_null(pg_kl_normal(ctx, s, s));
  assert_error_contains("pg_kl_normal: mean and logvar are 0-d");
  /* a NULL input passes through without touching the message */
  pg_fail(PG_ERR_ARG, "earlier");
  assert_null(pg_kl_normal(ctx, NULL, a));
  assert_null(pg_reparameterize(ctx, a, NULL, NULL));
  assert_error_contains("earlier");
  pg_ctx_free(ctx);
}

static void test_pytorch_fixtures(void **state) {
  (void)state;
  int passed, failed;
  assert_int_equal(pg_test_run_check(pg_test_data("vae_cases.h5"), &passed, &failed), 0);
  /* 3 reparameterize, 4 kl_normal and 2 whole-VAE cases */
  assert_int_equal(passed, 9);
  assert_int_equal(failed, 0);
}

/* ---- the model ---- */

static const pg_vae_config tiny = {.height = 8, .width = 4, .in_channels = 2, .patch_size = 2,
                                   .latent_channels = 3, .hidden = 8, .encoder_depth = 2,
                                   .decoder_depth = 1, .heads = 2, .mlp_ratio = 2};

static void test_model_shapes(void **state) {
  (void)state;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  pg_vae m;
  assert_int_equal(pg_vae_init(&m, &tiny, &rng), PG_OK);
  const struct {
    const char *name;
    int64_t shape[4];
  } want[] = {{"encoder.patch_embed.proj.weight", {8, 2, 2, 2}},
              {"encoder.patch_embed.proj.bias", {8}},
              {"encoder.pos_embed", {1, 8, 8}},
              {"encoder.blocks.1.attn.qkv.weight", {24, 8}},
              {"encoder.blocks.0.mlp.fc1.weight", {16, 8}},
              {"encoder.norm.weight", {8}},
              {"encoder.moments.weight", {6, 8}},
              {"decoder.latent_embed.weight", {8, 3}},
              {"decoder.pos_embed", {1, 8, 8}},
              {"decoder.blocks.0.norm2.bias", {8}},
              {"decoder.norm.bias", {8}},
              {"decoder.unpatchify.weight", {8, 2, 2, 2}},
              {"decoder.unpatchify.bias", {2}}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    const pg_param *p = pg_params_find(&m.params, want[i].name);
    assert_non_null(p);
    for (int d = 0; d < p->tensor->ndim; d++) assert_int_equal(p->tensor->shape[d], want[i].shape[d]);
  }
  assert_null(pg_params_find(&m.params, "decoder.blocks.1.norm1.weight")); /* decoder_depth 1 */
  assert_int_equal(pg_params_find(&m.params, "encoder.pos_embed")->kind, PG_PARAM_BUFFER);

  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_vae_output o;
  pg_tensor *x = pg_normal(ctx, PG_SHAPE(3, 8, 4, 2), 0, 1, &rng);
  assert_int_equal(pg_vae_forward(ctx, &m, x, NULL, &rng, &o), PG_OK);
  const int64_t lat[4] = {3, 4, 2, 3};
  for (int d = 0; d < 4; d++) {
    assert_int_equal(o.mean->shape[d], lat[d]);
    assert_int_equal(o.logvar->shape[d], lat[d]);
    assert_int_equal(o.z->shape[d], lat[d]);
    assert_int_equal(o.recon->shape[d], x->shape[d]);
  }
  /* the drawn eps is the one z used */
  for (int64_t i = 0; i < o.z->numel; i++)
    assert_float_equal(o.z->data[i], o.mean->data[i] + expf(0.5f * o.logvar->data[i]) * o.eps->data[i], 1e-5);
  /* a wrong input shape names it */
  assert_null(pg_vae_encode(ctx, &m, pg_zeros(ctx, PG_SHAPE(1, 4, 8, 2)), &o.logvar));
  assert_error_contains("vae: input x has shape [1, 4, 8, 2], the model takes [B, 8, 4, 2]");
  assert_null(pg_vae_decode(ctx, &m, pg_zeros(ctx, PG_SHAPE(1, 4, 2, 2))));
  assert_error_contains("vae: latent z has shape [1, 4, 2, 2], the model takes [B, 4, 2, 3]");
  assert_int_equal(pg_vae_forward(ctx, &m, x, NULL, NULL, &o), PG_ERR_ARG);
  assert_error_contains("neither eps nor a generator");
  pg_ctx_free(ctx);
  pg_vae_free(&m);

  /* bad configs name the field */
  pg_vae_config c = tiny;
  c.patch_size = 3;
  assert_int_not_equal(pg_vae_init(&m, &c, &rng), PG_OK);
  assert_error_contains("patch_size 3 must be >= 1 and divide the image 8 x 4");
  c = tiny;
  c.hidden = 6;
  assert_int_not_equal(pg_vae_init(&m, &c, &rng), PG_OK);
  assert_error_contains("hidden must be divisible by 4");
  c = tiny;
  c.latent_channels = 0;
  assert_int_not_equal(pg_vae_init(&m, &c, &rng), PG_OK);
  assert_error_contains("latent_channels must be >= 1, got 0");
  c = tiny;
  c.decoder_depth = PG_VAE_MAX_DEPTH + 1;
  assert_int_not_equal(pg_vae_init(&m, &c, &rng), PG_OK);
  assert_error_contains("decoder_depth must be in 0..");
}

typedef struct {
  pg_vae *m;
  float beta;
} loss_user;

static pg_tensor *vae_loss_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  loss_user *u = user;
  pg_vae_output o;
  if (pg_vae_forward(ctx, u->m, in[0], in[1], NULL, &o)) return NULL;
  return pg_vae_loss(ctx, &o, in[0], u->beta, NULL, NULL);
}

static void test_model_gradcheck(void **state) {
  (void)state;
  pg_rng rng;
  pg_rng_seed(&rng, 5);
  pg_vae m;
  pg_vae_config c = tiny;
  c.encoder_depth = 1;
  assert_int_equal(pg_vae_init(&m, &c, &rng), PG_OK);
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 8, 4, 2), 1.0f, 11);
  pg_tensor *eps = pg_test_randn(PG_SHAPE(2, 4, 2, 3), 1.0f, 12);
  /* the data, the draw, and a parameter of each end of the model */
  pg_tensor *inputs[] = {x, eps, pg_params_find(&m.params, "encoder.moments.weight")->tensor,
                         pg_params_find(&m.params, "encoder.blocks.0.attn.qkv.weight")->tensor,
                         pg_params_find(&m.params, "decoder.unpatchify.weight")->tensor};
  loss_user u = {&m, 0.5f};
  const pg_gradcheck_opts o = {.eps = 1e-2, .atol = 1e-3, .rtol = 2e-2};
  assert_gradcheck(vae_loss_fn, &u, 5, inputs, &o);
  pg_tensor_free(x);
  pg_tensor_free(eps);
  pg_vae_free(&m);
}

/* ---- files ---- */

static int setup_dir(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("vae")) return -1;
  /* 16 x 16 one-channel images, pixel-unshuffled by 2 as Fashion-MNIST, and
   * a VAE for them, saved as trained on train.h5 */
  if (pg_test_make_images(pg_test_tmp("train.h5"), 48, 0) || pg_test_make_images(pg_test_tmp("test.h5"), 20, 1))
    return -1;
  return pg_test_save_tiny_vae(pg_test_tmp("train.h5"), pg_test_tmp("vae.h5"));
}

static void test_images_and_checkpoint(void **state) {
  (void)state;
  pg_vae m;
  pg_vae_data_info trained;
  assert_int_equal(pg_vae_load(pg_test_tmp("vae.h5"), &m, &trained), PG_OK);
  assert_int_equal(m.cfg.height, 16);
  assert_int_equal(m.cfg.latent_channels, 2);
  assert_int_equal(trained.tf.factor, 2);
  assert_string_equal(trained.source, "synthetic");

  /* the file's samples as images and back */
  pg_latents *ds = pg_latents_open(pg_test_tmp("train.h5"));
  assert_non_null(ds);
  float *raw = malloc((size_t)(3 * ds->sample_numel) * sizeof *raw);
  float *img = malloc((size_t)(3 * ds->sample_numel) * sizeof *img);
  float *back = malloc((size_t)(3 * ds->sample_numel) * sizeof *back);
  assert_int_equal(pg_latents_read(ds, 0, 3, raw), PG_OK);
  assert_int_equal(pg_vae_images_of(&trained.tf, 3, raw, 8, 8, 4, img), PG_OK);
  /* pixel (2i + di, 2j + dj) of the image is channel 2 di + dj of latent pixel (i, j) */
  assert_true(img[(1 * 16 + 5) * 1] == raw[(0 * 8 + 2) * 4 + 2 * 1 + 1]);
  assert_true(img[256 + (6 * 16 + 2)] == raw[256 + (3 * 8 + 1) * 4 + 0]);
  assert_int_equal(pg_vae_samples_of(&trained.tf, 3, img, 16, 16, 1, back), PG_OK);
  assert_memory_equal(raw, back, (size_t)(3 * ds->sample_numel) * sizeof *raw);
  pg_latents_close(ds);

  /* pg_vae_read_images gives the same images and the labels */
  pg_latents_info info;
  float *images;
  int64_t *labels, n;
  assert_int_equal(pg_vae_read_images(pg_test_tmp("train.h5"), 3, &m, &trained, &info, &images, &labels, &n), PG_OK);
  assert_int_equal(n, 3);
  assert_non_null(labels);
  assert_memory_equal(images, img, (size_t)(3 * 256) * sizeof *img);

  /* the loaded model computes what the saved one did: a second load, same outputs */
  pg_vae m2;
  assert_int_equal(pg_vae_load(pg_test_tmp("vae.h5"), &m2, NULL), PG_OK);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  float *r1 = malloc(3 * 256 * sizeof *r1), *r2 = malloc(3 * 256 * sizeof *r2);
  assert_int_equal(pg_vae_reconstruct_all(ctx, &m, images, 3, 2, NULL, &(pg_vae_arrays){.recon = r1}, NULL, NULL), PG_OK);
  assert_int_equal(pg_vae_reconstruct_all(ctx, &m2, images, 3, 3, NULL, &(pg_vae_arrays){.recon = r2}, NULL, NULL), PG_OK);
  assert_close(r1, r2, 3 * 256, 1e-6, 1e-5); /* batch 2 + 1 vs one batch of 3 */

  /* files the VAE was not trained on are refused by name */
  pg_latents_info other = info;
  other.pad = 2;
  assert_int_equal(pg_vae_check_data(&m, &trained, &other, "other.h5"), PG_ERR_ARG);
  assert_error_contains("other.h5 has pad 2 and space_to_depth 2; the VAE was trained on pad 0");
  other = info;
  other.std *= 2;
  assert_int_equal(pg_vae_check_data(&m, &trained, &other, "other.h5"), PG_ERR_ARG);
  assert_error_contains("make both from the same training split");
  other = info;
  other.height = 4;
  assert_int_equal(pg_vae_check_data(&m, &trained, &other, "other.h5"), PG_ERR_ARG);
  assert_error_contains("other.h5 holds [8, 16, 1] images, the VAE takes [16, 16, 1]");
  /* a ViT checkpoint is not a VAE */
  pg_vit vit;
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  assert_int_equal(pg_vit_init(&vit, &(pg_vit_config){.height = 4, .width = 4, .in_channels = 1, .patch_size = 2,
                                                     .hidden = 8, .depth = 1, .heads = 2, .mlp_ratio = 2,
                                                     .num_classes = 2}, &rng), PG_OK);
  assert_int_equal(pg_vit_save(pg_test_tmp("vit.h5"), &vit, NULL, 0), PG_OK);
  pg_vit_free(&vit);
  pg_vae m3; /* a failed load leaves nothing to free */
  assert_int_not_equal(pg_vae_load(pg_test_tmp("vit.h5"), &m3, NULL), PG_OK);
  assert_error_contains("model is 'vit', not a VAE");

  pg_ctx_free(ctx);
  free(raw);
  free(img);
  free(back);
  free(images);
  free(labels);
  free(r1);
  free(r2);
  pg_vae_free(&m);
  pg_vae_free(&m2);
}

static void test_scale_factor(void **state) {
  (void)state;
  float v[6] = {1, 3, 1, 3, 1, 3}; /* mean 2, std 1 */
  double s;
  assert_int_equal(pg_vae_scale_factor(v, 2, 3, &s), PG_OK);
  assert_float_equal(s, 1.0, 1e-12);
  for (int i = 0; i < 6; i++) v[i] *= 4;
  assert_int_equal(pg_vae_scale_factor(v, 3, 2, &s), PG_OK);
  assert_float_equal(s, 0.25, 1e-12);
  float flat[3] = {2, 2, 2};
  assert_int_equal(pg_vae_scale_factor(flat, 3, 1, &s), PG_ERR_ARG);
  assert_error_contains("std 0");
}

/* ---- training ---- */

static void test_training(void **state) {
  (void)state;
  pg_vae_train_opts o;
  pg_vae_train_opts_init(&o);
  char out[512];
  snprintf(out, sizeof out, "%s", pg_test_tmp("run"));
  o.run.data_path = pg_test_tmp("train.h5");
  o.val_path = pg_test_tmp("test.h5");
  o.run.out_dir = out;
  o.model = (pg_vae_config){.patch_size = 4, .latent_channels = 2, .hidden = 16, .encoder_depth = 1,
                            .decoder_depth = 1, .heads = 2, .mlp_ratio = 2};
  o.run.batch = 16;
  o.run.steps = 60;
  o.run.schedule.warmup_steps = 5;
  o.run.optim.lr = 5e-3;
  o.run.val_every = 1000; /* at the end only */
  o.sheet_per_class = 1;
  o.run.quiet = true;
  pg_vae_train_result r;
  assert_int_equal(pg_vae_train(&o, &r), PG_OK);
  assert_int_equal(r.step, 60);
  assert_false(r.interrupted);
  assert_true(isfinite(r.val_mse) && isfinite(r.val_kl) && r.val_kl > 0);
  /* it learned: the held-out error is below an untrained model's */
  pg_vae m;
  pg_vae_data_info trained;
  char ckpt[600];
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out);
  assert_int_equal(pg_vae_load(ckpt, &m, &trained), PG_OK);
  assert_int_equal(m.cfg.height, 16);
  assert_int_equal(m.cfg.in_channels, 1);
  assert_string_equal(trained.source, "synthetic");
  pg_latents_info info;
  float *images;
  int64_t *labels, n;
  assert_int_equal(pg_vae_read_images(o.val_path, 0, &m, &trained, &info, &images, &labels, &n), PG_OK);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  float *recon = malloc((size_t)(n * 256) * sizeof *recon);
  double mse, kl;
  assert_int_equal(pg_vae_reconstruct_all(ctx, &m, images, n, 64, NULL, &(pg_vae_arrays){.recon = recon}, &mse, &kl), PG_OK);
  assert_float_equal(mse, r.val_mse, 1e-6 * mse); /* the checkpoint is the final model */
  pg_vae fresh;
  pg_rng rng;
  pg_rng_seed(&rng, o.run.seed);
  assert_int_equal(pg_vae_init(&fresh, &m.cfg, &rng), PG_OK);
  double mse0;
  assert_int_equal(pg_vae_reconstruct_all(ctx, &fresh, images, n, 64, NULL, &(pg_vae_arrays){.recon = recon}, &mse0, NULL), PG_OK);
  printf("held-out mse: %.4f untrained, %.4f after 60 steps\n", mse0, mse);
  assert_true(mse < 0.7 * mse0);
  char path[600];
  snprintf(path, sizeof path, "%s/reconstructions.png", out);
  assert_true(pg_test_exists(path));
  snprintf(path, sizeof path, "%s/loss.png", out);
  assert_true(pg_test_exists(path));
  snprintf(path, sizeof path, "%s/loss.csv", out);
  FILE *f = fopen(path, "r");
  char header[256] = "";
  assert_non_null(fgets(header, sizeof header, f));
  fclose(f);
  assert_string_equal(header, "step,train_loss,val_loss,lr,epoch,train_mse,train_kl,val_mse,val_kl,seconds\n");

  /* bad options and data are named */
  pg_vae_train_opts bad = o;
  bad.beta = -1;
  assert_int_equal(pg_vae_train(&bad, &r), PG_ERR_ARG);
  assert_error_contains("beta must be a number >= 0, got -1");
  bad = o;
  bad.model.patch_size = 3;
  assert_int_not_equal(pg_vae_train(&bad, &r), PG_OK);
  assert_error_contains("patch_size 3 must be >= 1 and divide the image 16 x 16");
  bad = o;
  bad.model.height = 32;
  assert_int_not_equal(pg_vae_train(&bad, &r), PG_OK);
  assert_error_contains("holds [16, 16, 1] images, the model was asked for [32, 0, 0]");

  pg_ctx_free(ctx);
  free(images);
  free(labels);
  free(recon);
  pg_vae_free(&m);
  pg_vae_free(&fresh);
}

/* ---- the commands ---- */

static int run(const char *args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' vae %s > '%s' 2>&1", PG_BUILD_DIR, args, pg_test_tmp("cmd.log"));
  int rc = system(cmd);
  FILE *f = fopen(pg_test_tmp("cmd.log"), "r");
  char line[1024];
  while (f && fgets(line, sizeof line, f)) fputs(line, stdout); /* for the test log */
  if (f) fclose(f);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static float *read_all(const char *path, pg_latents_info *info) {
  pg_latents *ds = pg_latents_open(path);
  assert_non_null(ds);
  *info = ds->info;
  float *x = malloc((size_t)(ds->info.n * ds->sample_numel) * sizeof *x);
  assert_int_equal(pg_latents_read(ds, 0, ds->info.n, x), PG_OK);
  pg_latents_close(ds);
  return x;
}

static void test_commands(void **state) {
  (void)state;
  char args[2048];
  char vae[512], train[512], test[512]; /* copies: pg_test_tmp reuses 4 buffers */
  snprintf(vae, sizeof vae, "%s", pg_test_tmp("vae.h5"));
  snprintf(train, sizeof train, "%s", pg_test_tmp("train.h5"));
  snprintf(test, sizeof test, "%s", pg_test_tmp("test.h5"));

  /* encode: unit variance, the attributes, the labels kept */
  snprintf(args, sizeof args, "encode --ckpt '%s' --data '%s' --out '%s' --batch 7", vae, train, pg_test_tmp("z_train.h5"));
  assert_int_equal(run(args), 0);
  pg_latents_info zi, ti;
  float *z = read_all(pg_test_tmp("z_train.h5"), &zi);
  free(read_all(train, &ti));
  assert_int_equal(zi.n, 48);
  assert_int_equal(zi.height, 4);
  assert_int_equal(zi.width, 4);
  assert_int_equal(zi.channels, 2);
  assert_string_equal(zi.source, "vae");
  assert_string_equal(zi.vae_checkpoint, vae);
  assert_true(zi.scale_factor > 0);
  assert_int_equal(zi.num_classes, ti.num_classes);
  double s;
  assert_int_equal(pg_vae_scale_factor(z, zi.n, 32, &s), PG_OK);
  assert_float_equal(s, 1.0, 1e-4);
  /* the test split with the train split's scale */
  snprintf(args, sizeof args, "encode --ckpt '%s' --data '%s' --out '%s' --scale-factor-from '%s'", vae, test,
           pg_test_tmp("z_test.h5"), pg_test_tmp("z_train.h5"));
  assert_int_equal(run(args), 0);
  pg_latents_info zti;
  free(read_all(pg_test_tmp("z_test.h5"), &zti));
  assert_float_equal(zti.scale_factor, zi.scale_factor, 1e-9 * zi.scale_factor);

  /* decode to a file: the training data's own format, equal to the library's
   * reconstruction through the posterior mean */
  snprintf(args, sizeof args, "decode --data '%s' --out '%s'", pg_test_tmp("z_train.h5"), pg_test_tmp("decoded.h5"));
  assert_int_equal(run(args), 0);
  pg_latents_info di;
  float *decoded = read_all(pg_test_tmp("decoded.h5"), &di);
  assert_int_equal(di.n, 48);
  assert_int_equal(di.height, ti.height);
  assert_int_equal(di.channels, ti.channels);
  assert_int_equal(di.space_to_depth, ti.space_to_depth);
  assert_float_equal(di.mean, ti.mean, 1e-12);
  assert_int_equal(di.num_classes, ti.num_classes);
  pg_vae m;
  pg_vae_data_info trained;
  assert_int_equal(pg_vae_load(vae, &m, &trained), PG_OK);
  pg_latents_info info;
  float *images, *recon = malloc(48 * 256 * sizeof *recon), *samples = malloc(48 * 256 * sizeof *samples);
  int64_t *labels, n;
  assert_int_equal(pg_vae_read_images(train, 0, &m, &trained, &info, &images, &labels, &n), PG_OK);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  assert_int_equal(pg_vae_reconstruct_all(ctx, &m, images, n, 16, NULL, &(pg_vae_arrays){.recon = recon}, NULL, NULL), PG_OK);
  assert_int_equal(pg_vae_samples_of(&trained.tf, n, recon, 16, 16, 1, samples), PG_OK);
  assert_close(decoded, samples, 48 * 256, 1e-5, 1e-4);

  /* decode to a sheet, reconstruct with a sheet and a dump */
  snprintf(args, sizeof args, "decode --data '%s' --out '%s' --count 12 --cols 6", pg_test_tmp("z_test.h5"), pg_test_tmp("decoded.png"));
  assert_int_equal(run(args), 0);
  pg_image *im = pg_png_read(pg_test_tmp("decoded.png"));
  assert_non_null(im);
  assert_int_equal(im->width, 6 * 16 + 7 * 2); /* 6 images of 16 pixels (pad 0), 2-pixel gaps */
  pg_image_free(im);
  snprintf(args, sizeof args, "reconstruct --ckpt '%s' --data '%s' --sheet '%s' --per-class 1 --dump '%s' --sample --seed 4",
           vae, test, pg_test_tmp("sheet.png"), pg_test_tmp("dump.h5"));
  assert_int_equal(run(args), 0);
  FILE *f = fopen(pg_test_tmp("cmd.log"), "r");
  char log[2048] = "";
  size_t got = fread(log, 1, sizeof log - 1, f);
  log[got] = 0;
  fclose(f);
  assert_non_null(strstr(log, "reconstruction MSE"));
  im = pg_png_read(pg_test_tmp("sheet.png"));
  assert_non_null(im);
  assert_int_equal(im->width, 4 * 16 + 5 * 2);  /* one column per class */
  assert_int_equal(im->height, 2 * 16 + 3 * 2); /* originals above reconstructions */
  pg_image_free(im);
  hid_t h = pg_h5_open(pg_test_tmp("dump.h5"), false);
  assert_true(h >= 0);
  pg_tensor *t;
  assert_int_equal(pg_h5_read_tensor(h, "z", "z", &t), PG_OK);
  assert_int_equal(t->shape[0], 20);
  assert_int_equal(t->shape[3], 2);
  pg_tensor_free(t);
  H5Fclose(h);

  /* errors name the file */
  snprintf(args, sizeof args, "decode --data '%s' --out '%s'", train, pg_test_tmp("x.png"));
  assert_int_equal(run(args), 1);
  snprintf(args, sizeof args, "encode --ckpt '%s' --data '%s' --out '%s'", vae, pg_test_tmp("z_train.h5"), pg_test_tmp("x.h5"));
  assert_int_equal(run(args), 1);
  snprintf(args, sizeof args, "decode --data '%s' --out '%s'", pg_test_tmp("z_train.h5"), pg_test_tmp("x.jpg"));
  assert_int_equal(run(args), 2);
  assert_int_equal(run("frobnicate"), 2);

  pg_ctx_free(ctx);
  free(z);
  free(decoded);
  free(images);
  free(labels);
  free(recon);
  free(samples);
  pg_vae_free(&m);
}

int main(void) {
  /* One thread, here and in the commands the tests run: the models are tiny,
   * and on a busy machine every OpenMP region of two threads waits for the
   * second one to be scheduled (ten times slower than one thread). */
  setenv("OMP_NUM_THREADS", "1", 1);
  setenv("BLIS_NUM_THREADS", "1", 1);
  pg_set_threads(1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reparameterize_values),
      cmocka_unit_test(test_kl_values),
      cmocka_unit_test(test_ops_gradcheck),
      cmocka_unit_test(test_ops_errors),
      cmocka_unit_test(test_pytorch_fixtures),
      cmocka_unit_test(test_model_shapes),
      cmocka_unit_test(test_model_gradcheck),
      cmocka_unit_test(test_images_and_checkpoint),
      cmocka_unit_test(test_scale_factor),
      cmocka_unit_test(test_training),
      cmocka_unit_test(test_commands),
  };
  return cmocka_run_group_tests(tests, setup_dir, pg_test_tmpdir_remove);
}
