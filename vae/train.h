/* The patch VAE's training behind `patchgrad vae train`: the loop of
 * train/run.h (data, AdamW, warmup then cosine decay, clipping, the stop
 * flag, NaN handling, checkpoints) with the VAE's parts: the model built for
 * the images of the data (vae/autoencode.h), its loss mse + beta * KL on
 * each batch with eps drawn from the run's generator, the reconstruction
 * error of held-out images, log.csv, and a sheet of held-out originals above
 * their reconstructions at the end (reconstructions.png). The checkpoint
 * (ckpt.h5) is what pg_vae_load reads. A library function so that tests can
 * run it too. */
#ifndef PG_VAE_TRAIN_H
#define PG_VAE_TRAIN_H

#include "patchgrad/autograd/api.h"

#include <signal.h>
#include <stdbool.h>

#include "patchgrad/optim/optimizer.h"
#include "patchgrad/vae/vae.h"

typedef struct {
  const char *data_path;   /* pixel-space latent file (io/latents.h) of the training images */
  const char *val_path;    /* held-out images of the same transform, or NULL */
  int64_t val_count;       /* use its first N images (0: all) */
  /* model: height, width and in_channels come from the data (a non-zero
   * value must match it) */
  pg_vae_config model;
  double beta;             /* weight of the KL term */
  pg_optim_config optim;   /* lr is the peak of the schedule */
  int64_t warmup;          /* linear warmup steps, then cosine decay to 0 */
  double clip;             /* max global gradient norm (0: off) */
  int64_t batch;
  int64_t epochs;          /* total steps = epochs * batches per epoch ... */
  int64_t steps;           /* ... unless steps > 0 */
  uint64_t seed;           /* init, data order and the draws of eps */
  const char *out_dir;     /* ckpt.h5, log.csv, reconstructions.png; NULL: write nothing */
  int64_t val_every;       /* held-out error every N steps and at the end (0: each epoch's end) */
  int64_t log_every;       /* log.csv rows and progress lines */
  int64_t sheet_per_class; /* rows of pairs in reconstructions.png (0: no sheet) */
  bool quiet;              /* no progress output */
  volatile sig_atomic_t *stop; /* when non-NULL and set: stop after the current step, save */
} pg_vae_train_opts;

/* The defaults of `patchgrad vae train` (docs/vae.md). */
PG_API void pg_vae_train_opts_init(pg_vae_train_opts *o);

typedef struct {
  int64_t step;
  double train_loss;       /* mean over the last logging interval */
  double train_mse, train_kl; /* its two terms (per image) */
  double val_mse, val_kl;  /* the last held-out evaluation (z = the posterior mean); NaN: none */
  double seconds;          /* training time (evaluations excluded) */
  double steps_per_second;
  bool interrupted;        /* *stop: stopped after the current step, saved */
} pg_vae_train_result;

/* Trains, evaluates on the held-out images, saves out_dir/ckpt.h5 at the end. */
PG_API pg_status pg_vae_train(const pg_vae_train_opts *o, pg_vae_train_result *res);

#endif
