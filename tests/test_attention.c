/* Attention: multi-head self-attention against a naive double-precision
 * loop, finite-difference checks of every gradient for head counts 1 to 8,
 * causal on and off, T = 1 and odd T, padding masks that leave rows with no
 * visible key; the separate-q/k/v core; the single seed-style head; dropout
 * statistics and train/eval behaviour; parameter names and errors. */
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/layers/attention.h"

/* ---- the naive reference ---- */

/* softmax(q k^T * scale + masks) v per head, all in double, one loop per
 * index; scale 0 means 1/sqrt(dk). q, k [B, T, heads*dk], v [B, T, heads*dv]
 * contiguous. */
static void naive_sdpa_scaled(const double *q, const double *k, const double *v, int64_t B, int64_t T,
                              int64_t heads, int64_t dk, int64_t dv, bool causal, const uint8_t *pad,
                              double scale, double *out) {
  if (scale == 0) scale = 1.0 / sqrt((double)dk);
  double *s = malloc((size_t)T * sizeof *s);
  for (int64_t b = 0; b < B; b++)
    for (int64_t n = 0; n < heads; n++)
      for (int64_t i = 0; i < T; i++) {
        double max = -INFINITY;
        for (int64_t j = 0; j < T; j++) {
          bool visible = !(causal && j > i) && !(pad && pad[b * T + j]);
          s[j] = -INFINITY;
          if (!visible) continue;
          double dot = 0;
          for (int64_t c = 0; c < dk; c++)
            dot += q[(b * T + i) * heads * dk + n * dk + c] * k[(b * T + j) * heads * dk + n * dk + c];
          s[j] = dot * scale;
          if (s[j] > max) max = s[j];
        }
        double sum = 0;
        for (int64_t j = 0; j < T; j++) {
          s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - max);
          sum += s[j];
        }
        for (int64_t c = 0; c < dv; c++) {
          double o = 0;
          for (int64_t j = 0; j < T; j++) o += sum > 0 ? s[j] / sum * v[(b * T + j) * heads * dv + n * dv + c] : 0.0;
          out[(b * T + i) * heads * dv + n * dv + c] = o;
        }
      }
  free(s);
}

static void naive_sdpa(const double *q, const double *k, const double *v, int64_t B, int64_t T,
                       int64_t heads, int64_t dk, int64_t dv, bool causal, const uint8_t *pad,
                       double *out) {
  naive_sdpa_scaled(q, k, v, B, T, heads, dk, dv, causal, pad, 0.0, out);
}

/* y [m, out] = x [m, in] W^T + b in double (b may be NULL). */
static void naive_linear(const double *x, const float *w, const float *b, int64_t m, int64_t in,
                         int64_t out, double *y) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t o = 0; o < out; o++) {
      double s = b ? b[o] : 0.0;
      for (int64_t c = 0; c < in; c++) s += x[i * in + c] * w[o * in + c];
      y[i * out + o] = s;
    }
}

static double *to_double(const pg_tensor *t) {
  double *d = malloc((size_t)t->numel * sizeof *d);
  for (int64_t i = 0; i < t->numel; i++) d[i] = t->data[i];
  return d;
}

/* Multi-head self-attention of docs/dit.md, naively: qkv Linear, split into the
 * first/second/third h channels, per-head attention, proj Linear. */
static void naive_attention(const pg_tensor *x, const pg_tensor *qkv_w, const pg_tensor *qkv_b,
                            const pg_tensor *proj_w, const pg_tensor *proj_b, int heads,
                            bool causal, const uint8_t *pad, double *y) {
  int64_t B = x->shape[0], T = x->shape[1], h = x->shape[2], M = B * T;
  double *xd = to_double(x), *qkv = malloc((size_t)(M * 3 * h) * sizeof(double));
  double *q = malloc((size_t)(M * h) * sizeof(double)), *k = malloc((size_t)(M * h) * sizeof(double));
  double *v = malloc((size_t)(M * h) * sizeof(double)), *o = malloc((size_t)(M * h) * sizeof(double));
  naive_linear(xd, qkv_w->data, qkv_b ? qkv_b->data : NULL, M, h, 3 * h, qkv);
  for (int64_t r = 0; r < M; r++)
    for (int64_t c = 0; c < h; c++) {
      q[r * h + c] = qkv[r * 3 * h + c];
      k[r * h + c] = qkv[r * 3 * h + h + c];
      v[r * h + c] = qkv[r * 3 * h + 2 * h + c];
    }
  naive_sdpa(q, k, v, B, T, heads, h / heads, h / heads, causal, pad, o);
  naive_linear(o, proj_w->data, proj_b ? proj_b->data : NULL, M, h, h, y);
  free(xd), free(qkv), free(q), free(k), free(v), free(o);
}

/* Finite differences in float32 through two Linears and a softmax: the
 * rounding noise of <f, r> over several hundred outputs is about 1e-5, i.e.
 * ~1e-3 after dividing by the step, hence atol 3e-3 here.
 * check_against_double_fd below checks the same gradients far tighter. */
static const pg_gradcheck_opts fd = {.eps = 4e-3, .atol = 3e-3, .rtol = 1e-2};

/* ---- multi-head self-attention ---- */

typedef struct {
  int heads;
  bool causal, qkv_bias;
  const uint8_t *pad;
} attn_args;

static pg_tensor *attention_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  attn_args *a = user;
  return pg_attention_op(ctx, in[0], in[1], a->qkv_bias ? in[2] : NULL, in[3], in[4], a->heads,
                         a->causal, a->pad);
}

typedef struct {
  pg_tensor *x, *qkv_w, *qkv_b, *proj_w, *proj_b;
} attn_tensors;

static attn_tensors make_attention(int64_t B, int64_t T, int64_t h, float scale, uint64_t seed) {
  attn_tensors t = {
      pg_test_randn(PG_SHAPE(B, T, h), 1.0f, seed),
      pg_test_randn(PG_SHAPE(3 * h, h), scale, seed + 1),
      pg_test_randn(PG_SHAPE(3 * h), 0.3f, seed + 2),
      pg_test_randn(PG_SHAPE(h, h), scale, seed + 3),
      pg_test_randn(PG_SHAPE(h), 0.3f, seed + 4),
  };
  return t;
}

static void free_attention(attn_tensors *t) {
  pg_tensor_free(t->x), pg_tensor_free(t->qkv_w), pg_tensor_free(t->qkv_b);
  pg_tensor_free(t->proj_w), pg_tensor_free(t->proj_b);
}

/* Output against the naive loops, for every head count that divides 24,
 * causal on and off, with and without padding and qkv bias. */
static void test_attention_matches_naive(void **state) {
  (void)state;
  const int64_t B = 3, T = 11, h = 24;
  const int head_counts[] = {1, 2, 3, 4, 6, 8};
  uint8_t pad[3 * 11] = {0};
  pad[1 * T + 2] = pad[1 * T + 7] = 1;            /* two padded keys in batch entry 1 */
  for (int64_t j = 0; j < T; j++) pad[2 * T + j] = 1; /* entry 2: every key padded */
  double *want = malloc((size_t)(B * T * h) * sizeof *want);
  for (size_t hi = 0; hi < sizeof head_counts / sizeof *head_counts; hi++)
    for (int variant = 0; variant < 4; variant++) {
      attn_args a = {head_counts[hi], variant & 1, variant != 2, (variant & 2) ? pad : NULL};
      attn_tensors t = make_attention(B, T, h, 0.4f, 100 + hi);
      pg_ctx *ctx = pg_ctx_new(0);
      pg_tensor *y = attention_fn(ctx, (pg_tensor *[]){t.x, t.qkv_w, t.qkv_b, t.proj_w, t.proj_b}, &a);
      assert_non_null(y);
      naive_attention(t.x, t.qkv_w, a.qkv_bias ? t.qkv_b : NULL, t.proj_w, t.proj_b, a.heads,
                      a.causal, a.pad, want);
      for (int64_t i = 0; i < y->numel; i++)
        if (!(fabs(y->data[i] - want[i]) <= 2e-5 + 1e-4 * fabs(want[i])))
          fail_msg("heads %d variant %d element %lld: got %.9g want %.9g", a.heads, variant,
                   (long long)i, y->data[i], want[i]);
      /* no-grad mode (no saved probabilities) computes the same */
      bool was = pg_set_grad_enabled(ctx, false);
      pg_tensor *y2 = attention_fn(ctx, (pg_tensor *[]){t.x, t.qkv_w, t.qkv_b, t.proj_w, t.proj_b}, &a);
      pg_set_grad_enabled(ctx, was);
      assert_false(y2->requires_grad);
      assert_close(y2->data, y->data, y->numel, 0, 0);
      pg_ctx_free(ctx);
      free_attention(&t);
    }
  free(want);
}

/* Scores of size ~1e4: the max-subtracted softmax neither overflows nor
 * loses the answer. */
static void test_attention_large_scores(void **state) {
  (void)state;
  attn_tensors t = make_attention(2, 9, 16, 6.0f, 200);
  attn_args a = {2, false, true, NULL};
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *y = attention_fn(ctx, (pg_tensor *[]){t.x, t.qkv_w, t.qkv_b, t.proj_w, t.proj_b}, &a);
  double want[2 * 9 * 16];
  naive_attention(t.x, t.qkv_w, t.qkv_b, t.proj_w, t.proj_b, 2, false, NULL, want);
  for (int64_t i = 0; i < y->numel; i++) {
    assert_true(isfinite(y->data[i]));
    assert_true(fabs(y->data[i] - want[i]) <= 1e-3 + 1e-3 * fabs(want[i]));
  }
  pg_ctx_free(ctx);
  free_attention(&t);
}

/* Analytic gradients against central differences of the naive double-precision
 * attention: no float32 rounding in the differences, so the tolerance is
 * tight (1e-4 + 1e-3 relative, where float32 differences need ~1e-3 + 1e-2).
 * About 100 elements of each input are checked. */
static void check_against_double_fd(attn_tensors *t, const attn_args *a, const char *what) {
  pg_tensor *in[5] = {t->x, t->qkv_w, t->qkv_b, t->proj_w, t->proj_b};
  pg_ctx *ctx = pg_ctx_new(0);
  for (int i = 0; i < 5; i++) pg_tensor_zero_grad(in[i]);
  pg_tensor *y = attention_fn(ctx, in, (void *)a);
  assert_non_null(y);
  int64_t n = y->numel;
  float *r = malloc((size_t)n * sizeof *r);
  double *yd = malloc((size_t)n * sizeof *yd);
  pg_rng rng;
  pg_rng_seed(&rng, 77);
  for (int64_t i = 0; i < n; i++) r[i] = pg_rng_normal(&rng);
  assert_int_equal(pg_backward_with(ctx, y, r), PG_OK);
  for (int i = 0; i < 5; i++) {
    if (i == 2 && !a->qkv_bias) continue;
    pg_tensor *p = in[i];
    int64_t stride = p->numel / 100 + 1;
    for (int64_t e = 0; e < p->numel; e += stride) {
      float keep = p->data[e];
      double f[2], step[2];
      for (int side = 0; side < 2; side++) {
        p->data[e] = side ? keep - 1e-3f : keep + 1e-3f;
        step[side] = fabs((double)p->data[e] - keep);
        naive_attention(t->x, t->qkv_w, a->qkv_bias ? t->qkv_b : NULL, t->proj_w, t->proj_b,
                        a->heads, a->causal, a->pad, yd);
        f[side] = 0;
        for (int64_t j = 0; j < n; j++) f[side] += yd[j] * r[j];
      }
      p->data[e] = keep;
      double numeric = (f[0] - f[1]) / (step[0] + step[1]), analytic = p->grad[e];
      if (!(fabs(analytic - numeric) <= 1e-4 + 1e-3 * fabs(numeric)))
        fail_msg("%s: input %d element %lld: analytic %.9g, numeric %.9g", what, i, (long long)e,
                 analytic, numeric);
    }
  }
  free(r), free(yd);
  pg_ctx_free(ctx);
}

/* Finite differences of x and all four parameters, heads 1..8,
 * T in {1, 7, 13}, causal alternating, padding on the longest. */
static void test_attention_gradients(void **state) {
  (void)state;
  const int64_t Ts[3] = {1, 7, 13};
  uint8_t pad[2 * 13] = {0};
  pad[3] = pad[13 + 0] = pad[13 + 5] = pad[13 + 12] = 1;
  for (int heads = 1; heads <= 8; heads++)
    for (int ti = 0; ti < 3; ti++) {
      int64_t T = Ts[ti], h = heads * (heads <= 4 ? 4 : 2); /* head size 4, or 2 from 5 heads */
      attn_args a = {heads, (heads + ti) % 2 == 0, heads != 3, T == 13 ? pad : NULL};
      attn_tensors t = make_attention(2, T, h, 0.3f, 300 + 10 * heads + ti);
      pg_tensor *in[5] = {t.x, t.qkv_w, t.qkv_b, t.proj_w, t.proj_b};
      assert_gradcheck(attention_fn, &a, 5, in, &fd);
      char what[96];
      snprintf(what, sizeof what, "heads %d, T %lld, causal %d, padded %d", heads, (long long)T,
               a.causal, a.pad != NULL);
      check_against_double_fd(&t, &a, what);
      free_attention(&t);
    }
}

/* Rows that see no key: batch entry 1 is fully padded, and with causal
 * masking query 0 of entry 0 sees only key 0, which is padded. Those rows
 * give zeros before proj (so the output is proj's bias), never NaN, and the
 * gradients stay finite and correct. */
static void test_attention_fully_masked_rows(void **state) {
  (void)state;
  const int64_t B = 2, T = 5, h = 8;
  uint8_t pad[2 * 5] = {1, 0, 0, 1, 0, 1, 1, 1, 1, 1};
  for (int causal = 0; causal <= 1; causal++) {
    attn_args a = {2, causal, true, pad};
    attn_tensors t = make_attention(B, T, h, 0.5f, 400);
    pg_tensor *in[5] = {t.x, t.qkv_w, t.qkv_b, t.proj_w, t.proj_b};
    pg_ctx *ctx = pg_ctx_new(0);
    pg_tensor *y = attention_fn(ctx, in, &a);
    for (int64_t i = 0; i < y->numel; i++) assert_true(isfinite(y->data[i]));
    for (int64_t r = T; r < 2 * T; r++) assert_close(y->data + r * h, t.proj_b->data, h, 0, 0);
    if (causal) assert_close(y->data, t.proj_b->data, h, 0, 0);
    float *ones = malloc((size_t)y->numel * sizeof(float));
    for (int64_t i = 0; i < y->numel; i++) ones[i] = 1;
    assert_int_equal(pg_backward_with(ctx, y, ones), PG_OK);
    for (int64_t i = 0; i < t.qkv_w->numel; i++) assert_true(isfinite(t.qkv_w->grad[i]));
    /* entry 1's x gets no gradient at all: nothing it computes is used */
    for (int64_t i = T * h; i < 2 * T * h; i++) assert_true(t.x->grad[i] == 0.0f);
    free(ones);
    pg_ctx_free(ctx);
    assert_gradcheck(attention_fn, &a, 5, in, &fd);
    free_attention(&t);
  }
}

/* ---- the core with separate q, k, v (v wider than q and k) ---- */

typedef struct {
  int heads;
  bool causal;
  float dropout;
  uint64_t seed;
  float scale; /* 0: the default 1/sqrt(dk) */
} sdpa_args;

static pg_tensor *sdpa_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  sdpa_args *a = user;
  pg_rng rng;
  pg_rng_seed(&rng, a->seed); /* the same dropout mask on every call */
  return pg_sdpa_op(ctx, in[0], in[1], in[2], a->heads, a->causal, NULL, a->dropout, a->scale, &rng);
}

static void test_sdpa_separate(void **state) {
  (void)state;
  const int64_t B = 2, T = 6;
  for (int causal = 0; causal <= 1; causal++) {
    sdpa_args a = {2, causal, 0.0f, 1, PG_SDPA_DEFAULT_SCALE};
    pg_tensor *q = pg_test_randn(PG_SHAPE(B, T, 6), 1.0f, 500), *k = pg_test_randn(PG_SHAPE(B, T, 6), 1.0f, 501);
    pg_tensor *v = pg_test_randn(PG_SHAPE(B, T, 10), 1.0f, 502);
    pg_tensor *in[3] = {q, k, v};
    assert_gradcheck(sdpa_fn, &a, 3, in, &fd);
    pg_ctx *ctx = pg_ctx_new(0);
    pg_tensor *y = sdpa_fn(ctx, in, &a);
    assert_int_equal(y->shape[2], 10);
    double *qd = to_double(q), *kd = to_double(k), *vd = to_double(v), want[2 * 6 * 10];
    naive_sdpa(qd, kd, vd, B, T, 2, 3, 5, causal, NULL, want);
    for (int64_t i = 0; i < y->numel; i++) assert_true(fabs(y->data[i] - want[i]) < 1e-5 + 1e-5 * fabs(want[i]));
    free(qd), free(kd), free(vd);
    pg_ctx_free(ctx);
    pg_tensor_free(q), pg_tensor_free(k), pg_tensor_free(v);
  }
}

/* An explicit scale (PyTorch's scaled_dot_product_attention(scale=...)) on
 * both paths: the fused kernel (dk 3) and the general one (dk 300, wider
 * than the fused kernel takes); forward against the naive loops with that
 * scale, backward against finite differences. The default is an explicit
 * 1/sqrt(dk) bit for bit, and a non-finite scale is refused. */
static void test_sdpa_explicit_scale(void **state) {
  (void)state;
  const int64_t B = 2, T = 4;
  const struct {
    int heads;
    int64_t width, v_width;
  } paths[2] = {{2, 6, 10}, {1, 300, 3}};
  for (int p = 0; p < 2; p++)
    for (int causal = 0; causal <= 1; causal++) {
      const int64_t dk = paths[p].width / paths[p].heads, dv = paths[p].v_width / paths[p].heads;
      sdpa_args a = {paths[p].heads, causal, 0.0f, 1, 0.37f};
      pg_tensor *q = pg_test_randn(PG_SHAPE(B, T, paths[p].width), 1.0f, 510);
      pg_tensor *k = pg_test_randn(PG_SHAPE(B, T, paths[p].width), 1.0f, 511);
      pg_tensor *v = pg_test_randn(PG_SHAPE(B, T, paths[p].v_width), 1.0f, 512);
      pg_tensor *in[3] = {q, k, v};
      if (p == 0) assert_gradcheck(sdpa_fn, &a, 3, in, &fd);
      pg_ctx *ctx = pg_ctx_new(0);
      pg_tensor *y = sdpa_fn(ctx, in, &a);
      assert_non_null(y);
      double *qd = to_double(q), *kd = to_double(k), *vd = to_double(v);
      double *want = malloc((size_t)y->numel * sizeof *want);
      naive_sdpa_scaled(qd, kd, vd, B, T, a.heads, dk, dv, causal, NULL, (double)a.scale, want);
      for (int64_t i = 0; i < y->numel; i++) assert_true(fabs(y->data[i] - want[i]) < 1e-5 + 1e-5 * fabs(want[i]));
      /* another scale gives other numbers: the argument is used */
      naive_sdpa(qd, kd, vd, B, T, a.heads, dk, dv, causal, NULL, want);
      double off = 0;
      for (int64_t i = 0; i < y->numel; i++) off = fmax(off, fabs(y->data[i] - want[i]));
      assert_true(off > 1e-3);
      /* the default and an explicit 1/sqrt(dk): the same bits */
      sdpa_args d = a, e = a;
      d.scale = PG_SDPA_DEFAULT_SCALE;
      e.scale = pg_attention_scale(dk);
      pg_tensor *yd = sdpa_fn(ctx, in, &d), *ye = sdpa_fn(ctx, in, &e);
      assert_memory_equal(yd->data, ye->data, (size_t)yd->numel * sizeof(float));
      /* the general path's backward, on a smaller problem (one thread: its
       * thousands of tiny calls would otherwise wait for a second one) */
      if (p == 1) {
        pg_tensor *qs = pg_test_randn(PG_SHAPE(1, 3, 260), 0.3f, 513), *ks = pg_test_randn(PG_SHAPE(1, 3, 260), 0.3f, 514);
        pg_tensor *vs = pg_test_randn(PG_SHAPE(1, 3, 2), 1.0f, 515);
        pg_tensor *ins[3] = {qs, ks, vs};
        const int threads = pg_get_threads();
        pg_set_threads(1);
        assert_gradcheck(sdpa_fn, &a, 3, ins, &fd);
        pg_set_threads(threads);
        pg_tensor_free(qs), pg_tensor_free(ks), pg_tensor_free(vs);
      }
      free(qd), free(kd), free(vd), free(want);
      pg_ctx_free(ctx);
      pg_tensor_free(q), pg_tensor_free(k), pg_tensor_free(v);
    }
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *q = pg_zeros(ctx, PG_SHAPE(1, 2, 4));
  assert_null(pg_sdpa_op(ctx, q, q, q, 1, false, NULL, 0.0f, NAN, NULL));
  assert_error_contains("scale must be finite (0 for the default 1/sqrt(dk)), got nan");
  assert_null(pg_sdpa_op(ctx, q, q, q, 1, false, NULL, 0.0f, INFINITY, NULL));
  assert_error_contains("got inf");
  pg_ctx_free(ctx);
}

/* ---- dropout on the attention weights ---- */

/* With q = k = 0 every visible key weighs 1/(visible count), and with v the
 * identity ([B, T, T], v[b, j, :] = e_j) the output row is the weight row. */
static void dropout_probe(pg_ctx *ctx, int64_t B, int64_t T, bool causal, float p, uint64_t seed,
                          pg_tensor **out) {
  pg_tensor *q = pg_zeros(ctx, PG_SHAPE(B, T, 4)), *k = pg_zeros(ctx, PG_SHAPE(B, T, 4));
  pg_tensor *v = pg_zeros(ctx, PG_SHAPE(B, T, T));
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < T; j++) v->data[(b * T + j) * T + j] = 1;
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  *out = pg_sdpa_op(ctx, q, k, v, 1, causal, NULL, p, PG_SDPA_DEFAULT_SCALE, &rng);
}

static void test_dropout(void **state) {
  (void)state;
  const int64_t B = 4, T = 64;
  const float p = 0.3f;
  pg_ctx *ctx = pg_ctx_new(0);
  for (int causal = 0; causal <= 1; causal++) {
    pg_tensor *y;
    dropout_probe(ctx, B, T, causal, p, 42, &y);
    int64_t visible = 0, dropped = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) {
          float w = y->data[(b * T + i) * T + j];
          int64_t seen = causal ? i + 1 : T;
          if (j >= seen) {
            assert_true(w == 0.0f);
            continue;
          }
          visible++;
          if (w == 0.0f) dropped++;
          else assert_float_equal(w, 1.0f / (float)seen / (1.0f - p), 1e-6);
        }
    /* the fraction of dropped weights is p within 5 standard deviations */
    double frac = (double)dropped / (double)visible, sd = sqrt(p * (1 - p) / (double)visible);
    assert_true(fabs(frac - p) < 5 * sd);
    /* evaluation mode: no dropout, the weights themselves */
    pg_set_training(ctx, false);
    pg_tensor *e;
    dropout_probe(ctx, B, T, causal, p, 42, &e);
    for (int64_t i = 0; i < T; i++) assert_float_equal(e->data[i * T + 0], 1.0f / (float)(causal ? i + 1 : T), 1e-6);
    pg_set_training(ctx, true);
  }
  /* same seed, same mask, whatever the thread count; another seed differs */
  pg_tensor *a, *b, *c;
  int threads = omp_get_max_threads();
  dropout_probe(ctx, B, T, false, p, 7, &a);
  omp_set_num_threads(1);
  dropout_probe(ctx, B, T, false, p, 7, &b);
  omp_set_num_threads(threads);
  dropout_probe(ctx, B, T, false, p, 8, &c);
  assert_close(a->data, b->data, a->numel, 0, 0);
  assert_memory_not_equal(a->data, c->data, (size_t)a->numel * sizeof(float));
  pg_ctx_free(ctx);
  /* gradients through the dropped weights (a fixed mask) */
  sdpa_args args = {2, true, 0.4f, 99, PG_SDPA_DEFAULT_SCALE};
  pg_tensor *q = pg_test_randn(PG_SHAPE(2, 7, 4), 1.0f, 600), *k = pg_test_randn(PG_SHAPE(2, 7, 4), 1.0f, 601);
  pg_tensor *v = pg_test_randn(PG_SHAPE(2, 7, 6), 1.0f, 602);
  pg_tensor *in[3] = {q, k, v};
  assert_gradcheck(sdpa_fn, &args, 3, in, &fd);
  pg_tensor_free(q), pg_tensor_free(k), pg_tensor_free(v);
}

/* ---- the single head ---- */

typedef struct {
  bool causal;
  float dropout;
  float scale; /* 0: the default 1/sqrt(head_size) */
} head_args;

static pg_tensor *head_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  head_args *a = user;
  pg_rng rng;
  pg_rng_seed(&rng, 5);
  return pg_attention_head_op(ctx, in[0], in[1], in[2], in[3], a->causal, a->dropout, a->scale, &rng);
}

static void test_attention_head(void **state) {
  (void)state;
  const int64_t B = 2, T = 7, n_embed = 12, hs = 5; /* head size differs from the width */
  for (int causal = 0; causal <= 1; causal++) {
    head_args a = {causal, 0.0f, PG_SDPA_DEFAULT_SCALE};
    pg_tensor *x = pg_test_randn(PG_SHAPE(B, T, n_embed), 1.0f, 700);
    pg_tensor *kw = pg_test_randn(PG_SHAPE(hs, n_embed), 0.5f, 701);
    pg_tensor *qw = pg_test_randn(PG_SHAPE(hs, n_embed), 0.5f, 702);
    pg_tensor *vw = pg_test_randn(PG_SHAPE(hs, n_embed), 0.5f, 703);
    pg_tensor *in[4] = {x, kw, qw, vw};
    assert_gradcheck(head_fn, &a, 4, in, &fd);
    /* against the naive loops: q = x Wq^T etc., scale 1/sqrt(head_size) */
    double *xd = to_double(x), q[2 * 7 * 5], k[2 * 7 * 5], v[2 * 7 * 5], want[2 * 7 * 5];
    naive_linear(xd, qw->data, NULL, B * T, n_embed, hs, q);
    naive_linear(xd, kw->data, NULL, B * T, n_embed, hs, k);
    naive_linear(xd, vw->data, NULL, B * T, n_embed, hs, v);
    naive_sdpa(q, k, v, B, T, 1, hs, hs, causal, NULL, want);
    pg_ctx *ctx = pg_ctx_new(0);
    pg_tensor *y = head_fn(ctx, in, &a);
    assert_int_equal(y->shape[2], hs);
    for (int64_t i = 0; i < y->numel; i++) assert_true(fabs(y->data[i] - want[i]) < 1e-5 + 1e-5 * fabs(want[i]));
    /* dropout in training changes the output; in evaluation it does not */
    head_args d = {causal, 0.5f, PG_SDPA_DEFAULT_SCALE};
    pg_tensor *yd = head_fn(ctx, in, &d);
    assert_memory_not_equal(yd->data, y->data, (size_t)y->numel * sizeof(float));
    pg_set_training(ctx, false);
    pg_tensor *ye = head_fn(ctx, in, &d);
    assert_close(ye->data, y->data, y->numel, 0, 0);
    pg_ctx_free(ctx);
    free(xd);
    pg_tensor_free(x), pg_tensor_free(kw), pg_tensor_free(qw), pg_tensor_free(vw);
  }
}

/* The seed notebook's Head (SeedHead in tools/gen_fixtures_nn.py, written
 * as the notebook writes it: scores times C**-0.5, C = n_embed) against its
 * PyTorch values in tests/data/nn_cases.h5: the layer built with
 * PG_HEAD_SCALE_N_EMBED gives its output and the gradients of x and of the
 * three weights; the default scale does not; and the op at that scale
 * passes a gradient check. */
static void test_attention_head_seed_scale(void **state) {
  (void)state;
  const char *cases[2] = {"attention_head_seed_scale_T7", "attention_head_seed_scale_T9_causal"};
  const char *weights[3] = {"key.weight", "query.weight", "value.weight"};
  hid_t file = pg_h5_open(pg_test_data("nn_cases.h5"), false);
  assert_true(file >= 0);
  for (int c = 0; c < 2; c++) {
    const bool causal = c == 1;
    char path[256];
    pg_tensor *x, *out, *grad_out, *grad_x;
#define READ(name, dst)                                                          \
  snprintf(path, sizeof path, "%s/%s", cases[c], name);                          \
  assert_int_equal(pg_h5_read_tensor(file, path, "nn_cases.h5", &dst), PG_OK)
    READ("x", x);
    READ("out", out);
    READ("grad_out", grad_out);
    READ("grad/x", grad_x);
    const int64_t n_embed = x->shape[2];
    pg_params ps;
    pg_params_init(&ps);
    pg_rng rng;
    pg_rng_seed(&rng, 1);
    pg_attention_head seed, plain;
    assert_int_equal(pg_attention_head_init(&seed, &ps, "seed", n_embed, 5, 0.0f, PG_HEAD_SCALE_N_EMBED, &rng), PG_OK);
    assert_int_equal(pg_attention_head_init(&plain, &ps, "plain", n_embed, 5, 0.0f, PG_HEAD_SCALE_HEAD_SIZE, &rng), PG_OK);
    assert_true(seed.scale == (float)(1.0 / sqrt((double)n_embed)));
    assert_true(plain.scale == (float)(1.0 / sqrt(5.0)));
    pg_linear *seed_parts[3] = {&seed.key, &seed.query, &seed.value}, *plain_parts[3] = {&plain.key, &plain.query, &plain.value};
    pg_tensor *want_grad[3];
    for (int i = 0; i < 3; i++) {
      pg_tensor *w;
      snprintf(path, sizeof path, "%s/params/%s", cases[c], weights[i]);
      assert_int_equal(pg_h5_read_tensor(file, path, "nn_cases.h5", &w), PG_OK);
      memcpy(seed_parts[i]->weight->data, w->data, (size_t)w->numel * sizeof(float));
      memcpy(plain_parts[i]->weight->data, w->data, (size_t)w->numel * sizeof(float));
      pg_tensor_free(w);
      snprintf(path, sizeof path, "%s/grad/params/%s", cases[c], weights[i]);
      assert_int_equal(pg_h5_read_tensor(file, path, "nn_cases.h5", &want_grad[i]), PG_OK);
    }
#undef READ
    assert_int_equal(pg_tensor_set_requires_grad(x, true), PG_OK);
    pg_ctx *ctx = pg_ctx_new(0);
    pg_tensor *y = pg_attention_head_forward(ctx, &seed, x, causal, NULL);
    assert_non_null(y);
    assert_close(y->data, out->data, out->numel, 1e-5, 1e-4);
    assert_int_equal(pg_backward_with(ctx, y, grad_out->data), PG_OK);
    assert_close(x->grad, grad_x->data, grad_x->numel, 1e-5, 1e-4);
    for (int i = 0; i < 3; i++)
      assert_close(seed_parts[i]->weight->grad, want_grad[i]->data, want_grad[i]->numel, 1e-5, 1e-4);
    /* the default scale is another function of the same weights */
    pg_tensor *yp = pg_attention_head_forward(ctx, &plain, x, causal, NULL);
    double off = 0;
    for (int64_t i = 0; i < yp->numel; i++) off = fmax(off, fabs(yp->data[i] - out->data[i]));
    assert_true(off > 1e-3);
    /* the op at the seed's scale, against finite differences */
    head_args a = {causal, 0.0f, seed.scale};
    pg_tensor *in[4] = {x, seed.key.weight, seed.query.weight, seed.value.weight};
    assert_gradcheck(head_fn, &a, 4, in, &fd);
    pg_ctx_free(ctx);
    for (int i = 0; i < 3; i++) pg_tensor_free(want_grad[i]);
    pg_tensor_free(x), pg_tensor_free(out), pg_tensor_free(grad_out), pg_tensor_free(grad_x);
    pg_params_free(&ps);
  }
  H5Fclose(file);
  /* a scale kind that is not one of the two */
  pg_params ps;
  pg_params_init(&ps);
  pg_attention_head bad;
  assert_int_equal(pg_attention_head_init(&bad, &ps, "bad", 12, 5, 0.0f, (pg_head_scale)7, NULL), PG_ERR_ARG);
  assert_error_contains("scale_kind must be PG_HEAD_SCALE_HEAD_SIZE (0) or PG_HEAD_SCALE_N_EMBED (1), got 7");
  pg_params_free(&ps);
}

/* ---- layers: names, shapes, init; errors ---- */

static void test_attention_layers(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 800);
  pg_attention attn;
  assert_int_equal(pg_attention_init(&attn, &ps, "blocks.0.attn", 32, 4, true,
                                     PG_LINEAR_INIT_XAVIER_UNIFORM, 0, &rng), PG_OK);
  const char *names[] = {"blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
                         "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias"};
  const int64_t rows[] = {96, 96, 32, 32};
  for (int i = 0; i < 4; i++) {
    assert_string_equal(ps.items[i].name, names[i]);
    assert_int_equal(ps.items[i].tensor->shape[0], rows[i]);
  }
  double bound = sqrt(6.0 / (32 + 96));
  for (int64_t i = 0; i < attn.qkv.weight->numel; i++) assert_true(fabs(attn.qkv.weight->data[i]) <= bound);
  pg_attention_head head;
  assert_int_equal(pg_attention_head_init(&head, &ps, "sa.heads.0", 32, 8, 0.1f, PG_HEAD_SCALE_HEAD_SIZE, &rng), PG_OK);
  const char *head_names[] = {"sa.heads.0.key.weight", "sa.heads.0.query.weight", "sa.heads.0.value.weight"};
  for (int i = 0; i < 3; i++) {
    pg_param *p = &ps.items[4 + i];
    assert_string_equal(p->name, head_names[i]);
    assert_int_equal(p->tensor->shape[0], 8);
    assert_int_equal(p->tensor->shape[1], 32);
    for (int64_t j = 0; j < p->tensor->numel; j++) assert_true(fabs(p->tensor->data[j]) <= 1.0 / sqrt(32.0));
  }
  assert_int_equal(ps.count, 7); /* no biases on the head's Linears */
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_normal(ctx, PG_SHAPE(2, 5, 32), 0, 1, &rng);
  pg_tensor *y = pg_attention_forward(ctx, &attn, x, true, NULL);
  pg_tensor *y2 = pg_attention_op(ctx, x, attn.qkv.weight, attn.qkv.bias, attn.proj.weight,
                                  attn.proj.bias, 4, true, NULL);
  assert_close(y->data, y2->data, y->numel, 0, 0);
  pg_tensor *hy = pg_attention_head_forward(ctx, &head, x, true, &rng);
  assert_int_equal(hy->shape[2], 8);
  /* errors */
  pg_attention bad;
  assert_int_equal(pg_attention_init(&bad, &ps, "bad", 30, 4, true, PG_LINEAR_INIT_ZEROS, 0, NULL), PG_ERR_ARG);
  assert_error_contains("heads must be >= 1 and divide hidden 30, got 4");
  assert_null(pg_attention_op(ctx, x, attn.proj.weight, NULL, attn.proj.weight, NULL, 4, false, NULL));
  assert_error_contains("qkv_weight must be [3h, h] = [96, 32] for x [2, 5, 32], got [32, 32]");
  assert_null(pg_attention_op(ctx, x, attn.qkv.weight, NULL, attn.proj.weight, NULL, 5, false, NULL));
  assert_error_contains("hidden size h 32 is not divisible by heads 5");
  assert_null(pg_attention_op(ctx, pg_zeros(ctx, PG_SHAPE(10, 32)), attn.qkv.weight, NULL, attn.proj.weight, NULL, 4, false, NULL));
  assert_error_contains("x must be [B, T, h], got [10, 32]");
  pg_tensor *q = pg_zeros(ctx, PG_SHAPE(2, 5, 8));
  assert_null(pg_sdpa_op(ctx, q, q, q, 1, false, NULL, 1.0f, PG_SDPA_DEFAULT_SCALE, &rng));
  assert_error_contains("dropout must be in [0, 1), got 1");
  assert_null(pg_sdpa_op(ctx, q, q, q, 1, false, NULL, 0.2f, PG_SDPA_DEFAULT_SCALE, NULL));
  assert_error_contains("needs a random generator");
  assert_null(pg_sdpa_op(ctx, q, pg_zeros(ctx, PG_SHAPE(2, 4, 8)), q, 1, false, NULL, 0, PG_SDPA_DEFAULT_SCALE, NULL));
  assert_error_contains("equal B and T; q is [2, 5, 8], k is [2, 4, 8]");
  assert_null(pg_sdpa_packed_op(ctx, pg_zeros(ctx, PG_SHAPE(2, 5, 10)), 1, false, NULL));
  assert_error_contains("qkv must be [B, T, 3h], got [2, 5, 10]");
  pg_attention_head bad_head;
  assert_int_equal(pg_attention_head_init(&bad_head, &ps, "h2", 32, 8, 1.5f, PG_HEAD_SCALE_HEAD_SIZE, &rng), PG_ERR_ARG);
  assert_error_contains("dropout must be in [0, 1), got 1.5");
  pg_ctx_free(ctx);
  pg_params_free(&ps);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attention_matches_naive), cmocka_unit_test(test_attention_large_scores),
      cmocka_unit_test(test_attention_gradients),     cmocka_unit_test(test_attention_fully_masked_rows),
      cmocka_unit_test(test_sdpa_separate),           cmocka_unit_test(test_sdpa_explicit_scale),
      cmocka_unit_test(test_dropout),                 cmocka_unit_test(test_attention_head_seed_scale),
      cmocka_unit_test(test_attention_head),          cmocka_unit_test(test_attention_layers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
