/* The DiT's training behind `patchgrad train`: the loop of train/run.h
 * (data, optimizer, schedule, clipping, EMA, checkpoints that resume
 * exactly, loss.csv and loss.png, progress, the stop flag, NaN handling)
 * with the DiT's parts: the model built to fit the data, the diffusion
 * loss, a validation loss at fixed draws (val_draws.h5), the weights
 * before the first step (init.h5), a sample sheet at the end and, when
 * asked, every N steps (samples-000500.png), decoded through the VAE
 * when the data are VAE latents; for fine-tuning its class
 * tensor is the label table y_embedder.embedding_table.weight. A library
 * function so that tests can run it too. */
#ifndef PG_TRAINER_H
#define PG_TRAINER_H

#include "patchgrad/autograd/api.h"

#include <signal.h>

#include "patchgrad/optim/clip.h"
#include "patchgrad/dist/dist.h"
#include "patchgrad/dit/diffusion.h"
#include "patchgrad/dit/dit.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/train/run.h"

typedef struct {
  /* The loop's options (train/run.h): the latents (io/latents.h), batch,
   * steps or epochs (steps > 0 wins; a resumed run continues to steps),
   * seed, the optimizer, the schedule (its base_lr is taken from
   * optim.lr), clip, ema_decay, out_dir (ckpt.h5, loss.csv, loss.png,
   * samples.png, val_draws.h5), resume, val_every (< 0: never), ckpt_every,
   * log_every, quiet, stop, dist. */
  pg_run_opts run;
  const char *val_path;   /* held-out latents for the validation loss, or NULL */
  int64_t val_count;      /* samples of val_path used (their first ones) */
  /* model: input_size, in_channels and num_classes 0 mean "from the data" */
  pg_dit_config model;
  bool unconditional;     /* ignore the data's labels (num_classes 0) */
  /* the noise schedule and the min-SNR loss weighting (dit/diffusion.h;
   * linear and 0 by default), recorded in the checkpoint's config */
  pg_noise_schedule noise_schedule;
  double min_snr_gamma;
  /* the sample sheet at the end, samples.png (0 columns: none), and every
   * sample_every steps during training, samples-000500.png (0: none) */
  int sample_cols, sample_steps;
  float sample_cfg;
  int64_t sample_every;
  /* Data of VAE latents (a latent file of `patchgrad vae encode`, with the
   * attributes vae_checkpoint and scale_factor): the sheets are decoded
   * through that VAE (dit/sample_sheet.h), loaded before the first step
   * when there are sheets to write (an error names it when it cannot be
   * read), and the checkpoint's config records its path and the scale
   * factor (vae_checkpoint, vae_scale_factor) for `patchgrad sample`.
   * vae_path (NULL: the data's vae_checkpoint) names it instead, for a VAE
   * that has moved; it is an error for data that are not VAE latents. */
  const char *vae_path;
} pg_train_opts;

typedef struct {
  int64_t step;           /* updates done */
  double train_loss;      /* the training loss (train/run.h): mean over the last log interval */
  int64_t train_loss_steps; /* the steps it averages */
  double val_loss;        /* the last validation loss (NaN when none) */
  double steps_per_second;
  bool interrupted;       /* stopped by *stop (a checkpoint was saved) */
  bool local_error;       /* data-parallel: print the error, then pg_dist_abort */
  int64_t reduced_numel;  /* data-parallel: gradient elements averaged per step
                           * (pg_run_result's: frozen tensors have none) */
  int64_t optim_state_numel; /* optimizer state elements this rank holds
                              * (pg_run_result's: 1/K with shard_optimizer) */
} pg_train_result;

/* Defaults of `patchgrad train` (small model, AdamW 1e-4, batch 64, ...). */
PG_API void pg_train_opts_init(pg_train_opts *o);

/* Runs the whole training. Errors (bad data, a NaN loss, a failed save) come
 * back as a status with the message set; a NaN loss saves nothing. */
PG_API pg_status pg_train(const pg_train_opts *o, pg_train_result *res);

#endif
