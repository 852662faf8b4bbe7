/* vit_classify: the classic "ViT from scratch", as one training loop you can
 * read top to bottom. The model is vit/vit.h (patch embedding, class token,
 * learned position embedding, pre-norm encoder blocks, final LayerNorm,
 * Linear head on the class token); this file is everything around it:
 *
 *   data (a shuffling loader) -> forward -> softmax cross-entropy -> backward
 *   -> gradient clipping -> AdamW with warmup + cosine -> arena reset,
 *   and, after every epoch, the accuracy on held-out data.
 *
 *   build/examples/vit_classify TRAIN.h5 TEST.h5 [EPOCHS] [--single-head]
 *       latents from: patchgrad latents --source fashion-mnist --split train|test
 *   build/examples/vit_classify
 *       no files: a few seconds on synthetic shapes (made in /tmp), as a test
 *
 * `patchgrad classify train` is the same loop with flags, checkpoints and a
 * log (vit/classify.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/vit/classify.h"
#include "patchgrad/optim/clip.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/autograd/runtime.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/data/synthetic.h"
#include "patchgrad/vit/vit.h"

/* Accuracy on a whole labelled file, in batches, without gradients. */
static double test_accuracy(pg_ctx *ctx, pg_vit *model, const char *path) {
  pg_latents_info info;
  float *x;
  int64_t *labels, n;
  if (pg_classify_read_latents(path, 0, &info, &x, &labels, &n)) return -1;
  float *probs = malloc((size_t)(n * model->cfg.num_classes) * sizeof *probs);
  pg_classify_stats s = {0};
  if (!probs || pg_vit_predict(ctx, model, x, n, 256, probs) ||
      pg_classify_stats_of(probs, labels, n, model->cfg.num_classes, &s))
    s.accuracy = -1;
  free(probs);
  free(x);
  free(labels);
  return s.accuracy;
}

static int fail(const char *what) {
  fprintf(stderr, "vit_classify: %s: %s\n", what, pg_last_error());
  return 1;
}

int main(int argc, char **argv) {
  pg_runtime_init(NULL); /* process-wide settings, as the patchgrad command makes them */
  /* 0. The data: two latent files, or small synthetic ones for a quick run. */
  const bool quick = argc < 3;
  char train_path[64] = "", test_path[64] = "";
  int64_t epochs = 5;
  bool single_head = false;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--single-head")) single_head = true;
    else epochs = atoll(argv[i]) > 0 ? atoll(argv[i]) : epochs;
  }
  if (quick) {
    pg_synthetic_opts so;
    pg_synthetic_opts_init(&so);
    so.size = 8;
    so.classes = 5;
    so.count = 1000;
    snprintf(train_path, sizeof train_path, "/tmp/vit_classify_train_%d.h5", (int)getpid());
    snprintf(test_path, sizeof test_path, "/tmp/vit_classify_test_%d.h5", (int)getpid());
    if (pg_make_synthetic(&so, train_path)) return fail("synthetic data");
    so.count = 300;
    so.seed = 1;
    if (pg_make_synthetic(&so, test_path)) return fail("synthetic data");
    epochs = 6;
  }
  const char *train = quick ? train_path : argv[1], *test = quick ? test_path : argv[2];

  /* 1. A loader: shuffled batches, a new order each epoch, all in memory. */
  pg_loader_opts lo;
  pg_loader_opts_init(&lo);
  lo.batch_size = quick ? 50 : 128;
  lo.drop_last = true;
  lo.in_memory = true;
  pg_loader *loader = pg_loader_open(train, &lo);
  if (!loader) return fail("training data");
  const pg_latents_info *info = pg_loader_info(loader);

  /* 2. The model: its shape comes from the data. Every parameter lives in
   *    model.params under its timm name (cls_token, blocks.0.attn.qkv.weight...). */
  pg_vit_config cfg = {.height = info->height, .width = info->width, .in_channels = info->channels,
                       .num_classes = info->num_classes, .single_head = single_head,
                       .patch_size = quick ? 2 : 4, .hidden = quick ? 32 : 64, .depth = quick ? 2 : 4,
                       .heads = 4, .mlp_ratio = 2};
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  pg_vit model;
  if (pg_vit_init(&model, &cfg, &rng)) return fail("model");

  /* 3. AdamW (no decay on biases, norms, cls_token, pos_embed) and its
   *    schedule: linear warmup, then cosine decay to 0. */
  pg_optim_config oc = pg_optim_adamw(2e-3);
  oc.weight_decay = 0.05;
  oc.decay_weights_only = true;
  pg_optimizer opt;
  if (pg_optimizer_init(&opt, &model.params, &oc)) return fail("optimizer");
  const int64_t per_epoch = pg_loader_batches_per_epoch(loader), total = epochs * per_epoch;
  pg_schedule sched = pg_schedule_make(PG_SCHEDULE_COSINE, oc.lr);
  sched.warmup_steps = total / 10;
  sched.total_steps = total;
  printf("ViT (%s attention), %lld parameters; %lld epochs of %lld batches\n",
         single_head ? "single-head" : "multi-head", (long long)pg_params_numel(&model.params, true),
         (long long)epochs, (long long)per_epoch);

  /* 4. The loop. A context owns one step's tensors and tape; reset ends the step. */
  pg_ctx *ctx = pg_ctx_new(0);
  const int64_t per = info->height * info->width * info->channels;
  float *x = malloc((size_t)(lo.batch_size * per) * sizeof *x);
  int64_t *y = malloc((size_t)lo.batch_size * sizeof *y);
  if (!ctx || !x || !y) return fail("memory");
  double accuracy = 0;
  for (int64_t epoch = 1; epoch <= epochs; epoch++) {
    double loss_sum = 0;
    for (int64_t b = 0; b < per_epoch; b++) {
      pg_ctx_reset(ctx);
      int64_t count;
      if (pg_loader_next(loader, x, y, NULL, &count)) return fail("loader");
      pg_tensor *xb = pg_from_array(ctx, 4, (int64_t[]){count, cfg.height, cfg.width, cfg.in_channels}, x);
      pg_tensor *logits = pg_vit_forward(ctx, &model, xb);       /* [B, K] */
      pg_tensor *loss = pg_cross_entropy(ctx, logits, y);        /* mean over the batch */
      if (!loss || pg_backward(ctx, loss)) return fail("step");  /* grads land in model.params */
      pg_clip_grad_norm(&model.params, 1.0, 2.0);
      pg_schedule_apply(&sched, &opt);
      if (pg_optimizer_step(&opt)) return fail("update");
      pg_optimizer_zero_grad(&opt);
      loss_sum += loss->data[0];
    }
    accuracy = test_accuracy(ctx, &model, test);
    if (accuracy < 0) return fail("test data");
    printf("epoch %lld: train loss %.4f, test accuracy %.4f\n", (long long)epoch,
           loss_sum / (double)per_epoch, accuracy);
  }

  free(x);
  free(y);
  pg_ctx_free(ctx);
  pg_optimizer_free(&opt);
  pg_vit_free(&model);
  pg_loader_close(loader);
  if (quick) {
    remove(train_path);
    remove(test_path);
  }
  /* the quick run is a test: shapes of 5 classes are easy (chance is 20%) */
  return quick && accuracy < 0.8 ? 1 : 0;
}
