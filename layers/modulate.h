/* adaLN pieces of a DiT block: modulate and the gated residual, each one
 * fused op with its backward. The per-sample vectors [B, h] broadcast over
 * every token of x [B, ..., h]. */
#ifndef PG_MODULATE_H
#define PG_MODULATE_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/tape.h"

/* x * (1 + scale) + shift; x [B, ..., h], shift and scale [B, h].
 * Backward saves nothing (reads x and scale). */
PG_API pg_tensor *pg_modulate_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *shift, pg_tensor *scale);

/* x + gate * y; x and y [B, ..., h] of one shape, gate [B, h].
 * Backward saves nothing (reads y and gate). */
PG_API pg_tensor *pg_gated_residual_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *gate, pg_tensor *y);

#endif
