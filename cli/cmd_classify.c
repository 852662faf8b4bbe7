/* patchgrad classify train|eval: the ViT classifier of vit/ on labelled
 * latents (vit/classify.h does the work; this file turns flags into options). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/vit/classify.h"
#include "guard.h"
#include "stop.h"

static int usage(FILE *f) {
  pg_classify_opts d;
  pg_classify_opts_init(&d);
  fprintf(f,
"usage: patchgrad classify train --data TRAIN.h5 [--test-data TEST.h5] [options]\n"
"       patchgrad classify eval --ckpt CKPT.h5 --data TEST.h5 [--batch B] [--threads N]\n"
"\n"
"train: a ViT classifier on labelled latents (patchgrad latents makes them);\n"
"the test accuracy is measured at the end of each epoch.\n"
"data\n"
"  --data F.h5           training latents with labels\n"
"  --test-data F.h5      test latents for the accuracy (none: no evaluation)\n"
"  --test-count N        use the first N test samples (all)\n"
"model (input shape and classes come from the data)\n");
  pg_args_usage_fields(f, PG_VIT_CONFIG_FIELDS, pg_vit_config_fields, &d.model, true);
  fprintf(f,
"optimisation (AdamW, linear warmup then cosine decay to 0)\n"
"  --lr LR (%g)  --weight-decay W (%g, weights only)  --warmup N (%lld)\n"
"  --clip MAX (%g; 0: off)  --label-smoothing S (%g)\n"
"  --batch B (%lld)  --epochs E (%lld)  or --steps N\n"
"  --seed X (0)  --threads N (all cores)\n"
"output\n"
"  --out DIR             ckpt.h5 and log.csv (%s)\n"
"  --eval-every N        test accuracy every N steps (each epoch)\n"
"  --log-every N (%lld)  --quiet\n"
"\n"
"eval: accuracy, mean confidence and loss of a checkpoint on labelled latents.\n",
          d.optim.lr, d.optim.weight_decay, (long long)d.warmup, d.clip, d.label_smoothing,
          (long long)d.batch, (long long)d.epochs, d.out_dir, (long long)d.log_every);
  return f == stdout ? 0 : 2;
}

static void print_stats(const char *what, const pg_classify_stats *s) {
  printf("%s: accuracy %.4f (%lld/%lld), mean confidence %.4f, loss %.4f\n", what, s->accuracy,
         (long long)s->agree, (long long)s->n, s->mean_confidence, s->loss);
}

static int run_train(int argc, char **argv) {
  pg_classify_opts o;
  pg_classify_opts_init(&o);
  double lr = o.optim.lr, wd = o.optim.weight_decay;
  int64_t threads = 0;
  pg_args a = pg_args_begin("classify train", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_string(&a, "--data", &o.data_path)) continue;
    if (pg_arg_string(&a, "--test-data", &o.val_path)) continue;
    if (pg_arg_int(&a, "--test-count", 1, INT64_MAX, &o.val_count)) continue;
    if (pg_arg_field(&a, PG_VIT_CONFIG_FIELDS, pg_vit_config_fields, &o.model)) continue;
    if (pg_arg_double(&a, "--lr", 0, 1e3, &lr)) continue;
    if (pg_arg_double(&a, "--weight-decay", 0, 1e3, &wd)) continue;
    if (pg_arg_int(&a, "--warmup", 0, INT64_MAX, &o.warmup)) continue;
    if (pg_arg_double(&a, "--clip", 0, INFINITY, &o.clip)) continue;
    if (pg_arg_double(&a, "--label-smoothing", 0, 1, &o.label_smoothing)) continue;
    if (pg_arg_int(&a, "--batch", 1, 1 << 20, &o.batch)) continue;
    if (pg_arg_int(&a, "--epochs", 1, 1 << 20, &o.epochs)) continue;
    if (pg_arg_int(&a, "--steps", 1, INT64_MAX / 2, &o.steps)) continue;
    if (pg_arg_int(&a, "--seed", 0, INT64_MAX, (int64_t *)&o.seed)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &threads)) continue;
    if (pg_arg_string(&a, "--out", &o.out_dir)) continue;
    if (pg_arg_int(&a, "--eval-every", 1, INT64_MAX, &o.val_every)) continue;
    if (pg_arg_int(&a, "--log-every", 1, INT64_MAX, &o.log_every)) continue;
    if (pg_arg_switch(&a, "--quiet", &o.quiet)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (!o.data_path)
    return pg_args_error(&a, "--data FILE.h5 is required (make one with: patchgrad latents)");
  o.optim.lr = lr;
  o.optim.weight_decay = wd;
  if (!pg_cli_check_threads("classify train", threads)) return 2;
  /* the blocks' weights alone (attention 4h^2, MLP 2 r h^2); copies:
   * weights, gradients, AdamW's two moments */
  const double h = (double)o.model.hidden;
  if (!pg_cli_check_memory("classify train", (double)o.model.depth * (4.0 + 2.0 * (double)o.model.mlp_ratio) * h * h, 4))
    return 2;
  pg_set_threads((int)threads);
  pg_classify_result r;
  pg_dist dist;
  if (pg_cli_dist_start(&dist, "classify train")) return 1;
  /* one run per output folder; under MPI rank 0 writes it, and a refusal
   * ends every rank */
  if (dist.rank == 0 && !pg_cli_lock_out("classify train", o.out_dir))
    return pg_cli_dist_end(&dist, PG_ERR_IO, true, 1);
  o.dist = &dist;
  o.stop = pg_cli_catch_sigint();
  const pg_status st = pg_classify_train(&o, &r);
  pg_cli_release_sigint();
  pg_cli_unlock_out();
  if (st) {
    if (dist.rank == 0 || r.local_error) fprintf(stderr, "patchgrad classify train: %s\n", pg_last_error());
    return pg_cli_dist_end(&dist, st, r.local_error, 1);
  }
  if (pg_cli_dist_end(&dist, st, false, 0) || dist.rank > 0) return r.interrupted ? pg_cli_stop_status() : 0;
  printf("step %lld: train loss %.4f, train accuracy %.4f (last %lld steps), %.0f s at %.1f steps/s\n",
         (long long)r.step, r.train_loss, r.train_accuracy, (long long)o.log_every, r.seconds,
         r.steps_per_second);
  if (r.test.n) print_stats("test", &r.test);
  return r.interrupted ? pg_cli_stop_status() : 0;
}

static int run_eval(int argc, char **argv) {
  const char *ckpt = NULL, *data = NULL;
  int64_t batch = 256, threads = 0, count = 0;
  pg_args a = pg_args_begin("classify eval", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_string(&a, "--ckpt", &ckpt)) continue;
    if (pg_arg_string(&a, "--data", &data)) continue;
    if (pg_arg_int(&a, "--count", 1, INT64_MAX, &count)) continue;
    if (pg_arg_int(&a, "--batch", 1, 1 << 20, &batch)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &threads)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (!ckpt || !data) return pg_args_error(&a, "--ckpt CKPT.h5 and --data F.h5 are required");
  pg_set_threads((int)threads);
  pg_vit m;
  pg_vit_data_info trained;
  if (pg_vit_load(ckpt, &m, &trained)) {
    fprintf(stderr, "patchgrad classify eval: %s\n", pg_last_error());
    return 1;
  }
  pg_latents_info info;
  float *x = NULL, *probs = NULL;
  int64_t *labels = NULL, n = 0;
  pg_ctx *ctx = NULL;
  pg_classify_stats s;
  pg_status st = pg_classify_read_latents(data, count, &info, &x, &labels, &n);
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
  else fprintf(stderr, "patchgrad classify eval: %s\n", pg_last_error());
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
