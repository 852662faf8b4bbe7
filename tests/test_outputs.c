/* What commands write, checked before any work: `sample` never writes over
 * the checkpoint it reads, refuses an empty --out, a name too long for its
 * files, a class that does not fit an int, and a checkpoint whose data
 * transform cannot be decoded; `check` refuses a NaN tolerance. Temporary
 * files of processes killed half-way (kill -9) are removed by the next write
 * to the same target, while those of live processes and other programs'
 * files stay. */
#include "testutil.h"

#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "patchgrad/io/atomic.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"

static int setup(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("outputs")) return -1;
  char out[8192];
  int rc = pg_test_run(out, sizeof out,
                       "%s/patchgrad latents --source synthetic --count 32 --size 4 --channels 4 "
                       "--classes 2 --out %s && %s/patchgrad train --data %s --hidden 16 --depth 1 "
                       "--heads 2 --patch 2 --batch 8 --steps 2 --cols 0 --threads 1 --quiet "
                       "--out %s",
                       PG_BUILD_DIR, pg_test_tmp("d.h5"), PG_BUILD_DIR, pg_test_tmp("d.h5"),
                       pg_test_tmp("run"));
  return rc == 0 ? 0 : -1;
}

static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  rewind(f);
  char *b = malloc((size_t)*len + 1);
  assert_int_equal(fread(b, 1, (size_t)*len, f), (size_t)*len);
  fclose(f);
  return b;
}

/* `patchgrad sample ARGS` exits with status 2 at once, saying `needle`. */
static void assert_sample_refused(const char *args, const char *needle) {
  char out[8192];
  time_t t0 = time(NULL);
  int rc = pg_test_run(out, sizeof out, "%s/patchgrad sample %s --sample-steps 2 --cols 1 --threads 1",
                       PG_BUILD_DIR, args);
  assert_int_equal(rc, 2);
  assert_non_null(strstr(out, needle));
  assert_null(strstr(out, "sample: step")); /* refused before any sampling */
  assert_true(time(NULL) - t0 < 60);
}

static void test_sample_never_overwrites_its_checkpoint(void **state) {
  (void)state;
  char ck[600], args[2000];
  snprintf(ck, sizeof ck, "%s", pg_test_tmp("ck.h5"));
  char cp[1400];
  snprintf(cp, sizeof cp, "cp %s %s", pg_test_tmp("run/ckpt.h5"), ck);
  assert_int_equal(system(cp), 0);
  long len;
  char *before = slurp(ck, &len);
  /* the PNG would be written over it */
  snprintf(args, sizeof args, "--ckpt %s --out %s", ck, ck);
  assert_sample_refused(args, "which is the checkpoint --ckpt");
  /* grid.png beside ck.h5: the raw latents would be */
  snprintf(args, sizeof args, "--ckpt %s --out %s", ck, pg_test_tmp("ck.png"));
  assert_sample_refused(args, "which is the checkpoint --ckpt");
  /* the same file through another name */
  assert_int_equal(symlink(ck, pg_test_tmp("alias.h5")), 0);
  snprintf(args, sizeof args, "--ckpt %s --out %s", pg_test_tmp("alias.h5"), pg_test_tmp("ck.png"));
  assert_sample_refused(args, "which is the checkpoint --ckpt");
  long after_len;
  char *after = slurp(ck, &after_len);
  assert_int_equal(after_len, len);
  assert_memory_equal(after, before, (size_t)len);
  free(after);
  free(before);
  assert_false(pg_test_exists(pg_test_tmp("ck.h5.h5")));
}

static void test_sample_refuses_bad_outputs_up_front(void **state) {
  (void)state;
  char args[8000], ck[600];
  snprintf(ck, sizeof ck, "%s", pg_test_tmp("run/ckpt.h5"));
  snprintf(args, sizeof args, "--ckpt %s --out ''", ck);
  assert_sample_refused(args, "an output path may not be empty");
  assert_false(pg_test_exists(".h5"));
  /* a file name longer than NAME_MAX less the temporary's suffix */
  char name[300];
  memset(name, 'a', 250);
  snprintf(name + 250, sizeof name - 250, ".png");
  snprintf(args, sizeof args, "--ckpt %s --out %s/%s", ck, pg_test_tmpdir(), name);
  assert_sample_refused(args, "too long");
  /* a path longer than PATH_MAX */
  int n = snprintf(args, sizeof args, "--ckpt %s --out %s/", ck, pg_test_tmpdir());
  for (int i = 0; i < 40; i++) n += snprintf(args + n, sizeof args - (size_t)n, "%0120d/", i);
  snprintf(args + n, sizeof args - (size_t)n, "s.png");
  assert_sample_refused(args, "too long");
  /* a class number that does not fit: no wrap to a valid class */
  snprintf(args, sizeof args, "--ckpt %s --out %s --class 3000000000", ck, pg_test_tmp("c.png"));
  assert_sample_refused(args, "--class '3000000000' is not a class number");
  snprintf(args, sizeof args, "--ckpt %s --out %s --class -1", ck, pg_test_tmp("c.png"));
  assert_sample_refused(args, "is not a class number");
  assert_false(pg_test_exists(pg_test_tmp("c.png")));
}

/* A checkpoint whose data_* settings cannot be decoded: a message, exit 1. */
static void test_sample_refuses_bad_transform(void **state) {
  (void)state;
  const struct {
    const char *key;
    bool as_double;
    double v;
    const char *needle;
  } bad[] = {
      {"data_pad", false, -1, "pad = -1"},
      {"data_pad", false, -100, "pad = -100"},
      {"data_space_to_depth", false, 4294967296.0, "space_to_depth = 4294967296"},
      {"data_std", true, 0, "std = 0"},
      {"data_std", true, 1.0 / 0.0, "std = inf"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp %s %s", pg_test_tmp("run/ckpt.h5"), pg_test_tmp("tf.h5"));
    assert_int_equal(system(cmd), 0);
    hid_t f = H5Fopen(pg_test_tmp("tf.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "config", H5P_DEFAULT);
    assert_true(g >= 0);
    assert_int_equal(bad[i].as_double ? pg_h5_set_attr_double(g, bad[i].key, bad[i].v)
                                      : pg_h5_set_attr_int(g, bad[i].key, (int64_t)bad[i].v),
                     PG_OK);
    H5Gclose(g);
    H5Fclose(f);
    char out[8192];
    int rc = pg_test_run(out, sizeof out, "%s/patchgrad sample --ckpt %s --out %s --sample-steps 2 "
                         "--cols 1 --threads 1", PG_BUILD_DIR, pg_test_tmp("tf.h5"),
                         pg_test_tmp("tf_out.png"));
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, bad[i].needle));
    assert_non_null(strstr(out, "data_pad")); /* names the settings */
    assert_false(pg_test_exists(pg_test_tmp("tf_out.png")));
  }
}

static void test_check_refuses_nan_tolerance(void **state) {
  (void)state;
  const char *values[] = {"nan", "inf", "-1", "x", ""};
  for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
    char out[4096];
    int rc = pg_test_run(out, sizeof out, "%s/patchgrad check %s/cases-public.h5 --atol '%s'",
                         PG_BUILD_DIR, PG_TEST_DATA, values[i]);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--atol needs a finite number >= 0"));
    rc = pg_test_run(out, sizeof out, "%s/patchgrad check %s/cases-public.h5 --rtol '%s'",
                     PG_BUILD_DIR, PG_TEST_DATA, values[i]);
    assert_int_equal(rc, 2);
  }
}

/* A process that saves the same checkpoint over and over, killed with -9. */
static void save_forever(const char *path) {
  pg_params ps;
  pg_params_init(&ps);
  pg_fill(pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(256, 256), "w"), 1.0f);
  for (;;) pg_checkpoint_save(path, &(pg_checkpoint){.params = &ps});
}

static void test_stale_temporaries_cleaned(void **state) {
  (void)state;
  const char *target = pg_test_tmp("ck_target.h5");
  char path[600];
  snprintf(path, sizeof path, "%s", target);
  /* a dead process's temporary: a child that has exited */
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  char stale[700], live[700], others[700], odd[700];
  snprintf(stale, sizeof stale, "%s.patchgrad-%ld.tmp", path, (long)dead);
  snprintf(live, sizeof live, "%s.patchgrad-%ld.tmp", path, (long)getppid());
  snprintf(others, sizeof others, "%s.tmp", path);
  snprintf(odd, sizeof odd, "%s.patchgrad-12ab.tmp", path);
  const char *files[] = {stale, live, others, odd};
  for (int i = 0; i < 4; i++) {
    FILE *f = fopen(files[i], "w");
    fputs("partial", f);
    fclose(f);
  }
  pg_params ps;
  pg_params_init(&ps);
  pg_fill(pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(2), "w"), 1.0f);
  assert_int_equal(pg_checkpoint_save(path, &(pg_checkpoint){.params = &ps}), PG_OK);
  assert_false(pg_test_exists(stale)); /* ours, its process gone: removed */
  assert_true(pg_test_exists(live));   /* a live writer's: left */
  assert_true(pg_test_exists(others)); /* another program's name: left */
  assert_true(pg_test_exists(odd));
  unlink(live);

  /* kill -9 in the middle of saves, 10 times: each kill may leave a
   * temporary; the next save removes them all, and the file loads */
  srand(7);
  for (int round = 0; round < 10; round++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) save_forever(path);
    struct timespec t = {0, (rand() % 40 + 5) * 1000 * 1000};
    nanosleep(&t, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  assert_int_equal(pg_checkpoint_save(path, &(pg_checkpoint){.params = &ps}), PG_OK);
  assert_int_equal(pg_test_temporaries(path), 1); /* only the other program's "odd" name */
  assert_true(pg_test_exists(others));
  pg_params back;
  pg_params_init(&back);
  pg_params_add(&back, PG_PARAM_WEIGHT, PG_SHAPE(2), "w");
  assert_int_equal(pg_checkpoint_load(path, &(pg_checkpoint){.params = &back}), PG_OK);
  pg_params_free(&back);
  pg_params_free(&ps);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sample_never_overwrites_its_checkpoint),
      cmocka_unit_test(test_sample_refuses_bad_outputs_up_front),
      cmocka_unit_test(test_sample_refuses_bad_transform),
      cmocka_unit_test(test_check_refuses_nan_tolerance),
      cmocka_unit_test(test_stale_temporaries_cleaned),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
