/* Elementwise ops: broadcasting binary ops, scalar ops and unary math.
 * Forward against hand-computed values, backward against finite
 * differences on shapes with broadcast and size-1 axes, accumulation,
 * no-grad mode and error messages. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/autograd/op.h"
#include "patchgrad/autograd/ops.h"

typedef pg_tensor *(*binary_fn)(pg_ctx *, pg_tensor *, pg_tensor *);
typedef struct {
  binary_fn op;
} binary_user;

static pg_tensor *apply_binary(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  return ((binary_user *)user)->op(ctx, in[0], in[1]);
}

/* Tight enough that a gradient off by 5% fails (see test_gradcheck_catches_wrong_factor). */
static const pg_gradcheck_opts tight = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2};

static void test_binary_forward(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  float av[] = {1, 2, 3, 4, 5, 6};
  pg_tensor *a = pg_from_array(ctx, PG_SHAPE(2, 3), av);
  pg_tensor *row = pg_from_array(ctx, PG_SHAPE(3), (float[]){10, 20, 30});
  pg_tensor *col = pg_from_array(ctx, PG_SHAPE(2, 1), (float[]){100, 200});
  pg_tensor *s = pg_from_array(ctx, 0, NULL, (float[]){2});

  pg_tensor *y = pg_add(ctx, a, row);
  assert_int_equal(y->ndim, 2);
  assert_close(y->data, ((float[]){11, 22, 33, 14, 25, 36}), 6, 0, 0);
  y = pg_sub(ctx, a, col);
  assert_close(y->data, ((float[]){-99, -98, -97, -196, -195, -194}), 6, 0, 0);
  y = pg_mul(ctx, s, a);
  assert_close(y->data, ((float[]){2, 4, 6, 8, 10, 12}), 6, 0, 0);
  y = pg_div(ctx, a, row);
  assert_close(y->data, ((float[]){0.1f, 0.1f, 0.1f, 0.4f, 0.25f, 0.2f}), 6, 1e-7, 1e-6);
  /* [2, 1] with [3] gives the outer table [2, 3] */
  y = pg_mul(ctx, col, row);
  assert_int_equal(y->shape[0], 2);
  assert_int_equal(y->shape[1], 3);
  assert_close(y->data, ((float[]){1000, 2000, 3000, 2000, 4000, 6000}), 6, 0, 0);
  /* rank grows to the larger one: [3] + [2, 1, 1] -> [2, 1, 3] */
  pg_tensor *c = pg_from_array(ctx, PG_SHAPE(2, 1, 1), (float[]){1, 2});
  y = pg_add(ctx, row, c);
  assert_int_equal(y->ndim, 3);
  assert_int_equal(y->shape[0], 2);
  assert_int_equal(y->shape[1], 1);
  assert_int_equal(y->shape[2], 3);
  assert_close(y->data, ((float[]){11, 21, 31, 12, 22, 32}), 6, 0, 0);
  pg_ctx_free(ctx);
}

/* Shape pairs covering: equal, scalar on either side, trailing row, column,
 * outer product, rank growth, size-1 axes on both sides, all-ones shapes. */
static const struct {
  int na, nb;
  int64_t sa[4], sb[4];
} pairs[] = {
    {2, 2, {2, 3}, {2, 3}},       {2, 0, {2, 3}, {0}},          {0, 3, {0}, {2, 1, 3}},
    {3, 1, {2, 2, 3}, {3}},       {1, 3, {3}, {2, 2, 3}},       {2, 2, {3, 1}, {3, 4}},
    {2, 2, {3, 1}, {1, 4}},       {3, 3, {2, 1, 3}, {1, 4, 1}}, {3, 2, {4, 1, 3}, {2, 1}},
    {2, 2, {1, 1}, {2, 3}},       {1, 1, {1}, {1}},             {4, 2, {2, 1, 3, 1}, {3, 2}},
};

static void test_binary_gradcheck(void **state) {
  (void)state;
  binary_fn ops[] = {pg_add, pg_sub, pg_mul, pg_div};
  for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++)
    for (int o = 0; o < 4; o++) {
      pg_tensor *a = pg_test_randn(pairs[p].na, pairs[p].sa, 1.0f, 10 + p);
      pg_tensor *b = pg_test_randn(pairs[p].nb, pairs[p].sb, 1.0f, 100 + p);
      if (ops[o] == pg_div) /* keep the divisor away from 0: |b| in [1, 2) */
        for (int64_t i = 0; i < b->numel; i++) b->data[i] = copysignf(1.0f + fminf(fabsf(b->data[i]), 0.99f), b->data[i]);
      binary_user u = {ops[o]};
      assert_gradcheck(apply_binary, &u, 2, ((pg_tensor *[]){a, b}), &tight);
      pg_tensor_free(a);
      pg_tensor_free(b);
    }
}

/* The same tensor on both sides: both contributions reach it. */
static void test_binary_same_input(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(3, 4), 1.0f, 7);
  binary_fn ops[] = {pg_add, pg_sub, pg_mul, pg_div};
  for (int o = 0; o < 4; o++) {
    binary_user u = {ops[o]};
    if (ops[o] == pg_div)
      for (int64_t i = 0; i < x->numel; i++) x->data[i] = 1.0f + fabsf(x->data[i]);
    assert_gradcheck(apply_binary, &u, 2, ((pg_tensor *[]){x, x}), &tight);
  }
  pg_tensor_free(x);
}

/* Above the parallel threshold, compare with plain loops. */
static void test_binary_large(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  const int64_t rows = 300, cols = 257;
  pg_tensor *a = pg_test_randn(PG_SHAPE(rows, cols), 1.0f, 1);
  pg_tensor *b = pg_test_randn(PG_SHAPE(cols), 1.0f, 2);
  pg_tensor *c = pg_test_randn(PG_SHAPE(rows, 1), 1.0f, 3);
  pg_tensor *y = pg_mul(ctx, pg_add(ctx, a, b), c); /* (a + b) * c */
  assert_non_null(y);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) {
      float want = (a->data[r * cols + j] + b->data[j]) * c->data[r];
      assert_true(fabsf(y->data[r * cols + j] - want) <= 1e-6f * fabsf(want));
    }
  /* backward with upstream 1: db[j] = sum_r c[r], dc[r] = sum_j (a + b) */
  pg_tensor *ones = pg_ones(ctx, PG_SHAPE(rows, cols));
  assert_int_equal(pg_backward_with(ctx, y, ones->data), PG_OK);
  double sum_c = 0;
  for (int64_t r = 0; r < rows; r++) sum_c += c->data[r];
  for (int64_t j = 0; j < cols; j++) assert_true(fabs(b->grad[j] - sum_c) < 1e-4);
  for (int64_t r = 0; r < rows; r++) {
    double s = 0;
    for (int64_t j = 0; j < cols; j++) s += a->data[r * cols + j] + b->data[j];
    assert_true(fabs(c->grad[r] - s) < 1e-3);
    for (int64_t j = 0; j < cols; j++) assert_true(a->grad[r * cols + j] == c->data[r]);
  }
  pg_tensor_free(a);
  pg_tensor_free(b);
  pg_tensor_free(c);
  pg_ctx_free(ctx);
}

static void test_unary_forward(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(4), (float[]){1, 4, 0.25f, 9});
  assert_close(pg_add_scalar(ctx, x, 1)->data, ((float[]){2, 5, 1.25f, 10}), 4, 0, 0);
  assert_close(pg_mul_scalar(ctx, x, -2)->data, ((float[]){-2, -8, -0.5f, -18}), 4, 0, 0);
  assert_close(pg_neg(ctx, x)->data, ((float[]){-1, -4, -0.25f, -9}), 4, 0, 0);
  assert_close(pg_sqrt(ctx, x)->data, ((float[]){1, 2, 0.5f, 3}), 4, 0, 1e-7);
  assert_close(pg_pow_scalar(ctx, x, 1.5f)->data, ((float[]){1, 8, 0.125f, 27}), 4, 0, 1e-6);
  assert_close(pg_log(ctx, x)->data, ((float[]){0, 1.3862944f, -1.3862944f, 2.1972246f}), 4, 1e-7, 1e-6);
  pg_tensor *z = pg_from_array(ctx, PG_SHAPE(3), (float[]){0, 1, -1});
  assert_close(pg_exp(ctx, z)->data, ((float[]){1, 2.7182817f, 0.36787944f}), 3, 0, 1e-6);
  assert_close(pg_tanh(ctx, z)->data, ((float[]){0, 0.76159416f, -0.76159416f}), 3, 0, 1e-6);
  pg_ctx_free(ctx);
}

typedef struct {
  int which;
  float s;
} unary_user;

static pg_tensor *apply_unary(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  const unary_user *u = user;
  switch (u->which) {
    case 0: return pg_add_scalar(ctx, in[0], u->s);
    case 1: return pg_mul_scalar(ctx, in[0], u->s);
    case 2: return pg_neg(ctx, in[0]);
    case 3: return pg_exp(ctx, in[0]);
    case 4: return pg_log(ctx, in[0]);
    case 5: return pg_sqrt(ctx, in[0]);
    case 6: return pg_tanh(ctx, in[0]);
    default: return pg_pow_scalar(ctx, in[0], u->s);
  }
}

static void test_unary_gradcheck(void **state) {
  (void)state;
  const unary_user cases[] = {{0, 3.0f}, {1, -2.5f}, {2, 0}, {3, 0}, {4, 0}, {5, 0},
                              {6, 0},    {7, 2.0f},  {7, 3.0f}, {7, 0.5f}, {7, -1.5f}, {7, 0.0f}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    pg_tensor *x = pg_test_randn(PG_SHAPE(3, 1, 4), 1.0f, 50 + c);
    const int w = cases[c].which;
    /* log, sqrt and fractional powers need positive inputs away from 0 */
    if (w == 4 || w == 5 || (w == 7 && cases[c].s != floorf(cases[c].s)))
      for (int64_t i = 0; i < x->numel; i++) x->data[i] = 0.5f + fabsf(x->data[i]);
    assert_gradcheck(apply_unary, (void *)&cases[c], 1, &x, &tight);
    pg_tensor_free(x);
  }
}

/* pow with exponent 0 has gradient 0 everywhere, as in PyTorch. */
static void test_pow_zero_exponent(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(3), true);
  x->data[1] = 2;
  x->data[2] = -3;
  pg_tensor *y = pg_pow_scalar(ctx, x, 0);
  assert_close(y->data, ((float[]){1, 1, 1}), 3, 0, 0);
  assert_int_equal(pg_backward(ctx, pg_sum(ctx, y, 0, NULL, false)), PG_OK);
  assert_close(x->grad, ((float[]){0, 0, 0}), 3, 0, 0);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

/* A wrong factor in a backward must fail the checker at the tolerances used
 * throughout these tests: a deliberately wrong op (gradient 5% too large). */
static void wrong_backward(pg_ctx *ctx, pg_node *n) {
  float *gx = pg_grad_accum(ctx, n->in[0]);
  for (int64_t i = 0; i < n->out->numel; i++) gx[i] += 1.05f * 2.0f * n->in[0]->data[i] * n->out->grad[i];
}

static pg_tensor *wrong_square(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  pg_tensor *y = pg_mul(ctx, in[0], in[0]);
  pg_set_grad_enabled(ctx, false); /* re-record y with the wrong backward */
  pg_tensor *out = pg_add_scalar(ctx, y, 0);
  pg_set_grad_enabled(ctx, true);
  pg_tape_record(ctx, "wrong_square", wrong_backward, out, 1, in);
  return out;
}

static void test_gradcheck_catches_wrong_factor(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(4, 3), 1.0f, 3);
  pg_gradcheck_result r;
  assert_int_equal(pg_gradcheck(wrong_square, NULL, 1, &x, &tight, &r), PG_OK);
  assert_false(r.ok);
  assert_true(r.max_excess > 1.0);
  pg_tensor_free(x);
}

/* A tensor used by several ops accumulates every contribution, also across
 * two backward calls in one step. */
static void test_accumulation(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(3), true);
  memcpy(x->data, (float[]){1, -2, 3}, 3 * sizeof(float));
  /* y = sum(x * x) + sum(3 x): x feeds three ops */
  pg_tensor *y = pg_add(ctx, pg_sum(ctx, pg_mul(ctx, x, x), 0, NULL, false),
                        pg_sum(ctx, pg_mul_scalar(ctx, x, 3), 0, NULL, false));
  assert_int_equal(pg_backward(ctx, y), PG_OK);
  assert_close(x->grad, ((float[]){5, -1, 9}), 3, 0, 1e-6);
  pg_tensor *z = pg_sum(ctx, pg_neg(ctx, x), 0, NULL, false);
  assert_int_equal(pg_backward(ctx, z), PG_OK);
  assert_close(x->grad, ((float[]){4, -2, 8}), 3, 0, 1e-6);
  /* a step tensor (not a leaf the user made) used twice as well */
  pg_ctx_reset(ctx);
  pg_tensor_zero_grad(x);
  pg_tensor *h = pg_tanh(ctx, x);
  pg_tensor *out = pg_sum(ctx, pg_add(ctx, pg_mul(ctx, h, h), h), 0, NULL, false);
  assert_int_equal(pg_backward(ctx, out), PG_OK);
  for (int i = 0; i < 3; i++) {
    float t = tanhf(x->data[i]);
    assert_true(fabsf(x->grad[i] - (2 * t + 1) * (1 - t * t)) < 1e-6f);
  }
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_no_grad(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3), 1.0f, 1);
  pg_set_grad_enabled(ctx, false);
  pg_tensor *y = pg_exp(ctx, pg_add(ctx, x, x));
  assert_non_null(y);
  assert_false(y->requires_grad);
  assert_int_equal(ctx->tape_len, 0);
  pg_set_grad_enabled(ctx, true);
  /* inputs that need no gradient record nothing either */
  pg_tensor *c = pg_ones(ctx, PG_SHAPE(2, 3));
  assert_false(pg_mul(ctx, c, c)->requires_grad);
  assert_int_equal(ctx->tape_len, 0);
  assert_true(pg_mul(ctx, c, x)->requires_grad);
  assert_int_equal(ctx->tape_len, 1);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_errors(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *a = pg_zeros(ctx, PG_SHAPE(2, 3));
  pg_tensor *b = pg_zeros(ctx, PG_SHAPE(4));
  assert_null(pg_add(ctx, a, b));
  assert_error_contains("pg_add: a [2, 3] and b [4] do not broadcast (axis -1: 3 vs 4)");
  pg_tensor *c = pg_zeros(ctx, PG_SHAPE(5, 2, 3));
  pg_tensor *d = pg_zeros(ctx, PG_SHAPE(3, 1, 3));
  assert_null(pg_div(ctx, c, d));
  assert_error_contains("pg_div: a [5, 2, 3] and b [3, 1, 3] do not broadcast (axis -3: 5 vs 3)");
  assert_null(pg_mul(ctx, b, c));
  assert_error_contains("pg_mul");
  assert_null(pg_sub(ctx, a, b));
  assert_error_contains("pg_sub");
  /* a NULL input gives NULL and leaves the first error's message alone */
  pg_fail(PG_ERR_ARG, "the first error");
  assert_null(pg_add(ctx, NULL, a));
  assert_null(pg_mul(ctx, a, NULL));
  assert_null(pg_exp(ctx, NULL));
  assert_null(pg_pow_scalar(ctx, NULL, 2));
  assert_null(pg_mul_scalar(ctx, pg_add(ctx, a, pg_add(ctx, NULL, b)), 2));
  assert_string_equal(pg_last_error(), "the first error");
  pg_ctx_free(ctx);
}

/* The README's sample (its body, between the markers, is copied there
 * verbatim), kept here so that it compiles and stays true. */
static int readme_sample(void) {
  /* --- README sample begins --- */
  pg_ctx *ctx = pg_ctx_new(0);                          /* owns each step's memory */
  pg_tensor *w = pg_tensor_new(PG_SHAPE(3, 1), true);   /* a parameter: heap, you free it */
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6});
  pg_tensor *y = pg_from_array(ctx, PG_SHAPE(2, 1), (float[]){1, 2});
  pg_tensor *loss = pg_mse(ctx, pg_matmul(ctx, x, w, false, false), y);
  if (!loss || pg_backward(ctx, loss)) return fprintf(stderr, "%s\n", pg_last_error()), 1;
  printf("loss %g, dloss/dw %g %g %g\n", loss->data[0], w->grad[0], w->grad[1], w->grad[2]);
  pg_ctx_reset(ctx);                                    /* the step's tensors are gone */
  pg_tensor_free(w);
  pg_ctx_free(ctx);
  return 0;
  /* --- README sample ends --- */
}

static void test_readme_sample(void **state) {
  (void)state;
  assert_int_equal(readme_sample(), 0);
  /* what it prints: w = 0, so loss = (1 + 4) / 2 and dloss/dw = x^T (0 - y) */
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *w = pg_tensor_new(PG_SHAPE(3, 1), true);
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6});
  pg_tensor *y = pg_from_array(ctx, PG_SHAPE(2, 1), (float[]){1, 2});
  pg_tensor *loss = pg_mse(ctx, pg_matmul(ctx, x, w, false, false), y);
  assert_int_equal(pg_backward(ctx, loss), PG_OK);
  assert_true(loss->data[0] == 2.5f);
  assert_close(w->grad, ((float[]){-9, -12, -15}), 3, 0, 1e-6);
  /* a bad shape in the chain: NULL at the end, the message names the op */
  pg_tensor *bad = pg_mse(ctx, pg_matmul(ctx, x, y, false, false), y);
  assert_null(bad);
  assert_error_contains("pg_matmul: inner sizes differ: a [2, 3] has k = 3, b [2, 1] has k = 2");
  pg_tensor_free(w);
  pg_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_forward),
      cmocka_unit_test(test_binary_gradcheck),
      cmocka_unit_test(test_binary_same_input),
      cmocka_unit_test(test_binary_large),
      cmocka_unit_test(test_unary_forward),
      cmocka_unit_test(test_unary_gradcheck),
      cmocka_unit_test(test_pow_zero_exponent),
      cmocka_unit_test(test_gradcheck_catches_wrong_factor),
      cmocka_unit_test(test_accumulation),
      cmocka_unit_test(test_no_grad),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_readme_sample),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
