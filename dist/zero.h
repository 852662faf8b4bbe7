/* Sharded optimizer state for data-parallel training (ZeRO stage 1): the
 * optimizer's state (SGD's momentum_buffer; Adam's and AdamW's exp_avg,
 * exp_avg_sq and, with amsgrad, max_exp_avg_sq) is split over the K ranks,
 * so each rank keeps 1/K of it. The recipe is stage 1 of ZeRO (Rajbhandari
 * et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
 * Models", SC 2020; DeepSpeed's zero_optimization stage 1) and PyTorch's
 * torch.distributed.optim.ZeroRedundancyOptimizer.
 *
 * The split follows the reducer's flat gradient buffer (dist/reducer.h:
 * every parameter that trains, in reverse parameter order, N elements),
 * followed by the trainable parameters outside it (frozen when the reducer
 * was built, e.g. by a frozen param group: M elements, in parameter order).
 * Rank r owns the contiguous elements [begin_r, end_r) of those N + M, with
 * begin_r = r * ((N + M) / K) + min(r, (N + M) % K), so every rank holds
 * (N + M) / K or (N + M) / K + 1 elements of each kind of state. A parameter
 * may straddle ranks; each rank updates its part of it with the raw kernels
 * of optim/update.h, which are elementwise, so an element is computed by
 * exactly the operations, in exactly the order, of the unsharded
 * pg_optimizer_step: the parameters and the state equal the unsharded
 * optimizer's bit for bit, given the same gradients.
 *
 *   pg_reducer red;  pg_reducer_init(&red, &dist, &params, bucket_bytes);
 *   pg_zero z;       pg_zero_init(&z, &red, &cfg, groups, n_groups);
 *   per step: forward; pg_reducer_backward; pg_reducer_finish (every rank
 *             holds the averaged gradients); clip (as usual, on the whole
 *             gradients); pg_zero_step(&z); pg_zero_zero_grad(&z)
 *   checkpoint: pg_zero_full_state on rank 0, pg_zero_gather_state (every
 *             rank), save the list as the optimizer's state; resume: load
 *             the full state on every rank, pg_zero_scatter_state
 *   pg_zero_free(&z); pg_reducer_free(&red);   // in this order
 *
 * One step: each rank updates its range of the parameters from its range of
 * the averaged gradients and its state, then MPI_Allgatherv makes every
 * rank's parameters whole again (in place: the parameters' values are moved
 * into one flat buffer laid out like the gradients, see `flat`).
 *
 * Traffic per step, for G bytes of gradients (4 bytes per trained element):
 * the reducer's allreduce moves 2 (K-1)/K x G in and out of every rank (a
 * ring allreduce is a reduce-scatter then an allgather), the parameters'
 * allgather (K-1)/K x G more: 1.5 times plain data parallelism. A
 * reduce-scatter of the gradients instead of the allreduce would move only
 * (K-1)/K x G, halving the gradient traffic (total = one allreduce, as in
 * DeepSpeed), since each rank needs only its own range of the averaged
 * gradients. It is not used here, deliberately: clipping by the global norm
 * needs the whole gradient (with a reduce-scatter, the norm would be summed
 * from per-rank pieces in another order, so not bit for bit the unsharded
 * run's), the equality with the unsharded run at the same K would depend on
 * MPI summing a reduce-scatter in the same order as an allreduce (nothing
 * promises that), and the reducer's bucketed overlap with backward stays
 * exactly as it is.
 *
 * The configuration is a pg_optimizer's (`opt`): the same config, param
 * groups (fnmatch over the names, per-group lr, weight_decay, betas,
 * momentum, frozen), decay rules (decay_weights_only), step count and
 * per-parameter skipped counts, built by pg_optimizer_init_groups over a
 * list of shards (see `shards`) that mirror the model's entries: same names
 * and kinds, each a 1-D view of this rank's part of the parameter. So
 * everything that reads a pg_optimizer's settings works on &z.opt: setting
 * the schedule's lr in z.opt.config.lr, pg_optimizer_group_lr,
 * pg_optimizer_to_kv, pg_optimizer_check_kv, pg_optimizer_restore_kv
 * (io/optim_kv.h). But step it with pg_zero_step and zero the gradients
 * with pg_zero_zero_grad: pg_optimizer_step(&z.opt) would update this
 * rank's part only, pg_optimizer_zero_grad(&z.opt) zero only that part.
 *
 * Freezing, as pg_optimizer_step: a parameter whose tensor has requires_grad
 * off at a step is skipped on every rank (no decay, no state change, its
 * skipped count grows); frozen groups turn requires_grad off on the model's
 * tensors at init. A trainable parameter outside the reducer's buffer (its
 * requires_grad was off when the reducer was built) keeps its state,
 * sharded like the rest (a checkpoint keeps it), but pg_zero_step refuses
 * to run while it takes part: its gradient is not averaged over ranks.
 *
 * With one rank everything works the same without communicating.
 *
 * Ownership: the model's parameter list and the reducer must outlive the
 * pg_zero (free it before the reducer). While it lives, the data of every
 * parameter in the reducer's flat buffer points into `flat`;
 * pg_zero_free gives every parameter a buffer of its own again (a
 * parameter's data is NULL afterwards only if that allocation failed), so
 * pg_tensor_free / pg_params_free still work. Every call that communicates
 * is collective (all ranks, same order). */
#ifndef PG_ZERO_H
#define PG_ZERO_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/params.h"
#include "patchgrad/dist/dist.h"
#include "patchgrad/dist/reducer.h"
#include "patchgrad/optim/optimizer.h"

typedef struct {
  /* the optimizer over `shards`: settings, step, skipped counts, and this
   * rank's state (tensors named as pg_optimizer's, "<param>.exp_avg", ...,
   * each 1-D, as long as this rank's part of the parameter) */
  pg_optimizer opt;
  /* one entry per entry of the model's list, same name and kind: a tensor
   * [n] (not a heap tensor; owned here) whose data and grad point at this
   * rank's n elements of the parameter (n may be 0, and is 0 for buffers;
   * grad is NULL outside the reducer's buffer) */
  pg_params shards;
  pg_tensor *shard_tensors;
  const pg_dist *dist;
  pg_reducer *reducer;
  pg_params *params;   /* the model's list, not owned */
  int params_count;    /* its length at init */
  float *flat;         /* owned: the trained parameters' values, in the
                          reducer's layout (param i at reducer->offset[i]) */
  int64_t numel;       /* elements of flat (N, reducer->numel) */
  int64_t total;       /* N + M: flat, then the trainable parameters outside it */
  int64_t *offset;     /* per entry: its first element in those N + M, -1 for buffers */
  int64_t begin, end;  /* this rank's range of them */
  int64_t *part_lo;    /* per entry: the first element of the parameter
                          this rank owns (its shard is [part_lo, part_lo + n)) */
  int *counts, *displs; /* per rank: its range within flat, for MPI_Allgatherv */
  /* The largest element count (and displacement) passed to one MPI call:
   * INT_MAX by default (MPI counts are int; a value outside [1, INT_MAX]
   * counts as the nearest bound). When the flat buffer exceeds it the
   * allgather becomes one broadcast per rank, and when N + M does the
   * gather becomes point-to-point messages, each cut in pieces of at most
   * `piece` elements. Tests lower it to exercise that path. */
  int64_t piece;
} pg_zero;

/* Shards over reducer's ranks, with reducer's parameter list and layout,
 * the optimizer that pg_optimizer_init_groups(opt, params, cfg, groups,
 * n_groups) would make (groups may be NULL when n_groups is 0). Moves the
 * data of the parameters in the reducer's buffer into `flat`.
 * Errors (nothing changed then): a reducer not initialised, or a
 * parameter whose gradient is not where the reducer put it; every error of
 * pg_optimizer_init_groups, with its message; out of memory. */
PG_API pg_status pg_zero_init(pg_zero *z, pg_reducer *reducer, const pg_optim_config *cfg,
                              const pg_param_group *groups, int n_groups);
PG_API void pg_zero_free(pg_zero *z);

/* One optimizer step on every rank's range (as pg_optimizer_step, with the
 * same hyper-parameters, skipping rules and counts), then the allgather.
 * Call it on every rank after pg_reducer_finish (and clipping). Allocates
 * nothing. Errors: those of pg_optimizer_step (nothing changed); a
 * parameter list changed since init; a parameter outside the reducer's
 * buffer taking part (PG_ERR_STATE, naming it); MPI failing. */
PG_API pg_status pg_zero_step(pg_zero *z);

/* Zeroes the model's gradients (the whole of them, as
 * pg_optimizer_zero_grad). */
PG_API void pg_zero_zero_grad(pg_zero *z);

/* Elements of optimizer state this rank holds (all of z.opt.state): its
 * range's length times the kinds of state, 1/K of the unsharded
 * optimizer's to within one element per kind. */
PG_API int64_t pg_zero_state_numel(const pg_zero *z);

/* A zeroed list shaped like the unsharded optimizer's `state`: the same
 * names ("<param>.momentum_buffer", "<param>.exp_avg", ...), the
 * parameters' shapes, the same order, PG_PARAM_BUFFER entries (the caller
 * frees it with pg_params_free). What pg_zero_gather_state fills and a
 * checkpoint saves or loads as the optimizer's state (pg_checkpoint's
 * optim_state, io/checkpoint.h), so the file is the one an unsharded run
 * writes. Errors: out of memory. */
PG_API pg_status pg_zero_full_state(const pg_zero *z, pg_params *full);

/* Collective: the whole state, assembled on rank 0 into full (made by
 * pg_zero_full_state, or any list holding those names with those element
 * counts); the other ranks' `full` is not used (may be NULL). Rank 0 holds
 * N + M floats of scratch meanwhile, the others their range. Errors, on every
 * rank: rank 0's full missing an entry or of the wrong size (naming it);
 * out of memory; MPI failing. */
PG_API pg_status pg_zero_gather_state(pg_zero *z, pg_params *full);

/* Not collective: this rank keeps its part of a whole state (as written by
 * an unsharded optimizer or gathered with any number of ranks, e.g. loaded
 * from a checkpoint on every rank), copied into its state tensors. Restore
 * z.opt.step and the skipped counts separately (pg_optimizer_restore_kv).
 * Errors (nothing changed then): an entry missing from full, or of the
 * wrong size, naming it. */
PG_API pg_status pg_zero_scatter_state(pg_zero *z, const pg_params *full);

#endif
