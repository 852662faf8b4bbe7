/* Patchify: gradients by finite differences for every data_dim and stride
 * regime, a direct-loop reference on sizes large enough for the threaded
 * paths, output shapes over a sweep, the default init, and every error. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/params.h"
#include "patchgrad/layers/patchify.h"
#include "patchgrad/autograd/tape.h"

typedef struct {
  int d;
  int64_t patch, stride;
} patch_cfg;

static pg_tensor *patchify_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  const patch_cfg *c = user;
  return pg_patchify_op(ctx, in[0], in[1], in[2], c->d, c->patch, c->stride);
}

/* x [batch, *spatial, c_in] with d spatial axes of the given sizes. */
static void gradcheck_one(int d, const int64_t *spatial, int64_t c_in, int64_t c_out,
                          int64_t patch, int64_t stride, bool bias, uint64_t seed) {
  int64_t xs[5] = {2}, ws[5] = {c_out, c_in};
  for (int a = 0; a < d; a++) xs[1 + a] = spatial[a], ws[2 + a] = patch;
  xs[d + 1] = c_in;
  pg_tensor *in[3] = {pg_test_randn(d + 2, xs, 1.0f, seed), pg_test_randn(d + 2, ws, 0.5f, seed + 1),
                      bias ? pg_test_randn(1, &c_out, 0.5f, seed + 2) : NULL};
  patch_cfg cfg = {d, patch, stride};
  assert_gradcheck(patchify_fn, &cfg, bias ? 3 : 2, in, NULL);
  for (int i = 0; i < 3; i++) pg_tensor_free(in[i]);
}

static void test_gradcheck_1d(void **state) {
  (void)state;
  /* patch 3 with stride 2 (overlap), 3 (exact, 1 pixel dropped), 4 (gaps) */
  for (int64_t stride = 2; stride <= 4; stride++)
    for (int bias = 0; bias <= 1; bias++)
      gradcheck_one(1, (int64_t[]){13}, 3, 4, 3, stride, bias, 10 + (uint64_t)stride);
  gradcheck_one(1, (int64_t[]){5}, 1, 1, 5, 5, true, 7); /* one patch, one channel */
}

static void test_gradcheck_2d(void **state) {
  (void)state;
  for (int64_t stride = 1; stride <= 3; stride++)
    for (int bias = 0; bias <= 1; bias++)
      gradcheck_one(2, (int64_t[]){7, 6}, 2, 3, 2, stride, bias, 20 + (uint64_t)stride);
  gradcheck_one(2, (int64_t[]){9, 7}, 3, 5, 3, 2, true, 31); /* odd, overlapping */
}

static void test_gradcheck_3d(void **state) {
  (void)state;
  for (int64_t stride = 1; stride <= 3; stride++)
    for (int bias = 0; bias <= 1; bias++)
      gradcheck_one(3, (int64_t[]){5, 4, 5}, 2, 3, 2, stride, bias, 40 + (uint64_t)stride);
}

/* Direct convolution in double: the definition, loop by loop. */
static void reference_patchify(const pg_tensor *x, const pg_tensor *w, const pg_tensor *b,
                               int64_t patch, int64_t stride, double *out, int64_t gh, int64_t gw) {
  const int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
  const int64_t O = w->shape[0];
  (void)H;
  for (int64_t n = 0; n < B; n++)
    for (int64_t i = 0; i < gh; i++)
      for (int64_t j = 0; j < gw; j++)
        for (int64_t o = 0; o < O; o++) {
          double s = b ? b->data[o] : 0.0;
          for (int64_t c = 0; c < C; c++)
            for (int64_t ki = 0; ki < patch; ki++)
              for (int64_t kj = 0; kj < patch; kj++)
                s += (double)x->data[((n * x->shape[1] + i * stride + ki) * W + j * stride + kj) * C + c] *
                     w->data[((o * C + c) * patch + ki) * patch + kj];
          out[((n * gh + i) * gw + j) * O + o] = s;
        }
}

/* Sizes above the threading threshold: forward and input gradient against
 * the direct loops (the gradient of x is the same loops transposed: those of
 * Unpatchify's definition, run on the output gradient). */
static void test_large_against_reference(void **state) {
  (void)state;
  const int64_t patch_stride[][2] = {{3, 2}, {4, 4}, {2, 3}};
  for (int k = 0; k < 3; k++) {
    int64_t P = patch_stride[k][0], S = patch_stride[k][1];
    const int64_t B = 2, H = 49, W = 47, C = 16, O = 16; /* col2im threads */
    pg_tensor *x = pg_test_randn(4, (int64_t[]){B, H, W, C}, 1.0f, 100 + (uint64_t)k);
    pg_tensor *w = pg_test_randn(4, (int64_t[]){O, C, P, P}, 0.2f, 200 + (uint64_t)k);
    pg_tensor *b = pg_test_randn(1, &O, 0.2f, 300 + (uint64_t)k);
    int64_t gh = (H - P) / S + 1, gw = (W - P) / S + 1, n_out = B * gh * gw * O;
    pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
    pg_tensor *y = pg_patchify_op(ctx, x, w, b, 2, P, S);
    assert_non_null(y);
    double *want = malloc((size_t)n_out * sizeof *want);
    float *want_f = malloc((size_t)n_out * sizeof *want_f);
    reference_patchify(x, w, b, P, S, want, gh, gw);
    for (int64_t i = 0; i < n_out; i++) want_f[i] = (float)want[i];
    assert_close(y->data, want_f, n_out, 1e-4, 1e-4);

    pg_tensor *g = pg_test_randn(4, y->shape, 1.0f, 400 + (uint64_t)k);
    assert_int_equal(pg_backward_with(ctx, y, g->data), PG_OK);
    double *gx = calloc((size_t)x->numel, sizeof *gx);
    pg_test_unpatchify_reference(g, w, S, H, W, gx);
    float *gx_f = malloc((size_t)x->numel * sizeof *gx_f);
    for (int64_t i = 0; i < x->numel; i++) gx_f[i] = (float)gx[i];
    assert_close(x->grad, gx_f, x->numel, 1e-4, 1e-4);
    /* bias gradient: the sum of the upstream gradient over every token */
    for (int64_t o = 0; o < O; o++) {
      double s = 0;
      for (int64_t r = 0; r < n_out / O; r++) s += g->data[r * O + o];
      assert_true(fabs(b->grad[o] - s) <= 1e-3 + 1e-4 * fabs(s));
    }
    free(want), free(want_f), free(gx), free(gx_f);
    pg_tensor_free(g), pg_tensor_free(x), pg_tensor_free(w), pg_tensor_free(b);
    pg_ctx_free(ctx);
  }
}

static void test_output_shapes(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  int checked = 0;
  for (int d = 1; d <= 3; d++)
    for (int64_t P = 1; P <= 4; P++)
      for (int64_t S = 1; S <= 5; S++)
        for (int64_t s = P; s <= P + (d == 3 ? 4 : 9); s++) {
          int64_t xs[5] = {1}, ws[5] = {2, 1};
          for (int a = 0; a < d; a++) xs[1 + a] = s + a, ws[2 + a] = P; /* unequal axes */
          xs[d + 1] = 1;
          pg_tensor *x = pg_zeros(ctx, d + 2, xs), *w = pg_zeros(ctx, d + 2, ws);
          pg_tensor *y = pg_patchify_op(ctx, x, w, NULL, d, P, S);
          assert_non_null(y);
          assert_int_equal(y->ndim, d + 2);
          assert_int_equal(y->shape[0], 1);
          for (int a = 0; a < d; a++) assert_int_equal(y->shape[1 + a], (xs[1 + a] - P) / S + 1);
          assert_int_equal(y->shape[d + 1], 2);
          checked++;
          pg_ctx_reset(ctx);
        }
  assert_true(checked > 400);
  pg_ctx_free(ctx);
}

/* Unfold: the identity weight copies each patch into its token, in
 * PyTorch's (c, p_1, ..., p_d) order. */
static void test_identity_weight_unfolds(void **state) {
  (void)state;
  const int64_t C = 2, P = 2, K = C * P * P;
  pg_tensor *x = pg_test_randn(4, (int64_t[]){1, 4, 6, C}, 1.0f, 5);
  pg_tensor *w = pg_tensor_new(4, (int64_t[]){K, C, P, P}, false);
  for (int64_t o = 0; o < K; o++) w->data[o * K + o] = 1.0f;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *y = pg_patchify_op(ctx, x, w, NULL, 2, P, P);
  for (int64_t i = 0; i < 2; i++)
    for (int64_t j = 0; j < 3; j++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t ki = 0; ki < P; ki++)
          for (int64_t kj = 0; kj < P; kj++)
            assert_true(y->data[(i * 3 + j) * K + (c * P + ki) * P + kj] ==
                        x->data[((i * P + ki) * 6 + j * P + kj) * C + c]);
  pg_ctx_free(ctx);
  pg_tensor_free(x), pg_tensor_free(w);
}

static void test_default_init(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  pg_patchify l;
  /* DiT's patch embedding: C 4 -> h 384, patch 2 */
  assert_int_equal(pg_patchify_init(&l, &ps, "x_embedder.conv", 4, 384, 2, 2, 2, true, &rng), PG_OK);
  pg_param *w = pg_params_find(&ps, "x_embedder.conv.weight");
  pg_param *b = pg_params_find(&ps, "x_embedder.conv.bias");
  assert_non_null(w);
  assert_non_null(b);
  assert_ptr_equal(w->tensor, l.weight);
  assert_ptr_equal(b->tensor, l.bias);
  assert_int_equal(w->kind, PG_PARAM_WEIGHT);
  assert_int_equal(b->kind, PG_PARAM_BIAS);
  int64_t want[4] = {384, 4, 2, 2};
  assert_int_equal(l.weight->ndim, 4);
  for (int i = 0; i < 4; i++) assert_int_equal(l.weight->shape[i], want[i]);
  assert_true(l.weight->requires_grad && l.bias->requires_grad);
  assert_uniform(l.weight, 1.0 / sqrt(4.0 * 4));
  /* the bias has the same bound (384 draws: only the range is checked) */
  for (int i = 0; i < 384; i++) assert_true(fabs(l.bias->data[i]) <= 0.25);
  /* 1-D and 3-D fans: C_in * P^d */
  pg_patchify l1, l3;
  assert_int_equal(pg_patchify_init(&l1, &ps, "p1", 3, 500, 1, 5, 5, false, &rng), PG_OK);
  assert_null(l1.bias);
  assert_null(pg_params_find(&ps, "p1.bias"));
  assert_uniform(l1.weight, 1.0 / sqrt(3.0 * 5));
  assert_int_equal(pg_patchify_init(&l3, &ps, "p3", 2, 300, 3, 3, 2, true, &rng), PG_OK);
  assert_int_equal(l3.weight->ndim, 5);
  assert_uniform(l3.weight, 1.0 / sqrt(2.0 * 27));
  assert_int_equal(l3.stride, 2);
  pg_params_free(&ps);
}

static void test_layer_forward(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 2);
  pg_patchify l;
  assert_int_equal(pg_patchify_init(&l, &ps, "pe", 3, 8, 2, 2, 2, true, &rng), PG_OK);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *x = pg_normal(ctx, PG_SHAPE(2, 8, 6, 3), 0.0f, 1.0f, &rng);
  pg_tensor *y = pg_patchify_forward(ctx, &l, x);
  pg_tensor *y2 = pg_patchify_op(ctx, x, l.weight, l.bias, 2, 2, 2);
  assert_non_null(y);
  assert_int_equal(y->shape[1], 4);
  assert_int_equal(y->shape[2], 3);
  assert_close(y->data, y2->data, y->numel, 0, 0);
  /* backward reaches the registered parameters */
  float *g = pg_ctx_alloc(ctx, (size_t)y->numel * sizeof(float));
  for (int64_t i = 0; i < y->numel; i++) g[i] = 1.0f;
  assert_int_equal(pg_backward_with(ctx, y, g), PG_OK);
  assert_true(fabsf(l.bias->grad[0] - 2.0f * 4 * 3) < 1e-5f);
  assert_null(pg_patchify_forward(ctx, NULL, x));
  assert_error_contains("not initialised");
  pg_ctx_free(ctx);
  pg_params_free(&ps);
}

static void test_errors(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *x = pg_zeros(ctx, PG_SHAPE(2, 8, 8, 3));
  pg_tensor *w = pg_zeros(ctx, PG_SHAPE(5, 3, 2, 2));
  pg_tensor *b = pg_zeros(ctx, PG_SHAPE(5));
  assert_non_null(pg_patchify_op(ctx, x, w, b, 2, 2, 2));

  assert_null(pg_patchify_op(ctx, x, w, b, 0, 2, 2));
  assert_error_contains("data_dim must be 1, 2 or 3, got 0");
  assert_null(pg_patchify_op(ctx, x, w, b, 4, 2, 2));
  assert_error_contains("data_dim must be 1, 2 or 3, got 4");
  assert_null(pg_patchify_op(ctx, x, w, b, 2, 0, 2));
  assert_error_contains("patch_size must be >= 1, got 0");
  assert_null(pg_patchify_op(ctx, x, w, b, 2, 2, -1));
  assert_error_contains("stride must be >= 1, got -1");
  /* the weight must match patch_size and data_dim */
  assert_null(pg_patchify_op(ctx, x, w, b, 2, 3, 3));
  assert_error_contains("weight must be [C_out, C_in, P, P]");
  assert_error_contains("[5, 3, 2, 2]");
  assert_null(pg_patchify_op(ctx, x, w, pg_zeros(ctx, PG_SHAPE(4)), 2, 2, 2));
  assert_error_contains("bias must be [C_out] = [5], got [4]");
  /* input rank, channels, spatial size */
  assert_null(pg_patchify_op(ctx, pg_zeros(ctx, PG_SHAPE(8, 8, 3)), w, b, 2, 2, 2));
  assert_error_contains("x must have rank data_dim + 2 = 4");
  assert_error_contains("got [8, 8, 3]");
  assert_null(pg_patchify_op(ctx, pg_zeros(ctx, PG_SHAPE(2, 8, 8, 4)), w, b, 2, 2, 2));
  assert_error_contains("x has 4 channels");
  assert_error_contains("in_features is 3");
  assert_null(pg_patchify_op(ctx, pg_zeros(ctx, PG_SHAPE(2, 8, 1, 3)), w, b, 2, 2, 2));
  assert_error_contains("spatial axis 2 has size 1");
  assert_error_contains("shorter than patch_size 2");
  /* a NULL input (an earlier failure) passes through without a new message */
  pg_fail(PG_ERR_ARG, "earlier failure");
  assert_null(pg_patchify_op(ctx, NULL, w, b, 2, 2, 2));
  assert_error_contains("earlier failure");

  /* the layer's settings */
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 3);
  pg_patchify l;
  assert_int_equal(pg_patchify_init(&l, &ps, "p", 3, 5, 0, 2, 2, true, &rng), PG_ERR_ARG);
  assert_error_contains("data_dim must be 1, 2 or 3, got 0");
  assert_int_equal(pg_patchify_init(&l, &ps, "p", 3, 5, 2, 0, 2, true, &rng), PG_ERR_ARG);
  assert_error_contains("patch_size must be >= 1, got 0");
  assert_int_equal(pg_patchify_init(&l, &ps, "p", 3, 5, 2, 2, 0, true, &rng), PG_ERR_ARG);
  assert_error_contains("stride must be >= 1, got 0");
  assert_int_equal(pg_patchify_init(&l, &ps, "p", 0, 5, 2, 2, 2, true, &rng), PG_ERR_ARG);
  assert_error_contains("in_features must be >= 1, got 0");
  assert_int_equal(pg_patchify_init(&l, &ps, "p", 3, -2, 2, 2, 2, true, &rng), PG_ERR_ARG);
  assert_error_contains("out_features must be >= 1, got -2");
  assert_int_equal(ps.count, 0); /* nothing registered by a failed init */
  assert_int_equal(pg_patchify_init(&l, &ps, "p", 3, 5, 2, 2, 2, true, &rng), PG_OK);
  assert_int_equal(pg_patchify_init(&l, &ps, "p", 3, 5, 2, 2, 2, true, &rng), PG_ERR_ARG);
  assert_error_contains("'p.weight' exists already");
  /* a layer's forward names in_features when x does not match it */
  pg_patchify_init(&l, &ps, "q", 3, 5, 2, 2, 2, true, &rng);
  assert_null(pg_patchify_forward(ctx, &l, pg_zeros(ctx, PG_SHAPE(1, 4, 4, 2))));
  assert_error_contains("x has 2 channels");
  pg_params_free(&ps);
  pg_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradcheck_1d),
      cmocka_unit_test(test_gradcheck_2d),
      cmocka_unit_test(test_gradcheck_3d),
      cmocka_unit_test(test_large_against_reference),
      cmocka_unit_test(test_output_shapes),
      cmocka_unit_test(test_identity_weight_unfolds),
      cmocka_unit_test(test_default_init),
      cmocka_unit_test(test_layer_forward),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
