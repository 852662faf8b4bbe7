/* The optimizer's settings in a checkpoint (io/optim_kv.h): param groups and
 * skipped steps written and read back, the one-line message for a resume
 * that changes a setting, and a resume with frozen parameters and groups
 * that continues bit for bit. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/optim_kv.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/optim/schedule.h"

static int setup(void **state) {
  (void)state;
  return pg_test_tmpdir_make("optim_kv");
}

/* embed.weight, blocks.0.fc.weight, blocks.0.fc.bias, norm.weight,
 * head.weight, and a buffer. */
static void make_model(pg_params *ps, uint64_t seed) {
  pg_params_init(ps);
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  pg_tensor *t[6] = {
      pg_params_add(ps, PG_PARAM_EMBEDDING, PG_SHAPE(5, 3), "embed.weight"),
      pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(4, 3), "blocks.0.fc.weight"),
      pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(4), "blocks.0.fc.bias"),
      pg_params_add(ps, PG_PARAM_NORM, PG_SHAPE(4), "norm.weight"),
      pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(2, 4), "head.weight"),
      pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(3), "pos_embed"),
  };
  for (int i = 0; i < 6; i++) {
    assert_non_null(t[i]);
    pg_fill_normal(t[i], 0, 1, &rng);
  }
}

/* The groups of these tests: no decay for biases and norms (norms with
 * their own betas), a faster head, a frozen embedding. */
static int make_groups(const pg_optim_config *cfg, pg_param_group *g) {
  g[0] = pg_param_group_make(cfg, "*.bias");
  g[0].weight_decay = 0;
  g[1] = pg_param_group_make(cfg, "norm.*");
  g[1].weight_decay = 0;
  g[1].betas[0] = 0.8;
  g[2] = pg_param_group_make(cfg, "head.*");
  g[2].lr = 3 * cfg->lr;
  g[3] = pg_param_group_make(cfg, "embed.*");
  g[3].frozen = true;
  return 4;
}

static void init_optimizer(pg_optimizer *opt, pg_params *ps, pg_optim_config cfg) {
  pg_param_group g[4];
  int n = make_groups(&cfg, g);
  assert_int_equal(pg_optimizer_init_groups(opt, ps, &cfg, g, n), PG_OK);
}

/* ---- Round trip ---- */

static void test_groups_round_trip(void **state) {
  (void)state;
  pg_params ps;
  make_model(&ps, 1);
  pg_optim_config cfg = pg_optim_adamw(2e-3);
  cfg.amsgrad = true;
  pg_optimizer opt;
  init_optimizer(&opt, &ps, cfg);
  opt.step = 9;
  opt.slots[0].skipped = 9; /* the frozen embedding */
  opt.slots[2].skipped = 4;
  opt.config.lr = 1e-3; /* a schedule halfway: the stored lr, not the settings */
  pg_kv kv;
  pg_kv_init(&kv);
  assert_int_equal(pg_optimizer_to_kv(&opt, &kv), PG_OK);

  /* the config reads back as before, the new keys accepted */
  pg_optim_config back;
  assert_int_equal(pg_optim_config_from_kv(&kv, &back), PG_OK);
  assert_true(back.kind == PG_OPTIM_ADAMW && back.lr == 1e-3 && back.amsgrad);
  double initial_lr;
  assert_int_equal(pg_kv_get_double(&kv, "initial_lr", &initial_lr), 1);
  assert_true(initial_lr == 2e-3);
  const char *text;
  assert_int_equal(pg_kv_get_string(&kv, "param_groups.2.pattern", &text), 1);
  assert_string_equal(text, "norm.*");
  assert_int_equal(pg_kv_get_string(&kv, "skipped_steps", &text), 1);
  assert_string_equal(text, "0:9 2:4");

  /* the groups read back field for field */
  pg_param_group g[8];
  int n;
  assert_int_equal(pg_optim_groups_from_kv(&kv, g, 8, &n), PG_OK);
  assert_int_equal(n, 4);
  for (int k = 0; k < n; k++) {
    const pg_param_group *a = &opt.param_groups[k];
    assert_string_equal(g[k].pattern, a->pattern);
    assert_true(g[k].lr == a->lr && g[k].weight_decay == a->weight_decay);
    assert_true(g[k].betas[0] == a->betas[0] && g[k].betas[1] == a->betas[1]);
    assert_true(g[k].momentum == a->momentum && g[k].frozen == a->frozen);
  }
  assert_int_equal(pg_optim_groups_from_kv(&kv, g, 3, &n), PG_ERR_ARG);
  assert_error_contains("4 param groups, room for 3");

  /* a run built from the checkpoint's settings passes the check */
  pg_params ps2;
  make_model(&ps2, 2);
  back.lr = initial_lr;
  pg_optimizer opt2;
  assert_int_equal(pg_optimizer_init_groups(&opt2, &ps2, &back, g, 4), PG_OK);
  assert_int_equal(pg_optimizer_check_kv(&kv, &opt2, NULL), PG_OK);
  opt2.step = 9;
  assert_int_equal(pg_optimizer_restore_kv(&opt2, &kv), PG_OK);
  for (int i = 0; i < opt.n_slots; i++) assert_int_equal(opt2.slots[i].skipped, opt.slots[i].skipped);

  /* a run without groups writes 0 groups and no skipped steps */
  pg_optimizer plain;
  assert_int_equal(pg_optimizer_init(&plain, &ps2, &back), PG_OK);
  assert_int_equal(pg_optimizer_to_kv(&plain, &kv), PG_OK);
  int64_t count;
  assert_int_equal(pg_kv_get_int(&kv, "param_groups", &count), 1);
  assert_int_equal(count, 0);
  assert_null(pg_kv_find(&kv, "skipped_steps"));
  assert_int_equal(pg_optim_groups_from_kv(&kv, g, 8, &n), PG_OK);
  assert_int_equal(n, 0);

  /* an unknown key is still refused, a bad group key is named */
  assert_int_equal(pg_kv_set_int(&kv, "param_group_count", 1), PG_OK);
  assert_int_equal(pg_optim_config_from_kv(&kv, &back), PG_ERR_FORMAT);
  assert_error_contains("unknown key 'param_group_count'");
  assert_int_equal(pg_optimizer_to_kv(&opt, &kv), PG_OK);
  assert_int_equal(pg_kv_set_int(&kv, "param_groups.3.frozen", 2), PG_OK);
  assert_int_equal(pg_optim_groups_from_kv(&kv, g, 8, &n), PG_ERR_FORMAT);
  assert_error_contains("'param_groups.3.frozen' is 2 (expected 0 or 1)");
  assert_int_equal(pg_kv_set_double(&kv, "param_groups.3.frozen", 0.5), PG_OK);
  assert_int_equal(pg_optim_groups_from_kv(&kv, g, 8, &n), PG_ERR_FORMAT);
  pg_kv_free(&kv);
  pg_optimizer_free(&plain);
  pg_optimizer_free(&opt2);
  pg_optimizer_free(&opt);
  pg_params_free(&ps2);
  pg_params_free(&ps);
}

/* Many parameters, each with its own count: the text spans attributes and
 * reads back exactly. Bad text is refused and changes nothing. */
static void test_skipped_steps_encoding(void **state) {
  (void)state;
  pg_params ps;
  pg_params_init(&ps);
  for (int i = 0; i < 300; i++) assert_non_null(pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(2), "p%d.weight", i));
  pg_optim_config cfg = pg_optim_sgd(0.1);
  pg_optimizer opt, back;
  assert_int_equal(pg_optimizer_init(&opt, &ps, &cfg), PG_OK);
  assert_int_equal(pg_optimizer_init(&back, &ps, &cfg), PG_OK);
  opt.step = back.step = 100000;
  for (int i = 0; i < 300; i++) opt.slots[i].skipped = i < 40 ? 7 : (i % 3 ? 1000 + i * 37 : 0);
  pg_kv kv;
  pg_kv_init(&kv);
  assert_int_equal(pg_optimizer_to_kv(&opt, &kv), PG_OK);
  const char *text;
  assert_int_equal(pg_kv_get_string(&kv, "skipped_steps", &text), 1);
  assert_true(!strncmp(text, "0-39:7 40:2480 41:2517 43:2591 ", 31)); /* equal neighbours: one token */
  assert_int_equal(pg_kv_get_string(&kv, "skipped_steps.1", &text), 1);
  assert_true(strlen(text) < PG_KV_STRING_MAX);
  assert_int_equal(pg_optimizer_restore_kv(&back, &kv), PG_OK);
  for (int i = 0; i < 300; i++) assert_int_equal(back.slots[i].skipped, opt.slots[i].skipped);

  /* errors: the counts stay as they were */
  struct {
    const char *text, *needle;
  } bad[] = {
      {"3:4 x", "holds 'x' (expected I:N or I-J:N)"},
      {"3:-4", "holds '3:-4'"},
      {"5-2:1", "holds '5-2:1'"},
      {"2:3 300:1", "names trainable parameter 300, the optimizer has 300"},
      {"0-299:100001", "skipped 100001 steps, more than the optimizer's step 100000 (restore step first)"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    pg_kv_clear(&kv);
    assert_int_equal(pg_kv_set_string(&kv, "skipped_steps", bad[k].text), PG_OK);
    assert_int_equal(pg_optimizer_restore_kv(&back, &kv), PG_ERR_FORMAT);
    assert_error_contains(bad[k].needle);
    assert_int_equal(back.slots[41].skipped, 2517);
  }
  pg_kv_clear(&kv); /* absent: every count 0 */
  assert_int_equal(pg_optimizer_restore_kv(&back, &kv), PG_OK);
  assert_int_equal(back.slots[41].skipped, 0);
  pg_kv_free(&kv);
  pg_optimizer_free(&opt);
  pg_optimizer_free(&back);
  pg_params_free(&ps);
}

/* ---- The resume check ---- */

/* The message for a run built with cfg and the groups edited by `edit`
 * against the settings of the reference run (adamw, make_groups). */
typedef void (*edit_fn)(pg_optim_config *cfg, pg_param_group *g, int *n);

static void expect_mismatch(edit_fn edit, const char *const *may_differ, const char *message) {
  pg_params ps;
  make_model(&ps, 3);
  pg_optim_config cfg = pg_optim_adamw(1e-3);
  pg_optimizer ref;
  init_optimizer(&ref, &ps, cfg);
  pg_kv stored;
  pg_kv_init(&stored);
  assert_int_equal(pg_optimizer_to_kv(&ref, &stored), PG_OK);
  pg_optimizer_free(&ref);

  pg_param_group g[6];
  int n = make_groups(&cfg, g);
  edit(&cfg, g, &n);
  pg_optimizer run;
  assert_int_equal(pg_optimizer_init_groups(&run, &ps, &cfg, g, n), PG_OK);
  pg_status st = pg_optimizer_check_kv(&stored, &run, may_differ);
  if (!message) {
    assert_int_equal(st, PG_OK);
  } else {
    assert_int_equal(st, PG_ERR_ARG);
    assert_string_equal(pg_last_error(), message);
  }
  pg_optimizer_free(&run);
  pg_kv_free(&stored);
  pg_params_free(&ps);
}

static void edit_none(pg_optim_config *c, pg_param_group *g, int *n) { (void)c, (void)g, (void)n; }
static void edit_kind(pg_optim_config *c, pg_param_group *g, int *n) {
  *c = pg_optim_sgd(1e-3);
  *n = make_groups(c, g);
}
static void edit_lr(pg_optim_config *c, pg_param_group *g, int *n) {
  (void)n;
  for (int k = 0; k < 4; k++) g[k].lr *= g[k].lr == c->lr ? 2 : 1; /* the groups keep their lr */
  c->lr = 2e-3;
}
static void edit_wd(pg_optim_config *c, pg_param_group *g, int *n) { (void)g, (void)n, c->weight_decay = 0.05; }
static void edit_eps(pg_optim_config *c, pg_param_group *g, int *n) { (void)g, (void)n, c->eps = 1e-6; }
static void edit_group_count(pg_optim_config *c, pg_param_group *g, int *n) { (void)c, (void)g, *n = 2; }
static void edit_group_pattern(pg_optim_config *c, pg_param_group *g, int *n) {
  (void)c, (void)n;
  g[0].pattern = "*.fc.bias";
}
static void edit_group_wd(pg_optim_config *c, pg_param_group *g, int *n) {
  (void)c, (void)n;
  g[0].weight_decay = 0.01;
}
static void edit_group_betas(pg_optim_config *c, pg_param_group *g, int *n) {
  (void)c, (void)n;
  g[1].betas[1] = 0.95;
}
static void edit_group_lr(pg_optim_config *c, pg_param_group *g, int *n) {
  (void)c, (void)n;
  g[2].lr = 1e-2;
}
static void edit_group_frozen(pg_optim_config *c, pg_param_group *g, int *n) {
  (void)c, (void)n;
  g[3].frozen = false;
}

static void test_resume_check_messages(void **state) {
  (void)state;
  expect_mismatch(edit_none, NULL, NULL);
  expect_mismatch(edit_kind, NULL, "the checkpoint was trained with adamw, this run uses sgd");
  expect_mismatch(edit_lr, NULL, "optimizer lr: checkpoint 0.001, this run 0.002");
  const char *lr_may_change[] = {"lr", NULL};
  expect_mismatch(edit_lr, lr_may_change, NULL);
  expect_mismatch(edit_wd, NULL, "optimizer weight_decay: checkpoint 0.01, this run 0.05");
  expect_mismatch(edit_wd, lr_may_change, "optimizer weight_decay: checkpoint 0.01, this run 0.05");
  expect_mismatch(edit_eps, NULL, "optimizer eps: checkpoint 1e-08, this run 1e-06");
  expect_mismatch(edit_group_count, NULL,
                  "param groups: checkpoint 4 ('*.bias', 'norm.*', 'head.*', 'embed.*'), "
                  "this run 2 ('*.bias', 'norm.*')");
  expect_mismatch(edit_group_pattern, NULL, "param group 1 pattern: checkpoint '*.bias', this run '*.fc.bias'");
  expect_mismatch(edit_group_wd, NULL, "param group 1 ('*.bias') weight_decay: checkpoint 0, this run 0.01");
  expect_mismatch(edit_group_betas, NULL,
                  "param group 2 ('norm.*') betas: checkpoint (0.8, 0.999), this run (0.8, 0.95)");
  expect_mismatch(edit_group_lr, NULL, "param group 3 ('head.*') lr: checkpoint 0.003, this run 0.01");
  expect_mismatch(edit_group_lr, lr_may_change, NULL);
  expect_mismatch(edit_group_frozen, NULL, "param group 4 ('embed.*') frozen: checkpoint yes, this run no");
  const char *frozen_may_change[] = {"frozen", NULL};
  expect_mismatch(edit_group_frozen, frozen_may_change, NULL);

  /* SGD settings; a checkpoint written by pg_optim_config_to_kv alone (no
   * initial_lr, no groups) compares without lr and with 0 groups */
  pg_params ps;
  make_model(&ps, 4);
  pg_optim_config sgd = pg_optim_sgd(0.1);
  sgd.momentum = 0.9;
  pg_kv stored;
  pg_kv_init(&stored);
  assert_int_equal(pg_optim_config_to_kv(&sgd, &stored), PG_OK);
  pg_optimizer run;
  sgd.lr = 0.5;
  assert_int_equal(pg_optimizer_init(&run, &ps, &sgd), PG_OK);
  assert_int_equal(pg_optimizer_check_kv(&stored, &run, NULL), PG_OK);
  run.config.momentum = 0.8;
  assert_int_equal(pg_optimizer_check_kv(&stored, &run, NULL), PG_ERR_ARG);
  assert_string_equal(pg_last_error(), "optimizer momentum: checkpoint 0.9, this run 0.8");
  run.config.momentum = 0.9;
  run.config.nesterov = true;
  assert_int_equal(pg_optimizer_check_kv(&stored, &run, NULL), PG_ERR_ARG);
  assert_string_equal(pg_last_error(), "optimizer nesterov: checkpoint off, this run on");
  run.config.nesterov = false;
  run.config.decay_weights_only = true;
  assert_int_equal(pg_optimizer_check_kv(&stored, &run, NULL), PG_ERR_ARG);
  assert_string_equal(pg_last_error(), "optimizer decay_weights_only: checkpoint off, this run on");
  const char *typo[] = {"learning_rate", NULL};
  assert_int_equal(pg_optimizer_check_kv(&stored, &run, typo), PG_ERR_ARG);
  assert_error_contains("'learning_rate' is not a setting that is compared");
  pg_kv_clear(&stored);
  assert_int_equal(pg_optimizer_check_kv(&stored, &run, NULL), PG_ERR_FORMAT);
  assert_error_contains("'optimizer' is missing");
  pg_kv_free(&stored);
  pg_optimizer_free(&run);
  pg_params_free(&ps);
}

/* ---- A resume through a checkpoint file ---- */

#define RESUME_AT 7
#define TOTAL 16

/* Which tensors take no part at step s (besides the frozen group):
 * blocks.0.fc.weight from step 3 to 11, norm.weight for the first 9 steps
 * (its first update comes after the resume). */
static bool frozen_at(const char *name, int s) {
  if (!strcmp(name, "blocks.0.fc.weight")) return s >= 3 && s < 12;
  if (!strcmp(name, "norm.weight")) return s < 9;
  return false;
}

static void set_grads(pg_params *ps, int s) {
  pg_rng rng;
  pg_rng_seed(&rng, 100 + (uint64_t)s);
  for (int i = 0; i < ps->count; i++) {
    pg_tensor *t = ps->items[i].tensor;
    if (!pg_param_trainable(&ps->items[i])) continue;
    if (strcmp(ps->items[i].name, "embed.weight")) /* the frozen group keeps requires_grad off */
      assert_int_equal(pg_tensor_set_requires_grad(t, !frozen_at(ps->items[i].name, s)), PG_OK);
    for (int64_t j = 0; j < t->numel; j++) t->grad[j] = pg_rng_normal(&rng);
  }
}

static void steps(pg_params *ps, pg_optimizer *opt, const pg_schedule *sched, int from, int to) {
  for (int s = from; s < to; s++) {
    set_grads(ps, s);
    pg_schedule_apply(sched, opt);
    assert_int_equal(pg_optimizer_step(opt), PG_OK);
  }
}

static void check_resume(pg_optim_config cfg) {
  pg_schedule sched = pg_schedule_make(PG_SCHEDULE_COSINE, cfg.lr);
  sched.warmup_steps = 2;
  sched.total_steps = TOTAL;
  /* the whole run without a stop */
  pg_params whole;
  make_model(&whole, 5);
  pg_optimizer ow;
  init_optimizer(&ow, &whole, cfg);
  steps(&whole, &ow, &sched, 0, TOTAL);

  /* the same run, stopped and saved at RESUME_AT */
  pg_params first;
  make_model(&first, 5);
  pg_optimizer of;
  init_optimizer(&of, &first, cfg);
  steps(&first, &of, &sched, 0, RESUME_AT);
  pg_kv okv;
  pg_kv_init(&okv);
  assert_int_equal(pg_optimizer_to_kv(&of, &okv), PG_OK);
  const char *path = pg_test_tmp("resume.h5");
  pg_checkpoint ck = {.params = &first, .optim_state = &of.state, .optim_step = &of.step,
                      .optim_config = &okv};
  assert_int_equal(pg_checkpoint_save(path, &ck), PG_OK);

  /* a new process: the same settings, other initial values, then the file */
  for (int restore = 1; restore >= 0; restore--) {
    pg_params second;
    make_model(&second, 6);
    pg_optimizer os;
    init_optimizer(&os, &second, cfg);
    pg_kv stored;
    pg_kv_init(&stored);
    pg_checkpoint lk = {.params = &second, .optim_state = &os.state, .optim_step = &os.step,
                        .optim_config = &stored};
    assert_int_equal(pg_checkpoint_load(path, &lk), PG_OK);
    assert_int_equal(pg_optimizer_check_kv(&stored, &os, NULL), PG_OK);
    if (restore) assert_int_equal(pg_optimizer_restore_kv(&os, &stored), PG_OK);
    steps(&second, &os, &sched, RESUME_AT, TOTAL);
    bool same = true;
    for (int i = 0; i < whole.count; i++)
      same &= !memcmp(whole.items[i].tensor->data, second.items[i].tensor->data,
                      (size_t)whole.items[i].tensor->numel * sizeof(float));
    for (int i = 0; i < ow.n_slots && restore; i++) assert_int_equal(os.slots[i].skipped, ow.slots[i].skipped);
    /* bit for bit with the skipped steps restored; without them the
     * parameters frozen across the stop use wrong step counts */
    assert_true(same == (restore == 1));
    assert_memory_equal(second.items[0].tensor->data, first.items[0].tensor->data, 15 * sizeof(float));
    pg_kv_free(&stored);
    pg_optimizer_free(&os);
    pg_params_free(&second);
  }
  assert_int_equal(ow.slots[0].skipped, TOTAL); /* the frozen group */
  assert_int_equal(ow.slots[1].skipped, 9);
  assert_int_equal(ow.slots[3].skipped, 9);
  pg_kv_free(&okv);
  pg_optimizer_free(&of);
  pg_optimizer_free(&ow);
  pg_params_free(&first);
  pg_params_free(&whole);
}

static void test_resume_with_freezing_and_groups(void **state) {
  (void)state;
  pg_optim_config adamw = pg_optim_adamw(1e-2);
  adamw.weight_decay = 0.1;
  check_resume(adamw);
  check_resume(pg_optim_adam(1e-2));
  pg_optim_config sgd = pg_optim_sgd(0.05);
  sgd.momentum = 0.9;
  sgd.dampening = 0.2;
  check_resume(sgd);
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_groups_round_trip),
      cmocka_unit_test(test_skipped_steps_encoding),
      cmocka_unit_test(test_resume_check_messages),
      cmocka_unit_test(test_resume_with_freezing_and_groups),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
