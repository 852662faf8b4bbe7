/* Matrix product: 2D and batched, every transpose combination, a shared
 * rank-2 b, size-1 and empty dimensions, forward against plain loops and
 * backward against finite differences; accumulation and error messages. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "patchgrad/autograd/ops.h"

static const pg_gradcheck_opts tight = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2};

typedef struct {
  bool ta, tb;
} mm_user;

static pg_tensor *apply_matmul(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  const mm_user *u = user;
  return pg_matmul(ctx, in[0], in[1], u->ta, u->tb);
}

/* Stored shape of an operand: [batch..., rows, cols], swapped when transposed. */
static pg_tensor *operand(int nbatch, const int64_t *batch, int64_t rows, int64_t cols, bool t,
                          uint64_t seed) {
  int64_t shape[PG_MAX_DIMS];
  for (int i = 0; i < nbatch; i++) shape[i] = batch[i];
  shape[nbatch] = t ? cols : rows;
  shape[nbatch + 1] = t ? rows : cols;
  return pg_test_randn(nbatch + 2, shape, 1.0f, seed);
}

/* c[i, j] of op(A)[m, k] op(B)[k, n] by plain loops (the test's reference). */
static void reference(const float *a, const float *b, bool ta, bool tb, int64_t m, int64_t n,
                      int64_t k, float *c) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t p = 0; p < k; p++)
        s += (double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = (float)s;
    }
}

static void test_forward_2d(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *a = pg_from_array(ctx, PG_SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6});
  pg_tensor *b = pg_from_array(ctx, PG_SHAPE(3, 2), (float[]){7, 8, 9, 10, 11, 12});
  pg_tensor *c = pg_matmul(ctx, a, b, false, false);
  assert_int_equal(c->shape[0], 2);
  assert_int_equal(c->shape[1], 2);
  assert_close(c->data, ((float[]){58, 64, 139, 154}), 4, 0, 0);
  /* a^T a: [3, 2] @ [2, 3] */
  c = pg_matmul(ctx, a, a, true, false);
  assert_int_equal(c->shape[0], 3);
  assert_close(c->data, ((float[]){17, 22, 27, 22, 29, 36, 27, 36, 45}), 9, 0, 0);
  /* a a^T: [2, 3] @ [3, 2] */
  c = pg_matmul(ctx, a, a, false, true);
  assert_close(c->data, ((float[]){14, 32, 32, 77}), 4, 0, 0);
  pg_ctx_free(ctx);
}

/* Every transpose combination, 2D and batched (rank 3 and 4) and shared b,
 * with size-1 dimensions among them; forward vs loops, backward vs finite
 * differences. */
static void test_all_forms(void **state) {
  (void)state;
  const struct {
    int nbatch;
    int64_t batch[2];
    bool shared;
    int64_t m, n, k;
  } forms[] = {
      {0, {0}, false, 3, 4, 5},   {0, {0}, false, 1, 3, 2},   {0, {0}, false, 4, 1, 1},
      {1, {2}, false, 3, 2, 4},   {2, {2, 3}, false, 2, 3, 2}, {1, {3}, true, 2, 3, 4},
      {2, {2, 2}, true, 3, 1, 2}, {1, {1}, false, 1, 1, 3},
  };
  pg_ctx *ctx = pg_ctx_new(0);
  for (size_t f = 0; f < sizeof forms / sizeof *forms; f++)
    for (int t = 0; t < 4; t++) {
      const bool ta = t & 1, tb = t & 2;
      const int64_t m = forms[f].m, n = forms[f].n, k = forms[f].k;
      pg_tensor *a = operand(forms[f].nbatch, forms[f].batch, m, k, ta, 10 * f + t);
      pg_tensor *b = forms[f].shared ? operand(0, NULL, k, n, tb, 99 + f)
                                     : operand(forms[f].nbatch, forms[f].batch, k, n, tb, 77 + f);
      pg_tensor *c = pg_matmul(ctx, a, b, ta, tb);
      assert_non_null(c);
      assert_int_equal(c->ndim, forms[f].nbatch + 2);
      assert_int_equal(c->shape[c->ndim - 2], m);
      assert_int_equal(c->shape[c->ndim - 1], n);
      const int64_t batch = c->numel / (m * n);
      float want[64];
      for (int64_t i = 0; i < batch; i++) {
        reference(a->data + i * m * k, b->data + (forms[f].shared ? 0 : i * k * n), ta, tb, m, n,
                  k, want);
        assert_close(c->data + i * m * n, want, m * n, 1e-5, 1e-5);
      }
      mm_user u = {ta, tb};
      assert_gradcheck(apply_matmul, &u, 2, ((pg_tensor *[]){a, b}), &tight);
      pg_tensor_free(a);
      pg_tensor_free(b);
      pg_ctx_reset(ctx);
    }
  pg_ctx_free(ctx);
}

/* Many small products (one per thread) and one large one (BLIS's threads),
 * checked against loops; gradients against loops too (with upstream 1). */
static void test_batched_sizes(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  const int64_t shapes[][4] = {{16, 8, 8, 8}, {2, 70, 90, 80}};
  for (int s = 0; s < 2; s++) {
    const int64_t batch = shapes[s][0], m = shapes[s][1], n = shapes[s][2], k = shapes[s][3];
    pg_tensor *a = pg_test_randn(PG_SHAPE(batch, m, k), 1.0f, 1);
    pg_tensor *b = pg_test_randn(PG_SHAPE(batch, n, k), 1.0f, 2);
    pg_tensor *c = pg_matmul(ctx, a, b, false, true);
    float *want = pg_ctx_alloc(ctx, (size_t)(m * n) * sizeof(float));
    for (int64_t i = 0; i < batch; i++) {
      reference(a->data + i * m * k, b->data + i * n * k, false, true, m, n, k, want);
      assert_close(c->data + i * m * n, want, m * n, 1e-4, 1e-4);
    }
    /* upstream 1: da[i, p] = sum_j b[j, p], db[j, p] = sum_i a[i, p] */
    pg_tensor *ones = pg_ones(ctx, 3, c->shape);
    assert_int_equal(pg_backward_with(ctx, c, ones->data), PG_OK);
    for (int64_t i = 0; i < batch; i++)
      for (int64_t p = 0; p < k; p++) {
        double sb = 0, sa = 0;
        for (int64_t j = 0; j < n; j++) sb += b->data[(i * n + j) * k + p];
        for (int64_t r = 0; r < m; r++) sa += a->data[(i * m + r) * k + p];
        assert_true(fabs(a->grad[(i * m + 3) * k + p] - sb) < 1e-3);
        assert_true(fabs(b->grad[(i * n + 5) * k + p] - sa) < 1e-3);
      }
    pg_tensor_free(a);
    pg_tensor_free(b);
    pg_ctx_reset(ctx);
  }
  pg_ctx_free(ctx);
}

/* k = 0 gives zeros; m = 0 an empty output, and b's gradient is zero. */
static void test_empty(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *a = pg_tensor_new(PG_SHAPE(2, 0), true);
  pg_tensor *b = pg_tensor_new(PG_SHAPE(0, 3), true);
  pg_tensor *c = pg_matmul(ctx, a, b, false, false);
  assert_int_equal(c->numel, 6);
  for (int i = 0; i < 6; i++) assert_true(c->data[i] == 0.0f);
  pg_tensor *e = pg_tensor_new(PG_SHAPE(0, 2), true);
  pg_tensor *w = pg_tensor_new(PG_SHAPE(2, 3), true);
  w->grad[0] = 5; /* accumulates: stays as it was */
  pg_tensor *d = pg_matmul(ctx, e, w, false, false);
  assert_int_equal(d->numel, 0);
  assert_int_equal(pg_backward_with(ctx, pg_sum(ctx, d, 0, NULL, false), (float[]){1}), PG_OK);
  assert_true(w->grad[0] == 5 && w->grad[1] == 0);
  pg_tensor_free(a);
  pg_tensor_free(b);
  pg_tensor_free(e);
  pg_tensor_free(w);
  pg_ctx_free(ctx);
}

static pg_tensor *gram(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user; /* x x^T + x^T-free use of x again: x appears three times */
  pg_tensor *g = pg_matmul(ctx, in[0], in[0], false, true);
  return pg_matmul(ctx, g, in[0], false, false);
}

static void test_accumulation(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(3, 4), 0.7f, 5);
  assert_gradcheck(gram, NULL, 1, &x, &tight);
  /* the parameter gradient adds up over two steps */
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *w = pg_test_randn(PG_SHAPE(4, 2), 1.0f, 6);
  pg_tensor *in = pg_ones(ctx, PG_SHAPE(3, 4));
  assert_int_equal(pg_backward(ctx, pg_sum(ctx, pg_matmul(ctx, in, w, false, false), 0, NULL, false)), PG_OK);
  for (int i = 0; i < 8; i++) assert_true(w->grad[i] == 3.0f);
  pg_ctx_reset(ctx);
  in = pg_ones(ctx, PG_SHAPE(3, 4));
  assert_int_equal(pg_backward(ctx, pg_sum(ctx, pg_matmul(ctx, in, w, false, false), 0, NULL, false)), PG_OK);
  for (int i = 0; i < 8; i++) assert_true(w->grad[i] == 6.0f);
  pg_tensor_free(w);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_errors(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *v = pg_zeros(ctx, PG_SHAPE(3));
  pg_tensor *a = pg_zeros(ctx, PG_SHAPE(2, 3));
  pg_tensor *b = pg_zeros(ctx, PG_SHAPE(4, 5));
  assert_null(pg_matmul(ctx, v, a, false, false));
  assert_error_contains("pg_matmul: a [3] and b [2, 3] must both have rank >= 2");
  assert_null(pg_matmul(ctx, a, b, false, false));
  assert_error_contains("pg_matmul: inner sizes differ: a [2, 3] has k = 3, b [4, 5] has k = 4");
  assert_null(pg_matmul(ctx, a, b, true, true));
  assert_error_contains("a [2, 3] (transposed) has k = 2, b [4, 5] (transposed) has k = 5");
  pg_tensor *x = pg_zeros(ctx, PG_SHAPE(2, 2, 3));
  pg_tensor *y = pg_zeros(ctx, PG_SHAPE(3, 3, 4));
  assert_null(pg_matmul(ctx, x, y, false, false));
  assert_error_contains("pg_matmul: batch axes of a [2, 2, 3] and b [3, 3, 4] differ");
  /* b batched with a rank-2 a is not a supported form */
  assert_null(pg_matmul(ctx, a, y, false, false));
  assert_error_contains("batch axes");
  pg_fail(PG_ERR_ARG, "earlier");
  assert_null(pg_matmul(ctx, NULL, a, false, false));
  assert_string_equal(pg_last_error(), "earlier");
  pg_ctx_free(ctx);
}

static void test_no_grad(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *w = pg_test_randn(PG_SHAPE(3, 3), 1.0f, 1);
  pg_set_grad_enabled(ctx, false);
  pg_tensor *c = pg_matmul(ctx, w, w, false, false);
  assert_false(c->requires_grad);
  assert_int_equal(ctx->tape_len, 0);
  pg_tensor_free(w);
  pg_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_2d),   cmocka_unit_test(test_all_forms),
      cmocka_unit_test(test_batched_sizes), cmocka_unit_test(test_empty),
      cmocka_unit_test(test_accumulation), cmocka_unit_test(test_errors),
      cmocka_unit_test(test_no_grad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
