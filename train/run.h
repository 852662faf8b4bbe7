/* The training loop, once for every model: the DiT denoiser (dit/trainer.h),
 * the ViT classifier (vit/classify.h), and any model that fills in a
 * pg_run_model's callbacks. The loop owns everything around the model:
 *
 *   setup     the output folder, the loader (a latent file read into memory,
 *             shuffled each epoch from the seed, whole batches only), the
 *             model (build callback), the optimizer, the EMA of the weights,
 *             the learning-rate schedule, the context; a resumed run's state
 *   a step    train_step() in run.c: the next batch, the model's loss on it,
 *             backward, gradient clipping, the optimizer's step, zeroed
 *             gradients, the EMA update
 *   the log   a row every log_every steps into a CSV file (columns the model
 *             chooses), validation every val_every steps, progress lines on
 *             stderr, a checkpoint every ckpt_every steps
 *   the end   at the last step: the checkpoint, the log and its curve, the
 *             model's closing products (a sample sheet); when *stop becomes
 *             non-zero: the checkpoint after the current step, then return
 *
 * The loop never touches process-wide state: it installs no signal handler
 * (the caller sets *stop, e.g. from its own SIGINT handler, as `patchgrad
 * train` does) and changes no HDF5 settings. A NaN or infinite loss or
 * gradient norm stops the run with an error and saves nothing. */
#ifndef PG_TRAIN_RUN_H
#define PG_TRAIN_RUN_H

#include "patchgrad/autograd/api.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/params.h"
#include "patchgrad/dist/dist.h"
#include "patchgrad/dist/reducer.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/optim/ema.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/optim/schedule.h"

#define PG_RUN_MAX_METRICS 4 /* per-sample training metrics a model reports */
#define PG_RUN_MAX_VAL 4     /* numbers a validation returns */
#define PG_RUN_MAX_COLUMNS 12
#define PG_RUN_PATH_MAX 1024

typedef struct {
  const char *data_path;   /* training latents (io/latents.h) */
  const char *out_dir;     /* ckpt.h5, the log, the model's files; NULL: write nothing */
  const char *resume;      /* a checkpoint of this run to continue from, or NULL */
  int64_t batch;           /* samples per step (>= 1) */
  int64_t steps;           /* total updates when > 0 (a resumed run continues to it) ... */
  int64_t epochs;          /* ... else epochs * the data's batches per epoch */
  uint64_t seed;           /* model init, loader order, the model's random draws */
  pg_optim_config optim;   /* optim.lr is the schedule's peak */
  pg_schedule schedule;    /* base_lr is taken from optim.lr; a cosine schedule
                            * with total_steps 0 ends at the run's last step */
  bool warmup_within_run;  /* a warmup longer than the run ends one step before
                            * its end (else it is the schedule's error) */
  double clip;             /* max global gradient norm (L2), 0: off */
  double ema_decay;        /* 0: no EMA */
  int64_t log_every;       /* a log row every N steps and at the end (0: 50) */
  int64_t val_every;       /* validation every N steps and at the end; 0: at
                            * each epoch's end; < 0: never */
  int64_t ckpt_every;      /* a checkpoint every N steps (0: only at the end) */
  bool quiet;              /* no progress output */
  volatile sig_atomic_t *stop; /* when non-NULL and set: save after this step, return */
  /* Data-parallel training (docs/distributed.md), NULL or one rank: a plain
   * run. With K ranks, batch is the global batch (divisible by K) and each
   * rank trains on its slice of it; rank 0's parameters are broadcast at
   * the start, the gradients averaged over ranks before clipping and the
   * optimizer step; the loss, the metrics and validation are global; only
   * rank 0 prints and writes files; the stop flag of any rank stops every
   * rank after the same step. Every rank must call pg_run_training with the
   * same options. */
  const pg_dist *dist;
} pg_run_opts;

/* A batch from the loader, as the loss callback receives it. */
typedef struct {
  pg_tensor *x;            /* [count, H, W, C], on the step's tape (no gradient) */
  const int64_t *labels;   /* [count], NULL when the data has none */
  int64_t count;
  /* the keys of per-sample randomness (pg_rng_seed_keyed): the run's seed,
   * the step (updates before this one) and the global batch position of
   * sample 0 of this batch (0 with one rank) */
  uint64_t seed;
  int64_t step, first;
} pg_batch;

/* What a log column holds. */
typedef enum {
  PG_COL_EPOCH,            /* steps / batches per epoch */
  PG_COL_LR,               /* the learning rate of the row's step */
  PG_COL_TRAIN_LOSS,       /* mean training loss since the previous row */
  PG_COL_METRIC,           /* metric `index` per sample since the previous row */
  PG_COL_VAL,              /* validation value `index` (empty when not measured) */
  PG_COL_SECONDS,          /* wall-clock seconds of the run, earlier runs included */
  PG_COL_TRAIN_SECONDS,    /* seconds spent in training steps (validation excluded) */
} pg_run_source;

typedef struct {
  const char *name;        /* the CSV header */
  pg_run_source source;
  int index;               /* PG_COL_METRIC and PG_COL_VAL */
  const char *format;      /* printf format of the value ("%.6g") */
} pg_run_column;

typedef enum {
  PG_RUN_START,            /* setup done, before the first step */
  PG_RUN_TICK,             /* on a terminal: the progress line (at most 4 per second) */
  PG_RUN_ROW,              /* a log row was written */
  PG_RUN_STOPPED,          /* *stop ended the run; the checkpoint is saved */
  PG_RUN_DONE,             /* the last step is done and every file written */
} pg_run_event;

typedef struct pg_run pg_run;

/* A model, as the loop sees it. `self` is handed back to every callback;
 * build and loss are required, the rest may be NULL. */
typedef struct {
  const char *name;        /* starts every message: "train", "classify" */
  void *self;
  int n_metrics;           /* per-sample metrics loss() adds up, <= PG_RUN_MAX_METRICS */
  int n_val;               /* numbers validate() returns, <= PG_RUN_MAX_VAL */

  /* Builds the model for the training data (shape, labels, normalisation
   * in info), drawing its initial weights from rng (seeded with the run's
   * seed), and gives its parameters (owned by the model). */
  pg_status (*build)(void *self, const pg_latents_info *info, pg_rng *rng, pg_params **params);
  /* When a run resumes: an error naming path when the checkpoint's config is
   * not the model built. NULL: the model's runs cannot resume. */
  pg_status (*check_resume)(void *self, const pg_kv *config, const char *path);
  /* After the optimizer, the context and a resumed state exist: the model's
   * own setup (held-out data, files of its own: pg_run_path). */
  pg_status (*prepare)(void *self, pg_run *run);
  /* The loss of one batch on ctx's tape (a 0-d tensor), its mean over the
   * batch, drawing any randomness from rng (or, so that a data-parallel run
   * draws what one process draws, per sample from pg_rng_seed_keyed with
   * the batch's keys); adds the batch's sums of the metrics into
   * metrics[0 .. n_metrics). NULL with the error set. */
  pg_tensor *(*loss)(void *self, pg_ctx *ctx, const pg_batch *b, pg_rng *rng, double *metrics);
  /* n_val numbers on held-out data, with ctx in evaluation mode and
   * without gradients (reset it before each use). Every rank calls it; with
   * several ranks a model may evaluate only its share (pg_run_share) and
   * combine the ranks' parts with pg_dist_allreduce_sum on run->dist (the
   * run it got in prepare), so that every rank returns the same values. */
  pg_status (*validate)(void *self, pg_ctx *ctx, double *values);
  /* The checkpoint's config: the model's settings and what reading it back
   * needs (e.g. the data's normalisation). */
  pg_status (*config)(void *self, pg_kv *config);
  /* After the last step and its checkpoint, with the EMA weights in place
   * when the run keeps an EMA: closing products such as a sample sheet. */
  pg_status (*finish)(void *self, pg_run *run);
  /* Progress output for each event (never called when quiet; TICK only on a
   * terminal). NULL: pg_run_report_default. */
  void (*report)(void *self, const pg_run *run, pg_run_event event);

  /* The log: its file name in out_dir and its columns after `step`.
   * NULL log_name: "loss.csv" with train_loss, val_loss (value 0), lr,
   * seconds. curve_name: a plot of the training loss and validation value 0
   * against the step at the end (NULL: none). */
  const char *log_name;
  const pg_run_column *columns;
  int n_columns;
  const char *curve_name;
  const char *extra_files; /* named last in the closing line ("samples.png"), or NULL */
  bool log_from_start;     /* write the log's header at setup (else at the first row) */
  bool weights_only;       /* checkpoints hold the config, the weights and the step;
                            * else also the optimizer, EMA, generator and loader
                            * state, so that a resumed run is exact */
  /* The end of the error message of a non-finite loss and gradient norm
   * ("stopping (lower --lr?)"); NULL: say that nothing is saved. */
  const char *loss_not_finite, *grad_not_finite;
} pg_run_model;

/* The log and checkpoint fields of a pg_run_model for a model trained in
 * one go (the classifier, the VAE): "log.csv" with the columns of the
 * array `cols`, its header written at setup, weights-only checkpoints, and
 * a NaN or infinite loss or gradient stops the run with a hint to lower
 * --lr. Used inside the model's initializer: {.name = ..., PG_RUN_ONE_GO(c)}. */
#define PG_RUN_ONE_GO(cols)                                                                             \
  .log_name = "log.csv", .columns = (cols), .n_columns = (int)(sizeof(cols) / sizeof *(cols)),       \
  .log_from_start = true, .weights_only = true, .loss_not_finite = "stopping (lower --lr?)",          \
  .grad_not_finite = ""

/* The run's state. Callbacks may read every field; they change none. */
struct pg_run {
  const pg_run_opts *opts;
  const pg_run_model *model;
  pg_loader *loader;
  const pg_latents_info *info;  /* the training data */
  pg_params *params;            /* the model's */
  pg_optimizer opt;
  pg_ema ema;
  bool opt_ready, ema_ready;
  pg_schedule schedule;
  pg_rng rng;
  pg_ctx *ctx;
  int64_t step, total;          /* updates done, of the run's total */
  int64_t first_step;           /* the step this process started from (resume) */
  int64_t batches_per_epoch;
  bool resumed, tty;
  double lr;                    /* of the last step */
  double smoothed_loss;         /* 0.98 running average of the step losses */
  /* the interval since the last log row */
  double interval_loss, interval_metrics[PG_RUN_MAX_METRICS];
  int64_t interval_steps, interval_samples;
  /* the last row */
  double train_loss, metrics[PG_RUN_MAX_METRICS], val[PG_RUN_MAX_VAL];
  bool validated;               /* the last row has validation values */
  double seconds_before;        /* wall-clock seconds of earlier runs (resume) */
  double wall_seconds;          /* since this process's setup ended */
  double train_seconds;         /* inside training steps, in this process */
  /* the log's rows: step, then one value per column */
  double *rows;
  int64_t n_rows, rows_cap;
  float *x;                     /* the batch buffers */
  int64_t *y;
  double t0, t_tick;            /* clock readings: setup's end, the last TICK */
  /* data parallelism: the communicator (one rank when the options had
   * none), this rank's share of a batch, the gradient reducer */
  const pg_dist *dist;
  pg_dist single;
  int64_t local_batch;
  pg_reducer reducer;
  bool reducer_ready;
  bool agreed_error;            /* the error of a step is every rank's (no abort) */
  bool stop_now;                /* the stop flag, agreed over ranks, of this step */
};

typedef struct {
  int64_t step;            /* updates done */
  double train_loss;       /* mean over the last log interval */
  double metrics[PG_RUN_MAX_METRICS];  /* per sample, over that interval */
  double val[PG_RUN_MAX_VAL];          /* the last validation (NaN: none) */
  double seconds;          /* wall-clock seconds in this process */
  double train_seconds;    /* of which in training steps */
  int64_t steps_done;      /* steps made by this process */
  bool stopped;            /* *stop ended the run (the checkpoint is saved) */
  double comm_wait_seconds; /* data-parallel: waiting for gradient reductions */
  /* data-parallel: the error is this rank's alone (past the step's
   * agreement), other ranks may wait for it in a collective: the caller
   * prints it and ends every rank (pg_dist_abort) */
  bool local_error;
} pg_run_result;

/* Runs the training. Errors (bad options or data, a NaN loss, a failed
 * save) come back as a status with the message set, prefixed with
 * model->name. */
PG_API pg_status pg_run_training(const pg_run_opts *o, const pg_run_model *model, pg_run_result *res);

/* This rank's share [*begin, *end) of n items split over the run's ranks
 * (rank r of K: [r n / K, (r + 1) n / K)); [0, n) with one rank. */
PG_API void pg_run_share(const pg_run *run, int64_t n, int64_t *begin, int64_t *end);

/* "out_dir/name" written into buf (PG_RUN_PATH_MAX chars) and returned;
 * NULL without out_dir. */
PG_API const char *pg_run_path(const pg_run *run, const char *name, char *buf);

/* The progress lines of `patchgrad train`: START "NAME: P parameters, S
 * steps from step F, batch B, OPTIM lr LR"; on a terminal a line rewritten
 * in place "step s/S  loss L  lr LR  R steps/s  ETA T"; at each row the same
 * as a line of its own when not on a terminal, and the validation value 0;
 * STOPPED and DONE name the files. */
PG_API void pg_run_report_default(void *self, const pg_run *run, pg_run_event event);

/* Steps per second: of this process's steps over its wall-clock time
 * (train_only false) or over the time spent in training steps. */
PG_API double pg_run_rate(const pg_run *run, bool train_only);
/* "1h02m", "3m05s", "12s" (or "?"), into buf. */
PG_API const char *pg_run_format_duration(double seconds, char *buf, size_t cap);

#endif
