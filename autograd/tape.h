/* The tape: one record per op, in the order the ops ran. pg_backward walks it
 * from the end, calling each record's backward, which adds the op's input
 * gradients into the inputs' gradient buffers. A tensor used by several ops
 * therefore receives the sum of all its contributions.
 *
 * Gradients are kept on leaves only (tensors no op produced: parameters and
 * inputs); an op's output hands its gradient on and forgets it, as PyTorch
 * does, so pg_backward may be called several times in one step. */
#ifndef PG_TAPE_H
#define PG_TAPE_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/tensor.h"

typedef void (*pg_backward_fn)(pg_ctx *ctx, pg_node *node);

struct pg_node {
  const char *op;          /* for messages and debugging */
  pg_backward_fn backward;
  pg_tensor *out;
  pg_tensor **in;          /* n_in inputs, stored in the arena */
  int n_in;
  void *saved;             /* op-specific state kept for backward (arena) */
  int64_t iarg[8];         /* small integer settings */
  float farg[4];           /* small float settings */
  pg_node *prev;
};

/* Records `out = op(in...)` when grad mode is on and some input requires a
 * gradient; then sets out->requires_grad and out->node. Returns the record
 * (to fill saved/iarg/farg) or NULL when nothing was recorded. On arena
 * exhaustion it also returns NULL, with the error set and ctx marked so the
 * next pg_backward fails. */
PG_API pg_node *pg_tape_record(pg_ctx *ctx, const char *op, pg_backward_fn backward,
                        pg_tensor *out, int n_in, pg_tensor *const *in);

/* Backward from a scalar (numel 1) tensor, seeded with 1. */
PG_API pg_status pg_backward(pg_ctx *ctx, pg_tensor *t);
/* Backward from any tensor with the given upstream gradient (t->numel values). */
PG_API pg_status pg_backward_with(pg_ctx *ctx, pg_tensor *t, const float *grad_out);

/* For backward functions: the buffer that receives t's gradient, allocated in
 * the arena and zeroed on first use; NULL when t needs no gradient.
 * Contributions are added to it. */
PG_API float *pg_grad_accum(pg_ctx *ctx, pg_tensor *t);
/* As pg_grad_accum, but a fresh buffer is left uninitialised and *fresh is set
 * true: the caller must then write every element instead of adding (BLIS's
 * beta = 0). Saves a memset in hot kernels. */
PG_API float *pg_grad_dest(pg_ctx *ctx, pg_tensor *t, bool *fresh);

#endif
