/* The fused attention kernel (layers/attention_fused.c), every instruction
 * set this CPU runs (AVX-512, its bf16 products, AVX2, SSE2), against a
 * float64 reference of
 * softmax(q k^T / sqrt(d)) v and its gradients: head sizes and token counts
 * that are and are not multiples of the vector width, one and two threads,
 * writing and accumulating gradient destinations, and scores large enough
 * that an unstabilised softmax would overflow. The bf16 set is checked
 * against the same reference with the operands of its six products rounded
 * to bf16 where the kernel rounds them, and against bf16 autocast's choice
 * of it. (The op around it,
 * pg_sdpa_packed_op, is checked against PyTorch and by finite differences
 * in test_attention.c.) */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/layers/attention_fused.h"
#include "patchgrad/autograd/autocast.h"
#include "patchgrad/autograd/blas.h"

typedef struct {
  int64_t B, T, H, d;
} shape;

/* x, or x rounded to bf16 (as a float32 product input) when `round`. */
static double rb(double x, bool round) {
  return round ? (double)pg_bf16_to_float(pg_float_to_bf16((float)x)) : x;
}

/* Reference out, dq, dk, dv (float64) for packed qkv [B, T, 3h]; with
 * `round`, every operand of the six products is first rounded to bf16, as
 * the bf16 kernels round them (P and dS from their float64 values). */
static void reference(const shape *s, const float *qkv, const float *dout, double *out, double *g,
                      bool round) {
  const int64_t h = s->H * s->d, T = s->T, ld = 3 * h;
  const double scale = 1.0 / sqrt((double)s->d);
  double *p = malloc((size_t)(T * T) * sizeof *p), *ds = malloc((size_t)(T * T) * sizeof *ds);
  memset(g, 0, (size_t)(s->B * T * ld) * sizeof *g);
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t n = 0; n < s->H; n++) {
      const float *q = qkv + b * T * ld + n * s->d, *k = q + h, *v = q + 2 * h;
      const float *go = dout + b * T * h + n * s->d;
      double *gq = g + b * T * ld + n * s->d, *gk = gq + h, *gv = gq + 2 * h;
      for (int64_t i = 0; i < T; i++) {
        double max = -INFINITY, sum = 0;
        for (int64_t j = 0; j < T; j++) {
          double x = 0;
          for (int64_t c = 0; c < s->d; c++) x += rb(q[i * ld + c], round) * rb(k[j * ld + c], round);
          p[i * T + j] = x * scale;
          if (p[i * T + j] > max) max = p[i * T + j];
        }
        for (int64_t j = 0; j < T; j++) sum += p[i * T + j] = exp(p[i * T + j] - max);
        for (int64_t j = 0; j < T; j++) p[i * T + j] /= sum;
        for (int64_t c = 0; c < s->d; c++) {
          double o = 0;
          for (int64_t j = 0; j < T; j++) o += rb(p[i * T + j], round) * rb(v[j * ld + c], round);
          out[(b * T + i) * h + n * s->d + c] = o;
        }
      }
      for (int64_t i = 0; i < T; i++) {
        double dot = 0;
        for (int64_t j = 0; j < T; j++) {
          double x = 0;
          for (int64_t c = 0; c < s->d; c++) x += rb(go[i * h + c], round) * rb(v[j * ld + c], round);
          ds[i * T + j] = x;
          dot += x * p[i * T + j];
        }
        for (int64_t j = 0; j < T; j++) ds[i * T + j] = p[i * T + j] * (ds[i * T + j] - dot);
      }
      for (int64_t i = 0; i < T; i++)
        for (int64_t c = 0; c < s->d; c++) {
          double dq = 0, dk = 0, dv = 0;
          for (int64_t j = 0; j < T; j++) {
            dq += rb(ds[i * T + j], round) * rb(k[j * ld + c], round);
            dk += rb(ds[j * T + i], round) * rb(q[j * ld + c], round);
            dv += rb(p[j * T + i], round) * rb(go[j * h + c], round);
          }
          gq[i * ld + c] = dq * scale;
          gk[i * ld + c] = dk * scale;
          gv[i * ld + c] = dv;
        }
    }
  free(p);
  free(ds);
}

static void to_float(const double *src, float *dst, int64_t n, float add) {
  for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i] + add;
}

/* Fused forward and backward of one shape on `threads` threads, compared
 * with the reference; `acc`: gradient buffers start at 1 and are added to. */
static void check_shape(const char *isa, const shape *s, int threads, bool acc, float magnitude,
                        uint64_t seed, double tol) {
  const int64_t h = s->H * s->d, n_qkv = s->B * s->T * 3 * h, n_out = s->B * s->T * h;
  pg_tensor *qkv = pg_test_randn(PG_SHAPE(n_qkv), magnitude, seed);
  pg_tensor *dout = pg_test_randn(PG_SHAPE(n_out), 1.0f, seed + 1);
  float *out = malloc((size_t)n_out * sizeof *out), *grad = malloc((size_t)n_qkv * sizeof *grad);
  float *probs = malloc((size_t)(s->B * s->H * s->T * s->T) * sizeof *probs);
  double *ref_out = malloc((size_t)n_out * sizeof *ref_out), *ref_g = malloc((size_t)n_qkv * sizeof *ref_g);
  float *want_out = malloc((size_t)n_out * sizeof *want_out), *want_g = malloc((size_t)n_qkv * sizeof *want_g);
  pg_attn_fused_args a = {.batch = s->B, .tokens = s->T, .heads = s->H, .dk = s->d, .dv = s->d,
                          .q = qkv->data, .k = qkv->data + h, .v = qkv->data + 2 * h,
                          .q_ld = 3 * h, .k_ld = 3 * h, .v_ld = 3 * h, .out = out, .out_ld = h,
                          .scale = (float)(1.0 / sqrt((double)s->d)), .probs = probs, .isa = isa};
  pg_attn_fused_grads g = {.dout = dout->data, .dq = grad, .dk = grad + h, .dv = grad + 2 * h,
                           .dq_ld = 3 * h, .dk_ld = 3 * h, .dv_ld = 3 * h,
                           .acc_q = acc, .acc_k = acc, .acc_v = acc};
  float *scratch = malloc((size_t)pg_attn_fused_scratch_floats(&a, threads) * sizeof *scratch);
  for (int64_t i = 0; i < n_qkv; i++) grad[i] = acc ? 1.0f : NAN; /* written, never read */
  pg_attn_fused_forward(&a, scratch, threads);
  pg_attn_fused_backward(&a, &g, scratch, threads);
  const bool bf16 = !strcmp(isa, "avx512bf16");
  reference(s, qkv->data, dout->data, ref_out, ref_g, bf16);
  to_float(ref_out, want_out, n_out, 0.0f);
  to_float(ref_g, want_g, n_qkv, acc ? 1.0f : 0.0f);
  if (bf16) {
    /* The kernel's P and dS are float32 and the reference's float64: where
     * the two round to neighbouring bf16 values, that one term of a sum
     * moves by 2^-8 of itself. Hence tolerances at bf16's resolution, not
     * float32's; against the exact (unrounded) reference this check fails. */
    assert_close(out, want_out, n_out, 2e-4 * tol, 4e-3 * tol);
    assert_close(grad, want_g, n_qkv, 2e-4 * tol, 4e-3 * tol);
  } else {
    assert_close(out, want_out, n_out, 2e-6 * tol, 1e-5 * tol);
    assert_close(grad, want_g, n_qkv, 2e-6 * tol, 1e-4 * tol);
  }
  free(out), free(grad), free(probs), free(ref_out), free(ref_g), free(want_out), free(want_g);
  free(scratch);
  pg_tensor_free(qkv);
  pg_tensor_free(dout);
}

static const shape shapes[] = {
    {1, 1, 1, 1},  {2, 5, 2, 3},   {1, 16, 4, 16}, {2, 37, 3, 20},
    {1, 64, 2, 32}, {1, 33, 1, 70}, {3, 8, 2, 64},  {1, 130, 1, 8},
};

static void check_isa(const char *isa) {
  if (!pg_attn_fused_runs(isa)) {
    print_message("      (this CPU does not run %s: skipped)\n", isa);
    return;
  }
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
    for (int threads = 1; threads <= 2; threads++) {
      check_shape(isa, &shapes[i], threads, false, 1.0f, 10 + i, 1.0);
      check_shape(isa, &shapes[i], threads, true, 1.0f, 20 + i, 1.0);
    }
  /* scores past 100: exp would overflow without the max subtraction. Float32
   * scores that large carry ~1e-5 of rounding, which gradients of that size
   * amplify: hence the looser tolerance. */
  check_shape(isa, &(shape){2, 24, 2, 16}, 2, false, 6.0f, 99, 100.0);
}

static void test_avx512(void **state) {
  (void)state;
  check_isa("avx512");
}

static void test_avx512bf16(void **state) {
  (void)state;
  check_isa("avx512bf16");
}

/* The bf16 products are really bf16 (they differ from float32 by far more
 * than float32's rounding), and bf16 autocast picks them by default for
 * heads of at least PG_ATTN_BF16_MIN_TOKENS tokens only. */
static void test_bf16_is_bf16_and_the_autocast_default(void **state) {
  (void)state;
  if (!pg_attn_fused_runs("avx512bf16")) skip();
  const shape s = {1, 40, 2, 16};
  const int64_t h = s.H * s.d, n_out = s.T * h;
  pg_tensor *qkv = pg_test_randn(PG_SHAPE(s.T * 3 * h), 1.0f, 5);
  float out32[40 * 32], out16[40 * 32], probs[2 * 40 * 40];
  static float scratch[1 << 15];
  pg_attn_fused_args a = {.batch = s.B, .tokens = s.T, .heads = s.H, .dk = s.d, .dv = s.d,
                          .q = qkv->data, .k = qkv->data + h, .v = qkv->data + 2 * h,
                          .q_ld = 3 * h, .k_ld = 3 * h, .v_ld = 3 * h, .out_ld = h,
                          .scale = 0.25f, .probs = probs};
  assert_false(pg_attn_fused_bf16(&a)); /* float32 autocast: float32 kernels */
  a.out = out32;
  pg_attn_fused_forward(&a, scratch, 1);
  pg_precision previous;
  assert_int_equal(pg_autocast_set(PG_PRECISION_BF16, &previous), PG_OK);
  assert_true(pg_attn_fused_bf16(&a));
  assert_true(pg_attn_fused_scratch_floats(&a, 1) <= (int64_t)(sizeof scratch / sizeof *scratch));
  a.out = out16;
  pg_attn_fused_forward(&a, scratch, 1);
  pg_attn_fused_args small = a;
  small.tokens = PG_ATTN_BF16_MIN_TOKENS - 1;
  assert_false(pg_attn_fused_bf16(&small));
  assert_int_equal(pg_autocast_set(previous, NULL), PG_OK);
  double worst = 0;
  for (int64_t i = 0; i < n_out; i++) worst = fmax(worst, fabs((double)out16[i] - out32[i]));
  assert_true(worst > 1e-4); /* float32 kernels agree with float64 to ~1e-6 */
  assert_true(worst < 0.05);
  pg_tensor_free(qkv);
}

/* Causal masks, padded keys and dropout with the bf16 products: the same
 * weights (masks and dropout draws are float32 and seeded per pair) and
 * results within bf16's resolution of the float32 kernels', forward and
 * backward. */
static void test_bf16_masks_and_dropout(void **state) {
  (void)state;
  if (!pg_attn_fused_runs("avx512bf16")) skip();
  enum { B = 2, T = 37, H = 2, D = 24, HD = H * D };
  const int64_t n_qkv = B * T * 3 * HD, n_out = B * T * HD, n_p = B * H * T * T;
  pg_tensor *qkv = pg_test_randn(PG_SHAPE(n_qkv), 1.0f, 41);
  pg_tensor *dout = pg_test_randn(PG_SHAPE(n_out), 1.0f, 42);
  uint8_t pad[B * T] = {0};
  pad[5] = pad[T + 30] = 1;
  const uint64_t seeds[B * H] = {11, 12, 13, 14};
  static float out[2][B * T * HD], grad[2][B * T * 3 * HD], probs[2][B * H * T * T], scratch[1 << 17];
  static uint8_t keep[2][B * H * T * T];
  const char *isas[2] = {"avx512", "avx512bf16"};
  for (int v = 0; v < 2; v++) {
    pg_attn_fused_args a = {.batch = B, .tokens = T, .heads = H, .dk = D, .dv = D, .q = qkv->data,
                            .k = qkv->data + HD, .v = qkv->data + 2 * HD, .q_ld = 3 * HD, .k_ld = 3 * HD,
                            .v_ld = 3 * HD, .out = out[v], .out_ld = HD, .scale = 0.2f, .probs = probs[v],
                            .causal = true, .pad = pad, .dropout = 0.25f, .seeds = seeds, .keep = keep[v],
                            .isa = isas[v]};
    pg_attn_fused_grads g = {.dout = dout->data, .dq = grad[v], .dk = grad[v] + HD, .dv = grad[v] + 2 * HD,
                             .dq_ld = 3 * HD, .dk_ld = 3 * HD, .dv_ld = 3 * HD};
    assert_true(pg_attn_fused_scratch_floats(&a, 2) <= (int64_t)(sizeof scratch / sizeof *scratch));
    pg_attn_fused_forward(&a, scratch, 2);
    pg_attn_fused_backward(&a, &g, scratch, 2);
  }
  assert_memory_equal(keep[0], keep[1], (size_t)n_p); /* the same draws */
  /* bf16's 8 bits: each product within a few 2^-8 of its terms' size */
  assert_close(out[1], out[0], n_out, 2e-2, 2e-2);
  assert_close(grad[1], grad[0], n_qkv, 2e-2, 2e-2);
  double worst = 0;
  for (int64_t i = 0; i < n_out; i++) worst = fmax(worst, fabs((double)out[1][i] - out[0][i]));
  assert_true(worst > 1e-5); /* and not the float32 products */
  pg_tensor_free(qkv);
  pg_tensor_free(dout);
}

static void test_avx2(void **state) {
  (void)state;
  check_isa("avx2");
}

static void test_sse2(void **state) {
  (void)state;
  check_isa("sse2");
}

/* A NaN in a query poisons that query's output row, a NaN in a key every
 * row of its head: the softmax's max must not hide it (training stops on a
 * NaN loss). */
static void check_nan(const char *isa) {
  if (!pg_attn_fused_runs(isa)) return;
  const int64_t B = 1, T = 20, H = 2, d = 16, h = H * d;
  pg_tensor *qkv = pg_test_randn(PG_SHAPE(B * T * 3 * h), 1.0f, 7);
  float out[20 * 32], probs[2 * 20 * 20], scratch[4096];
  pg_attn_fused_args a = {.batch = B, .tokens = T, .heads = H, .dk = d, .dv = d,
                          .q = qkv->data, .k = qkv->data + h, .v = qkv->data + 2 * h,
                          .q_ld = 3 * h, .k_ld = 3 * h, .v_ld = 3 * h, .out = out, .out_ld = h,
                          .scale = 0.25f, .probs = probs, .isa = isa};
  assert_true(pg_attn_fused_scratch_floats(&a, 1) <= 4096);
  qkv->data[3 * 3 * h + 5] = NAN; /* query 3 of head 0 */
  qkv->data[7 * 3 * h + h + d + 2] = NAN; /* key 7 of head 1 */
  pg_attn_fused_forward(&a, scratch, 1);
  for (int64_t i = 0; i < T; i++)
    for (int64_t c = 0; c < h; c++) {
      bool want_nan = c >= d || i == 3;
      assert_int_equal(isnan(out[i * h + c]) != 0, want_nan);
    }
  pg_tensor_free(qkv);
}

static void test_nan_propagates(void **state) {
  (void)state;
  const char *isas[4] = {"avx512", "avx512bf16", "avx2", "sse2"};
  for (int i = 0; i < 4; i++) check_nan(isas[i]);
}

static void test_unknown_isa_is_refused(void **state) {
  (void)state;
  assert_false(pg_attn_fused_runs("neon512"));
  assert_null(pg_attn_fused_math("neon512"));
  assert_true(pg_attn_fused_runs(pg_attn_fused_isa()));
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_avx512),
      cmocka_unit_test(test_avx512bf16),
      cmocka_unit_test(test_bf16_is_bf16_and_the_autocast_default),
      cmocka_unit_test(test_bf16_masks_and_dropout),
      cmocka_unit_test(test_avx2),
      cmocka_unit_test(test_sse2),
      cmocka_unit_test(test_nan_propagates),
      cmocka_unit_test(test_unknown_isa_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
