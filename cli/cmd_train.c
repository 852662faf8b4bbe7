/* patchgrad train: trains the DiT of docs/dit.md on HDF5 latents
 * (dit/trainer.h does the work; this file turns flags into options and
 * Ctrl-C into the trainer's stop flag). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/dit/trainer.h"
#include "guard.h"
#include "stop.h"

static int usage(FILE *f) {
  pg_train_opts d;
  pg_train_opts_init(&d);
  fprintf(f,
"usage: patchgrad train --data F.h5 [options]\n"
"\n"
"data\n"
"  --data F.h5           training latents (patchgrad latents makes them)\n"
"  --val-data F.h5       held-out latents for the validation loss (none: no validation)\n"
"  --val-count N         validation samples used, the file's first ones (1024)\n"
"model (input size, channels and classes come from the data)\n"
"  --size tiny|small|medium   presets = the benchmark configs S, M, L:\n"
"                        hidden 64/128/384, depth 2/4/6, heads 4/4/6, patch 2, batch 32/64/16\n"
"  --hidden H --depth D --heads N --patch P --mlp-ratio R   override the preset (small)\n"
"  --unconditional       ignore the labels (num_classes 0)\n");
  pg_args_usage_fields(f, PG_DIT_CONFIG_FIELDS, pg_dit_config_fields, &d.model, false);
  fprintf(f,
"optimisation\n"
"  --optim sgd|adam|adamw  (adamw)\n"
"  --lr LR (1e-4)  --momentum M (sgd, 0.9)  --nesterov  --weight-decay W (0)\n"
"  --beta1 B1 (0.9)  --beta2 B2 (0.999)\n"
"  --schedule constant|warmup|cosine|step (constant; warmup if --warmup is given)\n"
"  --warmup N            warmup steps (0)\n"
"  --step-size N --gamma G   step schedule (decay by G every N steps)\n"
"  --clip MAX            clip the global gradient norm (0: off)\n"
"  --batch B             batch size (preset's)\n"
"  --steps N             total updates (1000), or --epochs E\n"
"  --ema DECAY           keep an EMA of the weights (0: off; DiT uses 0.9999)\n"
"  --seed X (0)  --threads N (all cores)\n"
"output\n"
"  --out DIR             ckpt.h5, loss.csv, loss.png, samples.png, val_draws.h5 (out)\n"
"  --resume CKPT         continue a run from its checkpoint, up to --steps in all\n"
"  --val-every N (250)  --ckpt-every N (1000)  --log-every N (50)\n"
"  --samples N           samples per class in samples.png at the end (8; 0: none)\n"
"  --sample-steps K (50)  --cfg S (4)   DDIM steps and guidance scale of those samples\n"
"  --quiet               no progress output\n");
  return f == stdout ? 0 : 2;
}

typedef struct {
  const char *name;
  int64_t hidden, depth, heads, batch;
} size_preset;

static const size_preset presets[] = {
    {"tiny", 64, 2, 4, 32},
    {"small", 128, 4, 4, 64},
    {"medium", 384, 6, 6, 16},
};

int pg_cmd_train(int argc, char **argv) {
  pg_train_opts o;
  pg_train_opts_init(&o);
  pg_args a = pg_args_begin("train", argc, argv);
  /* The preset first, so that explicit flags override it wherever they stand. */
  const char *size = "small";
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    pg_arg_string(&a, "--size", &size);
  }
  if (a.failed) return 2;
  const size_preset *p = NULL;
  for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
    if (!strcmp(presets[i].name, size)) p = &presets[i];
  if (!p) return pg_args_error(&a, "--size '%s' is not one of tiny, small, medium", size);
  o.model.hidden = p->hidden;
  o.model.depth = p->depth;
  o.model.heads = p->heads;
  o.batch = p->batch;

  const char *optim = "adamw", *schedule = NULL;
  double lr = 1e-4, momentum = 0.9, wd = 0, beta1 = 0.9, beta2 = 0.999, gamma = 0.1;
  int64_t warmup = 0, step_size = 0, threads = 0, samples = 8, sample_steps = 50;
  double cfg = 4.0;
  bool nesterov = false;
  a = pg_args_begin("train", argc, argv);
  while (pg_args_next(&a)) {
    const char *skip;
    if (pg_arg_string(&a, "--size", &skip)) continue;
    if (pg_arg_string(&a, "--data", &o.data_path)) continue;
    if (pg_arg_string(&a, "--val-data", &o.val_path)) continue;
    if (pg_arg_int(&a, "--val-count", 1, INT64_MAX, &o.val_count)) continue;
    if (pg_arg_field(&a, PG_DIT_CONFIG_FIELDS, pg_dit_config_fields, &o.model)) continue;
    if (pg_arg_switch(&a, "--unconditional", &o.unconditional)) continue;
    if (pg_arg_string(&a, "--optim", &optim)) continue;
    if (pg_arg_double(&a, "--lr", 0, 1e3, &lr)) continue;
    if (pg_arg_double(&a, "--momentum", 0, 1, &momentum)) continue;
    if (pg_arg_switch(&a, "--nesterov", &nesterov)) continue;
    if (pg_arg_double(&a, "--weight-decay", 0, 1e3, &wd)) continue;
    if (pg_arg_double(&a, "--beta1", 0, 0.999999, &beta1)) continue;
    if (pg_arg_double(&a, "--beta2", 0, 0.999999, &beta2)) continue;
    if (pg_arg_string(&a, "--schedule", &schedule)) continue;
    if (pg_arg_int(&a, "--warmup", 0, INT64_MAX, &warmup)) continue;
    if (pg_arg_int(&a, "--step-size", 1, INT64_MAX, &step_size)) continue;
    if (pg_arg_double(&a, "--gamma", 1e-12, 1e3, &gamma)) continue;
    if (pg_arg_double(&a, "--clip", 0, INFINITY, &o.clip)) continue;
    if (pg_arg_int(&a, "--batch", 1, 1 << 20, &o.batch)) continue;
    if (pg_arg_int(&a, "--steps", 1, INT64_MAX / 2, &o.steps)) continue;
    if (pg_arg_int(&a, "--epochs", 1, 1 << 20, &o.epochs)) continue;
    if (pg_arg_double(&a, "--ema", 0, 1, &o.ema_decay)) continue;
    if (pg_arg_int(&a, "--seed", 0, INT64_MAX, (int64_t *)&o.seed)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &threads)) continue;
    if (pg_arg_string(&a, "--out", &o.out_dir)) continue;
    if (pg_arg_string(&a, "--resume", &o.resume)) continue;
    if (pg_arg_int(&a, "--val-every", 0, INT64_MAX, &o.val_every)) continue;
    if (pg_arg_int(&a, "--ckpt-every", 0, INT64_MAX, &o.ckpt_every)) continue;
    if (pg_arg_int(&a, "--log-every", 1, INT64_MAX, &o.log_every)) continue;
    if (pg_arg_int(&a, "--samples", 0, 64, &samples)) continue;
    if (pg_arg_int(&a, "--sample-steps", 1, 1000, &sample_steps)) continue;
    if (pg_arg_double(&a, "--cfg", 0, 100, &cfg)) continue;
    if (pg_arg_switch(&a, "--quiet", &o.quiet)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (!o.data_path)
    return pg_args_error(&a, "--data FILE.h5 is required (make one with: patchgrad latents)");
  pg_optim_kind kind;
  if (pg_optim_kind_parse(optim, &kind)) return pg_args_error(&a, "--optim: %s", pg_last_error());
  o.optim = kind == PG_OPTIM_SGD ? pg_optim_sgd(lr) : kind == PG_OPTIM_ADAM ? pg_optim_adam(lr) : pg_optim_adamw(lr);
  o.optim.weight_decay = wd;
  o.optim.beta1 = beta1;
  o.optim.beta2 = beta2;
  if (kind == PG_OPTIM_SGD) {
    o.optim.momentum = momentum;
    o.optim.nesterov = nesterov;
  }
  pg_schedule_kind sk = warmup > 0 ? PG_SCHEDULE_WARMUP : PG_SCHEDULE_CONSTANT;
  if (schedule && pg_schedule_parse(schedule, &sk))
    return pg_args_error(&a, "--schedule: %s", pg_last_error());
  o.schedule = pg_schedule_make(sk, lr);
  o.schedule.warmup_steps = warmup;
  o.schedule.step_size = step_size;
  o.schedule.gamma = gamma;
  o.sample_cols = (int)samples;
  o.sample_steps = (int)sample_steps;
  o.sample_cfg = (float)cfg;
  if (!pg_cli_check_threads("train", threads)) return 2;
  /* the blocks' weights alone (adaLN 6h^2, attention 4h^2, MLP 2 r h^2);
   * copies: weights, gradients, the optimizer's moments, the EMA */
  const double h = (double)o.model.hidden;
  const int moments = kind == PG_OPTIM_SGD ? (momentum > 0) : 2;
  if (!pg_cli_check_memory("train", (double)o.model.depth * (10.0 + 2.0 * (double)o.model.mlp_ratio) * h * h,
                           2 + moments + (o.ema_decay > 0)))
    return 2;
  pg_set_threads((int)threads);

  pg_train_result r;
  pg_dist dist;
  if (pg_cli_dist_start(&dist, "train")) return 1;
  /* one run per output folder; under MPI rank 0 writes it, and a refusal
   * ends every rank */
  if (dist.rank == 0 && !pg_cli_lock_out("train", o.out_dir))
    return pg_cli_dist_end(&dist, PG_ERR_IO, true, 1);
  o.dist = &dist;
  o.stop = pg_cli_catch_sigint();
  const pg_status st = pg_train(&o, &r);
  pg_cli_release_sigint();
  pg_cli_unlock_out();
  if (st) {
    /* the trainer's own messages start with "train: " already; an error
     * every rank agreed on is printed by rank 0 */
    const char *msg = pg_last_error();
    if (dist.rank == 0 || r.local_error)
      fprintf(stderr, "patchgrad %s%s\n", strncmp(msg, "train: ", 7) ? "train: " : "", msg);
    return pg_cli_dist_end(&dist, st, r.local_error, 1);
  }
  if (pg_cli_dist_end(&dist, st, false, 0) || dist.rank > 0) return r.interrupted ? pg_cli_stop_status() : 0;
  if (r.interrupted) return pg_cli_stop_status();
  printf("step %lld: train loss %.5f, validation loss %s%.5f\n", (long long)r.step, r.train_loss,
         isnan(r.val_loss) ? "(none) " : "", r.val_loss);
  return 0;
}
