/* Process-wide settings (autograd/runtime.h): the library alone changes no
 * environment variable, even across matrix products and pg_set_threads;
 * pg_runtime_init times the kernel sets where runtime.h says (an AMD CPU with
 * AVX-512), sets BLIS_ARCH_TYPE only when skx won, runs the set it names,
 * and leaves a user's own value alone; called after BLIS has run,
 * it refuses with a message; the choice is measured once per machine and
 * kept in a file that later runs obey. Each case runs in a fresh child process, since
 * BLIS starts once per process. (This program does not link testutil.c,
 * whose test programs start with pg_runtime_init.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/runtime.h"

/* Runs child() in a new process; returns its exit status. */
static int in_child(int (*child)(void)) {
  pid_t pid = fork();
  if (pid == 0) _exit(child());
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

static int a_product(void) {
  float a[4] = {1, 2, 3, 4}, c[4];
  pg_gemm(false, false, 2, 2, 2, 1.0f, a, 2, a, 2, 0.0f, c, 2);
  return c[0] == 7.0f ? 0 : 10;
}

/* The library without pg_runtime_init: products and threads leave the
 * environment alone. */
static int library_alone(void) {
  unsetenv("BLIS_ARCH_TYPE");
  pg_set_threads(2);
  if (a_product()) return 1;
  pg_gemm_serial(false, false, 1, 1, 1, 1.0f, (float[]){2}, 1, (float[]){3}, 1, 0.0f, (float[1]){0}, 1);
  return getenv("BLIS_ARCH_TYPE") ? 2 : 0;
}

/* Whether runtime.h's rule applies to this CPU. */
static int amd_with_avx512(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_is("amd") && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
  return 0;
#endif
}

static int init_first(void) {
  unsetenv("BLIS_ARCH_TYPE");
  if (pg_runtime_init(NULL) != PG_OK) return 1;
  const char *arch = getenv("BLIS_ARCH_TYPE");
  const char *why = pg_runtime_blis_choice();
  /* elsewhere nothing is set; on an AMD CPU with AVX-512 the kernels were
   * timed, and BLIS_ARCH_TYPE is set exactly when skx won */
  if (!amd_with_avx512()) {
    if (arch) return 2;
  } else {
    if (!strstr(why, "measured")) return 5;
    if ((arch != NULL) != (strncmp(why, "skx", 3) == 0)) return 6;
  }
  if (a_product()) return 3;
  /* the set now running is the one the choice names */
  if (amd_with_avx512() && strncmp(why, pg_blas_kernels(), strlen(pg_blas_kernels())) != 0) return 7;
  /* BLIS has run: a second call refuses and names the reason */
  if (pg_runtime_init(NULL) != PG_ERR_STATE || !strstr(pg_last_error(), "BLIS has run already"))
    return 4;
  return 0;
}

static int user_value_wins(void) {
  setenv("BLIS_ARCH_TYPE", "user", 1);
  if (pg_runtime_init(NULL) != PG_OK) return 1;
  return strcmp(getenv("BLIS_ARCH_TYPE"), "user") ? 2 : 0;
}

static int option_off(void) {
  unsetenv("BLIS_ARCH_TYPE");
  pg_runtime_options o = pg_runtime_defaults();
  if (!o.blis_arch) return 1;
  o.blis_arch = false;
  if (pg_runtime_init(&o) != PG_OK) return 2;
  return getenv("BLIS_ARCH_TYPE") ? 3 : 0;
}

/* ---- the kept choice (runtime.h): measured once per machine ---- */

static char cache_dir[256];

static int choice_in_child(void) {
  unsetenv("BLIS_ARCH_TYPE");
  setenv("PG_CACHE_DIR", cache_dir, 1);
  if (pg_runtime_init(NULL) != PG_OK) return 1;
  printf("  %s\n", pg_runtime_blis_choice());
  if (a_product()) return 3;
  const char *why = pg_runtime_blis_choice();
  /* exit 10 + (skx ? 1 : 0) + (kept ? 2 : 0) + (not kept ? 4 : 0) */
  return 10 + (strncmp(why, "skx", 3) == 0) + 2 * (strstr(why, "earlier") != NULL) +
         4 * (strstr(why, "not kept") != NULL);
}

static char *read_file(const char *path) {
  static char text[1024];
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  return text;
}

static void test_choice_is_kept(void **state) {
  (void)state;
  if (!amd_with_avx512()) skip(); /* the choice is made only there */
  snprintf(cache_dir, sizeof cache_dir, "/tmp/pg_runtime_cache_%ld", (long)getpid());
  char path[512];
  snprintf(path, sizeof path, "%s/blis-kernels", cache_dir);
  unlink(path);
  rmdir(cache_dir);
  /* the first run measures and keeps the result */
  const int first = in_child(choice_in_child);
  assert_in_range(first, 10, 11);
  char *text = read_file(path);
  assert_non_null(text);
  assert_non_null(strstr(text, first == 11 ? "kernels=skx" : "kernels=own"));
  /* later runs use it, whatever a new timing would say */
  assert_int_equal(in_child(choice_in_child), first + 2);
  /* a kept choice is obeyed: the opposite one, written by hand */
  char flipped[1024];
  snprintf(flipped, sizeof flipped, "%s", text);
  char *k = strstr(flipped, "kernels=");
  assert_non_null(k);
  const char *other = first == 11 ? "own" : "skx";
  memcpy(k + 8, other, 3);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(flipped, f);
  fclose(f);
  assert_int_equal(in_child(choice_in_child), (first == 11 ? 10 : 11) + 2);
  /* a file of another CPU is measured again */
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("cpu=Another CPU\nkernels=skx\nown=zen3 1.0\nskx=2.0\n", f);
  fclose(f);
  assert_in_range(in_child(choice_in_child), 10, 11);
  assert_null(strstr(read_file(path), "Another CPU"));
  unlink(path);
  /* a folder that cannot be made: measured, not kept */
  snprintf(cache_dir, sizeof cache_dir, "/proc/pg_no_such_folder/cache");
  const int unkept = in_child(choice_in_child);
  assert_true(unkept == 14 || unkept == 15);
  snprintf(cache_dir, sizeof cache_dir, "/tmp/pg_runtime_cache_%ld", (long)getpid());
  rmdir(cache_dir);
}

static void test_library_alone_changes_no_environment(void **state) {
  (void)state;
  assert_int_equal(in_child(library_alone), 0);
}

static void test_runtime_init(void **state) {
  (void)state;
  assert_int_equal(in_child(init_first), 0);
  assert_int_equal(in_child(user_value_wins), 0);
  assert_int_equal(in_child(option_off), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_library_alone_changes_no_environment),
      cmocka_unit_test(test_runtime_init),
      cmocka_unit_test(test_choice_is_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
