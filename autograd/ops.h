/* The ops: each takes step or heap tensors, returns a new step tensor (in
 * ctx's arena) and records its backward on ctx's tape when an input needs a
 * gradient. Any NULL input gives NULL back, keeping the first error message;
 * a bad argument gives NULL and a message naming the op, the argument and the
 * shapes. Forward and backward of each op sit side by side in one file:
 *   elementwise.c  add sub mul div (NumPy broadcasting), scalar ops, unary math
 *   activation.c   relu silu gelu softmax dropout
 *   matmul.c       matmul (2D and batched, optional transposes; BLIS)
 *   shape.c        reshape permute transpose slice concat split broadcast_to
 *   reduce.c       sum mean
 *   loss.c         mse
 *   cross_entropy.c  softmax cross-entropy (fused, stable)
 *   embedding.c    embedding lookup */
#ifndef PG_OPS_H
#define PG_OPS_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/tape.h"
#include "patchgrad/autograd/tensor.h"

/* ---- Elementwise, with NumPy broadcasting for the binary ops ---- */
PG_API pg_tensor *pg_add(pg_ctx *ctx, pg_tensor *a, pg_tensor *b);
PG_API pg_tensor *pg_sub(pg_ctx *ctx, pg_tensor *a, pg_tensor *b);
PG_API pg_tensor *pg_mul(pg_ctx *ctx, pg_tensor *a, pg_tensor *b);
PG_API pg_tensor *pg_div(pg_ctx *ctx, pg_tensor *a, pg_tensor *b);
PG_API pg_tensor *pg_add_scalar(pg_ctx *ctx, pg_tensor *x, float s);
PG_API pg_tensor *pg_mul_scalar(pg_ctx *ctx, pg_tensor *x, float s);
PG_API pg_tensor *pg_neg(pg_ctx *ctx, pg_tensor *x);
PG_API pg_tensor *pg_exp(pg_ctx *ctx, pg_tensor *x);
PG_API pg_tensor *pg_log(pg_ctx *ctx, pg_tensor *x);
PG_API pg_tensor *pg_sqrt(pg_ctx *ctx, pg_tensor *x);
PG_API pg_tensor *pg_tanh(pg_ctx *ctx, pg_tensor *x);
PG_API pg_tensor *pg_pow_scalar(pg_ctx *ctx, pg_tensor *x, float p);

/* ---- Activations ---- */
PG_API pg_tensor *pg_relu(pg_ctx *ctx, pg_tensor *x);
PG_API pg_tensor *pg_silu(pg_ctx *ctx, pg_tensor *x);
typedef enum { PG_GELU_ERF = 0, PG_GELU_TANH = 1 } pg_gelu_kind;
PG_API pg_tensor *pg_gelu(pg_ctx *ctx, pg_tensor *x, pg_gelu_kind kind);
/* Softmax over the last axis, stable for inputs of any magnitude. */
PG_API pg_tensor *pg_softmax(pg_ctx *ctx, pg_tensor *x);
/* Zeroes each element with probability p and scales the rest by 1/(1-p);
 * the identity (x itself is returned) when ctx->training is false or
 * p == 0. p must lie in [0, 1); rng may be NULL only for the identity. */
PG_API pg_tensor *pg_dropout(pg_ctx *ctx, pg_tensor *x, float p, pg_rng *rng);

/* ---- Matrix product (BLIS) ----
 * a [..., m, k] (or [..., k, m] with trans_a), b [..., k, n] (or [..., n, k]
 * with trans_b). Rank 2 on both sides is a plain product; otherwise the
 * leading (batch) axes must be equal, or b may be rank 2 and is then shared
 * by every batch entry. */
PG_API pg_tensor *pg_matmul(pg_ctx *ctx, pg_tensor *a, pg_tensor *b, bool trans_a, bool trans_b);

/* ---- Shape ---- */
/* One axis of new_shape may be -1 (inferred). Shares data, no copy. */
PG_API pg_tensor *pg_reshape(pg_ctx *ctx, pg_tensor *x, int ndim, const int64_t *new_shape);
/* out.shape[i] = x.shape[perm[i]]. */
PG_API pg_tensor *pg_permute(pg_ctx *ctx, pg_tensor *x, const int *perm);
PG_API pg_tensor *pg_transpose(pg_ctx *ctx, pg_tensor *x, int axis0, int axis1);
/* Elements start..end-1 of one axis (negative axis counts from the end). */
PG_API pg_tensor *pg_slice(pg_ctx *ctx, pg_tensor *x, int axis, int64_t start, int64_t end);
PG_API pg_tensor *pg_concat(pg_ctx *ctx, int n, pg_tensor *const *xs, int axis);
/* Splits one axis into n parts of the given sizes (summing to the axis size);
 * writes the parts (copies) to out[0..n-1], which must hold n entries.
 * Returns PG_OK, or an error with every out[i] set to NULL. */
PG_API pg_status pg_split(pg_ctx *ctx, pg_tensor *x, int axis, int n, const int64_t *sizes, pg_tensor **out);
/* n equal parts (the axis size must divide by n). */
PG_API pg_status pg_chunk(pg_ctx *ctx, pg_tensor *x, int axis, int n, pg_tensor **out);
PG_API pg_tensor *pg_broadcast_to(pg_ctx *ctx, pg_tensor *x, int ndim, const int64_t *shape);

/* ---- Reductions ----
 * Over the n_axes listed axes (negative counts from the end); n_axes == 0
 * reduces every axis. keepdims leaves reduced axes as size 1. */
PG_API pg_tensor *pg_sum(pg_ctx *ctx, pg_tensor *x, int n_axes, const int *axes, bool keepdims);
PG_API pg_tensor *pg_mean(pg_ctx *ctx, pg_tensor *x, int n_axes, const int *axes, bool keepdims);

/* ---- Losses ---- */
/* mean((x - target)^2) as a scalar; gradients reach both sides. */
PG_API pg_tensor *pg_mse(pg_ctx *ctx, pg_tensor *x, pg_tensor *target);
/* F.cross_entropy(logits, labels, label_smoothing=s), mean over the N rows
 * of logits [N, K] as a 0-d scalar (NaN for N == 0, as PyTorch). Labels
 * [N] must lie in [0, K) (an error names the first that does not); s in
 * [0, 1]. Fused softmax/log/nll with the max subtracted: finite for logits of
 * any magnitude. Backward: (softmax - smoothed one-hot) * g / N. */
PG_API pg_tensor *pg_cross_entropy(pg_ctx *ctx, pg_tensor *logits, const int64_t *labels);
PG_API pg_tensor *pg_cross_entropy_smoothed(pg_ctx *ctx, pg_tensor *logits, const int64_t *labels,
                                     float label_smoothing);

/* ---- Embedding ----
 * Rows of table [n, d] picked by the n_idx indices -> [n_idx, d] reshaped to
 * idx_shape + [d]. Backward scatter-adds into the table's gradient. An index
 * outside [0, n) is an error naming it. */
PG_API pg_tensor *pg_embedding(pg_ctx *ctx, pg_tensor *table, int idx_ndim, const int64_t *idx_shape,
                        const int64_t *idx);

#endif
