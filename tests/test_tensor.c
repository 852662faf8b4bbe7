/* The core: tensors, the arena, the tape, the random generator, the GEMM
 * wrapper and the gradient checker, exercised with a tiny op defined here so
 * these tests do not depend on the op library. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "patchgrad/autograd/batches.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/op.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/autograd/tape.h"

/* square(x) = x * x, elementwise: the smallest op that uses the tape. */
static void square_backward(pg_ctx *ctx, pg_node *n) {
  float *gx = pg_grad_accum(ctx, n->in[0]);
  if (!gx) return;
  for (int64_t i = 0; i < n->out->numel; i++) gx[i] += 2.0f * n->in[0]->data[i] * n->out->grad[i];
}

static pg_tensor *square(pg_ctx *ctx, pg_tensor *x) {
  if (!x) return NULL;
  pg_tensor *out = pg_empty(ctx, x->ndim, x->shape);
  if (!out) return NULL;
  for (int64_t i = 0; i < x->numel; i++) out->data[i] = x->data[i] * x->data[i];
  pg_tape_record(ctx, "square", square_backward, out, 1, &x);
  return out;
}

/* sum of all elements, to reach a scalar */
static void total_backward(pg_ctx *ctx, pg_node *n) {
  float *gx = pg_grad_accum(ctx, n->in[0]);
  if (gx)
    for (int64_t i = 0; i < n->in[0]->numel; i++) gx[i] += n->out->grad[0];
}

static pg_tensor *total(pg_ctx *ctx, pg_tensor *x) {
  pg_tensor *out = pg_empty(ctx, 0, NULL);
  double s = 0;
  for (int64_t i = 0; i < x->numel; i++) s += x->data[i];
  out->data[0] = (float)s;
  pg_tape_record(ctx, "total", total_backward, out, 1, &x);
  return out;
}

static void test_creation(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *z = pg_zeros(ctx, PG_SHAPE(2, 3));
  assert_int_equal(z->ndim, 2);
  assert_int_equal(z->numel, 6);
  for (int i = 0; i < 6; i++) assert_true(z->data[i] == 0.0f);
  pg_tensor *o = pg_full(ctx, PG_SHAPE(4), 2.5f);
  for (int i = 0; i < 4; i++) assert_true(o->data[i] == 2.5f);
  pg_tensor *a = pg_arange(ctx, 5, 1.0f, 0.5f);
  float want[] = {1, 1.5f, 2, 2.5f, 3};
  assert_close(a->data, want, 5, 0, 0);
  pg_tensor *s = pg_zeros(ctx, 0, NULL);
  assert_int_equal(s->numel, 1);
  pg_tensor *big = pg_zeros(ctx, PG_SHAPE(1, 1, 1, 1, 1, 1, 1, 2));
  assert_int_equal(big->ndim, 8);
  float v[] = {1, 2, 3, 4};
  pg_tensor *f = pg_from_array(ctx, PG_SHAPE(2, 2), v);
  assert_close(f->data, v, 4, 0, 0);
  /* rank 9 and negative sizes are errors that name the problem */
  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  assert_null(pg_zeros(ctx, 9, nine));
  assert_error_contains("rank 9");
  assert_null(pg_zeros(ctx, PG_SHAPE(2, -3)));
  assert_error_contains("negative size -3");
  pg_ctx_free(ctx);
}

static void test_rng(void **state) {
  (void)state;
  pg_rng a, b;
  pg_rng_seed(&a, 42);
  pg_rng_seed(&b, 42);
  for (int i = 0; i < 100; i++) assert_true(pg_rng_next(&a) == pg_rng_next(&b));
  /* the stream is fixed by the algorithm: the first value for seed 42 */
  pg_rng_seed(&a, 0);
  assert_true(pg_rng_next(&a) == 0x99EC5F36CB75F2B4ULL);
  /* moments of large draws */
  pg_rng_seed(&a, 7);
  double s = 0, s2 = 0, u = 0;
  int n = 200000;
  for (int i = 0; i < n; i++) {
    double x = pg_rng_normal(&a);
    s += x;
    s2 += x * x;
    float w = pg_rng_uniform(&a);
    assert_true(w >= 0.0f && w < 1.0f);
    u += w;
  }
  assert_true(fabs(s / n) < 0.01);
  assert_true(fabs(s2 / n - 1.0) < 0.02);
  assert_true(fabs(u / n - 0.5) < 0.01);
  for (int i = 0; i < 1000; i++) assert_true(pg_rng_below(&a, 7) < 7);
  pg_tensor *t = pg_tensor_new(PG_SHAPE(10000), false);
  assert_int_equal(pg_fill_trunc_normal(t, 0.0f, 0.02f, -2.0f, 2.0f, &a), PG_OK);
  for (int i = 0; i < t->numel; i++) assert_true(fabsf(t->data[i]) <= 2.0f);
  /* a far tail that still holds some mass: every draw lands in it */
  assert_int_equal(pg_fill_trunc_normal(t, 0.0f, 1.0f, 3.0f, 3.5f, &a), PG_OK);
  for (int i = 0; i < t->numel; i++) assert_true(t->data[i] >= 3.0f && t->data[i] <= 3.5f);
  pg_tensor_free(t);
}

/* Intervals that redrawing could never fill are errors, not endless loops;
 * the tensor is left as it was. */
static void test_trunc_normal_errors(void **state) {
  (void)state;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  pg_tensor *t = pg_tensor_new(PG_SHAPE(4), false);
  pg_fill(t, 7.0f);
  assert_int_equal(pg_fill_trunc_normal(t, 0.0f, 1.0f, 2.0f, -2.0f, &rng), PG_ERR_ARG);
  assert_error_contains("low 2 is above high -2");
  assert_int_equal(pg_fill_trunc_normal(t, 0.0f, 1.0f, 10.0f, 11.0f, &rng), PG_ERR_ARG);
  assert_error_contains("redrawing would not end");
  assert_int_equal(pg_fill_trunc_normal(t, 5.0f, 0.0f, -1.0f, 1.0f, &rng), PG_ERR_ARG);
  assert_error_contains("holds 0 of Normal(5, 0)");
  assert_int_equal(pg_fill_trunc_normal(t, 0.0f, -1.0f, -1.0f, 1.0f, &rng), PG_ERR_ARG);
  assert_error_contains("std >= 0");
  assert_int_equal(pg_fill_trunc_normal(t, 0.0f, 1.0f, NAN, 1.0f, &rng), PG_ERR_ARG);
  assert_error_contains("NaN");
  for (int i = 0; i < 4; i++) assert_true(t->data[i] == 7.0f);
  /* std 0 with the mean inside: every value is the mean */
  assert_int_equal(pg_fill_trunc_normal(t, 0.5f, 0.0f, -1.0f, 1.0f, &rng), PG_OK);
  for (int i = 0; i < 4; i++) assert_true(t->data[i] == 0.5f);
  pg_tensor_free(t);
}

/* pg_backward_with needs the upstream gradient: NULL is an error. */
static void test_backward_with_null_gradient(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(3), true);
  pg_tensor *y = square(ctx, x);
  assert_int_equal(pg_backward_with(ctx, y, NULL), PG_ERR_ARG);
  assert_error_contains("grad_out is NULL");
  const float g[3] = {1, 1, 1};
  assert_int_equal(pg_backward_with(ctx, y, g), PG_OK); /* the tape is intact */
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_tape_accumulates(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(3), true);
  float xv[] = {1, -2, 3};
  memcpy(x->data, xv, sizeof xv);
  /* y = sum(x^2) + sum(x^2): x is used twice, both contributions add up */
  pg_tensor *y1 = total(ctx, square(ctx, x));
  pg_tensor *y2 = total(ctx, square(ctx, x));
  assert_int_equal(pg_backward(ctx, y1), PG_OK);
  assert_int_equal(pg_backward(ctx, y2), PG_OK);
  float want[] = {4, -8, 12};
  assert_close(x->grad, want, 3, 1e-6, 0);
  /* a parameter's gradient persists across steps until zeroed */
  pg_ctx_reset(ctx);
  assert_int_equal(pg_backward(ctx, total(ctx, square(ctx, x))), PG_OK);
  float want2[] = {6, -12, 18};
  assert_close(x->grad, want2, 3, 1e-6, 0);
  pg_tensor_zero_grad(x);
  for (int i = 0; i < 3; i++) assert_true(x->grad[i] == 0.0f);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_backward_with_upstream(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(2), true);
  x->data[0] = 3;
  x->data[1] = 5;
  pg_tensor *y = square(ctx, x);
  float up[] = {1, 10};
  assert_int_equal(pg_backward_with(ctx, y, up), PG_OK);
  float want[] = {6, 100};
  assert_close(x->grad, want, 2, 0, 0);
  /* a non-scalar needs an upstream gradient */
  assert_int_equal(pg_backward(ctx, y), PG_ERR_ARG);
  assert_error_contains("needs a scalar");
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_no_grad(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(2), true);
  bool was = pg_set_grad_enabled(ctx, false);
  assert_true(was);
  pg_tensor *y = total(ctx, square(ctx, x));
  assert_false(y->requires_grad);
  assert_int_equal(ctx->tape_len, 0);
  assert_int_equal(pg_backward(ctx, y), PG_ERR_STATE);
  assert_error_contains("does not require a gradient");
  pg_set_grad_enabled(ctx, true);
  /* inputs without requires_grad record nothing either */
  pg_tensor *c = pg_ones(ctx, PG_SHAPE(2));
  square(ctx, c);
  assert_int_equal(ctx->tape_len, 0);
  assert_int_equal(pg_backward(ctx, NULL), PG_ERR_ARG);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

/* The arena: after the first step, a training loop allocates nothing. */
static void test_arena_steady_state(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(1 << 16); /* small chunks, so several are used */
  pg_tensor *x = pg_tensor_new(PG_SHAPE(1000), true);
  size_t hw2 = 0;
  long mallocs2 = 0;
  for (int step = 1; step <= 10; step++) {
    pg_ctx_reset(ctx);
    pg_tensor *y = x;
    for (int k = 0; k < 20; k++) y = square(ctx, y);
    assert_int_equal(pg_backward(ctx, total(ctx, y)), PG_OK);
    if (step == 2) {
      hw2 = ctx->arena.high_water;
      mallocs2 = ctx->arena.mallocs;
    }
  }
  assert_true(ctx->arena.mallocs > 1);
  assert_int_equal(ctx->arena.high_water, hw2);
  assert_int_equal(ctx->arena.mallocs, mallocs2);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_gemm(void **state) {
  (void)state;
  /* all four transpose combinations against plain loops, odd sizes */
  int m = 7, n = 5, k = 9;
  pg_tensor *a = pg_test_randn(PG_SHAPE(9, 9), 1, 1), *b = pg_test_randn(PG_SHAPE(9, 9), 1, 2);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int serial = 0; serial < 2; serial++) {
        float c[35], want[35];
        for (int i = 0; i < m * n; i++) c[i] = 1.0f;
        for (int i = 0; i < m; i++)
          for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
              s += (double)(ta ? a->data[p * 9 + i] : a->data[i * 9 + p]) *
                   (tb ? b->data[j * 9 + p] : b->data[p * 9 + j]);
            want[i * n + j] = (float)(2.0 * s + 0.5);
          }
        (serial ? pg_gemm_serial : pg_gemm)(ta, tb, m, n, k, 2.0f, a->data, 9, b->data, 9, 0.5f, c, n);
        assert_close(c, want, m * n, 1e-4, 1e-5);
      }
  pg_tensor_free(a);
  pg_tensor_free(b);
}

static pg_tensor *square_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  return square(ctx, in[0]);
}

/* A deliberately wrong backward, for the checker to catch. */
static void wrong_backward(pg_ctx *ctx, pg_node *n) {
  float *gx = pg_grad_accum(ctx, n->in[0]);
  for (int64_t i = 0; i < n->out->numel; i++) gx[i] += 2.1f * n->in[0]->data[i] * n->out->grad[i];
}

static pg_tensor *wrong_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  (void)user;
  pg_tensor *out = square(ctx, in[0]);
  if (out->node) out->node->backward = wrong_backward;
  return out;
}

static void test_gradcheck(void **state) {
  (void)state;
  pg_tensor *x = pg_test_randn(PG_SHAPE(4, 3), 1.0f, 3);
  assert_gradcheck(square_fn, NULL, 1, &x, NULL);
  pg_gradcheck_result r;
  assert_int_equal(pg_gradcheck(wrong_fn, NULL, 1, &x, NULL, &r), PG_OK);
  assert_false(r.ok);
  assert_int_equal(r.checked, 12);
  /* a step tensor cannot be checked: its memory would vanish between runs */
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *s = pg_zeros(ctx, PG_SHAPE(2));
  assert_int_equal(pg_gradcheck(square_fn, NULL, 1, &s, NULL, &r), PG_ERR_ARG);
  assert_error_contains("input 0 must be a heap tensor");
  pg_ctx_free(ctx);
  pg_tensor_free(x);
}

/* pg_eval_batches: every sample once, in order, batches of the asked size
 * with a smaller last one, no gradient, modes restored, errors named. */
typedef struct {
  int64_t firsts[8], sizes[8], calls;
  double sum;
  bool grad_seen;
} batches_seen;

static pg_status see_batch(pg_ctx *ctx, pg_tensor *x, int64_t first, void *self) {
  (void)ctx;
  batches_seen *b = self;
  b->firsts[b->calls] = first;
  b->sizes[b->calls++] = x->shape[0];
  b->grad_seen |= x->requires_grad;
  assert_int_equal(x->ndim, 3);
  for (int64_t i = 0; i < x->numel; i++) b->sum += x->data[i] * (double)(first * 6 + i + 1);
  return b->calls == 7 ? pg_fail(PG_ERR_STATE, "seventh batch") : PG_OK;
}

static void test_eval_batches(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  float data[10 * 6];
  double expect = 0;
  for (int i = 0; i < 60; i++) expect += (data[i] = (float)(i % 7)) * (double)(i + 1);
  batches_seen b = {0};
  assert_int_equal(pg_eval_batches(ctx, data, 10, 2, (int64_t[]){2, 3}, 4, "t", see_batch, &b), PG_OK);
  assert_int_equal(b.calls, 3);
  assert_int_equal(b.firsts[1], 4);
  assert_int_equal(b.firsts[2], 8);
  assert_int_equal(b.sizes[0], 4);
  assert_int_equal(b.sizes[2], 2);
  assert_true(b.sum == expect);
  assert_false(b.grad_seen);
  assert_true(pg_set_grad_enabled(ctx, true));  /* restored: it was on */
  assert_true(pg_set_training(ctx, true));
  batches_seen c = {0};
  assert_int_equal(pg_eval_batches(ctx, data, 10, 2, (int64_t[]){2, 3}, 1, "t", see_batch, &c), PG_ERR_STATE);
  assert_int_equal(c.calls, 7); /* stopped at the error */
  assert_int_equal(pg_eval_batches(ctx, data, 10, 2, (int64_t[]){2, 3}, 0, "vae", see_batch, &c), PG_ERR_ARG);
  assert_error_contains("vae: batch must be >= 1, got 0");
  pg_ctx_free(ctx);
}

/* pg_backward_hooked: the hook sees every record once, newest first, after
 * its backward ran, including records whose output got no gradient. */
typedef struct {
  const pg_node *seen[8];
  int n;
  float grad_x_when_first_seen;
  pg_tensor *x;
} hook_log;

static void log_record(void *self, const pg_node *n) {
  hook_log *h = self;
  if (h->n == 1) h->grad_x_when_first_seen = h->x->grad ? h->x->grad[0] : -1.0f;
  h->seen[h->n++] = n;
}

static void test_backward_hooked(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(2), true);
  x->data[0] = 3, x->data[1] = -1;
  pg_tensor *unused = pg_mul(ctx, x, x);         /* record 1: reaches nothing */
  pg_tensor *sq = pg_mul(ctx, x, x);             /* record 2 */
  pg_tensor *loss = pg_sum(ctx, sq, 0, NULL, false); /* record 3 */
  assert_non_null(unused);
  hook_log h = {.x = x};
  const float one = 1.0f;
  assert_int_equal(pg_backward_hooked(ctx, loss, &one, log_record, &h), PG_OK);
  assert_int_equal(h.n, 3);
  assert_ptr_equal(h.seen[0], loss->node);
  assert_ptr_equal(h.seen[1], sq->node);
  assert_ptr_equal(h.seen[2], unused->node);
  assert_true(h.grad_x_when_first_seen == 6.0f); /* the hook of sq ran after its backward */
  assert_true(x->grad[0] == 6.0f && x->grad[1] == -2.0f);
  pg_ctx_free(ctx);
  pg_tensor_free(x);
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_creation),        cmocka_unit_test(test_rng),
      cmocka_unit_test(test_tape_accumulates), cmocka_unit_test(test_backward_with_upstream),
      cmocka_unit_test(test_no_grad),          cmocka_unit_test(test_arena_steady_state),
      cmocka_unit_test(test_gemm),             cmocka_unit_test(test_gradcheck),
      cmocka_unit_test(test_trunc_normal_errors), cmocka_unit_test(test_backward_with_null_gradient),
      cmocka_unit_test(test_eval_batches),     cmocka_unit_test(test_backward_hooked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
