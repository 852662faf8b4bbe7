/* Classifying latents with the ViT (vit.h): batched prediction, accuracy and
 * confidence, classifier checkpoints, and the ViT's training behind
 * `patchgrad classify train` (the loop of train/run.h with a cross-entropy
 * loss, the accuracy on held-out data, loss.csv and loss.png). A library so that the command, the example
 * and the tests share one implementation. */
#ifndef PG_CLASSIFY_H
#define PG_CLASSIFY_H

#include "patchgrad/autograd/api.h"

#include <signal.h>

#include "patchgrad/dist/dist.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/train/run.h"
#include "patchgrad/vit/vit.h"

/* ---- prediction and its scores ---- */

/* Softmax probabilities probs [n, K] of the model for x [n, H, W, C], in
 * batches of `batch`, without gradients and in evaluation mode (ctx is reset
 * before each batch). */
PG_API pg_status pg_vit_predict(pg_ctx *ctx, pg_vit *m, const float *x, int64_t n, int64_t batch,
                         float *probs);

typedef struct {
  int64_t n;              /* samples */
  int64_t agree;          /* samples whose most probable class is their label */
  double accuracy;        /* agree / n */
  double mean_confidence; /* mean of the top probability (how sure it is of what it says) */
  double mean_label_prob; /* mean probability of the label */
  double loss;            /* mean cross-entropy -log p(label) */
} pg_classify_stats;

/* Scores probs [n, K] against labels [n] (each in [0, K), else an error
 * naming the sample). */
PG_API pg_status pg_classify_stats_of(const float *probs, const int64_t *labels, int64_t n, int64_t K,
                               pg_classify_stats *out);

/* The most probable class of one row (the first one on ties). */
PG_API int64_t pg_argmax(const float *row, int64_t K);

/* ---- checkpoints (io/checkpoint.h format) ----
 * /config: the model config (pg_vit_config_to_kv) plus what the training
 * latents were: data_mean, data_std, data_source; /params: the weights;
 * the step attribute. */
typedef struct {
  double mean, std;  /* latents' normalisation (latents.h) */
  char source[64];   /* "fashion-mnist", "synthetic", ... */
} pg_vit_data_info;

PG_API pg_status pg_vit_save(const char *path, pg_vit *m, const pg_vit_data_info *data, int64_t step);
/* Builds m from the file's config and reads its weights; data (may be NULL)
 * receives what the training latents were. On error m holds nothing. */
PG_API pg_status pg_vit_load(const char *path, pg_vit *m, pg_vit_data_info *data);
/* An error naming both when a latent file's normalisation (mean, std) is
 * not the one the classifier was trained with (a difference beyond 5% of
 * the trained std): its inputs would be off-scale. */
PG_API pg_status pg_vit_check_data(const pg_vit_data_info *trained, const pg_latents_info *info,
                            const char *path);

/* Reads a whole labelled latent file (its first `limit` samples, 0: all)
 * into malloc'd x [n, H, W, C] and labels [n]; the caller frees both. */
PG_API pg_status pg_classify_read_latents(const char *path, int64_t limit, pg_latents_info *info, float **x,
                              int64_t **labels, int64_t *n);
/* The same, read with data options (NULL: none; io/latents.h). */
PG_API pg_status pg_classify_read_latents_with(const char *path, const pg_data_opts *data, int64_t limit,
                                               pg_latents_info *info, float **x, int64_t **labels, int64_t *n);

/* ---- training ---- */

typedef struct {
  /* The loop's options (train/run.h): the training latents (with labels),
   * batch, steps or epochs, seed, the optimizer (AdamW, lr the peak of the
   * schedule), the schedule (linear warmup, then cosine decay to 0), clip,
   * out_dir (ckpt.h5, loss.csv with the columns train_accuracy and
   * val_accuracy, loss.png), val_every (0: each epoch's end),
   * log_every, quiet, stop, dist. */
  pg_run_opts run;
  const char *val_path;    /* held-out (test) latents for the accuracy, or NULL */
  int64_t val_count;       /* use the first N held-out samples (0: all) */
  /* model: height, width, in_channels and num_classes come from the data
   * (a non-zero value must match it) */
  pg_vit_config model;
  double label_smoothing;  /* of the cross-entropy */
} pg_classify_opts;

/* The defaults of `patchgrad classify train` (README: the ViT example). */
PG_API void pg_classify_opts_init(pg_classify_opts *o);

typedef struct {
  int64_t step;
  double train_loss;       /* the training loss (train/run.h): mean over the last log interval */
  int64_t train_loss_steps; /* the steps it averages */
  double train_accuracy;   /* on the training batches of that interval */
  pg_classify_stats test;  /* the last evaluation on the held-out data (n == 0: none) */
  double seconds;          /* training time (evaluations excluded) */
  double steps_per_second;
  bool interrupted;        /* *stop: stopped after the current step, saved */
  bool local_error;        /* data-parallel: print the error, then pg_dist_abort */
} pg_classify_result;

/* Trains, evaluates on the test data, saves out_dir/ckpt.h5 at the end. */
PG_API pg_status pg_classify_train(const pg_classify_opts *o, pg_classify_result *res);

#endif
