/* patchgrad classify train|eval: the ViT classifier of vit/ on labelled
 * latents (vit/classify.h does the work; this file turns flags into options). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "data_args.h"
#include "train_args.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/vit/classify.h"
#include "guard.h"
#include "stop.h"

static int usage(FILE *f) {
  pg_classify_opts d;
  pg_classify_opts_init(&d);
  fprintf(f,
"usage: patchgrad classify train --data TRAIN.h5 [--val-data TEST.h5] [options]\n"
"       patchgrad classify eval --ckpt CKPT.h5 --data TEST.h5 [--batch B] [--threads N]\n"
"                               [--data-key K --label-key K --scale S --shift M --stats-from T.h5]\n"
"\n"
"train: a ViT classifier on labelled latents (patchgrad latents makes them);\n"
"the test accuracy is measured at the end of each epoch.\n"
"data\n"
"  --data F.h5           training latents with labels\n"
"  --val-data F.h5       test latents for the accuracy (none: no evaluation)\n"
"  --val-count N         use the first N test samples (all)\n"
"model (input shape and classes come from the data)\n");
  pg_args_usage_fields(f, PG_VIT_CONFIG_FIELDS, pg_vit_config_fields, &d.model, true);
  fprintf(f,
"optimisation (AdamW, linear warmup then cosine decay to 0; --optim, --momentum,\n"
"--nesterov, --beta1, --beta2, --schedule, --step-size, --gamma, --precision as in\n"
"patchgrad train)\n"
"  --lr LR (%g)  --weight-decay W (%g, weights only)  --warmup N (%lld)\n"
"  --clip MAX (%g; 0: off)  --label-smoothing S (%g)\n"
"  --batch B (%lld)  --epochs E (%lld)  or --steps N\n"
"  --seed X (0)  --threads N (all cores)\n",
          d.run.optim.lr, d.run.optim.weight_decay, (long long)d.run.schedule.warmup_steps, d.run.clip,
          d.label_smoothing, (long long)d.run.batch, (long long)d.run.epochs);
  pg_cli_run_usage(f);
  fprintf(f,
"output\n"
"  --out DIR             ckpt.h5, loss.csv, loss.png (%s)\n"
"  --val-every N         held-out accuracy every N steps (each epoch; 0: never)\n"
"  --log-every N (%lld)  --quiet\n"
"\n"
"eval: accuracy, mean confidence and loss of a checkpoint on labelled latents.\n",
          d.run.out_dir, (long long)d.run.log_every);
  return f == stdout ? 0 : 2;
}

static void print_stats(const char *what, const pg_classify_stats *s) {
  printf("%s: accuracy %.4f (%lld/%lld), mean confidence %.4f, loss %.4f\n", what, s->accuracy,
         (long long)s->agree, (long long)s->n, s->mean_confidence, s->loss);
}

typedef struct {
  const pg_classify_opts *o;
  pg_classify_result *r;
} classify_job;

static pg_status run_job(void *job) {
  classify_job *t = job;
  return pg_classify_train(t->o, t->r);
}

static int run_train(int argc, char **argv) {
  pg_classify_opts o;
  pg_classify_opts_init(&o);
  pg_cli_run_flags f;
  pg_cli_run_flags_init(&f, &o.run);
  pg_args a = pg_args_begin("classify train", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_cli_run_arg(&a, &f, &o.run)) continue;
    if (pg_arg_string(&a, "--val-data", &o.val_path)) continue;
    if (pg_arg_int(&a, "--val-count", 1, INT64_MAX, &o.val_count)) continue;
    if (pg_arg_field(&a, PG_VIT_CONFIG_FIELDS, pg_vit_config_fields, &o.model)) continue;
    if (pg_arg_double(&a, "--label-smoothing", 0, 1, &o.label_smoothing)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed || pg_cli_run_finish(&a, &f, &o.run)) return 2;
  /* the blocks' weights alone (attention 4h^2, MLP 2 r h^2); copies:
   * weights, gradients, AdamW's two moments */
  const double h = (double)o.model.hidden;
  if (!pg_cli_check_memory("classify train", (double)o.model.depth * (4.0 + 2.0 * (double)o.model.mlp_ratio) * h * h, 4))
    return 2;
  pg_classify_result r = {0};
  classify_job t = {&o, &r};
  const pg_cli_run_job job = {run_job, &t, &r.local_error, &r.interrupted};
  const int rc = pg_cli_run_launch("classify train", &o.run, &job);
  if (rc >= 0) return rc;
  printf("step %lld: train loss %.4f, train accuracy %.4f (last %lld steps), %.0f s at %.1f steps/s\n",
         (long long)r.step, r.train_loss, r.train_accuracy, (long long)r.train_loss_steps, r.seconds,
         r.steps_per_second);
  if (r.test.n) print_stats("test", &r.test);
  return r.interrupted ? pg_cli_stop_status() : 0;
}

static int run_eval(int argc, char **argv) {
  const char *ckpt = NULL, *data = NULL;
  int64_t batch = 256, threads = 0, count = 0;
  pg_data_opts dopts = {0}; /* --data-key, --scale, ... as in training (data_args.h) */
  pg_args a = pg_args_begin("classify eval", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_string(&a, "--ckpt", &ckpt)) continue;
    if (pg_arg_string(&a, "--data", &data)) continue;
    if (pg_arg_int(&a, "--count", 1, INT64_MAX, &count)) continue;
    if (pg_arg_int(&a, "--batch", 1, 1 << 20, &batch)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &threads)) continue;
    if (pg_arg_data(&a, &dopts)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (!ckpt || !data) return pg_args_error(&a, "--ckpt CKPT.h5 and --data F.h5 are required");
  pg_set_threads((int)threads);
  pg_vit m;
  pg_vit_data_info trained;
  if (pg_vit_load(ckpt, &m, &trained)) {
    pg_cli_print_error("classify eval", pg_last_error());
    return 1;
  }
  pg_latents_info info;
  float *x = NULL, *probs = NULL;
  int64_t *labels = NULL, n = 0;
  pg_ctx *ctx = NULL;
  pg_classify_stats s;
  pg_status st = pg_classify_read_latents_with(data, &dopts, count, &info, &x, &labels, &n);
  if (!st && (info.height != m.cfg.height || info.width != m.cfg.width || info.channels != m.cfg.in_channels))
    st = pg_fail(PG_ERR_ARG, "%s holds [%lld, %lld, %lld] latents, the classifier takes [%lld, %lld, %lld]",
                 data, (long long)info.height, (long long)info.width, (long long)info.channels,
                 (long long)m.cfg.height, (long long)m.cfg.width, (long long)m.cfg.in_channels);
  if (!st) st = pg_vit_check_data(&trained, &info, data);
  if (!st && !(probs = malloc((size_t)(n * m.cfg.num_classes) * sizeof *probs)))
    st = pg_fail(PG_ERR_MEMORY, "out of memory for %lld predictions", (long long)n);
  if (!st && !(ctx = pg_ctx_new(0))) st = pg_last_status();
  if (!st) st = pg_vit_predict(ctx, &m, x, n, batch, probs);
  if (!st) st = pg_classify_stats_of(probs, labels, n, m.cfg.num_classes, &s);
  if (!st) print_stats(data, &s);
  else pg_cli_print_error("classify eval", pg_last_error());
  pg_ctx_free(ctx);
  free(x);
  free(labels);
  free(probs);
  pg_vit_free(&m);
  return st ? 1 : 0;
}

int pg_cmd_classify(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "train")) return run_train(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "eval")) return run_eval(argc - 1, argv + 1);
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return usage(stdout);
  fprintf(stderr, "patchgrad classify: %s\n", argc < 2 ? "say train or eval" : "the first word must be train or eval");
  return usage(stderr);
}
