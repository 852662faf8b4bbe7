/* The generic ops against PyTorch, replayed through `patchgrad check` (the
 * handlers of cli/check_basic.c):
 *  - tests/data/ops_torch.h5, our own fixtures (tools/gen_fixtures_ops.py):
 *    broadcasting add/sub/mul/div, matmul with every transpose (2D, batched,
 *    shared b), gelu both forms, silu, softmax (with +-100), mse, sum and
 *    mean over axes, embedding with repeated indices;
 *  - the gelu, silu, softmax and mse cases of the shared reference file
 *    tests/data/cases-public.h5, copied into a file of their own first. */
#include "testutil.h"

#include <stdio.h>

static void test_own_fixtures(void **state) {
  (void)state;
  int passed, failed;
  assert_int_equal(pg_test_run_check(pg_test_data("ops_torch.h5"), &passed, &failed), 0);
  assert_int_equal(failed, 0);
  assert_int_equal(passed, 28);
}

static void test_public_cases(void **state) {
  (void)state;
  static const char *const ops[] = {"gelu", "silu", "softmax", "mse"};
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/ops_public_cases.h5", PG_BUILD_DIR);
  int copied = pg_test_copy_cases(pg_test_data("cases-public.h5"), path, 4, ops);
  assert_int_equal(copied, 7); /* gelu_none, gelu_tanh, silu, softmax x2, mse x2 */
  int passed, failed;
  assert_int_equal(pg_test_run_check(path, &passed, &failed), 0);
  assert_int_equal(passed, copied);
  assert_int_equal(failed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_own_fixtures),
      cmocka_unit_test(test_public_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
