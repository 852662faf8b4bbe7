#include "patchgrad/vae/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/ops.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/train/run.h"
#include "patchgrad/vae/autoencode.h"

void pg_vae_train_opts_init(pg_vae_train_opts *o) {
  *o = (pg_vae_train_opts){
      .run = {.batch = 64, .epochs = 1, .seed = 0, .optim = pg_optim_adamw(2e-3), .clip = 1.0,
              .warmup_within_run = true, .out_dir = "out-vae", .log_every = 50},
      .model = {.patch_size = 4, .latent_channels = 4, .hidden = 64, .encoder_depth = 2,
                .decoder_depth = 2, .heads = 4, .mlp_ratio = 2},
      .beta = 1e-5,
      .sheet_per_class = 2,
  };
  o->run.optim.weight_decay = 0.0;
  o->run.schedule = pg_schedule_make(PG_SCHEDULE_COSINE, o->run.optim.lr); /* to 0 at the last step */
  o->run.schedule.warmup_steps = 100;
}

/* The VAE's side of a run. */
typedef struct {
  const pg_vae_train_opts *o;
  pg_latents_info info;    /* the training data */
  pg_vae_data_info data;   /* its transform */
  int64_t sample[3];       /* one sample of the file [h, w, c] */
  pg_vae model;
  bool model_ready;
  float *val_x, *val_recon; /* the held-out images, in memory, and their reconstructions */
  int64_t *val_y, val_n;
  pg_latents_info val_info;
  double val_mse, val_kl;  /* the last evaluation */
} vae_run;

static pg_status vae_build(void *self, const pg_latents_info *info, pg_rng *rng, pg_params **params) {
  vae_run *v = self;
  const pg_vae_train_opts *o = v->o;
  v->info = *info;
  v->data = pg_vae_data_info_of(info);
  v->sample[0] = info->height;
  v->sample[1] = info->width;
  v->sample[2] = info->channels;
  if (info->n / o->run.batch < 1)
    return pg_fail(PG_ERR_ARG, "vae: %s has fewer images than one batch of %lld", o->run.data_path, (long long)o->run.batch);
  if (info->vae_checkpoint[0])
    return pg_fail(PG_ERR_ARG, "vae: %s holds VAE latents (of %s), not images", o->run.data_path, info->vae_checkpoint);
  int64_t img[3];
  if (pg_vae_image_shape(info, o->run.data_path, img)) return pg_last_status();
  pg_vae_config c = o->model;
  if ((c.height && c.height != img[0]) || (c.width && c.width != img[1]) || (c.in_channels && c.in_channels != img[2]))
    return pg_fail(PG_ERR_ARG, "vae: %s holds [%lld, %lld, %lld] images, the model was asked for [%lld, %lld, %lld]",
                   o->run.data_path, (long long)img[0], (long long)img[1], (long long)img[2], (long long)c.height,
                   (long long)c.width, (long long)c.in_channels);
  c.height = img[0];
  c.width = img[1];
  c.in_channels = img[2];
  pg_status st = pg_vae_init(&v->model, &c, rng);
  if (st) return st;
  v->model_ready = true;
  *params = &v->model.params;
  return PG_OK;
}

/* The held-out images (the first val_count of val_path), in memory. */
static pg_status vae_prepare(void *self, pg_run *run) {
  (void)run;
  vae_run *v = self;
  const pg_vae_train_opts *o = v->o;
  if (!o->val_path) return PG_OK;
  pg_status st = pg_vae_read_images_with(o->val_path, &o->run.data, o->val_count, &v->model, &v->data,
                                         &v->val_info, &v->val_x, &v->val_y, &v->val_n);
  if (st) return st;
  const pg_vae_config *c = &v->model.cfg;
  if (!(v->val_recon = malloc((size_t)(v->val_n * c->height * c->width * c->in_channels) * sizeof(float))))
    return pg_fail(PG_ERR_MEMORY, "vae: out of memory for the held-out reconstructions");
  return PG_OK;
}

/* mse + beta * KL of the batch's images; metrics: the two terms, summed
 * over the batch's images. */
static pg_tensor *vae_loss(void *self, pg_ctx *ctx, const pg_batch *b, pg_rng *rng, double *metrics) {
  vae_run *v = self;
  const pg_vae_config *c = &v->model.cfg;
  pg_tensor *x = pg_empty(ctx, 4, (int64_t[]){b->count, c->height, c->width, c->in_channels});
  if (!x || pg_vae_images_of(&v->data.tf, b->count, b->x->data, v->sample[0], v->sample[1], v->sample[2], x->data))
    return NULL;
  /* each sample's eps from its own keyed generator (train/run.h's pg_batch):
   * a data-parallel run draws what one process draws */
  (void)rng;
  int64_t ls[3];
  pg_vae_latent_shape(c, ls);
  const int64_t per = ls[0] * ls[1] * ls[2];
  pg_tensor *eps = pg_empty(ctx, 4, (int64_t[]){b->count, ls[0], ls[1], ls[2]});
  if (!eps) return NULL;
  for (int64_t i = 0; i < b->count; i++) {
    pg_rng r;
    pg_rng_seed_keyed(&r, b->seed, (uint64_t)b->step, (uint64_t)(b->first + i));
    for (int64_t j = 0; j < per; j++) eps->data[i * per + j] = pg_rng_normal(&r);
  }
  pg_vae_output out;
  if (pg_vae_forward(ctx, &v->model, x, eps, NULL, &out)) return NULL;
  pg_tensor *rec, *kl, *loss = pg_vae_loss(ctx, &out, x, (float)v->o->beta, &rec, &kl);
  if (!loss) return NULL;
  metrics[0] += (double)rec->data[0] * (double)b->count;
  metrics[1] += (double)kl->data[0] * (double)b->count;
  return loss;
}

/* values: the held-out loss mse + beta * KL, its reconstruction MSE and
 * mean KL per image (z = the posterior mean). */
static pg_status vae_validate(void *self, pg_ctx *ctx, double *values) {
  vae_run *v = self;
  pg_status st = pg_vae_reconstruct_all(ctx, &v->model, v->val_x, v->val_n, 256, NULL,
                                        &(pg_vae_arrays){.recon = v->val_recon}, &v->val_mse, &v->val_kl);
  values[0] = v->val_mse + v->o->beta * v->val_kl;
  values[1] = v->val_mse;
  values[2] = v->val_kl;
  return st;
}

static pg_status vae_config(void *self, pg_kv *config) {
  const vae_run *v = self;
  return pg_vae_checkpoint_config(&v->model, &v->data, v->o->beta, config);
}

/* The sheet of held-out originals above their reconstructions, from the
 * last validation (at the last step). */
static pg_status vae_finish(void *self, pg_run *run) {
  vae_run *v = self;
  char path[PG_RUN_PATH_MAX];
  if (!v->val_n || v->o->sheet_per_class < 1 || !pg_run_path(run, "reconstructions.png", path)) return PG_OK;
  return pg_vae_write_sheet(path, &v->model, &v->data, v->val_x, v->val_recon, v->val_y,
                            v->val_y ? v->val_info.num_classes : 0, v->val_n, v->o->sheet_per_class, 10);
}

/* The start line names the shapes and the data; the rest is the loop's
 * (pg_run_report_default). */
static void vae_report(void *self, const pg_run *run, pg_run_event event) {
  const vae_run *v = self;
  const pg_run_opts *o = run->opts;
  if (event != PG_RUN_START) {
    pg_run_report_default(self, run, event);
    return;
  }
  const pg_vae_config *c = &v->model.cfg;
  int64_t ls[3];
  pg_vae_latent_shape(c, ls);
  fprintf(stderr, "vae: [%lld, %lld, %lld] images -> [%lld, %lld, %lld] latents, %lld parameters, %lld steps of "
                  "batch %lld, %s lr %.2e, beta %g, %lld training images, %lld held out\n",
          (long long)c->height, (long long)c->width, (long long)c->in_channels, (long long)ls[0], (long long)ls[1],
          (long long)ls[2], (long long)pg_params_numel(run->params, true), (long long)run->total,
          (long long)o->batch, pg_optim_kind_name(o->optim.kind), o->optim.lr, v->o->beta, (long long)v->info.n,
          (long long)v->val_n);
  fflush(stderr);
}

/* The VAE's columns of loss.csv (val_loss is the held-out mse + beta * KL). */
static const pg_run_column vae_columns[] = {
    {"train_mse", PG_COL_METRIC, 0, "%.6g", NULL},
    {"train_kl", PG_COL_METRIC, 1, "%.6g", NULL},
    {"val_mse", PG_COL_VAL, 1, "%.6g", NULL},
    {"val_kl", PG_COL_VAL, 2, "%.6g", NULL},
};

pg_status pg_vae_train(const pg_vae_train_opts *o, pg_vae_train_result *res) {
  memset(res, 0, sizeof *res);
  res->val_mse = res->val_kl = NAN;
  if (!(o->beta >= 0) || !isfinite(o->beta)) return pg_fail(PG_ERR_ARG, "vae: beta must be a number >= 0, got %g", o->beta);

  vae_run v = {.o = o, .val_mse = NAN, .val_kl = NAN};
  const pg_run_model model = {
      .name = "vae",
      .self = &v,
      .n_metrics = 2,
      .n_val = 3,
      .build = vae_build,
      .prepare = vae_prepare,
      .loss = vae_loss,
      .validate = o->val_path ? vae_validate : NULL,
      .config = vae_config,
      .finish = vae_finish,
      .report = vae_report,
      .extra_files = o->val_path && o->sheet_per_class > 0 ? "reconstructions.png" : NULL,
      PG_RUN_ONE_GO(vae_columns),
  };
  pg_run_result r;
  pg_status st = pg_run_training(&o->run, &model, &r);
  res->step = r.step;
  res->train_loss = r.train_loss;
  res->train_loss_steps = r.train_loss_steps;
  res->train_mse = r.metrics[0];
  res->train_kl = r.metrics[1];
  res->val_mse = v.val_mse;
  res->val_kl = v.val_kl;
  res->seconds = r.train_seconds;
  res->steps_per_second = r.train_seconds > 0 ? (double)r.step / r.train_seconds : 0;
  res->interrupted = r.stopped;
  res->local_error = r.local_error;
  if (v.model_ready) pg_vae_free(&v.model);
  free(v.val_x);
  free(v.val_y);
  free(v.val_recon);
  return st;
}
