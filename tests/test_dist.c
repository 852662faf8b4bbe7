/* dist/: the communicator and the bucketed gradient reducer. Run alone it
 * checks the one-rank behaviour; under `mpirun -n K` (the suite runs it with
 * K = 2 and 4) it checks that every rank ends with the average of all ranks'
 * gradients, whatever order the parameters become ready in, that buckets
 * follow reverse parameter order, that an error on one rank reaches all,
 * that the hooked backward sends every bucket out during the sweep with
 * the same average as plain backward, and that broadcasting parameters
 * copies rank 0's values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "patchgrad/autograd/ops.h"
#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/tape.h"
#include "patchgrad/dist/dist.h"
#include "patchgrad/dist/reducer.h"

static pg_dist dist;

/* Three parameters and a buffer; gradients depend on rank and element. */
static void make_params(pg_params *ps) {
  pg_params_init(ps);
  assert_non_null(pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(300, 7), "a.weight"));
  assert_non_null(pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(7), "a.bias"));
  assert_non_null(pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(5), "table"));
  assert_non_null(pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(64, 64), "b.weight"));
}

static float grad_value(int rank, int param, int64_t i) {
  return (float)(rank + 1) * 0.25f + (float)param * 0.5f + (float)(i % 13) * 0.125f;
}

static void fill_grads(pg_params *ps, int rank) {
  for (int p = 0; p < ps->count; p++) {
    pg_tensor *t = ps->items[p].tensor;
    if (!t->grad) continue;
    for (int64_t i = 0; i < t->numel; i++) t->grad[i] = grad_value(rank, p, i);
  }
}

static void check_average(pg_params *ps) {
  for (int p = 0; p < ps->count; p++) {
    pg_tensor *t = ps->items[p].tensor;
    if (!t->grad) continue;
    for (int64_t i = 0; i < t->numel; i++) {
      double want = 0;
      for (int r = 0; r < dist.size; r++) want += grad_value(r, p, i);
      want /= dist.size;
      if (fabs(t->grad[i] - want) > 1e-6 * fabs(want)) {
        fprintf(stderr, "rank %d: %s[%lld] = %g, average %g\n", dist.rank, ps->items[p].name,
                (long long)i, t->grad[i], want);
        fail();
      }
    }
  }
}

static void test_reducer_averages(void **state) {
  (void)state;
  pg_params ps;
  make_params(&ps);
  pg_reducer r;
  /* small buckets: several per step */
  assert_int_equal(pg_reducer_init(&r, &dist, &ps, 1024), PG_OK);
  assert_int_equal(r.numel, 300 * 7 + 7 + 64 * 64);
  /* reverse order: b.weight first in the flat buffer, a.weight last */
  assert_int_equal(r.offset[3], 0);
  assert_int_equal(r.offset[2], -1);
  assert_int_equal(r.offset[1], 64 * 64);
  assert_int_equal(r.offset[0], 64 * 64 + 7);
  assert_true(ps.items[3].tensor->grad == r.flat);
  for (int step = 0; step < 3; step++) {
    fill_grads(&ps, dist.rank);
    /* backward order (last parameter first), then a step where nothing is
     * announced and finish starts everything */
    if (step < 2) {
      for (int p = ps.count - 1; p >= 0; p--) assert_int_equal(pg_reducer_param_ready(&r, p), PG_OK);
      /* announcing again is harmless */
      assert_int_equal(pg_reducer_param_ready(&r, 0), PG_OK);
    }
    assert_int_equal(pg_reducer_finish(&r), PG_OK);
    if (dist.size == 1) {
      /* one rank: untouched */
      for (int p = 0; p < ps.count; p++) {
        pg_tensor *t = ps.items[p].tensor;
        if (t->grad)
          for (int64_t i = 0; i < t->numel; i++) assert_true(t->grad[i] == grad_value(0, p, i));
      }
    } else {
      check_average(&ps);
    }
  }
  assert_int_not_equal(pg_reducer_param_ready(&r, 99), PG_OK);
  assert_error_contains("index 99 outside [0, 4)");
  float keep = ps.items[0].tensor->grad[5];
  pg_reducer_free(&r);
  /* the gradients survive in buffers of their own */
  assert_true(ps.items[0].tensor->grad[5] == keep);
  pg_params_free(&ps);
}

/* A two-layer net y = (x W1) W2, loss = mean(y * y), x depending on the
 * rank: the gradients of W1 [4, 8] and W2 [8, 3] on ctx. */
static pg_tensor *two_layer_loss(pg_ctx *ctx, pg_params *ps, int rank) {
  float x[2 * 4];
  for (int i = 0; i < 8; i++) x[i] = 0.1f * (float)(i + 1) * (float)(rank + 1) - 0.3f;
  pg_tensor *xt = pg_from_array(ctx, PG_SHAPE(2, 4), x);
  pg_tensor *y = pg_matmul(ctx, pg_matmul(ctx, xt, ps->items[0].tensor, false, false), ps->items[1].tensor, false, false);
  return pg_mean(ctx, pg_mul(ctx, y, y), 0, NULL, false);
}

static void test_reducer_backward(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_tensor *w1 = pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(4, 8), "w1");
  pg_tensor *w2 = pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(8, 3), "w2");
  assert_non_null(w1);
  assert_non_null(w2);
  for (int64_t i = 0; i < w1->numel; i++) w1->data[i] = 0.05f * (float)(i % 7) - 0.1f;
  for (int64_t i = 0; i < w2->numel; i++) w2->data[i] = 0.07f * (float)(i % 5) - 0.12f;
  /* what the average must be: every rank's gradients, computed here */
  float want1[32] = {0}, want2[24] = {0};
  pg_ctx *ctx = pg_ctx_new(0);
  for (int r = 0; r < dist.size; r++) {
    pg_ctx_reset(ctx);
    pg_params_zero_grad(&ps);
    assert_int_equal(pg_backward(ctx, two_layer_loss(ctx, &ps, r)), PG_OK);
    for (int i = 0; i < 32; i++) want1[i] += w1->grad[i] / (float)dist.size;
    for (int i = 0; i < 24; i++) want2[i] += w2->grad[i] / (float)dist.size;
  }
  pg_params_zero_grad(&ps);
  pg_reducer r;
  /* one bucket per parameter */
  assert_int_equal(pg_reducer_init(&r, &dist, &ps, sizeof(float)), PG_OK);
  assert_int_equal(r.bucket_count, 2);
  for (int step = 0; step < 2; step++) {
    pg_ctx_reset(ctx);
    assert_int_equal(pg_reducer_backward(&r, ctx, two_layer_loss(ctx, &ps, dist.rank)), PG_OK);
    /* the sweep announced both parameters, so with several ranks both
     * buckets went out before finish */
    assert_true(r.ready[0] && r.ready[1]);
    if (dist.size > 1) assert_int_equal(r.next_to_start, 2);
    assert_int_equal(pg_reducer_finish(&r), PG_OK);
    for (int i = 0; i < 32; i++) assert_float_equal(w1->grad[i], want1[i], 1e-6);
    for (int i = 0; i < 24; i++) assert_float_equal(w2->grad[i], want2[i], 1e-6);
    pg_params_zero_grad(&ps);
  }
  /* a non-scalar loss: pg_backward's own message */
  pg_ctx_reset(ctx);
  pg_tensor *y = pg_matmul(ctx, pg_from_array(ctx, PG_SHAPE(1, 4), (float[]){1, 2, 3, 4}), w1, false, false);
  assert_int_not_equal(pg_reducer_backward(&r, ctx, y), PG_OK);
  assert_error_contains("needs a scalar");
  pg_reducer_free(&r);
  pg_ctx_free(ctx);
  pg_params_free(&ps);
}

static void test_error_agreement(void **state) {
  (void)state;
  /* no rank fails */
  assert_int_equal(pg_dist_agree(&dist, PG_OK), PG_OK);
  /* the last rank fails: every rank learns its message */
  pg_status local = PG_OK;
  if (dist.rank == dist.size - 1) local = pg_fail(PG_ERR_FORMAT, "latents: bad value 7 in sample 3");
  assert_int_not_equal(pg_dist_agree(&dist, local), PG_OK);
  assert_error_contains("latents: bad value 7 in sample 3");
  if (dist.size > 1) {
    char want[64];
    snprintf(want, sizeof want, "rank %d: ", dist.size - 1);
    assert_error_contains(want);
  }
}

static void test_broadcast_and_sum(void **state) {
  (void)state;
  pg_params ps;
  make_params(&ps);
  for (int p = 0; p < ps.count; p++) {
    pg_tensor *t = ps.items[p].tensor;
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)(dist.rank * 1000 + p * 10) + (float)i;
  }
  assert_int_equal(pg_dist_broadcast_params(&dist, &ps), PG_OK);
  for (int p = 0; p < ps.count; p++) {
    pg_tensor *t = ps.items[p].tensor;
    for (int64_t i = 0; i < t->numel; i++) assert_true(t->data[i] == (float)(p * 10) + (float)i);
  }
  double v[2] = {1.0, (double)dist.rank};
  assert_int_equal(pg_dist_allreduce_sum(&dist, v, 2), PG_OK);
  assert_true(v[0] == (double)dist.size);
  assert_true(v[1] == (double)(dist.size * (dist.size - 1) / 2));
  pg_params_free(&ps);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reducer_averages),
      cmocka_unit_test(test_reducer_backward),
      cmocka_unit_test(test_error_agreement),
      cmocka_unit_test(test_broadcast_and_sum),
  };
  return pg_test_mpi_group(&dist, &argc, &argv, tests, NULL, NULL);
}
