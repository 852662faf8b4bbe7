#include "patchgrad/vit/classify.h"

#include "patchgrad/autograd/batches.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/ops.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/train/run.h"

/* ---- prediction ---- */

int64_t pg_argmax(const float *row, int64_t K) {
  int64_t best = 0;
  for (int64_t k = 1; k < K; k++)
    if (row[k] > row[best]) best = k;
  return best;
}

typedef struct {
  pg_vit *m;
  float *probs;
} predict_job;

static pg_status predict_batch(pg_ctx *ctx, pg_tensor *x, int64_t first, void *self) {
  predict_job *job = self;
  const int64_t K = job->m->cfg.num_classes;
  pg_tensor *p = pg_softmax(ctx, pg_vit_forward(ctx, job->m, x));
  if (!p) return pg_last_status();
  memcpy(job->probs + first * K, p->data, (size_t)(x->shape[0] * K) * sizeof(float));
  return PG_OK;
}

pg_status pg_vit_predict(pg_ctx *ctx, pg_vit *m, const float *x, int64_t n, int64_t batch,
                         float *probs) {
  const pg_vit_config *c = &m->cfg;
  predict_job job = {m, probs};
  return pg_eval_batches(ctx, x, n, 3, (int64_t[]){c->height, c->width, c->in_channels}, batch, "vit predict",
                         predict_batch, &job);
}

pg_status pg_classify_stats_of(const float *probs, const int64_t *labels, int64_t n, int64_t K,
                               pg_classify_stats *out) {
  memset(out, 0, sizeof *out);
  double conf = 0, label_prob = 0, loss = 0;
  for (int64_t i = 0; i < n; i++) {
    if (labels[i] < 0 || labels[i] >= K)
      return pg_fail(PG_ERR_ARG, "classify: label %lld of sample %lld is outside the classifier's classes [0, %lld)",
                     (long long)labels[i], (long long)i, (long long)K);
    const float *p = probs + i * K;
    const int64_t top = pg_argmax(p, K);
    out->agree += top == labels[i];
    conf += p[top];
    label_prob += p[labels[i]];
    /* the softmax underflows to 0 only for a hopeless logit gap; cap the loss there */
    loss -= log(p[labels[i]] > 1e-30f ? (double)p[labels[i]] : 1e-30);
  }
  out->n = n;
  if (n > 0) {
    out->accuracy = (double)out->agree / (double)n;
    out->mean_confidence = conf / (double)n;
    out->mean_label_prob = label_prob / (double)n;
    out->loss = loss / (double)n;
  }
  return PG_OK;
}

/* ---- checkpoints ---- */

/* /config of a classifier checkpoint: the model's config and what its
 * training latents were. */
static pg_status vit_config_kv(const pg_vit *m, const pg_vit_data_info *data, pg_kv *config) {
  pg_status st = pg_vit_config_to_kv(&m->cfg, config);
  if (data) {
    st = st ? st : pg_kv_set_double(config, "data_mean", data->mean);
    st = st ? st : pg_kv_set_double(config, "data_std", data->std);
    st = st ? st : pg_kv_set_string(config, "data_source", data->source);
  }
  return st;
}

pg_status pg_vit_save(const char *path, pg_vit *m, const pg_vit_data_info *data, int64_t step) {
  pg_kv config;
  pg_kv_init(&config);
  pg_status st = vit_config_kv(m, data, &config);
  pg_checkpoint ck = {.config = &config, .params = &m->params, .step = &step};
  st = st ? st : pg_checkpoint_save(path, &ck);
  pg_kv_free(&config);
  return st;
}

typedef struct {
  pg_vit *m;
  pg_vit_data_info *data;
} vit_loading;

static pg_params *vit_from_config(void *self, const pg_kv *config, const char *path) {
  vit_loading *l = self;
  pg_vit_config c;
  if (pg_vit_config_from_kv(config, &c)) {
    pg_error_prefix(path);
    return NULL;
  }
  if (l->data) {
    const char *source = "";
    *l->data = (pg_vit_data_info){.mean = 0, .std = 1};
    pg_kv_get_double(config, "data_mean", &l->data->mean);
    pg_kv_get_double(config, "data_std", &l->data->std);
    pg_kv_get_string(config, "data_source", &source);
    snprintf(l->data->source, sizeof l->data->source, "%s", source);
  }
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  return pg_vit_init(l->m, &c, &rng) ? NULL : &l->m->params;
}

static void vit_unbuild(void *self) { pg_vit_free(((vit_loading *)self)->m); }

pg_status pg_vit_load(const char *path, pg_vit *m, pg_vit_data_info *data) {
  vit_loading l = {m, data};
  return pg_checkpoint_load_model(path, false, &(pg_checkpoint_model){vit_from_config, vit_unbuild, &l});
}

pg_status pg_vit_check_data(const pg_vit_data_info *trained, const pg_latents_info *info,
                            const char *path) {
  /* 5% of the scale: files normalised by their own statistics (synthetic
   * data of another seed) pass, a file scaled another way does not */
  const double tol = 0.05 * fabs(trained->std);
  if (fabs(info->mean - trained->mean) > tol || fabs(info->std - trained->std) > tol)
    return pg_fail(PG_ERR_ARG,
                   "%s holds latents normalised with mean %g, std %g; the classifier was trained on "
                   "mean %g, std %g (%s): make both from the same training split",
                   path, info->mean, info->std, trained->mean, trained->std,
                   trained->source[0] ? trained->source : "unknown source");
  return PG_OK;
}

pg_status pg_classify_read_latents(const char *path, int64_t limit, pg_latents_info *info, float **x,
                                   int64_t **labels, int64_t *n) {
  return pg_classify_read_latents_with(path, NULL, limit, info, x, labels, n);
}

pg_status pg_classify_read_latents_with(const char *path, const pg_data_opts *data, int64_t limit,
                                        pg_latents_info *info, float **x, int64_t **labels, int64_t *n) {
  *x = NULL;
  *labels = NULL;
  *n = 0;
  pg_latents *ds = pg_latents_open_with(path, data, false);
  if (!ds) return pg_last_status();
  pg_status st = PG_OK;
  *info = ds->info;
  const int64_t count = limit > 0 && limit < ds->info.n ? limit : ds->info.n;
  if (!ds->labels) st = pg_fail(PG_ERR_ARG, "%s has no labels: a classifier needs them", path);
  if (!st) {
    *x = malloc((size_t)(count * ds->sample_numel) * sizeof(float));
    *labels = malloc((size_t)count * sizeof(int64_t));
    if (!*x || !*labels)
      st = pg_fail(PG_ERR_MEMORY, "out of memory for %lld samples of %s", (long long)count, path);
  }
  if (!st) st = pg_latents_read(ds, 0, count, *x);
  if (!st) {
    memcpy(*labels, ds->labels, (size_t)count * sizeof(int64_t));
    *n = count;
  }
  pg_latents_close(ds);
  if (st) {
    free(*x);
    free(*labels);
    *x = NULL;
    *labels = NULL;
  }
  return st;
}

/* ---- training: the ViT as a model of the training loop (train/run.h) ---- */

void pg_classify_opts_init(pg_classify_opts *o) {
  *o = (pg_classify_opts){
      .run = {.batch = 128, .epochs = 5, .seed = 0, .optim = pg_optim_adamw(2e-3), .clip = 1.0,
              .warmup_within_run = true, .out_dir = "out-vit", .log_every = 50},
      .model = {.patch_size = 4, .hidden = 64, .depth = 4, .heads = 4, .mlp_ratio = 2},
      .label_smoothing = 0.0,
  };
  o->run.optim.weight_decay = 0.05;
  o->run.optim.decay_weights_only = true; /* no decay on biases, norms, cls_token, pos_embed */
  o->run.schedule = pg_schedule_make(PG_SCHEDULE_COSINE, o->run.optim.lr); /* to 0 at the last step */
  o->run.schedule.warmup_steps = 200;
}

/* The classifier's side of a run. */
typedef struct {
  const pg_classify_opts *o;
  pg_latents_info info;          /* the training data */
  pg_vit model;
  bool model_ready;
  float *val_x, *val_probs;      /* the held-out set, in memory, and its predictions */
  int64_t *val_y, val_n;
  pg_classify_stats val;         /* the last evaluation */
  const pg_run *run;             /* from prepare: the ranks */
} vit_run;

/* What the training latents were, for the checkpoint and pg_vit_check_data. */
static pg_vit_data_info data_info(const pg_latents_info *info) {
  pg_vit_data_info d = {.mean = info->mean, .std = info->std};
  snprintf(d.source, sizeof d.source, "%s", info->source);
  return d;
}

/* The model's config: the options, with the input shape and the classes
 * taken from the data. */
static pg_status model_config(const vit_run *v, pg_vit_config *c) {
  const pg_latents_info *info = &v->info;
  const char *data = v->o->run.data_path;
  *c = v->o->model;
  if ((c->height && c->height != info->height) || (c->width && c->width != info->width) ||
      (c->in_channels && c->in_channels != info->channels))
    return pg_fail(PG_ERR_ARG, "classify: %s holds [%lld, %lld, %lld] latents, the model was asked for [%lld, %lld, %lld]",
                   data, (long long)info->height, (long long)info->width, (long long)info->channels,
                   (long long)c->height, (long long)c->width, (long long)c->in_channels);
  c->height = info->height;
  c->width = info->width;
  c->in_channels = info->channels;
  if (c->num_classes && c->num_classes < info->num_classes)
    return pg_fail(PG_ERR_ARG, "classify: %s has %lld classes, more than the model's %lld", data,
                   (long long)info->num_classes, (long long)c->num_classes);
  if (!c->num_classes) c->num_classes = info->num_classes;
  if (c->patch_size < 1 || info->height % c->patch_size || info->width % c->patch_size)
    return pg_fail(PG_ERR_ARG, "classify: patch size %lld does not divide the %lldx%lld latents of %s",
                   (long long)c->patch_size, (long long)info->height, (long long)info->width, data);
  return pg_vit_config_check(c);
}

static pg_status vit_build(void *self, const pg_latents_info *info, pg_rng *rng, pg_params **params) {
  vit_run *v = self;
  const pg_classify_opts *o = v->o;
  v->info = *info;
  if (!info->has_labels) return pg_fail(PG_ERR_ARG, "classify: %s has no labels", o->run.data_path);
  if (info->n / o->run.batch < 1)
    return pg_fail(PG_ERR_ARG, "classify: %s has fewer samples than one batch of %lld", o->run.data_path,
                   (long long)o->run.batch);
  pg_vit_config cfg;
  pg_status st = model_config(v, &cfg);
  if (st || (st = pg_vit_init(&v->model, &cfg, rng))) return st;
  v->model_ready = true;
  *params = &v->model.params;
  return PG_OK;
}

/* The held-out set (the first val_count samples of val_path), in memory. */
static pg_status vit_prepare(void *self, pg_run *run) {
  vit_run *v = self;
  v->run = run;
  const pg_classify_opts *o = v->o;
  if (!o->val_path) return PG_OK;
  pg_latents_info ti;
  pg_status st = pg_classify_read_latents_with(o->val_path, &o->run.data, o->val_count, &ti, &v->val_x, &v->val_y,
                                               &v->val_n);
  if (st) return st;
  const pg_vit_config *c = &v->model.cfg;
  if (ti.height != c->height || ti.width != c->width || ti.channels != c->in_channels)
    return pg_fail(PG_ERR_ARG, "classify: test file %s holds [%lld, %lld, %lld] latents, the training data [%lld, %lld, %lld]",
                   o->val_path, (long long)ti.height, (long long)ti.width, (long long)ti.channels,
                   (long long)c->height, (long long)c->width, (long long)c->in_channels);
  pg_vit_data_info trained = data_info(&v->info);
  if ((st = pg_vit_check_data(&trained, &ti, o->val_path))) return st;
  if (!(v->val_probs = malloc((size_t)(v->val_n * c->num_classes) * sizeof(float))))
    return pg_fail(PG_ERR_MEMORY, "classify: out of memory for the test predictions");
  return PG_OK;
}

/* Cross-entropy of the logits; metrics[0] counts the right answers. */
static pg_tensor *vit_loss(void *self, pg_ctx *ctx, const pg_batch *b, pg_rng *rng, double *metrics) {
  (void)rng;
  vit_run *v = self;
  const int64_t K = v->model.cfg.num_classes;
  pg_tensor *logits = pg_vit_forward(ctx, &v->model, b->x);
  pg_tensor *loss = pg_cross_entropy_smoothed(ctx, logits, b->labels, (float)v->o->label_smoothing);
  if (!loss) return NULL;
  for (int64_t i = 0; i < b->count; i++) metrics[0] += pg_argmax(logits->data + i * K, K) == b->labels[i];
  return loss;
}

/* values: the held-out loss and accuracy. With several ranks each scores
 * its share of the held-out samples and the sums are added. */
static pg_status vit_validate(void *self, pg_ctx *ctx, double *values) {
  vit_run *v = self;
  const int64_t K = v->model.cfg.num_classes, per = v->model.cfg.height * v->model.cfg.width * v->model.cfg.in_channels;
  int64_t begin, end;
  pg_run_share(v->run, v->val_n, &begin, &end);
  pg_status st = pg_vit_predict(ctx, &v->model, v->val_x + begin * per, end - begin, 256, v->val_probs + begin * K);
  st = st ? st : pg_classify_stats_of(v->val_probs + begin * K, v->val_y + begin, end - begin, K, &v->val);
  if (!st && v->run->dist->size > 1) {
    pg_classify_stats *s = &v->val;
    double sums[5] = {(double)s->n, (double)s->agree, s->mean_confidence * (double)s->n,
                      s->mean_label_prob * (double)s->n, s->loss * (double)s->n};
    st = pg_dist_allreduce_sum(v->run->dist, sums, 5);
    s->n = (int64_t)sums[0];
    s->agree = (int64_t)sums[1];
    s->accuracy = sums[1] / sums[0];
    s->mean_confidence = sums[2] / sums[0];
    s->mean_label_prob = sums[3] / sums[0];
    s->loss = sums[4] / sums[0];
  }
  values[0] = v->val.loss;
  values[1] = v->val.accuracy;
  return st;
}

static pg_status vit_config(void *self, pg_kv *config) {
  const vit_run *v = self;
  const pg_vit_data_info data = data_info(&v->info);
  return vit_config_kv(&v->model, &data, config);
}

/* The start line names the classifier and the data; the rest is the
 * loop's (pg_run_report_default). */
static void vit_report(void *self, const pg_run *run, pg_run_event event) {
  const vit_run *v = self;
  const pg_run_opts *o = run->opts;
  if (event != PG_RUN_START) {
    pg_run_report_default(self, run, event);
    return;
  }
  fprintf(stderr, "classify: ViT (%s attention) with %lld parameters, %lld steps of batch %lld (%lld per epoch), "
                  "%s lr %.2e, %lld training samples, %lld test samples\n",
          v->model.cfg.single_head ? "single-head" : "multi-head", (long long)pg_params_numel(run->params, true),
          (long long)run->total, (long long)o->batch, (long long)run->batches_per_epoch,
          pg_optim_kind_name(o->optim.kind), o->optim.lr, (long long)(run->batches_per_epoch * o->batch),
          (long long)v->val_n);
  fflush(stderr);
}

static void vit_run_free(vit_run *v) {
  if (v->model_ready) pg_vit_free(&v->model);
  free(v->val_x);
  free(v->val_y);
  free(v->val_probs);
}

/* The classifier's columns of loss.csv (val_loss is the held-out loss),
 * and the tensors sized by the number of classes. */
static const pg_run_column vit_columns[] = {
    {"train_accuracy", PG_COL_METRIC, 0, "%.6g", "acc"},
    {"val_accuracy", PG_COL_VAL, 1, "%.6g", "accuracy"},
};
static const char *const class_tensors[] = {"head.*", NULL};

pg_status pg_classify_train(const pg_classify_opts *o, pg_classify_result *res) {
  memset(res, 0, sizeof *res);
  if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
    return pg_fail(PG_ERR_ARG, "classify: label smoothing must be in [0, 1], got %g", o->label_smoothing);

  vit_run v = {.o = o};
  const pg_run_model model = {
      .name = "classify",
      .self = &v,
      .n_metrics = 1,
      .n_val = 2,
      .build = vit_build,
      .prepare = vit_prepare,
      .loss = vit_loss,
      .validate = o->val_path ? vit_validate : NULL,
      .config = vit_config,
      .report = vit_report,
      .class_tensors = class_tensors,
      PG_RUN_ONE_GO(vit_columns),
  };
  pg_run_result r;
  pg_status st = pg_run_training(&o->run, &model, &r);
  res->step = r.step;
  res->train_loss = r.train_loss;
  res->train_loss_steps = r.train_loss_steps;
  res->train_accuracy = r.metrics[0];
  res->test = v.val;
  res->seconds = r.train_seconds;
  res->steps_per_second = r.train_seconds > 0 ? (double)r.step / r.train_seconds : 0;
  res->interrupted = r.stopped;
  res->local_error = r.local_error;
  vit_run_free(&v);
  return st;
}
