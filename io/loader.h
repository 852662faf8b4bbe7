/* Shuffled minibatches from a latent dataset (latents.h).
 *
 * Each epoch visits every sample exactly once, in an order drawn afresh for
 * that epoch: the permutation of epoch e is a Fisher-Yates shuffle by a
 * pg_rng seeded from (seed, e), so it depends on nothing but the seed and
 * the epoch number. Batches are consecutive slices of that order. The last
 * partial batch of an epoch is returned (smaller) or skipped (drop_last);
 * the next call then starts the next epoch. The loader never runs out.
 *
 * Its whole position is three integers (pg_loader_state: seed, epoch,
 * position in the epoch), which a checkpoint saves; restoring them makes a
 * resumed run see exactly the batches the uninterrupted run would have.
 *
 * Samples are read from disk by hyperslab, one sample (one chunk) at a time,
 * so the file may be larger than memory; with in_memory the whole dataset is
 * read once at open. Batches are written into the caller's buffers: nothing
 * is allocated per batch by the loader. */
#ifndef PG_LOADER_H
#define PG_LOADER_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/io/latents.h"

typedef struct {
  int64_t batch_size; /* >= 1 */
  bool drop_last;     /* skip an epoch's last partial batch */
  bool shuffle;       /* false: file order every epoch (evaluation) */
  bool in_memory;     /* read the whole dataset at open */
  uint64_t seed;
  /* Data-parallel share: with ranks > 1, batch_size is the global batch
   * and each call returns only this rank's slice of it, samples
   * [rank * batch_size / ranks, (rank + 1) * batch_size / ranks) of the
   * global batch, while the position moves by the whole global batch. The
   * order is the one global permutation of the seed, so the samples of a
   * step are the same whatever the number of ranks. Needs drop_last and a
   * batch_size divisible by ranks. 0 or 1: the whole batch. */
  int64_t rank, ranks;
  /* How the file is read (dataset names, layout of 3D samples, scale and
   * shift, another file's statistics: latents.h); NULL: as it is. */
  const pg_data_opts *data;
} pg_loader_opts;

/* Defaults: batch 64, shuffle, keep the last batch, read from disk, seed 0,
 * one rank. */
PG_API void pg_loader_opts_init(pg_loader_opts *o);

typedef struct {
  uint64_t seed;
  int64_t epoch;    /* epochs started before this one (0 for the first) */
  int64_t position; /* samples of this epoch already returned */
} pg_loader_state;

typedef struct pg_loader pg_loader;

/* Opens and validates the dataset (pg_latents_open_with, with opts->data).
 * NULL with a message. */
PG_API pg_loader *pg_loader_open(const char *path, const pg_loader_opts *opts);
PG_API void pg_loader_close(pg_loader *l);

/* The dataset's shape, scaling and labels. */
PG_API const pg_latents_info *pg_loader_info(const pg_loader *l);

/* Fills x [count, H, W, C] (channels last whatever the file's layout) and, when not NULL, labels [count] (the dataset
 * must have labels) with the next batch; count is batch_size (its rank's
 * slice, batch_size / ranks, with several ranks) except for an epoch's last
 * batch without drop_last. `indices` (optional) receives the
 * sample numbers. */
PG_API pg_status pg_loader_next(pg_loader *l, float *x, int64_t *labels, int64_t *indices,
                         int64_t *count);

PG_API pg_loader_state pg_loader_get_state(const pg_loader *l);
/* Continues from a saved state; position must lie in [0, N]. */
PG_API pg_status pg_loader_set_state(pg_loader *l, const pg_loader_state *s);

/* Batches per epoch with the loader's batch size and drop_last. */
PG_API int64_t pg_loader_batches_per_epoch(const pg_loader *l);

#endif
