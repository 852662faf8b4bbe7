/* The DiT as a model of the training loop (train/run.h): its callbacks,
 * then pg_train, which checks the options and runs the loop. */
#include "patchgrad/dit/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/data/latent_image.h"
#include "patchgrad/dit/sample_sheet.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/train/run.h"

void pg_train_opts_init(pg_train_opts *o) {
  *o = (pg_train_opts){
      .run = {.batch = 64, .steps = 1000, .seed = 0, .optim = pg_optim_adamw(1e-4), .out_dir = "out",
              .val_every = 250, .ckpt_every = 1000, .log_every = 50},
      .val_count = 1024,
      .model = {.patch_size = 2, .hidden = 128, .depth = 4, .heads = 4, .mlp_ratio = 4,
                .class_dropout = 0.1f},
      .sample_cols = 8,
      .sample_steps = 50,
      .sample_cfg = 4.0f,
  };
  o->run.optim.weight_decay = 0;
  o->run.schedule = pg_schedule_make(PG_SCHEDULE_CONSTANT, 1e-4);
}

/* The DiT's side of a run. */
typedef struct {
  const pg_train_opts *o;
  pg_dit model;
  bool model_ready;
  pg_diffusion diff;
  pg_latent_transform transform; /* how the data was made: the sampler inverts it */
  const char *class_names;       /* the data's ("0 name, 1 name, ..."), for the sheets */
  /* VAE latents: the VAE that decodes them (path as the data or --vae
   * give it) and the data's scale factor; vae loaded when sheets are due */
  char vae_path[sizeof ((pg_latents_info *)0)->vae_checkpoint];
  double vae_scale;
  pg_vae_decoder vae;
  /* validation at fixed draws */
  int64_t val_n;
  float *val_x, *val_t, *val_eps;
  int64_t *val_y;
  const pg_run *run;             /* from prepare: the ranks */
} dit_run;

/* The model's config from the options and the data's shape. */
static pg_status model_config(const dit_run *d, const pg_latents_info *info, pg_dit_config *c) {
  *c = d->o->model;
  const char *data = d->o->run.data_path;
  if (info->height != info->width)
    return pg_fail(PG_ERR_ARG, "train: %s holds %lldx%lld latents; the DiT needs square ones", data,
                   (long long)info->height, (long long)info->width);
  if (c->input_size && c->input_size != info->height)
    return pg_fail(PG_ERR_ARG, "train: %s holds %lldx%lld latents, the model was asked for input size %lld",
                   data, (long long)info->height, (long long)info->width, (long long)c->input_size);
  c->input_size = info->height;
  if (c->in_channels && c->in_channels != info->channels)
    return pg_fail(PG_ERR_ARG, "train: %s has %lld channels, the model was asked for %lld", data,
                   (long long)info->channels, (long long)c->in_channels);
  c->in_channels = info->channels;
  c->num_classes = d->o->unconditional ? 0 : info->num_classes;
  if (c->patch_size < 1 || info->height % c->patch_size)
    return pg_fail(PG_ERR_ARG,
                   "train: %s holds %lldx%lld latents, which patch size %lld does not divide "
                   "(choose --patch among the divisors of %lld)",
                   data, (long long)info->height, (long long)info->width, (long long)c->patch_size,
                   (long long)info->height);
  if (c->num_classes > 0 && !info->has_labels)
    return pg_fail(PG_ERR_ARG, "train: a conditional model needs labels, and %s has none", data);
  return pg_dit_config_check(c);
}

static pg_status dit_build(void *self, const pg_latents_info *info, pg_rng *rng, pg_params **params) {
  dit_run *d = self;
  d->transform = pg_latent_transform_of(info);
  d->class_names = info->class_names;
  if (d->o->vae_path && !info->vae_checkpoint[0])
    return pg_fail(PG_ERR_ARG, "train: --vae %s: %s holds no VAE latents (no vae_checkpoint attribute: "
                               "make them with patchgrad vae encode)", d->o->vae_path, d->o->run.data_path);
  if (info->vae_checkpoint[0]) {
    const char *vae = d->o->vae_path ? d->o->vae_path : info->vae_checkpoint;
    if ((size_t)snprintf(d->vae_path, sizeof d->vae_path, "%s", vae) >= sizeof d->vae_path)
      return pg_fail(PG_ERR_ARG, "train: --vae: path too long (%zu characters, at most %zu)", strlen(vae),
                     sizeof d->vae_path - 1);
    d->vae_scale = info->scale_factor;
  }
  pg_dit_config cfg;
  pg_status st = model_config(d, info, &cfg);
  if (st || (st = pg_dit_init(&d->model, &cfg, rng))) return st;
  d->model_ready = true;
  if ((st = pg_diffusion_init_with(&d->diff, d->o->noise_schedule, d->o->min_snr_gamma)))
    return pg_fail(st, "train: %s", pg_last_error());
  *params = &d->model.params;
  return PG_OK;
}

static pg_status dit_check_resume(void *self, const pg_kv *config, const char *path) {
  const dit_run *d = self;
  const pg_dit_config *m = &d->model.cfg;
  pg_dit_config c = *m;
  pg_status st = pg_dit_config_from_kv(config, &c);
  if (st) return st;
  if (c.input_size != m->input_size || c.in_channels != m->in_channels ||
      c.patch_size != m->patch_size || c.hidden != m->hidden || c.depth != m->depth ||
      c.heads != m->heads || c.mlp_ratio != m->mlp_ratio || c.num_classes != m->num_classes)
    return pg_fail(PG_ERR_ARG,
                   "train: %s holds a model (input %lld, channels %lld, patch %lld, hidden %lld, "
                   "depth %lld, heads %lld, classes %lld) other than the one asked for (input %lld, "
                   "channels %lld, patch %lld, hidden %lld, depth %lld, heads %lld, classes %lld)",
                   path, (long long)c.input_size, (long long)c.in_channels, (long long)c.patch_size,
                   (long long)c.hidden, (long long)c.depth, (long long)c.heads,
                   (long long)c.num_classes, (long long)m->input_size, (long long)m->in_channels,
                   (long long)m->patch_size, (long long)m->hidden, (long long)m->depth,
                   (long long)m->heads, (long long)m->num_classes);
  /* the label dropout shapes the trajectory: it is part of the run */
  if (c.class_dropout != m->class_dropout)
    return pg_fail(PG_ERR_ARG, "train: --class-dropout %g differs from the checkpoint's %g (%s)",
                   (double)m->class_dropout, (double)c.class_dropout, path);
  /* and so do the noise schedule and the loss weighting */
  pg_diffusion was;
  if ((st = pg_diffusion_from_kv(config, path, &was))) return st;
  if (was.schedule != d->diff.schedule)
    return pg_fail(PG_ERR_ARG, "train: --noise-schedule %s differs from the checkpoint's %s (%s)",
                   pg_noise_schedule_name(d->diff.schedule), pg_noise_schedule_name(was.schedule), path);
  if (was.min_snr_gamma != d->diff.min_snr_gamma)
    return pg_fail(PG_ERR_ARG, "train: --min-snr %g differs from the checkpoint's %g (%s)", d->diff.min_snr_gamma,
                   was.min_snr_gamma, path);
  return PG_OK;
}

/* The checkpoint's config: the model's, and what the sampler needs to turn
 * latents back into images. */
static pg_status dit_config(void *self, pg_kv *config) {
  const dit_run *d = self;
  pg_status st = pg_dit_config_to_kv(&d->model.cfg, config);
  st = st ? st : pg_diffusion_to_kv(&d->diff, config);
  st = st ? st : pg_kv_set_double(config, "data_mean", d->transform.mean);
  st = st ? st : pg_kv_set_double(config, "data_std", d->transform.std);
  st = st ? st : pg_kv_set_int(config, "data_pad", d->transform.pad);
  st = st ? st : pg_kv_set_int(config, "data_space_to_depth", d->transform.factor);
  /* the rows' labels of `patchgrad sample` (a file without names: none) */
  if (d->class_names && d->class_names[0]) st = st ? st : pg_kv_set_string(config, "data_class_names", d->class_names);
  /* VAE latents: the VAE that decodes samples, and their scale */
  if (d->vae_path[0]) {
    st = st ? st : pg_kv_set_string(config, "vae_checkpoint", d->vae_path);
    st = st ? st : pg_kv_set_double(config, "vae_scale_factor", d->vae_scale);
  }
  return st;
}

/* init.h5: the weights before the first step, so that a twin of the run in
 * another framework can start from exactly the same model. */
static pg_status save_initial(dit_run *d, const char *path) {
  pg_kv config;
  pg_kv_init(&config);
  pg_status st = pg_dit_config_to_kv(&d->model.cfg, &config);
  pg_checkpoint ck = {.config = &config, .params = &d->model.params};
  st = st ? st : pg_checkpoint_save(path, &ck);
  pg_kv_free(&config);
  return st;
}

/* The validation draws, for a PyTorch twin of the run: val_draws.h5. */
static pg_status write_val_draws(const dit_run *d, const pg_run *run) {
  char path[PG_RUN_PATH_MAX];
  if (!pg_run_path(run, "val_draws.h5", path)) return PG_OK;
  const pg_dit_config *c = &d->model.cfg;
  const int64_t n = d->val_n;
  hid_t f = pg_h5_create_in_memory(path); /* written out atomically (io/h5util.h) */
  if (f < 0) return pg_last_status();
  int64_t shape4[4] = {n, c->input_size, c->input_size, c->in_channels};
  pg_status st = pg_h5_write_floats(f, "x0", 4, shape4, d->val_x, 0);
  st = st ? st : pg_h5_write_floats(f, "eps", 4, shape4, d->val_eps, 0);
  st = st ? st : pg_h5_write_floats(f, "t", 1, &n, d->val_t, 0);
  st = st ? st : pg_h5_write_int64(f, "y", 1, &n, d->val_y);
  st = st ? st : pg_h5_set_attr_string(f, "description", "validation set of a patchgrad train run: x0, and the fixed timesteps t and noise eps it is evaluated at");
  if (st) {
    H5Fclose(f);
    return st;
  }
  return pg_h5_commit_image(f, path);
}

/* Validation set: the first val_count samples of val_path, each with a
 * timestep and a noise drawn once from the seed, so every evaluation (and a
 * PyTorch twin reading val_draws.h5) sees the same problem. */
static pg_status setup_validation(dit_run *d, const pg_run *run) {
  const pg_train_opts *o = d->o;
  if (!o->val_path) return PG_OK;
  pg_latents *ds = pg_latents_open_with(o->val_path, &o->run.data, false);
  if (!ds) return pg_last_status();
  const pg_dit_config *c = &d->model.cfg;
  pg_status st = PG_OK;
  if (ds->info.height != c->input_size || ds->info.width != c->input_size ||
      ds->info.channels != c->in_channels)
    st = pg_fail(PG_ERR_ARG, "train: validation file %s holds [%lld, %lld, %lld] latents, the training data [%lld, %lld, %lld]",
                 o->val_path, (long long)ds->info.height, (long long)ds->info.width,
                 (long long)ds->info.channels, (long long)c->input_size, (long long)c->input_size,
                 (long long)c->in_channels);
  else if (c->num_classes > 0 && !ds->labels)
    st = pg_fail(PG_ERR_ARG, "train: validation file %s has no labels, the model is conditional", o->val_path);
  int64_t n = o->val_count < ds->info.n ? o->val_count : ds->info.n, per = ds->sample_numel;
  if (!st) {
    d->val_n = n;
    d->val_x = malloc((size_t)(n * per) * sizeof(float));
    d->val_eps = malloc((size_t)(n * per) * sizeof(float));
    d->val_t = malloc((size_t)n * sizeof(float));
    d->val_y = malloc((size_t)n * sizeof(int64_t));
    if (!d->val_x || !d->val_eps || !d->val_t || !d->val_y)
      st = pg_fail(PG_ERR_MEMORY, "train: out of memory for %lld validation samples", (long long)n);
  }
  if (!st) st = pg_latents_read(ds, 0, n, d->val_x);
  if (!st) {
    for (int64_t i = 0; i < n; i++) {
      d->val_y[i] = ds->labels ? ds->labels[i] : 0;
      if (d->val_y[i] >= c->num_classes && c->num_classes > 0)
        st = pg_fail(PG_ERR_ARG, "train: validation label %lld of sample %lld is not below the model's %lld classes",
                     (long long)d->val_y[i], (long long)i, (long long)c->num_classes);
    }
    pg_rng vr;
    pg_rng_seed(&vr, o->run.seed ^ 0x5eed5eed5eedULL);
    for (int64_t i = 0; i < n; i++) d->val_t[i] = (float)pg_rng_below(&vr, PG_DIFFUSION_T);
    for (int64_t i = 0; i < n * per; i++) d->val_eps[i] = pg_rng_normal(&vr);
  }
  pg_latents_close(ds);
  return st ? st : write_val_draws(d, run);
}

/* The VAE that decodes the sheets, loaded before the first step so that a
 * VAE that has moved stops the run before it trains. */
static pg_status load_vae(dit_run *d) {
  const pg_dit_config *c = &d->model.cfg;
  const int64_t shape[3] = {c->input_size, c->input_size, c->in_channels};
  if (!pg_vae_decoder_load(&d->vae, d->vae_path, d->vae_scale, shape)) return PG_OK;
  char why[1024];
  snprintf(why, sizeof why, "%s", pg_last_error());
  return pg_fail(pg_last_status(), "train: %s holds latents of the VAE %s, which decodes the sample sheets, "
                 "and it cannot be used: %s (give the VAE with --vae V.h5, or --cols 0 for no sheets)",
                 d->o->run.data_path, d->vae_path, why);
}

static pg_status dit_prepare(void *self, pg_run *run) {
  dit_run *d = self;
  d->run = run;
  char path[PG_RUN_PATH_MAX];
  pg_status st = PG_OK;
  if (d->vae_path[0] && d->o->sample_cols > 0) st = load_vae(d);
  if (!st && !run->resumed && pg_run_path(run, "init.h5", path)) st = save_initial(d, path);
  return st ? st : setup_validation(d, run);
}

/* Each sample's timestep, noise and class dropout come from its own
 * generator keyed by (seed, step, place in the global batch), drawn in that
 * order, so a data-parallel run draws what one process draws. */
static pg_tensor *dit_loss(void *self, pg_ctx *ctx, const pg_batch *b, pg_rng *rng, double *metrics) {
  (void)metrics, (void)rng;
  dit_run *d = self;
  const pg_dit_config *c = &d->model.cfg;
  const int64_t n = b->x->numel / (b->count ? b->count : 1);
  const bool labelled = c->num_classes > 0;
  float *t = pg_ctx_alloc(ctx, (size_t)b->count * sizeof *t);
  float *eps = pg_ctx_alloc(ctx, (size_t)(b->count * n) * sizeof *eps);
  int64_t *y = labelled ? pg_ctx_alloc(ctx, (size_t)b->count * sizeof *y) : NULL;
  if (!t || !eps || (labelled && !y)) return NULL;
  for (int64_t i = 0; i < b->count; i++) {
    pg_rng r;
    pg_rng_seed_keyed(&r, b->seed, (uint64_t)b->step, (uint64_t)(b->first + i));
    t[i] = (float)pg_rng_below(&r, PG_DIFFUSION_T);
    for (int64_t j = 0; j < n; j++) eps[i * n + j] = pg_rng_normal(&r);
    if (!labelled) continue;
    y[i] = b->labels[i];
    if (c->class_dropout > 0 && pg_rng_uniform(&r) < c->class_dropout) y[i] = c->num_classes;
  }
  /* the draws are made: the loss itself draws nothing (training false) */
  return pg_diffusion_loss(ctx, &d->model, &d->diff, b->x, y, false, NULL, t, eps);
}

/* The diffusion loss at the fixed draws, in batches of the run's size;
 * with several ranks each evaluates its share and the sums are added. */
static pg_status dit_validate(void *self, pg_ctx *ctx, double *values) {
  dit_run *d = self;
  const pg_dit_config *c = &d->model.cfg;
  const int64_t per = c->input_size * c->input_size * c->in_channels, bs = d->o->run.batch;
  int64_t begin, end;
  pg_run_share(d->run, d->val_n, &begin, &end);
  double total = 0;
  for (int64_t s = begin; s < end; s += bs) {
    int64_t n = end - s < bs ? end - s : bs;
    pg_ctx_reset(ctx);
    pg_tensor *x0 = pg_from_array(ctx, 4, (int64_t[]){n, c->input_size, c->input_size, c->in_channels},
                                  d->val_x + s * per);
    pg_tensor *loss = pg_diffusion_loss(ctx, &d->model, &d->diff, x0, c->num_classes ? d->val_y + s : NULL,
                                        false, NULL, d->val_t + s, d->val_eps + s * per);
    if (!loss) return pg_last_status();
    total += (double)loss->data[0] * (double)n;
  }
  pg_status st = pg_dist_allreduce_sum(d->run->dist, &total, 1);
  values[0] = total / (double)d->val_n;
  return st;
}

/* A sample sheet of the model as it is (the loop puts the EMA weights in
 * place when kept): out_dir/name (and its .h5), DDIM at the sheet options,
 * from the run's seed (its own generator: the training draws are not
 * touched). */
static pg_status write_sheet(dit_run *d, pg_run *run, const char *name, bool quiet) {
  const pg_train_opts *o = d->o;
  char path[PG_RUN_PATH_MAX];
  if (o->sample_cols <= 0 || !pg_run_path(run, name, path)) return PG_OK;
  pg_sample_sheet_opts so = {.sampler = {.kind = PG_SAMPLER_DDIM, .steps = o->sample_steps,
                                         .cfg_scale = o->sample_cfg, .seed = o->run.seed},
                             .per_class = o->sample_cols, .class_id = -1,
                             .class_names = d->class_names, .vae = d->vae.loaded ? &d->vae : NULL};
  return pg_sample_sheet(run->ctx, &d->model, &d->diff, &d->transform, &so, path, quiet);
}

/* samples.png (and samples.h5) at the end. */
static pg_status dit_finish(void *self, pg_run *run) {
  dit_run *d = self;
  return write_sheet(d, run, "samples.png", run->opts->quiet);
}

/* samples-000500.png (and .h5) every sample_every steps. */
static pg_status dit_snapshot(void *self, pg_run *run) {
  dit_run *d = self;
  char name[64];
  snprintf(name, sizeof name, "samples-%06lld.png", (long long)run->step);
  pg_status st = write_sheet(d, run, name, true);
  if (!st && !run->opts->quiet && d->o->sample_cols > 0 && run->opts->out_dir)
    fprintf(stderr, "%sstep %lld: wrote %s\n", run->tty ? "\n" : "", (long long)run->step, name);
  return st;
}

static void dit_run_free(dit_run *d) {
  if (d->model_ready) pg_dit_free(&d->model);
  pg_vae_decoder_free(&d->vae);
  free(d->val_x);
  free(d->val_t);
  free(d->val_eps);
  free(d->val_y);
}

/* The tensors sized by the number of classes: the label table. */
static const char *const class_tensors[] = {"y_embedder.*", NULL};

pg_status pg_train(const pg_train_opts *o, pg_train_result *res) {
  memset(res, 0, sizeof *res);
  res->val_loss = NAN;

  dit_run d = {.o = o};
  const pg_run_model model = {
      .name = "train",
      .self = &d,
      .n_val = 1,
      .build = dit_build,
      .check_resume = dit_check_resume,
      .prepare = dit_prepare,
      .loss = dit_loss,
      .validate = o->val_path ? dit_validate : NULL,
      .config = dit_config,
      .finish = dit_finish,
      .snapshot = dit_snapshot,
      .snapshot_every = o->sample_every,
      .extra_files = o->sample_cols > 0 ? "samples.png" : NULL,
      .class_tensors = class_tensors,
  };
  pg_run_result r;
  pg_status st = pg_run_training(&o->run, &model, &r);
  res->step = r.step;
  res->train_loss = r.train_loss;
  res->train_loss_steps = r.train_loss_steps;
  res->val_loss = r.val[0];
  res->steps_per_second = r.seconds > 0 ? (double)r.steps_done / r.seconds : 0;
  res->interrupted = r.stopped;
  res->local_error = r.local_error;
  res->reduced_numel = r.reduced_numel;
  res->optim_state_numel = r.optim_state_numel;
  dit_run_free(&d);
  return st;
}
