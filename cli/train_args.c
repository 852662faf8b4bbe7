/* The training commands' shared flags and launch (train_args.h). */
#include "train_args.h"

#include "patchgrad/autograd/autocast.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/gemm_engine.h"
#include "stop.h"

void pg_cli_run_flags_init(pg_cli_run_flags *f, const pg_run_opts *run) {
  const pg_optim_config *c = &run->optim;
  *f = (pg_cli_run_flags){
      .optim = pg_optim_kind_name(c->kind),
      .lr = c->lr,
      .momentum = 0.9,
      .weight_decay = c->weight_decay,
      .beta1 = c->beta1,
      .beta2 = c->beta2,
      .gamma = 0.1,
      .warmup = run->schedule.warmup_steps,
      .cosine_default = run->schedule.kind == PG_SCHEDULE_COSINE,
  };
}

/* --freeze GLOB, --lr-for GLOB=LR, --no-decay GLOB: remembered in order. */
static bool group_arg(pg_args *a, pg_cli_run_flags *f) {
  const char *v = NULL, *flag = NULL;
  char kind = 0;
  if (pg_arg_string(a, "--freeze", &v)) kind = 'f', flag = "--freeze";
  else if (pg_arg_string(a, "--lr-for", &v)) kind = 'l', flag = "--lr-for";
  else if (pg_arg_string(a, "--no-decay", &v)) kind = 'd', flag = "--no-decay";
  else return false;
  if (a->failed) return true;
  if (f->n_group_flags == PG_CLI_MAX_GROUP_FLAGS) {
    pg_args_error(a, "at most %d --freeze, --lr-for and --no-decay flags in all", PG_CLI_MAX_GROUP_FLAGS);
    a->failed = true;
    return true;
  }
  pg_cli_group_flag *g = &f->group_flags[f->n_group_flags];
  *g = (pg_cli_group_flag){.kind = kind};
  size_t len = strlen(v);
  if (kind == 'l') {
    /* GLOB=LR: the last '=' splits (a glob may hold '=' itself) */
    const char *eq = strrchr(v, '=');
    char *end = NULL;
    g->lr = eq ? strtod(eq + 1, &end) : NAN;
    if (!eq || eq == v || end == eq + 1 || *end || !(g->lr >= 0) || !isfinite(g->lr)) {
      pg_args_error(a, "--lr-for '%s' is not GLOB=LR with a learning rate >= 0 (e.g. --lr-for 'head.*=1e-3')", v);
      a->failed = true;
      return true;
    }
    len = (size_t)(eq - v);
  }
  if (len == 0 || len > PG_PARAM_GROUP_PATTERN_MAX) {
    pg_args_error(a, "%s '%s': the pattern must have 1 to %d characters", flag, v, PG_PARAM_GROUP_PATTERN_MAX);
    a->failed = true;
    return true;
  }
  memcpy(g->pattern, v, len);
  g->pattern[len] = 0;
  f->n_group_flags++;
  return true;
}

/* A flag that also notes that it was given. */
static bool given(bool matched, bool *flag) {
  if (matched) *flag = true;
  return matched;
}

/* --precision fp32|bf16 (autograd/autocast.h). */
static bool precision_arg(pg_args *a, pg_run_opts *run) {
  const char *v;
  if (!pg_arg_string(a, "--precision", &v)) return false;
  if (pg_precision_parse(v, &run->precision) || pg_autocast_set(run->precision, NULL) ||
      pg_autocast_set(PG_PRECISION_FP32, NULL)) {
    pg_args_error(a, "--precision: %s", pg_last_error());
    a->failed = true;
  }
  return true;
}

/* --gemm-engine auto|blis|onednn (autograd/gemm_engine.h): set for the
 * process at once, as PG_GEMM_ENGINE would be. */
static bool gemm_engine_arg(pg_args *a, pg_cli_run_flags *f) {
  if (!pg_arg_string(a, "--gemm-engine", &f->gemm_engine)) return false;
  pg_gemm_engine e;
  if (pg_gemm_engine_parse(f->gemm_engine, &e) || pg_gemm_engine_set(e)) {
    pg_args_error(a, "--gemm-engine: %s", pg_last_error());
    a->failed = true;
  }
  return true;
}

/* --val-every N: every N steps, 0 never (the loop's -1). */
static bool val_every_arg(pg_args *a, pg_run_opts *run) {
  int64_t v;
  if (!pg_arg_int(a, "--val-every", 0, INT64_MAX, &v)) return false;
  run->val_every = v ? v : -1;
  return true;
}

bool pg_cli_run_arg(pg_args *a, pg_cli_run_flags *f, pg_run_opts *run) {
  return pg_arg_string(a, "--data", &run->data_path) || pg_arg_data(a, &run->data) ||
         pg_arg_string(a, "--out", &run->out_dir) || val_every_arg(a, run) || precision_arg(a, run) ||
         pg_arg_int(a, "--ckpt-every", 0, INT64_MAX, &run->ckpt_every) ||
         pg_arg_int(a, "--batch", 1, 1 << 20, &run->batch) ||
         given(pg_arg_int(a, "--steps", 1, INT64_MAX / 2, &run->steps), &f->given_steps) ||
         given(pg_arg_int(a, "--epochs", 1, 1 << 20, &run->epochs), &f->given_epochs) ||
         pg_arg_int(a, "--seed", 0, INT64_MAX, (int64_t *)&run->seed) ||
         pg_arg_int(a, "--threads", 1, 1024, &f->threads) ||
         pg_arg_double(a, "--clip", 0, INFINITY, &run->clip) ||
         pg_arg_int(a, "--log-every", 1, INT64_MAX, &run->log_every) ||
         pg_arg_switch(a, "--quiet", &run->quiet) || pg_arg_string(a, "--optim", &f->optim) ||
         pg_arg_double(a, "--lr", 0, 1e3, &f->lr) ||
         given(pg_arg_double(a, "--momentum", 0, 1, &f->momentum), &f->given_momentum) ||
         given(pg_arg_switch(a, "--nesterov", &f->nesterov), &f->given_nesterov) ||
         pg_arg_double(a, "--weight-decay", 0, 1e3, &f->weight_decay) ||
         given(pg_arg_double(a, "--beta1", 0, 0.999999, &f->beta1), &f->given_beta1) ||
         given(pg_arg_double(a, "--beta2", 0, 0.999999, &f->beta2), &f->given_beta2) ||
         pg_arg_string(a, "--schedule", &f->schedule) ||
         pg_arg_int(a, "--warmup", 0, INT64_MAX, &f->warmup) ||
         given(pg_arg_int(a, "--step-size", 1, INT64_MAX, &f->step_size), &f->given_step_size) ||
         given(pg_arg_double(a, "--gamma", 1e-12, 1e3, &f->gamma), &f->given_gamma) ||
         pg_arg_int(a, "--accum", 1, 1 << 20, &run->accum) || group_arg(a, f) ||
         pg_arg_string(a, "--init-from", &run->init_from) ||
         pg_arg_switch(a, "--allow-partial", &run->allow_partial) ||
         pg_arg_switch(a, "--shard-optimizer", &run->shard_optimizer) || gemm_engine_arg(a, f);
}

void pg_cli_run_usage(FILE *out) {
  fprintf(out,
"param groups (repeatable; a tensor joins the first group whose glob matches its\n"
"name, --freeze globs first; the others train with --lr and --weight-decay)\n"
"  --freeze GLOB         keep these tensors as they are ('x_embedder.*')\n"
"  --lr-for GLOB=LR      their own lr, scaled by the schedule ('head.*=1e-3')\n"
"  --no-decay GLOB       no weight decay for them ('*.bias')\n"
"  --accum K             a step sums the gradients of K micro-batches of batch/K\n"
"fine-tuning\n"
"  --init-from CKPT      start from the tensors of CKPT that match by name and shape\n"
"  --allow-partial       accept missing, unexpected or other-shaped tensors\n"
"reading the data (--data and --val-data alike; docs/latents.md)\n"
"  --data-key NAME       the samples' dataset (latents); its attribute layout says\n"
"                        NHWC or NCHW (channels first: transposed on load)\n"
"  --label-key NAME      the labels' dataset (labels), any integer type\n"
"  --scale S --shift M   read each value x as (x - M) * S (1, 0); sample sheets undo it\n"
"  --stats-from T.h5     bring every file to T.h5's mean and std (its attributes,\n"
"                        else those of its values)\n"
"data-parallel (under mpirun -n K)\n"
"  --shard-optimizer     split the optimizer's state over the K ranks (ZeRO-1)\n"
"speed\n"
"  --gemm-engine E       float32 products on auto (the faster of BLIS and oneDNN per\n"
"                        shape, timed once per machine), blis or onednn (PG_GEMM_ENGINE,\n"
"                        else auto; blis: steps allocation-free on 2+ threads)\n");
}

/* The param groups of the --freeze, --lr-for and --no-decay flags: the
 * frozen ones first, then the others in the order given; flags with the
 * same glob make one group. */
static void build_groups(pg_cli_run_flags *f, pg_run_opts *run) {
  int n = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < f->n_group_flags; i++) {
      const pg_cli_group_flag *g = &f->group_flags[i];
      if ((g->kind == 'f') != (pass == 0)) continue;
      int k = 0;
      while (k < n && strcmp(f->groups[k].pattern, g->pattern)) k++;
      if (k == n) f->groups[n++] = pg_param_group_make(&run->optim, g->pattern);
      if (g->kind == 'f') f->groups[k].frozen = true;
      if (g->kind == 'l') f->groups[k].lr = g->lr;
      if (g->kind == 'd') f->groups[k].weight_decay = 0;
    }
  }
  run->groups = n ? f->groups : NULL;
  run->n_groups = n;
}

int pg_cli_run_finish(pg_args *a, pg_cli_run_flags *f, pg_run_opts *run) {
  if (!run->data_path)
    return pg_args_error(a, "--data FILE.h5 is required (make one with: patchgrad latents)");
  pg_optim_kind kind;
  if (pg_optim_kind_parse(f->optim, &kind)) return pg_args_error(a, "--optim: %s", pg_last_error());
  /* flags that conflict, or that the run would ignore */
  if (f->given_steps && f->given_epochs)
    return pg_args_error(a, "--steps %lld and --epochs %lld both set the length of the run: give one",
                         (long long)run->steps, (long long)run->epochs);
  if (kind != PG_OPTIM_SGD && (f->given_momentum || f->given_nesterov))
    return pg_args_error(a, "%s is an SGD setting and --optim %s has none (its betas are --beta1/--beta2)",
                         f->given_momentum ? "--momentum" : "--nesterov", f->optim);
  if (kind == PG_OPTIM_SGD && (f->given_beta1 || f->given_beta2))
    return pg_args_error(a, "%s is an Adam/AdamW setting and --optim sgd has none (its momentum is --momentum)",
                         f->given_beta1 ? "--beta1" : "--beta2");
  const bool weights_only = run->optim.decay_weights_only; /* the command's choice */
  run->optim = kind == PG_OPTIM_SGD ? pg_optim_sgd(f->lr) : kind == PG_OPTIM_ADAM ? pg_optim_adam(f->lr)
                                                                                   : pg_optim_adamw(f->lr);
  run->optim.weight_decay = f->weight_decay;
  run->optim.decay_weights_only = weights_only;
  run->optim.beta1 = f->beta1;
  run->optim.beta2 = f->beta2;
  if (kind == PG_OPTIM_SGD) {
    run->optim.momentum = f->momentum;
    run->optim.nesterov = f->nesterov;
  }
  pg_schedule_kind sk = f->cosine_default ? PG_SCHEDULE_COSINE
                        : f->warmup > 0   ? PG_SCHEDULE_WARMUP
                                          : PG_SCHEDULE_CONSTANT;
  if (f->schedule && pg_schedule_parse(f->schedule, &sk))
    return pg_args_error(a, "--schedule: %s", pg_last_error());
  if (sk != PG_SCHEDULE_STEP && (f->given_step_size || f->given_gamma))
    return pg_args_error(a, "%s belongs to the step schedule and the schedule is %s (give --schedule step)",
                         f->given_step_size ? "--step-size" : "--gamma", pg_schedule_name(sk));
  run->schedule = pg_schedule_make(sk, f->lr);
  run->schedule.warmup_steps = f->warmup;
  run->schedule.step_size = f->step_size;
  run->schedule.gamma = f->gamma;
  if (run->accum > 1 && run->batch % run->accum)
    return pg_args_error(a, "--batch %lld is not divisible by --accum %lld (micro-batches are equal)",
                         (long long)run->batch, (long long)run->accum);
  if (run->allow_partial && !run->init_from) return pg_args_error(a, "--allow-partial applies to --init-from CKPT");
  if (run->init_from && run->resume)
    return pg_args_error(a, "--init-from %s and --resume %s: a resumed run takes its weights from its checkpoint; "
                            "give one", run->init_from, run->resume);
  build_groups(f, run);
  if (!pg_cli_check_threads(a->cmd, f->threads)) return 2;
  pg_set_threads((int)f->threads);
  return 0;
}

int pg_cli_run_launch(const char *who, pg_run_opts *run, const pg_cli_run_job *job) {
  pg_dist dist;
  if (pg_cli_dist_start(&dist, who)) return 1;
  /* one run per output folder; under MPI rank 0 writes it, and a refusal
   * ends every rank */
  if (dist.rank == 0 && !pg_cli_lock_out(who, run->out_dir)) return pg_cli_dist_end(&dist, PG_ERR_IO, true, 1);
  run->dist = &dist;
  run->stop = pg_cli_catch_sigint();
  const pg_status st = job->train(job->job);
  pg_cli_release_sigint();
  pg_cli_unlock_out();
  run->dist = NULL;
  run->stop = NULL;
  if (st) {
    /* an error every rank agreed on is printed by rank 0 */
    if (dist.rank == 0 || *job->local_error) pg_cli_print_error(who, pg_last_error());
    return pg_cli_dist_end(&dist, st, *job->local_error, 1);
  }
  if (pg_cli_dist_end(&dist, st, false, 0) || dist.rank > 0) return *job->interrupted ? pg_cli_stop_status() : 0;
  return -1;
}
