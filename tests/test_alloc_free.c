/* The allocation-free training loop: after its first step, a training loop
 * built from the ops takes all its memory from the context's arena, which
 * pg_ctx_reset rewinds. Proven two ways over steps 2..10 of a two-layer
 * network: the arena's high-water mark and chunk count do not move, and the
 * allocation counter linked into this program (tests/alloc_count.c) counts
 * no call to malloc/calloc/realloc/aligned_alloc/posix_memalign/memalign at
 * all (from the library, BLIS or OpenMP alike). Then the same for attention
 * steps that leave the plain path: causal with padded keys, dropout, and
 * heads too large for the fused kernel. All on the BLIS engine: with
 * oneDNN's, every product it computes allocates inside oneDNN
 * (autograd/gemm_engine.h), and PG_GEMM_ENGINE=blis is the promise tested
 * here. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/gemm_engine.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/layers/attention.h"

/* The allocation counter (cli/alloc_count.c, linked into this program)
 * replaces malloc and friends for the whole process. Under AddressSanitizer,
 * which must own every allocation itself, it is compiled out and only the
 * arena assertions run. */
static long allocations(void) { return pg_alloc_count(); }

/* ---- A two-layer network trained by plain gradient descent ---- */

typedef struct {
  pg_tensor *w1, *b1, *w2, *b2;
  pg_tensor *x, *y; /* the data: heap tensors without gradients */
  pg_rng rng;
} net;

/* One step: forward, backward, update, reset. Uses most op families:
 * matmul, broadcasting add, gelu, dropout, reshape, softmax, mul, sum,
 * mean and mse. Returns the loss. */
static float train_step(pg_ctx *ctx, net *n) {
  pg_tensor *h = pg_add(ctx, pg_matmul(ctx, n->x, n->w1, false, false), n->b1);
  h = pg_dropout(ctx, pg_gelu(ctx, h, PG_GELU_TANH), 0.1f, &n->rng);
  /* a softmax gate over the hidden units, through a reshape */
  pg_tensor *gate = pg_softmax(ctx, pg_reshape(ctx, h, PG_SHAPE(-1, 32)));
  h = pg_mul(ctx, h, pg_add_scalar(ctx, pg_reshape(ctx, gate, 2, h->shape), 1.0f));
  pg_tensor *out = pg_add(ctx, pg_matmul(ctx, h, n->w2, false, false), n->b2);
  pg_tensor *decay = pg_mean(ctx, pg_mul(ctx, n->w1, n->w1), 0, NULL, false);
  pg_tensor *loss = pg_add(ctx, pg_mse(ctx, out, n->y), pg_mul_scalar(ctx, decay, 1e-3f));
  float value = loss ? loss->data[0] : NAN;
  if (!loss || pg_backward(ctx, loss)) {
    print_error("step failed: %s\n", pg_last_error());
    return NAN;
  }
  pg_tensor *params[] = {n->w1, n->b1, n->w2, n->b2};
  for (int p = 0; p < 4; p++) {
    for (int64_t i = 0; i < params[p]->numel; i++) params[p]->data[i] -= 0.05f * params[p]->grad[i];
    pg_tensor_zero_grad(params[p]);
  }
  pg_ctx_reset(ctx);
  return value;
}

static void test_allocation_free_steps(void **state) {
  (void)state;
  net n;
  n.w1 = pg_test_randn(PG_SHAPE(4, 32), 0.5f, 1);
  n.b1 = pg_test_randn(PG_SHAPE(32), 0.1f, 2);
  n.w2 = pg_test_randn(PG_SHAPE(32, 1), 0.2f, 3);
  n.b2 = pg_test_randn(PG_SHAPE(1), 0.1f, 4);
  /* 2048 rows: the hidden activations (65536 values) take the ops'
   * multithreaded paths, whose OpenMP teams must be reused, not reallocated. */
  const int64_t rows = 2048;
  n.x = pg_tensor_new(PG_SHAPE(rows, 4), false);
  n.y = pg_tensor_new(PG_SHAPE(rows, 1), false);
  pg_rng_seed(&n.rng, 5);
  pg_fill_normal(n.x, 0, 1, &n.rng);
  for (int64_t i = 0; i < rows; i++) n.y->data[i] = n.x->data[4 * i] * n.x->data[4 * i + 1];
  /* BLIS's OpenMP build allocates a thread team per call when it runs on
   * one thread; with two (the test suite's setting) it reuses its team. */
  pg_set_threads(2);
  pg_ctx *ctx = pg_ctx_new(1 << 18); /* 256 KiB chunks: the step needs several */
  assert_non_null(ctx);

  float first = train_step(ctx, &n);
  const long allocs_1 = allocations(); /* calls made up to the end of step 1 */
  size_t high_water_2 = 0;
  long chunks_2 = 0;
  float last = first;
  for (int step = 2; step <= 10; step++) {
    last = train_step(ctx, &n);
    if (step == 2) {
      high_water_2 = ctx->arena.high_water;
      chunks_2 = ctx->arena.mallocs;
    }
  }
  /* read everything before any assertion (cmocka may allocate) */
  const size_t high_water_10 = ctx->arena.high_water;
  const long chunks_10 = ctx->arena.mallocs;
  const long allocs_10 = allocations(); /* stays 0 when the counter is compiled out */
  assert_true(isfinite(first) && isfinite(last));
  assert_true(last < first);
  assert_true(chunks_2 > 1); /* the step really spans several chunks */
  assert_int_equal(high_water_10, high_water_2);
  assert_int_equal(chunks_10, chunks_2);
  assert_int_equal(allocs_10 - allocs_1, 0); /* no allocation in steps 2..10 */
  if (pg_alloc_count_active()) {
    /* the counter is live: creating a context calls malloc */
    long before = allocations();
    pg_ctx *probe = pg_ctx_new(0);
    assert_true(allocations() > before);
    pg_ctx_free(probe);
  }
  pg_ctx_free(ctx);
  pg_tensor *all[] = {n.w1, n.b1, n.w2, n.b2, n.x, n.y};
  for (int i = 0; i < 6; i++) pg_tensor_free(all[i]);
}

/* ---- Attention steps ---- */

typedef struct {
  const char *what;
  int64_t B, T, heads, d; /* d: channels per head */
  bool causal, pad;
  float dropout;
} attention_case;

/* One step: sdpa forward (training mode), a loss, backward, reset. */
static void attention_step(pg_ctx *ctx, const attention_case *c, pg_tensor *const *qkv,
                           const uint8_t *pad, pg_rng *rng) {
  pg_tensor *o = pg_sdpa_op(ctx, qkv[0], qkv[1], qkv[2], (int)c->heads, c->causal,
                            c->pad ? pad : NULL, c->dropout, PG_SDPA_DEFAULT_SCALE, rng);
  pg_tensor *loss = pg_mean(ctx, pg_mul(ctx, o, o), 0, NULL, false);
  if (!loss || pg_backward(ctx, loss)) print_error("%s: step failed: %s\n", c->what, pg_last_error());
  for (int i = 0; i < 3; i++) pg_tensor_zero_grad(qkv[i]);
  pg_ctx_reset(ctx);
}

static void test_attention_steps_allocation_free(void **state) {
  (void)state;
  const attention_case cases[] = {
      /* the fused kernel, with its masks and its dropout */
      {"causal, padded keys", 4, 64, 4, 16, true, true, 0.0f},
      {"dropout", 4, 64, 4, 16, false, false, 0.2f},
      {"causal with dropout", 2, 33, 2, 8, true, false, 0.1f},
      /* heads of 260 channels: the general path */
      {"large heads, causal, dropout", 2, 24, 1, 260, true, false, 0.1f},
  };
  pg_set_threads(2);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const attention_case *c = &cases[i];
    const int64_t w = c->heads * c->d;
    pg_tensor *qkv[3];
    for (int j = 0; j < 3; j++) qkv[j] = pg_test_randn(PG_SHAPE(c->B, c->T, w), 1.0f, 40 + j);
    uint8_t *pad = calloc((size_t)(c->B * c->T), 1);
    for (int64_t b = 0; b < c->B; b++) pad[b * c->T + c->T - 1 - b] = 1; /* one padded key each */
    pg_rng rng;
    pg_rng_seed(&rng, 3);
    pg_ctx *ctx = pg_ctx_new(1 << 20);
    attention_step(ctx, c, qkv, pad, &rng); /* warm-up: the arena grows, teams start */
    attention_step(ctx, c, qkv, pad, &rng);
    const long before = allocations();
    for (int step = 0; step < 5; step++) attention_step(ctx, c, qkv, pad, &rng);
    const long after = allocations();
    if (after != before) print_error("%s: %ld allocations in 5 steps\n", c->what, after - before);
    assert_int_equal(after - before, 0);
    pg_ctx_free(ctx);
    free(pad);
    for (int j = 0; j < 3; j++) pg_tensor_free(qkv[j]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_allocation_free_steps),
      cmocka_unit_test(test_attention_steps_allocation_free),
  };
  if (pg_gemm_engine_set(PG_GEMM_ENGINE_BLIS)) return 1;
  return cmocka_run_group_tests(tests, NULL, NULL);
}
