/* bf16 autocast (autograd/autocast.h): the reference rounding, the oneDNN
 * product against float64 within the bound derived in autocast.h, the
 * fast rounding against the reference, autocast routing in pg_gemm, and a
 * Linear's forward and backward under autocast. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "patchgrad/autograd/autocast.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/autograd/rng.h"
#include "patchgrad/layers/linear.h"

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* bf16's unit roundoff: 8 significant bits. */
static const double U_BF16 = 1.0 / 256.0;
static const double U_F32 = 1.0 / 16777216.0;

static void test_rounding_reference(void **state) {
  (void)state;
  assert_int_equal(pg_float_to_bf16(1.0f), 0x3f80);
  assert_int_equal(pg_float_to_bf16(-2.0f), 0xc000);
  /* exactly half-way: ties go to the even neighbour */
  assert_int_equal(pg_float_to_bf16(from_bits(0x3f808000u)), 0x3f80);
  assert_int_equal(pg_float_to_bf16(from_bits(0x3f818000u)), 0x3f82);
  /* just above half-way rounds up */
  assert_int_equal(pg_float_to_bf16(from_bits(0x3f808001u)), 0x3f81);
  /* the largest float rounds to infinity, as torch's bfloat16 does */
  assert_int_equal(pg_float_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);
  assert_int_equal(pg_float_to_bf16(INFINITY), 0x7f80);
  assert_int_equal(pg_float_to_bf16(-INFINITY), 0xff80);
  /* a NaN whose payload sits in the low bits stays a NaN (not infinity) */
  const uint16_t nan = pg_float_to_bf16(from_bits(0x7f800001u));
  assert_true(isnan(pg_bf16_to_float(nan)));
  assert_true(isnan(pg_bf16_to_float(pg_float_to_bf16(from_bits(0xffc00000u)))));
  /* every bf16 value converts back exactly */
  for (uint32_t h = 0; h < 0x10000u; h++) {
    const float f = pg_bf16_to_float((uint16_t)h);
    if (!isnan(f)) assert_int_equal(pg_float_to_bf16(f), h);
  }
  /* the rounding error is at most half a unit in the last of 8 bits */
  pg_rng rng;
  pg_rng_seed(&rng, 7);
  for (int i = 0; i < 100000; i++) {
    const float x = (float)(pg_rng_normal(&rng) * 1000.0);
    const double r = pg_bf16_to_float(pg_float_to_bf16(x));
    assert_true(fabs(r - x) <= 0.5 * U_BF16 * fabs((double)x) * 2.0 + 1e-30);
  }
  pg_precision p;
  assert_int_equal(pg_precision_parse("bf16", &p), PG_OK);
  assert_int_equal(p, PG_PRECISION_BF16);
  assert_int_not_equal(pg_precision_parse("fp16", &p), PG_OK);
  assert_error_contains("precision 'fp16' is not one of fp32, bf16");
  assert_string_equal(pg_precision_name(PG_PRECISION_FP32), "fp32");
}

static bool have_bf16(void) {
  if (pg_bf16_available() == PG_OK) return true;
  printf("bf16 unavailable here: %s\n", pg_last_error());
  return false;
}

static void fill(float *x, int64_t n, pg_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)pg_rng_normal(rng);
}

/* op(X)[i, j] of a row-major X with row stride ld */
static double at(const float *x, bool trans, int64_t ld, int64_t i, int64_t j) {
  return trans ? x[j * ld + i] : x[i * ld + j];
}

/* Checks C = alpha op(A) op(B) + beta C0 entry by entry against float64:
 * |C - exact| <= (2u + u^2 + k 2^-24) alpha sum_k |a||b| + 2^-24 |beta C0|
 * (autocast.h), and, with inputs rounded to bf16 first, within the float32
 * accumulation term alone. */
static void check_product(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  pg_rng rng;
  pg_rng_seed(&rng, (uint64_t)(m * 131 + n * 17 + k + ta * 2 + tb));
  const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
  const int64_t rows_a = ta ? k : m, rows_b = tb ? n : k;
  float *a = malloc(sizeof(float) * (size_t)(rows_a * lda));
  float *b = malloc(sizeof(float) * (size_t)(rows_b * ldb));
  float *c = malloc(sizeof(float) * (size_t)(m * ldc));
  float *c0 = malloc(sizeof(float) * (size_t)(m * ldc));
  fill(a, rows_a * lda, &rng);
  fill(b, rows_b * ldb, &rng);
  fill(c0, m * ldc, &rng);
  memcpy(c, c0, sizeof(float) * (size_t)(m * ldc));
  assert_int_equal(pg_gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), PG_OK);
  double worst = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double exact = 0, rounded = 0, mag = 0;
      for (int64_t p = 0; p < k; p++) {
        const double x = at(a, ta, lda, i, p), y = at(b, tb, ldb, p, j);
        exact += x * y;
        rounded += (double)pg_bf16_to_float(pg_float_to_bf16((float)x)) *
                   (double)pg_bf16_to_float(pg_float_to_bf16((float)y));
        mag += fabs(x * y);
      }
      const double prev = beta * (double)c0[i * ldc + j];
      const double got = c[i * ldc + j];
      const double acc = (double)k * U_F32 * fabs(alpha) * mag * 1.01 + 2 * U_F32 * fabs(prev) + 1e-30;
      const double bound = (2 * U_BF16 + U_BF16 * U_BF16) * fabs(alpha) * mag + acc;
      const double err_exact = fabs(got - (alpha * exact + prev));
      const double err_rounded = fabs(got - (alpha * rounded + prev));
      if (err_exact > bound || err_rounded > acc) {
        fprintf(stderr, "ta %d tb %d m %lld n %lld k %lld: C[%lld, %lld] = %.9g, exact %.9g (bound %.3g), "
                        "from rounded inputs %.9g (bound %.3g)\n",
                ta, tb, (long long)m, (long long)n, (long long)k, (long long)i, (long long)j, got,
                alpha * exact + prev, bound, alpha * rounded + prev, acc);
        fail();
      }
      if (err_exact / (bound + 1e-300) > worst) worst = err_exact / bound;
    }
  /* the padding columns of C are untouched */
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = n; j < ldc; j++) assert_true(c[i * ldc + j] == c0[i * ldc + j]);
  free(a);
  free(b);
  free(c);
  free(c0);
}

static void test_gemm_bf16_against_float64(void **state) {
  (void)state;
  if (!have_bf16()) skip();
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      check_product(ta, tb, 37, 29, 300, 1.0f, 0.0f);
      check_product(ta, tb, 64, 48, 1000, 1.0f, 1.0f);
      check_product(ta, tb, 5, 70, 33, 0.5f, 2.0f);
    }
}

/* B = identity makes C = bf16(A): the fast rounding against the reference,
 * over random bit patterns in the normal range with many exact ties, for
 * row lengths that reach both the 32-wide loop and the masked tail of the
 * AVX512_BF16 conversion. */
static void test_fast_rounding_matches_reference(void **state) {
  (void)state;
  if (!have_bf16()) skip();
  enum { M = 64, KMAX = 70 };
  static float a[M * KMAX], eye[KMAX * KMAX], c[M * KMAX];
  const int64_t widths[] = {16, 37, 48, 70};
  pg_rng rng;
  pg_rng_seed(&rng, 3);
  for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
    const int64_t m = M, k = widths[w];
    for (int64_t i = 0; i < m * k; i++) {
      uint32_t u = (uint32_t)pg_rng_below(&rng, 0xffffffffu);
      if (i % 5 == 0) u = (u & 0xffff0000u) | 0x8000u; /* a tie */
      a[i] = from_bits(u);
      /* outside [1e-30, 1e30] (oneDNN flushes subnormals): move into [1, 2) */
      if (!isfinite(a[i]) || fabsf(a[i]) > 1e30f || fabsf(a[i]) < 1e-30f)
        a[i] = from_bits((u & 0x807fffffu) | (127u << 23));
    }
    /* the row kernel itself, which attention's packing calls too */
    static uint16_t row[M * KMAX];
    pg_bf16_round_row(a, m * k, row);
    for (int64_t i = 0; i < m * k; i++)
      if (row[i] != pg_float_to_bf16(a[i])) fail_msg("pg_bf16_round_row: element %lld: %a", (long long)i, a[i]);
    for (int64_t i = 0; i < k * k; i++) eye[i] = (i / k == i % k) ? 1.0f : 0.0f;
    assert_int_equal(pg_gemm_bf16(false, false, m, k, k, 1.0f, a, k, eye, k, 0.0f, c, k), PG_OK);
    for (int64_t i = 0; i < m * k; i++)
      if (c[i] != pg_bf16_to_float(pg_float_to_bf16(a[i]))) {
        fprintf(stderr, "width %lld, element %lld: %a rounds to %a, reference %a\n", (long long)k,
                (long long)i, a[i], c[i], pg_bf16_to_float(pg_float_to_bf16(a[i])));
        fail();
      }
  }
}

static void test_autocast_routes_pg_gemm(void **state) {
  (void)state;
  if (!have_bf16()) {
    assert_int_not_equal(pg_autocast_set(PG_PRECISION_BF16, NULL), PG_OK);
    assert_int_equal(pg_autocast_get(), PG_PRECISION_FP32);
    return;
  }
  const int64_t m = 128, n = 96, k = 256; /* 2mnk above PG_AUTOCAST_MIN_FLOPS */
  assert_true(2 * m * n * k >= PG_AUTOCAST_MIN_FLOPS);
  pg_rng rng;
  pg_rng_seed(&rng, 11);
  float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
  float *c32 = malloc(sizeof(float) * m * n), *c16 = malloc(sizeof(float) * m * n),
        *cref = malloc(sizeof(float) * m * n), *cback = malloc(sizeof(float) * m * n);
  fill(a, m * k, &rng);
  fill(b, k * n, &rng);
  pg_gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c32, n);
  pg_precision prev;
  const pg_autocast_stats before = pg_autocast_get_stats();
  assert_int_equal(pg_autocast_set(PG_PRECISION_BF16, &prev), PG_OK);
  assert_int_equal(prev, PG_PRECISION_FP32);
  pg_gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c16, n);
  /* a small product stays float32 under autocast: bit for bit BLIS */
  float small32[4 * 4], small16[4 * 4];
  assert_int_equal(pg_autocast_set(PG_PRECISION_FP32, NULL), PG_OK);
  pg_gemm(false, false, 4, 4, 4, 1.0f, a, k, b, n, 0.0f, small32, 4);
  assert_int_equal(pg_autocast_set(PG_PRECISION_BF16, NULL), PG_OK);
  pg_gemm(false, false, 4, 4, 4, 1.0f, a, k, b, n, 0.0f, small16, 4);
  assert_memory_equal(small32, small16, sizeof small32);
  assert_int_equal(pg_autocast_set(PG_PRECISION_FP32, &prev), PG_OK);
  assert_int_equal(prev, PG_PRECISION_BF16);
  const pg_autocast_stats after = pg_autocast_get_stats();
  assert_int_equal(after.bf16_products - before.bf16_products, 1);
  assert_int_equal(after.fallbacks, before.fallbacks);
  /* the autocast result is pg_gemm_bf16's, and differs from float32 */
  assert_int_equal(pg_gemm_bf16(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, cref, n), PG_OK);
  assert_memory_equal(c16, cref, sizeof(float) * m * n);
  assert_memory_not_equal(c16, c32, sizeof(float) * m * n);
  /* back to fp32: BLIS bit for bit again */
  pg_gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, cback, n);
  assert_memory_equal(cback, c32, sizeof(float) * m * n);
  /* pg_gemm_auto (what the layers call) honours autocast even with one
   * thread, where it would run BLIS on the calling thread */
  pg_set_threads(1);
  const pg_autocast_stats before_auto = pg_autocast_get_stats();
  assert_int_equal(pg_autocast_set(PG_PRECISION_BF16, NULL), PG_OK);
  pg_gemm_auto(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, cback, n);
  assert_int_equal(pg_autocast_set(PG_PRECISION_FP32, NULL), PG_OK);
  pg_set_threads(2);
  assert_memory_equal(cback, cref, sizeof(float) * m * n);
  assert_int_equal(pg_autocast_get_stats().bf16_products - before_auto.bf16_products, 1);
  free(a);
  free(b);
  free(c32);
  free(c16);
  free(cref);
  free(cback);
}

/* A Linear [B*T, in] -> [B*T, out] under autocast: output, dX, dW against
 * float64 with the per-product bound (each is one product of float32
 * tensors); db is a float32 reduction, unchanged by autocast. */
static void test_linear_under_autocast(void **state) {
  (void)state;
  if (!have_bf16()) skip();
  const int64_t rows = 256, in = 192, out = 160;
  pg_tensor *x = pg_test_randn(PG_SHAPE(rows, in), 1.0f, 1);
  pg_tensor *w = pg_test_randn(PG_SHAPE(out, in), 0.1f, 2);
  pg_tensor *bias = pg_test_randn(PG_SHAPE(out), 0.1f, 3);
  pg_tensor *g = pg_test_randn(PG_SHAPE(rows, out), 1.0f, 4);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  assert_int_equal(pg_autocast_set(PG_PRECISION_BF16, NULL), PG_OK);
  pg_tensor *y = pg_linear_op(ctx, x, w, bias);
  assert_non_null(y);
  assert_int_equal(pg_backward_with(ctx, y, g->data), PG_OK);
  assert_int_equal(pg_autocast_set(PG_PRECISION_FP32, NULL), PG_OK);
  double worst_y = 0, worst_dx = 0, worst_dw = 0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < out; o++) {
      double exact = bias->data[o], mag = 0;
      for (int64_t i = 0; i < in; i++) {
        exact += (double)x->data[r * in + i] * w->data[o * in + i];
        mag += fabs((double)x->data[r * in + i] * w->data[o * in + i]);
      }
      const double bound = (2 * U_BF16 + U_BF16 * U_BF16 + in * U_F32) * mag + 2 * U_F32 * fabs(exact) + 1e-30;
      const double err = fabs(y->data[r * out + o] - exact);
      assert_true(err <= bound);
      if (err / bound > worst_y) worst_y = err / bound;
    }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < in; i++) {
      double exact = 0, mag = 0;
      for (int64_t o = 0; o < out; o++) {
        exact += (double)g->data[r * out + o] * w->data[o * in + i];
        mag += fabs((double)g->data[r * out + o] * w->data[o * in + i]);
      }
      const double bound = (2 * U_BF16 + U_BF16 * U_BF16 + out * U_F32) * mag + 1e-30;
      const double err = fabs(x->grad[r * in + i] - exact);
      assert_true(err <= bound);
      if (err / bound > worst_dx) worst_dx = err / bound;
    }
  for (int64_t o = 0; o < out; o++)
    for (int64_t i = 0; i < in; i++) {
      double exact = 0, mag = 0;
      for (int64_t r = 0; r < rows; r++) {
        exact += (double)g->data[r * out + o] * x->data[r * in + i];
        mag += fabs((double)g->data[r * out + o] * x->data[r * in + i]);
      }
      const double bound = (2 * U_BF16 + U_BF16 * U_BF16 + rows * U_F32) * mag + 1e-30;
      const double err = fabs(w->grad[o * in + i] - exact);
      assert_true(err <= bound);
      if (err / bound > worst_dw) worst_dw = err / bound;
    }
  printf("linear under bf16 autocast: worst error / bound: y %.3f, dX %.3f, dW %.3f\n", worst_y,
         worst_dx, worst_dw);
  /* and bf16 really was used: the errors are well above float32's */
  assert_true(worst_y > 1e-3);
  pg_ctx_free(ctx);
  pg_tensor_free(x);
  pg_tensor_free(w);
  pg_tensor_free(bias);
  pg_tensor_free(g);
}

static int teardown(void **state) {
  (void)state;
  pg_autocast_release();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rounding_reference),
      cmocka_unit_test(test_gemm_bf16_against_float64),
      cmocka_unit_test(test_fast_rounding_matches_reference),
      cmocka_unit_test(test_autocast_routes_pg_gemm),
      cmocka_unit_test(test_linear_under_autocast),
  };
  return cmocka_run_group_tests(tests, NULL, teardown);
}
