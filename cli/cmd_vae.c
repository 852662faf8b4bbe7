/* patchgrad vae train|encode|decode|reconstruct: the patch VAE of vae/
 * (vae/train.h and vae/autoencode.h do the work; this file turns flags into
 * options and calls).
 * docs/vae.md describes the model, the files and these commands. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "data_args.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/vae/autoencode.h"
#include "patchgrad/vae/train.h"
#include "stop.h"
#include "train_args.h"

static int usage(FILE *f) {
  fprintf(f,
"usage: patchgrad vae train --data IMAGES.h5 [--val-data TEST.h5] --out DIR [options]\n"
"       patchgrad vae encode --ckpt V.h5 --data IMAGES.h5 --out LATENTS.h5 [options]\n"
"       patchgrad vae decode --data LATENTS.h5 --out IMAGES.png|IMAGES.h5 [options]\n"
"       patchgrad vae reconstruct --ckpt V.h5 --data IMAGES.h5 [options]\n"
"\n"
"IMAGES.h5 is a pixel-space latent file (patchgrad latents --source fashion-mnist);\n"
"the VAE sees its samples as images (depth-to-space, normalised units).\n"
"\n"
"train: the VAE on those images (patchgrad vae train --help lists its options).\n"
"encode: the posterior mean of every image, times a scale factor that gives the\n"
"latents unit variance, as a latent file `patchgrad train` takes (attributes\n"
"scale_factor and vae_checkpoint; labels and class names kept).\n"
"  --scale-factor F      use this scale factor (the test split: the train split's)\n"
"  --scale-factor-from F.h5  use the scale_factor attribute of another encoded file\n"
"  --sample              a draw mean + exp(logvar / 2) eps instead of the mean (--seed)\n"
"  --count N             the first N images (all)\n"
"decode: latents / scale_factor through the decoder. To .png: a sheet of the\n"
"first --count images (64), --cols per row (8); to .h5: every image, as a\n"
"pixel-space latent file of the VAE's training transform (labels kept).\n"
"  --ckpt V.h5           the VAE (default: the file's vae_checkpoint attribute)\n"
"reconstruct: the reconstruction error of images through encoder and decoder\n"
"(z = the posterior mean unless --sample), in the images' normalised units and\n"
"in [0, 1] pixel units (times std^2), and the mean KL per image.\n"
"  --count N             the first N images (all)\n"
"  --sheet P.png         originals above their reconstructions, --per-class K (2)\n"
"                        images of each class (the first in the file), or the\n"
"                        first 2 x --cols images of a file without labels\n"
"  --dump D.h5           x, eps, mean, logvar, z, recon of every image (for the\n"
"                        PyTorch twin, tools/vae_torch.py)\n"
"all: --batch B (256)  --seed X (0)  --threads N (all cores)\n"
"encode, reconstruct: the data flags of training (--data-key, --label-key, --scale,\n"
"--shift, --stats-from) read IMAGES.h5 as vae train did.\n");
  return f == stdout ? 0 : 2;
}

/* The flags every subcommand takes. */
typedef struct {
  const char *ckpt, *data, *out, *scale_from, *sheet, *dump;
  int64_t count, batch, seed, threads, cols, per_class;
  double scale;            /* --scale-factor */
  bool sample;
  pg_data_opts data_opts;  /* how IMAGES.h5 is read (data_args.h) */
} vae_args;

/* 0: go on; 2: a usage error (printed); -1: --help was printed. `needs`
 * names the flags the subcommand requires besides --data ("co": --ckpt
 * and --out). */
static int parse(const char *cmd, int argc, char **argv, const char *needs, vae_args *v) {
  *v = (vae_args){.batch = 256, .cols = 8, .per_class = 2};
  pg_args a = pg_args_begin(cmd, argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) {
      usage(stdout);
      return -1; /* done: exit 0 */
    }
    if (pg_arg_string(&a, "--ckpt", &v->ckpt)) continue;
    if (pg_arg_string(&a, "--data", &v->data)) continue;
    if (pg_arg_string(&a, "--out", &v->out)) continue;
    if (pg_arg_string(&a, "--scale-factor-from", &v->scale_from)) continue;
    if (pg_arg_string(&a, "--sheet", &v->sheet)) continue;
    if (pg_arg_string(&a, "--dump", &v->dump)) continue;
    if (pg_arg_double(&a, "--scale-factor", 1e-30, 1e30, &v->scale)) continue;
    if (pg_arg_data(&a, &v->data_opts)) continue;
    if (pg_arg_switch(&a, "--sample", &v->sample)) continue;
    if (pg_arg_int(&a, "--count", 1, INT64_MAX, &v->count)) continue;
    if (pg_arg_int(&a, "--batch", 1, 1 << 20, &v->batch)) continue;
    if (pg_arg_int(&a, "--cols", 1, 1024, &v->cols)) continue;
    if (pg_arg_int(&a, "--per-class", 1, 1024, &v->per_class)) continue;
    if (pg_arg_int(&a, "--seed", 0, INT64_MAX, &v->seed)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &v->threads)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (!v->data) return pg_args_error(&a, "--data F.h5 is required");
  if (strchr(needs, 'c') && !v->ckpt) return pg_args_error(&a, "--ckpt V.h5 is required");
  if (strchr(needs, 'o') && !v->out) return pg_args_error(&a, "--out F is required");
  if (v->scale > 0 && v->scale_from)
    return pg_args_error(&a, "give --scale-factor or --scale-factor-from, not both");
  pg_set_threads((int)v->threads);
  return 0;
}

static int fail(const char *cmd) {
  pg_cli_print_error(cmd, pg_last_error());
  return 1;
}

/* ---- train ---- */

static int usage_train(FILE *f) {
  pg_vae_train_opts d;
  pg_vae_train_opts_init(&d);
  fprintf(f,
"usage: patchgrad vae train --data TRAIN.h5 [--val-data TEST.h5] [options]\n"
"\n"
"Trains the patch VAE (docs/vae.md) on the images of a pixel-space latent file:\n"
"loss = mse(recon, x) + beta * KL, the KL summed over each image's latent\n"
"values and averaged over the batch. Writes DIR/ckpt.h5, DIR/loss.csv,\n"
"DIR/loss.png and, with test data, DIR/reconstructions.png (test images above\n"
"their reconstructions).\n"
"data\n"
"  --data F.h5           training images (patchgrad latents --source fashion-mnist)\n"
"  --val-data F.h5       held-out images for the reconstruction error (none: no evaluation)\n"
"  --val-count N         use the first N of them (all)\n"
"model (the image shape comes from the data)\n");
  pg_args_usage_fields(f, PG_VAE_CONFIG_FIELDS, pg_vae_config_fields, &d.model, true);
  fprintf(f,
"  --beta B (%g; the weight of the KL term)\n"
"optimisation (AdamW, linear warmup then cosine decay to 0; --optim, --momentum,\n"
"--nesterov, --beta1, --beta2, --schedule, --step-size, --gamma, --precision as in\n"
"patchgrad train)\n"
"  --lr LR (%g)  --weight-decay W (%g)  --warmup N (%lld)  --clip MAX (%g; 0: off)\n"
"  --batch B (%lld)  --epochs E (%lld)  or --steps N\n"
"  --seed X (0)  --threads N (all cores)\n",
          d.beta, d.run.optim.lr, d.run.optim.weight_decay, (long long)d.run.schedule.warmup_steps, d.run.clip,
          (long long)d.run.batch, (long long)d.run.epochs);
  pg_cli_run_usage(f);
  fprintf(f,
"output\n"
"  --out DIR             ckpt.h5, loss.csv, loss.png, reconstructions.png (%s)\n"
"  --val-every N         held-out error every N steps (each epoch; 0: never)\n"
"  --sheet-per-class K   pairs of rows in reconstructions.png (%lld; 0: none)\n"
"  --log-every N (%lld)  --quiet\n",
          d.run.out_dir, (long long)d.sheet_per_class, (long long)d.run.log_every);
  return f == stdout ? 0 : 2;
}

typedef struct {
  const pg_vae_train_opts *o;
  pg_vae_train_result *r;
} vae_job;

static pg_status run_job(void *job) {
  vae_job *t = job;
  return pg_vae_train(t->o, t->r);
}

static int run_train(int argc, char **argv) {
  pg_vae_train_opts o;
  pg_vae_train_opts_init(&o);
  pg_cli_run_flags f;
  pg_cli_run_flags_init(&f, &o.run);
  pg_args a = pg_args_begin("vae train", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage_train(stdout);
    if (pg_cli_run_arg(&a, &f, &o.run)) continue;
    if (pg_arg_string(&a, "--val-data", &o.val_path)) continue;
    if (pg_arg_int(&a, "--val-count", 1, INT64_MAX, &o.val_count)) continue;
    if (pg_arg_field(&a, PG_VAE_CONFIG_FIELDS, pg_vae_config_fields, &o.model)) continue;
    if (pg_arg_double(&a, "--beta", 0, 1e6, &o.beta)) continue;
    if (pg_arg_int(&a, "--sheet-per-class", 0, 64, &o.sheet_per_class)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed || pg_cli_run_finish(&a, &f, &o.run)) return 2;
  pg_vae_train_result r = {0};
  vae_job t = {&o, &r};
  const pg_cli_run_job job = {run_job, &t, &r.local_error, &r.interrupted};
  const int rc = pg_cli_run_launch("vae train", &o.run, &job);
  if (rc >= 0) return rc;
  printf("step %lld: train loss %.5f (mse %.5f, kl %.1f per image, last %lld steps), %.0f s at %.2f steps/s\n",
         (long long)r.step, r.train_loss, r.train_mse, r.train_kl, (long long)r.train_loss_steps, r.seconds,
         r.steps_per_second);
  if (!isnan(r.val_mse)) printf("test: reconstruction mse %.5f (z = the posterior mean), kl %.1f per image\n", r.val_mse, r.val_kl);
  return r.interrupted ? pg_cli_stop_status() : 0;
}

/* ---- encode ---- */

static pg_status scale_of(const vae_args *v, const float *latents, int64_t n, int64_t per,
                          double *scale) {
  if (v->scale > 0) {
    *scale = v->scale;
    return PG_OK;
  }
  if (!v->scale_from) return pg_vae_scale_factor(latents, n, per, scale);
  pg_latents *ds = pg_latents_open(v->scale_from);
  if (!ds) return pg_last_status();
  *scale = ds->info.scale_factor;
  pg_latents_close(ds);
  if (!(*scale > 0))
    return pg_fail(PG_ERR_ARG, "%s has no scale_factor attribute (not written by patchgrad vae encode)",
                   v->scale_from);
  return PG_OK;
}

static int run_encode(int argc, char **argv) {
  const char *cmd = "vae encode";
  vae_args v;
  int rc = parse(cmd, argc, argv, "co", &v);
  if (rc) return rc < 0 ? 0 : rc;
  pg_vae m;
  pg_vae_data_info trained;
  if (pg_vae_load(v.ckpt, &m, &trained)) return fail(cmd);
  pg_latents_info info;
  float *images = NULL, *latents = NULL;
  int64_t *labels = NULL, n = 0, ls[3];
  pg_vae_latent_shape(&m.cfg, ls);
  const int64_t per = ls[0] * ls[1] * ls[2];
  pg_ctx *ctx = NULL;
  pg_rng rng;
  pg_rng_seed(&rng, (uint64_t)v.seed);
  double scale = 0;
  pg_status st = pg_vae_read_images_with(v.data, &v.data_opts, v.count, &m, &trained, &info, &images, &labels, &n);
  if (!st && !(latents = malloc((size_t)(n * per) * sizeof *latents)))
    st = pg_fail(PG_ERR_MEMORY, "out of memory for %lld latents", (long long)n);
  if (!st && !(ctx = pg_ctx_new(0))) st = pg_last_status();
  if (!st) st = pg_vae_encode_all(ctx, &m, images, n, v.batch, v.sample ? &rng : NULL, latents);
  if (!st) st = scale_of(&v, latents, n, per, &scale);
  if (!st) st = pg_vae_write_latents(v.out, &info, v.ckpt, scale, n, ls[0], ls[1], ls[2], latents, labels);
  if (!st)
    printf("wrote %s: %lld latents [%lld, %lld, %lld] (%s), scale_factor %.6g, from %s\n", v.out,
           (long long)n, (long long)ls[0], (long long)ls[1], (long long)ls[2],
           v.sample ? "posterior draws" : "posterior means", scale, v.data);
  pg_ctx_free(ctx);
  free(images);
  free(latents);
  free(labels);
  pg_vae_free(&m);
  return st ? fail(cmd) : 0;
}

/* ---- decode ---- */

static bool ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), t = strlen(tail);
  return n >= t && !strcmp(s + n - t, tail);
}

static int run_decode(int argc, char **argv) {
  const char *cmd = "vae decode";
  vae_args v;
  int rc = parse(cmd, argc, argv, "o", &v);
  if (rc) return rc < 0 ? 0 : rc;
  const bool png = ends_with(v.out, ".png"), h5 = ends_with(v.out, ".h5");
  if (!png && !h5) {
    fprintf(stderr, "patchgrad %s: --out must name a .png sheet or an .h5 file, got '%s'\n", cmd, v.out);
    return 2;
  }
  pg_latents *ds = pg_latents_open(v.data);
  if (!ds) return fail(cmd);
  pg_latents_info info = ds->info;
  const char *ckpt = v.ckpt ? v.ckpt : info.vae_checkpoint;
  pg_status st = PG_OK;
  if (!info.vae_checkpoint[0])
    st = pg_fail(PG_ERR_ARG, "%s holds no VAE latents (no vae_checkpoint attribute: make them with "
                             "patchgrad vae encode)", v.data);
  pg_vae m;
  pg_vae_data_info trained;
  bool loaded = false;
  if (!st && !(st = pg_vae_load(ckpt, &m, &trained))) loaded = true;
  else if (st && !v.ckpt && info.vae_checkpoint[0]) { /* the path the file names, as vae encode wrote it */
    char why[512];
    snprintf(why, sizeof why, "%s", pg_last_error());
    st = pg_fail(st, "%s (the VAE named by %s's vae_checkpoint attribute, a path as given to vae encode; "
                     "give --ckpt V.h5 when it has moved or you run from another folder)",
                 why, v.data);
  }
  int64_t ls[3] = {0};
  if (loaded) pg_vae_latent_shape(&m.cfg, ls);
  if (!st && (info.height != ls[0] || info.width != ls[1] || info.channels != ls[2]))
    st = pg_fail(PG_ERR_ARG, "%s holds [%lld, %lld, %lld] latents, the VAE %s decodes [%lld, %lld, %lld]",
                 v.data, (long long)info.height, (long long)info.width, (long long)info.channels, ckpt,
                 (long long)ls[0], (long long)ls[1], (long long)ls[2]);
  const int64_t want = v.count ? v.count : png ? 64 : info.n, n = want < info.n ? want : info.n;
  const int64_t per = loaded ? m.cfg.height * m.cfg.width * m.cfg.in_channels : 0;
  float *latents = NULL, *images = NULL;
  pg_ctx *ctx = NULL;
  if (!st) {
    latents = malloc((size_t)(n * ds->sample_numel) * sizeof *latents);
    images = malloc((size_t)(n * per) * sizeof *images);
    if (!latents || !images) st = pg_fail(PG_ERR_MEMORY, "out of memory for %lld images", (long long)n);
  }
  if (!st) st = pg_latents_read(ds, 0, n, latents);
  if (!st && !(ctx = pg_ctx_new(0))) st = pg_last_status();
  if (!st) st = pg_vae_decode_stored(ctx, &m, info.scale_factor, NULL, latents, n, v.batch, images);
  if (!st && png) {
    pg_image *grid = pg_vae_images_to_grid(&m, &trained, n, images, (int)v.cols, 2);
    st = grid ? pg_png_write(v.out, grid) : pg_last_status();
    pg_image_free(grid);
  } else if (!st) {
    char desc[512];
    snprintf(desc, sizeof desc, "images decoded by the VAE %.200s from the latents of %.200s", ckpt, v.data);
    st = pg_vae_write_images(v.out, &m, &trained, &info, desc, n, images, ds->labels);
  }
  if (!st) printf("wrote %s: %lld images decoded by %s\n", v.out, (long long)n, ckpt);
  pg_ctx_free(ctx);
  free(latents);
  free(images);
  pg_latents_close(ds);
  if (loaded) pg_vae_free(&m);
  return st ? fail(cmd) : 0;
}

/* ---- reconstruct ---- */

static pg_status write_dump(const char *path, const pg_vae *m, int64_t n, const float *images,
                            const pg_vae_arrays *a) {
  const pg_vae_config *c = &m->cfg;
  int64_t ls[3];
  pg_vae_latent_shape(c, ls);
  const int64_t img[4] = {n, c->height, c->width, c->in_channels}, lat[4] = {n, ls[0], ls[1], ls[2]};
  hid_t f = pg_h5_create_in_memory(path);
  if (f < 0) return pg_last_status();
  pg_status st = pg_h5_write_floats(f, "x", 4, img, images, 0);
  st = st ? st : pg_h5_write_floats(f, "eps", 4, lat, a->eps, 0);
  st = st ? st : pg_h5_write_floats(f, "mean", 4, lat, a->mean, 0);
  st = st ? st : pg_h5_write_floats(f, "logvar", 4, lat, a->logvar, 0);
  st = st ? st : pg_h5_write_floats(f, "z", 4, lat, a->z, 0);
  st = st ? st : pg_h5_write_floats(f, "recon", 4, img, a->recon, 0);
  st = st ? st : pg_h5_set_attr_string(f, "description",
                                       "patchgrad vae reconstruct: images x, the draws eps, the encoder's "
                                       "mean and logvar, z = mean + exp(logvar / 2) eps, and the "
                                       "decoder's recon (channels last)");
  if (st) {
    H5Fclose(f);
    return st;
  }
  return pg_h5_commit_image(f, path);
}

static int run_reconstruct(int argc, char **argv) {
  const char *cmd = "vae reconstruct";
  vae_args v;
  int rc = parse(cmd, argc, argv, "c", &v);
  if (rc) return rc < 0 ? 0 : rc;
  pg_vae m;
  pg_vae_data_info trained;
  if (pg_vae_load(v.ckpt, &m, &trained)) return fail(cmd);
  pg_latents_info info;
  float *images = NULL;
  int64_t *labels = NULL, n = 0, ls[3];
  pg_vae_latent_shape(&m.cfg, ls);
  const int64_t per = m.cfg.height * m.cfg.width * m.cfg.in_channels, lper = ls[0] * ls[1] * ls[2];
  pg_vae_arrays a = {0};
  pg_ctx *ctx = NULL;
  pg_rng rng;
  pg_rng_seed(&rng, (uint64_t)v.seed);
  double mse = 0, kl = 0;
  pg_status st = pg_vae_read_images_with(v.data, &v.data_opts, v.count, &m, &trained, &info, &images, &labels, &n);
  if (!st) {
    a.recon = malloc((size_t)(n * per) * sizeof(float));
    if (v.dump) {
      a.eps = malloc((size_t)(n * lper) * sizeof(float));
      a.mean = malloc((size_t)(n * lper) * sizeof(float));
      a.logvar = malloc((size_t)(n * lper) * sizeof(float));
      a.z = malloc((size_t)(n * lper) * sizeof(float));
    }
    if (!a.recon || (v.dump && (!a.eps || !a.mean || !a.logvar || !a.z)))
      st = pg_fail(PG_ERR_MEMORY, "out of memory for %lld reconstructions", (long long)n);
  }
  if (!st && !(ctx = pg_ctx_new(0))) st = pg_last_status();
  if (!st) st = pg_vae_reconstruct_all(ctx, &m, images, n, v.batch, v.sample ? &rng : NULL, &a, &mse, &kl);
  if (!st) {
    const double s2 = trained.tf.std * trained.tf.std;
    printf("%s: %lld images [%lld, %lld, %lld] through %s (z = %s)\n", v.data, (long long)n,
           (long long)m.cfg.height, (long long)m.cfg.width, (long long)m.cfg.in_channels, v.ckpt,
           v.sample ? "a posterior draw" : "the posterior mean");
    printf("reconstruction MSE %.6f (normalised units), %.6f in [0, 1] pixels (PSNR %.2f dB); "
           "KL %.2f per image\n", mse, mse * s2, 10.0 * log10(1.0 / (mse * s2)), kl);
  }
  if (!st && v.sheet)
    st = pg_vae_write_sheet(v.sheet, &m, &trained, images, a.recon, labels, labels ? info.num_classes : 0,
                            n, v.per_class, v.cols);
  if (!st && v.sheet) printf("wrote %s: originals above their reconstructions\n", v.sheet);
  if (!st && v.dump) st = write_dump(v.dump, &m, n, images, &a);
  if (!st && v.dump) printf("wrote %s: x, eps, mean, logvar, z, recon\n", v.dump);
  pg_ctx_free(ctx);
  free(images);
  free(labels);
  free(a.recon);
  free(a.eps);
  free(a.mean);
  free(a.logvar);
  free(a.z);
  pg_vae_free(&m);
  return st ? fail(cmd) : 0;
}

int pg_cmd_vae(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*run)(int, char **);
  } subs[] = {{"train", run_train},
              {"encode", run_encode},
              {"decode", run_decode},
              {"reconstruct", run_reconstruct}};
  for (size_t i = 0; argc >= 2 && i < sizeof subs / sizeof *subs; i++)
    if (!strcmp(argv[1], subs[i].name)) return subs[i].run(argc - 1, argv + 1);
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return usage(stdout);
  fprintf(stderr, "patchgrad vae: %s\n", argc < 2 ? "say train, encode, decode or reconstruct"
                                                  : "the first word must be train, encode, decode or reconstruct");
  return usage(stderr);
}
