/* `patchgrad check` on patch cases, run as the built command in a subprocess
 * (its exit status and its output are the interface): the public reference
 * cases and our own pass; deliberately broken files written here fail or
 * error with messages naming the case and the array; tolerance precedence. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "patchgrad/io/h5util.h"

static char output[1 << 16];

/* Runs `patchgrad check FLAGS 'PATH'` (path NULL: none), stdout and stderr
 * into `output`; returns the exit status. */
static int run_check(const char *flags, const char *path) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' check %s %s%s%s 2>&1", PG_BUILD_DIR, flags,
           path ? "'" : "", path ? path : "", path ? "'" : "");
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(output, 1, sizeof output - 1, p);
  output[n] = '\0';
  int status = pclose(p);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

#define assert_output_contains(needle)                                          \
  do {                                                                          \
    if (!strstr(output, (needle)))                                              \
      fail_msg("output does not contain \"%s\":\n%s", (needle), output);        \
  } while (0)

/* A scratch file in the build directory, removed by the test. */
static const char *scratch(const char *name) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/test_check_patch_%s_%d.h5", PG_BUILD_DIR, name, (int)getpid());
  return path;
}

/* Names of the cases whose op is patchify or unpatchify. */
typedef struct {
  char names[64][64];
  int count;
} case_list;

static herr_t collect_patch_case(hid_t root, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  case_list *l = data;
  hid_t g = H5Gopen2(root, name, H5P_DEFAULT);
  char op[64] = "";
  if (g >= 0 && pg_h5_attr_string(g, "op", op, sizeof op) == 1 &&
      (!strcmp(op, "patchify") || !strcmp(op, "unpatchify")) && l->count < 64)
    snprintf(l->names[l->count++], 64, "%s", name);
  if (g >= 0) H5Gclose(g);
  return 0;
}

static case_list patch_cases_of(const char *path) {
  case_list l = {.count = 0};
  hid_t f = pg_h5_open(path, false);
  assert_true(f >= 0);
  hsize_t idx = 0;
  H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_patch_case, &l);
  H5Fclose(f);
  return l;
}

/* Writes a new file at dst holding copies of the named cases of src. */
static void copy_cases(const char *src, const char *dst, int n, char names[][64]) {
  hid_t in = pg_h5_open(src, false);
  hid_t out = H5Fcreate(dst, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(in >= 0 && out >= 0);
  for (int i = 0; i < n; i++)
    assert_true(H5Ocopy(in, names[i], out, names[i], H5P_DEFAULT, H5P_DEFAULT) >= 0);
  H5Fclose(in);
  H5Fclose(out);
}

static void test_public_patch_cases_pass(void **state) {
  (void)state;
  const char *public = pg_test_data("cases-public.h5");
  case_list l = patch_cases_of(public);
  assert_int_equal(l.count, 9); /* 5 patchify + 4 unpatchify */
  /* The whole public file: every patch case passes, whatever other ops do. */
  run_check("", public);
  for (int i = 0; i < l.count; i++) {
    char line[128];
    snprintf(line, sizeof line, "PASS  %s ", l.names[i]);
    assert_output_contains(line);
  }
  /* Only the patch cases: the summary line and a zero exit. */
  const char *path = scratch("public");
  copy_cases(public, path, l.count, l.names);
  assert_int_equal(run_check("", path), 0);
  assert_output_contains("9 passed, 0 failed");
  assert_output_contains("grad/params/weight");
  remove(path);
}

static void test_own_fixtures_pass(void **state) {
  (void)state;
  const char *path = pg_test_data("patch_cases.h5");
  case_list l = patch_cases_of(path);
  assert_int_equal(l.count, 20);
  assert_int_equal(run_check("", path), 0);
  assert_output_contains("20 passed, 0 failed");
  assert_true(strstr(output, "FAIL") == NULL);
}

/* One public case copied to its own file, for breaking. */
static hid_t one_case_file(const char *path, const char *name) {
  char names[1][64];
  snprintf(names[0], 64, "%s", name);
  copy_cases(pg_test_data("cases-public.h5"), path, 1, names);
  hid_t f = pg_h5_open(path, true);
  assert_true(f >= 0);
  return f;
}

/* Replaces dataset `array` of group g by its values with element i moved by delta. */
static void perturb(hid_t g, const char *array, int64_t i, float delta) {
  pg_tensor *t;
  assert_int_equal(pg_h5_read_tensor(g, array, array, &t), PG_OK);
  t->data[i] += delta;
  assert_true(H5Ldelete(g, array, H5P_DEFAULT) >= 0);
  assert_int_equal(pg_h5_write_floats(g, array, t->ndim, t->shape, t->data, 0), PG_OK);
  pg_tensor_free(t);
}

static void test_wrong_values_fail(void **state) {
  (void)state;
  const char *path = scratch("wrong");
  const char *targets[] = {"out", "grad/x", "grad/params/weight", "grad/params/bias"};
  for (int k = 0; k < 4; k++) {
    hid_t f = one_case_file(path, "patchify_2d_p2_s2");
    hid_t g = H5Gopen2(f, "patchify_2d_p2_s2", H5P_DEFAULT);
    perturb(g, targets[k], 5, 0.01f);
    H5Gclose(g);
    H5Fclose(f);
    assert_int_equal(run_check("", path), 1);
    assert_output_contains("FAIL  patchify_2d_p2_s2");
    char line[128];
    snprintf(line, sizeof line, "%s ", targets[k]);
    assert_output_contains(line);
    assert_output_contains("<- beyond tolerance");
    assert_output_contains("worst element 5");
    assert_output_contains("0 passed, 1 failed");
  }
  remove(path);
}

/* Flag > case attribute > root attribute > default (docs/casefile.md, "Tolerance"). */
static void test_tolerance_precedence(void **state) {
  (void)state;
  const char *path = scratch("tol");
  const char *name = "unpatchify_2d_p2_s2";
  hid_t f = one_case_file(path, name);
  hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
  perturb(g, "out", 0, 0.05f);
  H5Adelete(g, "atol"); /* the public cases carry their own */
  H5Adelete(g, "rtol");
  H5Gclose(g);
  H5Fclose(f);
  assert_int_equal(run_check("", path), 1); /* default atol 1e-5 */
  assert_int_equal(run_check("--atol 0.1", path), 0); /* flag */
  assert_output_contains("1 passed, 0 failed");

  f = pg_h5_open(path, true);
  pg_h5_set_attr_double(f, "atol", 0.1); /* root */
  H5Fclose(f);
  assert_int_equal(run_check("", path), 0);
  assert_int_equal(run_check("--atol 0", path), 1); /* flag beats root */

  f = pg_h5_open(path, true);
  g = H5Gopen2(f, name, H5P_DEFAULT);
  pg_h5_set_attr_double(g, "atol", 1e-5); /* case beats root */
  H5Gclose(g);
  H5Fclose(f);
  assert_int_equal(run_check("", path), 1);
  assert_int_equal(run_check("--atol 0.2", path), 0); /* flag beats case */
  remove(path);
}

/* Edits that make a case impossible to run: each must be an error naming
 * the case (and the array), counted as failed, with exit status 1. */
typedef void (*breaker)(hid_t g);

static void drop_weight(hid_t g) { H5Ldelete(g, "params/weight", H5P_DEFAULT); }
static void drop_grad_out(hid_t g) { H5Ldelete(g, "grad_out", H5P_DEFAULT); }
static void unknown_op(hid_t g) { pg_h5_set_attr_string(g, "op", "frobnicate"); }
static void wrong_out_shape(hid_t g) {
  H5Ldelete(g, "out", H5P_DEFAULT);
  pg_h5_write_floats(g, "out", 2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4}, 0);
}
static void wrong_channels(hid_t g) {
  H5Ldelete(g, "x", H5P_DEFAULT);
  static float zeros[2 * 8 * 8 * 5];
  pg_h5_write_floats(g, "x", 4, (int64_t[]){2, 8, 8, 5}, zeros, 0);
}
static void bad_output_shape(hid_t g) {
  pg_h5_set_attr_int_array(g, "output_spatial_shape", (int64_t[]){8, 12}, 2);
}
static void bad_data_dim(hid_t g) { pg_h5_set_attr_int(g, "data_dim", 7); }
static void no_patch_size(hid_t g) { H5Adelete(g, "patch_size"); }
/* numbers that are not integers are refused, not rounded */
static void fractional_data_dim(hid_t g) { pg_h5_set_attr_double(g, "data_dim", 2.5); }
static void fractional_stride(hid_t g) { pg_h5_set_attr_double(g, "stride", 2.5); }
static void fractional_output_shape(hid_t g) {
  hsize_t two = 2;
  hid_t s = H5Screate_simple(1, &two, NULL);
  hid_t a = H5Acreate2(g, "output_spatial_shape", H5T_NATIVE_DOUBLE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_DOUBLE, (double[]){8.5, 10});
  H5Aclose(a);
  H5Sclose(s);
}
static void string_atol(hid_t g) { pg_h5_set_attr_string(g, "atol", "x"); }
static void nan_rtol(hid_t g) { pg_h5_set_attr_double(g, "rtol", 0.0 / 0.0); }
static void misspelled(hid_t g) {
  H5Adelete(g, "stride");
  pg_h5_set_attr_int(g, "strides", 1);
}

static void test_broken_cases_error(void **state) {
  (void)state;
  const struct {
    breaker edit;
    const char *case_name, *message;
  } breaks[] = {
      {drop_weight, "patchify_2d_p2_s2", "missing array 'params/weight'"},
      {drop_grad_out, "unpatchify_2d_p2_s2", "missing array 'grad_out'"},
      {unknown_op, "patchify_2d_p2_s2", "unknown op 'frobnicate'"},
      {wrong_out_shape, "patchify_2d_p2_s2", "array 'out' has shape [2, 2], the op produced [2, 4, 4, 16]"},
      {wrong_channels, "patchify_2d_p2_s2", "x has 5 channels"},
      {bad_output_shape, "unpatchify_2d_p2_s2", "output_spatial_shape[1] = 12 is invalid"},
      {bad_data_dim, "patchify_2d_p2_s2", "attribute 'data_dim' must be 1, 2 or 3, got 7"},
      {no_patch_size, "unpatchify_2d_p2_s2", "missing integer attribute 'patch_size'"},
      {fractional_data_dim, "patchify_2d_p2_s2", "attribute 'data_dim' is 2.5, not an integer"},
      {fractional_stride, "unpatchify_2d_p2_s2", "attribute 'stride' is 2.5, not an integer"},
      {fractional_output_shape, "unpatchify_2d_p2_s2",
       "attribute 'output_spatial_shape': value 0 is 8.5, not an integer"},
      {string_atol, "patchify_2d_p2_s2", "attribute 'atol' is not a single number (it is a string)"},
      {nan_rtol, "patchify_2d_p2_s2", "attribute 'rtol' is nan"},
      {misspelled, "patchify_2d_p2_s2", "unknown attribute 'strides' of op 'patchify' (its "
                                        "settings: data_dim patch_size stride bias"},
  };
  const char *path = scratch("broken");
  for (size_t k = 0; k < sizeof breaks / sizeof *breaks; k++) {
    hid_t f = one_case_file(path, breaks[k].case_name);
    hid_t g = H5Gopen2(f, breaks[k].case_name, H5P_DEFAULT);
    breaks[k].edit(g);
    H5Gclose(g);
    H5Fclose(f);
    assert_int_equal(run_check("", path), 1);
    char line[256];
    snprintf(line, sizeof line, "error: case '%s': ", breaks[k].case_name);
    assert_output_contains(line);
    assert_output_contains(breaks[k].message);
    assert_output_contains("0 passed, 1 failed");
  }
  remove(path);
}

static void test_bad_files(void **state) {
  (void)state;
  const char *path = scratch("text");
  FILE *t = fopen(path, "w");
  assert_non_null(t);
  fputs("this is not HDF5\n", t);
  fclose(t);
  assert_true(run_check("", path) != 0);
  assert_output_contains("HDF5");
  remove(path);

  assert_true(run_check("", "/nonexistent/cases.h5") != 0);
  assert_output_contains("/nonexistent/cases.h5");

  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  assert_int_equal(run_check("", path), 1);
  assert_output_contains("holds no case");
  remove(path);

  assert_true(run_check("", NULL) != 0); /* no file: usage */
  assert_output_contains("usage: patchgrad check");
}

int main(void) {
  pg_h5_quiet();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_public_patch_cases_pass),
      cmocka_unit_test(test_own_fixtures_pass),
      cmocka_unit_test(test_wrong_values_fail),
      cmocka_unit_test(test_tolerance_precedence),
      cmocka_unit_test(test_broken_cases_error),
      cmocka_unit_test(test_bad_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
