/* The data flags of the training commands (train, classify train, vae
 * train), parsed in one place so that they mean the same everywhere:
 *
 *   --data-key NAME     the samples' dataset (latents)
 *   --label-key NAME    the labels' dataset (labels)
 *   --scale S           each value read as (x - M) * S; the sample sheets
 *   --shift M           and decoding undo it (io/latents.h, pg_data_opts)
 *   --stats-from T.h5   every file brought to T.h5's mean and std
 *
 * They apply to every data file the command reads (training and held-out).
 * pg_cli_run_arg (train_args.h) matches them with the other flags of the
 * training loop, and pg_cli_run_usage lists them. */
#ifndef PG_DATA_ARGS_H
#define PG_DATA_ARGS_H

#include <stdbool.h>

#include "args.h"
#include "patchgrad/io/latents.h"

/* A matcher of args.h: true when the current argument is one of the data
 * flags (its value then stored in d). */
bool pg_arg_data(pg_args *a, pg_data_opts *d);

#endif
