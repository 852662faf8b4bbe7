/* NumPy broadcasting, shared by every op that lines up tensors of different
 * shapes (add/sub/mul/div, broadcast_to, the backward of sum and mean).
 * Internal to the library: not installed.
 *
 * A plan describes out = f(a, b) where a and b broadcast to out's shape. It
 * aligns the shapes on the right, then merges neighbouring axes on which each
 * operand is either "full" on both or "broadcast" on both, so that the common
 * cases become short loops:
 *   same shapes           -> one row of out->numel elements
 *   b a scalar            -> one row, b's stride 0
 *   b a trailing row [h]  -> rows of h, b's row offset always 0
 *   b a column [.., 1]    -> rows, b's stride 0 within a row
 * The kernels then run on rows: out[i] = a[i * sa] op b[i * sb], with sa and
 * sb each 0 or 1. */
#ifndef PG_BROADCAST_H
#define PG_BROADCAST_H

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/parallel.h"
#include "patchgrad/autograd/tensor.h"

typedef struct {
  int ndim;                          /* merged rank, >= 1 */
  int64_t size[PG_MAX_DIMS];         /* merged output sizes */
  int64_t stride[2][PG_MAX_DIMS];    /* element strides of operand 0 and 1 (0: broadcast) */
  int64_t numel;                     /* output elements */
  bool expanded[2];                  /* operand is smaller than the output */
} pg_bcast;

/* out[i] (+)= a[i*sa] op b[i*sb] for i < n; sa and sb are each 0 or 1
 * (both 0: a row of one repeated value); `acc` adds instead of writing. */
typedef void (*pg_row_kernel)(int64_t n, const float *a, int64_t sa, const float *b, int64_t sb,
                              float *out, bool acc);

/* The broadcast shape of a and b, NumPy's rule (align right; each axis equal
 * or 1). Returns the first incompatible axis counted from the end (-1, -2, ...)
 * or 0 when the shapes broadcast. */
int pg_bcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *n_out,
                   int64_t *out);

/* Plans out = f(a, b); a's and b's shapes must broadcast to out's. */
void pg_bcast_plan(pg_bcast *p, int n_out, const int64_t *out, int na, const int64_t *sa, int nb,
                   const int64_t *sb);

/* Runs the kernel over the plan's rows (in parallel when large). */
void pg_bcast_apply(const pg_bcast *p, pg_row_kernel k, const float *a, const float *b, float *out,
                    bool acc);

/* The reduction that undoes broadcasting: dst, of shape d_shape (which
 * broadcasts to src's shape), receives alpha times the sum of src over the
 * broadcast axes, accumulated in double. `acc` adds into dst instead of
 * writing it. */
void pg_reduce_to(int n_src, const int64_t *src_shape, const float *src, int nd,
                  const int64_t *d_shape, double alpha, float *dst, bool acc);

/* Defines a row kernel from an expression in x (a's element) and y (b's):
 *   PG_ROW_KERNEL(static, kernel_sub, x - y)
 * One loop per pair of strides keeps each simple enough for the compiler
 * to vectorise. */
#define PG_ROW_KERNEL(storage, name, EXPR)                                                      \
  storage void name(int64_t n, const float *restrict a, int64_t sa, const float *restrict b,    \
                    int64_t sb, float *restrict out, bool acc) {                                \
    const float a0_ = a[0], b0_ = b[0];                                                         \
    if (sa && sb) {                                                                             \
      PG_ROW_LOOP_(a[i], b[i], EXPR)                                                            \
    } else if (sa) {                                                                            \
      PG_ROW_LOOP_(a[i], b0_, EXPR)                                                             \
    } else if (sb) {                                                                            \
      PG_ROW_LOOP_(a0_, b[i], EXPR)                                                             \
    } else {                                                                                    \
      PG_ROW_LOOP_(a0_, b0_, EXPR)                                                              \
    }                                                                                           \
  }
#define PG_ROW_LOOP_(X, Y, EXPR)                                   \
  if (acc)                                                         \
    for (int64_t i = 0; i < n; i++) {                              \
      const float x = (X), y = (Y);                                \
      (void)x, (void)y;                                            \
      out[i] += (EXPR);                                            \
    }                                                              \
  else                                                             \
    for (int64_t i = 0; i < n; i++) {                              \
      const float x = (X), y = (Y);                                \
      (void)x, (void)y;                                            \
      out[i] = (EXPR);                                             \
    }

/* Row kernels shared by several files (defined in elementwise.c). */
void pg_kernel_add(int64_t n, const float *a, int64_t sa, const float *b, int64_t sb, float *out, bool acc);
void pg_kernel_mul(int64_t n, const float *a, int64_t sa, const float *b, int64_t sb, float *out, bool acc);

#endif
