/* Network ops: relu, silu, gelu (both forms), softmax, dropout, mse and
 * embedding. Forward against values computed with PyTorch in float64 (by
 * hand, quoted here), backward against finite differences, errors. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "patchgrad/autograd/ops.h"

static const pg_gradcheck_opts tight = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2};

static void test_activation_values(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(4), (float[]){1, -1, 2, -3});
  assert_close(pg_relu(ctx, x)->data, ((float[]){1, 0, 2, 0}), 4, 0, 0);
  assert_close(pg_gelu(ctx, x, PG_GELU_ERF)->data,
               ((float[]){0.841344746f, -0.158655254f, 1.954499736f, -0.004049694f}), 4, 1e-7, 1e-6);
  assert_close(pg_gelu(ctx, x, PG_GELU_TANH)->data,
               ((float[]){0.841191991f, -0.158808009f, 1.954597694f, -0.003637392f}), 4, 1e-7, 1e-6);
  pg_tensor *s = pg_from_array(ctx, PG_SHAPE(4), (float[]){1, -2, 0, 5});
  assert_close(pg_silu(ctx, s)->data, ((float[]){0.731058579f, -0.238405844f, 0, 4.966535745f}), 4,
               1e-7, 1e-6);
  /* far tails stay finite */
  pg_tensor *big = pg_from_array(ctx, PG_SHAPE(2), (float[]){-100, 100});
  for (int k = 0; k < 2; k++) {
    pg_tensor *g = pg_gelu(ctx, big, k ? PG_GELU_TANH : PG_GELU_ERF);
    assert_true(g->data[0] == 0.0f && g->data[1] == 100.0f);
  }
  pg_tensor *sl = pg_silu(ctx, big);
  assert_true(fabsf(sl->data[0]) < 1e-30f && sl->data[1] == 100.0f);
  /* a bad kind is an error */
  assert_null(pg_gelu(ctx, x, (pg_gelu_kind)7));
  assert_error_contains("pg_gelu: kind 7");
  pg_ctx_free(ctx);
}

typedef struct {
  int which;
} act_user;

static pg_tensor *apply_act(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  switch (((act_user *)user)->which) {
    case 0: return pg_relu(ctx, in[0]);
    case 1: return pg_silu(ctx, in[0]);
    case 2: return pg_gelu(ctx, in[0], PG_GELU_ERF);
    case 3: return pg_gelu(ctx, in[0], PG_GELU_TANH);
    default: return pg_softmax(ctx, in[0]);
  }
}

static void test_activation_gradcheck(void **state) {
  (void)state;
  for (int w = 0; w < 5; w++) {
    pg_tensor *x = pg_test_randn(PG_SHAPE(3, 1, 7), 1.5f, 20 + w);
    if (w == 0) /* keep relu's inputs off its kink, where differences straddle it */
      for (int64_t i = 0; i < x->numel; i++) x->data[i] += x->data[i] > 0 ? 0.01f : -0.01f;
    act_user u = {w};
    assert_gradcheck(apply_act, &u, 1, &x, &tight);
    pg_tensor_free(x);
  }
}

static void test_softmax(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(3, 3), (float[]){1, 2, 3, 100, -100, 0, -100, -100, -100});
  pg_tensor *y = pg_softmax(ctx, x);
  assert_close(y->data, ((float[]){0.090030573f, 0.244728471f, 0.665240956f, 1, 0, 3.720076e-44f,
                                   1.0f / 3, 1.0f / 3, 1.0f / 3}),
               9, 1e-7, 1e-6);
  for (int i = 0; i < 9; i++) assert_true(isfinite(y->data[i]));
  /* rank 0 and a single column are all ones */
  assert_true(pg_softmax(ctx, pg_full(ctx, 0, NULL, 50))->data[0] == 1.0f);
  pg_tensor *col = pg_softmax(ctx, pg_arange(ctx, 3, -100, 100));
  assert_true(col->data[2] == 1.0f);
  /* gradients at +-100 stay finite and match finite differences */
  pg_tensor *h = pg_test_randn(PG_SHAPE(4, 6), 60.0f, 3);
  h->data[0] = 100;
  h->data[1] = -100;
  pg_tensor *hy = pg_softmax(ctx, h);
  pg_tensor *up = pg_normal(ctx, PG_SHAPE(4, 6), 0, 1, &(pg_rng){{1, 2, 3, 4}});
  assert_int_equal(pg_backward_with(ctx, hy, up->data), PG_OK);
  for (int i = 0; i < 24; i++) assert_true(isfinite(h->grad[i]));
  act_user u = {4};
  pg_tensor *soft = pg_test_randn(PG_SHAPE(4, 6), 2.0f, 4);
  assert_gradcheck(apply_act, &u, 1, &soft, &tight);
  /* large enough for the parallel rows: rows sum to 1 */
  pg_tensor *big = pg_test_randn(PG_SHAPE(300, 200), 30.0f, 5);
  pg_tensor *by = pg_softmax(ctx, big);
  for (int r = 0; r < 300; r++) {
    double s = 0;
    for (int j = 0; j < 200; j++) s += by->data[r * 200 + j];
    assert_true(fabs(s - 1.0) < 1e-5);
  }
  pg_tensor_free(h);
  pg_tensor_free(soft);
  pg_tensor_free(big);
  pg_ctx_free(ctx);
}

static void test_dropout(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_rng rng;
  pg_rng_seed(&rng, 9);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(100000), true);
  pg_fill(x, 2.0f);
  /* eval mode and p = 0 are the identity: the same tensor back */
  pg_set_training(ctx, false);
  assert_ptr_equal(pg_dropout(ctx, x, 0.5f, &rng), x);
  assert_ptr_equal(pg_dropout(ctx, x, 0.5f, NULL), x);
  pg_set_training(ctx, true);
  assert_ptr_equal(pg_dropout(ctx, x, 0.0f, &rng), x);
  /* training: about p of the elements are zero, the rest scaled by 1/(1-p) */
  pg_tensor *y = pg_dropout(ctx, x, 0.3f, &rng);
  int64_t zeros = 0;
  for (int64_t i = 0; i < y->numel; i++) {
    if (y->data[i] == 0.0f) zeros++;
    else assert_true(fabsf(y->data[i] - 2.0f / 0.7f) < 1e-6f);
  }
  assert_true(fabs(zeros / 100000.0 - 0.3) < 0.01);
  /* backward: the same mask, the same scale */
  pg_tensor *up = pg_ones(ctx, PG_SHAPE(100000));
  assert_int_equal(pg_backward_with(ctx, y, up->data), PG_OK);
  for (int64_t i = 0; i < y->numel; i++)
    assert_true(x->grad[i] == (y->data[i] != 0.0f ? 1.0f / 0.7f : 0.0f));
  /* the same seed gives the same mask */
  pg_rng a, b;
  pg_rng_seed(&a, 5);
  pg_rng_seed(&b, 5);
  pg_tensor *ya = pg_dropout(ctx, x, 0.5f, &a), *yb = pg_dropout(ctx, x, 0.5f, &b);
  assert_memory_equal(ya->data, yb->data, 100000 * sizeof(float));
  pg_tensor *yc = pg_dropout(ctx, x, 0.5f, &a);
  assert_memory_not_equal(ya->data, yc->data, 100000 * sizeof(float));
  /* errors */
  assert_null(pg_dropout(ctx, x, 1.0f, &rng));
  assert_error_contains("pg_dropout: p = 1 is outside [0, 1) (x [100000])");
  assert_null(pg_dropout(ctx, x, -0.1f, &rng));
  assert_error_contains("p = -0.1");
  assert_null(pg_dropout(ctx, x, NAN, &rng));
  assert_error_contains("outside [0, 1)");
  assert_null(pg_dropout(ctx, x, 0.1f, NULL));
  assert_error_contains("pg_dropout: rng is NULL");
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static pg_tensor *dropout_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  pg_rng rng; /* reseeded on each call: the same mask every time */
  pg_rng_seed(&rng, 42);
  return pg_dropout(ctx, pg_mul(ctx, in[0], in[0]), 0.4f, &rng);
}

static void test_dropout_gradcheck(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(5, 4), 1.0f, 8);
  assert_gradcheck(dropout_fn, NULL, 1, &x, &tight);
  pg_tensor_free(x);
}

static pg_tensor *mse_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return pg_mse(ctx, in[0], in[1]);
}

static void test_mse(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(3), true), *t = pg_tensor_new(PG_SHAPE(3), true);
  memcpy(x->data, (float[]){1, 2, 3}, 3 * sizeof(float));
  memcpy(t->data, (float[]){0, 2, 5}, 3 * sizeof(float));
  pg_tensor *l = pg_mse(ctx, x, t);
  assert_int_equal(l->ndim, 0);
  assert_true(fabsf(l->data[0] - 5.0f / 3) < 1e-7f);
  assert_int_equal(pg_backward(ctx, l), PG_OK);
  assert_close(x->grad, ((float[]){2.0f / 3, 0, -4.0f / 3}), 3, 1e-7, 1e-6);
  assert_close(t->grad, ((float[]){-2.0f / 3, 0, 4.0f / 3}), 3, 1e-7, 1e-6);
  pg_tensor *a = pg_test_randn(PG_SHAPE(2, 1, 5), 1.0f, 1), *b = pg_test_randn(PG_SHAPE(2, 1, 5), 1.0f, 2);
  assert_gradcheck(mse_fn, NULL, 2, ((pg_tensor *[]){a, b}), &tight);
  pg_tensor *c = pg_test_randn(PG_SHAPE(2, 5), 1.0f, 2);
  assert_null(pg_mse(ctx, a, c));
  assert_error_contains("pg_mse: x [2, 1, 5] and target [2, 5] must have the same shape");
  pg_fail(PG_ERR_ARG, "earlier");
  assert_null(pg_mse(ctx, NULL, c));
  assert_string_equal(pg_last_error(), "earlier");
  pg_tensor_free(x);
  pg_tensor_free(t);
  pg_tensor_free(a);
  pg_tensor_free(b);
  pg_tensor_free(c);
  pg_ctx_free(ctx);
}

static void test_embedding(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *table = pg_tensor_new(PG_SHAPE(4, 3), true);
  for (int i = 0; i < 12; i++) table->data[i] = (float)i;
  int64_t idx[] = {3, 0, 3, 1};
  pg_tensor *y = pg_embedding(ctx, table, PG_SHAPE(2, 2), idx);
  assert_int_equal(y->ndim, 3);
  assert_int_equal(y->shape[2], 3);
  assert_close(y->data, ((float[]){9, 10, 11, 0, 1, 2, 9, 10, 11, 3, 4, 5}), 12, 0, 0);
  idx[0] = 2; /* the op keeps its own copy of the indices */
  pg_tensor *up = pg_arange(ctx, 12, 1, 1);
  assert_int_equal(pg_backward_with(ctx, y, up->data), PG_OK);
  /* row 3 was picked twice: both gradients add up there */
  assert_close(table->grad, ((float[]){4, 5, 6, 10, 11, 12, 0, 0, 0, 8, 10, 12}), 12, 0, 0);
  /* a rank-0 index gives one row */
  pg_tensor *one = pg_embedding(ctx, table, 0, NULL, (int64_t[]){2});
  assert_int_equal(one->ndim, 1);
  assert_close(one->data, ((float[]){6, 7, 8}), 3, 0, 0);
  /* errors name the index and where it is */
  assert_null(pg_embedding(ctx, table, PG_SHAPE(3), ((int64_t[]){0, 1, 4})));
  assert_error_contains("pg_embedding: index 4 at position 2 is outside [0, 4) (table [4, 3])");
  assert_null(pg_embedding(ctx, table, PG_SHAPE(2), ((int64_t[]){-1, 0})));
  assert_error_contains("index -1 at position 0");
  pg_tensor *flat = pg_zeros(ctx, PG_SHAPE(4));
  assert_null(pg_embedding(ctx, flat, PG_SHAPE(1), ((int64_t[]){0})));
  assert_error_contains("pg_embedding: table [4] must have rank 2");
  assert_null(pg_embedding(ctx, table, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1}, (int64_t[]){0}));
  assert_error_contains("pg_embedding: idx rank 8 must be in 0..7");
  assert_null(pg_embedding(ctx, table, PG_SHAPE(2), NULL));
  assert_error_contains("pg_embedding: idx is NULL");
  pg_tensor_free(table);
  pg_ctx_free(ctx);
}

static pg_tensor *embedding_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  const int64_t *idx = user;
  return pg_mul(ctx, pg_embedding(ctx, in[0], PG_SHAPE(2, 3), idx), in[1]);
}

static void test_embedding_gradcheck(void **state) {
  (void)state;
  int64_t idx[] = {4, 0, 4, 2, 2, 4};
  pg_tensor *table = pg_test_randn(PG_SHAPE(5, 3), 1.0f, 1);
  pg_tensor *w = pg_test_randn(PG_SHAPE(3), 1.0f, 2);
  assert_gradcheck(embedding_fn, idx, 2, ((pg_tensor *[]){table, w}), &tight);
  pg_tensor_free(table);
  pg_tensor_free(w);
}

static void test_no_grad_and_null(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3), 1.0f, 1);
  pg_set_grad_enabled(ctx, false);
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  assert_false(pg_softmax(ctx, x)->requires_grad);
  assert_false(pg_gelu(ctx, x, PG_GELU_TANH)->requires_grad);
  assert_false(pg_dropout(ctx, x, 0.5f, &rng)->requires_grad);
  assert_false(pg_embedding(ctx, x, PG_SHAPE(1), ((int64_t[]){1}))->requires_grad);
  assert_int_equal(ctx->tape_len, 0);
  pg_fail(PG_ERR_ARG, "earlier");
  assert_null(pg_relu(ctx, NULL));
  assert_null(pg_silu(ctx, NULL));
  assert_null(pg_gelu(ctx, NULL, PG_GELU_ERF));
  assert_null(pg_softmax(ctx, NULL));
  assert_null(pg_dropout(ctx, NULL, 0.5f, &rng));
  assert_null(pg_embedding(ctx, NULL, PG_SHAPE(1), ((int64_t[]){0})));
  assert_string_equal(pg_last_error(), "earlier");
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_activation_values), cmocka_unit_test(test_activation_gradcheck),
      cmocka_unit_test(test_softmax),           cmocka_unit_test(test_dropout),
      cmocka_unit_test(test_dropout_gradcheck), cmocka_unit_test(test_mse),
      cmocka_unit_test(test_embedding),         cmocka_unit_test(test_embedding_gradcheck),
      cmocka_unit_test(test_no_grad_and_null),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
