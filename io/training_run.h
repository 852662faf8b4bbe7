/* What a training loop needs around its model and optimizer, shared by the
 * DiT trainer (dit/trainer.c) and the ViT classifier (vit/classify.c): the
 * output folder and the paths in it, the training loader and the buffers of
 * one batch, a clock, and Ctrl-C as a request to stop after the current step.
 * Messages start with `who` ("train", "classify"), the caller's name. */
#ifndef PG_TRAINING_RUN_H
#define PG_TRAINING_RUN_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/io/loader.h"

#define PG_RUN_PATH_MAX 1024

/* Creates the folder dir (an existing one is fine). */
PG_API pg_status pg_run_make_dir(const char *who, const char *dir);
/* "dir/name" written into path (PG_RUN_PATH_MAX chars), and returned. */
PG_API const char *pg_run_file(char *path, const char *dir, const char *name);

/* The loader of a training run: the whole file read into memory once,
 * shuffled each epoch from seed, whole batches only. NULL with a message. */
PG_API pg_loader *pg_run_open_loader(const char *path, int64_t batch, uint64_t seed);
/* malloc'd buffers for one batch: x [batch * per_sample] and labels [batch].
 * Both are set (NULL when that allocation failed); the caller frees them. */
PG_API pg_status pg_run_alloc_batch(const char *who, int64_t batch, int64_t per_sample, float **x,
                             int64_t **labels);

/* A monotonic clock, in seconds. */
PG_API double pg_run_seconds(void);

/* From pg_run_catch_sigint to pg_run_release_sigint, Ctrl-C no longer kills
 * the process: it sets a flag that pg_run_interrupted reports, so the loop
 * can finish its step, save and stop. Release restores the previous
 * handler. One run at a time: the flag is the process's. */
PG_API void pg_run_catch_sigint(void);
PG_API bool pg_run_interrupted(void);
PG_API void pg_run_release_sigint(void);

#endif
