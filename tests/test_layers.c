/* Linear, LayerNorm, MLP, adaLN modulate and gated residual, the embedding
 * layer and the init schemes: finite-difference checks of every input and
 * parameter gradient, double-precision references, and error messages; and
 * the bias gradients of every layer with one, on many rows, against sums in
 * double. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "patchgrad/layers/embedding_layer.h"
#include "patchgrad/layers/layernorm.h"
#include "patchgrad/layers/linear.h"
#include "patchgrad/layers/mlp.h"
#include "patchgrad/layers/modulate.h"
#include "patchgrad/layers/patchify.h"
#include "patchgrad/layers/unpatchify.h"

/* ---- Linear ---- */

static pg_tensor *linear_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  bool bias = *(bool *)user;
  return pg_linear_op(ctx, in[0], in[1], bias ? in[2] : NULL);
}

/* y = x W^T + b in double, for any leading shape. */
static void linear_reference(const pg_tensor *x, const pg_tensor *w, const pg_tensor *b, double *y) {
  int64_t in = w->shape[1], out = w->shape[0], m = x->numel / in;
  for (int64_t i = 0; i < m; i++)
    for (int64_t o = 0; o < out; o++) {
      double s = b ? b->data[o] : 0.0;
      for (int64_t k = 0; k < in; k++) s += (double)x->data[i * in + k] * w->data[o * in + k];
      y[i * out + o] = s;
    }
}

static void test_linear_ranks(void **state) {
  (void)state;
  const int64_t shapes[4][4] = {{5, 0, 0, 0}, {4, 5, 0, 0}, {2, 3, 5, 0}, {2, 1, 3, 5}};
  for (int rank = 1; rank <= 4; rank++)
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
      bool bias = with_bias;
      pg_tensor *x = pg_test_randn(rank, shapes[rank - 1], 1.0f, 10 + rank);
      pg_tensor *w = pg_test_randn(PG_SHAPE(3, 5), 0.5f, 20 + rank);
      pg_tensor *b = pg_test_randn(PG_SHAPE(3), 0.5f, 30 + rank);
      pg_ctx *ctx = pg_ctx_new(0);
      pg_tensor *y = pg_linear_op(ctx, x, w, bias ? b : NULL);
      assert_non_null(y);
      assert_int_equal(y->ndim, rank);
      assert_int_equal(y->shape[rank - 1], 3);
      double ref[64];
      float reff[64];
      linear_reference(x, w, bias ? b : NULL, ref);
      for (int64_t i = 0; i < y->numel; i++) reff[i] = (float)ref[i];
      assert_close(y->data, reff, y->numel, 1e-5, 1e-5);
      pg_tensor *in[3] = {x, w, b};
      assert_gradcheck(linear_fn, &bias, bias ? 3 : 2, in, NULL);
      pg_ctx_free(ctx);
      pg_tensor_free(x);
      pg_tensor_free(w);
      pg_tensor_free(b);
    }
}

/* Gradients accumulate on leaves used twice, and beta = 0 is only used on
 * fresh buffers: y = linear(x) + linear(x) gives twice one pass's gradient. */
static void test_linear_accumulates(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(4, 3), 1.0f, 1);
  pg_tensor *w = pg_test_randn(PG_SHAPE(2, 3), 1.0f, 2);
  pg_tensor *b = pg_test_randn(PG_SHAPE(2), 1.0f, 3);
  pg_ctx *ctx = pg_ctx_new(0);
  float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  pg_tensor *y = pg_linear_op(ctx, x, w, b);
  assert_int_equal(pg_backward_with(ctx, y, ones), PG_OK);
  float gx[12], gw[6], gb[2];
  memcpy(gx, x->grad, sizeof gx);
  memcpy(gw, w->grad, sizeof gw);
  memcpy(gb, b->grad, sizeof gb);
  pg_tensor_zero_grad(x), pg_tensor_zero_grad(w), pg_tensor_zero_grad(b);
  pg_ctx_reset(ctx);
  pg_tensor *y1 = pg_linear_op(ctx, x, w, b), *y2 = pg_linear_op(ctx, x, w, b);
  assert_int_equal(pg_backward_with(ctx, y1, ones), PG_OK);
  assert_int_equal(pg_backward_with(ctx, y2, ones), PG_OK);
  for (int i = 0; i < 12; i++) gx[i] *= 2;
  for (int i = 0; i < 6; i++) gw[i] *= 2;
  for (int i = 0; i < 2; i++) gb[i] *= 2;
  assert_close(x->grad, gx, 12, 1e-6, 1e-6);
  assert_close(w->grad, gw, 6, 1e-6, 1e-6);
  assert_close(b->grad, gb, 2, 1e-6, 1e-6);
  /* the bias gradient is the column sum of the upstream gradient */
  const float eight[2] = {8, 8};
  assert_close(b->grad, eight, 2, 0, 0);
  pg_ctx_free(ctx);
  pg_tensor_free(x), pg_tensor_free(w), pg_tensor_free(b);
}

static void test_linear_errors(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_zeros(ctx, PG_SHAPE(2, 4));
  pg_tensor *w = pg_zeros(ctx, PG_SHAPE(3, 5));
  assert_null(pg_linear_op(ctx, x, w, NULL));
  assert_error_contains("x [2, 4] has 4 input features, weight [3, 5] expects 5");
  pg_tensor *w2 = pg_zeros(ctx, PG_SHAPE(3, 4)), *b = pg_zeros(ctx, PG_SHAPE(4));
  assert_null(pg_linear_op(ctx, x, w2, b));
  assert_error_contains("bias must be [3]");
  assert_null(pg_linear_op(ctx, x, pg_zeros(ctx, PG_SHAPE(12)), NULL));
  assert_error_contains("weight must be [out, in], got [12]");
  pg_clear_error();
  assert_null(pg_linear_op(ctx, NULL, w2, NULL));
  assert_string_equal(pg_last_error(), ""); /* NULL input: no new message */
  pg_params ps;
  pg_params_init(&ps);
  pg_linear l;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  assert_int_equal(pg_linear_init(&l, &ps, "fc", 0, 3, true, PG_LINEAR_INIT_DEFAULT, 0, &rng), PG_ERR_ARG);
  assert_error_contains("in and out features must be >= 1, got in 0");
  assert_int_equal(pg_linear_init(&l, &ps, "fc", 2, 3, true, PG_LINEAR_INIT_DEFAULT, 0, NULL), PG_ERR_ARG);
  assert_error_contains("rng is NULL");
  assert_int_equal(pg_linear_init(&l, &ps, "fc", 2, 3, true, PG_LINEAR_INIT_NORMAL, -1, &rng), PG_ERR_ARG);
  assert_error_contains("std >= 0, got -1");
  assert_int_equal(pg_linear_init(&l, &ps, "fc", 2, 3, true, (pg_linear_init_kind)9, 0, &rng), PG_ERR_ARG);
  assert_error_contains("unknown init kind 9");
  assert_int_equal(pg_linear_init(&l, &ps, "fc", 2, 3, true, PG_LINEAR_INIT_ZEROS, 0, NULL), PG_OK);
  assert_int_equal(pg_linear_init(&l, &ps, "fc", 2, 3, true, PG_LINEAR_INIT_ZEROS, 0, NULL), PG_ERR_ARG);
  assert_error_contains("'fc.weight' exists already");
  pg_params_free(&ps);
  pg_ctx_free(ctx);
}

/* mean and variance of a tensor, in double */
static void moments(const pg_tensor *t, double *mean, double *var) {
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < t->numel; i++) s += t->data[i];
  *mean = s / (double)t->numel;
  for (int64_t i = 0; i < t->numel; i++) s2 += (t->data[i] - *mean) * (t->data[i] - *mean);
  *var = s2 / (double)t->numel;
}

static double max_abs(const pg_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < t->numel; i++) m = fmax(m, fabs(t->data[i]));
  return m;
}

static void test_linear_init_schemes(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 7);
  const int64_t in = 256, out = 192;
  pg_linear def, xav, nrm, zer, nob;
  assert_int_equal(pg_linear_init(&def, &ps, "def", in, out, true, PG_LINEAR_INIT_DEFAULT, 0, &rng), PG_OK);
  assert_int_equal(pg_linear_init(&xav, &ps, "xav", in, out, true, PG_LINEAR_INIT_XAVIER_UNIFORM, 0, &rng), PG_OK);
  assert_int_equal(pg_linear_init(&nrm, &ps, "nrm", in, out, true, PG_LINEAR_INIT_NORMAL, 0.02f, &rng), PG_OK);
  assert_int_equal(pg_linear_init(&zer, &ps, "zer", in, out, true, PG_LINEAR_INIT_ZEROS, 0, NULL), PG_OK);
  assert_int_equal(pg_linear_init(&nob, &ps, "nob", in, out, false, PG_LINEAR_INIT_DEFAULT, 0, &rng), PG_OK);
  assert_null(nob.bias);
  assert_int_equal(ps.count, 9);
  pg_param *p = pg_params_find(&ps, "def.weight");
  assert_non_null(p);
  assert_int_equal(p->kind, PG_PARAM_WEIGHT);
  assert_int_equal(pg_params_find(&ps, "def.bias")->kind, PG_PARAM_BIAS);
  assert_int_equal(def.weight->shape[0], out);
  assert_int_equal(def.weight->shape[1], in);
  double mean, var;
  /* default: uniform +-1/sqrt(in), variance bound^2 / 3, the bias too */
  double bound = 1.0 / sqrt((double)in);
  assert_true(max_abs(def.weight) <= bound);
  assert_true(max_abs(def.weight) > 0.95 * bound);
  moments(def.weight, &mean, &var);
  assert_true(fabs(mean) < 0.01 * bound * 3);
  assert_true(fabs(var / (bound * bound / 3) - 1) < 0.03);
  assert_true(max_abs(def.bias) <= bound && max_abs(def.bias) > 0.5 * bound);
  /* xavier: uniform +-sqrt(6/(in+out)), bias 0 */
  bound = sqrt(6.0 / (double)(in + out));
  assert_true(max_abs(xav.weight) <= bound && max_abs(xav.weight) > 0.95 * bound);
  moments(xav.weight, &mean, &var);
  assert_true(fabs(var / (bound * bound / 3) - 1) < 0.03);
  assert_true(max_abs(xav.bias) == 0.0);
  /* normal(0, 0.02), bias 0 */
  moments(nrm.weight, &mean, &var);
  assert_true(fabs(mean) < 0.001);
  assert_true(fabs(sqrt(var) / 0.02 - 1) < 0.02);
  assert_true(max_abs(nrm.bias) == 0.0);
  assert_true(max_abs(zer.weight) == 0.0 && max_abs(zer.bias) == 0.0);
  /* the forward of the layer is the op on its parameters */
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_normal(ctx, PG_SHAPE(2, in), 0, 1, &rng);
  pg_tensor *y1 = pg_linear_forward(ctx, &def, x), *y2 = pg_linear_op(ctx, x, def.weight, def.bias);
  assert_close(y1->data, y2->data, y1->numel, 0, 0);
  pg_ctx_free(ctx);
  pg_params_free(&ps);
}

/* ---- LayerNorm ---- */

typedef struct {
  float eps;
  bool affine;
} ln_args;

static pg_tensor *layernorm_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  ln_args *a = user;
  return pg_layernorm_op(ctx, in[0], a->affine ? in[1] : NULL, a->affine ? in[2] : NULL, a->eps);
}

/* LayerNorm forward and input gradient in double, for dy given. */
static void layernorm_reference(const float *x, const float *w, const float *b, const float *dy,
                                int64_t rows, int64_t d, double eps, double *y, double *dx) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    double mean = 0, var = 0;
    for (int64_t j = 0; j < d; j++) mean += xr[j];
    mean /= (double)d;
    for (int64_t j = 0; j < d; j++) var += (xr[j] - mean) * (xr[j] - mean);
    var /= (double)d;
    double rstd = 1.0 / sqrt(var + eps), mg = 0, mgx = 0;
    for (int64_t j = 0; j < d; j++) {
      double xhat = (xr[j] - mean) * rstd, g = dy[r * d + j] * (w ? w[j] : 1.0);
      y[r * d + j] = xhat * (w ? w[j] : 1.0) + (b ? b[j] : 0.0);
      mg += g / (double)d;
      mgx += g * xhat / (double)d;
    }
    for (int64_t j = 0; j < d; j++) {
      double xhat = (xr[j] - mean) * rstd, g = dy[r * d + j] * (w ? w[j] : 1.0);
      dx[r * d + j] = rstd * (g - mg - xhat * mgx);
    }
  }
}

static void test_layernorm_gradients(void **state) {
  (void)state;
  for (int affine = 0; affine <= 1; affine++) {
    ln_args a = {1e-5f, affine};
    pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3, 7), 1.0f, 40);
    pg_tensor *w = pg_test_randn(PG_SHAPE(7), 0.5f, 41);
    pg_tensor *b = pg_test_randn(PG_SHAPE(7), 0.5f, 42);
    for (int i = 0; i < 7; i++) w->data[i] += 1.0f;
    pg_tensor *in[3] = {x, w, b};
    assert_gradcheck(layernorm_fn, &a, affine ? 3 : 1, in, NULL);
    pg_tensor_free(x), pg_tensor_free(w), pg_tensor_free(b);
  }
  /* the fused kernel runs multi-threaded above 32k elements: check it too */
  ln_args a = {1e-6f, true};
  pg_tensor *x = pg_test_randn(PG_SHAPE(300, 128), 1.0f, 43);
  pg_tensor *w = pg_test_randn(PG_SHAPE(128), 1.0f, 44), *b = pg_test_randn(PG_SHAPE(128), 1.0f, 45);
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *y = layernorm_fn(ctx, (pg_tensor *[]){x, w, b}, &a);
  pg_rng rng;
  pg_rng_seed(&rng, 46);
  pg_tensor *dy = pg_normal(ctx, PG_SHAPE(300, 128), 0, 1, &rng);
  assert_int_equal(pg_backward_with(ctx, y, dy->data), PG_OK);
  static double yref[300 * 128], dxref[300 * 128];
  layernorm_reference(x->data, w->data, b->data, dy->data, 300, 128, 1e-6, yref, dxref);
  double dw[128] = {0}, db[128] = {0};
  for (int64_t r = 0; r < 300; r++)
    for (int j = 0; j < 128; j++) {
      double xhat = (yref[r * 128 + j] - b->data[j]) / w->data[j];
      dw[j] += dy->data[r * 128 + j] * xhat;
      db[j] += dy->data[r * 128 + j];
    }
  for (int64_t i = 0; i < 300 * 128; i++) {
    assert_true(fabs(y->data[i] - yref[i]) < 1e-5 + 1e-5 * fabs(yref[i]));
    assert_true(fabs(x->grad[i] - dxref[i]) < 1e-5 + 1e-4 * fabs(dxref[i]));
  }
  for (int j = 0; j < 128; j++) {
    assert_true(fabs(w->grad[j] - dw[j]) < 1e-4 + 1e-4 * fabs(dw[j]));
    assert_true(fabs(b->grad[j] - db[j]) < 1e-4 + 1e-4 * fabs(db[j]));
  }
  pg_ctx_free(ctx);
  pg_tensor_free(x), pg_tensor_free(w), pg_tensor_free(b);
}

/* Mean 1e3, spread 1: the one-pass E[x^2] - E[x]^2 form would lose about
 * every digit; the two-pass form stays at float rounding. */
static void test_layernorm_large_offset(void **state) {
  (void)state;
  const int64_t rows = 6, d = 384;
  pg_tensor *x = pg_test_randn(PG_SHAPE(rows, d), 1.0f, 50);
  for (int64_t i = 0; i < x->numel; i++) x->data[i] += 1000.0f;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *y = pg_layernorm_op(ctx, x, NULL, NULL, 1e-5f);
  pg_rng rng;
  pg_rng_seed(&rng, 51);
  pg_tensor *dy = pg_normal(ctx, PG_SHAPE(rows, d), 0, 1, &rng);
  assert_int_equal(pg_backward_with(ctx, y, dy->data), PG_OK);
  static double yref[6 * 384], dxref[6 * 384];
  layernorm_reference(x->data, NULL, NULL, dy->data, rows, d, 1e-5, yref, dxref);
  double worst_y = 0, worst_dx = 0;
  for (int64_t i = 0; i < x->numel; i++) {
    worst_y = fmax(worst_y, fabs(y->data[i] - yref[i]));
    worst_dx = fmax(worst_dx, fabs(x->grad[i] - dxref[i]));
  }
  assert_true(worst_y < 2e-6);
  assert_true(worst_dx < 2e-5);
  /* and the normalised rows have mean 0 and variance 1 */
  for (int64_t r = 0; r < rows; r++) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < d; j++) m += y->data[r * d + j] / (double)d;
    for (int64_t j = 0; j < d; j++) v += (y->data[r * d + j] - m) * (y->data[r * d + j] - m) / (double)d;
    assert_true(fabs(m) < 1e-6);
    assert_true(fabs(v - 1.0) < 1e-4);
  }
  pg_ctx_free(ctx);
  pg_tensor_free(x);
}

static void test_layernorm_layer(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_layernorm ln, plain;
  assert_int_equal(pg_layernorm_init(&ln, &ps, "norm1", 8, 1e-5f, true), PG_OK);
  assert_int_equal(pg_layernorm_init(&plain, &ps, "norm2", 8, 1e-6f, false), PG_OK);
  assert_int_equal(ps.count, 2);
  assert_int_equal(pg_params_find(&ps, "norm1.weight")->kind, PG_PARAM_NORM);
  assert_int_equal(pg_params_find(&ps, "norm1.bias")->kind, PG_PARAM_NORM);
  for (int j = 0; j < 8; j++) {
    assert_true(ln.weight->data[j] == 1.0f);
    assert_true(ln.bias->data[j] == 0.0f);
  }
  assert_null(plain.weight);
  pg_ctx *ctx = pg_ctx_new(0);
  pg_rng rng;
  pg_rng_seed(&rng, 3);
  pg_tensor *x = pg_normal(ctx, PG_SHAPE(3, 8), 2, 3, &rng);
  pg_tensor *a = pg_layernorm_forward(ctx, &ln, x), *b = pg_layernorm_forward(ctx, &plain, x);
  assert_close(a->data, b->data, 24, 1e-5, 1e-5); /* weight 1, bias 0: the same function */
  /* errors name the argument and the shapes */
  assert_null(pg_layernorm_forward(ctx, &ln, pg_zeros(ctx, PG_SHAPE(3, 5))));
  assert_error_contains("x [3, 5] must end in the layer's dim 8");
  assert_null(pg_layernorm_op(ctx, x, pg_zeros(ctx, PG_SHAPE(4)), NULL, 1e-5f));
  assert_error_contains("weight must be [8] for x [3, 8], got [4]");
  assert_null(pg_layernorm_op(ctx, x, NULL, NULL, -1.0f));
  assert_error_contains("eps must be finite and >= 0, got -1");
  assert_int_equal(pg_layernorm_init(&ln, &ps, "bad", 0, 1e-5f, true), PG_ERR_ARG);
  assert_error_contains("dim must be >= 1, got 0");
  pg_ctx_free(ctx);
  pg_params_free(&ps);
}

/* ---- MLP ---- */

static pg_tensor *mlp_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  pg_tensor *h = pg_linear_gelu_op(ctx, in[0], in[1], in[2]);
  return pg_linear_op(ctx, h, in[3], in[4]);
}

static void test_mlp(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3, 4), 1.0f, 60);
  pg_tensor *w1 = pg_test_randn(PG_SHAPE(8, 4), 0.7f, 61), *b1 = pg_test_randn(PG_SHAPE(8), 0.5f, 62);
  pg_tensor *w2 = pg_test_randn(PG_SHAPE(4, 8), 0.5f, 63), *b2 = pg_test_randn(PG_SHAPE(4), 0.5f, 64);
  pg_tensor *in[5] = {x, w1, b1, w2, b2};
  assert_gradcheck(mlp_fn, NULL, 5, in, NULL);
  /* the fused op is gelu_tanh(linear(x)) */
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *h = pg_linear_gelu_op(ctx, x, w1, b1), *z = pg_linear_op(ctx, x, w1, b1);
  for (int64_t i = 0; i < z->numel; i++) {
    double v = z->data[i];
    double want = 0.5 * v * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
    assert_true(fabs(h->data[i] - want) < 1e-6 + 1e-5 * fabs(want));
  }
  assert_null(pg_linear_gelu_op(ctx, x, w2, b1));
  assert_error_contains("pg_linear_gelu_op: x [2, 3, 4] has 4 input features, weight [4, 8] expects 8");
  /* the layer: names, shapes and the same function */
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 65);
  pg_mlp m;
  assert_int_equal(pg_mlp_init(&m, &ps, "blocks.0.mlp", 4, 16, 4, PG_LINEAR_INIT_XAVIER_UNIFORM, 0, &rng), PG_OK);
  const char *names[] = {"blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight",
                         "blocks.0.mlp.fc2.bias"};
  for (int i = 0; i < 4; i++) assert_string_equal(ps.items[i].name, names[i]);
  assert_int_equal(m.fc1.weight->shape[0], 16);
  assert_int_equal(m.fc2.weight->shape[1], 16);
  pg_tensor *y = pg_mlp_forward(ctx, &m, x);
  pg_tensor *y2 = mlp_fn(ctx, (pg_tensor *[]){x, m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias}, NULL);
  assert_close(y->data, y2->data, y->numel, 0, 0);
  /* large enough for the threaded elementwise path, checked against the composition */
  pg_tensor *big = pg_normal(ctx, PG_SHAPE(128, 4), 0, 1, &rng);
  pg_tensor *wb = pg_normal(ctx, PG_SHAPE(512, 4), 0, 1, &rng);
  pg_tensor *hb = pg_linear_gelu_op(ctx, big, wb, NULL), *zb = pg_linear_op(ctx, big, wb, NULL);
  for (int64_t i = 0; i < zb->numel; i += 97) {
    double v = zb->data[i];
    double want = 0.5 * v * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
    assert_true(fabs(hb->data[i] - want) < 1e-5 + 1e-5 * fabs(want));
  }
  pg_params_free(&ps);
  pg_ctx_free(ctx);
  for (int i = 0; i < 5; i++) pg_tensor_free(in[i]);
}

/* ---- modulate and gated residual ---- */

static pg_tensor *modulate_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return pg_modulate_op(ctx, in[0], in[1], in[2]);
}

static pg_tensor *gated_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return pg_gated_residual_op(ctx, in[0], in[1], in[2]);
}

static void test_modulate(void **state) {
  (void)state;
  const int64_t shapes[2][3] = {{3, 4, 5}, {3, 5, 0}};
  for (int s = 0; s < 2; s++) {
    int rank = s == 0 ? 3 : 2;
    pg_tensor *x = pg_test_randn(rank, shapes[s], 1.0f, 70);
    pg_tensor *y = pg_test_randn(rank, shapes[s], 1.0f, 71);
    pg_tensor *shift = pg_test_randn(PG_SHAPE(3, 5), 1.0f, 72);
    pg_tensor *scale = pg_test_randn(PG_SHAPE(3, 5), 1.0f, 73);
    pg_tensor *in[3] = {x, shift, scale};
    assert_gradcheck(modulate_fn, NULL, 3, in, NULL);
    pg_tensor *gin[3] = {x, scale, y};
    assert_gradcheck(gated_fn, NULL, 3, gin, NULL);
    /* values, at one element: b = 2, last token, channel 3 */
    pg_ctx *ctx = pg_ctx_new(0);
    pg_tensor *m = pg_modulate_op(ctx, x, shift, scale), *g = pg_gated_residual_op(ctx, x, scale, y);
    int64_t i = x->numel - 5 + 3;
    assert_float_equal(m->data[i], x->data[i] * (1 + scale->data[13]) + shift->data[13], 1e-6);
    assert_float_equal(g->data[i], x->data[i] + scale->data[13] * y->data[i], 1e-6);
    pg_ctx_free(ctx);
    pg_tensor_free(x), pg_tensor_free(y), pg_tensor_free(shift), pg_tensor_free(scale);
  }
  /* x and y the same tensor: both gradients land in one buffer */
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3, 4), 1.0f, 74), *gate = pg_test_randn(PG_SHAPE(2, 4), 1.0f, 75);
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *out = pg_gated_residual_op(ctx, x, gate, x);
  float ones[24];
  for (int i = 0; i < 24; i++) ones[i] = 1;
  assert_int_equal(pg_backward_with(ctx, out, ones), PG_OK);
  for (int i = 0; i < 24; i++) assert_float_equal(x->grad[i], 1 + gate->data[(i / 12) * 4 + i % 4], 1e-6);
  /* errors */
  assert_null(pg_modulate_op(ctx, x, gate, pg_zeros(ctx, PG_SHAPE(3, 4))));
  assert_error_contains("pg_modulate_op: scale must be [B, h] = [2, 4] for x [2, 3, 4], got [3, 4]");
  assert_null(pg_gated_residual_op(ctx, x, gate, pg_zeros(ctx, PG_SHAPE(2, 4, 4))));
  assert_error_contains("x [2, 3, 4] and y [2, 4, 4] must have the same shape");
  assert_null(pg_modulate_op(ctx, pg_zeros(ctx, PG_SHAPE(4)), gate, gate));
  assert_error_contains("rank >= 2");
  pg_ctx_free(ctx);
  pg_tensor_free(x), pg_tensor_free(gate);
}

/* Big enough for the threaded paths; compared with a plain loop. */
static void test_modulate_threaded(void **state) {
  (void)state;
  const int64_t B = 4, T = 64, H = 160;
  pg_tensor *x = pg_test_randn(PG_SHAPE(B, T, H), 1.0f, 76), *y = pg_test_randn(PG_SHAPE(B, T, H), 1.0f, 77);
  pg_tensor *sh = pg_test_randn(PG_SHAPE(B, H), 1.0f, 78), *sc = pg_test_randn(PG_SHAPE(B, H), 1.0f, 79);
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *m = pg_modulate_op(ctx, x, sh, sc);
  pg_tensor *g = pg_gated_residual_op(ctx, m, sc, y);
  pg_rng rng;
  pg_rng_seed(&rng, 80);
  pg_tensor *dout = pg_normal(ctx, PG_SHAPE(B, T, H), 0, 1, &rng);
  assert_int_equal(pg_backward_with(ctx, g, dout->data), PG_OK);
  /* out = m + sc * y, m = x * (1 + sc) + sh: sc is both modulate's scale
   * and the gate, so its gradient sums both uses */
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < H; j += 7) {
      double dsh = 0, dsc = 0;
      for (int64_t t = 0; t < T; t++) {
        int64_t i = (b * T + t) * H + j;
        double gm = dout->data[i]; /* gradient reaching m through the residual */
        double mv = x->data[i] * (1 + sc->data[b * H + j]) + sh->data[b * H + j];
        dsh += gm;
        dsc += gm * x->data[i] + dout->data[i] * y->data[i];
        assert_true(fabs(m->data[i] - mv) < 1e-5);
        assert_true(fabs(x->grad[i] - gm * (1 + sc->data[b * H + j])) < 1e-5);
        assert_true(fabs(y->grad[i] - dout->data[i] * sc->data[b * H + j]) < 1e-5);
      }
      assert_true(fabs(sh->grad[b * H + j] - dsh) < 1e-4);
      assert_true(fabs(sc->grad[b * H + j] - dsc) < 1e-4);
    }
  pg_ctx_free(ctx);
  pg_tensor_free(x), pg_tensor_free(y), pg_tensor_free(sh), pg_tensor_free(sc);
}

/* ---- embedding layer ---- */

static const int64_t emb_idx[6] = {3, 0, 3, 4, 1, 3}; /* row 3 three times, row 2 never */

static pg_tensor *embedding_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  pg_embedding_layer e = {in[0], in[0]->shape[0], in[0]->shape[1]}; /* a layer over this table */
  (void)user;
  return pg_embedding_layer_forward(ctx, &e, PG_SHAPE(2, 3), emb_idx);
}

static void test_embedding(void **state) {
  (void)state;
  pg_tensor *table = pg_test_randn(PG_SHAPE(5, 4), 1.0f, 90);
  assert_gradcheck(embedding_fn, NULL, 1, &table, NULL);
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *out = embedding_fn(ctx, &table, NULL);
  assert_int_equal(out->ndim, 3);
  assert_int_equal(out->shape[2], 4);
  for (int i = 0; i < 6; i++) assert_close(out->data + i * 4, table->data + emb_idx[i] * 4, 4, 0, 0);
  pg_tensor_zero_grad(table);
  float ones[24];
  for (int i = 0; i < 24; i++) ones[i] = 1;
  assert_int_equal(pg_backward_with(ctx, out, ones), PG_OK);
  assert_float_equal(table->grad[3 * 4], 3.0f, 0); /* picked three times */
  assert_float_equal(table->grad[2 * 4], 0.0f, 0); /* never picked */
  assert_float_equal(table->grad[0], 1.0f, 0);
  int64_t bad[2] = {1, 5};
  pg_embedding_layer te = {table, 5, 4};
  assert_null(pg_embedding_layer_forward(ctx, &te, PG_SHAPE(2), bad));
  assert_error_contains("index 5 at position 1 is outside [0, 5)");
  bad[1] = -1;
  assert_null(pg_embedding_layer_forward(ctx, &te, PG_SHAPE(2), bad));
  assert_error_contains("index -1 at position 1");
  /* the layer: name, kind, init moments */
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 91);
  pg_embedding_layer e;
  assert_int_equal(pg_embedding_layer_init(&e, &ps, "y_embedder.embedding_table", 1001, 64, 0.02f, &rng), PG_OK);
  pg_param *p = pg_params_find(&ps, "y_embedder.embedding_table.weight");
  assert_non_null(p);
  assert_int_equal(p->kind, PG_PARAM_EMBEDDING);
  double mean, var;
  moments(e.weight, &mean, &var);
  assert_true(fabs(mean) < 0.001);
  assert_true(fabs(sqrt(var) / 0.02 - 1) < 0.02);
  int64_t labels[3] = {1000, 0, 7};
  pg_tensor *le = pg_embedding_layer_forward(ctx, &e, PG_SHAPE(3), labels);
  assert_close(le->data, e.weight->data + 1000 * 64, 64, 0, 0);
  assert_int_equal(pg_embedding_layer_init(&e, &ps, "bad", 0, 4, 1.0f, &rng), PG_ERR_ARG);
  assert_error_contains("num_embeddings and embedding_dim must be >= 1, got 0");
  pg_params_free(&ps);
  pg_ctx_free(ctx);
  pg_tensor_free(table);
}

/* ---- Bias gradients over many rows ----
 * Every bias gradient is the column sums of the output's gradient
 * (pg_column_sums): summed in double and rounded once, so within half an
 * ulp of the float64 sum computed here (plus the float64 sum's own error,
 * far smaller). A float accumulator fails this on these sizes: on the
 * Unpatchify case (output 2 x 13^3) it is off by about 2e-4, PyTorch's
 * float32 by 1.4e-5. */

/* Runs backward from y with a normal upstream gradient and checks bias's
 * gradient against the float64 column sums of that gradient ([rows, cols]). */
static void check_bias_grad(pg_ctx *ctx, pg_tensor *y, const pg_tensor *bias, const char *what) {
  assert_non_null(y);
  const int64_t cols = bias->numel, rows = y->numel / cols;
  pg_tensor *g = pg_test_randn(1, &y->numel, 1.0f, 77);
  assert_int_equal(pg_backward_with(ctx, y, g->data), PG_OK);
  double worst_ulps = 0, worst_abs = 0;
  for (int64_t c = 0; c < cols; c++) {
    double want = 0;
    for (int64_t r = 0; r < rows; r++) want += g->data[r * cols + c];
    const float wf = (float)want;
    const double ulp = (double)nextafterf(fabsf(wf), INFINITY) - fabsf(wf);
    const double err = fabs((double)bias->grad[c] - want);
    worst_abs = fmax(worst_abs, err);
    worst_ulps = fmax(worst_ulps, err / ulp);
  }
  if (worst_ulps > 0.51 || worst_abs > 1.4e-5)
    print_error("%s: bias gradient off by %.3g (%.2f ulp) over %lld rows\n", what, worst_abs,
                worst_ulps, (long long)rows);
  assert_true(worst_ulps <= 0.51); /* half an ulp, and the float64 sum's own error */
  assert_true(worst_abs <= 1.4e-5);  /* PyTorch's float32 error on the Unpatchify case */
  pg_tensor_free(g);
  pg_ctx_reset(ctx);
}

static void test_bias_gradients_over_many_rows(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  pg_params ps;
  pg_params_init(&ps);
  /* Unpatchify to 2 x 13^3 pixels of 3 channels */
  pg_unpatchify up;
  assert_int_equal(pg_unpatchify_init(&up, &ps, "up", 2, 3, 3, 1, 1, true,
                                      PG_UNPATCH_INIT_DEFAULT, &rng), PG_OK);
  pg_tensor *tokens = pg_normal(ctx, PG_SHAPE(2, 13, 13, 13, 2), 0.0f, 1.0f, &rng);
  check_bias_grad(ctx, pg_unpatchify_forward(ctx, &up, tokens, NULL), up.bias, "unpatchify");
  /* Patchify of 2 x 26^3 pixels into 2 x 13^3 tokens */
  pg_patchify pp;
  assert_int_equal(pg_patchify_init(&pp, &ps, "pp", 1, 3, 3, 2, 2, true, &rng), PG_OK);
  pg_tensor *img = pg_normal(ctx, PG_SHAPE(2, 26, 26, 26, 1), 0.0f, 1.0f, &rng);
  check_bias_grad(ctx, pg_patchify_forward(ctx, &pp, img), pp.bias, "patchify");
  /* Linear and LayerNorm over 20000 rows */
  pg_linear lin;
  assert_int_equal(pg_linear_init(&lin, &ps, "lin", 4, 5, true, PG_LINEAR_INIT_DEFAULT, 0, &rng),
                   PG_OK);
  pg_tensor *x = pg_normal(ctx, PG_SHAPE(100, 200, 4), 0.0f, 1.0f, &rng);
  check_bias_grad(ctx, pg_linear_forward(ctx, &lin, x), lin.bias, "linear");
  pg_layernorm ln;
  assert_int_equal(pg_layernorm_init(&ln, &ps, "ln", 7, 1e-5f, true), PG_OK);
  x = pg_normal(ctx, PG_SHAPE(20000, 7), 0.0f, 1.0f, &rng);
  check_bias_grad(ctx, pg_layernorm_forward(ctx, &ln, x), ln.bias, "layernorm");
  pg_params_free(&ps);
  pg_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear_ranks),         cmocka_unit_test(test_linear_accumulates),
      cmocka_unit_test(test_linear_errors),        cmocka_unit_test(test_linear_init_schemes),
      cmocka_unit_test(test_layernorm_gradients),  cmocka_unit_test(test_layernorm_large_offset),
      cmocka_unit_test(test_layernorm_layer),      cmocka_unit_test(test_mlp),
      cmocka_unit_test(test_modulate),             cmocka_unit_test(test_modulate_threaded),
      cmocka_unit_test(test_embedding),            cmocka_unit_test(test_bias_gradients_over_many_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
