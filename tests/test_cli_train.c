/* The training commands as a user and a scheduler drive them: SIGTERM
 * saves and exits 143, a second run on the same --out folder is refused,
 * absurd sizes are refused up front, data the closing sample sheet cannot
 * decode is refused before step 1, and a resumed run's loss.csv is the
 * uninterrupted run's; flags that conflict are refused naming both, one
 * training loss in the progress lines, loss.csv and the closing line, a
 * progress line that fits a narrow terminal, a resume with another --batch
 * refused in one line, the fine-tuning report, classify's log in train's
 * format, and --shard-optimizer accepted with one rank, changing nothing. */
#include "testutil.h"

#include "patchgrad/autograd/autocast.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <pty.h>
#include <sys/ioctl.h>
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
  if (pg_make_synthetic(&so, pg_test_tmp("train.h5"))) return -1;
  so.classes = 2;
  so.seed = 1;
  return pg_make_synthetic(&so, pg_test_tmp("two.h5")) ? -1 : 0;
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

/* `patchgrad ARGS > out.txt 2> err.txt` through the shell; its exit status. */
static int run_cli(const char *args) {
  char cmd[4096], out[512];
  snprintf(out, sizeof out, "%s", pg_test_tmp("out.txt"));
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' %s > '%s' 2> '%s'", PG_BUILD_DIR, args, out, pg_test_tmp("err.txt"));
  const int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* run_cli with the arguments formatted like printf. */
static int run_clif(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_clif(const char *fmt, ...) {
  char args[3000];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  return run_cli(args);
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

/* Flags that conflict, or that the run would ignore, are refused before
 * anything is read, naming both. */
static void test_conflicting_flags_refused(void **state) {
  (void)state;
  const struct {
    const char *cmd, *flags, *want;
  } cases[] = {
      {"train", "--steps 10 --epochs 2", "--steps 10 and --epochs 2 both set the length of the run"},
      {"classify train", "--steps 10 --epochs 2", "--steps 10 and --epochs 2"},
      {"train", "--momentum 0.5", "--momentum is an SGD setting and --optim adamw has none"},
      {"vae train", "--optim adam --nesterov", "--nesterov is an SGD setting and --optim adam has none"},
      {"train", "--optim sgd --beta2 0.99", "--beta2 is an Adam/AdamW setting and --optim sgd has none"},
      {"classify train", "--step-size 5", "--step-size belongs to the step schedule and the schedule is cosine"},
      {"train", "--gamma 0.5 --schedule warmup --warmup 3", "--gamma belongs to the step schedule and the schedule is warmup"},
      {"train", "--batch 16 --accum 3", "--batch 16 is not divisible by --accum 3"},
      {"train", "--allow-partial", "--allow-partial applies to --init-from"},
      {"train", "--lr-for 'head.*'", "--lr-for 'head.*' is not GLOB=LR"},
      {"train", "--init-from a.h5 --resume b.h5", "--init-from a.h5 and --resume b.h5"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char args[1024];
    snprintf(args, sizeof args, "%s --data '%s' --out '%s' --quiet %s", cases[i].cmd, pg_test_tmp("train.h5"),
             pg_test_tmp("conflict"), cases[i].flags);
    assert_int_equal(run_cli(args), 2);
    assert_stderr_contains(cases[i].want);
  }
  /* the default --steps gives way to --epochs */
  char args[1024];
  snprintf(args, sizeof args, "train --data '%s' --out '%s' --quiet --hidden 16 --depth 1 --batch 16 --epochs 1 "
           "--cols 0 --threads 1", pg_test_tmp("train.h5"), pg_test_tmp("epochs"));
  assert_int_equal(run_cli(args), 0);
  assert_false(pg_test_exists(pg_test_tmp("conflict")));
}

/* The n-th comma-separated field of a line, as a number. */
static double field(const char *line, int n) {
  for (int i = 0; i < n && line; i++) line = strchr(line, ',') ? strchr(line, ',') + 1 : NULL;
  assert_non_null(line);
  return strtod(line, NULL);
}

/* One training loss: the progress line at each row (not on a terminal), the
 * row of loss.csv and the closing line say the same number. */
static void test_one_training_loss(void **state) {
  (void)state;
  char args[2048], csv_path[600];
  snprintf(args, sizeof args, "train --data '%s' --hidden 16 --depth 1 --batch 16 --cols 0 --threads 1 --steps 10 "
           "--log-every 4 --lr 1e-3 --out '%s'", pg_test_tmp("train.h5"), pg_test_tmp("oneloss"));
  assert_int_equal(run_cli(args), 0);
  snprintf(csv_path, sizeof csv_path, "%s", pg_test_tmp("oneloss/loss.csv"));
  char *csv = read_all(csv_path), *err = read_all(pg_test_tmp("err.txt")), *out = read_all(pg_test_tmp("out.txt"));
  assert_non_null(csv);
  assert_true(!strncmp(csv, "step,train_loss,val_loss,lr,epoch,seconds\n", 42));
  int rows = 0;
  double last = NAN;
  for (const char *line = strchr(csv, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
    const long step = strtol(line, NULL, 10);
    last = field(line, 1);
    char want[64];
    snprintf(want, sizeof want, "step %ld/10  loss %.4f  ", step, last);
    if (!strstr(err, want)) fail_msg("stderr lacks '%s': %s", want, err);
    rows++;
  }
  assert_int_equal(rows, 3); /* steps 4, 8 and the last, 10 (the mean of steps 9 and 10) */
  char want[64];
  snprintf(want, sizeof want, "step 10: train loss %.5f\n", last);
  assert_string_equal(out, want); /* and without a validation set, no validation loss */
  free(csv);
  free(err);
  free(out);
}

/* On a terminal 40 columns wide the progress line keeps to 39 characters
 * (fields dropped from the right), redrawn in place. */
static void test_progress_fits_a_narrow_terminal(void **state) {
  (void)state;
  char data[512], outdir[512];
  snprintf(data, sizeof data, "%s", pg_test_tmp("train.h5"));
  snprintf(outdir, sizeof outdir, "%s", pg_test_tmp("narrow"));
  struct winsize ws = {.ws_row = 24, .ws_col = 40};
  int fd;
  pid_t pid = forkpty(&fd, NULL, NULL, &ws);
  assert_true(pid >= 0);
  if (pid == 0) {
    char *argv[] = {"patchgrad", "train", "--data", data, "--hidden", "16", "--depth", "1", "--batch", "16",
                    "--steps", "30", "--log-every", "5", "--cols", "0", "--threads", "1", "--out", outdir, NULL};
    char exe[512];
    snprintf(exe, sizeof exe, "%s/patchgrad", PG_BUILD_DIR);
    execv(exe, argv);
    _exit(127);
  }
  static char buf[1 << 16];
  size_t n = 0;
  ssize_t got;
  while (n < sizeof buf - 1 && (got = read(fd, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)got;
  buf[n] = 0;
  close(fd);
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  int lines = 0, cut = 0;
  for (char *seg = strtok(buf, "\r\n"); seg; seg = strtok(NULL, "\r\n")) {
    if (!strncmp(seg, "\033[K", 3)) seg += 3;
    if (strncmp(seg, "step ", 5) || !strchr(seg, '/')) continue;
    lines++;
    if (strlen(seg) > 39) fail_msg("a progress line of %zu characters on a 40-column terminal: '%s'", strlen(seg), seg);
    cut += !strstr(seg, "ETA");
  }
  assert_true(lines >= 6);
  assert_int_equal(cut, lines);
}

/* The resume of the closing note: another --batch is refused in one line
 * naming the flag and both values. */
static void test_resume_with_another_batch_refused(void **state) {
  (void)state;
  char out[512], data[512];
  snprintf(out, sizeof out, "%s", pg_test_tmp("batch16"));
  snprintf(data, sizeof data, "%s", pg_test_tmp("train.h5"));
  const char *common = "--hidden 16 --depth 1 --quiet --cols 0 --threads 1";
  assert_int_equal(run_clif("train --data '%s' %s --batch 16 --steps 4 --out '%s'", data, common, out), 0);
  assert_int_equal(run_clif("train --data '%s' %s --batch 32 --steps 8 --out '%s' --resume '%s/ckpt.h5'", data,
                            common, out, out), 1);
  assert_stderr_contains("--batch 32 differs from the checkpoint's 16");
  char *err = read_all(pg_test_tmp("err.txt"));
  assert_non_null(err);
  assert_true(strchr(err, '\n') == err + strlen(err) - 1); /* one line */
  free(err);
  /* another optimizer: one line too, not a list of tensors */
  assert_int_equal(run_clif("train --data '%s' %s --batch 16 --steps 8 --optim sgd --out '%s' --resume '%s/ckpt.h5'",
                            data, common, out, out), 1);
  assert_stderr_contains("the checkpoint was trained with adamw, this run uses sgd");
}

/* train --precision bf16: where bf16 runs, a run in it is recorded as
 * such and resuming it in fp32 is refused; where it cannot, the flag is
 * refused naming what is missing. A bad name is a usage error. */
static void test_precision_flag(void **state) {
  (void)state;
  char out[512], data[512];
  snprintf(out, sizeof out, "%s", pg_test_tmp("bf16"));
  snprintf(data, sizeof data, "%s", pg_test_tmp("train.h5"));
  const char *common = "--hidden 16 --depth 1 --quiet --cols 0 --threads 1 --batch 16";
  assert_int_equal(run_clif("train --data '%s' %s --steps 2 --precision fp16 --out '%s'", data, common, out), 2);
  assert_stderr_contains("--precision: precision 'fp16' is not one of fp32, bf16");
  if (pg_bf16_available() == PG_OK) {
    assert_int_equal(run_clif("train --data '%s' %s --steps 4 --precision bf16 --out '%s'", data, common, out), 0);
    assert_int_equal(run_clif("train --data '%s' %s --steps 8 --out '%s' --resume '%s/ckpt.h5'", data, common, out,
                              out), 1);
    assert_stderr_contains("--precision fp32 differs from the checkpoint's bf16");
    assert_int_equal(run_clif("train --data '%s' %s --steps 8 --precision bf16 --out '%s' --resume '%s/ckpt.h5'",
                              data, common, out, out), 0);
  } else {
    assert_int_equal(run_clif("train --data '%s' %s --steps 4 --precision bf16 --out '%s'", data, common, out), 2);
    assert_stderr_contains("--precision: ");
  }
}

/* --init-from a 4-class checkpoint on 2-class data: the start lists the
 * re-initialised label table and the closing line says so. */
static void test_fine_tune_report(void **state) {
  (void)state;
  char base[512], data[512], two[512];
  snprintf(base, sizeof base, "%s", pg_test_tmp("base4"));
  snprintf(data, sizeof data, "%s", pg_test_tmp("train.h5"));
  snprintf(two, sizeof two, "%s", pg_test_tmp("two.h5"));
  const char *common = "--hidden 16 --depth 1 --batch 16 --cols 0 --threads 1 --steps 2";
  assert_int_equal(run_clif("train --data '%s' %s --quiet --out '%s'", data, common, base), 0);
  assert_int_equal(run_clif("train --data '%s' %s --out '%s/tuned2' --init-from '%s/ckpt.h5'", two, common,
                            pg_test_tmpdir(), base), 0);
  assert_stderr_contains("loaded 21 of the model's 22 tensors");
  assert_stderr_contains("re-initialised for the data's 2 classes (the checkpoint's 4): "
                         "y_embedder.embedding_table.weight ([5, 16] in the file, [3, 16] in the model)");
  assert_stderr_contains("class table re-initialised for 2 classes (was 4): y_embedder.embedding_table.weight\n");
  /* the model summary at the start */
  assert_stderr_contains("Trainable params: ");
}

/* classify train writes train's log: loss.csv with the same leading
 * columns, and its curve loss.png. */
static void test_classify_log_is_trains(void **state) {
  (void)state;
  char args[2048];
  snprintf(args, sizeof args, "classify train --data '%s' --val-data '%s' --hidden 16 --depth 1 --heads 2 "
           "--patch 2 --batch 16 --steps 8 --log-every 4 --threads 1 --quiet --out '%s'",
           pg_test_tmp("train.h5"), pg_test_tmp("train.h5"), pg_test_tmp("vitlog"));
  assert_int_equal(run_cli(args), 0);
  char *csv = read_all(pg_test_tmp("vitlog/loss.csv"));
  assert_non_null(csv);
  assert_true(!strncmp(csv, "step,train_loss,val_loss,lr,epoch,train_accuracy,val_accuracy,seconds\n", 70));
  free(csv);
  assert_true(pg_test_exists(pg_test_tmp("vitlog/loss.png")));
  assert_false(pg_test_exists(pg_test_tmp("vitlog/log.csv")));
}

/* --shard-optimizer with one rank is accepted by the training commands and
 * changes nothing (the same closing line, the same checkpoint numbers);
 * under mpirun tests/test_data_parallel.c checks it on 2 and 4 ranks. */
static void test_shard_optimizer_one_rank(void **state) {
  (void)state;
  const char *common = "--hidden 16 --depth 1 --batch 16 --cols 0 --threads 1 --steps 3 --quiet";
  char plain[1024], sharded[1024];
  for (int k = 0; k < 2; k++) {
    assert_int_equal(run_clif("train --data '%s' %s --out '%s' %s", pg_test_tmp("train.h5"), common,
                              pg_test_tmp(k ? "shard1" : "plain1"), k ? "--shard-optimizer" : ""),
                     0);
    char *out = read_all(pg_test_tmp("out.txt"));
    assert_non_null(out);
    snprintf(k ? sharded : plain, sizeof plain, "%s", out);
    free(out);
  }
  assert_true(strstr(plain, "step 3: train loss ") != NULL);
  assert_string_equal(sharded, plain);
  assert_int_equal(run_clif("classify train --data '%s' --hidden 16 --depth 1 --heads 2 --patch 2 --batch 16 "
                            "--steps 2 --threads 1 --quiet --shard-optimizer --out '%s'",
                            pg_test_tmp("train.h5"), pg_test_tmp("vitshard")),
                   0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigterm_saves_and_resumes),
      cmocka_unit_test(test_stale_lock_is_taken_over),
      cmocka_unit_test(test_absurd_sizes_refused),
      cmocka_unit_test(test_resumed_log_is_uninterrupted_log),
      cmocka_unit_test(test_conflicting_flags_refused),
      cmocka_unit_test(test_one_training_loss),
      cmocka_unit_test(test_progress_fits_a_narrow_terminal),
      cmocka_unit_test(test_resume_with_another_batch_refused),
      cmocka_unit_test(test_precision_flag),
      cmocka_unit_test(test_fine_tune_report),
      cmocka_unit_test(test_classify_log_is_trains),
      cmocka_unit_test(test_shard_optimizer_one_rank),
  };
  return cmocka_run_group_tests(tests, setup_dir, pg_test_tmpdir_remove);
}
