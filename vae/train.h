/* The patch VAE's training behind `patchgrad vae train`: the loop of
 * train/run.h (data, AdamW, warmup then cosine decay, clipping, the stop
 * flag, NaN handling, checkpoints) with the VAE's parts: the model built for
 * the images of the data (vae/autoencode.h), its loss mse + beta * KL on
 * each batch with eps drawn from the run's generator, the reconstruction
 * error of held-out images, loss.csv (with train_mse, train_kl, val_mse,
 * val_kl; val_loss is the held-out mse + beta * KL) and loss.png, and a sheet of held-out originals above
 * their reconstructions at the end (reconstructions.png). The checkpoint
 * (ckpt.h5) is what pg_vae_load reads. A library function so that tests can
 * run it too. */
#ifndef PG_VAE_TRAIN_H
#define PG_VAE_TRAIN_H

#include "patchgrad/autograd/api.h"

#include <signal.h>
#include <stdbool.h>

#include "patchgrad/optim/optimizer.h"
#include "patchgrad/train/run.h"
#include "patchgrad/vae/vae.h"

typedef struct {
  /* The loop's options (train/run.h): the pixel-space latent file of the
   * training images, batch, steps or epochs, seed (init, data order and the
   * draws of eps), the optimizer (AdamW, lr the peak of the schedule), the
   * schedule (linear warmup, then cosine decay to 0), clip, out_dir
   * (ckpt.h5, loss.csv, loss.png, reconstructions.png), val_every (held-out error every
   * N steps and at the end; 0: each epoch's end), log_every, quiet, stop,
   * dist. */
  pg_run_opts run;
  const char *val_path;    /* held-out images of the same transform, or NULL */
  int64_t val_count;       /* use its first N images (0: all) */
  /* model: height, width and in_channels come from the data (a non-zero
   * value must match it) */
  pg_vae_config model;
  double beta;             /* weight of the KL term */
  int64_t sheet_per_class; /* rows of pairs in reconstructions.png (0: no sheet) */
} pg_vae_train_opts;

/* The defaults of `patchgrad vae train` (docs/vae.md). */
PG_API void pg_vae_train_opts_init(pg_vae_train_opts *o);

typedef struct {
  int64_t step;
  double train_loss;       /* the training loss (train/run.h): mean over the last log interval */
  int64_t train_loss_steps; /* the steps it averages */
  double train_mse, train_kl; /* its two terms (per image) */
  double val_mse, val_kl;  /* the last held-out evaluation (z = the posterior mean); NaN: none */
  double seconds;          /* training time (evaluations excluded) */
  double steps_per_second;
  bool interrupted;        /* *stop: stopped after the current step, saved */
  bool local_error;        /* data-parallel: print the error, then pg_dist_abort */
} pg_vae_train_result;

/* Trains, evaluates on the held-out images, saves out_dir/ckpt.h5 at the end. */
PG_API pg_status pg_vae_train(const pg_vae_train_opts *o, pg_vae_train_result *res);

#endif
