/* Gradient buffers are recycled within a backward pass (tape.c): once an
 * op's backward has run, its output's gradient buffer is reused by later
 * gradients of the same size. Checked here: a long chain of same-sized ops
 * needs a few gradient buffers instead of one per op, the gradients stay
 * exact (against the analytic derivative), a buffer adopted by a reshape is
 * not handed out again while in use, a second backward in the same step
 * still adds up correctly, and the gated residual's adopted buffer (its
 * input's gradient without a copy) gives the generic ops' gradients. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "patchgrad/layers/modulate.h"
#include "patchgrad/autograd/ops.h"

#define N 1024
#define DEPTH 24

/* x -> DEPTH x (tanh, reshape to [32, 32] and back) -> sum; the gradient is
 * the product of the tanh slopes along the chain. */
static pg_tensor *chain(pg_ctx *ctx, pg_tensor *x) {
  pg_tensor *h = x;
  for (int i = 0; i < DEPTH; i++) {
    h = pg_tanh(ctx, h);
    h = pg_reshape(ctx, pg_reshape(ctx, h, PG_SHAPE(32, 32)), PG_SHAPE(N));
  }
  return pg_sum(ctx, h, 0, NULL, false);
}

static void expected_grad(const float *x, float *want, float times) {
  for (int64_t i = 0; i < N; i++) {
    double v = x[i], d = 1.0;
    for (int k = 0; k < DEPTH; k++) {
      v = tanh(v);
      d *= 1.0 - v * v;
    }
    want[i] = (float)(times * d);
  }
}

static void test_chain_reuses_buffers(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(1 << 20);
  pg_tensor *x = pg_test_randn(PG_SHAPE(N), 1.0f, 3);
  pg_tensor *loss = chain(ctx, x);
  assert_non_null(loss);
  const size_t after_forward = ctx->arena.used;
  assert_int_equal(pg_backward(ctx, loss), PG_OK);
  /* One buffer per op would be DEPTH * 4 KiB; recycled, a handful. */
  const size_t backward_bytes = ctx->arena.high_water - after_forward;
  assert_true(backward_bytes <= 6 * N * sizeof(float));
  float want[N];
  expected_grad(x->data, want, 1.0f);
  assert_close(x->grad, want, N, 1e-6, 1e-4);
  /* a second backward in the same step adds the same contribution again */
  assert_int_equal(pg_backward(ctx, loss), PG_OK);
  expected_grad(x->data, want, 2.0f);
  assert_close(x->grad, want, N, 1e-6, 1e-4);
  pg_ctx_free(ctx);
  pg_tensor_free(x);
}

/* Two branches from one intermediate: its gradient is the sum of both, and
 * recycling must not hand its buffer to the other branch meanwhile. */
static void test_shared_intermediate(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(1 << 20);
  pg_tensor *x = pg_test_randn(PG_SHAPE(N), 1.0f, 4);
  pg_tensor *t = pg_tanh(ctx, x);
  pg_tensor *a = pg_tanh(ctx, pg_mul_scalar(ctx, t, 2.0f));
  pg_tensor *b = pg_exp(ctx, pg_reshape(ctx, t, PG_SHAPE(32, 32)));
  pg_tensor *loss = pg_add(ctx, pg_sum(ctx, a, 0, NULL, false), pg_sum(ctx, b, 0, NULL, false));
  assert_int_equal(pg_backward(ctx, loss), PG_OK);
  float want[N];
  for (int64_t i = 0; i < N; i++) {
    double tv = tanh((double)x->data[i]), av = tanh(2 * tv);
    double dt = 2 * (1 - av * av) + exp(tv);
    want[i] = (float)(dt * (1 - tv * tv));
  }
  assert_close(x->grad, want, N, 1e-6, 1e-5);
  pg_ctx_free(ctx);
  pg_tensor_free(x);
}

/* Steps after the first reuse the same memory: the high-water mark holds. */
static void test_steady_high_water(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(1 << 16);
  pg_tensor *x = pg_test_randn(PG_SHAPE(N), 1.0f, 5);
  size_t high[4];
  for (int step = 0; step < 4; step++) {
    pg_ctx_reset(ctx);
    pg_tensor_zero_grad(x);
    assert_int_equal(pg_backward(ctx, chain(ctx, x)), PG_OK);
    high[step] = ctx->arena.high_water;
  }
  assert_int_equal(high[1], high[3]);
  pg_ctx_free(ctx);
  pg_tensor_free(x);
}

/* The gated residual hands its output's gradient buffer to an intermediate
 * x (no copy); x's other use must then add into it. Against the same graph
 * from generic ops. */
static pg_tensor *gated_fn(pg_ctx *ctx, pg_tensor *const *in, bool fused) {
  pg_tensor *x = pg_tanh(ctx, in[0]); /* an intermediate, used twice */
  pg_tensor *y = pg_exp(ctx, pg_mul_scalar(ctx, x, 0.5f));
  pg_tensor *r = fused ? pg_gated_residual_op(ctx, x, in[1], y)
                       : pg_add(ctx, x, pg_mul(ctx, pg_reshape(ctx, in[1], PG_SHAPE(2, 1, 8)), y));
  return pg_sum(ctx, pg_mul(ctx, r, r), 0, NULL, false);
}

static void test_gated_residual_adopts(void **state) {
  (void)state;
  pg_tensor *x0 = pg_test_randn(PG_SHAPE(2, 3, 8), 1.0f, 6);
  pg_tensor *gate = pg_test_randn(PG_SHAPE(2, 8), 1.0f, 7);
  pg_tensor *in[2] = {x0, gate};
  float want_x[48], want_g[16];
  for (int fused = 0; fused <= 1; fused++) {
    pg_ctx *ctx = pg_ctx_new(0);
    pg_tensor_zero_grad(x0);
    pg_tensor_zero_grad(gate);
    assert_int_equal(pg_backward(ctx, gated_fn(ctx, in, fused)), PG_OK);
    if (!fused) {
      memcpy(want_x, x0->grad, sizeof want_x);
      memcpy(want_g, gate->grad, sizeof want_g);
    } else {
      assert_close(x0->grad, want_x, 48, 1e-6, 1e-5);
      assert_close(gate->grad, want_g, 16, 1e-6, 1e-5);
    }
    pg_ctx_free(ctx);
  }
  pg_tensor_free(x0);
  pg_tensor_free(gate);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_reuses_buffers),
      cmocka_unit_test(test_shared_intermediate),
      cmocka_unit_test(test_steady_high_water),
      cmocka_unit_test(test_gated_residual_adopts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
