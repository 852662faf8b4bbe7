/* `patchgrad check` handlers of the generic ops (autograd/ops.h).
 * From casefile.md:
 *   gelu      approximate "tanh" | "none"            x
 *   silu, softmax (last axis)                        x
 *   mse                                              x, target; out a 0-d scalar
 * patchgrad's own op names, for its PyTorch fixtures (tests/data/ops_torch.h5):
 *   add, sub, mul, div                               a, b (NumPy broadcasting)
 *   matmul    trans_a, trans_b (0/1)                 a, b
 *   sum, mean axes (int array; absent: all), keepdims x
 *   embedding                                        params/weight [n, d], idx (integers, any shape) */
#include <string.h>

#include "check_ops.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/autograd/ops.h"

/* Ends a handler of a one-input op. */
static void check_unary(pg_case *c, pg_tensor *x, pg_tensor *out) {
  const char *names[] = {"x"};
  pg_case_check_op(c, out, 1, names, &x);
}

void pg_check_gelu(pg_case *c) {
  char approximate[16];
  pg_case_attr_string(c, "approximate", "none", approximate, sizeof approximate);
  pg_tensor *x = pg_case_array(c, "x");
  if (c->error) return;
  pg_gelu_kind kind;
  if (!strcmp(approximate, "none")) kind = PG_GELU_ERF;
  else if (!strcmp(approximate, "tanh")) kind = PG_GELU_TANH;
  else {
    pg_case_fail(c, "attribute 'approximate' must be \"tanh\" or \"none\", got \"%s\"", approximate);
    return;
  }
  check_unary(c, x, pg_gelu(c->ctx, x, kind));
}

void pg_check_silu(pg_case *c) {
  pg_tensor *x = pg_case_array(c, "x");
  if (!c->error) check_unary(c, x, pg_silu(c->ctx, x));
}

void pg_check_softmax(pg_case *c) {
  pg_tensor *x = pg_case_array(c, "x");
  if (!c->error) check_unary(c, x, pg_softmax(c->ctx, x));
}

void pg_check_mse(pg_case *c) {
  pg_tensor *x = pg_case_array(c, "x");
  pg_tensor *target = pg_case_array(c, "target");
  if (c->error) return;
  const char *names[] = {"x", "target"};
  pg_tensor *inputs[] = {x, target};
  pg_case_check_op(c, pg_mse(c->ctx, x, target), 2, names, inputs);
}

/* ---- patchgrad's own ops ---- */

static void check_binary(pg_case *c, pg_tensor *(*op)(pg_ctx *, pg_tensor *, pg_tensor *)) {
  pg_tensor *a = pg_case_array(c, "a");
  pg_tensor *b = pg_case_array(c, "b");
  if (c->error) return;
  const char *names[] = {"a", "b"};
  pg_tensor *inputs[] = {a, b};
  pg_case_check_op(c, op(c->ctx, a, b), 2, names, inputs);
}

void pg_check_add(pg_case *c) { check_binary(c, pg_add); }
void pg_check_sub(pg_case *c) { check_binary(c, pg_sub); }
void pg_check_mul(pg_case *c) { check_binary(c, pg_mul); }
void pg_check_div(pg_case *c) { check_binary(c, pg_div); }

void pg_check_matmul(pg_case *c) {
  const bool ta = pg_case_attr_int(c, "trans_a", 0), tb = pg_case_attr_int(c, "trans_b", 0);
  pg_tensor *a = pg_case_array(c, "a");
  pg_tensor *b = pg_case_array(c, "b");
  if (c->error) return;
  const char *names[] = {"a", "b"};
  pg_tensor *inputs[] = {a, b};
  pg_case_check_op(c, pg_matmul(c->ctx, a, b, ta, tb), 2, names, inputs);
}

static void check_reduce(pg_case *c, bool mean) {
  int64_t axes64[PG_MAX_DIMS];
  const int n_axes = pg_case_attr_ints(c, "axes", axes64, PG_MAX_DIMS);
  const bool keepdims = pg_case_attr_int(c, "keepdims", 0);
  pg_tensor *x = pg_case_array(c, "x");
  if (c->error) return;
  int axes[PG_MAX_DIMS];
  for (int i = 0; i < n_axes; i++) {
    if (axes64[i] < -x->ndim || axes64[i] >= x->ndim) {
      pg_case_fail(c, "attribute 'axes': axis %lld is outside [%d, %d) for 'x' %s",
                   (long long)axes64[i], -x->ndim, x->ndim, pg_shape_of(x));
      return;
    }
    axes[i] = (int)axes64[i];
  }
  check_unary(c, x, mean ? pg_mean(c->ctx, x, n_axes, axes, keepdims)
                         : pg_sum(c->ctx, x, n_axes, axes, keepdims));
}

void pg_check_sum(pg_case *c) { check_reduce(c, false); }
void pg_check_mean(pg_case *c) { check_reduce(c, true); }

void pg_check_embedding(pg_case *c) {
  pg_tensor *table = pg_case_array(c, "params/weight");
  int64_t n_idx, shape[PG_MAX_DIMS];
  int ndim;
  const int64_t *idx = pg_case_ints(c, "idx", &n_idx);
  if (c->error) return;
  if (pg_h5_dataset_shape(c->group, "idx", c->name, &ndim, shape)) {
    pg_case_fail(c, "%s", pg_last_error());
    return;
  }
  const char *names[] = {"params/weight"};
  pg_case_check_op(c, pg_embedding(c->ctx, table, ndim, shape, idx), 1, names, &table);
}
