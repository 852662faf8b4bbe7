/* `patchgrad check` on hostile case files: every case is counted (one that
 * cannot even be opened is a failed case, never skipped), integer arrays
 * holding fractions are refused naming the array, and expected NaN and Inf
 * values are compared by position. */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/io/h5util.h"

static int setup(void **state) {
  (void)state;
  pg_h5_quiet();
  return pg_test_tmpdir_make("check_cases");
}

static char out[1 << 17];

static int check(const char *path) {
  return pg_test_run(out, sizeof out, "%s/patchgrad check %s", PG_BUILD_DIR, path);
}

#define assert_out_contains(needle)                                                  \
  do {                                                                               \
    if (!strstr(out, (needle))) fail_msg("output lacks \"%s\"", (needle));           \
  } while (0)

/* A copy of the cases of a committed file whose op is `op` (NULL: every
 * op of cases-public.h5), open for editing. */
static hid_t copy_of(const char *fixture, const char *op, const char *name) {
  const char *ops[] = {"patchify", "unpatchify", "sgd", "adam", "adamw", "linear", "layernorm",
                       "attention", "gelu", "silu", "softmax", "mse", "dit"};
  char src[1024];
  snprintf(src, sizeof src, "%s/%s", PG_TEST_DATA, fixture);
  int n = op ? pg_test_copy_cases(src, pg_test_tmp(name), 1, &op)
             : pg_test_copy_cases(src, pg_test_tmp(name), 13, ops);
  assert_true(n > 0);
  hid_t f = H5Fopen(pg_test_tmp(name), H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  return f;
}

static void test_every_case_counted(void **state) {
  (void)state;
  /* the 30 public cases and one whose link leads nowhere: 30 passed, 1 failed */
  hid_t f = copy_of("cases-public.h5", NULL, "counted.h5");
  assert_true(H5Lcreate_soft("/no/such/group", f, "broken_case", H5P_DEFAULT, H5P_DEFAULT) >= 0);
  H5Fclose(f);
  assert_int_equal(check(pg_test_tmp("counted.h5")), 1);
  assert_out_contains("FAIL  broken_case");
  assert_out_contains("30 passed, 1 failed");
  /* and one that is a link to another file (not followed) */
  f = H5Fopen(pg_test_tmp("counted.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(f, "broken_case", H5P_DEFAULT);
  H5Lcreate_external(pg_test_tmp("elsewhere.h5"), "/case", f, "far_case", H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  assert_int_equal(check(pg_test_tmp("counted.h5")), 1);
  assert_out_contains("error: case 'far_case': a link to another file (not followed)");
  assert_out_contains("30 passed, 1 failed");
  /* a root tolerance that is not a number stops everything */
  f = H5Fopen(pg_test_tmp("counted.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  pg_h5_set_attr_string(f, "atol", "loose");
  H5Fclose(f);
  assert_int_equal(check(pg_test_tmp("counted.h5")), 2);
  assert_out_contains("attribute 'atol' is not a single number");
}

/* Replaces dataset `name` of a case by a float64 array of n values. */
static void replace_with_floats(hid_t f, const char *group, const char *name, const double *v,
                                int rank, const hsize_t *dims) {
  hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
  assert_true(g >= 0);
  H5Ldelete(g, name, H5P_DEFAULT);
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(g, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
  H5Dclose(d);
  H5Sclose(s);
  H5Gclose(g);
}

static void test_fractional_integers_refused(void **state) {
  (void)state;
  /* labels 2.7 in a cross_entropy case: refused, not truncated to 2 */
  hid_t f = copy_of("vit_cases.h5", "cross_entropy", "labels.h5");
  replace_with_floats(f, "ce_basic", "labels", (double[]){0, 1, 2.7, 4}, 1, (hsize_t[]){4});
  H5Fclose(f);
  assert_int_equal(check(pg_test_tmp("labels.h5")), 1);
  assert_out_contains("error: case 'ce_basic': ce_basic: dataset 'labels': element 2 is 2.7, not an integer");
  /* the same labels as exact floats are accepted (integers written as floats) */
  f = H5Fopen(pg_test_tmp("labels.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  int64_t *orig;
  int nd;
  int64_t shape[PG_MAX_DIMS];
  H5Fclose(f);
  hid_t src = pg_h5_open(PG_TEST_DATA "/vit_cases.h5", false);
  assert_int_equal(pg_h5_read_int64(src, "ce_basic/labels", "src", &orig, &nd, shape), PG_OK);
  H5Fclose(src);
  double exact[4];
  for (int i = 0; i < 4; i++) exact[i] = (double)orig[i];
  free(orig);
  f = H5Fopen(pg_test_tmp("labels.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  replace_with_floats(f, "ce_basic", "labels", exact, 1, (hsize_t[]){4});
  H5Fclose(f);
  check(pg_test_tmp("labels.h5"));
  assert_out_contains("PASS  ce_basic");

  /* embedding indices 1.5 */
  f = copy_of("ops_torch.h5", "embedding", "embedding.h5");
  src = pg_h5_open(PG_TEST_DATA "/ops_torch.h5", false);
  assert_int_equal(pg_h5_read_int64(src, "embedding_2x3/idx", "src", &orig, &nd, shape), PG_OK);
  H5Fclose(src);
  assert_int_equal(nd, 2);
  double idx[6];
  for (int i = 0; i < 6; i++) idx[i] = (double)orig[i];
  free(orig);
  idx[4] = 1.5;
  replace_with_floats(f, "embedding_2x3", "idx", idx, 2, (hsize_t[]){2, 3});
  H5Fclose(f);
  assert_int_equal(check(pg_test_tmp("embedding.h5")), 1);
  assert_out_contains("dataset 'idx': element 4 is 1.5, not an integer");
}

/* A `div` case 1/0, 0/0, -1/0, 2/1 whose expected `out` is given. */
static void div_case(hid_t f, const char *name, const double *want, hid_t file_type) {
  hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  pg_h5_set_attr_string(g, "op", "div");
  hsize_t four = 4;
  hid_t s = H5Screate_simple(1, &four, NULL);
  const char *names[] = {"a", "b", "out"};
  const double values[3][4] = {{1, 0, -1, 2}, {0, 0, 0, 1}, {0}};
  for (int i = 0; i < 3; i++) {
    hid_t d = H5Dcreate2(g, names[i], file_type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, i == 2 ? want : values[i]);
    H5Dclose(d);
  }
  H5Sclose(s);
  H5Gclose(g);
}

static void test_non_finite_expected_by_position(void **state) {
  (void)state;
  hid_t f = H5Fcreate(pg_test_tmp("nonfinite.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  div_case(f, "match_f64", (double[]){INFINITY, NAN, -INFINITY, 2}, H5T_IEEE_F64LE);
  div_case(f, "match_f32", (double[]){INFINITY, NAN, -INFINITY, 2}, H5T_IEEE_F32LE);
  div_case(f, "nan_vs_number", (double[]){INFINITY, 0, -INFINITY, 2}, H5T_IEEE_F64LE);
  div_case(f, "wrong_sign_inf", (double[]){-INFINITY, NAN, -INFINITY, 2}, H5T_IEEE_F64LE);
  div_case(f, "number_vs_nan", (double[]){INFINITY, NAN, -INFINITY, NAN}, H5T_IEEE_F64LE);
  H5Fclose(f);
  assert_int_equal(check(pg_test_tmp("nonfinite.h5")), 1);
  assert_out_contains("PASS  match_f64");
  assert_out_contains("PASS  match_f32");
  assert_out_contains("FAIL  nan_vs_number");
  assert_out_contains("FAIL  wrong_sign_inf");
  assert_out_contains("FAIL  number_vs_nan");
  assert_out_contains("2 passed, 3 failed");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_case_counted),
      cmocka_unit_test(test_fractional_integers_refused),
      cmocka_unit_test(test_non_finite_expected_by_position),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
