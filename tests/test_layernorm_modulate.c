/* pg_layernorm_modulate_op (layers/layernorm.c): DiT's LN-then-modulate in
 * one op. It must give the numbers of the two-op composition
 * pg_modulate_op(pg_layernorm_op(x), shift, scale) forward and backward
 * (checked here on small and multi-threaded sizes and with a large offset
 * on x), pass finite differences, and refuse bad shapes with a message. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/layers/layernorm.h"
#include "patchgrad/layers/modulate.h"
#include "patchgrad/autograd/ops.h"

static pg_tensor *fused_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return pg_layernorm_modulate_op(ctx, in[0], in[1], in[2], 1e-6f);
}

static pg_tensor *composed_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return pg_modulate_op(ctx, pg_layernorm_op(ctx, in[0], NULL, NULL, 1e-6f), in[1], in[2]);
}

/* Output and the three gradients of f for the upstream gradient dout. */
static void run(pg_fn f, pg_tensor *const *in, const pg_tensor *dout, float *out, float **grads) {
  pg_ctx *ctx = pg_ctx_new(0);
  for (int i = 0; i < 3; i++) pg_tensor_zero_grad(in[i]);
  pg_tensor *y = f(ctx, in, NULL);
  assert_non_null(y);
  memcpy(out, y->data, (size_t)y->numel * sizeof *out);
  assert_int_equal(pg_backward_with(ctx, y, dout->data), PG_OK);
  for (int i = 0; i < 3; i++) memcpy(grads[i], in[i]->grad, (size_t)in[i]->numel * sizeof(float));
  pg_ctx_free(ctx);
}

static void check_matches_composition(int64_t B, int64_t T, int64_t d, float offset, uint64_t seed) {
  pg_tensor *x = pg_test_randn(PG_SHAPE(B, T, d), 1.0f, seed);
  pg_tensor *shift = pg_test_randn(PG_SHAPE(B, d), 0.5f, seed + 1);
  pg_tensor *scale = pg_test_randn(PG_SHAPE(B, d), 0.5f, seed + 2);
  pg_tensor *dout = pg_test_randn(PG_SHAPE(B, T, d), 1.0f, seed + 3);
  for (int64_t i = 0; i < x->numel; i++) x->data[i] += offset;
  pg_tensor *in[3] = {x, shift, scale};
  const int64_t n = x->numel;
  float *out[2], *g[2][3];
  for (int k = 0; k < 2; k++) {
    out[k] = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < 3; i++) g[k][i] = malloc((size_t)in[i]->numel * sizeof(float));
  }
  run(fused_fn, in, dout, out[0], g[0]);
  run(composed_fn, in, dout, out[1], g[1]);
  assert_close(out[0], out[1], n, 1e-6, 1e-6);
  for (int i = 0; i < 3; i++) assert_close(g[0][i], g[1][i], in[i]->numel, 1e-5, 1e-5);
  for (int k = 0; k < 2; k++) {
    free(out[k]);
    for (int i = 0; i < 3; i++) free(g[k][i]);
  }
  pg_tensor *all[4] = {x, shift, scale, dout};
  for (int i = 0; i < 4; i++) pg_tensor_free(all[i]);
}

static void test_matches_composition(void **state) {
  (void)state;
  check_matches_composition(2, 3, 7, 0.0f, 10);
  check_matches_composition(3, 5, 64, 0.0f, 20);
  /* above the threading threshold: one sample per thread */
  check_matches_composition(8, 64, 96, 0.0f, 30);
  /* large offsets: the mean must be taken in double, the variance in a
   * second pass (layernorm.c) */
  check_matches_composition(2, 4, 33, 1e4f, 40);
}

static void test_finite_differences(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3, 6), 1.0f, 50);
  pg_tensor *shift = pg_test_randn(PG_SHAPE(2, 6), 0.5f, 51);
  pg_tensor *scale = pg_test_randn(PG_SHAPE(2, 6), 0.5f, 52);
  pg_tensor *in[3] = {x, shift, scale};
  assert_gradcheck(fused_fn, NULL, 3, in, NULL);
  pg_tensor_free(x), pg_tensor_free(shift), pg_tensor_free(scale);
}

static void test_bad_input(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_zeros(ctx, PG_SHAPE(2, 3, 4));
  pg_tensor *v = pg_zeros(ctx, PG_SHAPE(2, 4));
  pg_tensor *wrong = pg_zeros(ctx, PG_SHAPE(2, 5));
  assert_null(pg_layernorm_modulate_op(ctx, x, v, wrong, 1e-6f));
  assert_error_contains("scale must be [B, d] = [2, 4]");
  assert_null(pg_layernorm_modulate_op(ctx, x, wrong, v, 1e-6f));
  assert_error_contains("shift must be [B, d]");
  assert_null(pg_layernorm_modulate_op(ctx, pg_zeros(ctx, PG_SHAPE(4)), v, v, 1e-6f));
  assert_error_contains("rank >= 2");
  assert_null(pg_layernorm_modulate_op(ctx, x, v, v, -1.0f));
  assert_error_contains("eps must be finite and >= 0, got -1");
  assert_null(pg_layernorm_modulate_op(ctx, NULL, v, v, 1e-6f));
  pg_ctx_free(ctx);
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_composition),
      cmocka_unit_test(test_finite_differences),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
