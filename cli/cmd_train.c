/* patchgrad train: trains the DiT of docs/dit.md on HDF5 latents
 * (dit/trainer.h does the work; this file turns flags into options and
 * Ctrl-C into the trainer's stop flag). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "train_args.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/dit/trainer.h"
#include "guard.h"
#include "sizes.h"
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
"  --size tiny|small|medium   presets (the same as patchgrad bench --size):\n"
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
"  --steps N             total updates (1000), or --epochs E (not both)\n"
"  --ema DECAY           keep an EMA of the weights (0: off; DiT uses 0.9999)\n"
"  --ema-warmup          its decay rises as min(DECAY, (1 + n) / (10 + n)) over the\n"
"                        first updates n (TensorFlow's num_updates)\n"
"  --noise-schedule linear|cosine  betas linear 1e-4..0.02, or Nichol and Dhariwal's\n"
"                        cosine (linear)\n"
"  --min-snr G           weigh each sample's loss by min(SNR_t, G) / SNR_t (Hang et al.;\n"
"                        they use 5) (0: off)\n"
"  --precision fp32|bf16  bf16: large products in bfloat16 on oneDNN, the rest float32,\n"
"                        as torch.autocast(\"cpu\", torch.bfloat16) (fp32)\n""  --seed X (0)  --threads N (all cores)\n");
  pg_cli_run_usage(f);
  fprintf(f,
"output\n"
"  --out DIR             ckpt.h5, loss.csv, loss.png, samples.png, val_draws.h5 (out)\n"
"  --resume CKPT         continue a run from its checkpoint, up to --steps in all;\n"
"                        every other flag that shapes the run must be the same\n"
"                        (--lr may change, with a note; --ema may start)\n"
"  --val-every N (250)  --ckpt-every N (1000)  --log-every N (50)\n"
"  --cols N              samples per row (one row per class) of samples.png at the end (8; 0: none)\n"
"  --sample-steps K (50)  --cfg S (4)   DDIM steps and guidance scale of those samples\n"
"  --sample-every N      also a sheet every N steps, samples-000500.png (0: none)\n"
"  --vae V.h5            VAE latents (patchgrad vae encode): the VAE that decodes the\n"
"                        sheets and that the checkpoint names (the data's vae_checkpoint)\n"
"  --quiet               no progress output\n");
  return f == stdout ? 0 : 2;
}

typedef struct {
  const pg_train_opts *o;
  pg_train_result *r;
} train_job;

static pg_status run_job(void *job) {
  train_job *t = job;
  return pg_train(t->o, t->r);
}

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
  const pg_cli_dit_size *p = pg_cli_dit_size_find(&a, size);
  if (!p) return 2;
  o.model.hidden = p->hidden;
  o.model.depth = p->depth;
  o.model.heads = p->heads;
  o.run.batch = p->batch;

  int64_t samples = 8, sample_steps = 50;
  double cfg = 4.0;
  const char *noise = "linear";
  pg_cli_run_flags f;
  pg_cli_run_flags_init(&f, &o.run);
  a = pg_args_begin("train", argc, argv);
  while (pg_args_next(&a)) {
    const char *skip;
    if (pg_arg_string(&a, "--size", &skip)) continue;
    if (pg_cli_run_arg(&a, &f, &o.run)) continue;
    if (pg_arg_string(&a, "--val-data", &o.val_path)) continue;
    if (pg_arg_int(&a, "--val-count", 1, INT64_MAX, &o.val_count)) continue;
    if (pg_arg_field(&a, PG_DIT_CONFIG_FIELDS, pg_dit_config_fields, &o.model)) continue;
    if (pg_arg_switch(&a, "--unconditional", &o.unconditional)) continue;
    if (pg_arg_double(&a, "--ema", 0, 1, &o.run.ema_decay)) continue;
    if (pg_arg_switch(&a, "--ema-warmup", &o.run.ema_warmup)) continue;
    if (pg_arg_string(&a, "--resume", &o.run.resume)) continue;
    if (pg_arg_int(&a, "--cols", 0, 64, &samples)) continue;
    if (pg_arg_int(&a, "--sample-steps", 1, 1000, &sample_steps)) continue;
    if (pg_arg_double(&a, "--cfg", 0, 100, &cfg)) continue;
    if (pg_arg_int(&a, "--sample-every", 0, INT64_MAX, &o.sample_every)) continue;
    if (pg_arg_string(&a, "--vae", &o.vae_path)) continue;
    if (pg_arg_string(&a, "--noise-schedule", &noise)) continue;
    if (pg_arg_double(&a, "--min-snr", 0, 1e6, &o.min_snr_gamma)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (o.run.ema_warmup && !(o.run.ema_decay > 0))
    return pg_args_error(&a, "--ema-warmup applies to an EMA: give --ema DECAY too");
  if (pg_noise_schedule_parse(noise, &o.noise_schedule))
    return pg_args_error(&a, "--noise-schedule '%s' is not linear or cosine", noise);
  o.sample_cols = (int)samples;
  o.sample_steps = (int)sample_steps;
  o.sample_cfg = (float)cfg;
  if (pg_cli_run_finish(&a, &f, &o.run)) return 2;
  if (o.run.epochs > 0) o.run.steps = 0; /* --epochs wins over the default --steps */
  /* the blocks' weights alone (adaLN 6h^2, attention 4h^2, MLP 2 r h^2);
   * copies: weights, gradients, the optimizer's moments, the EMA */
  const double h = (double)o.model.hidden;
  const int moments = o.run.optim.kind == PG_OPTIM_SGD ? (o.run.optim.momentum > 0) : 2;
  if (!pg_cli_check_memory("train", (double)o.model.depth * (10.0 + 2.0 * (double)o.model.mlp_ratio) * h * h,
                           2 + moments + (o.run.ema_decay > 0)))
    return 2;

  pg_train_result r = {0};
  train_job t = {&o, &r};
  const pg_cli_run_job job = {run_job, &t, &r.local_error, &r.interrupted};
  const int rc = pg_cli_run_launch("train", &o.run, &job);
  if (rc >= 0) return rc;
  if (r.interrupted) return pg_cli_stop_status();
  printf("step %lld: train loss %.5f", (long long)r.step, r.train_loss);
  if (!isnan(r.val_loss)) printf(", validation loss %.5f", r.val_loss);
  putchar('\n');
  return 0;
}
