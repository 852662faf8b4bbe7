/* The training commands as a user and a scheduler drive them: SIGTERM
 * saves and exits 143, a second run on the same --out folder is refused,
 * absurd sizes are refused up front, data the closing sample sheet cannot
 * decode is refused before step 1, and a resumed run's loss.csv is the
 * uninterrupted run's. */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "patchgrad/data/synthetic.h"
#include "patchgrad/io/checkpoint.h"

static int setup_dir(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("cli_train")) return -1;
  pg_synthetic_opts so;
  pg_synthetic_opts_init(&so);
  so.count = 64;
  so.size = 8;
  so.classes = 4;
  return pg_make_synthetic(&so, pg_test_tmp("train.h5")) ? -1 : 0;
}

/* The whole of a small file, or NULL. */
static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return strdup(buf);
}

/* `patchgrad ARGS 2> err.txt` through the shell; its exit status. */
static int run_cli(const char *args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' %s > /dev/null 2> '%s'", PG_BUILD_DIR, args, pg_test_tmp("err.txt"));
  const int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void assert_stderr_contains(const char *needle) {
  char *err = read_all(pg_test_tmp("err.txt"));
  assert_non_null(err);
  if (!strstr(err, needle)) fail_msg("stderr lacks '%s': %s", needle, err);
  free(err);
}

static int64_t checkpoint_step(const char *path) {
  int64_t step = -1;
  pg_checkpoint c = {.step = &step};
  if (pg_checkpoint_load(path, &c)) fail_msg("%s", pg_last_error());
  return step;
}

/* A tiny DiT training run in the background on out, until init.h5 shows
 * that it trains; its pid. */
static pid_t start_training(const char *out) {
  char data[512];
  snprintf(data, sizeof data, "%s", pg_test_tmp("train.h5"));
  pid_t pid = fork();
  if (pid == 0) {
    char *argv[] = {"patchgrad", "train", "--data", data, "--hidden", "16", "--depth", "1", "--batch", "16",
                    "--steps", "1000000", "--out", (char *)out, "--quiet", "--cols", "0", "--threads", "1",
                    NULL};
    char exe[512];
    snprintf(exe, sizeof exe, "%s/patchgrad", PG_BUILD_DIR);
    execv(exe, argv);
    _exit(127);
  }
  struct stat sb;
  char init[600];
  snprintf(init, sizeof init, "%s/init.h5", out);
  for (int i = 0; i < 600 && stat(init, &sb) != 0; i++) nanosleep(&(struct timespec){0, 100000000}, NULL);
  nanosleep(&(struct timespec){0, 300000000}, NULL);
  return pid;
}

static void test_sigterm_saves_and_resumes(void **state) {
  (void)state;
  char out[512], ckpt[600], args[2048];
  snprintf(out, sizeof out, "%s", pg_test_tmp("term"));
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out);
  pid_t pid = start_training(out);
  /* a second run on the same folder meanwhile is refused, naming it and the owner */
  snprintf(args, sizeof args, "train --data '%s' --hidden 16 --depth 1 --batch 16 --steps 1 --out '%s' --quiet",
           pg_test_tmp("train.h5"), out);
  assert_int_equal(run_cli(args), 1);
  char owner[64];
  snprintf(owner, sizeof owner, "pid %ld", (long)pid);
  assert_stderr_contains(owner);
  assert_stderr_contains(out);
  kill(pid, SIGTERM);
  int status;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) fail_msg("killed by signal %d", WTERMSIG(status));
  assert_int_equal(WEXITSTATUS(status), 143);
  const int64_t step = checkpoint_step(ckpt);
  assert_true(step >= 1);
  /* --resume continues it: two more steps */
  snprintf(args, sizeof args,
           "train --data '%s' --hidden 16 --depth 1 --batch 16 --steps %lld --out '%s' --resume '%s' --quiet "
           "--cols 0 --threads 1",
           pg_test_tmp("train.h5"), (long long)step + 2, out, ckpt);
  assert_int_equal(run_cli(args), 0);
  assert_int_equal(checkpoint_step(ckpt), step + 2);
}

/* A lock left by a process that is gone (kill -9) is taken over with a
 * note, and removed at the end of the run. */
static void test_stale_lock_is_taken_over(void **state) {
  (void)state;
  char out[512], lock[600], args[2048];
  snprintf(out, sizeof out, "%s", pg_test_tmp("stale"));
  snprintf(lock, sizeof lock, "%s/.lock", out);
  assert_int_equal(mkdir(out, 0755), 0);
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  FILE *f = fopen(lock, "w");
  assert_non_null(f);
  fprintf(f, "%ld\n", (long)dead);
  fclose(f);
  snprintf(args, sizeof args,
           "train --data '%s' --hidden 16 --depth 1 --batch 16 --steps 1 --out '%s' --quiet --cols 0 "
           "--threads 1",
           pg_test_tmp("train.h5"), out);
  assert_int_equal(run_cli(args), 0);
  assert_stderr_contains("stale lock");
  assert_false(pg_test_exists(lock));
  /* a lock whose owner runs (this test) refuses */
  f = fopen(lock, "w");
  assert_non_null(f);
  fprintf(f, "%ld\n", (long)getpid());
  fclose(f);
  assert_int_equal(run_cli(args), 1);
  assert_stderr_contains("in use by another run");
  assert_true(pg_test_exists(lock));
  remove(lock);
}

/* Sizes the machine cannot hold are refused before any allocation, with
 * the size and the limit. */
static void test_absurd_sizes_refused(void **state) {
  (void)state;
  char args[2048];
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  snprintf(args, sizeof args, "train --data '%s' --threads %ld --steps 1 --out '%s' --quiet", pg_test_tmp("train.h5"),
           cores + 1, pg_test_tmp("absurd"));
  assert_int_equal(run_cli(args), 2);
  char want[128];
  snprintf(want, sizeof want, "--threads %ld is more than this machine's %ld cores", cores + 1, cores);
  assert_stderr_contains(want);
  snprintf(args, sizeof args, "train --data '%s' --hidden 65536 --steps 1 --out '%s' --quiet",
           pg_test_tmp("train.h5"), pg_test_tmp("absurd"));
  assert_int_equal(run_cli(args), 2);
  assert_stderr_contains("GB of memory available");
  snprintf(args, sizeof args, "classify train --data '%s' --hidden 65536 --steps 1 --out '%s' --quiet",
           pg_test_tmp("train.h5"), pg_test_tmp("absurd"));
  assert_int_equal(run_cli(args), 2);
  assert_stderr_contains("GB of memory available");
  /* nothing was written */
  assert_false(pg_test_exists(pg_test_tmp("absurd")));
}

/* loss.csv without its seconds column (the last). */
static char *log_without_seconds(const char *path) {
  char *csv = read_all(path);
  assert_non_null(csv);
  char *w = csv;
  for (const char *line = csv; *line;) {
    const char *end = strchr(line, '\n'), *cut = end;
    if (!end) end = cut = line + strlen(line);
    while (cut > line && cut[-1] != ',') cut--;
    memmove(w, line, (size_t)(cut - line));
    w += cut - line;
    *w++ = '\n';
    line = *end ? end + 1 : end;
  }
  *w = 0;
  return csv;
}

/* 40 steps in one run, and 20 (or 25, off the log grid) then resumed to
 * 40: the same loss.csv, row for row (the seconds aside). */
static void test_resumed_log_is_uninterrupted_log(void **state) {
  (void)state;
  char args[2048], ckpt[600];
  const char *common = "--hidden 16 --depth 1 --batch 16 --quiet --cols 0 --threads 1 --log-every 10";
  snprintf(args, sizeof args, "train --data '%s' %s --steps 40 --out '%s'", pg_test_tmp("train.h5"), common,
           pg_test_tmp("log40"));
  assert_int_equal(run_cli(args), 0);
  char *want = log_without_seconds(pg_test_tmp("log40/loss.csv"));
  for (int split = 20; split <= 25; split += 5) {
    char out[512];
    snprintf(out, sizeof out, "%s%d", pg_test_tmp("split"), split);
    snprintf(args, sizeof args, "train --data '%s' %s --steps %d --out '%s'", pg_test_tmp("train.h5"), common, split,
             out);
    assert_int_equal(run_cli(args), 0);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out);
    snprintf(args, sizeof args, "train --data '%s' %s --steps 40 --out '%s' --resume '%s'", pg_test_tmp("train.h5"),
             common, out, ckpt);
    assert_int_equal(run_cli(args), 0);
    char csv[600];
    snprintf(csv, sizeof csv, "%s/loss.csv", out);
    char *got = log_without_seconds(csv);
    assert_string_equal(got, want);
    free(got);
  }
  free(want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigterm_saves_and_resumes),
      cmocka_unit_test(test_stale_lock_is_taken_over),
      cmocka_unit_test(test_absurd_sizes_refused),
      cmocka_unit_test(test_resumed_log_is_uninterrupted_log),
  };
  return cmocka_run_group_tests(tests, setup_dir, pg_test_tmpdir_remove);
}
