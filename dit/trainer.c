#include "patchgrad/dit/trainer.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/io/checkpoint.h"
#include "patchgrad/optim/ema.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/io/optim_kv.h"
#include "patchgrad/render/plot.h"
#include "patchgrad/dit/sample_sheet.h"
#include "patchgrad/io/training_run.h"

void pg_train_opts_init(pg_train_opts *o) {
  *o = (pg_train_opts){
      .val_count = 1024,
      .model = {.patch_size = 2, .hidden = 128, .depth = 4, .heads = 4, .mlp_ratio = 4,
                .class_dropout = 0.1f},
      .optim = pg_optim_adamw(1e-4),
      .batch = 64,
      .steps = 1000,
      .seed = 0,
      .out_dir = "out",
      .val_every = 250,
      .ckpt_every = 1000,
      .log_every = 50,
      .sample_cols = 8,
      .sample_steps = 50,
      .sample_cfg = 4.0f,
  };
  o->optim.weight_decay = 0;
  o->schedule = pg_schedule_make(PG_SCHEDULE_CONSTANT, 1e-4);
}

/* ---- config <-> key/value ---- */

/* The integer settings, in the order the checkpoint lists them. */
static const pg_kv_int_field dit_int_fields[] = {
    {"input_size", offsetof(pg_dit_config, input_size)},
    {"in_channels", offsetof(pg_dit_config, in_channels)},
    {"patch_size", offsetof(pg_dit_config, patch_size)},
    {"hidden", offsetof(pg_dit_config, hidden)},
    {"depth", offsetof(pg_dit_config, depth)},
    {"heads", offsetof(pg_dit_config, heads)},
    {"mlp_ratio", offsetof(pg_dit_config, mlp_ratio)},
    {"num_classes", offsetof(pg_dit_config, num_classes)},
};
#define DIT_INT_FIELDS ((int)(sizeof dit_int_fields / sizeof *dit_int_fields))

pg_status pg_dit_config_to_kv(const pg_dit_config *c, pg_kv *kv) {
  pg_status st = pg_kv_set_int_fields(kv, c, DIT_INT_FIELDS, dit_int_fields);
  st = st ? st : pg_kv_set_double(kv, "class_dropout", c->class_dropout);
  return st;
}

pg_status pg_dit_config_from_kv(const pg_kv *kv, pg_dit_config *c) {
  pg_status st = pg_kv_get_int_fields(kv, c, DIT_INT_FIELDS, dit_int_fields);
  if (st) return st;
  double d = 0.1;
  pg_kv_get_double(kv, "class_dropout", &d);
  c->class_dropout = (float)d;
  return pg_dit_config_check(c);
}

/* ---- the run's state ---- */

typedef struct {
  const pg_train_opts *o;
  pg_dit model;
  bool model_ready;
  pg_diffusion diff;
  pg_optimizer opt;
  bool opt_ready;
  pg_ema ema;
  bool ema_ready;
  pg_schedule sched;
  pg_loader *loader;
  pg_latent_transform transform;
  pg_rng rng;
  pg_ctx *ctx;
  int64_t step, total;
  float *x;          /* [batch, H, W, C] */
  int64_t *y;        /* [batch] or NULL */
  /* validation at fixed draws */
  int64_t val_n;
  float *val_x, *val_t, *val_eps;
  int64_t *val_y;
  /* loss.csv rows, kept for the curve */
  int64_t rows, rows_cap;
  double *row_step, *row_train, *row_val, *row_lr, *row_sec;
  double seconds_before; /* time spent in earlier runs (resume) */
  char path[PG_RUN_PATH_MAX];
} trainer;

static const char *out_file(trainer *tr, const char *name) {
  return pg_run_file(tr->path, tr->o->out_dir, name);
}

/* The model's config from the options and the data's shape. */
static pg_status model_config(trainer *tr, const pg_latents_info *info, pg_dit_config *c) {
  *c = tr->o->model;
  const char *data = tr->o->data_path;
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
  c->num_classes = tr->o->unconditional ? 0 : info->num_classes;
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

static pg_status add_row(trainer *tr, int64_t step, double train, double val, double lr, double sec) {
  if (tr->rows == tr->rows_cap) {
    int64_t cap = tr->rows_cap ? 2 * tr->rows_cap : 256;
    double **cols[] = {&tr->row_step, &tr->row_train, &tr->row_val, &tr->row_lr, &tr->row_sec};
    for (int i = 0; i < 5; i++) {
      double *p = realloc(*cols[i], (size_t)cap * sizeof **cols[i]);
      if (!p) return pg_fail(PG_ERR_MEMORY, "train: out of memory for the loss log");
      *cols[i] = p;
    }
    tr->rows_cap = cap;
  }
  tr->row_step[tr->rows] = (double)step;
  tr->row_train[tr->rows] = train;
  tr->row_val[tr->rows] = val;
  tr->row_lr[tr->rows] = lr;
  tr->row_sec[tr->rows] = sec;
  tr->rows++;
  return PG_OK;
}

/* loss.csv, rewritten whole (atomically) each time: it stays small. */
static pg_status write_csv(trainer *tr) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp", out_file(tr, "loss.csv"));
  FILE *f = fopen(tmp, "w");
  if (!f) return pg_fail(PG_ERR_IO, "train: cannot write %s: %s", tmp, strerror(errno));
  fprintf(f, "step,train_loss,val_loss,lr,seconds\n");
  for (int64_t i = 0; i < tr->rows; i++) {
    fprintf(f, "%lld,%.6g,", (long long)tr->row_step[i], tr->row_train[i]);
    if (!isnan(tr->row_val[i])) fprintf(f, "%.6g", tr->row_val[i]);
    fprintf(f, ",%.6g,%.2f\n", tr->row_lr[i], tr->row_sec[i]);
  }
  bool ok = !ferror(f);
  ok &= fclose(f) == 0;
  if (!ok || rename(tmp, tr->path)) {
    remove(tmp);
    return pg_fail(PG_ERR_IO, "train: cannot write %s", tr->path);
  }
  return PG_OK;
}

/* On resume: the rows of the earlier run up to the checkpoint's step. */
static void read_csv(trainer *tr, int64_t upto) {
  FILE *f = fopen(out_file(tr, "loss.csv"), "r");
  if (!f) return;
  char line[256];
  if (!fgets(line, sizeof line, f)) line[0] = 0; /* header */
  while (fgets(line, sizeof line, f)) {
    long long step;
    double train, lr, sec, val = NAN;
    char valbuf[64] = "";
    if (sscanf(line, "%lld,%lf,%63[^,],%lf,%lf", &step, &train, valbuf, &lr, &sec) == 5)
      val = strtod(valbuf, NULL);
    else if (sscanf(line, "%lld,%lf,,%lf,%lf", &step, &train, &lr, &sec) != 4)
      continue;
    if (step > upto) break;
    add_row(tr, step, train, val, lr, sec);
    tr->seconds_before = sec;
  }
  fclose(f);
}

/* loss.png: the training loss (blue) at every logged step and the
 * validation loss (orange) at the steps where it was measured. */
static pg_status write_curve(trainer *tr) {
  int64_t n = tr->rows;
  float *buf = malloc((size_t)(n ? n : 1) * 4 * sizeof *buf);
  if (!buf) return pg_fail(PG_ERR_MEMORY, "train: out of memory for the loss curve");
  float *xs = buf, *train = buf + n, *val_x = buf + 2 * n, *val = buf + 3 * n;
  int64_t n_val = 0;
  for (int64_t i = 0; i < n; i++) {
    xs[i] = (float)tr->row_step[i];
    train[i] = (float)tr->row_train[i];
    if (!isnan(tr->row_val[i])) {
      val_x[n_val] = xs[i];
      val[n_val++] = (float)tr->row_val[i];
    }
  }
  pg_plot_opts po;
  pg_plot_opts_init(&po);
  po.log_y = true;
  pg_plot_curve curves[2] = {{xs, train, n}, {val_x, val, n_val}};
  pg_image *im = pg_plot_lines(&po, 2, curves);
  free(buf);
  if (!im) return pg_last_status();
  pg_status st = pg_png_write(out_file(tr, "loss.png"), im);
  pg_image_free(im);
  return st;
}

/* The run's state in a checkpoint (the parts that save and load share):
 * the loader's position and the optimizer's step go through ls and
 * optim_step, which the caller copies out before a save or in after a load. */
static pg_checkpoint run_state(trainer *tr, pg_loader_state *ls, int64_t *optim_step) {
  return (pg_checkpoint){
      .params = &tr->model.params,
      .ema = tr->ema_ready ? &tr->ema.shadow : NULL,
      .optim_state = &tr->opt.state,
      .optim_step = optim_step,
      .step = &tr->step,
      .rng = &tr->rng,
      .loader = ls,
  };
}

static pg_status save_checkpoint(trainer *tr) {
  pg_kv config, optim_cfg;
  pg_kv_init(&config);
  pg_kv_init(&optim_cfg);
  pg_status st = pg_dit_config_to_kv(&tr->model.cfg, &config);
  /* what the sampler needs to turn latents back into images */
  st = st ? st : pg_kv_set_double(&config, "data_mean", tr->transform.mean);
  st = st ? st : pg_kv_set_double(&config, "data_std", tr->transform.std);
  st = st ? st : pg_kv_set_int(&config, "data_pad", tr->transform.pad);
  st = st ? st : pg_kv_set_int(&config, "data_space_to_depth", tr->transform.factor);
  st = st ? st : pg_optim_config_to_kv(&tr->opt.config, &optim_cfg);
  pg_loader_state ls = pg_loader_get_state(tr->loader);
  int64_t optim_step = tr->opt.step;
  pg_checkpoint ck = run_state(tr, &ls, &optim_step);
  ck.config = &config;
  ck.optim_config = &optim_cfg;
  st = st ? st : pg_checkpoint_save(out_file(tr, "ckpt.h5"), &ck);
  pg_kv_free(&config);
  pg_kv_free(&optim_cfg);
  return st;
}

/* init.h5: the weights before the first step, so that a twin of the run in
 * another framework can start from exactly the same model. */
static pg_status save_initial(trainer *tr) {
  pg_kv config;
  pg_kv_init(&config);
  pg_status st = pg_dit_config_to_kv(&tr->model.cfg, &config);
  pg_checkpoint ck = {.config = &config, .params = &tr->model.params};
  st = st ? st : pg_checkpoint_save(out_file(tr, "init.h5"), &ck);
  pg_kv_free(&config);
  return st;
}

static pg_status load_checkpoint(trainer *tr, const char *path) {
  pg_kv config;
  pg_kv_init(&config);
  pg_loader_state ls;
  int64_t optim_step = 0;
  pg_checkpoint ck = {.config = &config};
  /* the config first: the model must match it before its tensors are read */
  pg_status st = pg_checkpoint_load(path, &ck);
  pg_dit_config c = tr->model.cfg;
  if (!st) st = pg_dit_config_from_kv(&config, &c);
  pg_kv_free(&config);
  if (st) return st;
  const pg_dit_config *m = &tr->model.cfg;
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
  pg_checkpoint full = run_state(tr, &ls, &optim_step);
  if ((st = pg_checkpoint_load(path, &full))) return st;
  tr->opt.step = optim_step;
  return pg_loader_set_state(tr->loader, &ls);
}

/* Validation set: the first val_count samples of val_path, each with a
 * timestep and a noise drawn once from the seed, so every evaluation (and a
 * PyTorch twin reading val_draws.h5) sees the same problem. */
static pg_status setup_validation(trainer *tr) {
  const pg_train_opts *o = tr->o;
  if (!o->val_path) return PG_OK;
  pg_latents *ds = pg_latents_open(o->val_path);
  if (!ds) return pg_last_status();
  const pg_dit_config *c = &tr->model.cfg;
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
    tr->val_n = n;
    tr->val_x = malloc((size_t)(n * per) * sizeof(float));
    tr->val_eps = malloc((size_t)(n * per) * sizeof(float));
    tr->val_t = malloc((size_t)n * sizeof(float));
    tr->val_y = malloc((size_t)n * sizeof(int64_t));
    if (!tr->val_x || !tr->val_eps || !tr->val_t || !tr->val_y)
      st = pg_fail(PG_ERR_MEMORY, "train: out of memory for %lld validation samples", (long long)n);
  }
  if (!st) st = pg_latents_read(ds, 0, n, tr->val_x);
  if (!st) {
    for (int64_t i = 0; i < n; i++) {
      tr->val_y[i] = ds->labels ? ds->labels[i] : 0;
      if (tr->val_y[i] >= c->num_classes && c->num_classes > 0)
        st = pg_fail(PG_ERR_ARG, "train: validation label %lld of sample %lld is not below the model's %lld classes",
                     (long long)tr->val_y[i], (long long)i, (long long)c->num_classes);
    }
    pg_rng vr;
    pg_rng_seed(&vr, o->seed ^ 0x5eed5eed5eedULL);
    for (int64_t i = 0; i < n; i++) tr->val_t[i] = (float)pg_rng_below(&vr, PG_DIFFUSION_T);
    for (int64_t i = 0; i < n * per; i++) tr->val_eps[i] = pg_rng_normal(&vr);
  }
  pg_latents_close(ds);
  if (st) return st;
  /* the draws, for a PyTorch twin of the run */
  hid_t f = H5Fcreate(out_file(tr, "val_draws.h5.tmp"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return pg_fail(PG_ERR_IO, "train: cannot write %s", tr->path);
  int64_t shape4[4] = {n, c->input_size, c->input_size, c->in_channels};
  st = pg_h5_write_floats(f, "x0", 4, shape4, tr->val_x, 0);
  st = st ? st : pg_h5_write_floats(f, "eps", 4, shape4, tr->val_eps, 0);
  st = st ? st : pg_h5_write_floats(f, "t", 1, &n, tr->val_t, 0);
  st = st ? st : pg_h5_write_int64(f, "y", 1, &n, tr->val_y);
  st = st ? st : pg_h5_set_attr_string(f, "description", "validation set of a patchgrad train run: x0, and the fixed timesteps t and noise eps it is evaluated at");
  H5Fclose(f);
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s", tr->path);
  if (!st && rename(tmp, out_file(tr, "val_draws.h5")))
    st = pg_fail(PG_ERR_IO, "train: cannot rename %s", tmp);
  return st;
}

static double validation_loss(trainer *tr) {
  if (!tr->val_n) return NAN;
  const pg_dit_config *c = &tr->model.cfg;
  const int64_t per = c->input_size * c->input_size * c->in_channels, bs = tr->o->batch;
  bool was = pg_set_grad_enabled(tr->ctx, false);
  pg_set_training(tr->ctx, false);
  double total = 0;
  for (int64_t s = 0; s < tr->val_n; s += bs) {
    int64_t n = tr->val_n - s < bs ? tr->val_n - s : bs;
    pg_ctx_reset(tr->ctx);
    pg_tensor *x0 = pg_from_array(tr->ctx, 4, (int64_t[]){n, c->input_size, c->input_size, c->in_channels},
                                  tr->val_x + s * per);
    pg_tensor *loss = pg_diffusion_loss(tr->ctx, &tr->model, &tr->diff, x0,
                                        c->num_classes ? tr->val_y + s : NULL, false, NULL,
                                        tr->val_t + s, tr->val_eps + s * per);
    if (!loss) return NAN;
    total += (double)loss->data[0] * (double)n;
  }
  pg_ctx_reset(tr->ctx);
  pg_set_grad_enabled(tr->ctx, was);
  pg_set_training(tr->ctx, true);
  return total / (double)tr->val_n;
}

static void format_duration(double s, char *buf, size_t cap) {
  if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "?");
  else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
  else if (s >= 60) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
  else snprintf(buf, cap, "%.0fs", s);
}

static void progress(trainer *tr, double smoothed, double lr, double rate, bool tty, bool force_line) {
  char eta[32];
  format_duration((double)(tr->total - tr->step) / rate, eta, sizeof eta);
  if (tty)
    fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f  lr %.2e  %.1f steps/s  ETA %s",
            (long long)tr->step, (long long)tr->total, smoothed, lr, rate, eta);
  if (!tty || force_line) {
    if (tty) fputc('\n', stderr);
    else
      fprintf(stderr, "step %lld/%lld loss %.4f lr %.2e steps/s %.1f eta %s\n", (long long)tr->step,
              (long long)tr->total, smoothed, lr, rate, eta);
  }
  fflush(stderr);
}

static void trainer_free(trainer *tr) {
  if (tr->ema_ready) pg_ema_free(&tr->ema);
  if (tr->opt_ready) pg_optimizer_free(&tr->opt);
  if (tr->model_ready) pg_dit_free(&tr->model);
  pg_loader_close(tr->loader);
  pg_ctx_free(tr->ctx);
  free(tr->x);
  free(tr->y);
  free(tr->val_x);
  free(tr->val_t);
  free(tr->val_eps);
  free(tr->val_y);
  free(tr->row_step);
  free(tr->row_train);
  free(tr->row_val);
  free(tr->row_lr);
  free(tr->row_sec);
}

static pg_status setup(trainer *tr) {
  const pg_train_opts *o = tr->o;
  if (o->batch < 1) return pg_fail(PG_ERR_ARG, "train: --batch must be >= 1, got %lld", (long long)o->batch);
  if (o->steps < 1 && o->epochs < 1)
    return pg_fail(PG_ERR_ARG, "train: --steps must be >= 1, got %lld", (long long)o->steps);
  if (!o->data_path) return pg_fail(PG_ERR_ARG, "train: --data FILE.h5 is required");
  if (pg_run_make_dir("train", o->out_dir)) return pg_last_status();
  if (!(tr->loader = pg_run_open_loader(o->data_path, o->batch, o->seed))) return pg_last_status();
  const pg_latents_info *info = pg_loader_info(tr->loader);
  tr->transform = pg_latent_transform_of(info);
  pg_dit_config cfg;
  if (model_config(tr, info, &cfg)) return pg_last_status();
  pg_rng_seed(&tr->rng, o->seed);
  if (pg_dit_init(&tr->model, &cfg, &tr->rng)) return pg_last_status();
  tr->model_ready = true;
  pg_diffusion_init(&tr->diff);
  if (pg_optimizer_init(&tr->opt, &tr->model.params, &o->optim)) return pg_last_status();
  tr->opt_ready = true;
  if (o->ema_decay > 0) {
    if (pg_ema_init(&tr->ema, &tr->model.params, o->ema_decay)) return pg_last_status();
    tr->ema_ready = true;
  }
  tr->sched = o->schedule;
  tr->sched.base_lr = o->optim.lr;
  tr->total = o->epochs > 0 ? o->epochs * pg_loader_batches_per_epoch(tr->loader) : o->steps;
  if (tr->sched.kind == PG_SCHEDULE_COSINE && tr->sched.total_steps <= 0) tr->sched.total_steps = tr->total;
  if (pg_schedule_check(&tr->sched)) return pg_last_status();
  if (o->clip < 0) return pg_fail(PG_ERR_ARG, "train: --clip must be >= 0, got %g", o->clip);
  const int64_t per = cfg.input_size * cfg.input_size * cfg.in_channels;
  if (pg_run_alloc_batch("train", o->batch, per, &tr->x, &tr->y)) return pg_last_status();
  if (!(tr->ctx = pg_ctx_new(0))) return pg_last_status();
  if (o->resume) {
    if (load_checkpoint(tr, o->resume)) return pg_last_status();
    read_csv(tr, tr->step);
  } else if (save_initial(tr)) {
    return pg_last_status();
  }
  return setup_validation(tr);
}

pg_status pg_train(const pg_train_opts *o, pg_train_result *res) {
  trainer tr = {.o = o};
  memset(res, 0, sizeof *res);
  res->val_loss = NAN;
  pg_status st = setup(&tr);
  if (st) {
    trainer_free(&tr);
    return st;
  }
  const pg_dit_config *c = &tr.model.cfg;
  const int64_t dims[4] = {o->batch, c->input_size, c->input_size, c->in_channels};
  const bool tty = !o->quiet && isatty(STDERR_FILENO);
  if (!o->quiet)
    fprintf(stderr, "train: %lld parameters, %lld steps from step %lld, batch %lld, %s lr %.2e\n",
            (long long)pg_params_numel(&tr.model.params, true), (long long)tr.total,
            (long long)tr.step, (long long)o->batch, pg_optim_kind_name(o->optim.kind), o->optim.lr);

  /* SIGINT: finish the step, save, stop */
  pg_run_catch_sigint();
  double t0 = pg_run_seconds(), t_last = t0, smoothed = NAN, interval_sum = 0, rate = 0;
  int64_t interval_n = 0, step_last = tr.step;
  while (tr.step < tr.total && !st) {
    double lr = pg_schedule_lr(&tr.sched, tr.opt.step);
    tr.opt.config.lr = lr;
    pg_ctx_reset(tr.ctx);
    int64_t count;
    if ((st = pg_loader_next(tr.loader, tr.x, c->num_classes ? tr.y : NULL, NULL, &count))) break;
    pg_tensor *x0 = pg_from_array(tr.ctx, 4, dims, tr.x);
    pg_tensor *loss = pg_diffusion_loss(tr.ctx, &tr.model, &tr.diff, x0,
                                        c->num_classes ? tr.y : NULL, true, &tr.rng, NULL, NULL);
    if (!loss) {
      st = pg_last_status();
      break;
    }
    double value = loss->data[0];
    if (!isfinite(value)) {
      st = pg_fail(PG_ERR_STATE, "train: the loss is %s at step %lld; stopping without saving (the last checkpoint, if any, is kept)",
                   isnan(value) ? "NaN" : "Inf", (long long)tr.step + 1);
      break;
    }
    if ((st = pg_backward(tr.ctx, loss))) break;
    if (o->clip > 0) {
      double norm = pg_clip_grad_norm(&tr.model.params, o->clip, 2.0);
      if (!isfinite(norm)) {
        st = pg_fail(PG_ERR_STATE, "train: the gradient norm is not finite at step %lld; stopping without saving",
                     (long long)tr.step + 1);
        break;
      }
    }
    if ((st = pg_optimizer_step(&tr.opt))) break;
    pg_optimizer_zero_grad(&tr.opt);
    if (tr.ema_ready && (st = pg_ema_update(&tr.ema))) break;
    tr.step++;

    smoothed = isnan(smoothed) ? value : 0.98 * smoothed + 0.02 * value;
    interval_sum += value;
    interval_n++;
    double t = pg_run_seconds();
    bool log_now = tr.step % o->log_every == 0 || tr.step == tr.total;
    bool val_now = tr.val_n && o->val_every > 0 && (tr.step % o->val_every == 0 || tr.step == tr.total);
    if (t - t_last > 0.25 || log_now) {
      rate = (double)(tr.step - step_last) / (t - t0);
      if (tty) progress(&tr, smoothed, lr, rate, true, false);
      t_last = t;
    }
    if (log_now || val_now) {
      double val = val_now ? validation_loss(&tr) : NAN;
      if (val_now) res->val_loss = val;
      res->train_loss = interval_sum / (double)interval_n;
      if ((st = add_row(&tr, tr.step, res->train_loss, val, lr, tr.seconds_before + t - t0))) break;
      interval_sum = 0;
      interval_n = 0;
      if (!o->quiet) {
        progress(&tr, smoothed, lr, rate, tty, false);
        if (val_now) fprintf(stderr, "%sstep %lld: validation loss %.5f\n", tty ? "\n" : "", (long long)tr.step, val);
      }
      if ((st = write_csv(&tr))) break;
    }
    const bool interrupted = pg_run_interrupted();
    if ((o->ckpt_every > 0 && tr.step % o->ckpt_every == 0) || interrupted) {
      if ((st = save_checkpoint(&tr))) break;
    }
    if (interrupted) {
      res->interrupted = true;
      if (!o->quiet)
        fprintf(stderr, "\ntrain: interrupted at step %lld; checkpoint saved to %s\n", (long long)tr.step,
                out_file(&tr, "ckpt.h5"));
      break;
    }
  }
  pg_run_release_sigint();
  double elapsed = pg_run_seconds() - t0;
  res->step = tr.step;
  res->steps_per_second = elapsed > 0 ? (double)(tr.step - step_last) / elapsed : 0;
  if (!st && !res->interrupted && tr.step > step_last) {
    if (tty) fputc('\n', stderr);
    st = save_checkpoint(&tr);
    if (!st && tr.rows) st = write_csv(&tr);
    if (!st && tr.rows) st = write_curve(&tr);
    if (!st && o->sample_cols > 0) {
      pg_sample_sheet_opts so = {.sampler = {.kind = PG_SAMPLER_DDIM, .steps = o->sample_steps,
                                             .cfg_scale = o->sample_cfg, .seed = o->seed},
                                 .per_class = o->sample_cols, .class_id = -1};
      if (tr.ema_ready) pg_ema_swap(&tr.ema);
      st = pg_sample_sheet(tr.ctx, &tr.model, &tr.diff, &tr.transform, &so,
                           out_file(&tr, "samples.png"), o->quiet);
      if (tr.ema_ready) pg_ema_swap(&tr.ema);
    }
    if (!st && !o->quiet)
      fprintf(stderr, "train: %lld steps at %.1f steps/s; wrote %s/ckpt.h5, loss.csv, loss.png%s\n",
              (long long)tr.step, res->steps_per_second, o->out_dir,
              o->sample_cols > 0 ? ", samples.png" : "");
  }
  trainer_free(&tr);
  return st;
}
