/* Helpers shared by the op files (internal, not installed): the builder of
 * elementwise unary ops and small argument checks. */
#ifndef PG_OP_UTIL_H
#define PG_OP_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/broadcast.h"
#include "patchgrad/autograd/op.h"

/* ---- Elementwise unary ops ----
 * An op is a forward kernel y = f(x) and a backward kernel gx (+)= g * f'(x)
 * that may read x, y (the forward's output), g (the output's gradient) and
 * the op's scalar setting s. PG_UNARY_OP writes both from two expressions:
 *   PG_UNARY_OP(exp, expf(x), g * y)
 * defines `static const pg_unary_op exp_op`. */
typedef struct {
  const char *name;
  void (*forward)(int64_t n, const float *restrict xs, float *restrict ys, float s);
  void (*backward)(int64_t n, const float *restrict xs, const float *restrict ys,
                   const float *restrict gs, float *restrict gx, float s, bool acc);
} pg_unary_op;

#define PG_UNARY_OP(NAME, FWD, GRAD)                                                            \
  static void NAME##_forward(int64_t n, const float *restrict xs, float *restrict ys, float s) { \
    (void)s;                                                                                    \
    for (int64_t i = 0; i < n; i++) {                                                           \
      const float x = xs[i];                                                                    \
      ys[i] = (FWD);                                                                            \
    }                                                                                           \
  }                                                                                             \
  static void NAME##_backward(int64_t n, const float *restrict xs, const float *restrict ys,   \
                              const float *restrict gs, float *restrict gx, float s,            \
                              bool acc) {                                                       \
    (void)s;                                                                                    \
    if (acc)                                                                                    \
      for (int64_t i = 0; i < n; i++) {                                                         \
        const float x = xs[i], y = ys[i], g = gs[i];                                            \
        (void)x, (void)y;                                                                       \
        gx[i] += (GRAD);                                                                        \
      }                                                                                         \
    else                                                                                        \
      for (int64_t i = 0; i < n; i++) {                                                         \
        const float x = xs[i], y = ys[i], g = gs[i];                                            \
        (void)x, (void)y;                                                                       \
        gx[i] = (GRAD);                                                                         \
      }                                                                                         \
  }                                                                                             \
  static const pg_unary_op NAME##_op = {#NAME, NAME##_forward, NAME##_backward};

/* Runs op on x (in parallel blocks when large) into a new step tensor and
 * records its backward. The op's name in messages and on the tape is `name`. */
pg_tensor *pg_unary(pg_ctx *ctx, const char *name, const pg_unary_op *op, pg_tensor *x, float s);

/* ---- Argument checks ---- */
/* Maps a possibly negative axis into [0, ndim); false when out of range. */
bool pg_norm_axis(int axis, int ndim, int *out);

#endif
