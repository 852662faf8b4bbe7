/* The training loop of `patchgrad train`: exact resume, refusing data that
 * does not fit the model, stopping on a NaN loss without saving, SIGINT
 * saving a checkpoint, and the files a run leaves behind; frozen param
 * groups, gradient accumulation, sample sheets during training, fine-tuning
 * from a checkpoint with another number of classes, and a resume that
 * refuses another run. */
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

#include <fnmatch.h>

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
  so.size = 8;
  so.classes = 2; /* a dataset with fewer classes, to fine-tune on */
  so.count = 64;
  so.seed = 2;
  if (pg_make_synthetic(&so, pg_test_tmp("two.h5"))) return -1;
  return 0;
}

/* A path of the test folder that stays valid for the whole test program
 * (pg_test_tmp's buffers are reused). */
static const char *kept(const char *name) {
  static char pool[96][512];
  static int n;
  const char *path = pg_test_tmp(name);
  for (int i = 0; i < n; i++)
    if (!strcmp(pool[i], path)) return pool[i];
  assert_true(n < 96);
  snprintf(pool[n], sizeof pool[n], "%s", path);
  return pool[n++];
}

static pg_train_opts small_run(const char *out) {
  pg_train_opts o;
  pg_train_opts_init(&o);
  o.run.data_path = kept("train.h5");
  o.val_path = kept("val.h5");
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

/* Two checkpoints hold the same weights and EMA, bit for bit. */
static void assert_checkpoints_identical(const char *a, const char *b) {
  pg_params p1, e1, p2, e2;
  load_params(a, &p1, &e1);
  load_params(b, &p2, &e2);
  assert_params_identical(&p1, &p2);
  assert_params_identical(&e1, &e2);
  pg_params *lists[] = {&p1, &e1, &p2, &e2};
  for (int i = 0; i < 4; i++) pg_params_free(lists[i]);
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

  assert_checkpoints_identical(kept("full/ckpt.h5"), kept("part/ckpt.h5"));
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

/* The EMA warm-up, the cosine noise schedule and min-SNR weighting resume
 * exactly too (the EMA's update count is the step), and a resume that
 * changes one of them is refused, naming the flag. */
static void test_resume_with_warmup_and_diffusion_options(void **state) {
  (void)state;
  pg_train_result r;
  pg_train_opts o = small_run(pg_test_tmp("wfull"));
  o.run.ema_warmup = true;
  o.noise_schedule = PG_NOISE_COSINE;
  o.min_snr_gamma = 5;
  o.run.steps = 8;
  assert_int_equal(pg_train(&o, &r), PG_OK);
  pg_train_opts a = o;
  a.run.out_dir = pg_test_tmp("wpart");
  a.run.steps = 5;
  assert_int_equal(pg_train(&a, &r), PG_OK);
  char resume[512];
  snprintf(resume, sizeof resume, "%s", pg_test_tmp("wpart/ckpt.h5"));
  pg_train_opts b = a;
  b.run.out_dir = pg_test_tmp("wpart");
  b.run.steps = 8;
  b.run.resume = resume;
  assert_int_equal(pg_train(&b, &r), PG_OK);
  assert_checkpoints_identical(kept("wfull/ckpt.h5"), kept("wpart/ckpt.h5"));
  /* the options are in the checkpoint's config */
  pg_kv config;
  pg_kv_init(&config);
  assert_int_equal(pg_checkpoint_load(kept("wfull/ckpt.h5"), &(pg_checkpoint){.config = &config}), PG_OK);
  pg_diffusion d;
  assert_int_equal(pg_diffusion_from_kv(&config, "wfull", &d), PG_OK);
  assert_int_equal(d.schedule, PG_NOISE_COSINE);
  assert_true(d.min_snr_gamma == 5);
  pg_kv_free(&config);
  /* without the warm-up the EMA of the same run differs */
  pg_train_opts c = o;
  c.run.out_dir = pg_test_tmp("wnone");
  c.run.ema_warmup = false;
  assert_int_equal(pg_train(&c, &r), PG_OK);
  pg_params p1, e1, p2, e2;
  load_params(kept("wfull/ckpt.h5"), &p1, &e1);
  load_params(kept("wnone/ckpt.h5"), &p2, &e2);
  assert_params_identical(&p1, &p2); /* the EMA does not touch training */
  int differ = 0;
  for (int i = 0; i < e1.count; i++)
    differ += memcmp(e1.items[i].tensor->data, e2.items[i].tensor->data,
                     (size_t)e1.items[i].tensor->numel * sizeof(float)) != 0;
  assert_true(differ > 0);
  pg_params *lists[] = {&p1, &e1, &p2, &e2};
  for (int i = 0; i < 4; i++) pg_params_free(lists[i]);
  /* refusals */
  b.run.steps = 9;
  b.run.resume = resume;
  b.run.ema_warmup = false;
  assert_int_equal(pg_train(&b, &r), PG_ERR_ARG);
  assert_error_contains("--ema-warmup 0 differs from the checkpoint's 1");
  b.run.ema_warmup = true;
  b.noise_schedule = PG_NOISE_LINEAR;
  assert_int_equal(pg_train(&b, &r), PG_ERR_ARG);
  assert_error_contains("--noise-schedule linear differs from the checkpoint's cosine");
  b.noise_schedule = PG_NOISE_COSINE;
  b.min_snr_gamma = 0;
  assert_int_equal(pg_train(&b, &r), PG_ERR_ARG);
  assert_error_contains("--min-snr 0 differs from the checkpoint's 5");
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


/* The largest |a - b| over the tensors whose names match glob (match) or
 * do not (!match); both lists have the same names and shapes. */
static double max_diff(const pg_params *a, const pg_params *b, const char *glob, bool match) {
  double worst = 0;
  for (int i = 0; i < a->count; i++) {
    if ((fnmatch(glob, a->items[i].name, 0) == 0) != match) continue;
    const pg_tensor *x = a->items[i].tensor, *y = b->items[i].tensor;
    assert_int_equal(x->numel, y->numel);
    for (int64_t k = 0; k < x->numel; k++) worst = fmax(worst, fabs((double)x->data[k] - (double)y->data[k]));
  }
  return worst;
}

/* A frozen param group stays bit-identical to its start over 100 steps of
 * SGD with momentum, Adam and AdamW (all with weight decay, clipping and an
 * EMA, and a group with its own lr beside it), in the weights and in their
 * EMA, while the rest trains. */
static void test_frozen_groups_stay_bit_identical(void **state) {
  (void)state;
  const char *names[] = {"sgd", "adam", "adamw"};
  for (int k = 0; k < 3; k++) {
    char out[64];
    snprintf(out, sizeof out, "frozen_%s", names[k]);
    pg_train_opts o = small_run(kept(out));
    o.val_path = NULL;
    o.run.steps = 100;
    o.run.log_every = 50;
    o.run.clip = 1.0;
    o.run.optim = k == 0 ? pg_optim_sgd(0.05) : k == 1 ? pg_optim_adam(1e-3) : pg_optim_adamw(1e-3);
    o.run.optim.weight_decay = k == 2 ? 0.1 : 0.01;
    if (k == 0) o.run.optim.momentum = 0.9;
    pg_param_group g[2] = {pg_param_group_make(&o.run.optim, "blocks.*"),
                           pg_param_group_make(&o.run.optim, "x_embedder.*")};
    g[0].frozen = true;
    g[1].lr *= 10;
    o.run.groups = g;
    o.run.n_groups = 2;
    pg_train_result r;
    if (pg_train(&o, &r)) fail_msg("%s", pg_last_error());
    assert_int_equal(r.step, 100);
    char init[128], ckpt[128];
    snprintf(init, sizeof init, "%s/init.h5", out);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out);
    pg_params p0, p1, e1;
    load_params(kept(init), &p0, NULL);
    load_params(kept(ckpt), &p1, &e1);
    int frozen = 0;
    for (int i = 0; i < p0.count; i++) {
      if (fnmatch("blocks.*", p0.items[i].name, 0)) continue;
      frozen++;
      const size_t bytes = (size_t)p0.items[i].tensor->numel * sizeof(float);
      assert_memory_equal(p1.items[i].tensor->data, p0.items[i].tensor->data, bytes);
      assert_memory_equal(e1.items[i].tensor->data, p0.items[i].tensor->data, bytes);
    }
    const double moved = max_diff(&p0, &p1, "blocks.*", false);
    printf("# %s: %d frozen tensors (blocks.*) bit-identical to their start after 100 steps, in the weights and "
           "the EMA; the others moved by up to %.3g\n", names[k], frozen, moved);
    assert_true(frozen >= 10);
    assert_true(moved > 1e-3);
    pg_params_free(&p0);
    pg_params_free(&p1);
    pg_params_free(&e1);
  }
}

/* The training-loss column of a loss.csv, parsed. */
static int loss_column(const char *path, double *out, int cap) {
  char *csv = read_all(path);
  assert_non_null(csv);
  int n = 0;
  for (const char *line = strchr(csv, '\n'); line && line[1] && n < cap; line = strchr(line + 1, '\n')) {
    const char *c1 = strchr(line + 1, ',');
    if (!c1) break;
    out[n++] = strtod(c1 + 1, NULL);
  }
  free(csv);
  return n;
}

/* --accum 4: a step of batch 16 as 4 micro-batches of 4 gives the update of
 * one batch of 16, within float rounding (the same samples and draws, the
 * gradients summed in another order). */
static void test_accumulation_equals_one_batch(void **state) {
  (void)state;
  pg_train_result r;
  pg_train_opts a = small_run(kept("accum1"));
  a.val_path = NULL;
  a.run.ema_decay = 0;
  a.run.steps = 20;
  a.run.log_every = 1;
  pg_train_opts b = a;
  b.run.out_dir = kept("accum4");
  b.run.accum = 4;
  assert_int_equal(pg_train(&a, &r), PG_OK);
  assert_int_equal(pg_train(&b, &r), PG_OK);
  pg_params pa, pb;
  load_params(kept("accum1/ckpt.h5"), &pa, NULL);
  load_params(kept("accum4/ckpt.h5"), &pb, NULL);
  const double worst = max_diff(&pa, &pb, "*", true);
  double la[32], lb[32], worst_loss = 0;
  const int na = loss_column(kept("accum1/loss.csv"), la, 32), nb = loss_column(kept("accum4/loss.csv"), lb, 32);
  assert_int_equal(na, 20);
  assert_int_equal(nb, 20);
  for (int i = 0; i < na; i++) worst_loss = fmax(worst_loss, fabs(la[i] - lb[i]) / la[i]);
  printf("# --accum 4 vs one batch of 16, 20 AdamW steps: max |parameter difference| %.3g, max relative "
         "difference of the step losses %.3g\n", worst, worst_loss);
  assert_true(worst < 1e-4);
  assert_true(worst_loss < 1e-5);
  pg_params_free(&pa);
  pg_params_free(&pb);
  /* a batch the micro-batches do not divide is refused */
  b.run.accum = 3;
  assert_int_equal(pg_train(&b, &r), PG_ERR_ARG);
  assert_error_contains("batch 16 is not divisible by --accum 3");
}

/* --sample-every: a sheet named by the step during training, from its own
 * generator: the run's weights are those of a run without sheets. */
static void test_sample_sheets_during_training(void **state) {
  (void)state;
  pg_train_result r;
  pg_train_opts a = small_run(kept("sheets"));
  a.run.steps = 8;
  a.sample_cols = 1;
  a.sample_steps = 2;
  a.sample_every = 4;
  pg_train_opts b = a;
  b.run.out_dir = kept("nosheets");
  b.sample_every = 0;
  assert_int_equal(pg_train(&a, &r), PG_OK);
  assert_int_equal(pg_train(&b, &r), PG_OK);
  assert_true(pg_test_exists(kept("sheets/samples-000004.png")));
  assert_true(pg_test_exists(kept("sheets/samples-000004.h5")));
  assert_false(pg_test_exists(kept("sheets/samples-000008.png"))); /* the last: samples.png */
  assert_true(pg_test_exists(kept("sheets/samples.png")));
  assert_false(pg_test_exists(kept("nosheets/samples-000004.png")));
  assert_checkpoints_identical(kept("sheets/ckpt.h5"), kept("nosheets/ckpt.h5"));
}

/* --init-from: a 4-class model fine-tuned on 2-class data keeps every
 * tensor but the label table, which is re-initialised; a model the
 * checkpoint does not fit is refused unless allow_partial. */
static void test_fine_tune_other_classes(void **state) {
  (void)state;
  pg_train_result r;
  pg_train_opts a = small_run(kept("base4"));
  a.val_path = NULL;
  a.run.steps = 3;
  assert_int_equal(pg_train(&a, &r), PG_OK);
  char base[512];
  snprintf(base, sizeof base, "%s", pg_test_tmp("base4/ckpt.h5"));
  pg_train_opts b = small_run(kept("tuned2"));
  b.val_path = NULL;
  b.run.data_path = kept("two.h5");
  b.run.steps = 3;
  b.run.init_from = base;
  if (pg_train(&b, &r)) fail_msg("%s", pg_last_error());
  pg_params pa, pb;
  load_params(base, &pa, NULL);
  load_params(kept("tuned2/init.h5"), &pb, NULL); /* the weights the fine-tuning started from */
  assert_int_equal(pa.count, pb.count);
  int same = 0;
  for (int i = 0; i < pa.count; i++) {
    const pg_tensor *x = pa.items[i].tensor, *y = pb.items[i].tensor;
    if (!strcmp(pa.items[i].name, "y_embedder.embedding_table.weight")) {
      assert_int_equal(x->shape[0], 5); /* 4 classes + the null class */
      assert_int_equal(y->shape[0], 3);
      continue;
    }
    assert_memory_equal(x->data, y->data, (size_t)x->numel * sizeof(float));
    same++;
  }
  assert_int_equal(same, pa.count - 1);
  pg_params_free(&pa);
  pg_params_free(&pb);
  /* a deeper model: its second block is missing from the checkpoint */
  pg_train_opts c = b;
  c.run.out_dir = kept("deeper");
  c.model.depth = 2;
  assert_int_equal(pg_train(&c, &r), PG_ERR_ARG);
  assert_error_contains("does not fit the model (give --allow-partial to load the");
  assert_error_contains("missing: blocks.1.");
  c.run.allow_partial = true;
  assert_int_equal(pg_train(&c, &r), PG_OK);
  /* not with resume */
  c.run.resume = base;
  assert_int_equal(pg_train(&c, &r), PG_ERR_ARG);
  assert_error_contains("--init-from");
}

/* A resume that asks for another run is refused with one line naming the
 * flag and both values; what may change (the steps, the lr, an EMA from
 * off) does. */
static void test_resume_refuses_another_run(void **state) {
  (void)state;
  pg_train_result r;
  pg_train_opts a = small_run(kept("guard"));
  a.val_path = NULL;
  a.run.ema_decay = 0;
  a.run.steps = 4;
  assert_int_equal(pg_train(&a, &r), PG_OK);
  char ckpt[512];
  snprintf(ckpt, sizeof ckpt, "%s", pg_test_tmp("guard/ckpt.h5"));
  pg_train_opts b = a;
  b.run.resume = ckpt;
  b.run.steps = 6;
  struct {
    const char *want;
    void (*change)(pg_train_opts *);
  } cases[] = {
      {"--batch 8 differs from the checkpoint's 16", NULL},
      {"--seed 6 differs from the checkpoint's 5", NULL},
      {"the checkpoint was trained with adamw, this run uses sgd", NULL},
      {"param groups: checkpoint 0, this run 1 ('blocks.*')", NULL},
      {"is at step 4 and this run ends at step 4", NULL},
      {"is not the data the checkpoint", NULL},
      {"--accum 2 differs from the checkpoint's 1", NULL},
  };
  pg_param_group g = pg_param_group_make(&b.run.optim, "blocks.*");
  g.frozen = true;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    pg_train_opts c = b;
    switch (i) {
    case 0: c.run.batch = 8; break;
    case 1: c.run.seed = 6; break;
    case 2: c.run.optim = pg_optim_sgd(1e-3); break;
    case 3: c.run.groups = &g, c.run.n_groups = 1; break;
    case 4: c.run.steps = 4; break;
    case 5: c.run.data_path = kept("val.h5"); break;
    case 6: c.run.accum = 2; break;
    }
    assert_int_equal(pg_train(&c, &r), PG_ERR_ARG);
    assert_error_contains(cases[i].want);
    assert_null(strchr(pg_last_error(), '\n'));
  }
  /* another lr and a new EMA: resumed */
  pg_train_opts d = b;
  d.run.optim.lr = 5e-4;
  d.run.ema_decay = 0.9;
  if (pg_train(&d, &r)) fail_msg("%s", pg_last_error());
  assert_int_equal(r.step, 6);
  pg_params p, e;
  load_params(ckpt, &p, &e); /* it holds an EMA now */
  pg_params_free(&p);
  pg_params_free(&e);
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resume_is_exact),
      cmocka_unit_test(test_resume_with_warmup_and_diffusion_options),
      cmocka_unit_test(test_rejects_unfit_data),
      cmocka_unit_test(test_nan_stops_without_saving),
      cmocka_unit_test(test_sigint_saves),
      cmocka_unit_test(test_frozen_groups_stay_bit_identical),
      cmocka_unit_test(test_accumulation_equals_one_batch),
      cmocka_unit_test(test_sample_sheets_during_training),
      cmocka_unit_test(test_fine_tune_other_classes),
      cmocka_unit_test(test_resume_refuses_another_run),
  };
  return cmocka_run_group_tests(tests, setup_dir, pg_test_tmpdir_remove);
}
