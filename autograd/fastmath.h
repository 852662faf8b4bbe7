/* exp and tanh in branch-free float arithmetic, so that loops calling them
 * vectorise (libm's expf/tanhf are opaque calls that keep every loop
 * scalar). Internal to the library: not installed.
 *
 * pg_expf: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, and
 * Cephes' degree-6 polynomial for e^r; 2^n is applied as two exact powers
 * of two so that overflow gives inf and small results underflow gradually,
 * as expf does. Within 2 ulp of expf; NaN in, NaN out.
 * pg_tanhf: Cephes' odd polynomial for |x| < 0.625, else
 * 1 - 2 / (e^{2|x|} + 1) with x's sign; within 3 ulp of tanhf.
 * tests/test_ops_nn.c sweeps both against libm. */
#ifndef PG_FASTMATH_H
#define PG_FASTMATH_H

#include <math.h>
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

#endif
