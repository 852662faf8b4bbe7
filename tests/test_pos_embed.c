/* Position embeddings: the sin-cos tables against numpy's (DiT's code for
 * 2-D, tests/data/sincos_tables.h5) and against the DiT fixtures' own
 * pos_embed; the learned table's init; the errors. */
#include "testutil.h"

#include <math.h>

#include "patchgrad/io/h5util.h"
#include "patchgrad/autograd/params.h"
#include "patchgrad/layers/pos_embed.h"

static void test_tables_match_numpy(void **state) {
  (void)state;
  const char *names[] = {"d1_g7_dim8", "d1_g5_dim2", "d2_g4x4_dim32", "d2_g3x5_dim16",
                         "d3_g2x3x4_dim12", "d3_g3x2x2_dim24"};
  hid_t f = pg_h5_open(pg_test_data("sincos_tables.h5"), false);
  assert_true(f >= 0);
  for (int i = 0; i < 6; i++) {
    hid_t ds = H5Dopen2(f, names[i], H5P_DEFAULT);
    assert_true(ds >= 0);
    int64_t data_dim, dim, grid[3];
    int n_grid = 0;
    assert_int_equal(pg_h5_attr_int(ds, "data_dim", &data_dim), 1);
    assert_int_equal(pg_h5_attr_int(ds, "dim", &dim), 1);
    assert_int_equal(pg_h5_attr_int_array(ds, "grid", grid, 3, &n_grid), 1);
    assert_int_equal(n_grid, data_dim);
    H5Dclose(ds);
    pg_tensor *want;
    assert_int_equal(pg_h5_read_tensor(f, names[i], names[i], &want), PG_OK);
    pg_tensor *got = pg_tensor_new(2, want->shape, false);
    assert_int_equal(pg_sincos_pos_embed_fill(got, (int)data_dim, grid), PG_OK);
    assert_int_equal(got->shape[1], dim);
    assert_close(got->data, want->data, want->numel, 1e-6, 0);
    pg_tensor_free(got), pg_tensor_free(want);
  }
  H5Fclose(f);
}

/* The DiT cases of the public fixtures carry the table the PyTorch model
 * built (input 8, patch 2: a 4 x 4 grid, hidden 32). */
static void test_table_matches_dit_fixture(void **state) {
  (void)state;
  hid_t f = pg_h5_open(pg_test_data("cases-public.h5"), false);
  assert_true(f >= 0);
  const char *cases[] = {"dit_tiny_cond/params/pos_embed", "dit_tiny_uncond/params/pos_embed"};
  for (int i = 0; i < 2; i++) {
    pg_tensor *want;
    assert_int_equal(pg_h5_read_tensor(f, cases[i], cases[i], &want), PG_OK);
    assert_int_equal(want->ndim, 3);
    assert_int_equal(want->shape[1], 16);
    assert_int_equal(want->shape[2], 32);
    pg_params ps;
    pg_params_init(&ps);
    pg_tensor *got = pg_sincos_pos_embed_buffer(&ps, "pos_embed", 2, (int64_t[]){4, 4}, 32);
    assert_non_null(got);
    assert_close(got->data, want->data, want->numel, 1e-6, 0);
    pg_params_free(&ps);
    pg_tensor_free(want);
  }
  H5Fclose(f);
}

/* Spot values from the rule itself: token (i, j) of a 2-D table. */
static void test_table_layout(void **state) {
  (void)state;
  const int64_t dim = 8, grid[2] = {3, 5};
  pg_tensor *t = pg_tensor_new(3, (int64_t[]){1, 15, dim}, false);
  assert_int_equal(pg_sincos_pos_embed_fill(t, 2, grid), PG_OK);
  /* token (i=2, j=3) = 13: part 0 (channels 0..3) encodes j, part 1 encodes i;
   * part of 4 channels: omega = 1, 1/100; [sin, sin, cos, cos] */
  const float *row = t->data + 13 * dim;
  float want[8] = {sinf(3), (float)sin(0.03), cosf(3), (float)cos(0.03),
                   sinf(2), (float)sin(0.02), cosf(2), (float)cos(0.02)};
  assert_close(row, want, 8, 1e-6, 0);
  pg_tensor_free(t);
}

static void test_buffer_and_learned(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  pg_tensor *b = pg_sincos_pos_embed_buffer(&ps, "pos_embed", 3, (int64_t[]){2, 3, 4}, 12);
  assert_non_null(b);
  pg_param *p = pg_params_find(&ps, "pos_embed");
  assert_non_null(p);
  assert_int_equal(p->kind, PG_PARAM_BUFFER);
  assert_false(b->requires_grad);
  assert_int_equal(b->ndim, 3);
  assert_int_equal(b->shape[0], 1);
  assert_int_equal(b->shape[1], 24);
  assert_int_equal(b->shape[2], 12);

  pg_rng rng;
  pg_rng_seed(&rng, 9);
  pg_tensor *l = pg_pos_embed_learned(&ps, "pos_embed_learned", 1024, 64, &rng);
  assert_non_null(l);
  assert_int_equal(pg_params_find(&ps, "pos_embed_learned")->kind, PG_PARAM_EMBEDDING);
  assert_true(l->requires_grad);
  assert_int_equal(l->shape[0], 1);
  assert_int_equal(l->shape[1], 1024);
  assert_int_equal(l->shape[2], 64);
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < l->numel; i++) {
    assert_true(fabsf(l->data[i]) <= 2.0f);
    sum += l->data[i], sq += (double)l->data[i] * l->data[i];
  }
  double n = (double)l->numel, mean = sum / n, sd = sqrt(sq / n - mean * mean);
  assert_true(fabs(mean) < 4 * 0.02 / sqrt(n));
  assert_true(fabs(sd / 0.02 - 1.0) < 0.02);
  pg_params_free(&ps);
}

static void test_errors(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  /* dim must be divisible by 2 * data_dim: a sin and a cos half per axis */
  assert_null(pg_sincos_pos_embed_buffer(&ps, "a", 3, (int64_t[]){2, 2, 2}, 8));
  assert_error_contains("2 * data_dim = 6");
  assert_error_contains("got 8");
  assert_null(pg_sincos_pos_embed_buffer(&ps, "a", 2, (int64_t[]){4, 4}, 30));
  assert_error_contains("got 30");
  assert_null(pg_sincos_pos_embed_buffer(&ps, "a", 1, (int64_t[]){4}, 3));
  assert_error_contains("2 * data_dim = 2");
  assert_null(pg_sincos_pos_embed_buffer(&ps, "a", 0, (int64_t[]){4}, 8));
  assert_error_contains("data_dim must be 1, 2 or 3, got 0");
  assert_null(pg_sincos_pos_embed_buffer(&ps, "a", 2, (int64_t[]){4, 0}, 8));
  assert_error_contains("grid[1] must be >= 1, got 0");
  assert_int_equal(ps.count, 0);
  pg_tensor *t = pg_tensor_new(2, (int64_t[]){15, 8}, false);
  assert_int_equal(pg_sincos_pos_embed_fill(t, 2, (int64_t[]){4, 4}), PG_ERR_ARG);
  assert_error_contains("[1, 16, dim] or [16, dim]");
  assert_error_contains("got [15, 8]");
  pg_tensor_free(t);
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  assert_null(pg_pos_embed_learned(&ps, "p", 0, 8, &rng));
  assert_error_contains("tokens 0");
  pg_params_free(&ps);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tables_match_numpy),
      cmocka_unit_test(test_table_matches_dit_fixture),
      cmocka_unit_test(test_table_layout),
      cmocka_unit_test(test_buffer_and_learned),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
