/* docs/writing_an_op.md quotes examples/custom_op.c in full: the quoted
 * block must be the file, byte for byte, so that the page shows the code the
 * test suite builds and runs (example_custom_op). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole file, NUL-terminated; NULL when it cannot be read. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  if (s) s[n] = '\0';
  fclose(f);
  return s;
}

static void test_the_page_quotes_the_example(void **state) {
  (void)state;
  char *doc = slurp(PG_SOURCE_DIR "/docs/writing_an_op.md");
  char *code = slurp(PG_SOURCE_DIR "/examples/custom_op.c");
  assert_non_null(doc);
  assert_non_null(code);
  /* the page's one C block: from the line after "```c" to the line "```" */
  const char *open = strstr(doc, "\n```c\n");
  assert_non_null(open);
  const char *start = open + strlen("\n```c\n");
  const char *end = strstr(start, "\n```\n");
  assert_non_null(end);
  const size_t quoted = (size_t)(end + 1 - start); /* with the last newline */
  if (quoted != strlen(code) || memcmp(start, code, quoted)) {
    size_t i = 0;
    while (i < quoted && code[i] && start[i] == code[i]) i++;
    print_error("docs/writing_an_op.md's C block differs from examples/custom_op.c at byte %zu "
                "(block %zu bytes, file %zu)\n", i, quoted, strlen(code));
    fail();
  }
  assert_null(strstr(end + 1, "```c")); /* and no second C block to drift */
  free(doc);
  free(code);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_page_quotes_the_example),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
