/* The tape: one record per op, in the order the ops ran. pg_backward walks it
 * from the end, calling each record's backward, which adds the op's input
 * gradients into the inputs' gradient buffers. A tensor used by several ops
 * therefore receives the sum of all its contributions. (Recording is for op
 * authors: op.h.)
 *
 * Gradients are kept on leaves only (tensors no op produced: parameters and
 * inputs); an op's output hands its gradient on and forgets it, as PyTorch
 * does, so pg_backward may be called several times in one step. */
#ifndef PG_TAPE_H
#define PG_TAPE_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/tensor.h"

/* Backward from a scalar (numel 1) tensor, seeded with 1. */
PG_API pg_status pg_backward(pg_ctx *ctx, pg_tensor *t);
/* Backward from any tensor with the given upstream gradient (t->numel
 * values; an error when grad_out is NULL). */
PG_API pg_status pg_backward_with(pg_ctx *ctx, pg_tensor *t, const float *grad_out);

/* pg_backward_with, calling after(self, n) once for every record n of the
 * sweep (from t's record back to the first), after n's backward has run or
 * been skipped (its output got no gradient). When after() has seen every
 * record that reads a leaf, that leaf's gradient is final for this
 * backward: data-parallel training starts averaging it then, while the
 * sweep goes on (dist/reducer.h). after() must not change the tape. */
typedef void (*pg_backward_hook)(void *self, const pg_node *n);
PG_API pg_status pg_backward_hooked(pg_ctx *ctx, pg_tensor *t, const float *grad_out, pg_backward_hook after,
                                    void *self);

#endif
