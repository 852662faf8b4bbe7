/* The training loop's files share these (not installed): run.c is the loop,
 * record.c what a checkpoint records about the run and what a resumed or
 * fine-tuned run checks against it, report.c the progress lines. */
#ifndef PG_TRAIN_RUN_PARTS_H
#define PG_TRAIN_RUN_PARTS_H

#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/train/run.h"

/* The run's state in a checkpoint (the parts that save and load share):
 * the loader's position and the optimizer's step go through ls and
 * optim_step, which the caller copies out before a save or in after a load. */
pg_checkpoint pg_run_state_parts(pg_run *run, pg_loader_state *ls, int64_t *optim_step);

/* Appends one line to run->notes (printed before the START report). */
void pg_run_note(pg_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The training data's size in bytes and FNV-1a 64 hash into run. */
pg_status pg_run_fingerprint_data(pg_run *run);

/* The run's settings that shape its trajectory, as the /run group of its
 * checkpoints holds them (docs/checkpoint.md). */
pg_status pg_run_record(const pg_run *run, pg_kv *kv);

/* Resume from path: checks the checkpoint against this run (the model's
 * check, the step, the run record, the optimizer and its groups), then
 * restores the parameters, the EMA (or starts one), the optimizer with its
 * skipped steps, the generator, the step and the loader. */
pg_status pg_run_resume_state(pg_run *run, const char *path);

/* Fine-tuning: loads o->init_from into the model built (see
 * pg_run_opts.init_from) and writes its report into the notes. */
pg_status pg_run_init_from(pg_run *run);

/* The loop's log columns and the model's, in the order of loss.csv. */
const pg_run_column *pg_run_columns(const pg_run *run, int *n);

#endif
