/* The generic ops against PyTorch, replayed through `patchgrad check` (the
 * handlers of cli/check_basic.c):
 *  - tests/data/ops_torch.h5, our own fixtures (tools/gen_fixtures_ops.py):
 *    broadcasting add/sub/mul/div, matmul with every transpose (2D, batched,
 *    shared b), gelu both forms, silu, softmax (with +-100), mse, sum and
 *    mean over axes, embedding with repeated indices;
 *  - the gelu, silu, softmax and mse cases of the shared reference file
 *    tests/data/cases-public.h5, copied into a file of their own first. */
#include "testutil.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "h5util.h"

/* Runs `patchgrad check FILE`; returns its exit status and the counts. */
static int run_check(const char *file, int *passed, int *failed) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s/patchgrad check '%s' 2>&1", PG_BUILD_DIR, file);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char line[1024];
  *passed = *failed = -1;
  while (fgets(line, sizeof line, p)) {
    fputs(line, stdout); /* the per-case report, for the test log */
    sscanf(line, "%d passed, %d failed", passed, failed);
  }
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_own_fixtures(void **state) {
  (void)state;
  int passed, failed;
  assert_int_equal(run_check(pg_test_data("ops_torch.h5"), &passed, &failed), 0);
  assert_int_equal(failed, 0);
  assert_int_equal(passed, 28);
}

typedef struct {
  hid_t dst;
  int copied;
} copy_state;

static herr_t copy_basic_case(hid_t root, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  copy_state *s = data;
  static const char *const ops[] = {"gelu", "silu", "softmax", "mse"};
  hid_t g = H5Gopen2(root, name, H5P_DEFAULT);
  if (g < 0) return 0;
  char op[64] = "";
  pg_h5_attr_string(g, "op", op, sizeof op);
  H5Gclose(g);
  for (int i = 0; i < 4; i++)
    if (!strcmp(op, ops[i])) {
      if (H5Ocopy(root, name, s->dst, name, H5P_DEFAULT, H5P_DEFAULT) < 0) return -1;
      s->copied++;
    }
  return 0;
}

static void test_public_cases(void **state) {
  (void)state;
  hid_t src = pg_h5_open(pg_test_data("cases-public.h5"), false);
  if (src < 0) fail_msg("%s", pg_last_error());
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/ops_public_cases.h5", PG_BUILD_DIR);
  hid_t dst = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(dst >= 0);
  copy_state s = {dst, 0};
  hsize_t idx = 0;
  assert_true(H5Literate(src, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_basic_case, &s) >= 0);
  H5Fclose(dst);
  H5Fclose(src);
  assert_int_equal(s.copied, 7); /* gelu_none, gelu_tanh, silu, softmax x2, mse x2 */
  int passed, failed;
  assert_int_equal(run_check(path, &passed, &failed), 0);
  assert_int_equal(passed, s.copied);
  assert_int_equal(failed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_own_fixtures),
      cmocka_unit_test(test_public_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
