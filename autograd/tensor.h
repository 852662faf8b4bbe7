/* Tensors and the context that owns a step's memory and tape.
 *
 * A pg_tensor is float32, contiguous, row-major, of rank 0 to PG_MAX_DIMS.
 *
 * Memory ownership, in one rule: who allocates frees.
 *  - Heap tensors come from pg_tensor_new and live until pg_tensor_free.
 *    Parameters are heap tensors with requires_grad set; their gradient buffer
 *    is allocated with them and gradients accumulate into it until
 *    pg_tensor_zero_grad.
 *  - Step tensors come from a pg_ctx (pg_zeros, pg_empty, ... and every op's
 *    output). They, their gradients and the tape records live in the
 *    context's arena until pg_ctx_reset, which ends the step. Never free one.
 *
 * The tape: each op whose inputs need gradients (and grad mode is on) appends
 * a record to ctx's tape; pg_backward walks the tape in reverse. */
#ifndef PG_TENSOR_H
#define PG_TENSOR_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patchgrad/autograd/arena.h"
#include "patchgrad/autograd/error.h"
#include "patchgrad/autograd/rng.h"

#define PG_MAX_DIMS 8

typedef struct pg_node pg_node;

typedef struct pg_tensor {
  float *data;
  float *grad;          /* NULL until a gradient reaches it (step tensors) */
  int ndim;
  int64_t shape[PG_MAX_DIMS];
  int64_t numel;
  bool requires_grad;
  bool heap;            /* true: from pg_tensor_new, freed by pg_tensor_free */
  pg_node *node;        /* the tape record that produced it, NULL for leaves */
} pg_tensor;

/* A literal shape: pg_zeros(ctx, PG_SHAPE(2, 3)) passes ndim and the array. */
#define PG_SHAPE(...) \
  (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

typedef struct pg_grad_block pg_grad_block;

typedef struct pg_ctx {
  pg_arena arena;
  pg_node *tape;        /* the last record; records link backwards */
  long tape_len;
  bool grad_enabled;
  bool training;        /* dropout and other train-only behaviour */
  bool tape_broken;     /* a record could not be stored: backward refuses */
  /* Gradient buffers of intermediates whose backward has run, for reuse by
   * later gradients of the same size (tape.c); both lists live in the arena. */
  pg_grad_block *free_grads, *spare_blocks;
} pg_ctx;

/* ---- Context: one per training loop (or thread). ---- */
/* chunk_bytes: arena chunk size, 0 for 64 MiB. NULL on failure. */
PG_API pg_ctx *pg_ctx_new(size_t chunk_bytes);
PG_API void pg_ctx_free(pg_ctx *ctx);
/* Ends a step: forgets the tape and every step tensor, keeps the memory. */
PG_API void pg_ctx_reset(pg_ctx *ctx);
/* No-grad mode: returns the previous setting, to restore it afterwards. */
PG_API bool pg_set_grad_enabled(pg_ctx *ctx, bool enabled);
PG_API bool pg_set_training(pg_ctx *ctx, bool training);

/* ---- Heap tensors (caller frees). Zero-filled. ---- */
PG_API pg_tensor *pg_tensor_new(int ndim, const int64_t *shape, bool requires_grad);
PG_API void pg_tensor_free(pg_tensor *t);
/* Sets requires_grad; a heap tensor gets its own zeroed gradient buffer. */
PG_API pg_status pg_tensor_set_requires_grad(pg_tensor *t, bool requires_grad);
PG_API void pg_tensor_zero_grad(pg_tensor *t);

/* ---- Step tensors (live until pg_ctx_reset). ---- */
PG_API pg_tensor *pg_empty(pg_ctx *ctx, int ndim, const int64_t *shape); /* uninitialised */
PG_API pg_tensor *pg_zeros(pg_ctx *ctx, int ndim, const int64_t *shape);
PG_API pg_tensor *pg_ones(pg_ctx *ctx, int ndim, const int64_t *shape);
PG_API pg_tensor *pg_full(pg_ctx *ctx, int ndim, const int64_t *shape, float value);
PG_API pg_tensor *pg_from_array(pg_ctx *ctx, int ndim, const int64_t *shape, const float *values);
PG_API pg_tensor *pg_uniform(pg_ctx *ctx, int ndim, const int64_t *shape, float low, float high, pg_rng *rng);
PG_API pg_tensor *pg_normal(pg_ctx *ctx, int ndim, const int64_t *shape, float mean, float std, pg_rng *rng);
/* [n] tensor start, start + step, ... */
PG_API pg_tensor *pg_arange(pg_ctx *ctx, int64_t n, float start, float step);
/* A step tensor that shares data with t (no copy, no tape record). */
PG_API pg_tensor *pg_view(pg_ctx *ctx, pg_tensor *t, int ndim, const int64_t *shape);

/* ---- Filling any tensor in place (no tape record). ---- */
PG_API void pg_fill(pg_tensor *t, float value);
PG_API void pg_fill_uniform(pg_tensor *t, float low, float high, pg_rng *rng);
PG_API void pg_fill_normal(pg_tensor *t, float mean, float std, pg_rng *rng);
/* Normal(mean, std) redrawn until it lies in [low, high] (PyTorch's
 * trunc_normal_ cuts at absolute values, as here). An error, with t left
 * as it was, when an argument is NaN, std < 0, low > high, or the interval
 * holds too little of the distribution for redrawing to end: less than
 * PG_TRUNC_NORMAL_MIN_MASS of its probability (std 0: mean outside it). */
#define PG_TRUNC_NORMAL_MIN_MASS 1e-6
PG_API pg_status pg_fill_trunc_normal(pg_tensor *t, float mean, float std, float low, float high,
                                      pg_rng *rng);

/* ---- Shapes ---- */
PG_API bool pg_same_shape(const pg_tensor *a, const pg_tensor *b);
/* "[2, 3, 4]" in a per-thread ring of buffers, for messages. */
PG_API const char *pg_shape_of(const pg_tensor *t);
PG_API int64_t pg_shape_numel(int ndim, const int64_t *shape);
/* Validates a shape for creation; on error sets the message for `who`. */
PG_API pg_status pg_check_shape(const char *who, int ndim, const int64_t *shape);

/* Memory of the step arena (for tests and the benchmark). */
PG_API void *pg_ctx_alloc(pg_ctx *ctx, size_t bytes);

#endif
