/* The library's one kernel per math function (autograd/kernels.h) and the
 * kernels that must agree with it:
 *  - pg_expf and pg_tanhf against libm over their whole range, and their
 *    special values;
 *  - GELU (tanh form) and its slope against the formula in float64;
 *  - the fused attention kernel's SIMD exp, softmax row and softmax
 *    backward row, for every instruction set this CPU runs, against
 *    kernels.h's over a sweep of inputs, extremes, -inf (masked entries)
 *    and NaN included;
 *  - the MLP's fused Linear+GELU against pg_gelu(PG_GELU_TANH): the same
 *    bits, forward and backward;
 *  - pg_column_sums (every bias gradient) against its definition, a double
 *    sum in row order rounded once: the same bits, on 1 and 2 threads. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/kernels.h"
#include "patchgrad/autograd/op.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/layers/attention_fused.h"
#include "patchgrad/layers/mlp.h"

/* |got - want| in units of want's ulp (float); 0 for equal values, inf when
 * only one is inf or NaN. */
static double ulp_distance(float got, float want) {
  if (got == want || (isnan(got) && isnan(want))) return 0;
  if (isinf(got) || isinf(want) || isnan(got) || isnan(want)) return INFINITY;
  const double ulp = want == 0.0f ? 1.4e-45 : (double)nextafterf(fabsf(want), INFINITY) - fabsf(want);
  return fabs((double)got - want) / ulp;
}

/* ---- exp and tanh against libm ---- */

static void test_exp_tanh_against_libm(void **state) {
  (void)state;
  double worst_exp = 0, worst_tanh = 0;
  for (float x = -87.0f; x < 88.7f; x += 0.00731f) /* normal results */
    worst_exp = fmax(worst_exp, ulp_distance(pg_expf(x), expf(x)));
  for (float x = -10.0f; x < 10.0f; x += 0.000917f)
    worst_tanh = fmax(worst_tanh, ulp_distance(pg_tanhf(x), tanhf(x)));
  for (float x = 1e-30f; x < 1.0f; x *= 1.003f) {
    worst_tanh = fmax(worst_tanh, ulp_distance(pg_tanhf(x), tanhf(x)));
    worst_tanh = fmax(worst_tanh, ulp_distance(pg_tanhf(-x), tanhf(-x)));
  }
  assert_true(worst_exp <= 2.0);
  assert_true(worst_tanh <= 3.0);
  assert_true(isinf(pg_expf(89.0f)) && isinf(pg_expf(1000.0f)) && isinf(pg_expf(INFINITY)));
  assert_true(pg_expf(-1000.0f) == 0.0f && pg_expf(-INFINITY) == 0.0f && pg_expf(0.0f) == 1.0f);
  for (float x = -104.0f; x < -87.0f; x += 0.0113f) /* gradual underflow */
    assert_true(fabsf(pg_expf(x) - expf(x)) <= 3e-45f);
  assert_true(isnan(pg_expf(NAN)) && isnan(pg_tanhf(NAN)));
  assert_true(pg_tanhf(50.0f) == 1.0f && pg_tanhf(-INFINITY) == -1.0f);
}

/* ---- GELU, tanh form ---- */

/* The definition in float64, written without cancellation (1 + tanh u
 * loses every digit in double too once u < -19): 1 + tanh u = 2 s with
 * s = 1 / (1 + e^{-2u}), and 1 - tanh^2 u = 4 s (1 - s), 1 - s = e^{-2u} s. */
static double gelu64(double x, double *slope) {
  const double c = sqrt(2.0 / 3.14159265358979323846), k = 0.044715;
  const double e = exp(-2.0 * c * (x + k * x * x * x)), s = 1.0 / (1.0 + e);
  *slope = s + 2.0 * x * s * (e * s) * c * (1.0 + 3.0 * k * x * x);
  return x * s;
}

static void test_gelu_against_float64(void **state) {
  (void)state;
  /* Errors in units of float's epsilon: relative to the value's own size
   * (the form has no cancellation for negative x), allowing for the
   * rounding of the exponent 2u, which exp turns into a relative error of
   * |2u| eps; the slope's absolute error likewise. */
  double worst_value = 0, worst_slope = 0;
  for (float x = -12.0f; x < 12.0f; x += 0.000731f) {
    float slope;
    const float y = pg_gelu_tanh_and_slopef(x, &slope);
    assert_true(y == pg_gelu_tanhf(x) && slope == pg_gelu_tanh_slopef(x)); /* one kernel */
    double want_slope;
    const double want = gelu64(x, &want_slope);
    const double two_u = fabs(2.0 * sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x));
    const double eps = 5.96e-8 * (two_u + 1.0);
    if (fabs(want) > 1e-30) worst_value = fmax(worst_value, fabs(y - want) / fabs(want) / eps);
    worst_slope = fmax(worst_slope, fabs(slope - want_slope) / (eps * (1.0 + fabs(x))));
  }
  print_message("      GELU: worst value error %.2f, slope %.2f (units of eps (|2u| + 1))\n",
                worst_value, worst_slope);
  assert_true(worst_value <= 8.0);
  assert_true(worst_slope <= 8.0);
  /* extremes: the limits, and NaN through */
  float slope;
  assert_true(pg_gelu_tanh_and_slopef(100.0f, &slope) == 100.0f && slope == 1.0f);
  assert_true(pg_gelu_tanh_and_slopef(-100.0f, &slope) == 0.0f && slope == 0.0f);
  assert_true(isinf(pg_gelu_tanhf(INFINITY)) && isnan(pg_gelu_tanhf(NAN)));
  assert_true(isnan(pg_gelu_tanh_slopef(NAN)));
}

/* The MLP's fused Linear+GELU through an identity weight (exact products)
 * gives pg_gelu(PG_GELU_TANH)'s numbers, bit for bit, both ways. */
static void test_mlp_gelu_is_pg_gelu(void **state) {
  (void)state;
  const int64_t n = 64, rows = 600; /* 38400 values: the threaded paths too */
  pg_tensor *x = pg_test_randn(PG_SHAPE(rows, n), 3.0f, 5);
  pg_tensor *eye = pg_tensor_new(PG_SHAPE(n, n), true);
  for (int64_t i = 0; i < n; i++) eye->data[i * n + i] = 1.0f;
  pg_tensor *g = pg_test_randn(PG_SHAPE(rows, n), 1.0f, 6);
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *a = pg_linear_gelu_op(ctx, x, eye, NULL);
  assert_int_equal(pg_backward_with(ctx, a, g->data), PG_OK);
  float *grad_fused = malloc((size_t)x->numel * sizeof(float));
  memcpy(grad_fused, x->grad, (size_t)x->numel * sizeof(float));
  pg_tensor_zero_grad(x);
  pg_tensor *b = pg_gelu(ctx, x, PG_GELU_TANH);
  assert_memory_equal(a->data, b->data, (size_t)x->numel * sizeof(float));
  assert_int_equal(pg_backward_with(ctx, b, g->data), PG_OK);
  assert_memory_equal(grad_fused, x->grad, (size_t)x->numel * sizeof(float));
  /* and without a tape (no slope computed): the same forward */
  pg_set_grad_enabled(ctx, false);
  pg_tensor *c = pg_linear_gelu_op(ctx, x, eye, NULL);
  assert_memory_equal(a->data, c->data, (size_t)x->numel * sizeof(float));
  free(grad_fused);
  pg_ctx_free(ctx);
  pg_tensor_free(x), pg_tensor_free(eye), pg_tensor_free(g);
}

/* ---- The fused attention kernel's SIMD math ---- */

static const char *const isas[] = {"avx512", "avx2", "sse2"};

/* exp over a sweep of [-110, 95] (past both clamps), the specials, and
 * lengths that leave a scalar tail. The polynomial uses fused
 * multiply-adds, so within 1 ulp of pg_expf for normal results, and within
 * 2 units of the smallest denormal below them. */
static void check_simd_exp(const pg_attn_fused_math_fns *m) {
  enum { N = 30001 };
  static float x[N], y[N];
  for (int i = 0; i < N; i++) x[i] = -110.0f + 205.0f * (float)i / (float)(N - 1);
  const float special[] = {-INFINITY, INFINITY, NAN, -104.0f, -103.99f, -87.5f, 88.7f, 89.0f, 0.0f, -0.0f};
  memcpy(x, special, sizeof special);
  m->exp(x, y, N);
  double worst = 0;
  for (int i = 0; i < N; i++) {
    const float want = pg_expf(x[i]);
    if (isnan(want)) {
      assert_true(isnan(y[i]));
    } else if (want == 0.0f || isinf(want)) {
      assert_true(y[i] == want);
    } else if (want < 1.2e-38f) {
      assert_true(fabsf(y[i] - want) <= 3e-45f);
    } else {
      worst = fmax(worst, ulp_distance(y[i], want));
    }
  }
  assert_true(worst <= 1.0);
  for (int n = 1; n < 40; n++) { /* every tail length */
    float a[40], b[40];
    for (int i = 0; i < n; i++) a[i] = -3.0f + 0.37f * (float)i;
    m->exp(a, b, n);
    for (int i = 0; i < n; i++) assert_true(ulp_distance(b[i], pg_expf(a[i])) <= 1.0);
  }
}

/* A softmax row of length n: the SIMD kernel against pg_softmax_row. */
static void check_softmax_row(const pg_attn_fused_math_fns *m, const float *x, int64_t n) {
  float *want = malloc((size_t)n * sizeof *want), *got = malloc((size_t)n * sizeof *got);
  pg_softmax_row(x, want, n);
  memcpy(got, x, (size_t)n * sizeof *got);
  m->softmax_row(got, n);
  bool nan_row = false;
  for (int64_t j = 0; j < n; j++) nan_row |= isnan(want[j]);
  for (int64_t j = 0; j < n; j++) {
    if (nan_row) {
      assert_true(isnan(got[j])); /* a NaN makes the whole row NaN in both */
    } else if (want[j] == 0.0f) {
      assert_true(fabsf(got[j]) <= 3e-45f); /* masked (-inf) and underflowed entries */
    } else {
      /* float vs double sums over the row, and 1 ulp from exp: a few ulps */
      assert_true(fabs((double)got[j] - want[j]) <= 8 * 6e-8 * want[j] + 3e-45);
    }
  }
  free(want), free(got);
}

/* The backward row: ds = p * (ds - sum(p * ds)), against pg_softmax_grad_row. */
static void check_softmax_grad_row(const pg_attn_fused_math_fns *m, const float *p, const float *g,
                                   int64_t n) {
  float *want = malloc((size_t)n * sizeof *want), *got = malloc((size_t)n * sizeof *got);
  pg_softmax_grad_row(p, g, want, n, false);
  memcpy(got, g, (size_t)n * sizeof *got);
  m->softmax_grad_row(p, got, n);
  double scale = 0;
  for (int64_t j = 0; j < n; j++) scale = fmax(scale, fabs((double)p[j] * g[j]) + fabs(p[j]));
  for (int64_t j = 0; j < n; j++) {
    if (isnan(want[j])) assert_true(isnan(got[j]));
    else assert_true(fabs((double)got[j] - want[j]) <= 1e-6 * scale);
  }
  free(want), free(got);
}

static void check_simd_softmax(const pg_attn_fused_math_fns *m) {
  pg_rng rng;
  pg_rng_seed(&rng, 9);
  const int64_t lengths[] = {1, 2, 3, 7, 15, 16, 17, 33, 64, 100, 1000};
  const float scales[] = {1.0f, 30.0f, 1e4f}; /* ordinary, sharp, and past exp's range */
  for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++)
    for (size_t si = 0; si < sizeof scales / sizeof *scales; si++) {
      const int64_t n = lengths[li];
      float *x = malloc((size_t)n * sizeof *x), *p = malloc((size_t)n * sizeof *p);
      float *g = malloc((size_t)n * sizeof *g);
      for (int64_t j = 0; j < n; j++) {
        x[j] = scales[si] * pg_rng_normal(&rng);
        g[j] = pg_rng_normal(&rng);
      }
      check_softmax_row(m, x, n);
      pg_softmax_row(x, p, n);
      check_softmax_grad_row(m, p, g, n);
      if (n > 2) {
        x[n / 2] = -INFINITY; /* a masked key: weight exactly 0 */
        check_softmax_row(m, x, n);
        x[1] = NAN; /* a NaN score poisons the row */
        check_softmax_row(m, x, n);
        g[0] = NAN;
        check_softmax_grad_row(m, p, g, n);
      }
      free(x), free(p), free(g);
    }
}

/* ---- column sums ---- */

static void test_column_sums_definition(void **state) {
  (void)state;
  const int64_t shapes[][2] = {{1, 1}, {3, 15}, {5, 17}, {4096, 384}, {700, 1152}, {33, 1536}, {2, 700}, {4096, 16}};
  const int saved = pg_get_threads();
  uint64_t seed = 7;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int64_t rows = shapes[si][0], cols = shapes[si][1];
    float *src = malloc((size_t)(rows * cols) * sizeof *src), *got = malloc((size_t)cols * sizeof *got);
    float *want = malloc((size_t)cols * sizeof *want), *base = malloc((size_t)cols * sizeof *base);
    for (int64_t i = 0; i < rows * cols; i++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      src[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 3.0f;
    }
    for (int64_t c = 0; c < cols; c++) base[c] = (float)c * 0.25f - 7.0f;
    for (int acc = 0; acc < 2; acc++)
      for (int threads = 1; threads <= 2; threads++) {
        pg_set_threads(threads);
        for (int64_t c = 0; c < cols; c++) {
          double sum = 0;
          for (int64_t r = 0; r < rows; r++) sum += (double)src[r * cols + c];
          want[c] = acc ? base[c] + (float)sum : (float)sum;
          got[c] = base[c];
        }
        pg_column_sums(src, rows, cols, got, acc);
        for (int64_t c = 0; c < cols; c++)
          if (memcmp(&got[c], &want[c], sizeof got[c]) != 0)
            fail_msg("[%lld, %lld] acc %d threads %d: column %lld is %a, want %a", (long long)rows,
                     (long long)cols, acc, threads, (long long)c, got[c], want[c]);
      }
    free(src), free(got), free(want), free(base);
  }
  pg_set_threads(saved);
}

static void test_simd_kernels_against_reference(void **state) {
  (void)state;
  int ran = 0;
  for (int i = 0; i < 3; i++) {
    const pg_attn_fused_math_fns *m = pg_attn_fused_math(isas[i]);
    assert_true((m != NULL) == pg_attn_fused_runs(isas[i]));
    if (!m) {
      print_message("      (this CPU does not run %s: skipped)\n", isas[i]);
      continue;
    }
    check_simd_exp(m);
    check_simd_softmax(m);
    ran++;
  }
  assert_true(ran >= 1); /* sse2 runs everywhere */
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exp_tanh_against_libm),
      cmocka_unit_test(test_gelu_against_float64),
      cmocka_unit_test(test_mlp_gelu_is_pg_gelu),
      cmocka_unit_test(test_simd_kernels_against_reference),
      cmocka_unit_test(test_column_sums_definition),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
