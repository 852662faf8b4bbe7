/* Latent diffusion end to end on a few synthetic images: a tiny VAE, its
 * latents (`patchgrad vae encode`), a tiny DiT trained on them, and its
 * samples decoded through the VAE by the training run's sheet and by
 * `patchgrad sample` (dit/sample_sheet.h), scored by a classifier of the
 * pixel-space files; the checkpoint names the VAE, a VAE that has moved is
 * an error naming it, --vae gives its new place; the pixel-space path is
 * left as it was. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "patchgrad/dit/trainer.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/render/png_image.h"
#include "patchgrad/vae/autoencode.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/vit/classify.h"
#include "testutil.h"

/* paths kept for the whole program (pg_test_tmp reuses its buffers) */
static char dir[512], train_px[600], vae_path[600], vae_moved[600], z_train[600], vit_path[600];

static int setup(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("latent_pipeline")) return -1;
  snprintf(dir, sizeof dir, "%s", pg_test_tmpdir());
  snprintf(train_px, sizeof train_px, "%s/train.h5", dir);
  snprintf(vae_path, sizeof vae_path, "%s/vae.h5", dir);
  snprintf(vae_moved, sizeof vae_moved, "%s/vae_moved.h5", dir);
  snprintf(z_train, sizeof z_train, "%s/z_train.h5", dir);
  snprintf(vit_path, sizeof vit_path, "%s/vit.h5", dir);
  /* 16 x 16 one-channel images, pixel-unshuffled by 2 (Fashion-MNIST's
   * layout), and a VAE for them: 16 x 16 x 1 -> 4 x 4 x 2 latents (its
   * training is vae's test) */
  pg_latents *ds = NULL;
  if (pg_test_make_images(train_px, 32, 0) || pg_test_save_tiny_vae(train_px, vae_path) ||
      !(ds = pg_latents_open(train_px)))
    return -1;
  pg_vit_data_info vdata = {.mean = ds->info.mean, .std = ds->info.std, .source = "synthetic"};
  pg_latents_close(ds);
  pg_rng rng;
  pg_rng_seed(&rng, 3);
  /* a classifier of the pixel-space files (untrained: the score only has to read them) */
  pg_vit_config vc = {.height = 8, .width = 8, .in_channels = 4, .patch_size = 4, .hidden = 16, .depth = 1,
                      .heads = 2, .mlp_ratio = 2, .num_classes = 4};
  pg_vit v;
  if (pg_vit_init(&v, &vc, &rng)) return -1;
  pg_status st = pg_vit_save(vit_path, &v, &vdata, 0);
  pg_vit_free(&v);
  if (st) return -1;
  char out[4096];
  return pg_test_run(out, sizeof out, "'%s/patchgrad' vae encode --ckpt '%s' --data '%s' --out '%s' --threads 1",
                     PG_BUILD_DIR, vae_path, train_px, z_train) ? -1 : 0;
}

/* A tiny DiT run's options on `data` into dir/name. */
static void tiny_run(pg_train_opts *o, const char *data, const char *name, char *out, size_t cap) {
  pg_train_opts_init(o);
  snprintf(out, cap, "%s/%s", dir, name);
  o->run.data_path = data;
  o->run.out_dir = out;
  o->run.steps = 3;
  o->run.batch = 8;
  o->run.quiet = true;
  o->run.val_every = -1;
  o->model.hidden = 16;
  o->model.depth = 1;
  o->model.heads = 2;
  o->model.patch_size = 2;
  o->sample_cols = 2;
  o->sample_steps = 3;
}

static float *read_floats(const char *path, const char *name, int64_t shape[4]) {
  hid_t f = pg_h5_open(path, false);
  assert_true(f >= 0);
  pg_tensor *t = NULL;
  assert_int_equal(pg_h5_read_tensor(f, name, name, &t), PG_OK);
  H5Fclose(f);
  assert_int_equal(t->ndim, 4);
  for (int i = 0; i < 4; i++) shape[i] = t->shape[i];
  float *x = malloc((size_t)t->numel * sizeof *x);
  memcpy(x, t->data, (size_t)t->numel * sizeof *x);
  pg_tensor_free(t);
  return x;
}

/* grid.h5's samples are its diffusion_latents decoded by the VAE at vae
 * (scale factor of z_train.h5), in the pixel-space files' layout; returns
 * the number of samples. */
static int64_t check_decoded(const char *h5, const char *vae) {
  int64_t ss[4], ls[4];
  float *samples = read_floats(h5, "samples", ss);
  float *lat = read_floats(h5, "diffusion_latents", ls);
  assert_int_equal(ss[0], ls[0]);
  assert_int_equal(ss[1], 8); /* [8, 8, 4]: the pixel-space file's samples */
  assert_int_equal(ss[2], 8);
  assert_int_equal(ss[3], 4);
  assert_int_equal(ls[1], 4); /* [4, 4, 2]: the VAE's latents */
  assert_int_equal(ls[3], 2);
  pg_latents *z = pg_latents_open(z_train);
  assert_non_null(z);
  const double scale = z->info.scale_factor;
  pg_latents_close(z);
  hid_t f = pg_h5_open(h5, false);
  char who[1024];
  double attr_scale = 0, mean = 0;
  assert_int_equal(pg_h5_attr_string(f, "vae_checkpoint", who, sizeof who), 1);
  assert_int_equal(pg_h5_attr_double(f, "scale_factor", &attr_scale), 1);
  assert_int_equal(pg_h5_attr_double(f, "mean", &mean), 1);
  H5Fclose(f);
  assert_string_equal(who, vae);
  assert_float_equal(attr_scale, scale, 1e-12);

  /* by hand: latents / scale through the decoder, then the files' layout */
  pg_vae m;
  pg_vae_data_info data;
  assert_int_equal(pg_vae_load(vae, &m, &data), PG_OK);
  assert_float_equal(mean, data.tf.mean, 1e-12);
  const int64_t n = ls[0], lper = 4 * 4 * 2;
  float *z_unscaled = malloc((size_t)(n * lper) * sizeof *z_unscaled);
  float *images = malloc((size_t)(n * 256) * sizeof *images);
  float *want = malloc((size_t)(n * 256) * sizeof *want);
  for (int64_t i = 0; i < n * lper; i++) z_unscaled[i] = (float)(lat[i] / scale);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  assert_int_equal(pg_vae_decode_all(ctx, &m, z_unscaled, n, 5, images), PG_OK);
  assert_int_equal(pg_vae_samples_of(&data.tf, n, images, 16, 16, 1, want), PG_OK);
  assert_close(samples, want, n * 256, 1e-6, 1e-5);
  pg_ctx_free(ctx);
  pg_vae_free(&m);
  free(z_unscaled);
  free(images);
  free(want);
  free(samples);
  free(lat);
  return n;
}

/* The PNG shows the decoded samples: the sheet pg_latents_to_sheet draws
 * from grid.h5's samples in the VAE's training transform, rows labelled. */
static void check_sheet(const char *png, const char *h5, const char *vae, int cols) {
  int64_t ss[4];
  float *samples = read_floats(h5, "samples", ss);
  pg_vae m;
  pg_vae_data_info data;
  assert_int_equal(pg_vae_load(vae, &m, &data), PG_OK);
  pg_latents *ds = pg_latents_open(train_px);
  assert_non_null(ds);
  const int rows = (int)(ss[0] / cols);
  char *names[8], name[512];
  for (int r = 0; r < rows; r++) {
    names[r] = malloc(600);
    pg_latents_class_name(ds->info.class_names, r, name, sizeof name);
    snprintf(names[r], 600, name[0] ? "%d %s" : "%d", r, name);
  }
  pg_latents_close(ds);
  pg_image *want = pg_latents_to_sheet(&data.tf, ss[0], samples, 8, 8, 4, cols, 0, (const char *const *)names);
  assert_non_null(want);
  pg_image *got = pg_png_read(png);
  assert_non_null(got);
  assert_int_equal(got->width, want->width);
  assert_int_equal(got->height, want->height);
  assert_int_equal(got->channels, want->channels);
  assert_memory_equal(got->pixels, want->pixels, (size_t)(want->width * want->height * want->channels));
  pg_image_free(want);
  pg_image_free(got);
  for (int r = 0; r < rows; r++) free(names[r]);
  pg_vae_free(&m);
  free(samples);
}

static void test_decode_stored(void **state) {
  (void)state;
  pg_vae m;
  pg_vae_data_info data;
  assert_int_equal(pg_vae_load(vae_path, &m, &data), PG_OK);
  const int64_t n = 3, lper = 32;
  float x[96], z[96], got[3 * 256], want[3 * 256];
  for (int64_t i = 0; i < n * lper; i++) x[i] = (float)sin(0.37 * (double)i);
  /* values read with --scale 2 --shift 0.5: stored = x * std + mean */
  const pg_latent_transform tf = {.pad = 0, .factor = 1, .mean = 0.25, .std = 0.5};
  for (int64_t i = 0; i < n * lper; i++) z[i] = (float)((x[i] * 0.5 + 0.25) / 0.8);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  assert_int_equal(pg_vae_decode_stored(ctx, &m, 0.8, &tf, x, n, 2, got), PG_OK);
  assert_int_equal(pg_vae_decode_all(ctx, &m, z, n, 2, want), PG_OK);
  assert_close(got, want, n * 256, 1e-6, 1e-5);
  assert_int_equal(pg_vae_decode_stored(ctx, &m, 0, &tf, x, n, 2, got), PG_ERR_ARG);
  assert_error_contains("scale factor 0");

  /* the decoder checks the latent shape against the VAE's */
  pg_vae_decoder d;
  assert_int_not_equal(pg_vae_decoder_load(&d, vae_path, 1.0, (int64_t[]){8, 8, 4}), PG_OK);
  assert_error_contains("decodes [4, 4, 2] latents, the samples are [8, 8, 4]");
  pg_vae_decoder_free(&d);
  assert_int_equal(pg_vae_decoder_load(&d, vae_path, 0.8, (int64_t[]){4, 4, 2}), PG_OK);
  int64_t shape[3];
  pg_vae_decoder_sample_shape(&d, shape);
  assert_int_equal(shape[0], 8);
  assert_int_equal(shape[2], 4);
  float samples[3 * 256], back[3 * 256];
  assert_int_equal(pg_vae_decoder_run(ctx, &d, &tf, x, n, 2, samples), PG_OK);
  assert_int_equal(pg_vae_samples_of(&d.data.tf, n, want, 16, 16, 1, back), PG_OK);
  assert_close(samples, back, n * 256, 1e-6, 1e-5);
  pg_vae_decoder_free(&d);
  pg_ctx_free(ctx);
  pg_vae_free(&m);
}

static void test_train_and_sample_decode(void **state) {
  (void)state;
  pg_train_opts o;
  char out[600], ckpt[700], path[700], png[700], cmd_out[16384];
  tiny_run(&o, z_train, "run", out, sizeof out);
  pg_train_result r;
  assert_int_equal(pg_train(&o, &r), PG_OK);

  /* the checkpoint names the VAE and the scale */
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out);
  pg_kv config;
  pg_kv_init(&config);
  assert_int_equal(pg_checkpoint_load(ckpt, &(pg_checkpoint){.config = &config}), PG_OK);
  const char *named = NULL;
  double scale = 0;
  assert_int_equal(pg_kv_get_string(&config, "vae_checkpoint", &named), 1);
  assert_string_equal(named, vae_path);
  assert_int_equal(pg_kv_get_double(&config, "vae_scale_factor", &scale), 1);
  pg_latents *z = pg_latents_open(z_train);
  assert_float_equal(scale, z->info.scale_factor, 1e-12);
  pg_latents_close(z);
  pg_kv_free(&config);

  /* the closing sheet: decoded, 4 classes x 2 */
  snprintf(path, sizeof path, "%s/samples.h5", out);
  assert_int_equal(check_decoded(path, vae_path), 8);
  snprintf(png, sizeof png, "%s/samples.png", out);
  check_sheet(png, path, vae_path, 2);

  /* patchgrad sample decodes through the VAE, and score reads the result
   * with the classifier of the pixel-space files */
  snprintf(png, sizeof png, "%s/s.png", dir);
  snprintf(path, sizeof path, "%s/s.h5", dir);
  assert_int_equal(pg_test_run(cmd_out, sizeof cmd_out,
                               "'%s/patchgrad' sample --ckpt '%s' --out '%s' --cols 3 --cfg 2 --sample-steps 2 --threads 1",
                               PG_BUILD_DIR, ckpt, png), 0);
  assert_non_null(strstr(cmd_out, "decoded by the VAE"));
  assert_int_equal(check_decoded(path, vae_path), 12);
  check_sheet(png, path, vae_path, 3);
  assert_int_equal(pg_test_run(cmd_out, sizeof cmd_out, "'%s/patchgrad' score --classifier '%s' --samples '%s' --threads 1",
                               PG_BUILD_DIR, vit_path, path), 0);
  assert_non_null(strstr(cmd_out, "agreement"));
  assert_non_null(strstr(cmd_out, "/12 classified"));

  /* the VAE has moved: an error naming it and the way out, then --vae */
  assert_int_equal(rename(vae_path, vae_moved), 0);
  assert_int_equal(pg_test_run(cmd_out, sizeof cmd_out, "'%s/patchgrad' sample --ckpt '%s' --out '%s' --threads 1",
                               PG_BUILD_DIR, ckpt, png), 1);
  char want[2048];
  snprintf(want, sizeof want, "was trained on latents of the VAE %s, which decodes its samples, and it cannot be used", vae_path);
  assert_non_null(strstr(cmd_out, want));
  assert_non_null(strstr(cmd_out, "--vae V.h5"));
  assert_int_equal(pg_test_run(cmd_out, sizeof cmd_out,
                               "'%s/patchgrad' sample --ckpt '%s' --out '%s' --cols 1 --sample-steps 2 --vae '%s' --threads 1",
                               PG_BUILD_DIR, ckpt, png, vae_moved), 0);
  assert_int_equal(check_decoded(path, vae_moved), 4);
  /* training stops before its first step, naming the VAE */
  pg_train_opts o2;
  char out2[600];
  tiny_run(&o2, z_train, "run_moved", out2, sizeof out2);
  assert_int_not_equal(pg_train(&o2, &r), PG_OK);
  snprintf(want, sizeof want, "holds latents of the VAE %s, which decodes the sample sheets", vae_path);
  assert_error_contains(want);
  assert_error_contains("--vae V.h5, or --cols 0");
  /* with --vae the run goes on, and its checkpoint names the new place */
  o2.vae_path = vae_moved;
  assert_int_equal(pg_train(&o2, &r), PG_OK);
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out2);
  pg_kv_init(&config);
  assert_int_equal(pg_checkpoint_load(ckpt, &(pg_checkpoint){.config = &config}), PG_OK);
  assert_int_equal(pg_kv_get_string(&config, "vae_checkpoint", &named), 1);
  assert_string_equal(named, vae_moved);
  pg_kv_free(&config);
  assert_int_equal(rename(vae_moved, vae_path), 0);
}

/* The pixel-space path as it was: samples are the DiT's latents, no
 * decoding, no VAE keys; --vae is refused on such a model. */
static void test_pixel_space_unchanged(void **state) {
  (void)state;
  pg_train_opts o;
  char out[600], ckpt[700], path[700], png[700], cmd_out[8192];
  tiny_run(&o, train_px, "pixel", out, sizeof out);
  pg_train_result r;
  assert_int_equal(pg_train(&o, &r), PG_OK);
  snprintf(path, sizeof path, "%s/samples.h5", out);
  hid_t f = pg_h5_open(path, false);
  assert_true(f >= 0);
  assert_false(pg_h5_exists(f, "diffusion_latents"));
  char desc[512];
  assert_int_equal(pg_h5_attr_string(f, "description", desc, sizeof desc), 1);
  assert_string_equal(desc, "DiT samples in latent space (channels last), before the inverse transform");
  H5Fclose(f);
  int64_t shape[4];
  free(read_floats(path, "samples", shape));
  assert_int_equal(shape[1], 8);
  assert_int_equal(shape[3], 4);
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out);
  pg_kv config;
  pg_kv_init(&config);
  assert_int_equal(pg_checkpoint_load(ckpt, &(pg_checkpoint){.config = &config}), PG_OK);
  assert_null(pg_kv_find(&config, "vae_checkpoint"));
  pg_kv_free(&config);
  snprintf(png, sizeof png, "%s/p.png", dir);
  assert_int_equal(pg_test_run(cmd_out, sizeof cmd_out, "'%s/patchgrad' sample --ckpt '%s' --out '%s' --vae '%s' --threads 1",
                               PG_BUILD_DIR, ckpt, png, vae_path), 2);
  assert_non_null(strstr(cmd_out, "applies to a DiT trained on VAE latents"));
  assert_int_equal(pg_test_run(cmd_out, sizeof cmd_out, "'%s/patchgrad' sample --ckpt '%s' --out '%s' --cols 1 --sample-steps 2 --threads 1",
                               PG_BUILD_DIR, ckpt, png), 0);
  assert_non_null(strstr(cmd_out, "(and the raw latents beside it)"));
  /* train --vae on data that are not VAE latents */
  pg_train_opts o2;
  tiny_run(&o2, train_px, "pixel_vae", out, sizeof out);
  o2.vae_path = vae_path;
  assert_int_equal(pg_train(&o2, &r), PG_ERR_ARG);
  assert_error_contains("holds no VAE latents");
}

int main(void) {
  setenv("OMP_NUM_THREADS", "1", 1);
  setenv("BLIS_NUM_THREADS", "1", 1);
  pg_set_threads(1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_stored),
      cmocka_unit_test(test_train_and_sample_decode),
      cmocka_unit_test(test_pixel_space_unchanged),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
