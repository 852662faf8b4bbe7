/* The training loop, once for every model: the DiT denoiser (dit/trainer.h),
 * the ViT classifier (vit/classify.h), the VAE (vae/train.h), and any model
 * that fills in a pg_run_model's callbacks. The loop owns everything around
 * the model:
 *
 *   setup     the output folder, the loader (a latent file read into memory,
 *             shuffled each epoch from the seed, whole batches only), the
 *             model (build callback), a fine-tuning start (init_from), the
 *             optimizer over its param groups (frozen ones included), the
 *             data-parallel reducer (and the sharded optimizer state), the
 *             EMA of the weights, the learning-rate schedule, the context; a
 *             resumed run's state,
 *             after checking that the run asks for what the checkpoint did
 *   a step    train_step() in run.c: the next batch (as `accum`
 *             micro-batches), the model's loss on each, backward, gradient
 *             clipping, the optimizer's step, zeroed gradients, the EMA update
 *   the log   loss.csv, a row every log_every steps (the columns below),
 *             validation every val_every steps, progress lines on stderr, a
 *             checkpoint every ckpt_every steps, the model's snapshot every
 *             snapshot_every steps
 *   the end   at the last step: the checkpoint, loss.csv and its curve
 *             loss.png, the model's closing products (a sample sheet); when
 *             *stop becomes non-zero: the checkpoint after the current step,
 *             then return
 *
 * THE TRAINING LOSS, everywhere (loss.csv's train_loss, the progress line,
 * pg_run_result.train_loss and so the commands' closing lines): the mean of
 * the step losses over the steps since the previous log row (a step's loss
 * is the mean over its batch). A row at step s of a run logging every N
 * steps averages steps s-N+1 .. s; the progress line between rows shows the
 * mean since the last row, and at a row that row's value; the closing line
 * shows the last row's (at a last step off the grid: the mean of the steps
 * since the previous row, train_loss_steps of them).
 *
 * The log (loss.csv), one format for every model:
 *   step,train_loss,val_loss,lr,epoch[,the model's columns],seconds
 * val_loss is validation value 0 (empty when not measured at that row), lr
 * the lr of the row's step (param group 0), epoch = step / batches per
 * epoch, seconds the wall-clock seconds of the run, earlier runs of a
 * resumed one included; the model's columns (pg_run_model.columns) are its
 * per-sample metrics and its other validation values. loss.png plots
 * train_loss (blue) and val_loss (orange) against the step, log scale.
 *
 * Resuming (resume): the checkpoint records the run's settings (its /run
 * group, docs/checkpoint.md lists its keys; the optimizer's and the param
 * groups' in /optim), and a run
 * that asks for other values of any of them is refused with one line naming
 * the flag and both values. May change on resume: steps and epochs (a
 * schedule tied to the run's length is stretched to the new length, with a
 * note), the lr (with a note), log_every, val_every, ckpt_every, the model's
 * snapshot cadence, threads, quiet, out_dir, and ema_decay from 0 (the EMA
 * starts from the resumed weights, with a note).
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

#include "patchgrad/autograd/autocast.h"
#include "patchgrad/autograd/params.h"
#include "patchgrad/dist/dist.h"
#include "patchgrad/dist/reducer.h"
#include "patchgrad/dist/zero.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/optim/ema.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/optim/schedule.h"

#define PG_RUN_MAX_METRICS 4 /* per-sample training metrics a model reports */
#define PG_RUN_MAX_VAL 4     /* numbers a validation returns */
#define PG_RUN_MAX_COLUMNS 8  /* the model's own log columns */
#define PG_RUN_PATH_MAX 1024
#define PG_RUN_NOTES_MAX 2048 /* the notes of a run's start (fine-tuning, resume) */

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
  /* Param groups (optim/optimizer.h: pg_param_group, first matching
   * pattern wins; the rest is param group 0 with optim's values): each its
   * lr, weight_decay, betas or momentum, or frozen. A frozen group's tensors
   * get requires_grad off: no gradient, no update, no decay, no EMA drift,
   * no place in the clipping norm and none in the data-parallel gradient
   * reduction. NULL / 0: every parameter in param group 0. */
  const pg_param_group *groups;
  int n_groups;
  /* The precision of the large matrix products for the whole run (training,
   * validation, closing products), as torch.autocast("cpu", bfloat16) around
   * the loop: PG_PRECISION_FP32 (0, the default) or PG_PRECISION_BF16
   * (autograd/autocast.h; an error where bf16 cannot run). Set on the
   * calling thread for the run and restored after it. */
  pg_precision precision;
  int64_t accum;           /* gradient accumulation: a step sums the gradients
                            * of `accum` micro-batches of batch / accum samples
                            * (each rank's share divisible by it), the same
                            * update as one batch within float rounding; 0 or
                            * 1: off */
  double clip;             /* max global gradient norm (L2), 0: off */
  double ema_decay;        /* 0: no EMA */
  bool ema_warmup;         /* its decay rises over the first steps (optim/ema.h) */
  /* Fine-tuning: after the model is built (and before the optimizer and the
   * EMA), the tensors of this checkpoint's params/ that match a model tensor
   * by name and shape are loaded (pg_checkpoint_load_matching); the start
   * report lists what was loaded, missing, unexpected or of another shape,
   * and the closing line names the tensors re-initialised. Missing,
   * unexpected or other-shaped tensors are an error unless allow_partial,
   * except the model's class tensors (pg_run_model.class_tensors) when only
   * their shape differs: they keep their fresh initialisation (a dataset
   * with another number of classes). Optimizer state and step start afresh.
   * Not with resume. */
  const char *init_from;
  bool allow_partial;
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
  /* How data_path (and the model's held-out data) is read: dataset names,
   * scale and shift, another file's statistics (io/latents.h); all zero:
   * the file as it is. */
  pg_data_opts data;
  /* With several ranks: the optimizer's state sharded over them (ZeRO
   * stage 1, dist/zero.h), 1/K of it per rank; every rank updates its part
   * of the parameters, then they are gathered whole. The same numbers, bit
   * for bit, and the same checkpoints (the whole state, gathered on rank
   * 0), so a run may resume with or without it and with any number of
   * ranks. With one rank (or no dist) it changes nothing. */
  bool shard_optimizer;
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
} pg_run_source;

/* A log column. The loop's own are step, train_loss, val_loss, lr, epoch
 * and seconds; a model adds PG_COL_METRIC and PG_COL_VAL columns. */
typedef struct {
  const char *name;        /* the CSV header ("train_accuracy") */
  pg_run_source source;
  int index;               /* PG_COL_METRIC and PG_COL_VAL */
  const char *format;      /* printf format of the value ("%.6g") */
  const char *label;       /* in progress lines ("acc"; NULL: the name) */
} pg_run_column;

typedef enum {
  PG_RUN_START,            /* setup done, before the first step */
  PG_RUN_TICK,             /* on a terminal: the progress line, fitted to
                            * its width (at most 4 per second) */
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
  /* Every snapshot_every steps but the last (finish covers that one), after
   * the step's log row and checkpoint, with the EMA weights in place when
   * the run keeps an EMA: products during training (the DiT: a sample
   * sheet named by the step). It must not draw from the run's generator.
   * NULL or 0: none. */
  pg_status (*snapshot)(void *self, pg_run *run);
  int64_t snapshot_every;
  /* Progress output for each event (never called when quiet; TICK only on a
   * terminal). NULL: pg_run_report_default. */
  void (*report)(void *self, const pg_run *run, pg_run_event event);

  /* The model's log columns, between epoch and seconds (see the log above):
   * its metrics and validation values 1.. (value 0 is val_loss). */
  const pg_run_column *columns;
  int n_columns;
  const char *extra_files; /* named last in the closing line ("samples.png"), or NULL */
  /* Fine-tuning: fnmatch(3) globs of the tensors whose shape follows the
   * number of classes (the DiT's label table, the ViT's head), NULL-
   * terminated; see pg_run_opts.init_from. NULL: none. */
  const char *const *class_tensors;
  bool log_from_start;     /* write the log's header at setup (else at the first row) */
  bool weights_only;       /* checkpoints hold the config, the weights and the step;
                            * else also the optimizer, EMA, generator and loader
                            * state, so that a resumed run is exact */
  /* The end of the error message of a non-finite loss and gradient norm
   * ("stopping (lower --lr?)"); NULL: say that nothing is saved. */
  const char *loss_not_finite, *grad_not_finite;
} pg_run_model;

/* The log and checkpoint fields of a pg_run_model for a model trained in
 * one go (the classifier, the VAE): the model's log columns `cols` (an
 * array), the log's header written at setup, weights-only checkpoints, and
 * a NaN or infinite loss or gradient stops the run with a hint to lower
 * --lr. Used inside the model's initializer: {.name = ..., PG_RUN_ONE_GO(c)}. */
#define PG_RUN_ONE_GO(cols)                                                                        \
  .columns = (cols), .n_columns = (int)(sizeof(cols) / sizeof *(cols)), .log_from_start = true,   \
  .weights_only = true, .loss_not_finite = "stopping (lower --lr?)", .grad_not_finite = ""

/* The run's state. Callbacks may read every field; they change none. */
struct pg_run {
  const pg_run_opts *opts;
  const pg_run_model *model;
  pg_loader *loader;
  const pg_latents_info *info;  /* the training data */
  pg_params *params;            /* the model's */
  pg_optimizer opt;
  /* the optimizer the loop steps and checkpoints record: &opt, or
   * &zero.opt when the state is sharded (opt is then freed) */
  pg_optimizer *optim;
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
  /* the interval since the last log row (the training loss is its mean) */
  double interval_loss, interval_metrics[PG_RUN_MAX_METRICS];
  int64_t interval_steps, interval_samples;
  /* the last row */
  double train_loss, metrics[PG_RUN_MAX_METRICS], val[PG_RUN_MAX_VAL];
  int64_t train_loss_steps;     /* the steps train_loss averages */
  bool validated;               /* the last row has validation values */
  /* what the START and DONE reports add: notes of the setup (one per line:
   * the fine-tuning report, resume warnings), and the fine-tuning summary
   * of the closing line (empty: none) */
  char notes[PG_RUN_NOTES_MAX];
  char init_summary[512];
  /* the training data as the run record identifies it */
  int64_t data_bytes;
  uint64_t data_hash;           /* FNV-1a 64 of the file's bytes */
  double seconds_before;        /* wall-clock seconds of earlier runs (resume) */
  double wall_seconds;          /* since this process's setup ended */
  double train_seconds;         /* inside training steps, in this process */
  /* loss.csv's columns after `step`: the loop's and the model's */
  pg_run_column columns[5 + PG_RUN_MAX_COLUMNS];
  int n_columns;
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
  int64_t accum, micro_batch;   /* micro-batches per step, of micro_batch samples */
  pg_reducer reducer;
  bool reducer_ready;
  pg_zero zero;                 /* shard_optimizer with several ranks */
  bool zero_ready;
  bool rank0_writes;            /* rank 0 has an output folder (known on every rank) */
  bool agreed_error;            /* the error of a step is every rank's (no abort) */
  bool stop_now;                /* the stop flag, agreed over ranks, of this step */
};

typedef struct {
  int64_t step;            /* updates done */
  double train_loss;       /* the training loss: mean over the last log interval */
  int64_t train_loss_steps; /* the steps it averages */
  double metrics[PG_RUN_MAX_METRICS];  /* per sample, over that interval */
  double val[PG_RUN_MAX_VAL];          /* the last validation (NaN: none) */
  double seconds;          /* wall-clock seconds in this process */
  double train_seconds;    /* of which in training steps */
  int64_t steps_done;      /* steps made by this process */
  bool stopped;            /* *stop ended the run (the checkpoint is saved) */
  double comm_wait_seconds; /* data-parallel: waiting for gradient reductions */
  int64_t reduced_numel;   /* data-parallel: gradient elements averaged over the
                            * ranks at each step (frozen tensors have none); 0
                            * with one rank */
  int64_t optim_state_numel; /* optimizer state elements this rank holds: all
                            * of them, or 1/K with shard_optimizer */
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

/* The progress lines of every training command: START "NAME: data PATH:
 * ..." (what pg_latents_describe says of the training data), then "NAME: P parameters,
 * S steps from step F, batch B, OPTIM lr LR"; on a terminal one line
 * rewritten in place, "step s/S  loss L  <the model's metrics>  lr LR  R
 * steps/s  ETA T  epoch E", fitted to the terminal's width (fields dropped
 * from the right, never wrapped); not on a terminal the same fields as a
 * plain line at each row; at a row with validation "step s: validation
 * loss V, <the model's validation values>"; STOPPED and DONE name the
 * files, DONE with the fine-tuning summary. A model's report may print its
 * own START line and hand the other events to this one. (Before START the
 * loop prints its notes, after it the model summary: pg_params_print_summary
 * at depth 1.) */
PG_API void pg_run_report_default(void *self, const pg_run *run, pg_run_event event);

/* Joins fields[0..n) with two spaces into buf (cap bytes) keeping only as
 * many leading fields as fit in `width` columns (at most width - 1
 * characters, so that a terminal never wraps the line); when not even the
 * first fits, its first width - 1 characters. Returns buf. */
PG_API char *pg_run_fit_line(char *buf, size_t cap, const char *const *fields, int n, int width);

/* The width of the terminal on stderr (TIOCGWINSZ), else $COLUMNS when it is
 * a number >= 10, else 80. */
PG_API int pg_run_terminal_width(void);

/* Steps per second: of this process's steps over its wall-clock time
 * (train_only false) or over the time spent in training steps. */
PG_API double pg_run_rate(const pg_run *run, bool train_only);
/* "1h02m", "3m05s", "12s" (or "?"), into buf. */
PG_API const char *pg_run_format_duration(double seconds, char *buf, size_t cap);

#endif
