/* The training commands' shared flags and launch (train_args.h). */
#include "train_args.h"

#include <math.h>
#include <stdio.h>

#include "guard.h"
#include "patchgrad/autograd/blas.h"
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

bool pg_cli_run_arg(pg_args *a, pg_cli_run_flags *f, pg_run_opts *run) {
  return pg_arg_string(a, "--data", &run->data_path) || pg_arg_string(a, "--out", &run->out_dir) ||
         pg_arg_int(a, "--batch", 1, 1 << 20, &run->batch) ||
         pg_arg_int(a, "--steps", 1, INT64_MAX / 2, &run->steps) ||
         pg_arg_int(a, "--epochs", 1, 1 << 20, &run->epochs) ||
         pg_arg_int(a, "--seed", 0, INT64_MAX, (int64_t *)&run->seed) ||
         pg_arg_int(a, "--threads", 1, 1024, &f->threads) ||
         pg_arg_double(a, "--clip", 0, INFINITY, &run->clip) ||
         pg_arg_int(a, "--log-every", 1, INT64_MAX, &run->log_every) ||
         pg_arg_switch(a, "--quiet", &run->quiet) || pg_arg_string(a, "--optim", &f->optim) ||
         pg_arg_double(a, "--lr", 0, 1e3, &f->lr) || pg_arg_double(a, "--momentum", 0, 1, &f->momentum) ||
         pg_arg_switch(a, "--nesterov", &f->nesterov) ||
         pg_arg_double(a, "--weight-decay", 0, 1e3, &f->weight_decay) ||
         pg_arg_double(a, "--beta1", 0, 0.999999, &f->beta1) ||
         pg_arg_double(a, "--beta2", 0, 0.999999, &f->beta2) ||
         pg_arg_string(a, "--schedule", &f->schedule) ||
         pg_arg_int(a, "--warmup", 0, INT64_MAX, &f->warmup) ||
         pg_arg_int(a, "--step-size", 1, INT64_MAX, &f->step_size) ||
         pg_arg_double(a, "--gamma", 1e-12, 1e3, &f->gamma);
}

int pg_cli_run_finish(pg_args *a, const pg_cli_run_flags *f, pg_run_opts *run) {
  if (!run->data_path)
    return pg_args_error(a, "--data FILE.h5 is required (make one with: patchgrad latents)");
  pg_optim_kind kind;
  if (pg_optim_kind_parse(f->optim, &kind)) return pg_args_error(a, "--optim: %s", pg_last_error());
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
  run->schedule = pg_schedule_make(sk, f->lr);
  run->schedule.warmup_steps = f->warmup;
  run->schedule.step_size = f->step_size;
  run->schedule.gamma = f->gamma;
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
