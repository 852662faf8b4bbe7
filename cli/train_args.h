/* What the three training commands (`train`, `classify train`, `vae
 * train`) share on the command line: the flags of the training loop
 * (train/run.h's pg_run_opts) parsed by one function, and the way a run is
 * launched (MPI ranks, the output folder's lock, Ctrl-C/SIGTERM as the
 * loop's stop flag, the error printed once).
 *
 *   pg_cli_run_flags f;
 *   pg_cli_run_flags_init(&f, &o.run);
 *   while (pg_args_next(&a)) {
 *     if (pg_cli_run_arg(&a, &f, &o.run)) continue;   the shared flags
 *     ...                                             the model's own
 *   }
 *   if (a.failed || pg_cli_run_finish(&a, &f, &o.run)) return 2;
 *   ...
 *   int rc = pg_cli_run_launch("classify train", &o.run, &job);
 *   if (rc >= 0) return rc;                           error, or not rank 0
 *   print the closing lines
 */
#ifndef PG_CLI_TRAIN_ARGS_H
#define PG_CLI_TRAIN_ARGS_H

#include <stdbool.h>
#include <stdint.h>

#include "args.h"
#include "data_args.h"
#include "patchgrad/train/run.h"

/* At most this many --freeze, --lr-for and --no-decay flags in all. */
#define PG_CLI_MAX_GROUP_FLAGS 32

/* One --freeze GLOB, --lr-for GLOB=LR or --no-decay GLOB. */
typedef struct {
  char kind;                  /* 'f' freeze, 'l' lr, 'd' no decay */
  char pattern[PG_PARAM_GROUP_PATTERN_MAX + 1];
  double lr;
} pg_cli_group_flag;

/* The flags whose values are combined after parsing (the optimizer, the
 * schedule and the param groups are built from several). */
typedef struct {
  const char *optim;          /* --optim sgd|adam|adamw */
  const char *schedule;       /* --schedule NAME, NULL: the command's default */
  double lr, momentum, weight_decay, beta1, beta2, gamma;
  int64_t warmup, step_size;
  bool nesterov;
  int64_t threads;            /* --threads (0: all cores) */
  const char *gemm_engine;    /* --gemm-engine, NULL: PG_GEMM_ENGINE's or auto */
  /* the schedule without --schedule: a cosine decay to 0 after the warmup
   * (classify, vae), else constant, or warmup-then-constant with --warmup */
  bool cosine_default;
  /* flags given explicitly, for the conflicts refused at the end */
  bool given_steps, given_epochs, given_momentum, given_nesterov, given_beta1, given_beta2, given_step_size,
      given_gamma;
  /* the param group flags in the order given, and the groups built from
   * them (run->groups points here) */
  pg_cli_group_flag group_flags[PG_CLI_MAX_GROUP_FLAGS];
  int n_group_flags;
  pg_param_group groups[PG_CLI_MAX_GROUP_FLAGS];
} pg_cli_run_flags;

/* The flags' defaults from the command's defaults in run (its optimizer,
 * schedule and warmup). */
void pg_cli_run_flags_init(pg_cli_run_flags *f, const pg_run_opts *run);

/* True when the current argument is one of the shared flags: --data, the
 * data flags of data_args.h (--data-key, --label-key, --scale, --shift,
 * --stats-from), --out, --val-every (0: never), --ckpt-every, --precision
 * fp32|bf16,
 * --batch, --steps, --epochs, --seed, --threads, --clip, --log-every,
 * --quiet, --optim, --lr, --momentum, --nesterov, --weight-decay, --beta1,
 * --beta2, --schedule, --warmup, --step-size, --gamma, --accum, --freeze,
 * --lr-for, --no-decay, --init-from, --allow-partial, --shard-optimizer,
 * --gemm-engine (set for the process when parsed). */
bool pg_cli_run_arg(pg_args *a, pg_cli_run_flags *f, pg_run_opts *run);

/* The usage lines of those flags that every training command shares
 * beyond the optimizer's: param groups, accumulation, fine-tuning, how the
 * data is read, the sharded optimizer state. */
void pg_cli_run_usage(FILE *out);

/* Builds run->optim, run->schedule and the param groups (run->groups points
 * into f, which must outlive the run) from the flags; refuses flags that
 * conflict or would be ignored (--steps with --epochs, --momentum or
 * --nesterov with adam/adamw, --beta1/--beta2 with sgd, --step-size/--gamma
 * without the step schedule, a batch not divisible by --accum), naming
 * both; checks --threads, that --data was given, and PG_GEMM_ENGINE when
 * --gemm-engine was not. 0, or 2 after printing the error. */
int pg_cli_run_finish(pg_args *a, pg_cli_run_flags *f, pg_run_opts *run);

/* A training job as the launcher runs it: train(job) runs it with the run
 * options the launcher completed; after it, *local_error (an error of this
 * rank alone, train/run.h) and *interrupted (the stop flag ended it) are
 * read. */
typedef struct {
  pg_status (*train)(void *job);
  void *job;
  const bool *local_error, *interrupted;
} pg_cli_run_job;

/* Joins MPI when launched by mpirun, takes the output folder's lock (rank
 * 0), points run->dist and run->stop at this process's communicator and
 * stop flag for the run, runs the job, and releases everything. An error is
 * printed once as "patchgrad WHO: message" (pg_cli_print_error: a prefix of
 * the library's that repeats WHO's words, "classify: ", is dropped). Returns the exit status (1 error, 128 + signal when stopped, 0
 * on ranks other than 0), or -1 on rank 0 after a run that ended normally
 * or by the stop flag: the caller prints its closing lines then (and
 * returns pg_cli_stop_status() when interrupted). */
int pg_cli_run_launch(const char *who, pg_run_opts *run, const pg_cli_run_job *job);

#endif
