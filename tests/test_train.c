/* The training loop of `patchgrad train`: exact resume, refusing data that
 * does not fit the model, stopping on a NaN loss without saving, SIGINT
 * saving a checkpoint, and the files a run leaves behind. */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/data/synthetic.h"
#include "patchgrad/dit/trainer.h"

static int setup_dir(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("train")) return -1;
  pg_synthetic_opts so;
  pg_synthetic_opts_init(&so);
  so.count = 96;
  so.size = 8;
  so.classes = 4;
  if (pg_make_synthetic(&so, pg_test_tmp("train.h5"))) return -1;
  so.seed = 1;
  so.count = 32;
  if (pg_make_synthetic(&so, pg_test_tmp("val.h5"))) return -1;
  so.size = 6; /* 6x6 latents do not fit patch 4 */
  if (pg_make_synthetic(&so, pg_test_tmp("six.h5"))) return -1;
  return 0;
}

static pg_train_opts small_run(const char *out) {
  pg_train_opts o;
  pg_train_opts_init(&o);
  o.run.data_path = pg_test_tmp("train.h5");
  o.val_path = pg_test_tmp("val.h5");
  o.val_count = 16;
  o.model.hidden = 16;
  o.model.depth = 1;
  o.model.heads = 2;
  o.run.batch = 16;
  o.run.optim = pg_optim_adamw(1e-3);
  o.run.out_dir = out;
  o.run.log_every = 1;
  o.run.val_every = 2;
  o.run.ckpt_every = 0;
  o.run.quiet = true;
  o.sample_cols = 0;
  o.run.ema_decay = 0.9;
  o.run.seed = 5;
  return o;
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return strdup(buf);
}

/* The training-loss column of loss.csv: "step,train," prefixes. */
static void train_losses(const char *csv, char *out, size_t cap) {
  out[0] = 0;
  const char *line = strchr(csv, '\n');
  while (line && line[1]) {
    line++;
    const char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    if (!c2) break;
    strncat(out, line, (size_t)(c2 - line));
    strncat(out, ";", cap - strlen(out) - 1);
    line = strchr(line, '\n');
  }
}

/* Params and EMA of a checkpoint, for comparing two runs bit for bit. */
/* ema NULL: the run kept no EMA. */
static void load_params(const char *ckpt, pg_params *ps, pg_params *ema) {
  pg_kv config;
  pg_kv_init(&config);
  pg_checkpoint c = {.config = &config};
  assert_int_equal(pg_checkpoint_load(ckpt, &c), PG_OK);
  pg_dit_config cfg;
  assert_int_equal(pg_dit_config_from_kv(&config, &cfg), PG_OK);
  pg_kv_free(&config);
  pg_dit m;
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  assert_int_equal(pg_dit_init(&m, &cfg, &rng), PG_OK);
  pg_dit m2;
  assert_int_equal(pg_dit_init(&m2, &cfg, &rng), PG_OK);
  pg_checkpoint w = {.params = &m.params, .ema = ema ? &m2.params : NULL};
  if (pg_checkpoint_load(ckpt, &w)) fail_msg("%s", pg_last_error());
  *ps = m.params;
  if (ema) *ema = m2.params;
  else pg_dit_free(&m2);
}

static void assert_params_identical(const pg_params *a, const pg_params *b) {
  assert_int_equal(a->count, b->count);
  for (int i = 0; i < a->count; i++) {
    assert_string_equal(a->items[i].name, b->items[i].name);
    assert_memory_equal(a->items[i].tensor->data, b->items[i].tensor->data,
                        (size_t)a->items[i].tensor->numel * sizeof(float));
  }
}

static void test_resume_is_exact(void **state) {
  (void)state;
  pg_train_result r;
  /* one run of 8 steps */
  pg_train_opts o = small_run(pg_test_tmp("full"));
  o.run.steps = 8;
  assert_int_equal(pg_train(&o, &r), PG_OK);
  assert_int_equal(r.step, 8);
  /* 5 steps, then resumed to 8 */
  pg_train_opts a = small_run(pg_test_tmp("part"));
  a.run.steps = 5;
  assert_int_equal(pg_train(&a, &r), PG_OK);
  pg_train_opts b = small_run(pg_test_tmp("part"));
  b.run.steps = 8;
  char resume[512];
  snprintf(resume, sizeof resume, "%s", pg_test_tmp("part/ckpt.h5"));
  b.run.resume = resume;
  assert_int_equal(pg_train(&b, &r), PG_OK);
  assert_int_equal(r.step, 8);

  pg_params p1, e1, p2, e2;
  load_params(pg_test_tmp("full/ckpt.h5"), &p1, &e1);
  load_params(pg_test_tmp("part/ckpt.h5"), &p2, &e2);
  assert_params_identical(&p1, &p2);
  assert_params_identical(&e1, &e2);
  pg_params_free(&p1);
  pg_params_free(&e1);
  pg_params_free(&p2);
  pg_params_free(&e2);
  /* the same losses, step by step */
  char *c1 = read_all(pg_test_tmp("full/loss.csv")), *c2 = read_all(pg_test_tmp("part/loss.csv"));
  assert_non_null(c1);
  assert_non_null(c2);
  static char l1[8192], l2[8192];
  train_losses(c1, l1, sizeof l1);
  train_losses(c2, l2, sizeof l2);
  assert_true(strlen(l1) > 16);
  assert_string_equal(l1, l2);
  free(c1);
  free(c2);
  /* a run leaves its files behind */
  struct stat st;
  assert_int_equal(stat(pg_test_tmp("full/init.h5"), &st), 0);
  assert_int_equal(stat(pg_test_tmp("full/loss.png"), &st), 0);
  assert_int_equal(stat(pg_test_tmp("full/val_draws.h5"), &st), 0);
  assert_int_not_equal(stat(pg_test_tmp("full/ckpt.h5.tmp"), &st), 0);
}

static void test_rejects_unfit_data(void **state) {
  (void)state;
  pg_train_result r;
  pg_train_opts o = small_run(pg_test_tmp("unfit"));
  o.run.data_path = pg_test_tmp("six.h5");
  o.val_path = NULL;
  o.model.patch_size = 4;
  o.run.steps = 1;
  assert_int_equal(pg_train(&o, &r), PG_ERR_ARG);
  assert_error_contains("6x6 latents, which patch size 4 does not divide");
  /* the command says the same and exits non-zero */
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "%s/patchgrad train --data %s --patch 4 --batch 8 --steps 1 --out %s --quiet 2>%s",
           PG_BUILD_DIR, pg_test_tmp("six.h5"), pg_test_tmp("unfit"), pg_test_tmp("err.txt"));
  int rc = system(cmd);
  assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
  char *err = read_all(pg_test_tmp("err.txt"));
  assert_non_null(strstr(err, "patch size 4 does not divide"));
  free(err);
  /* a missing file names itself */
  o.run.data_path = pg_test_tmp("nothere.h5");
  assert_int_not_equal(pg_train(&o, &r), PG_OK);
  assert_error_contains("nothere.h5");
}

static void test_nan_stops_without_saving(void **state) {
  (void)state;
  pg_train_result r;
  pg_train_opts o = small_run(pg_test_tmp("nan"));
  o.run.optim = pg_optim_sgd(1e30); /* diverges at once */
  o.run.steps = 50;
  o.run.ckpt_every = 1;             /* would save after every good step */
  pg_status st = pg_train(&o, &r);
  assert_int_equal(st, PG_ERR_STATE);
  assert_true(strstr(pg_last_error(), "NaN") || strstr(pg_last_error(), "Inf") ||
              strstr(pg_last_error(), "not finite"));
  assert_error_contains("at step");
  /* the checkpoint on disk, if any, is from a step with a finite loss: it
   * loads, and holds only finite numbers */
  struct stat sb;
  if (stat(pg_test_tmp("nan/ckpt.h5"), &sb) == 0) {
    pg_params p, e;
    load_params(pg_test_tmp("nan/ckpt.h5"), &p, &e);
    for (int i = 0; i < p.count; i++)
      for (int64_t j = 0; j < p.items[i].tensor->numel; j++) assert_true(isfinite(p.items[i].tensor->data[j]));
    pg_params_free(&p);
    pg_params_free(&e);
  }
}

static void test_sigint_saves(void **state) {
  (void)state;
  char out[512];
  snprintf(out, sizeof out, "%s", pg_test_tmp("sigint"));
  pid_t pid = fork();
  if (pid == 0) {
    char *argv[] = {"patchgrad", "train", "--data", (char *)pg_test_tmp("train.h5"), "--hidden", "16",
                    "--depth", "1", "--batch", "16", "--steps", "1000000", "--out", out,
                    "--quiet", "--cols", "0", NULL};
    char exe[512];
    snprintf(exe, sizeof exe, "%s/patchgrad", PG_BUILD_DIR);
    execv(exe, argv);
    _exit(127);
  }
  /* wait until training runs (init.h5 appears), then interrupt */
  struct stat sb;
  char init[600];
  snprintf(init, sizeof init, "%s/init.h5", out);
  for (int i = 0; i < 600 && stat(init, &sb) != 0; i++) nanosleep(&(struct timespec){0, 100000000}, NULL);
  nanosleep(&(struct timespec){0, 500000000}, NULL);
  kill(pid, SIGINT);
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 130);
  char ckpt[600];
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out);
  assert_int_equal(stat(ckpt, &sb), 0);
  pg_params p;
  load_params(ckpt, &p, NULL);
  pg_params_free(&p);
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resume_is_exact),
      cmocka_unit_test(test_rejects_unfit_data),
      cmocka_unit_test(test_nan_stops_without_saving),
      cmocka_unit_test(test_sigint_saves),
  };
  return cmocka_run_group_tests(tests, setup_dir, pg_test_tmpdir_remove);
}
