/* Unpatchify: gradients by finite differences, the exact round trip
 * Unpatchify(Patchify(x)) == x, the adjoint identity with Patchify, a
 * direct-loop reference at threaded sizes, output shapes and the valid range
 * of output_spatial_shape, the three init schemes, and every error. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/params.h"
#include "patchgrad/layers/patchify.h"
#include "patchgrad/autograd/tape.h"
#include "patchgrad/layers/unpatchify.h"

typedef struct {
  int d;
  int64_t patch, stride;
  const int64_t *out_spatial;
} unpatch_cfg;

static pg_tensor *unpatchify_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  const unpatch_cfg *c = user;
  return pg_unpatchify_op(ctx, in[0], in[1], in[2], c->d, c->patch, c->stride, c->out_spatial);
}

/* x [2, *grid, c_embed]; out_spatial NULL or d sizes */
static void gradcheck_one(int d, const int64_t *grid, int64_t c_embed, int64_t c_out,
                          int64_t patch, int64_t stride, bool bias, const int64_t *out_spatial,
                          uint64_t seed) {
  int64_t xs[5] = {2}, ws[5] = {c_embed, c_out};
  for (int a = 0; a < d; a++) xs[1 + a] = grid[a], ws[2 + a] = patch;
  xs[d + 1] = c_embed;
  pg_tensor *in[3] = {pg_test_randn(d + 2, xs, 1.0f, seed), pg_test_randn(d + 2, ws, 0.5f, seed + 1),
                      bias ? pg_test_randn(1, &c_out, 0.5f, seed + 2) : NULL};
  unpatch_cfg cfg = {d, patch, stride, out_spatial};
  assert_gradcheck(unpatchify_fn, &cfg, bias ? 3 : 2, in, NULL);
  for (int i = 0; i < 3; i++) pg_tensor_free(in[i]);
}

static void test_gradcheck_1d(void **state) {
  (void)state;
  for (int64_t stride = 2; stride <= 4; stride++)
    for (int bias = 0; bias <= 1; bias++)
      gradcheck_one(1, (int64_t[]){5}, 3, 2, 3, stride, bias, NULL, 10 + (uint64_t)stride);
  /* the largest valid output: (5-1)*3 + 3 + 3 - 1 = 17 */
  gradcheck_one(1, (int64_t[]){5}, 3, 2, 3, 3, true, (int64_t[]){17}, 17);
}

static void test_gradcheck_2d(void **state) {
  (void)state;
  for (int64_t stride = 1; stride <= 3; stride++)
    for (int bias = 0; bias <= 1; bias++)
      gradcheck_one(2, (int64_t[]){3, 4}, 4, 2, 2, stride, bias, NULL, 20 + (uint64_t)stride);
  /* odd sizes, overlap, a larger output on one axis */
  gradcheck_one(2, (int64_t[]){3, 2}, 5, 3, 3, 2, true, (int64_t[]){8, 5}, 31);
}

static void test_gradcheck_3d(void **state) {
  (void)state;
  for (int64_t stride = 1; stride <= 3; stride++)
    for (int bias = 0; bias <= 1; bias++)
      gradcheck_one(3, (int64_t[]){2, 3, 2}, 3, 2, 2, stride, bias, NULL, 40 + (uint64_t)stride);
  gradcheck_one(3, (int64_t[]){2, 2, 2}, 3, 2, 2, 3, true, (int64_t[]){7, 5, 6}, 47);
}

/* An [m, k] matrix (m >= k) with orthonormal columns, by Gram-Schmidt in
 * double: its transpose is its pseudo-inverse (Q^T Q = I_k). */
static void orthonormal_columns(float *q, int64_t m, int64_t k, uint64_t seed) {
  double *a = malloc((size_t)(m * k) * sizeof *a);
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  for (int64_t i = 0; i < m * k; i++) a[i] = pg_rng_normal(&rng);
  for (int64_t j = 0; j < k; j++) {
    for (int pass = 0; pass < 2; pass++) /* twice is enough in double */
      for (int64_t p = 0; p < j; p++) {
        double dot = 0;
        for (int64_t i = 0; i < m; i++) dot += a[i * k + j] * a[i * k + p];
        for (int64_t i = 0; i < m; i++) a[i * k + j] -= dot * a[i * k + p];
      }
    double norm = 0;
    for (int64_t i = 0; i < m; i++) norm += a[i * k + j] * a[i * k + j];
    for (int64_t i = 0; i < m; i++) a[i * k + j] /= sqrt(norm);
  }
  for (int64_t i = 0; i < m * k; i++) q[i] = (float)a[i];
  free(a);
}

/* Patchify with weight Q [C_embed, C_in * P^d] (orthonormal columns) and
 * Unpatchify with the same numbers as its [C_embed, C_out = C_in, P...]
 * weight compute patch -> Q patch -> Q^T Q patch = patch. */
static void round_trip(int d, const int64_t *spatial, int64_t c, int64_t patch, int64_t extra) {
  int64_t k = c, xs[5] = {2}, ws[5];
  for (int a = 0; a < d; a++) xs[1 + a] = spatial[a], k *= patch, ws[2 + a] = patch;
  xs[d + 1] = c;
  int64_t c_embed = k + extra;
  ws[0] = c_embed, ws[1] = c;
  pg_tensor *x = pg_test_randn(d + 2, xs, 1.0f, 7);
  pg_tensor *w = pg_tensor_new(d + 2, ws, true);
  orthonormal_columns(w->data, c_embed, k, 8);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *tokens = pg_patchify_op(ctx, x, w, NULL, d, patch, patch);
  pg_tensor *back = pg_unpatchify_op(ctx, tokens, w, NULL, d, patch, patch, NULL);
  assert_non_null(back);
  assert_int_equal(back->ndim, x->ndim);
  for (int a = 0; a < x->ndim; a++) assert_int_equal(back->shape[a], x->shape[a]);
  assert_close(back->data, x->data, x->numel, 2e-6, 1e-5);
  pg_ctx_free(ctx);
  pg_tensor_free(x), pg_tensor_free(w);
}

static void test_round_trip(void **state) {
  (void)state;
  round_trip(1, (int64_t[]){12}, 3, 4, 0);
  round_trip(1, (int64_t[]){10}, 2, 5, 3);
  round_trip(2, (int64_t[]){8, 6}, 4, 2, 0); /* DiT-style, square weight */
  round_trip(2, (int64_t[]){9, 6}, 3, 3, 5); /* wider embedding: pseudo-inverse */
  round_trip(3, (int64_t[]){4, 6, 2}, 2, 2, 0);
  round_trip(3, (int64_t[]){6, 3, 3}, 1, 3, 4);
}

/* <conv(x), y> == <x, conv_transpose(y)> with the same weight numbers:
 * Patchify's [C_out, C_in, P...] is Unpatchify's [C_embed, C_out, P...]. The
 * transposed op gets output_spatial_shape = x's spatial shape, covering the
 * pixels the convolution drops. */
static void adjoint(int d, const int64_t *spatial, int64_t patch, int64_t stride, uint64_t seed) {
  const int64_t c_in = 3, c_tok = 4;
  int64_t xs[5] = {2}, ws[5] = {c_tok, c_in};
  for (int a = 0; a < d; a++) xs[1 + a] = spatial[a], ws[2 + a] = patch;
  xs[d + 1] = c_in;
  pg_tensor *x = pg_test_randn(d + 2, xs, 1.0f, seed);
  pg_tensor *w = pg_test_randn(d + 2, ws, 1.0f, seed + 1);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *cx = pg_patchify_op(ctx, x, w, NULL, d, patch, stride);
  assert_non_null(cx);
  pg_rng rng;
  pg_rng_seed(&rng, seed + 2);
  pg_tensor *y = pg_normal(ctx, cx->ndim, cx->shape, 0.0f, 1.0f, &rng);
  pg_tensor *ty = pg_unpatchify_op(ctx, y, w, NULL, d, patch, stride, spatial);
  assert_non_null(ty);
  double lhs = 0, rhs = 0, scale = 0;
  for (int64_t i = 0; i < cx->numel; i++) lhs += (double)cx->data[i] * y->data[i];
  for (int64_t i = 0; i < x->numel; i++) {
    rhs += (double)x->data[i] * ty->data[i];
    scale += fabs((double)x->data[i] * ty->data[i]);
  }
  if (fabs(lhs - rhs) > 1e-6 * scale) fail_msg("adjoint: <Px, y> = %.9g, <x, P*y> = %.9g", lhs, rhs);
  pg_ctx_free(ctx);
  pg_tensor_free(x), pg_tensor_free(w);
}

static void test_adjoint(void **state) {
  (void)state;
  for (int64_t stride = 1; stride <= 4; stride++) {
    adjoint(1, (int64_t[]){17}, 3, stride, 100 + (uint64_t)stride);
    adjoint(2, (int64_t[]){9, 8}, 3, stride, 200 + (uint64_t)stride);
    adjoint(3, (int64_t[]){5, 6, 7}, 2, stride, 300 + (uint64_t)stride);
  }
  /* large enough for the threaded scatter, overlapping */
  adjoint(2, (int64_t[]){61, 57}, 5, 2, 400);
}

/* Direct transposed convolution in double, 2-D. */
static void test_large_against_reference(void **state) {
  (void)state;
  const int64_t patch_stride[][2] = {{3, 2}, {4, 4}, {2, 3}, {5, 1}};
  for (int k = 0; k < 4; k++) {
    const int64_t P = patch_stride[k][0], S = patch_stride[k][1];
    const int64_t B = 2, GH = 21, GW = 23, E = 24, C = 16; /* col2im threads */
    const int64_t H = (GH - 1) * S + P + S - 1, W = (GW - 1) * S + P; /* one axis larger */
    pg_tensor *x = pg_test_randn(4, (int64_t[]){B, GH, GW, E}, 1.0f, 10 + (uint64_t)k);
    pg_tensor *w = pg_test_randn(4, (int64_t[]){E, C, P, P}, 0.2f, 20 + (uint64_t)k);
    pg_tensor *b = pg_test_randn(1, &C, 0.2f, 30 + (uint64_t)k);
    pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
    pg_tensor *y = pg_unpatchify_op(ctx, x, w, b, 2, P, S, (int64_t[]){H, W});
    assert_non_null(y);
    assert_int_equal(y->shape[1], H);
    assert_int_equal(y->shape[2], W);
    double *want = calloc((size_t)y->numel, sizeof *want);
    for (int64_t i = 0; i < y->numel; i++) want[i] = b->data[i % C];
    pg_test_unpatchify_reference(x, w, S, H, W, want);
    float *want_f = malloc((size_t)y->numel * sizeof *want_f);
    for (int64_t i = 0; i < y->numel; i++) want_f[i] = (float)want[i];
    assert_close(y->data, want_f, y->numel, 1e-4, 1e-4);
    free(want), free(want_f);
    pg_ctx_free(ctx);
    pg_tensor_free(x), pg_tensor_free(w), pg_tensor_free(b);
  }
}

static void test_output_shapes(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  int checked = 0;
  for (int d = 1; d <= 3; d++)
    for (int64_t P = 1; P <= 4; P++)
      for (int64_t S = 1; S <= 5; S++)
        for (int64_t g = 1; g <= (d == 3 ? 3 : 6); g++) {
          int64_t xs[5] = {1}, ws[5] = {1, 2}, lo[3], hi[3];
          for (int a = 0; a < d; a++) {
            xs[1 + a] = g + a, ws[2 + a] = P;
            lo[a] = (xs[1 + a] - 1) * S + P, hi[a] = lo[a] + S - 1;
          }
          xs[d + 1] = 1;
          pg_tensor *x = pg_zeros(ctx, d + 2, xs), *w = pg_zeros(ctx, d + 2, ws);
          pg_tensor *y = pg_unpatchify_op(ctx, x, w, NULL, d, P, S, NULL);
          assert_non_null(y);
          assert_int_equal(y->shape[d + 1], 2);
          for (int a = 0; a < d; a++) assert_int_equal(y->shape[1 + a], lo[a]);
          /* both ends of the valid range are accepted... */
          y = pg_unpatchify_op(ctx, x, w, NULL, d, P, S, hi);
          assert_non_null(y);
          for (int a = 0; a < d; a++) assert_int_equal(y->shape[1 + a], hi[a]);
          /* ...one past either end is refused, on any axis */
          for (int a = 0; a < d; a++) {
            int64_t bad[3];
            memcpy(bad, lo, sizeof bad);
            bad[a] = lo[a] - 1;
            assert_null(pg_unpatchify_op(ctx, x, w, NULL, d, P, S, bad));
            assert_error_contains("output_spatial_shape");
            bad[a] = hi[a] + 1;
            assert_null(pg_unpatchify_op(ctx, x, w, NULL, d, P, S, bad));
          }
          checked++;
          pg_ctx_reset(ctx);
        }
  assert_true(checked > 200);
  pg_ctx_free(ctx);
}

/* Cells no patch covers get the bias only: the extra output cells and the
 * gaps of stride > patch. */
static void test_uncovered_cells_get_bias(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *x = pg_full(ctx, PG_SHAPE(1, 3, 2), 1.0f);      /* 3 tokens, C_embed 2 */
  pg_tensor *w = pg_full(ctx, PG_SHAPE(2, 1, 2), 1.0f);      /* C_out 1, patch 2 */
  pg_tensor *b = pg_full(ctx, PG_SHAPE(1), 0.5f);
  /* stride 3: pixels 0 1 | gap 2 | 3 4 | gap 5 | 6 7 | extra 8 */
  pg_tensor *y = pg_unpatchify_op(ctx, x, w, b, 1, 2, 3, (int64_t[]){9});
  float want[9] = {2.5f, 2.5f, 0.5f, 2.5f, 2.5f, 0.5f, 2.5f, 2.5f, 0.5f};
  assert_close(y->data, want, 9, 0, 0);
  /* stride 1 with patch 2: inner pixels sum two contributions, not average */
  y = pg_unpatchify_op(ctx, x, w, b, 1, 2, 1, NULL);
  float want2[4] = {2.5f, 4.5f, 4.5f, 2.5f};
  assert_close(y->data, want2, 4, 0, 0);
  pg_ctx_free(ctx);
}

static bool all_zero(const pg_tensor *t) {
  for (int64_t i = 0; i < t->numel; i++)
    if (t->data[i] != 0.0f) return false;
  return true;
}

static void test_init_schemes(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 11);
  const int64_t E = 384, C = 8, P = 2; /* DiT's final layer shape, 2-D */
  pg_unpatchify l;
  /* default: PyTorch's ConvTranspose fan, C_out * P^d, for weight and bias */
  assert_int_equal(pg_unpatchify_init(&l, &ps, "def", E, C, 2, P, P, true, PG_UNPATCH_INIT_DEFAULT, &rng), PG_OK);
  int64_t want[4] = {E, C, P, P};
  for (int i = 0; i < 4; i++) assert_int_equal(l.weight->shape[i], want[i]);
  assert_int_equal(l.bias->shape[0], C);
  assert_int_equal(pg_params_find(&ps, "def.weight")->kind, PG_PARAM_WEIGHT);
  assert_int_equal(pg_params_find(&ps, "def.bias")->kind, PG_PARAM_BIAS);
  assert_uniform(l.weight, 1.0 / sqrt((double)(C * P * P)));
  for (int i = 0; i < C; i++) assert_true(fabs(l.bias->data[i]) <= 1.0 / sqrt((double)(C * P * P)));
  assert_false(all_zero(l.bias));
  pg_tensor *w_default = l.weight;
  /* zeros */
  assert_int_equal(pg_unpatchify_init(&l, &ps, "zero", E, C, 2, P, P, true, PG_UNPATCH_INIT_ZEROS, &rng), PG_OK);
  assert_true(all_zero(l.weight) && all_zero(l.bias));
  assert_true(l.weight->requires_grad);
  /* fan_in: Kaiming uniform over C_embed * P^d, bias 0 */
  assert_int_equal(pg_unpatchify_init(&l, &ps, "fan", E, C, 2, P, P, true, PG_UNPATCH_INIT_FAN_IN, &rng), PG_OK);
  assert_uniform(l.weight, sqrt(6.0 / (double)(E * P * P)));
  assert_true(all_zero(l.bias));
  pg_tensor *w_fan = l.weight;
  /* 1-D and 3-D fans */
  assert_int_equal(pg_unpatchify_init(&l, &ps, "f1", 100, 3, 1, 7, 7, false, PG_UNPATCH_INIT_FAN_IN, &rng), PG_OK);
  assert_null(l.bias);
  assert_uniform(l.weight, sqrt(6.0 / 700.0));
  assert_int_equal(pg_unpatchify_init(&l, &ps, "d3", 64, 5, 3, 3, 2, true, PG_UNPATCH_INIT_DEFAULT, &rng), PG_OK);
  assert_uniform(l.weight, 1.0 / sqrt(5.0 * 27));

  /* Why fan_in exists: with stride == patch each output pixel sums C_embed
   * terms, so for unit-variance tokens the output variance is
   *   fan_in:  C_embed * 2/(C_embed P^d)        = 2 / P^d      (0.5 here)
   *   default: C_embed * 1/(3 C_out P^d)        = C_embed / (3 C_out P^d)  (4 here) */
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *x = pg_normal(ctx, PG_SHAPE(8, 16, 16, E), 0.0f, 1.0f, &rng);
  const pg_tensor *ws[2] = {w_fan, w_default};
  const double expect[2] = {2.0 / (P * P), (double)E / (3.0 * C * P * P)};
  for (int s = 0; s < 2; s++) {
    pg_tensor *y = pg_unpatchify_op(ctx, x, (pg_tensor *)ws[s], NULL, 2, P, P, NULL);
    double sq = 0;
    for (int64_t i = 0; i < y->numel; i++) sq += (double)y->data[i] * y->data[i];
    double var = sq / (double)y->numel;
    if (fabs(var / expect[s] - 1.0) > 0.1) fail_msg("scheme %d: output variance %g, expected %g", s, var, expect[s]);
  }
  pg_ctx_free(ctx);
  pg_params_free(&ps);
}

static void test_init_parse(void **state) {
  (void)state;
  pg_unpatch_init s = PG_UNPATCH_INIT_DEFAULT;
  assert_int_equal(pg_unpatch_init_parse("zeros", &s), PG_OK);
  assert_int_equal(s, PG_UNPATCH_INIT_ZEROS);
  assert_int_equal(pg_unpatch_init_parse("fan_in", &s), PG_OK);
  assert_int_equal(s, PG_UNPATCH_INIT_FAN_IN);
  assert_int_equal(pg_unpatch_init_parse("default", &s), PG_OK);
  assert_int_equal(s, PG_UNPATCH_INIT_DEFAULT);
  assert_int_equal(pg_unpatch_init_parse("xavier", &s), PG_ERR_ARG);
  assert_error_contains("unknown weight_init 'xavier'");
  assert_error_contains("default, zeros or fan_in");
  assert_int_equal(pg_unpatch_init_parse(NULL, &s), PG_ERR_ARG);
  assert_string_equal(pg_unpatch_init_name(PG_UNPATCH_INIT_FAN_IN), "fan_in");
  for (int i = 0; i < 3; i++) {
    assert_int_equal(pg_unpatch_init_parse(pg_unpatch_init_name((pg_unpatch_init)i), &s), PG_OK);
    assert_int_equal(s, i);
  }
}

static void test_layer_forward(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 4);
  pg_unpatchify l;
  assert_int_equal(pg_unpatchify_init(&l, &ps, "final_layer.linear", 16, 4, 2, 2, 2, true,
                                      PG_UNPATCH_INIT_DEFAULT, &rng), PG_OK);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *x = pg_normal(ctx, PG_SHAPE(2, 3, 5, 16), 0.0f, 1.0f, &rng);
  pg_tensor *y = pg_unpatchify_forward(ctx, &l, x, NULL);
  assert_non_null(y);
  assert_int_equal(y->shape[1], 6);
  assert_int_equal(y->shape[2], 10);
  assert_int_equal(y->shape[3], 4);
  pg_tensor *y2 = pg_unpatchify_forward(ctx, &l, x, (int64_t[]){7, 11});
  assert_int_equal(y2->shape[1], 7);
  assert_int_equal(y2->shape[2], 11);
  float *g = pg_ctx_alloc(ctx, (size_t)y->numel * sizeof(float));
  for (int64_t i = 0; i < y->numel; i++) g[i] = 1.0f;
  assert_int_equal(pg_backward_with(ctx, y, g), PG_OK);
  assert_true(fabsf(l.bias->grad[0] - 2.0f * 6 * 10) < 1e-4f);
  assert_null(pg_unpatchify_forward(ctx, NULL, x, NULL));
  assert_error_contains("not initialised");
  pg_ctx_free(ctx);
  pg_params_free(&ps);
}

static void test_errors(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_tensor *x = pg_zeros(ctx, PG_SHAPE(2, 4, 4, 6));
  pg_tensor *w = pg_zeros(ctx, PG_SHAPE(6, 3, 2, 2));
  pg_tensor *b = pg_zeros(ctx, PG_SHAPE(3));
  assert_non_null(pg_unpatchify_op(ctx, x, w, b, 2, 2, 2, NULL));

  assert_null(pg_unpatchify_op(ctx, x, w, b, 5, 2, 2, NULL));
  assert_error_contains("data_dim must be 1, 2 or 3, got 5");
  assert_null(pg_unpatchify_op(ctx, x, w, b, 2, -3, 2, NULL));
  assert_error_contains("patch_size must be >= 1, got -3");
  assert_null(pg_unpatchify_op(ctx, x, w, b, 2, 2, 0, NULL));
  assert_error_contains("stride must be >= 1, got 0");
  assert_null(pg_unpatchify_op(ctx, x, w, b, 1, 2, 2, NULL));
  assert_error_contains("weight must be [C_embed, C_out, P]");
  assert_null(pg_unpatchify_op(ctx, x, w, pg_zeros(ctx, PG_SHAPE(6)), 2, 2, 2, NULL));
  assert_error_contains("bias must be [C_out] = [3], got [6]");
  assert_null(pg_unpatchify_op(ctx, pg_zeros(ctx, PG_SHAPE(2, 16, 6)), w, b, 2, 2, 2, NULL));
  assert_error_contains("x must have rank data_dim + 2 = 4");
  assert_null(pg_unpatchify_op(ctx, pg_zeros(ctx, PG_SHAPE(2, 4, 4, 5)), w, b, 2, 2, 2, NULL));
  assert_error_contains("x has 5 channels");
  assert_error_contains("in_features is 6");
  assert_null(pg_unpatchify_op(ctx, pg_zeros(ctx, PG_SHAPE(2, 0, 4, 6)), w, b, 2, 2, 2, NULL));
  assert_error_contains("grid axis 1 has size 0");
  /* 4 patches of 2 at stride 2: the size must lie in [8, 9] */
  assert_null(pg_unpatchify_op(ctx, x, w, b, 2, 2, 2, (int64_t[]){8, 10}));
  assert_error_contains("output_spatial_shape[1] = 10 is invalid");
  assert_error_contains("need 8 <= size <= 9");
  assert_null(pg_unpatchify_op(ctx, x, w, b, 2, 2, 2, (int64_t[]){7, 8}));
  assert_error_contains("output_spatial_shape[0] = 7 is invalid");
  pg_fail(PG_ERR_ARG, "earlier failure");
  assert_null(pg_unpatchify_op(ctx, NULL, w, b, 2, 2, 2, NULL));
  assert_error_contains("earlier failure");

  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 5);
  pg_unpatchify l;
  const pg_unpatch_init def = PG_UNPATCH_INIT_DEFAULT;
  assert_int_equal(pg_unpatchify_init(&l, &ps, "u", 6, 3, 4, 2, 2, true, def, &rng), PG_ERR_ARG);
  assert_error_contains("data_dim must be 1, 2 or 3, got 4");
  assert_int_equal(pg_unpatchify_init(&l, &ps, "u", 6, 3, 2, 0, 2, true, def, &rng), PG_ERR_ARG);
  assert_error_contains("patch_size must be >= 1, got 0");
  assert_int_equal(pg_unpatchify_init(&l, &ps, "u", 6, 3, 2, 2, 0, true, def, &rng), PG_ERR_ARG);
  assert_error_contains("stride must be >= 1, got 0");
  assert_int_equal(pg_unpatchify_init(&l, &ps, "u", 0, 3, 2, 2, 2, true, def, &rng), PG_ERR_ARG);
  assert_error_contains("in_features must be >= 1, got 0");
  assert_int_equal(pg_unpatchify_init(&l, &ps, "u", 6, 0, 2, 2, 2, true, def, &rng), PG_ERR_ARG);
  assert_error_contains("out_features must be >= 1, got 0");
  assert_int_equal(pg_unpatchify_init(&l, &ps, "u", 6, 3, 2, 2, 2, true, (pg_unpatch_init)7, &rng), PG_ERR_ARG);
  assert_error_contains("unknown weight_init 7");
  assert_int_equal(ps.count, 0);
  pg_params_free(&ps);
  pg_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradcheck_1d),
      cmocka_unit_test(test_gradcheck_2d),
      cmocka_unit_test(test_gradcheck_3d),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_adjoint),
      cmocka_unit_test(test_large_against_reference),
      cmocka_unit_test(test_output_shapes),
      cmocka_unit_test(test_uncovered_cells_get_bias),
      cmocka_unit_test(test_init_schemes),
      cmocka_unit_test(test_init_parse),
      cmocka_unit_test(test_layer_forward),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
