/* The library's one kernel for each math function: exp, tanh, GELU (tanh
 * form) and its slope, the softmax of a row and its backward. Every op and
 * layer calls these; nothing else in the library computes them. The one
 * exception is the fused attention kernel (layers/attention_fused_body.h),
 * whose SIMD exp, softmax row and softmax backward row follow these
 * definitions lane by lane (same clamps, same special values) and are
 * checked against them by tests/test_kernels.c over a sweep of inputs,
 * extremes and NaN included. Internal to the library: not installed.
 *
 * Written in branch-free float arithmetic so that the loops calling them
 * vectorise (libm's expf/tanhf are opaque calls that keep a loop scalar).
 *
 * pg_expf: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, and
 * Cephes' degree-6 polynomial for e^r; the input is clamped to
 * [-104, 89] (beyond, e^x is 0 or inf in float anyway) and 2^n is applied
 * as two exact powers of two, so that overflow gives inf and small results
 * underflow gradually to 0, as expf does. Within 2 ulp of expf; NaN in, NaN
 * out. pg_tanhf: Cephes' odd polynomial for |x| < 0.625, else
 * 1 - 2 / (e^{2|x|} + 1) with x's sign; within 3 ulp of tanhf.
 * tests/test_kernels.c sweeps both against libm. */
#ifndef PG_KERNELS_H
#define PG_KERNELS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* 2^n for an integer n in [-126, 127], built from its exponent bits. */
static inline float pg_pow2i(int32_t n) {
  const int32_t bits = (n + 127) << 23;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline float pg_expf(float x) {
  /* Beyond these e^x is inf or 0 in float anyway; clamping keeps n in range.
   * Comparisons are false for NaN, which therefore passes through. */
  float c = x > 89.0f ? 89.0f : x;
  c = c < -104.0f ? -104.0f : c;
  c = c == c ? c : 0.0f; /* NaN: compute on 0, restore below */
  /* n = round(c / ln2) by the 1.5 * 2^23 trick (exact for |c / ln2| < 2^22) */
  const float fn = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (c - fn * 0.693359375f) + fn * 2.12194440e-4f; /* c - n ln2, in two parts */
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t n = (int32_t)fn, half = n / 2; /* n in [-150, 129]: split in two */
  const float e = p * pg_pow2i(half) * pg_pow2i(n - half);
  return x == x ? e : x;
}

static inline float pg_tanhf(float x) {
  const float a = fabsf(x);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big = copysignf(1.0f - 2.0f / (pg_expf(2.0f * a) + 1.0f), x);
  return a < 0.625f ? small : big;
}

/* ---- GELU, tanh form (PyTorch's approximate="tanh") ----
 *   gelu(x) = 0.5 x (1 + tanh u),  u = sqrt(2/pi) (x + 0.044715 x^3),
 * computed as x / (1 + e^{-2u}) (1 + tanh u = 2 / (1 + e^{-2u})): one exp,
 * and no cancellation where 1 + tanh u is tiny (negative x). Its slope, with
 * s = 1 / (1 + e^{-2u}) (1 - tanh^2 u = 4 s (1 - s)):
 *   gelu'(x) = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
#define PG_GELU_SQRT_2_OVER_PI 0.7978845608028654f
#define PG_GELU_KAPPA 0.044715f

/* gelu(x), and gelu'(x) into *slope: one exp for both. 1 - s is taken as
 * e s (e = e^{-2u}) while e < 1, where 1 - s would cancel. */
static inline float pg_gelu_tanh_and_slopef(float x, float *slope) {
  const float c = PG_GELU_SQRT_2_OVER_PI, a = PG_GELU_KAPPA;
  const float e = pg_expf(-2.0f * c * (x + a * x * x * x)), d = 1.0f + e;
  const float s = 1.0f / d, one_minus_s = e < 1.0f ? e * s : 1.0f - s;
  *slope = s + 2.0f * x * s * one_minus_s * c * (1.0f + 3.0f * a * (x * x));
  return x / d;
}

static inline float pg_gelu_tanhf(float x) {
  const float c = PG_GELU_SQRT_2_OVER_PI, a = PG_GELU_KAPPA;
  return x / (1.0f + pg_expf(-2.0f * c * (x + a * x * x * x)));
}

static inline float pg_gelu_tanh_slopef(float x) {
  float slope;
  (void)pg_gelu_tanh_and_slopef(x, &slope);
  return slope;
}

/* ---- Softmax of one row ----
 * y = exp(x - max) / sum exp(x - max): subtracting the row's maximum keeps
 * every exponent <= 0, so no input magnitude overflows; the sum is taken in
 * double and each value multiplied by its float reciprocal. n >= 1. An entry
 * of -inf (a masked one) gets exactly 0; a NaN makes the row NaN; a row
 * whose every entry is -inf is NaN (the caller decides what a row that sees
 * nothing means). y may be x. Returns log sum exp(x) = max + log(sum), in
 * double (the softmax cross-entropy's normaliser). */
static inline double pg_softmax_row(const float *x, float *y, int64_t n) {
  float max = x[0];
#pragma omp simd reduction(max : max)
  for (int64_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; i++) {
    y[i] = pg_expf(x[i] - max);
    sum += y[i];
  }
  const float inv = (float)(1.0 / sum);
  for (int64_t i = 0; i < n; i++) y[i] *= inv;
  return (double)max + log(sum);
}

/* Softmax backward of one row: gx (+)= y * (g - sum(g * y)), the dot in
 * double; y is the softmax's output, g its gradient. acc adds into gx
 * instead of writing it. gx may be g (in place). */
static inline void pg_softmax_grad_row(const float *restrict y, const float *g, float *gx,
                                       int64_t n, bool acc) {
  double dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t i = 0; i < n; i++) dot += (double)g[i] * y[i];
  const float d = (float)dot;
  if (acc)
    for (int64_t i = 0; i < n; i++) gx[i] += y[i] * (g[i] - d);
  else
    for (int64_t i = 0; i < n; i++) gx[i] = y[i] * (g[i] - d);
}

#endif
