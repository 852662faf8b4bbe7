#include "patchgrad/vit/classify.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/io/checkpoint.h"
#include "patchgrad/optim/clip.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/io/training_run.h"

/* ---- prediction ---- */

int64_t pg_argmax(const float *row, int64_t K) {
  int64_t best = 0;
  for (int64_t k = 1; k < K; k++)
    if (row[k] > row[best]) best = k;
  return best;
}

pg_status pg_vit_predict(pg_ctx *ctx, pg_vit *m, const float *x, int64_t n, int64_t batch,
                         float *probs) {
  const pg_vit_config *c = &m->cfg;
  if (batch < 1) return pg_fail(PG_ERR_ARG, "vit predict: batch must be >= 1, got %lld", (long long)batch);
  const int64_t per = c->height * c->width * c->in_channels, K = c->num_classes;
  const bool grad_was = pg_set_grad_enabled(ctx, false);
  const bool training_was = pg_set_training(ctx, false);
  pg_status st = PG_OK;
  for (int64_t s = 0; s < n && !st; s += batch) {
    const int64_t b = n - s < batch ? n - s : batch;
    pg_ctx_reset(ctx);
    pg_tensor *xb = pg_from_array(ctx, 4, (int64_t[]){b, c->height, c->width, c->in_channels}, x + s * per);
    pg_tensor *p = pg_softmax(ctx, pg_vit_forward(ctx, m, xb));
    if (!p) st = pg_last_status();
    else memcpy(probs + s * K, p->data, (size_t)(b * K) * sizeof(float));
  }
  pg_ctx_reset(ctx);
  pg_set_grad_enabled(ctx, grad_was);
  pg_set_training(ctx, training_was);
  return st;
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

pg_status pg_vit_save(const char *path, pg_vit *m, const pg_vit_data_info *data, int64_t step) {
  pg_kv config;
  pg_kv_init(&config);
  pg_status st = pg_vit_config_to_kv(&m->cfg, &config);
  if (data) {
    st = st ? st : pg_kv_set_double(&config, "data_mean", data->mean);
    st = st ? st : pg_kv_set_double(&config, "data_std", data->std);
    st = st ? st : pg_kv_set_string(&config, "data_source", data->source);
  }
  pg_checkpoint ck = {.config = &config, .params = &m->params, .step = &step};
  st = st ? st : pg_checkpoint_save(path, &ck);
  pg_kv_free(&config);
  return st;
}

pg_status pg_vit_load(const char *path, pg_vit *m, pg_vit_data_info *data) {
  pg_kv config;
  pg_kv_init(&config);
  pg_checkpoint ck = {.config = &config};
  /* the config first: the model is built from it, then its tensors are read */
  pg_status st = pg_checkpoint_load(path, &ck);
  pg_vit_config c;
  if (!st && pg_vit_config_from_kv(&config, &c)) st = pg_error_prefix(path);
  if (!st && data) {
    const char *source = "";
    *data = (pg_vit_data_info){.mean = 0, .std = 1};
    pg_kv_get_double(&config, "data_mean", &data->mean);
    pg_kv_get_double(&config, "data_std", &data->std);
    pg_kv_get_string(&config, "data_source", &source);
    snprintf(data->source, sizeof data->source, "%s", source);
  }
  pg_kv_free(&config);
  if (st) return st;
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  if ((st = pg_vit_init(m, &c, &rng))) return st;
  pg_checkpoint weights = {.params = &m->params};
  if ((st = pg_checkpoint_load(path, &weights))) pg_vit_free(m);
  return st;
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
  *x = NULL;
  *labels = NULL;
  *n = 0;
  pg_latents *ds = pg_latents_open(path);
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

/* ---- training ---- */

void pg_classify_opts_init(pg_classify_opts *o) {
  *o = (pg_classify_opts){
      .model = {.patch_size = 4, .hidden = 64, .depth = 4, .heads = 4, .mlp_ratio = 2},
      .optim = pg_optim_adamw(2e-3),
      .warmup = 200,
      .clip = 1.0,
      .label_smoothing = 0.0,
      .batch = 128,
      .epochs = 5,
      .seed = 0,
      .out_dir = "out-vit",
      .log_every = 50,
  };
  o->optim.weight_decay = 0.05;
  o->optim.decay_weights_only = true; /* no decay on biases, norms, cls_token, pos_embed */
}

typedef struct {
  const pg_classify_opts *o;
  pg_loader *loader;
  pg_latents_info info;
  pg_vit model;
  bool model_ready;
  pg_optimizer opt;
  bool opt_ready;
  pg_schedule sched;
  pg_ctx *ctx;
  pg_rng rng;
  int64_t total, batches_per_epoch;
  float *x;        /* a training batch [batch, H, W, C] */
  int64_t *y;
  float *test_x, *test_probs; /* the test set, in memory, and its predictions */
  int64_t *test_y, test_n;
  FILE *log;
  char path[PG_RUN_PATH_MAX];
} trainer;

static const char *out_file(trainer *tr, const char *name) {
  return pg_run_file(tr->path, tr->o->out_dir, name);
}

static void trainer_free(trainer *tr) {
  if (tr->opt_ready) pg_optimizer_free(&tr->opt);
  if (tr->model_ready) pg_vit_free(&tr->model);
  pg_loader_close(tr->loader);
  pg_ctx_free(tr->ctx);
  if (tr->log) fclose(tr->log);
  free(tr->x);
  free(tr->y);
  free(tr->test_x);
  free(tr->test_y);
  free(tr->test_probs);
}

/* The model's config: the options, with the input shape and the classes
 * taken from the data. */
static pg_status model_config(trainer *tr, pg_vit_config *c) {
  const pg_latents_info *info = &tr->info;
  const char *data = tr->o->data_path;
  *c = tr->o->model;
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

static pg_status setup_test(trainer *tr) {
  const pg_classify_opts *o = tr->o;
  if (!o->test_path) return PG_OK;
  pg_latents_info ti;
  pg_status st = pg_classify_read_latents(o->test_path, o->test_count, &ti, &tr->test_x, &tr->test_y, &tr->test_n);
  if (st) return st;
  const pg_vit_config *c = &tr->model.cfg;
  if (ti.height != c->height || ti.width != c->width || ti.channels != c->in_channels)
    return pg_fail(PG_ERR_ARG, "classify: test file %s holds [%lld, %lld, %lld] latents, the training data [%lld, %lld, %lld]",
                   o->test_path, (long long)ti.height, (long long)ti.width, (long long)ti.channels,
                   (long long)c->height, (long long)c->width, (long long)c->in_channels);
  pg_vit_data_info trained = {.mean = tr->info.mean, .std = tr->info.std};
  snprintf(trained.source, sizeof trained.source, "%s", tr->info.source);
  if (pg_vit_check_data(&trained, &ti, o->test_path)) return pg_last_status();
  if (!(tr->test_probs = malloc((size_t)(tr->test_n * c->num_classes) * sizeof(float))))
    return pg_fail(PG_ERR_MEMORY, "classify: out of memory for the test predictions");
  return PG_OK;
}

static pg_status setup(trainer *tr) {
  const pg_classify_opts *o = tr->o;
  if (!o->data_path) return pg_fail(PG_ERR_ARG, "classify: the training data (--data F.h5) is required");
  if (o->batch < 1) return pg_fail(PG_ERR_ARG, "classify: batch must be >= 1, got %lld", (long long)o->batch);
  if (o->steps < 1 && o->epochs < 1)
    return pg_fail(PG_ERR_ARG, "classify: give epochs >= 1 or steps >= 1 (got %lld and %lld)",
                   (long long)o->epochs, (long long)o->steps);
  if (o->clip < 0) return pg_fail(PG_ERR_ARG, "classify: clip must be >= 0, got %g", o->clip);
  if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
    return pg_fail(PG_ERR_ARG, "classify: label smoothing must be in [0, 1], got %g", o->label_smoothing);
  if (o->out_dir && pg_run_make_dir("classify", o->out_dir)) return pg_last_status();

  /* The training set is read once into memory, then shuffled each epoch. */
  if (!(tr->loader = pg_run_open_loader(o->data_path, o->batch, o->seed))) return pg_last_status();
  tr->info = *pg_loader_info(tr->loader);
  if (!tr->info.has_labels) return pg_fail(PG_ERR_ARG, "classify: %s has no labels", o->data_path);
  tr->batches_per_epoch = pg_loader_batches_per_epoch(tr->loader);
  if (tr->batches_per_epoch < 1)
    return pg_fail(PG_ERR_ARG, "classify: %s has fewer samples than one batch of %lld", o->data_path,
                   (long long)o->batch);
  pg_vit_config cfg;
  if (model_config(tr, &cfg)) return pg_last_status();
  pg_rng_seed(&tr->rng, o->seed);
  if (pg_vit_init(&tr->model, &cfg, &tr->rng)) return pg_last_status();
  tr->model_ready = true;
  if (pg_optimizer_init(&tr->opt, &tr->model.params, &o->optim)) return pg_last_status();
  tr->opt_ready = true;
  tr->total = o->steps > 0 ? o->steps : o->epochs * tr->batches_per_epoch;
  tr->sched = pg_schedule_make(PG_SCHEDULE_COSINE, o->optim.lr);
  tr->sched.warmup_steps = o->warmup < tr->total ? o->warmup : tr->total - 1;
  tr->sched.total_steps = tr->total;
  if (pg_schedule_check(&tr->sched)) return pg_last_status();
  const int64_t per = cfg.height * cfg.width * cfg.in_channels;
  if (pg_run_alloc_batch("classify", o->batch, per, &tr->x, &tr->y)) return pg_last_status();
  if (!(tr->ctx = pg_ctx_new(0))) return pg_last_status();
  if (setup_test(tr)) return pg_last_status();
  if (o->out_dir) {
    if (!(tr->log = fopen(out_file(tr, "log.csv"), "w")))
      return pg_fail(PG_ERR_IO, "classify: cannot write %s: %s", tr->path, strerror(errno));
    fprintf(tr->log, "step,epoch,lr,train_loss,train_accuracy,test_loss,test_accuracy,seconds\n");
  }
  return PG_OK;
}

static pg_status evaluate(trainer *tr, pg_classify_stats *st) {
  pg_status s = pg_vit_predict(tr->ctx, &tr->model, tr->test_x, tr->test_n, 256, tr->test_probs);
  return s ? s : pg_classify_stats_of(tr->test_probs, tr->test_y, tr->test_n, tr->model.cfg.num_classes, st);
}

static pg_status save(trainer *tr, int64_t step) {
  if (!tr->o->out_dir) return PG_OK;
  pg_vit_data_info data = {.mean = tr->info.mean, .std = tr->info.std};
  snprintf(data.source, sizeof data.source, "%s", tr->info.source);
  return pg_vit_save(out_file(tr, "ckpt.h5"), &tr->model, &data, step);
}

/* One update on the next batch; *correct receives the batch's right answers. */
static pg_status train_step(trainer *tr, double *loss_value, int64_t *correct) {
  const pg_classify_opts *o = tr->o;
  const pg_vit_config *c = &tr->model.cfg;
  pg_ctx_reset(tr->ctx);
  int64_t count;
  pg_status st = pg_loader_next(tr->loader, tr->x, tr->y, NULL, &count);
  if (st) return st;
  pg_tensor *x = pg_from_array(tr->ctx, 4, (int64_t[]){count, c->height, c->width, c->in_channels}, tr->x);
  pg_tensor *logits = pg_vit_forward(tr->ctx, &tr->model, x);
  pg_tensor *loss = pg_cross_entropy_smoothed(tr->ctx, logits, tr->y, (float)o->label_smoothing);
  if (!loss) return pg_last_status();
  *loss_value = loss->data[0];
  if (!isfinite(*loss_value))
    return pg_fail(PG_ERR_STATE, "classify: the loss is %s at step %lld; stopping (lower --lr?)",
                   isnan(*loss_value) ? "NaN" : "Inf", (long long)tr->opt.step + 1);
  *correct = 0;
  for (int64_t i = 0; i < count; i++)
    *correct += pg_argmax(logits->data + i * c->num_classes, c->num_classes) == tr->y[i];
  if ((st = pg_backward(tr->ctx, loss))) return st;
  if (o->clip > 0 && !isfinite(pg_clip_grad_norm(&tr->model.params, o->clip, 2.0)))
    return pg_fail(PG_ERR_STATE, "classify: the gradient norm is not finite at step %lld",
                   (long long)tr->opt.step + 1);
  if ((st = pg_optimizer_step(&tr->opt))) return st;
  pg_optimizer_zero_grad(&tr->opt);
  return PG_OK;
}

pg_status pg_classify_train(const pg_classify_opts *o, pg_classify_result *res) {
  trainer tr = {.o = o};
  memset(res, 0, sizeof *res);
  pg_status st = setup(&tr);
  if (st) {
    trainer_free(&tr);
    return st;
  }
  const bool tty = !o->quiet && isatty(STDERR_FILENO);
  const int64_t log_every = o->log_every > 0 ? o->log_every : 50;
  const int64_t eval_every = o->eval_every > 0 ? o->eval_every : tr.batches_per_epoch;
  if (!o->quiet)
    fprintf(stderr, "classify: ViT (%s attention) with %lld parameters, %lld steps of batch %lld (%lld per epoch), "
                    "AdamW lr %.2e, %lld training samples, %lld test samples\n",
            tr.model.cfg.single_head ? "single-head" : "multi-head",
            (long long)pg_params_numel(&tr.model.params, true), (long long)tr.total, (long long)o->batch,
            (long long)tr.batches_per_epoch, o->optim.lr, (long long)(tr.batches_per_epoch * o->batch),
            (long long)tr.test_n);

  pg_run_catch_sigint();

  double train_seconds = 0, loss_sum = 0;
  int64_t seen = 0, correct_sum = 0, n_steps = 0;
  while (tr.opt.step < tr.total && !st) {
    const int64_t step = tr.opt.step;
    const double lr = pg_schedule_lr(&tr.sched, step);
    tr.opt.config.lr = lr;
    const double t0 = pg_run_seconds();
    double loss = 0;
    int64_t correct = 0;
    if ((st = train_step(&tr, &loss, &correct))) break;
    train_seconds += pg_run_seconds() - t0;
    loss_sum += loss;
    correct_sum += correct;
    seen += o->batch;
    n_steps++;
    const int64_t done = tr.opt.step;
    const bool log_now = done % log_every == 0 || done == tr.total;
    const bool eval_now = tr.test_n && (done % eval_every == 0 || done == tr.total);
    const double rate = (double)done / train_seconds;
    if (tty)
      fprintf(stderr, "\r\033[Kstep %lld/%lld  epoch %.2f  loss %.4f  acc %.3f  lr %.2e  %.1f steps/s  ETA %.0fs",
              (long long)done, (long long)tr.total, (double)done / (double)tr.batches_per_epoch,
              loss_sum / (double)n_steps, (double)correct_sum / (double)seen, lr, rate,
              (double)(tr.total - done) / rate);
    if (log_now || eval_now) {
      res->train_loss = loss_sum / (double)n_steps;
      res->train_accuracy = (double)correct_sum / (double)seen;
      pg_classify_stats test = {0};
      if (eval_now && (st = evaluate(&tr, &test))) break;
      if (eval_now) res->test = test;
      if (!o->quiet && (!tty || eval_now)) {
        fprintf(stderr, "%sstep %lld/%lld epoch %.2f train loss %.4f acc %.4f lr %.2e %.1f steps/s",
                tty ? "\n" : "", (long long)done, (long long)tr.total,
                (double)done / (double)tr.batches_per_epoch, res->train_loss, res->train_accuracy, lr, rate);
        if (eval_now) fprintf(stderr, " | test loss %.4f accuracy %.4f", test.loss, test.accuracy);
        fputc('\n', stderr);
      }
      if (tr.log) {
        fprintf(tr.log, "%lld,%.4f,%.6g,%.6g,%.6g,", (long long)done, (double)done / (double)tr.batches_per_epoch,
                lr, res->train_loss, res->train_accuracy);
        if (eval_now) fprintf(tr.log, "%.6g,%.6g", test.loss, test.accuracy);
        else fprintf(tr.log, ",");
        fprintf(tr.log, ",%.2f\n", train_seconds);
        fflush(tr.log);
      }
      loss_sum = 0;
      correct_sum = 0;
      seen = 0;
      n_steps = 0;
    }
    if (pg_run_interrupted()) {
      res->interrupted = true;
      if (!o->quiet) fprintf(stderr, "\nclassify: interrupted at step %lld\n", (long long)done);
      break;
    }
  }
  pg_run_release_sigint();
  res->step = tr.opt.step;
  res->seconds = train_seconds;
  res->steps_per_second = train_seconds > 0 ? (double)res->step / train_seconds : 0;
  if (!st) st = save(&tr, res->step);
  if (!st && !o->quiet && o->out_dir)
    fprintf(stderr, "classify: %lld steps in %.0f s (%.1f steps/s); wrote %s/ckpt.h5 and log.csv\n",
            (long long)res->step, train_seconds, res->steps_per_second, o->out_dir);
  trainer_free(&tr);
  return st;
}
