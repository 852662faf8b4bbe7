/* The kit for writing an op: everything an op of the library uses, and all
 * a new op needs (docs/writing_an_op.md walks through a complete one,
 * examples/custom_op.c).
 *
 * An op is a forward function and a backward function side by side:
 *
 *   forward  pg_tensor *my_op(pg_ctx *ctx, pg_tensor *x, ...):
 *            return NULL at once when an input is NULL (an earlier op failed
 *            and its message stands), check the arguments (pg_fail names the
 *            op, the argument and the values), make the output with pg_empty
 *            (a step tensor), compute it, then record the op on the tape with
 *            pg_tape_record and save what backward needs with PG_SAVE.
 *   backward void my_op_backward(pg_ctx *ctx, pg_node *node):
 *            read node->out->grad (the output's gradient, all of it filled),
 *            node->in[i] and node->saved, and add each input's contribution
 *            into the buffer pg_grad_accum or pg_grad_dest gives for it (NULL
 *            when that input needs no gradient: skip it).
 *
 * Naming: an op on tensors is pg_<name> (autograd) or pg_<name>_op (layers,
 * which keep pg_<layer>_forward for the layer struct); the tape record takes
 * the op's function name ("pg_softmax", "pg_linear_op"), which error
 * messages quote.
 *
 * Memory: the output, saved state and scratch all come from the step arena
 * (freed together by pg_ctx_reset); never malloc in an op: a training step
 * must not allocate after its first one. Threads: PG_FOR and the rest of
 * parallel.h, the library's one threading policy. */
#ifndef PG_OP_H
#define PG_OP_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patchgrad/autograd/parallel.h"
#include "patchgrad/autograd/tape.h"
#include "patchgrad/autograd/tensor.h"

typedef void (*pg_backward_fn)(pg_ctx *ctx, pg_node *node);

/* Saved state up to this many bytes lives in the record itself. */
#define PG_NODE_INLINE_SAVED 64

/* One record of the tape. */
struct pg_node {
  const char *op;          /* the recording function's name, for messages */
  pg_backward_fn backward;
  pg_tensor *out;
  pg_tensor **in;          /* n_in inputs as recorded (an optional input may be NULL) */
  int n_in;
  void *saved;             /* the op's saved state (PG_SAVE), NULL when none */
  pg_node *prev;           /* the record before this one */
  _Alignas(16) unsigned char saved_inline[PG_NODE_INLINE_SAVED];
};

/* True when an op with these inputs will be recorded: grad mode is on and
 * some (non-NULL) input requires a gradient. For forwards that compute extra
 * state only backward needs (decide before computing it). */
PG_API bool pg_needs_grad(const pg_ctx *ctx, int n_in, pg_tensor *const *in);

/* Records `out = op(in...)` when pg_needs_grad(ctx, n_in, in); then sets
 * out->requires_grad and out->node. Returns the record (to save state in)
 * or NULL when nothing was recorded. On arena exhaustion it also returns
 * NULL, with the error set and the tape marked broken, so that the next
 * pg_backward fails with the message. `op` must outlive the step (a string
 * literal). */
PG_API pg_node *pg_tape_record(pg_ctx *ctx, const char *op, pg_backward_fn backward,
                               pg_tensor *out, int n_in, pg_tensor *const *in);

/* Saves `bytes` of state for node's backward: a copy of *state, in the
 * record itself (up to PG_NODE_INLINE_SAVED bytes) or in the arena, set as
 * node->saved and returned. NULL (nothing saved) when node is NULL; NULL
 * with the tape marked broken when the arena is out of memory. Arrays
 * belong in pg_scratch memory, with pointers to them in the state. */
PG_API void *pg_node_save(pg_ctx *ctx, pg_node *node, const void *state, size_t bytes);

/* The saved state of an op is a struct declared beside it, filled where the
 * op is recorded:
 *   typedef struct { int axis; int64_t start; } slice_saved;
 *   pg_node *node = pg_tape_record(ctx, "pg_slice", slice_backward, out, 1, &x);
 *   PG_SAVE(ctx, node, slice_saved, .axis = axis, .start = start);
 * and read back in the backward: const slice_saved *s = node->saved; */
#define PG_SAVE(ctx, node, type, ...) \
  ((type *)pg_node_save((ctx), (node), &(type){__VA_ARGS__}, sizeof(type)))

/* Memory from the step arena, 64-byte aligned, uninitialised, alive until
 * pg_ctx_reset: scratch of a forward or backward, or arrays saved for
 * backward. NULL when the arena is out of memory (the error is set and the
 * tape marked broken: a forward returns NULL, a backward returns and
 * pg_backward reports it). */
PG_API void *pg_scratch(pg_ctx *ctx, size_t bytes);

/* ---- Kernels every op author needs ---- */

/* dst[c] (+)= sum over r of src[r * cols + c] for src [rows, cols]: the
 * gradient of a bias added to every row, the library's one kernel for it.
 * Each column is summed in double, in row order, and rounded to float once:
 * the result does not depend on the thread count, and stays within about
 * half a float ulp of the exact sum however many rows there are (a float
 * accumulator drifts with the row count). `acc` adds into dst instead of
 * writing it. */
PG_API void pg_column_sums(const float *src, int64_t rows, int64_t cols, float *dst, bool acc);

/* ---- Gradient buffers, for backward functions ---- */

/* The buffer that receives t's gradient (t->numel floats): allocated and
 * zeroed on first use, so contributions are added to it. NULL when t is
 * NULL or needs no gradient (or, with the tape marked broken, when the
 * arena is out of memory). */
PG_API float *pg_grad_accum(pg_ctx *ctx, pg_tensor *t);

/* As pg_grad_accum, but a fresh buffer is left uninitialised and *fresh is
 * set true: the caller must then write every element instead of adding
 * (BLAS's beta = 0), which saves a pass in hot kernels. */
PG_API float *pg_grad_dest(pg_ctx *ctx, pg_tensor *t, bool *fresh);

/* Adoption: when an input's gradient equals the output's, element for
 * element (a reshape; the residual branch of x + f(x)), the input can take
 * the output's buffer instead of a copy. pg_grad_adoptable(t) is true when
 * t may: a step tensor (heap tensors own their gradient) that needs a
 * gradient and has no buffer yet. pg_grad_adopt(t, grad) makes grad (of
 * t->numel floats, in this step's arena) t's gradient buffer when
 * pg_grad_adoptable(t), and returns whether it did; otherwise the caller
 * adds grad into pg_grad_accum(ctx, t) as usual. The tape keeps an adopted
 * buffer alive for the input after the op's backward. */
PG_API bool pg_grad_adoptable(const pg_tensor *t);
PG_API bool pg_grad_adopt(pg_tensor *t, float *grad);

#endif
