/* Shape ops: reshape (a view), permute/transpose, slice, concat,
 * split/chunk, broadcast_to. Forward against hand-computed values, backward
 * against finite differences, and every error message. */
#include "testutil.h"

#include <string.h>

#include "patchgrad/autograd/ops.h"

static const pg_gradcheck_opts tight = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2};

/* Most shape ops only move numbers; multiplying by a fixed random tensor
 * before them makes each element's gradient distinct, so a misrouted
 * gradient is caught. */
static pg_tensor *scaled(pg_ctx *ctx, pg_tensor *x) {
  pg_rng rng;
  pg_rng_seed(&rng, 77);
  return pg_mul(ctx, x, pg_normal(ctx, x->ndim, x->shape, 0.0f, 1.0f, &rng));
}

static void test_reshape(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_arange(ctx, 12, 0, 1);
  pg_tensor *y = pg_reshape(ctx, x, PG_SHAPE(3, -1));
  assert_int_equal(y->ndim, 2);
  assert_int_equal(y->shape[1], 4);
  assert_ptr_equal(y->data, x->data); /* a view: no copy */
  y = pg_reshape(ctx, x, PG_SHAPE(2, 1, -1, 3));
  assert_int_equal(y->shape[2], 2);
  y = pg_reshape(ctx, pg_reshape(ctx, x, PG_SHAPE(1, 12)), 1, (int64_t[]){12});
  assert_int_equal(y->ndim, 1);
  pg_tensor *s = pg_reshape(ctx, pg_ones(ctx, PG_SHAPE(1, 1)), 0, NULL);
  assert_int_equal(s->ndim, 0);
  /* errors */
  assert_null(pg_reshape(ctx, x, PG_SHAPE(5, -1)));
  assert_error_contains("pg_reshape: x [12] (12 elements) cannot become [5, -1]");
  assert_null(pg_reshape(ctx, x, PG_SHAPE(-1, -1)));
  assert_error_contains("pg_reshape: new shape [-1, -1] has more than one -1");
  assert_null(pg_reshape(ctx, x, PG_SHAPE(3, 5)));
  assert_error_contains("pg_reshape: x [12] (12 elements) cannot become [3, 5] (15 elements)");
  assert_null(pg_reshape(ctx, x, PG_SHAPE(-3, -4)));
  assert_error_contains("negative size at axis 0");
  assert_null(pg_reshape(ctx, x, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 12}));
  assert_error_contains("rank 9");
  pg_ctx_free(ctx);
}

static pg_tensor *reshape_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user; /* through a reshape, used twice, then reshaped again */
  pg_tensor *y = pg_reshape(ctx, scaled(ctx, in[0]), PG_SHAPE(4, -1));
  return pg_reshape(ctx, pg_mul(ctx, y, y), PG_SHAPE(2, 2, 3));
}

static void test_reshape_grad(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 6), 1.0f, 1);
  assert_gradcheck(reshape_fn, NULL, 1, &x, &tight);
  /* a heap tensor reshaped directly keeps its own gradient buffer */
  pg_ctx *ctx = pg_ctx_new(0);
  float *own = x->grad;
  pg_tensor *y = pg_reshape(ctx, x, PG_SHAPE(12));
  assert_int_equal(pg_backward(ctx, pg_sum(ctx, y, 0, NULL, false)), PG_OK);
  assert_ptr_equal(x->grad, own);
  pg_ctx_free(ctx);
  pg_tensor_free(x);
}

static void test_permute(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_arange(ctx, 24, 0, 1); /* [2, 3, 4] */
  x = pg_reshape(ctx, x, PG_SHAPE(2, 3, 4));
  pg_tensor *y = pg_permute(ctx, x, (int[]){2, 0, 1}); /* [4, 2, 3] */
  assert_int_equal(y->shape[0], 4);
  assert_int_equal(y->shape[1], 2);
  assert_int_equal(y->shape[2], 3);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 3; k++) assert_true(y->data[(i * 2 + j) * 3 + k] == (float)(j * 12 + k * 4 + i));
  pg_tensor *t = pg_transpose(ctx, pg_reshape(ctx, pg_arange(ctx, 6, 1, 1), PG_SHAPE(2, 3)), 0, -1);
  assert_close(t->data, ((float[]){1, 4, 2, 5, 3, 6}), 6, 0, 0);
  assert_null(pg_permute(ctx, x, (int[]){0, 0, 1}));
  assert_error_contains("pg_permute: perm [0, 0, 1] is not a permutation of 0..2 (x [2, 3, 4])");
  assert_null(pg_permute(ctx, x, (int[]){0, 1, 3}));
  assert_error_contains("not a permutation");
  assert_null(pg_transpose(ctx, x, 0, 3));
  assert_error_contains("pg_transpose: axes 0 and 3 are not both in range for x [2, 3, 4] (rank 3)");
  pg_ctx_free(ctx);
}

static pg_tensor *permute_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  pg_tensor *y = pg_permute(ctx, scaled(ctx, in[0]), (int[]){1, 3, 0, 2});
  return pg_transpose(ctx, y, 0, -2);
}

static void test_permute_grad(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3, 1, 4), 1.0f, 2);
  assert_gradcheck(permute_fn, NULL, 1, &x, &tight);
  pg_tensor_free(x);
}

static void test_slice_concat(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_reshape(ctx, pg_arange(ctx, 12, 0, 1), PG_SHAPE(3, 4));
  pg_tensor *s = pg_slice(ctx, x, -1, 1, 3);
  assert_int_equal(s->shape[0], 3);
  assert_int_equal(s->shape[1], 2);
  assert_close(s->data, ((float[]){1, 2, 5, 6, 9, 10}), 6, 0, 0);
  s = pg_slice(ctx, x, 0, 2, 3);
  assert_close(s->data, ((float[]){8, 9, 10, 11}), 4, 0, 0);
  assert_int_equal(pg_slice(ctx, x, 0, 1, 1)->numel, 0);
  pg_tensor *a = pg_from_array(ctx, PG_SHAPE(2, 1), (float[]){1, 2});
  pg_tensor *b = pg_from_array(ctx, PG_SHAPE(2, 2), (float[]){3, 4, 5, 6});
  pg_tensor *c = pg_concat(ctx, 2, (pg_tensor *[]){a, b}, 1);
  assert_int_equal(c->shape[1], 3);
  assert_close(c->data, ((float[]){1, 3, 4, 2, 5, 6}), 6, 0, 0);
  c = pg_concat(ctx, 3, (pg_tensor *[]){b, b, b}, 0);
  assert_int_equal(c->shape[0], 6);
  /* errors */
  assert_null(pg_slice(ctx, x, 2, 0, 1));
  assert_error_contains("pg_slice: axis 2 is out of range for x [3, 4] (rank 2)");
  assert_null(pg_slice(ctx, x, 1, 2, 5));
  assert_error_contains("pg_slice: range [2, 5) does not fit axis 1 of size 4 (x [3, 4])");
  assert_null(pg_slice(ctx, x, 1, 3, 2));
  assert_error_contains("range [3, 2)");
  assert_null(pg_concat(ctx, 2, (pg_tensor *[]){a, b}, 0));
  assert_error_contains("pg_concat: xs[1] [2, 2] does not match xs[0] [2, 1] outside axis 0");
  assert_null(pg_concat(ctx, 2, (pg_tensor *[]){a, x}, 1));
  assert_error_contains("pg_concat: xs[1] [3, 4]");
  assert_null(pg_concat(ctx, 0, NULL, 0));
  assert_error_contains("pg_concat: needs at least one tensor");
  assert_null(pg_concat(ctx, 1, (pg_tensor *[]){a}, -3));
  assert_error_contains("pg_concat: axis -3 is out of range");
  pg_fail(PG_ERR_ARG, "earlier");
  assert_null(pg_concat(ctx, 2, (pg_tensor *[]){a, NULL}, 0));
  assert_null(pg_slice(ctx, NULL, 0, 0, 1));
  assert_string_equal(pg_last_error(), "earlier");
  pg_ctx_free(ctx);
}

static pg_tensor *slice_concat_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user; /* pieces of x and y glued back in another order, x used twice */
  pg_tensor *x = scaled(ctx, in[0]), *y = in[1];
  pg_tensor *parts[] = {pg_slice(ctx, x, 1, 2, 4), y, pg_slice(ctx, x, 1, 0, 3)};
  return pg_concat(ctx, 3, parts, -2);
}

static void test_slice_concat_grad(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 4, 3), 1.0f, 3);
  pg_tensor *y = pg_test_randn(PG_SHAPE(2, 1, 3), 1.0f, 4);
  assert_gradcheck(slice_concat_fn, NULL, 2, ((pg_tensor *[]){x, y}), &tight);
  pg_tensor_free(x);
  pg_tensor_free(y);
}

static void test_split_chunk(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_reshape(ctx, pg_arange(ctx, 12, 0, 1), PG_SHAPE(2, 6));
  pg_tensor *parts[4]; /* out[] holds n entries: up to 4 below */
  assert_int_equal(pg_split(ctx, x, 1, 3, (int64_t[]){1, 3, 2}, parts), PG_OK);
  assert_int_equal(parts[1]->shape[1], 3);
  assert_close(parts[0]->data, ((float[]){0, 6}), 2, 0, 0);
  assert_close(parts[1]->data, ((float[]){1, 2, 3, 7, 8, 9}), 6, 0, 0);
  assert_close(parts[2]->data, ((float[]){4, 5, 10, 11}), 4, 0, 0);
  assert_int_equal(pg_chunk(ctx, x, -1, 3, parts), PG_OK);
  assert_close(parts[2]->data, ((float[]){4, 5, 10, 11}), 4, 0, 0);
  assert_int_equal(pg_chunk(ctx, x, 0, 2, parts), PG_OK);
  assert_close(parts[1]->data, ((float[]){6, 7, 8, 9, 10, 11}), 6, 0, 0);
  /* errors leave out[] cleared */
  assert_int_equal(pg_split(ctx, x, 1, 2, (int64_t[]){2, 3}, parts), PG_ERR_ARG);
  assert_error_contains("pg_split: sizes add up to 5, but axis 1 of x [2, 6] has 6");
  assert_null(parts[0]);
  assert_int_equal(pg_split(ctx, x, 1, 2, (int64_t[]){7, -1}, parts), PG_ERR_ARG);
  assert_error_contains("pg_split: sizes[1] = -1 is negative");
  assert_int_equal(pg_chunk(ctx, x, 1, 4, parts), PG_ERR_ARG);
  assert_error_contains("pg_chunk: axis 1 of size 6 does not divide into 4 equal parts (x [2, 6])");
  assert_int_equal(pg_chunk(ctx, x, 2, 2, parts), PG_ERR_ARG);
  assert_error_contains("pg_chunk: axis 2 is out of range for x [2, 6] (rank 2)");
  assert_int_equal(pg_chunk(ctx, x, 0, 0, parts), PG_ERR_ARG);
  assert_error_contains("n = 0 parts");
  pg_ctx_free(ctx);
}

static pg_tensor *chunk_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user; /* q * k + v from one packed tensor, as attention does */
  pg_tensor *p[3];
  if (pg_chunk(ctx, scaled(ctx, in[0]), -1, 3, p)) return NULL;
  return pg_add(ctx, pg_mul(ctx, p[0], p[1]), p[2]);
}

static void test_chunk_grad(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3, 6), 1.0f, 5);
  assert_gradcheck(chunk_fn, NULL, 1, &x, &tight);
  pg_tensor_free(x);
}

static void test_broadcast_to(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(2, 1), (float[]){1, 2});
  pg_tensor *y = pg_broadcast_to(ctx, x, PG_SHAPE(3, 2, 2));
  assert_int_equal(y->ndim, 3);
  assert_close(y->data, ((float[]){1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2}), 12, 0, 0);
  assert_null(pg_broadcast_to(ctx, x, PG_SHAPE(3, 3)));
  assert_error_contains("pg_broadcast_to: x [2, 1] cannot broadcast to [3, 3] (axis -2: 2 vs 3)");
  assert_null(pg_broadcast_to(ctx, x, PG_SHAPE(2)));
  assert_error_contains("pg_broadcast_to: target rank 1 must be in 2..8");
  pg_ctx_free(ctx);
}

static pg_tensor *broadcast_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return scaled(ctx, pg_broadcast_to(ctx, in[0], PG_SHAPE(2, 3, 4, 5)));
}

static void test_broadcast_to_grad(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(3, 1, 5), 1.0f, 6);
  assert_gradcheck(broadcast_fn, NULL, 1, &x, &tight);
  pg_tensor_free(x);
}

/* Large enough for the parallel paths: transpose and back is the identity,
 * and the gradient of sum(permute(x)) is all ones. */
static void test_large(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_test_randn(PG_SHAPE(8, 64, 80), 1.0f, 7);
  pg_tensor *y = pg_permute(ctx, x, (int[]){2, 0, 1});
  pg_tensor *z = pg_permute(ctx, y, (int[]){1, 2, 0});
  assert_close(z->data, x->data, x->numel, 0, 0);
  assert_true(y->data[(5 * 8 + 3) * 64 + 7] == x->data[(3 * 64 + 7) * 80 + 5]);
  assert_int_equal(pg_backward(ctx, pg_sum(ctx, z, 0, NULL, false)), PG_OK);
  for (int64_t i = 0; i < x->numel; i++) assert_true(x->grad[i] == 1.0f);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reshape),          cmocka_unit_test(test_reshape_grad),
      cmocka_unit_test(test_permute),          cmocka_unit_test(test_permute_grad),
      cmocka_unit_test(test_slice_concat),     cmocka_unit_test(test_slice_concat_grad),
      cmocka_unit_test(test_split_chunk),      cmocka_unit_test(test_chunk_grad),
      cmocka_unit_test(test_broadcast_to),     cmocka_unit_test(test_broadcast_to_grad),
      cmocka_unit_test(test_large),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
