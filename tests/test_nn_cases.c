/* The transformer-layer cases replayed through `patchgrad check`:
 *  - tests/data/nn_cases.h5, our own PyTorch fixtures (tools/gen_fixtures_nn.py):
 *    linear on 3D input, layernorm with a large offset, attention with and
 *    without causal masking for several head counts and T, a single head;
 *  - the linear, layernorm and attention cases of the shared reference file
 *    tests/data/cases-public.h5, copied into a file of their own first (the
 *    other ops' handlers are tested elsewhere). */
#include "testutil.h"

#include <stdio.h>

static void test_own_fixtures(void **state) {
  (void)state;
  int passed, failed;
  assert_int_equal(pg_test_run_check(pg_test_data("nn_cases.h5"), &passed, &failed), 0);
  assert_int_equal(failed, 0);
  assert_true(passed >= 10);
}

static void test_public_cases(void **state) {
  (void)state;
  static const char *const ops[] = {"linear", "layernorm", "attention"};
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/nn_public_cases.h5", PG_BUILD_DIR);
  int copied = pg_test_copy_cases(pg_test_data("cases-public.h5"), path, 3, ops);
  assert_true(copied >= 8); /* 2 linear, 4 layernorm, 2 attention at the time of writing */
  int passed, failed;
  assert_int_equal(pg_test_run_check(path, &passed, &failed), 0);
  assert_int_equal(passed, copied);
  assert_int_equal(failed, 0);
  remove(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_own_fixtures),
      cmocka_unit_test(test_public_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
