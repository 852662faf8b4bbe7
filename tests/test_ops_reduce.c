/* Reductions: sum and mean over any axes, keepdims, negative axes,
 * accuracy on long sums, gradients, errors. */
#include "testutil.h"

#include <math.h>

#include "patchgrad/autograd/ops.h"

static const pg_gradcheck_opts tight = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2};

static void test_forward(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  /* x[i, j, k] = 12 i + 4 j + k, shape [2, 3, 4] */
  pg_tensor *x = pg_reshape(ctx, pg_arange(ctx, 24, 0, 1), PG_SHAPE(2, 3, 4));
  pg_tensor *s = pg_sum(ctx, x, 0, NULL, false);
  assert_int_equal(s->ndim, 0);
  assert_true(s->data[0] == 276.0f);
  s = pg_sum(ctx, x, 1, (int[]){-1}, false); /* [2, 3] */
  assert_int_equal(s->ndim, 2);
  assert_close(s->data, ((float[]){6, 22, 38, 54, 70, 86}), 6, 0, 0);
  s = pg_sum(ctx, x, 2, (int[]){0, 2}, true); /* [1, 3, 1] */
  assert_int_equal(s->ndim, 3);
  assert_int_equal(s->shape[0], 1);
  assert_int_equal(s->shape[1], 3);
  assert_int_equal(s->shape[2], 1);
  assert_close(s->data, ((float[]){60, 92, 124}), 3, 0, 0);
  s = pg_sum(ctx, x, 1, (int[]){1}, false); /* [2, 4] */
  assert_close(s->data, ((float[]){12, 15, 18, 21, 48, 51, 54, 57}), 8, 0, 0);
  pg_tensor *m = pg_mean(ctx, x, 2, (int[]){1, 0}, false); /* [4] */
  assert_close(m->data, ((float[]){10, 11, 12, 13}), 4, 0, 1e-7);
  m = pg_mean(ctx, x, 0, NULL, true); /* [1, 1, 1] */
  assert_int_equal(m->ndim, 3);
  assert_true(m->data[0] == 11.5f);
  m = pg_mean(ctx, x, 3, (int[]){0, 1, 2}, false);
  assert_int_equal(m->ndim, 0);
  assert_true(m->data[0] == 11.5f);
  /* a rank-0 input is its own sum */
  pg_tensor *z = pg_full(ctx, 0, NULL, 4.0f);
  assert_true(pg_sum(ctx, z, 0, NULL, false)->data[0] == 4.0f);
  /* the mean of nothing is NaN, as in PyTorch */
  pg_tensor *e = pg_zeros(ctx, PG_SHAPE(2, 0));
  assert_true(isnan(pg_mean(ctx, e, 1, (int[]){1}, false)->data[0]));
  assert_true(pg_sum(ctx, e, 1, (int[]){1}, false)->data[1] == 0.0f);
  pg_ctx_free(ctx);
}

/* A float accumulator would drift on a million terms of 0.1; double does not. */
static void test_accuracy(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_full(ctx, PG_SHAPE(1000000), 0.1f);
  const double want = 1e6 * (double)0.1f;
  assert_true(fabs(pg_sum(ctx, x, 0, NULL, false)->data[0] - want) < 1e-6 * want);
  pg_tensor *y = pg_full(ctx, PG_SHAPE(20000, 50), 0.1f);
  pg_tensor *col = pg_sum(ctx, y, 1, (int[]){0}, false);
  for (int j = 0; j < 50; j++) assert_true(fabs(col->data[j] - 20000 * (double)0.1f) < 1e-6 * 2000);
  pg_tensor *row = pg_mean(ctx, pg_full(ctx, PG_SHAPE(3, 400000), 0.1f), 1, (int[]){-1}, false);
  for (int j = 0; j < 3; j++) assert_true(fabsf(row->data[j] - 0.1f) < 2e-8f);
  pg_ctx_free(ctx);
}

typedef struct {
  bool mean, keepdims;
  int n_axes;
  int axes[4];
} reduce_user;

static pg_tensor *apply_reduce(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  const reduce_user *u = user;
  /* squaring first makes every element's gradient different */
  pg_tensor *sq = pg_mul(ctx, in[0], in[0]);
  return u->mean ? pg_mean(ctx, sq, u->n_axes, u->axes, u->keepdims)
                 : pg_sum(ctx, sq, u->n_axes, u->axes, u->keepdims);
}

static void test_gradcheck(void **state) {
  (void)state;
  const reduce_user cases[] = {
      {false, false, 0, {0}},     {true, false, 0, {0}},      {false, true, 1, {1}},
      {true, false, 1, {-1}},     {false, false, 2, {0, 2}},  {true, true, 2, {-1, 1}},
      {true, false, 1, {0}},      {false, true, 3, {0, 1, 3}}, {true, false, 2, {1, 2}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    pg_tensor *x = pg_test_randn(PG_SHAPE(3, 1, 4, 2), 1.0f, 30 + c);
    assert_gradcheck(apply_reduce, (void *)&cases[c], 1, &x, &tight);
    pg_tensor_free(x);
  }
}

/* mean's gradient is 1/count, sum's 1; they accumulate into a reused leaf. */
static void test_backward_values(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(2, 4), true);
  pg_tensor *m = pg_mean(ctx, x, 1, (int[]){1}, false); /* [2] */
  pg_tensor *s = pg_sum(ctx, x, 1, (int[]){0}, true);   /* [1, 4] */
  assert_int_equal(pg_backward(ctx, pg_add(ctx, pg_sum(ctx, m, 0, NULL, false),
                                           pg_sum(ctx, s, 0, NULL, false))), PG_OK);
  for (int i = 0; i < 8; i++) assert_true(x->grad[i] == 1.25f);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_errors(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_zeros(ctx, PG_SHAPE(2, 3));
  assert_null(pg_sum(ctx, x, 1, (int[]){2}, false));
  assert_error_contains("pg_sum: axis 2 is out of range for x [2, 3] (rank 2)");
  assert_null(pg_mean(ctx, x, 1, (int[]){-3}, false));
  assert_error_contains("pg_mean: axis -3 is out of range for x [2, 3] (rank 2)");
  assert_null(pg_sum(ctx, x, 2, (int[]){1, -1}, false));
  assert_error_contains("pg_sum: axis -1 is listed twice (x [2, 3])");
  assert_null(pg_mean(ctx, x, 3, (int[]){0, 1, 0}, false));
  assert_error_contains("pg_mean: n_axes = 3 must be in 0..2");
  assert_null(pg_sum(ctx, x, 1, NULL, false));
  assert_error_contains("pg_sum: n_axes = 1");
  pg_fail(PG_ERR_ARG, "earlier");
  assert_null(pg_sum(ctx, NULL, 0, NULL, false));
  assert_null(pg_mean(ctx, NULL, 0, NULL, false));
  assert_string_equal(pg_last_error(), "earlier");
  pg_ctx_free(ctx);
}

static void test_no_grad(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_test_randn(PG_SHAPE(4), 1.0f, 1);
  pg_set_grad_enabled(ctx, false);
  assert_false(pg_mean(ctx, x, 0, NULL, false)->requires_grad);
  assert_int_equal(ctx->tape_len, 0);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward),         cmocka_unit_test(test_accuracy),
      cmocka_unit_test(test_gradcheck),       cmocka_unit_test(test_backward_values),
      cmocka_unit_test(test_errors),          cmocka_unit_test(test_no_grad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
