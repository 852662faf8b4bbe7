/* The training loop of train/run.h. Read train_step() first: one update,
 * in the order of a PyTorch loop. pg_run_training() is setup, then that
 * step with the bookkeeping around it (log rows, validation, checkpoints,
 * the stop flag), then the closing files. */
#include "patchgrad/train/run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "patchgrad/autograd/ops.h"
#include "patchgrad/autograd/tape.h"
#include "patchgrad/dist/dist.h"
#include "patchgrad/dist/reducer.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/io/optim_kv.h"
#include "patchgrad/optim/clip.h"
#include "patchgrad/optim/summary.h"
#include "patchgrad/render/plot.h"
#include "patchgrad/train/run_parts.h"

/* The log (run.h): loss.csv, its curve loss.png. */
#define LOG_NAME "loss.csv"
#define CURVE_NAME "loss.png"

/* loss.csv's columns after `step`: these, the model's, then seconds. */
static const pg_run_column head_columns[] = {
    {"train_loss", PG_COL_TRAIN_LOSS, 0, "%.6g", "loss"},
    {"val_loss", PG_COL_VAL, 0, "%.6g", NULL},
    {"lr", PG_COL_LR, 0, "%.6g", NULL},
    {"epoch", PG_COL_EPOCH, 0, "%.4f", NULL},
};
static const pg_run_column seconds_column = {"seconds", PG_COL_SECONDS, 0, "%.2f", NULL};

static void set_columns(pg_run *run) {
  const pg_run_model *m = run->model;
  int n = 0;
  for (size_t i = 0; i < sizeof head_columns / sizeof *head_columns; i++) run->columns[n++] = head_columns[i];
  for (int i = 0; i < m->n_columns; i++) run->columns[n++] = m->columns[i];
  run->columns[n++] = seconds_column;
  run->n_columns = n;
}

const pg_run_column *pg_run_columns(const pg_run *run, int *n) {
  *n = run->n_columns;
  return run->columns;
}

/* A monotonic clock, in seconds. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *pg_run_path(const pg_run *run, const char *name, char *buf) {
  if (!run->opts->out_dir) return NULL;
  snprintf(buf, PG_RUN_PATH_MAX, "%s/%s", run->opts->out_dir, name);
  return buf;
}

double pg_run_rate(const pg_run *run, bool train_only) {
  const double s = train_only ? run->train_seconds : run->wall_seconds;
  return s > 0 ? (double)(run->step - run->first_step) / s : 0;
}

const char *pg_run_format_duration(double s, char *buf, size_t cap) {
  if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "?");
  else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
  else if (s >= 60) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
  else snprintf(buf, cap, "%.0fs", s);
  return buf;
}

/* ---- data parallelism (docs/distributed.md) ----
 * Everything the loop does differently with several ranks is here: the
 * share of each batch, rank 0's parameters broadcast, the per-step
 * agreement on the loss, the metrics and the stop flag, and the gradients
 * averaged by the reducer. With one rank none of it communicates and the
 * loop is the plain one. */

/* Bucket size of the gradient reduction (DDP's default is 25 MiB for much
 * larger models; the models here have a few MiB of gradients). */
#define DP_BUCKET_BYTES ((size_t)1 << 20)

void pg_run_share(const pg_run *run, int64_t n, int64_t *begin, int64_t *end) {
  const int64_t r = run->dist->rank, k = run->dist->size;
  *begin = r * n / k;
  *end = (r + 1) * n / k;
}

/* Before the loader opens: the communicator, this rank's share of a batch
 * and its micro-batches. */
static pg_status dp_check(pg_run *run) {
  const pg_run_opts *o = run->opts;
  const int k = run->dist->size;
  if (o->batch % k)
    return pg_fail(PG_ERR_ARG, "%s: the global batch %lld is not divisible by the %d ranks (choose a multiple of %d)",
                   run->model->name, (long long)o->batch, k, k);
  run->local_batch = o->batch / k;
  run->accum = o->accum > 1 ? o->accum : 1;
  if (o->accum < 0)
    return pg_fail(PG_ERR_ARG, "%s: accum must be >= 1, got %lld", run->model->name, (long long)o->accum);
  if (run->local_batch % run->accum) {
    if (k == 1)
      return pg_fail(PG_ERR_ARG, "%s: batch %lld is not divisible by --accum %lld (micro-batches are equal)",
                     run->model->name, (long long)o->batch, (long long)run->accum);
    return pg_fail(PG_ERR_ARG, "%s: the batch per rank %lld (%lld over %d ranks) is not divisible by --accum %lld",
                   run->model->name, (long long)run->local_batch, (long long)o->batch, k, (long long)run->accum);
  }
  run->micro_batch = run->local_batch / run->accum;
  return PG_OK;
}

/* After the model is built: every rank agrees on the setup so far (a
 * failing rank's message reaches all), then rank 0's parameters go to
 * every rank. */
static pg_status dp_start(pg_run *run, pg_status local) {
  pg_status st = pg_dist_agree(run->dist, local);
  if (st || run->dist->size == 1) return st;
  return pg_dist_broadcast_params(run->dist, run->params);
}

/* After the optimizer has frozen its frozen groups: the reducer adopts the
 * gradient buffers of the tensors that train (frozen ones have none in the
 * reduction, so they cost no communication). */
static pg_status dp_reducer(pg_run *run) {
  if (run->dist->size == 1) return PG_OK;
  pg_status st = pg_reducer_init(&run->reducer, run->dist, run->params, DP_BUCKET_BYTES);
  run->reducer_ready = !st;
  return st;
}

/* After the losses, before the last backward (the one that communicates):
 * the global mean loss, the metrics and sample count summed over ranks, any
 * rank's stop flag, and whether any rank failed (then every rank gets the
 * lowest failing rank's message). The earlier micro-batches' backward passes
 * are local, so a rank failing in one does not leave the others waiting. */
static pg_status dp_agree_step(pg_run *run, pg_status local, double *loss, double *metrics, int64_t *count) {
  const pg_run_opts *o = run->opts;
  const int k = run->dist->size;
  run->stop_now = o->stop && *o->stop;
  if (k == 1) return local;
  double v[4 + PG_RUN_MAX_METRICS];
  const int n = 4 + run->model->n_metrics;
  v[0] = local ? 1 : 0;
  v[1] = local ? 0 : *loss;
  v[2] = (double)*count;
  v[3] = run->stop_now ? 1 : 0;
  for (int i = 0; i < run->model->n_metrics; i++) v[4 + i] = metrics[i];
  pg_status st = pg_dist_allreduce_sum(run->dist, v, n);
  if (st) return st;
  if (v[0] > 0) {
    run->agreed_error = true;
    return pg_dist_agree(run->dist, local);
  }
  *loss = v[1] / (double)k; /* the mean of equal shares' means */
  *count = (int64_t)v[2];
  run->stop_now = v[3] > 0;
  for (int i = 0; i < run->model->n_metrics; i++) metrics[i] = v[4 + i];
  return PG_OK;
}

/* After backward: the gradients averaged over ranks. */
static pg_status dp_average_grads(pg_run *run) {
  return run->reducer_ready ? pg_reducer_finish(&run->reducer) : PG_OK;
}

/* After the reducer, with --shard-optimizer and several ranks: the
 * optimizer's state sharded over the ranks (dist/zero.h), built from the
 * optimizer's own settings and groups; the unsharded one is freed before
 * its state was ever written (its pages were never touched). */
static pg_status dp_shard(pg_run *run) {
  if (!run->opts->shard_optimizer || !run->reducer_ready) return PG_OK;
  pg_status st = pg_zero_init(&run->zero, &run->reducer, &run->opt.config, run->opt.param_groups,
                              run->opt.n_param_groups);
  if (st) return pg_error_prefix(run->model->name);
  run->zero_ready = true;
  pg_optimizer_free(&run->opt);
  run->opt_ready = false;
  run->optim = &run->zero.opt;
  return PG_OK;
}

/* The optimizer's step and the gradients zeroed (each rank updates its part
 * of the parameters when the state is sharded, then they are gathered). */
static pg_status dp_optimizer_step(pg_run *run) {
  if (run->zero_ready) {
    pg_status st = pg_zero_step(&run->zero);
    if (!st) pg_zero_zero_grad(&run->zero);
    return st;
  }
  pg_status st = pg_optimizer_step(&run->opt);
  if (!st) pg_optimizer_zero_grad(&run->opt);
  return st;
}

/* Before a checkpoint with a sharded optimizer: its whole state on rank 0,
 * in *full (what the unsharded optimizer's `state` holds); every rank takes
 * part. */
static pg_status dp_gather_state(pg_run *run, pg_params *full) {
  pg_status st = run->dist->rank == 0 ? pg_zero_full_state(&run->zero, full) : PG_OK;
  st = pg_dist_agree(run->dist, st);
  return st ? st : pg_zero_gather_state(&run->zero, run->dist->rank == 0 ? full : NULL);
}

/* ---- one step ---- */

/* The forward pass of micro-batch k of the batch in the loop's buffers
 * (all of it when there is one): its loss on a fresh tape (the previous
 * micro-batch's gradients are in the parameters' buffers), the metrics
 * added. */
static pg_tensor *micro_loss(pg_run *run, int64_t k, const int64_t *labels, double *metrics) {
  const pg_run_model *m = run->model;
  const pg_latents_info *info = run->info;
  const int64_t n = run->micro_batch, per = info->height * info->width * info->channels;
  pg_ctx_reset(run->ctx);
  pg_batch b = {.x = pg_from_array(run->ctx, 4, (int64_t[]){n, info->height, info->width, info->channels}, run->x + k * n * per),
                .labels = labels ? labels + k * n : NULL, .count = n, .seed = run->opts->seed, .step = run->step,
                .first = run->dist->rank * run->local_batch + k * n};
  return b.x ? m->loss(m->self, run->ctx, &b, &run->rng, metrics) : NULL;
}

/* Backward from a micro-batch's loss, times 1/K with K micro-batches (the
 * gradients then sum to those of the whole batch's mean loss); the last
 * one's with several ranks through the reducer, so that the gradients go
 * out bucket by bucket during it. */
static pg_status micro_backward(pg_run *run, pg_tensor *loss, bool last) {
  if (run->accum > 1 && !(loss = pg_mul_scalar(run->ctx, loss, 1.0f / (float)run->accum))) return pg_last_status();
  return last && run->reducer_ready ? pg_reducer_backward(&run->reducer, run->ctx, loss) : pg_backward(run->ctx, loss);
}

/* One update on the next batch: its loss (into *loss_value, the mean over
 * its micro-batches), the gradients, clipping, the optimizer's step, zeroed
 * gradients, the EMA. */
static pg_status train_step(pg_run *run, double *loss_value, int64_t *count) {
  const pg_run_opts *o = run->opts;
  const pg_run_model *m = run->model;

  run->lr = pg_schedule_lr(&run->schedule, run->optim->step);
  run->optim->config.lr = run->lr;
  int64_t *labels = run->info->has_labels ? run->y : NULL;
  double metrics[PG_RUN_MAX_METRICS] = {0};
  pg_tensor *loss = NULL;
  pg_status st = pg_loader_next(run->loader, run->x, labels, NULL, count);
  *loss_value = 0;
  for (int64_t k = 0; !st && k < run->accum; k++) {
    if (!(loss = micro_loss(run, k, labels, metrics))) {
      st = pg_last_status();
      break;
    }
    *loss_value += loss->data[0];
    /* the earlier micro-batches' backward now (it is local); the last one's
     * after the step's agreement */
    if (k + 1 < run->accum) st = micro_backward(run, loss, false);
  }
  if (run->accum > 1) *loss_value /= (double)run->accum; /* equal micro-batches */
  if ((st = dp_agree_step(run, st, loss_value, metrics, count))) return st;
  for (int k = 0; k < m->n_metrics; k++) run->interval_metrics[k] += metrics[k];
  run->agreed_error = true; /* the loss and the gradient norm are the same on every rank */
  if (!isfinite(*loss_value))
    return pg_fail(PG_ERR_STATE, "%s: the loss is %s at step %lld; %s", m->name, isnan(*loss_value) ? "NaN" : "Inf",
                   (long long)run->step + 1,
                   m->loss_not_finite ? m->loss_not_finite : "stopping without saving (the last checkpoint, if any, is kept)");
  run->agreed_error = false;
  st = micro_backward(run, loss, true);
  if (st || (st = dp_average_grads(run))) return st;
  run->agreed_error = true;
  if (o->clip > 0 && !isfinite(pg_clip_grad_norm(run->params, o->clip, 2.0)))
    return pg_fail(PG_ERR_STATE, "%s: the gradient norm is not finite at step %lld%s", m->name,
                   (long long)run->step + 1, m->grad_not_finite ? m->grad_not_finite : "; stopping without saving");
  run->agreed_error = false;
  if ((st = dp_optimizer_step(run))) return st;
  if (run->ema_ready && (st = pg_ema_update(&run->ema))) return st;
  run->step++;
  return PG_OK;
}

/* ---- the log ---- */

static pg_status add_row(pg_run *run, const double *values) {
  const int width = 1 + run->n_columns;
  if (run->n_rows == run->rows_cap) {
    int64_t cap = run->rows_cap ? 2 * run->rows_cap : 256;
    double *p = realloc(run->rows, (size_t)(cap * width) * sizeof *p);
    if (!p) return pg_fail(PG_ERR_MEMORY, "%s: out of memory for the log", run->model->name);
    run->rows = p;
    run->rows_cap = cap;
  }
  memcpy(run->rows + run->n_rows * width, values, (size_t)width * sizeof *values);
  run->n_rows++;
  return PG_OK;
}

/* The log, rewritten whole (atomically) each time: it stays small. */
static pg_status write_log(pg_run *run) {
  char path[PG_RUN_PATH_MAX], tmp[PG_RUN_PATH_MAX + 8];
  if (!pg_run_path(run, LOG_NAME, path)) return PG_OK;
  const char *who = run->model->name;
  const int nc = run->n_columns;
  const pg_run_column *cols = run->columns;
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return pg_fail(PG_ERR_IO, "%s: cannot write %s: %s", who, path, strerror(errno));
  fprintf(f, "step");
  for (int c = 0; c < nc; c++) fprintf(f, ",%s", cols[c].name);
  fputc('\n', f);
  for (int64_t r = 0; r < run->n_rows; r++) {
    const double *row = run->rows + r * (1 + nc);
    fprintf(f, "%lld", (long long)row[0]);
    for (int c = 0; c < nc; c++) {
      fputc(',', f);
      if (!isnan(row[1 + c])) fprintf(f, cols[c].format, row[1 + c]);
    }
    fputc('\n', f);
  }
  bool ok = !ferror(f);
  ok &= fclose(f) == 0;
  if (!ok || rename(tmp, path)) {
    remove(tmp);
    return pg_fail(PG_ERR_IO, "%s: cannot write %s: %s", who, path, strerror(errno ? errno : EIO));
  }
  return PG_OK;
}

static int64_t log_every_of(const pg_run_opts *o) { return o->log_every > 0 ? o->log_every : 50; }

/* Whether a run writes a row at step whether or not it ends there: on the
 * log_every grid or at a validation. */
static bool row_due(const pg_run *run, int64_t step) {
  const pg_run_opts *o = run->opts;
  const int64_t val_every = o->val_every > 0 ? o->val_every : run->batches_per_epoch;
  return step % log_every_of(o) == 0 || (run->model->validate && o->val_every >= 0 && val_every > 0 && step % val_every == 0);
}

/* The open log interval (the steps since the last row on the log_every
 * grid), saved beside each checkpoint as "loss.csv.interval" with exact
 * (hex) numbers, so that a resumed run's next row averages the same steps
 * as an uninterrupted run's. */
static pg_status write_interval(pg_run *run) {
  char path[PG_RUN_PATH_MAX];
  if (!pg_run_path(run, LOG_NAME ".interval", path)) return PG_OK;
  FILE *f = fopen(path, "w");
  if (!f) return pg_fail(PG_ERR_IO, "%s: cannot write %s: %s", run->model->name, path, strerror(errno));
  fprintf(f, "%lld %lld %lld %a", (long long)run->step, (long long)run->interval_steps,
          (long long)run->interval_samples, run->interval_loss);
  for (int k = 0; k < PG_RUN_MAX_METRICS; k++) fprintf(f, " %a", run->interval_metrics[k]);
  fputc('\n', f);
  const bool ok = !ferror(f) & (fclose(f) == 0);
  return ok ? PG_OK : pg_fail(PG_ERR_IO, "%s: cannot write %s", run->model->name, path);
}

/* On resume: the open interval of the checkpoint's step, when saved. */
static void read_interval(pg_run *run) {
  char path[PG_RUN_PATH_MAX];
  FILE *f = pg_run_path(run, LOG_NAME ".interval", path) ? fopen(path, "r") : NULL;
  if (!f) return;
  long long step, steps, samples;
  double loss, metrics[PG_RUN_MAX_METRICS];
  int got = fscanf(f, "%lld %lld %lld %la", &step, &steps, &samples, &loss);
  for (int k = 0; k < PG_RUN_MAX_METRICS && got == 4 + k; k++) got += fscanf(f, " %la", &metrics[k]);
  fclose(f);
  if (got != 4 + PG_RUN_MAX_METRICS || step != run->step || steps < 0 || steps > run->step ||
      samples < 0 || !isfinite(loss))
    return;
  run->interval_steps = steps;
  run->interval_samples = samples;
  run->interval_loss = loss;
  memcpy(run->interval_metrics, metrics, sizeof metrics);
}

/* On resume: the rows of the earlier run up to the checkpoint's step (a
 * closing row off the log_every grid is left out: an uninterrupted run has
 * none there). */
static pg_status read_log(pg_run *run) {
  char path[PG_RUN_PATH_MAX];
  FILE *f = pg_run_path(run, LOG_NAME, path) ? fopen(path, "r") : NULL;
  if (!f) return PG_OK;
  const int nc = run->n_columns;
  const pg_run_column *cols = run->columns;
  double values[1 + 5 + PG_RUN_MAX_COLUMNS];
  char line[1024];
  pg_status st = PG_OK;
  if (!fgets(line, sizeof line, f)) line[0] = 0; /* the header */
  while (!st && fgets(line, sizeof line, f)) {
    /* step, then nc fields; an empty field is a value not measured */
    char *p = line, *end;
    values[0] = (double)strtoll(p, &end, 10);
    bool ok = end != p;
    for (int c = 0; c < nc && ok; c++) {
      p = end;
      ok = *p == ',';
      p++;
      values[1 + c] = strtod(p, &end);
      if (end == p) values[1 + c] = NAN;
    }
    if (!ok || (*end != '\n' && *end != 0)) continue; /* not a row of this log */
    if (values[0] > (double)run->step) break;
    if (values[0] == (double)run->step && !row_due(run, run->step)) break;
    st = add_row(run, values);
    for (int c = 0; c < nc; c++)
      if (cols[c].source == PG_COL_SECONDS) run->seconds_before = values[1 + c];
  }
  fclose(f);
  if (!st) read_interval(run);
  return st;
}

/* The curve: the training loss (blue) at every row and validation value 0
 * (orange) at the rows where it was measured, against the step, with the
 * axes' names and a legend. */
static pg_status write_curve(pg_run *run) {
  char path[PG_RUN_PATH_MAX];
  if (!pg_run_path(run, CURVE_NAME, path)) return PG_OK;
  const int nc = run->n_columns;
  const pg_run_column *cols = run->columns;
  int train_col = -1, val_col = -1;
  for (int c = nc - 1; c >= 0; c--) {
    if (cols[c].source == PG_COL_TRAIN_LOSS) train_col = c;
    if (cols[c].source == PG_COL_VAL && cols[c].index == 0) val_col = c;
  }
  const int64_t n = run->n_rows;
  float *buf = malloc((size_t)(n ? n : 1) * 4 * sizeof *buf);
  if (!buf) return pg_fail(PG_ERR_MEMORY, "%s: out of memory for the loss curve", run->model->name);
  float *xs = buf, *train = buf + n, *val_x = buf + 2 * n, *val = buf + 3 * n;
  int64_t n_val = 0;
  for (int64_t i = 0; i < n; i++) {
    const double *row = run->rows + i * (1 + nc);
    xs[i] = (float)row[0];
    train[i] = train_col >= 0 ? (float)row[1 + train_col] : NAN;
    if (val_col >= 0 && !isnan(row[1 + val_col])) {
      val_x[n_val] = xs[i];
      val[n_val++] = (float)row[1 + val_col];
    }
  }
  pg_plot_opts po;
  pg_plot_opts_init(&po);
  po.log_y = true;
  static const char *const names[2] = {"train", "validation"};
  po.x_label = "step";
  po.y_label = "loss";
  po.names = names;
  pg_plot_curve curves[2] = {{xs, train, n}, {val_x, val, n_val}};
  pg_image *im = pg_plot_lines(&po, 2, curves);
  free(buf);
  if (!im) return pg_last_status();
  pg_status st = pg_png_write(path, im);
  pg_image_free(im);
  return st;
}

/* Validation (when due) and a log row, then the progress line and the file. */
static pg_status log_row(pg_run *run, bool val_now) {
  const pg_run_model *m = run->model;
  run->validated = val_now;
  if (val_now) {
    const bool grad_was = pg_set_grad_enabled(run->ctx, false);
    const bool training_was = pg_set_training(run->ctx, false);
    pg_status st = m->validate(m->self, run->ctx, run->val);
    pg_ctx_reset(run->ctx);
    pg_set_grad_enabled(run->ctx, grad_was);
    pg_set_training(run->ctx, training_was);
    if (st) return st;
  }
  /* the training loss (run.h): the mean over the steps since the last row */
  run->train_loss = run->interval_loss / (double)run->interval_steps;
  run->train_loss_steps = run->interval_steps;
  for (int k = 0; k < m->n_metrics; k++)
    run->metrics[k] = run->interval_metrics[k] / (double)run->interval_samples;
  const int nc = run->n_columns;
  const pg_run_column *cols = run->columns;
  double values[1 + 5 + PG_RUN_MAX_COLUMNS] = {(double)run->step};
  for (int c = 0; c < nc; c++) {
    double *v = &values[1 + c];
    switch (cols[c].source) {
    case PG_COL_EPOCH: *v = (double)run->step / (double)run->batches_per_epoch; break;
    case PG_COL_LR: *v = run->lr; break;
    case PG_COL_TRAIN_LOSS: *v = run->train_loss; break;
    case PG_COL_METRIC: *v = run->metrics[cols[c].index]; break;
    case PG_COL_VAL: *v = val_now ? run->val[cols[c].index] : NAN; break;
    case PG_COL_SECONDS: *v = run->seconds_before + run->wall_seconds; break;
    }
  }
  pg_status st = add_row(run, values);
  /* a closing row off the grid leaves the interval open for the
   * checkpoint: a resumed run continues it */
  if (run->step != run->total || row_due(run, run->step)) {
    run->interval_loss = 0;
    memset(run->interval_metrics, 0, sizeof run->interval_metrics);
    run->interval_steps = run->interval_samples = 0;
  }
  if (st) return st;
  if (!run->opts->quiet) m->report(m->self, run, PG_RUN_ROW);
  return write_log(run);
}

/* ---- checkpoints ---- */

pg_checkpoint pg_run_state_parts(pg_run *run, pg_loader_state *ls, int64_t *optim_step) {
  return (pg_checkpoint){
      .params = run->params,
      .ema = run->ema_ready ? &run->ema.shadow : NULL,
      .optim_state = &run->optim->state, /* the caller's whole state when sharded */
      .optim_step = optim_step,
      .step = &run->step,
      .rng = &run->rng,
      .loader = ls,
  };
}

/* ckpt.h5: the model's config, the weights, the step and the run record;
 * unless the model's runs are weights-only, also the optimizer (settings,
 * param groups, state), the EMA, the generator and the loader position. */
static pg_status save_checkpoint(pg_run *run) {
  char path[PG_RUN_PATH_MAX];
  const pg_run_model *m = run->model;
  pg_params full = {0}; /* a sharded optimizer's state, whole */
  if (run->zero_ready && !m->weights_only && run->rank0_writes) {
    pg_status st = dp_gather_state(run, &full);
    if (st) return st;
  }
  if (!pg_run_path(run, "ckpt.h5", path)) return PG_OK;
  pg_kv config, optim_cfg, record;
  pg_kv_init(&config);
  pg_kv_init(&optim_cfg);
  pg_kv_init(&record);
  pg_status st = m->config ? m->config(m->self, &config) : PG_OK;
  st = st ? st : pg_run_record(run, &record);
  pg_loader_state ls = pg_loader_get_state(run->loader);
  int64_t optim_step = run->optim->step;
  pg_checkpoint ck = {.params = run->params, .step = &run->step};
  if (!m->weights_only) {
    ck = pg_run_state_parts(run, &ls, &optim_step);
    ck.optim_config = &optim_cfg;
    if (run->zero_ready) ck.optim_state = &full;
    st = st ? st : pg_optimizer_to_kv(run->optim, &optim_cfg);
  }
  ck.config = &config;
  ck.run = &record;
  st = st ? st : pg_checkpoint_save(path, &ck);
  if (!m->weights_only) st = st ? st : write_interval(run); /* for a resume */
  pg_kv_free(&config);
  pg_kv_free(&optim_cfg);
  pg_kv_free(&record);
  pg_params_free(&full);
  return st;
}

/* ---- setup and the loop ---- */

/* The loader and the model (with its fine-tuning start). */
static pg_status setup_model(pg_run *run) {
  const pg_run_opts *o = run->opts;
  const pg_run_model *m = run->model;
  const char *who = m->name;
  if (m->n_metrics > PG_RUN_MAX_METRICS || m->n_val > PG_RUN_MAX_VAL || m->n_columns > PG_RUN_MAX_COLUMNS ||
      m->n_columns < 0)
    return pg_fail(PG_ERR_ARG, "%s: at most %d metrics, %d validation values and %d log columns", who,
                   PG_RUN_MAX_METRICS, PG_RUN_MAX_VAL, PG_RUN_MAX_COLUMNS);
  set_columns(run);
  if (!o->data_path) return pg_fail(PG_ERR_ARG, "%s: the training data (--data F.h5) is required", who);
  if (o->batch < 1) return pg_fail(PG_ERR_ARG, "%s: batch must be >= 1, got %lld", who, (long long)o->batch);
  if (o->steps < 1 && o->epochs < 1)
    return pg_fail(PG_ERR_ARG, "%s: give epochs >= 1 or steps >= 1 (got %lld and %lld)", who,
                   (long long)o->epochs, (long long)o->steps);
  if (!(o->clip >= 0)) return pg_fail(PG_ERR_ARG, "%s: clip must be >= 0, got %g", who, o->clip);
  if (o->n_groups < 0 || (o->n_groups > 0 && !o->groups))
    return pg_fail(PG_ERR_ARG, "%s: %d param groups given without their array", who, o->n_groups);
  if (o->init_from && o->resume)
    return pg_fail(PG_ERR_ARG, "%s: --init-from %s and --resume %s: a resumed run takes its weights from its "
                               "checkpoint; give one", who, o->init_from, o->resume);
  pg_status st = dp_check(run);
  if (st) return st;
  if (o->out_dir && mkdir(o->out_dir, 0755) && errno != EEXIST)
    return pg_fail(PG_ERR_IO, "%s: cannot create the output folder %s: %s", who, o->out_dir, strerror(errno));

  /* One process reads the training set once into memory, then shuffles it
   * each epoch; with several ranks each reads only its share of every
   * batch, sample by sample by hyperslab (the loader's disk mode), so no
   * rank holds the whole file. */
  pg_loader_opts lo;
  pg_loader_opts_init(&lo);
  lo.batch_size = o->batch;
  lo.drop_last = true;
  lo.in_memory = run->dist->size == 1;
  lo.seed = o->seed;
  lo.rank = run->dist->rank;
  lo.ranks = run->dist->size;
  lo.data = &o->data;
  if (!(run->loader = pg_loader_open(o->data_path, &lo))) return pg_last_status();
  run->info = pg_loader_info(run->loader);
  run->batches_per_epoch = pg_loader_batches_per_epoch(run->loader);
  if ((o->out_dir || o->resume) && (st = pg_run_fingerprint_data(run))) return st;

  pg_rng_seed(&run->rng, o->seed);
  if ((st = m->build(m->self, run->info, &run->rng, &run->params))) return st;
  return o->init_from ? pg_run_init_from(run) : PG_OK;
}

/* The optimizer (its frozen groups freeze their tensors), the reducer, the
 * EMA, the schedule, the buffers, a resumed state, the model's own setup. */
static pg_status setup_rest(pg_run *run) {
  const pg_run_opts *o = run->opts;
  const pg_run_model *m = run->model;
  const char *who = m->name;
  pg_status st = pg_optimizer_init_groups(&run->opt, run->params, &o->optim, o->groups, o->n_groups);
  if (st) return pg_error_prefix(who);
  run->opt_ready = true;
  if ((st = dp_reducer(run)) || (st = dp_shard(run))) return st;
  if (o->ema_decay > 0) {
    if ((st = pg_ema_init(&run->ema, run->params, o->ema_decay))) return st;
    run->ema.warmup = o->ema_warmup;
    run->ema_ready = true;
  }
  run->total = o->steps > 0 ? o->steps : o->epochs * run->batches_per_epoch;
  run->schedule = o->schedule;
  run->schedule.base_lr = o->optim.lr;
  if (run->schedule.kind == PG_SCHEDULE_COSINE && run->schedule.total_steps <= 0)
    run->schedule.total_steps = run->total;
  if (o->warmup_within_run && run->schedule.warmup_steps >= run->total)
    run->schedule.warmup_steps = run->total - 1;
  if ((st = pg_schedule_check(&run->schedule))) return st;

  const int64_t per = run->info->height * run->info->width * run->info->channels;
  run->x = malloc((size_t)(run->local_batch * per) * sizeof *run->x);
  run->y = malloc((size_t)run->local_batch * sizeof *run->y);
  if (!run->x || !run->y) return pg_fail(PG_ERR_MEMORY, "%s: out of memory for a batch", who);
  if (!(run->ctx = pg_ctx_new(0))) return pg_last_status();
  if (o->resume && ((st = pg_run_resume_state(run, o->resume)) || (st = read_log(run)))) return st;
  run->first_step = run->step;
  if (m->prepare && (st = m->prepare(m->self, run))) return st;
  if (m->log_from_start && (st = write_log(run))) return st;
  return PG_OK;
}

/* Every rank runs both parts; their errors are agreed over ranks. */
static pg_status setup(pg_run *run) {
  pg_status st = dp_start(run, setup_model(run));
  return st ? st : pg_dist_agree(run->dist, setup_rest(run));
}

static void run_free(pg_run *run) {
  if (run->zero_ready) pg_zero_free(&run->zero); /* before the reducer it points into */
  if (run->reducer_ready) pg_reducer_free(&run->reducer);
  if (run->ema_ready) pg_ema_free(&run->ema);
  if (run->opt_ready) pg_optimizer_free(&run->opt);
  pg_loader_close(run->loader);
  pg_ctx_free(run->ctx);
  free(run->x);
  free(run->y);
  free(run->rows);
}

/* A model callback with the EMA weights in place when the run keeps an EMA. */
static pg_status with_ema_weights(pg_run *run, pg_status (*fn)(void *, pg_run *)) {
  if (run->ema_ready) pg_ema_swap(&run->ema);
  pg_status st = fn(run->model->self, run);
  if (run->ema_ready) pg_ema_swap(&run->ema);
  return st;
}

/* After the last step: the checkpoint, the log and its curve, the model's
 * closing products with the EMA weights in place. */
static pg_status finish(pg_run *run) {
  const pg_run_model *m = run->model;
  if (run->tty) fputc('\n', stderr);
  pg_status st = save_checkpoint(run);
  if (!st && run->n_rows) st = write_log(run);
  if (!st && run->n_rows) st = write_curve(run);
  if (!st && m->finish) st = with_ema_weights(run, m->finish);
  if (!st && !run->opts->quiet) m->report(m->self, run, PG_RUN_DONE);
  return st;
}

/* Before the first step, on rank 0: the notes of the setup (always: they
 * say what a resume or a fine-tuning start changed), the START report and
 * the model summary (unless quiet). */
static void report_start(pg_run *run) {
  const pg_run_model *m = run->model;
  if (run->dist->rank > 0) return;
  for (const char *p = run->notes; *p;) {
    const char *nl = strchr(p, '\n');
    const int len = nl ? (int)(nl - p) : (int)strlen(p);
    fprintf(stderr, "%s: note: %.*s\n", m->name, len, p);
    p += len + (nl ? 1 : 0);
  }
  if (run->opts->quiet) return;
  m->report(m->self, run, PG_RUN_START);
  pg_params_print_summary(run->params, 1, stderr);
  fflush(stderr);
}

pg_status pg_run_training(const pg_run_opts *o, const pg_run_model *model, pg_run_result *res) {
  pg_run_model m = *model;
  if (!m.report) m.report = pg_run_report_default;
  /* ranks other than 0 neither print nor write */
  pg_run_opts mine = *o;
  const bool rank0_writes = o->out_dir != NULL; /* the same options on every rank */
  if (o->dist && o->dist->rank > 0) {
    mine.out_dir = NULL;
    mine.quiet = true;
  }
  o = &mine;
  pg_run run = {.opts = o, .model = &m, .single = {.rank = 0, .size = 1}};
  run.dist = o->dist ? o->dist : &run.single;
  run.optim = &run.opt;
  run.rank0_writes = rank0_writes;
  for (int k = 0; k < PG_RUN_MAX_VAL; k++) run.val[k] = NAN;
  run.train_loss = NAN;
  memset(res, 0, sizeof *res);
  pg_precision outer;
  pg_status st = pg_autocast_set(o->precision, &outer);
  if (st) return pg_fail(st, "%s: --precision %s: %s", m.name, pg_precision_name(o->precision), pg_last_error());
  if ((st = setup(&run))) {
    run_free(&run);
    pg_autocast_set(outer, NULL);
    return st;
  }
  run.tty = !o->quiet && isatty(STDERR_FILENO);
  const int64_t log_every = log_every_of(o);
  const int64_t val_every = o->val_every > 0 ? o->val_every : run.batches_per_epoch;
  const bool validation = m.validate && o->val_every >= 0 && val_every > 0;
  report_start(&run);

  run.t0 = run.t_tick = now();
  while (run.step < run.total) {
    const double t_step = now();
    double loss = 0;
    int64_t count = 0;
    if ((st = train_step(&run, &loss, &count))) break;
    const double t = now();
    run.train_seconds += t - t_step;
    run.wall_seconds = t - run.t0;
    run.interval_loss += loss;
    run.interval_steps++;
    run.interval_samples += count;

    const bool last = run.step == run.total;
    const bool row_now = run.step % log_every == 0 || last;
    const bool val_now = validation && (run.step % val_every == 0 || last);
    if (run.tty && (t - run.t_tick > 0.25 || row_now)) {
      m.report(m.self, &run, PG_RUN_TICK);
      run.t_tick = t;
    }
    if ((row_now || val_now) && (st = log_row(&run, val_now))) break;
    const bool stop = run.dist->size > 1 ? run.stop_now : o->stop && *o->stop;
    if (((o->ckpt_every > 0 && run.step % o->ckpt_every == 0) || stop) && (st = save_checkpoint(&run))) break;
    if (stop) {
      res->stopped = true;
      if (!o->quiet) m.report(m.self, &run, PG_RUN_STOPPED);
      break;
    }
    if (m.snapshot && m.snapshot_every > 0 && run.step % m.snapshot_every == 0 && !last &&
        (st = with_ema_weights(&run, m.snapshot)))
      break;
  }
  run.wall_seconds = now() - run.t0;
  if (!st && !res->stopped && run.step > run.first_step) st = finish(&run);
  res->step = run.step;
  res->train_loss = run.train_loss;
  res->train_loss_steps = run.train_loss_steps;
  memcpy(res->metrics, run.metrics, sizeof res->metrics);
  memcpy(res->val, run.val, sizeof res->val);
  res->seconds = run.wall_seconds;
  res->train_seconds = run.train_seconds;
  res->steps_done = run.step - run.first_step;
  res->comm_wait_seconds = run.reducer.wait_seconds;
  res->reduced_numel = run.reducer.numel;
  res->optim_state_numel = pg_params_numel(&run.optim->state, false);
  res->local_error = st && run.dist->size > 1 && !run.agreed_error;
  run_free(&run);
  pg_autocast_set(outer, NULL);
  return st;
}
