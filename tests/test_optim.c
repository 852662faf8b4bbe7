/* SGD, Adam and AdamW against torch.optim: whole trajectories from
 * tests/data/optim_torch.h5 (tools/gen_fixtures_optim.py), plus the state
 * layout checkpoints rely on, the no-decay grouping, and clean errors. */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/optim/update.h"

/* ---- Trajectories ---- */

/* Clarification 1: float32 updates vs float64 PyTorch, every step. */
#define TRAJ_ATOL 1e-6
#define TRAJ_RTOL 1e-5

typedef struct {
  int cases;
  double worst_use; /* largest |err| / (atol + rtol |want|) seen, <= 1 passes */
  int64_t worst_ulps; /* largest distance to PyTorch's own float32 result */
} traj_summary;

static double *read_doubles(hid_t g, const char *path, int64_t n) {
  hid_t d = H5Dopen2(g, path, H5P_DEFAULT);
  assert_true(d >= 0);
  hid_t space = H5Dget_space(d);
  assert_int_equal(H5Sget_simple_extent_npoints(space), n);
  H5Sclose(space);
  double *v = test_malloc((size_t)n * sizeof *v);
  assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
  H5Dclose(d);
  return v;
}

static double attr_double(hid_t g, const char *name, double fallback) {
  double v;
  return pg_h5_attr_double(g, name, &v) == 1 ? v : fallback;
}

/* Distance between two floats in units in the last place. */
static int64_t ulps(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  if (ia < 0) ia = INT32_MIN - ia;
  if (ib < 0) ib = INT32_MIN - ib;
  return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

/* After step s (from 0): every parameter against PyTorch's float64 values
 * (traj[i] [steps, numel]); returns the largest use of the tolerance, at
 * least `worst`. */
static double check_traj(const char *c, int64_t s, const pg_params *ps, int n, double *const *traj,
                         double worst) {
  for (int i = 0; i < n; i++) {
    const pg_tensor *p = ps->items[i].tensor;
    const double *want = traj[i] + s * p->numel;
    for (int64_t j = 0; j < p->numel; j++) {
      double err = fabs(p->data[j] - want[j]);
      double use = err / (TRAJ_ATOL + TRAJ_RTOL * fabs(want[j]));
      if (!(use <= 1.0))
        fail_msg("%s: step %lld, %s[%lld]: got %.9g, PyTorch float64 %.12g (|err| %.3g)", c,
                 (long long)s + 1, ps->items[i].name, (long long)j, p->data[j], want[j], err);
      if (use > worst) worst = use;
    }
  }
  return worst;
}

/* The same operations in the same order as PyTorch's float32 kernels: the
 * final values sit within a few ulps of torch's own float32 run
 * (NAME.final32). Returns the largest distance. */
static int64_t ulps_from_final32(hid_t g, const char *c, const pg_params *ps, int n) {
  int64_t worst = 0;
  for (int i = 0; i < n; i++) {
    char path[160];
    pg_tensor *want;
    snprintf(path, sizeof path, "%s.final32", ps->items[i].name);
    assert_int_equal(pg_h5_read_tensor(g, path, c, &want), PG_OK);
    const pg_tensor *p = ps->items[i].tensor;
    for (int64_t j = 0; j < p->numel; j++) {
      int64_t u = ulps(p->data[j], want->data[j]);
      if (u > worst) worst = u;
    }
    pg_tensor_free(want);
  }
  assert_true(worst <= 4); /* 0 measured with GCC 12 on x86-64 */
  return worst;
}

/* The optimizer settings a case stores as attributes. */
static pg_optim_config read_config(hid_t g) {
  char kind_name[16];
  assert_int_equal(pg_h5_attr_string(g, "optimizer", kind_name, sizeof kind_name), 1);
  pg_optim_kind kind;
  assert_int_equal(pg_optim_kind_parse(kind_name, &kind), PG_OK);
  pg_optim_config cfg = kind == PG_OPTIM_SGD ? pg_optim_sgd(0) : pg_optim_adam(0);
  cfg.kind = kind;
  cfg.lr = attr_double(g, "lr", NAN);
  cfg.weight_decay = attr_double(g, "weight_decay", NAN);
  cfg.momentum = attr_double(g, "momentum", 0);
  cfg.dampening = attr_double(g, "dampening", 0);
  cfg.nesterov = attr_double(g, "nesterov", 0) != 0;
  cfg.beta1 = attr_double(g, "beta1", 0);
  cfg.beta2 = attr_double(g, "beta2", 0);
  cfg.eps = attr_double(g, "eps", 0);
  cfg.amsgrad = attr_double(g, "amsgrad", 0) != 0;
  cfg.decay_weights_only = attr_double(g, "decay_weights_only", 0) != 0;
  return cfg;
}

static herr_t replay_case(hid_t root, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  traj_summary *sum = data;
  hid_t g = H5Gopen2(root, name, H5P_DEFAULT);
  assert_true(g >= 0);
  if (!strcmp(name, "experiments")) { /* freezing and param groups: replay_experiment */
    H5Gclose(g);
    return 0;
  }
  pg_optim_config cfg = read_config(g);
  int64_t steps;
  assert_int_equal(pg_h5_attr_int(g, "steps", &steps), 1);
  assert_true(steps >= 20);

  /* "weight", and "bias" in the group cases: the name is the kind. */
  const char *names[2] = {"weight", "bias"};
  pg_params ps;
  pg_params_init(&ps);
  pg_tensor *grads[2] = {NULL, NULL};
  double *traj[2] = {NULL, NULL};
  int n_params = pg_h5_exists(g, "bias.init") ? 2 : 1;
  for (int i = 0; i < n_params; i++) {
    char path[64];
    pg_tensor *init;
    snprintf(path, sizeof path, "%s.init", names[i]);
    assert_int_equal(pg_h5_read_tensor(g, path, name, &init), PG_OK);
    pg_tensor *p = pg_params_add(&ps, i ? PG_PARAM_BIAS : PG_PARAM_WEIGHT, init->ndim,
                                 init->shape, "%s", names[i]);
    memcpy(p->data, init->data, (size_t)p->numel * sizeof(float));
    pg_tensor_free(init);
    snprintf(path, sizeof path, "%s.grads", names[i]);
    assert_int_equal(pg_h5_read_tensor(g, path, name, &grads[i]), PG_OK);
    assert_int_equal(grads[i]->numel, steps * p->numel);
    snprintf(path, sizeof path, "%s.traj", names[i]);
    traj[i] = read_doubles(g, path, steps * p->numel);
  }

  pg_optimizer opt;
  assert_int_equal(pg_optimizer_init(&opt, &ps, &cfg), PG_OK);
  double worst_use = 0;
  for (int64_t s = 0; s < steps; s++) {
    for (int i = 0; i < n_params; i++) {
      pg_tensor *p = ps.items[i].tensor;
      memcpy(p->grad, grads[i]->data + s * p->numel, (size_t)p->numel * sizeof(float));
    }
    assert_int_equal(pg_optimizer_step(&opt), PG_OK);
    worst_use = check_traj(name, s, &ps, n_params, traj, worst_use);
  }
  assert_int_equal(opt.step, steps);
  const int64_t worst_ulps = ulps_from_final32(g, name, &ps, n_params);
  for (int i = 0; i < n_params; i++) {
    pg_tensor_free(grads[i]);
    test_free(traj[i]);
  }
  print_message("  %-18s %3lld steps: worst error %.2f of the tolerance, %lld ulp from torch float32\n",
                name, (long long)steps, worst_use, (long long)worst_ulps);
  if (worst_use > sum->worst_use) sum->worst_use = worst_use;
  if (worst_ulps > sum->worst_ulps) sum->worst_ulps = worst_ulps;
  sum->cases++;
  pg_optimizer_free(&opt);
  pg_params_free(&ps);
  H5Gclose(g);
  return 0;
}

static void test_torch_trajectories(void **state) {
  (void)state;
  hid_t f = pg_h5_open(pg_test_data("optim_torch.h5"), false);
  assert_true(f >= 0);
  traj_summary sum = {0};
  hsize_t idx = 0;
  assert_true(H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, &idx, replay_case, &sum) >= 0);
  H5Fclose(f);
  print_message("  %d cases: worst error %.2f of the tolerance (atol %g + rtol %g), worst %lld ulp\n",
                sum.cases, sum.worst_use, TRAJ_ATOL, TRAJ_RTOL, (long long)sum.worst_ulps);
  assert_int_equal(sum.cases, 15);
}

/* ---- Freezing and param groups against torch.optim ---- */

#define MAX_EXP_PARAMS 8
#define MAX_EXP_GROUPS 6

static pg_param_kind kind_of(const char *name) {
  if (!strcmp(name, "weight")) return PG_PARAM_WEIGHT;
  if (!strcmp(name, "bias")) return PG_PARAM_BIAS;
  if (!strcmp(name, "norm")) return PG_PARAM_NORM;
  assert_string_equal(name, "embedding");
  return PG_PARAM_EMBEDDING;
}

/* Every byte a parameter owns: its value and its state buffers. */
typedef struct {
  float *value, *state[3];
} param_snapshot;

static float *copy_floats(const pg_tensor *t) {
  if (!t) return NULL;
  float *c = test_malloc((size_t)t->numel * sizeof *c);
  memcpy(c, t->data, (size_t)t->numel * sizeof *c);
  return c;
}

static void snapshot_free(param_snapshot *sn) {
  if (sn->value) test_free(sn->value);
  for (int k = 0; k < 3; k++)
    if (sn->state[k]) test_free(sn->state[k]);
  memset(sn, 0, sizeof *sn);
}

static void snapshot_take(param_snapshot *sn, const pg_optim_slot *s) {
  snapshot_free(sn);
  sn->value = copy_floats(s->param->tensor);
  const pg_tensor *st[3] = {s->momentum_buffer ? s->momentum_buffer : s->exp_avg, s->exp_avg_sq,
                            s->max_exp_avg_sq};
  for (int k = 0; k < 3; k++) sn->state[k] = copy_floats(st[k]);
}

static void snapshot_assert_same(const param_snapshot *sn, const pg_optim_slot *s, const char *c,
                                 int64_t step) {
  const pg_tensor *t = s->param->tensor;
  const size_t bytes = (size_t)t->numel * sizeof(float);
  if (memcmp(sn->value, t->data, bytes))
    fail_msg("%s: step %lld: frozen '%s' moved", c, (long long)step, s->param->name);
  const pg_tensor *st[3] = {s->momentum_buffer ? s->momentum_buffer : s->exp_avg, s->exp_avg_sq,
                            s->max_exp_avg_sq};
  for (int k = 0; k < 3; k++)
    if (st[k] && memcmp(sn->state[k], st[k]->data, bytes))
      fail_msg("%s: step %lld: the state of frozen '%s' moved", c, (long long)step, s->param->name);
}

typedef struct {
  int cases, frozen_checked;
  double worst_use;
} experiment_summary;

static herr_t replay_experiment(hid_t root, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  experiment_summary *sum = data;
  hid_t g = H5Gopen2(root, name, H5P_DEFAULT);
  assert_true(g >= 0);
  const pg_optim_config cfg = read_config(g);
  int64_t steps;
  assert_int_equal(pg_h5_attr_int(g, "steps", &steps), 1);

  /* the schedule, applied as the trainer does before each step */
  char sched_name[16];
  assert_int_equal(pg_h5_attr_string(g, "schedule", sched_name, sizeof sched_name), 1);
  pg_schedule_kind sched_kind;
  assert_int_equal(pg_schedule_parse(sched_name, &sched_kind), PG_OK);
  pg_schedule sched = pg_schedule_make(sched_kind, cfg.lr);
  assert_int_equal(pg_h5_attr_int(g, "warmup_steps", &sched.warmup_steps), 1);
  assert_int_equal(pg_h5_attr_int(g, "total_steps", &sched.total_steps), 1);
  assert_int_equal(pg_h5_attr_int(g, "step_size", &sched.step_size), 1);
  sched.min_lr = attr_double(g, "min_lr", NAN);
  sched.gamma = attr_double(g, "gamma", NAN);
  assert_int_equal(pg_schedule_check(&sched), PG_OK);

  /* the model: names and kinds in registration order */
  char names_attr[512], kinds_attr[256];
  assert_int_equal(pg_h5_attr_string(g, "params", names_attr, sizeof names_attr), 1);
  assert_int_equal(pg_h5_attr_string(g, "kinds", kinds_attr, sizeof kinds_attr), 1);
  pg_params ps;
  pg_params_init(&ps);
  pg_tensor *grads[MAX_EXP_PARAMS];
  double *traj[MAX_EXP_PARAMS];
  int64_t *frozen[MAX_EXP_PARAMS];
  int n = 0;
  char *save_n, *save_k;
  for (char *pn = strtok_r(names_attr, " ", &save_n), *pk = strtok_r(kinds_attr, " ", &save_k); pn;
       pn = strtok_r(NULL, " ", &save_n), pk = strtok_r(NULL, " ", &save_k), n++) {
    assert_true(n < MAX_EXP_PARAMS && pk);
    char path[160];
    pg_tensor *init;
    snprintf(path, sizeof path, "%s.init", pn);
    assert_int_equal(pg_h5_read_tensor(g, path, name, &init), PG_OK);
    pg_tensor *p = pg_params_add(&ps, kind_of(pk), init->ndim, init->shape, "%s", pn);
    assert_non_null(p);
    memcpy(p->data, init->data, (size_t)p->numel * sizeof(float));
    pg_tensor_free(init);
    snprintf(path, sizeof path, "%s.grads", pn);
    assert_int_equal(pg_h5_read_tensor(g, path, name, &grads[n]), PG_OK);
    assert_int_equal(grads[n]->numel, steps * p->numel);
    snprintf(path, sizeof path, "%s.traj", pn);
    traj[n] = read_doubles(g, path, steps * p->numel);
    snprintf(path, sizeof path, "%s.frozen", pn);
    int mask_ndim;
    int64_t mask_shape[PG_MAX_DIMS];
    assert_int_equal(pg_h5_read_int64(g, path, name, &frozen[n], &mask_ndim, mask_shape), PG_OK);
    assert_true(mask_ndim == 1 && mask_shape[0] == steps);
  }

  /* the param groups */
  int64_t n_groups;
  assert_int_equal(pg_h5_attr_int(g, "n_groups", &n_groups), 1);
  assert_true(n_groups <= MAX_EXP_GROUPS);
  pg_param_group groups[MAX_EXP_GROUPS];
  char patterns[MAX_EXP_GROUPS][64];
  for (int k = 0; k < n_groups; k++) {
    char key[64];
#define GROUP_KEY(field) (snprintf(key, sizeof key, "group.%d.%s", k + 1, field), key)
    assert_int_equal(pg_h5_attr_string(g, GROUP_KEY("pattern"), patterns[k], sizeof patterns[k]), 1);
    groups[k] = pg_param_group_make(&cfg, patterns[k]);
    groups[k].lr = attr_double(g, GROUP_KEY("lr"), NAN);
    groups[k].weight_decay = attr_double(g, GROUP_KEY("weight_decay"), NAN);
    groups[k].betas[0] = attr_double(g, GROUP_KEY("beta1"), NAN);
    groups[k].betas[1] = attr_double(g, GROUP_KEY("beta2"), NAN);
    groups[k].momentum = attr_double(g, GROUP_KEY("momentum"), NAN);
    groups[k].frozen = attr_double(g, GROUP_KEY("frozen"), NAN) != 0;
#undef GROUP_KEY
  }

  pg_optimizer opt;
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, groups, (int)n_groups), PG_OK);
  assert_int_equal(opt.n_slots, n);
  for (int k = 0; k < n_groups; k++) assert_true(opt.param_groups[k].n_params > 0);
  param_snapshot snap[MAX_EXP_PARAMS];
  memset(snap, 0, sizeof snap);
  double worst_use = 0;
  for (int64_t s = 0; s < steps; s++) {
    for (int i = 0; i < n; i++) {
      pg_optim_slot *slot = &opt.slots[i];
      pg_tensor *p = ps.items[i].tensor;
      const bool is_frozen = frozen[i][s] != 0;
      if (slot->group > 0 && opt.param_groups[slot->group - 1].frozen)
        assert_false(p->requires_grad); /* a frozen group: requires_grad off since init */
      else
        assert_int_equal(pg_tensor_set_requires_grad(p, !is_frozen), PG_OK);
      /* frozen or not, the buffer holds a gradient: a frozen tensor must ignore it */
      memcpy(p->grad, grads[i]->data + s * p->numel, (size_t)p->numel * sizeof(float));
      if (is_frozen && (s == 0 || !frozen[i][s - 1])) snapshot_take(&snap[i], slot);
    }
    pg_schedule_apply(&sched, &opt);
    assert_int_equal(pg_optimizer_step(&opt), PG_OK);
    for (int i = 0; i < n; i++)
      if (frozen[i][s]) {
        snapshot_assert_same(&snap[i], &opt.slots[i], name, s + 1);
        if (s + 1 == steps || !frozen[i][s + 1]) sum->frozen_checked++;
      }
    worst_use = check_traj(name, s, &ps, n, traj, worst_use);
  }
  assert_int_equal(opt.step, steps);

  const int64_t worst_ulps = ulps_from_final32(g, name, &ps, n);
  for (int i = 0; i < n; i++) {
    /* each parameter's own count of skipped steps */
    int64_t skipped = 0;
    for (int64_t s = 0; s < steps; s++) skipped += frozen[i][s] != 0;
    assert_int_equal(opt.slots[i].skipped, skipped);
    pg_tensor_free(grads[i]);
    test_free(traj[i]);
    free(frozen[i]);
    snapshot_free(&snap[i]);
  }
  print_message("  %-22s %3lld steps, %lld group(s): worst error %.2f of the tolerance, %lld ulp "
                "from torch float32\n",
                name, (long long)steps, (long long)n_groups, worst_use, (long long)worst_ulps);
  if (worst_use > sum->worst_use) sum->worst_use = worst_use;
  sum->cases++;
  pg_optimizer_free(&opt);
  pg_params_free(&ps);
  H5Gclose(g);
  return 0;
}

/* Frozen tensors stay bit-identical (value and state) from the step they
 * are frozen, through 100 steps; everything else follows PyTorch given the
 * same freezing, groups and schedule (LambdaLR over every group). */
static void test_torch_freezing_and_groups(void **state) {
  (void)state;
  hid_t f = pg_h5_open(pg_test_data("optim_torch.h5"), false);
  assert_true(f >= 0);
  hid_t ex = H5Gopen2(f, "experiments", H5P_DEFAULT);
  assert_true(ex >= 0);
  experiment_summary sum = {0};
  hsize_t idx = 0;
  assert_true(H5Literate(ex, H5_INDEX_NAME, H5_ITER_INC, &idx, replay_experiment, &sum) >= 0);
  H5Gclose(ex);
  H5Fclose(f);
  print_message("  %d cases: worst error %.2f of the tolerance, %d frozen stretches bit-identical\n",
                sum.cases, sum.worst_use, sum.frozen_checked);
  assert_int_equal(sum.cases, 7);
  assert_true(sum.frozen_checked >= 4 * 4 + 1);
}

/* ---- State layout ---- */

/* A small model: weight, bias, norm, embedding, and a fixed buffer. */
static void make_model(pg_params *ps, uint64_t seed) {
  pg_params_init(ps);
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  pg_tensor *t[5] = {
      pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(4, 3), "blocks.0.fc.weight"),
      pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(4), "blocks.0.fc.bias"),
      pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(2, 3), "pos_embed"),
      pg_params_add(ps, PG_PARAM_NORM, PG_SHAPE(3), "norm.weight"),
      pg_params_add(ps, PG_PARAM_EMBEDDING, PG_SHAPE(5, 3), "y_embedder.embedding_table"),
  };
  for (int i = 0; i < 5; i++) {
    assert_non_null(t[i]);
    pg_fill_normal(t[i], 0, 1, &rng);
  }
}

static void fill_grads(pg_params *ps, pg_rng *rng) {
  for (int i = 0; i < ps->count; i++)
    if (ps->items[i].tensor->grad)
      for (int64_t j = 0; j < ps->items[i].tensor->numel; j++)
        ps->items[i].tensor->grad[j] = pg_rng_normal(rng);
}

static void assert_state(const pg_optimizer *opt, int n, const char *const *names) {
  assert_int_equal(opt->state.count, n);
  for (int i = 0; i < n; i++) {
    const pg_param *s = &opt->state.items[i];
    assert_string_equal(s->name, names[i]);
    assert_int_equal(s->kind, PG_PARAM_BUFFER);
    assert_null(s->tensor->grad);
    /* shaped like its parameter: the name minus the suffix */
    char param_name[PG_PARAM_NAME_MAX];
    snprintf(param_name, sizeof param_name, "%s", s->name);
    *strrchr(param_name, '.') = 0;
    const pg_param *p = pg_params_find(opt->params, param_name);
    assert_non_null(p);
    assert_true(pg_same_shape(p->tensor, s->tensor));
  }
}

static void test_state_names(void **state) {
  (void)state;
  pg_params ps;
  make_model(&ps, 1);
  pg_optimizer opt;

  pg_optim_config sgd = pg_optim_sgd(0.1);
  assert_int_equal(pg_optimizer_init(&opt, &ps, &sgd), PG_OK);
  assert_int_equal(opt.state.count, 0); /* no momentum: no state, as in PyTorch */
  assert_int_equal(opt.n_slots, 4);     /* the buffer is not trained */
  pg_optimizer_free(&opt);

  sgd.momentum = 0.9;
  assert_int_equal(pg_optimizer_init(&opt, &ps, &sgd), PG_OK);
  const char *sgd_names[] = {"blocks.0.fc.weight.momentum_buffer", "blocks.0.fc.bias.momentum_buffer",
                             "norm.weight.momentum_buffer",
                             "y_embedder.embedding_table.momentum_buffer"};
  assert_state(&opt, 4, sgd_names);
  pg_optimizer_free(&opt);

  pg_optim_config adam = pg_optim_adam(1e-3);
  adam.amsgrad = true;
  assert_int_equal(pg_optimizer_init(&opt, &ps, &adam), PG_OK);
  const char *adam_names[] = {
      "blocks.0.fc.weight.exp_avg",         "blocks.0.fc.weight.exp_avg_sq",
      "blocks.0.fc.weight.max_exp_avg_sq",  "blocks.0.fc.bias.exp_avg",
      "blocks.0.fc.bias.exp_avg_sq",        "blocks.0.fc.bias.max_exp_avg_sq",
      "norm.weight.exp_avg",                "norm.weight.exp_avg_sq",
      "norm.weight.max_exp_avg_sq",         "y_embedder.embedding_table.exp_avg",
      "y_embedder.embedding_table.exp_avg_sq", "y_embedder.embedding_table.max_exp_avg_sq"};
  assert_state(&opt, 12, adam_names);
  assert_int_equal(opt.step, 0);

  /* a step moves every trained entry, leaves the buffer alone, counts */
  float pos_before[6];
  memcpy(pos_before, pg_params_find(&ps, "pos_embed")->tensor->data, sizeof pos_before);
  float w_before = ps.items[0].tensor->data[0];
  pg_rng rng;
  pg_rng_seed(&rng, 2);
  fill_grads(&ps, &rng);
  assert_int_equal(pg_optimizer_step(&opt), PG_OK);
  assert_int_equal(opt.step, 1);
  assert_true(ps.items[0].tensor->data[0] != w_before);
  assert_memory_equal(pg_params_find(&ps, "pos_embed")->tensor->data, pos_before, sizeof pos_before);
  pg_optimizer_zero_grad(&opt);
  for (int64_t j = 0; j < ps.items[0].tensor->numel; j++) assert_true(ps.items[0].tensor->grad[j] == 0);
  pg_optimizer_free(&opt);
  pg_params_free(&ps);
}

/* Saving step + state by name and loading them into a fresh optimizer (what
 * io/checkpoint.c does) continues the run bit for bit. */
static void check_restore(pg_optim_config cfg) {
  pg_params a, b;
  make_model(&a, 3);
  make_model(&b, 3);
  pg_optimizer oa, ob;
  assert_int_equal(pg_optimizer_init(&oa, &a, &cfg), PG_OK);
  pg_rng rng_a, rng_b;
  pg_rng_seed(&rng_a, 4);
  for (int s = 0; s < 7; s++) {
    fill_grads(&a, &rng_a);
    assert_int_equal(pg_optimizer_step(&oa), PG_OK);
  }
  /* "checkpoint": model values, step, config and state tensors by name */
  for (int i = 0; i < a.count; i++)
    memcpy(b.items[i].tensor->data, a.items[i].tensor->data, (size_t)a.items[i].tensor->numel * 4);
  assert_int_equal(pg_optimizer_init(&ob, &b, &oa.config), PG_OK);
  ob.step = oa.step;
  for (int i = 0; i < oa.state.count; i++) {
    pg_param *dst = pg_params_find(&ob.state, oa.state.items[i].name);
    assert_non_null(dst);
    memcpy(dst->tensor->data, oa.state.items[i].tensor->data, (size_t)dst->tensor->numel * 4);
  }
  rng_b = rng_a;
  for (int s = 0; s < 5; s++) {
    fill_grads(&a, &rng_a);
    fill_grads(&b, &rng_b);
    assert_int_equal(pg_optimizer_step(&oa), PG_OK);
    assert_int_equal(pg_optimizer_step(&ob), PG_OK);
  }
  for (int i = 0; i < a.count; i++)
    assert_memory_equal(a.items[i].tensor->data, b.items[i].tensor->data,
                        (size_t)a.items[i].tensor->numel * 4);
  pg_optimizer_free(&oa);
  pg_optimizer_free(&ob);
  pg_params_free(&a);
  pg_params_free(&b);
}

static void test_restore_continues_exactly(void **state) {
  (void)state;
  pg_optim_config sgd = pg_optim_sgd(0.05);
  sgd.momentum = 0.9;
  sgd.dampening = 0.1; /* a restarted first-step rule would differ here */
  check_restore(sgd);
  pg_optim_config adam = pg_optim_adam(0.01);
  adam.amsgrad = true;
  check_restore(adam);
  check_restore(pg_optim_adamw(0.01));
}

/* ---- Parameter groups ---- */

static void test_no_decay_grouping(void **state) {
  (void)state;
  const pg_optim_config kinds[] = {pg_optim_sgd(0.1), pg_optim_adam(0.1), pg_optim_adamw(0.1)};
  for (int k = 0; k < 3; k++) {
    pg_optim_config cfg = kinds[k];
    cfg.weight_decay = 0.5;
    cfg.decay_weights_only = true;
    assert_true(pg_optim_decay_for(&cfg, PG_PARAM_WEIGHT) == 0.5);
    assert_true(pg_optim_decay_for(&cfg, PG_PARAM_BIAS) == 0);
    assert_true(pg_optim_decay_for(&cfg, PG_PARAM_NORM) == 0);
    assert_true(pg_optim_decay_for(&cfg, PG_PARAM_EMBEDDING) == 0);
    pg_params ps;
    make_model(&ps, 5);
    pg_params before;
    make_model(&before, 5);
    pg_optimizer opt;
    assert_int_equal(pg_optimizer_init(&opt, &ps, &cfg), PG_OK);
    /* zero gradients: only the decay can move a parameter */
    assert_int_equal(pg_optimizer_step(&opt), PG_OK);
    for (int i = 0; i < ps.count; i++) {
      const pg_tensor *t = ps.items[i].tensor, *t0 = before.items[i].tensor;
      if (ps.items[i].kind != PG_PARAM_WEIGHT) {
        assert_memory_equal(t->data, t0->data, (size_t)t->numel * 4);
        continue;
      }
      for (int64_t j = 0; j < t->numel; j++) {
        float w = t0->data[j], want;
        if (k == 0) want = w - 0.1f * (0.5f * w); /* SGD: grad = wd * w */
        else if (k == 2) want = w * (float)(1 - 0.1 * 0.5); /* AdamW: decoupled */
        else want = w - 0.1f * copysignf(1.0f, w);          /* Adam step 1: lr * sign(grad) */
        assert_close(&t->data[j], &want, 1, 1e-6, 1e-5);
      }
    }
    pg_optimizer_free(&opt);
    pg_params_free(&ps);
    pg_params_free(&before);
  }
}

/* Groups by glob, first match wins, the rest in group 0; init errors name
 * the group and its pattern and change nothing. */
static void test_param_groups_assignment(void **state) {
  (void)state;
  pg_params ps;
  make_model(&ps, 11); /* blocks.0.fc.weight, blocks.0.fc.bias, pos_embed (buffer), norm.weight, y_embedder.embedding_table */
  pg_optim_config cfg = pg_optim_sgd(0.1);
  pg_param_group g[4] = {pg_param_group_make(&cfg, "*.bias"), pg_param_group_make(&cfg, "blocks.*"),
                         pg_param_group_make(&cfg, "*.fc.bias"), pg_param_group_make(&cfg, "norm.*")};
  g[1].momentum = 0.9; /* momentum in one group only: buffers for its parameters only */
  g[3].frozen = true;
  pg_optimizer opt;
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, g, 4), PG_OK);
  assert_int_equal(opt.n_param_groups, 4);
  assert_int_equal(opt.n_slots, 4);
  const int want_group[4] = {2, 1, 4, 0}; /* fc.weight, fc.bias (first match), norm, embedding */
  for (int i = 0; i < 4; i++) assert_int_equal(opt.slots[i].group, want_group[i]);
  assert_int_equal(opt.param_groups[0].n_params, 1);
  assert_int_equal(opt.param_groups[1].n_params, 1);
  assert_int_equal(opt.param_groups[2].n_params, 0); /* matches, but '*.bias' took it */
  assert_int_equal(opt.param_groups[3].n_params, 1);
  assert_string_equal(opt.param_groups[0].pattern, "*.bias");
  assert_ptr_not_equal(opt.param_groups[0].pattern, g[0].pattern); /* a copy */
  assert_int_equal(opt.state.count, 1);
  assert_string_equal(opt.state.items[0].name, "blocks.0.fc.weight.momentum_buffer");
  /* the frozen group: requires_grad off, the others untouched */
  assert_false(pg_params_find(&ps, "norm.weight")->tensor->requires_grad);
  assert_true(pg_params_find(&ps, "blocks.0.fc.weight")->tensor->requires_grad);
  pg_optimizer_free(&opt);
  assert_null(opt.param_groups);
  assert_int_equal(pg_tensor_set_requires_grad(pg_params_find(&ps, "norm.weight")->tensor, true), PG_OK);

  /* errors: nothing is frozen, the optimizer holds nothing */
  g[3].frozen = true;
  pg_param_group bad[2] = {g[3], pg_param_group_make(&cfg, "decoder.*")};
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, bad, 2), PG_ERR_ARG);
  assert_error_contains("param group 2: the pattern 'decoder.*' matches no trainable parameter");
  assert_null(opt.slots);
  assert_null(opt.param_groups);
  assert_true(pg_params_find(&ps, "norm.weight")->tensor->requires_grad);
  bad[1] = pg_param_group_make(&cfg, "pos_*");
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, bad, 2), PG_ERR_ARG);
  assert_error_contains("'pos_*' matches no trainable parameter (only buffers, which are never trained)");
  bad[1] = pg_param_group_make(&cfg, "*.bias");
  bad[1].weight_decay = -1;
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, bad, 2), PG_ERR_ARG);
  assert_error_contains("param group 2 ('*.bias'): weight_decay = -1 is out of range");
  bad[1] = pg_param_group_make(&cfg, "");
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, bad, 2), PG_ERR_ARG);
  assert_error_contains("param group 2: the pattern is empty");
  bad[1].pattern = NULL;
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, bad, 2), PG_ERR_ARG);
  assert_error_contains("param group 2: the pattern is NULL");
  char long_pattern[PG_PARAM_GROUP_PATTERN_MAX + 2];
  memset(long_pattern, '*', sizeof long_pattern - 1);
  long_pattern[sizeof long_pattern - 1] = 0;
  bad[1].pattern = long_pattern;
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, bad, 2), PG_ERR_ARG);
  assert_error_contains("bytes long (at most 200)");
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, NULL, 1), PG_ERR_ARG);
  assert_error_contains("groups is NULL");
  assert_true(pg_params_find(&ps, "norm.weight")->tensor->requires_grad);

  /* a group's value made bad between steps: the step refuses, nothing moves */
  pg_param_group ok = pg_param_group_make(&cfg, "*.bias");
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, &ok, 1), PG_OK);
  opt.param_groups[0].lr = -0.5;
  assert_int_equal(pg_optimizer_step(&opt), PG_ERR_ARG);
  assert_error_contains("param group 1 ('*.bias'): lr = -0.5");
  assert_int_equal(opt.step, 0);
  opt.param_groups[0].lr = 0.1;
  opt.param_groups[0].momentum = 0.9; /* no buffer was made for it */
  assert_int_equal(pg_optimizer_step(&opt), PG_ERR_STATE);
  assert_error_contains("'blocks.0.fc.bias' has no momentum_buffer");
  pg_optimizer_free(&opt);
  pg_params_free(&ps);
}

/* The schedule scales every group's lr by one factor (LambdaLR over
 * param_groups): group lr * config.lr / initial_lr, exactly config.lr for a
 * group with the base lr, and a group's lr is what its parameters use. */
static void test_param_groups_follow_schedule(void **state) {
  (void)state;
  pg_params ps;
  make_model(&ps, 12);
  pg_optim_config cfg = pg_optim_sgd(0.2);
  pg_param_group g[2] = {pg_param_group_make(&cfg, "*.bias"), pg_param_group_make(&cfg, "norm.*")};
  g[0].lr = 0.05;
  pg_optimizer opt;
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, g, 2), PG_OK);
  assert_true(opt.initial_lr == 0.2);
  pg_schedule sched = pg_schedule_make(PG_SCHEDULE_COSINE, 0.2);
  sched.warmup_steps = 4;
  sched.total_steps = 20;
  for (int s = 0; s < 12; s++) {
    pg_schedule_apply(&sched, &opt);
    const double lr = pg_schedule_lr(&sched, opt.step), factor = lr / 0.2;
    assert_true(pg_optimizer_group_lr(&opt, 0) == lr);
    assert_true(fabs(pg_optimizer_group_lr(&opt, 1) - 0.05 * factor) <= 1e-15);
    assert_true(pg_optimizer_group_lr(&opt, 2) == lr); /* the base lr: exactly config.lr */
    assert_true(pg_optimizer_group_config(&opt, 1).lr == pg_optimizer_group_lr(&opt, 1));
    /* one SGD step on unit gradients moves each parameter by its group's lr */
    pg_tensor *bias = pg_params_find(&ps, "blocks.0.fc.bias")->tensor;
    pg_tensor *w = pg_params_find(&ps, "blocks.0.fc.weight")->tensor;
    for (int64_t j = 0; j < bias->numel; j++) bias->grad[j] = 1;
    for (int64_t j = 0; j < w->numel; j++) w->grad[j] = 1;
    const float b0 = bias->data[0], w0 = w->data[0];
    assert_int_equal(pg_optimizer_step(&opt), PG_OK);
    const float want_b = b0 - (float)pg_optimizer_group_lr(&opt, 1), want_w = w0 - (float)lr;
    assert_true(bias->data[0] == want_b);
    assert_true(w->data[0] == want_w);
    pg_optimizer_zero_grad(&opt);
  }
  assert_true(isnan(pg_optimizer_group_lr(&opt, 3)));
  /* with initial_lr 0 the groups keep their own lr */
  pg_optimizer_free(&opt);
  cfg.lr = 0;
  assert_int_equal(pg_optimizer_init_groups(&opt, &ps, &cfg, g, 1), PG_OK);
  opt.config.lr = 0.3;
  assert_true(pg_optimizer_group_lr(&opt, 1) == 0.05);
  pg_optimizer_free(&opt);
  pg_params_free(&ps);
}

/* A frozen tensor skips everything, whatever its gradient buffer holds; a
 * tensor without a gradient buffer is skipped too (PyTorch's grad None). */
static void test_freeze_skips_everything(void **state) {
  (void)state;
  const pg_optim_config kinds[] = {pg_optim_sgd(0.1), pg_optim_adam(0.1), pg_optim_adamw(0.1)};
  for (int k = 0; k < 3; k++) {
    pg_optim_config cfg = kinds[k];
    cfg.weight_decay = 0.3;
    cfg.momentum = k == 0 ? 0.9 : 0;
    pg_params ps, ref;
    make_model(&ps, 13);
    make_model(&ref, 13);
    pg_optimizer opt;
    assert_int_equal(pg_optimizer_init(&opt, &ps, &cfg), PG_OK);
    pg_tensor *w = pg_params_find(&ps, "blocks.0.fc.weight")->tensor;
    pg_tensor *b = pg_params_find(&ps, "blocks.0.fc.bias")->tensor;
    assert_int_equal(pg_tensor_set_requires_grad(w, false), PG_OK);
    float *keep = b->grad; /* a tensor without a gradient buffer */
    b->grad = NULL;
    pg_rng rng;
    pg_rng_seed(&rng, 14);
    for (int s = 0; s < 5; s++) {
      fill_grads(&ps, &rng);
      assert_int_equal(pg_optimizer_step(&opt), PG_OK);
    }
    assert_memory_equal(w->data, ref.items[0].tensor->data, (size_t)w->numel * 4);
    assert_memory_equal(b->data, ref.items[1].tensor->data, (size_t)b->numel * 4);
    for (int i = 0; i < opt.state.count; i++) /* no state either */
      if (!strncmp(opt.state.items[i].name, "blocks.0.fc.", 12))
        for (int64_t j = 0; j < opt.state.items[i].tensor->numel; j++)
          assert_true(opt.state.items[i].tensor->data[j] == 0);
    assert_int_equal(opt.slots[0].skipped, 5);
    assert_int_equal(opt.slots[1].skipped, 5);
    assert_int_equal(opt.slots[2].skipped, 0);
    assert_true(memcmp(ps.items[3].tensor->data, ref.items[3].tensor->data, 12) != 0); /* the others move */
    /* unfrozen: its first update is its own step 1, as a fresh optimizer's */
    assert_int_equal(pg_tensor_set_requires_grad(w, true), PG_OK);
    b->grad = keep;
    pg_params fresh;
    make_model(&fresh, 13);
    pg_optimizer of;
    assert_int_equal(pg_optimizer_init(&of, &fresh, &cfg), PG_OK);
    fill_grads(&ps, &rng);
    for (int i = 0; i < ps.count; i++)
      if (ps.items[i].tensor->grad)
        memcpy(fresh.items[i].tensor->grad, ps.items[i].tensor->grad, (size_t)ps.items[i].tensor->numel * 4);
    assert_int_equal(pg_optimizer_step(&opt), PG_OK);
    assert_int_equal(pg_optimizer_step(&of), PG_OK);
    assert_memory_equal(w->data, fresh.items[0].tensor->data, (size_t)w->numel * 4);
    assert_memory_equal(b->data, fresh.items[1].tensor->data, (size_t)b->numel * 4);
    pg_optimizer_free(&of);
    pg_params_free(&fresh);
    pg_optimizer_free(&opt);
    pg_params_free(&ps);
    pg_params_free(&ref);
  }
}

/* ---- Threads: a parameter above PG_OPTIM_PARALLEL_MIN is updated by the
 * OpenMP loop; the result must equal the same data as small parameters. ---- */
static void test_large_parameter_threaded(void **state) {
  (void)state;
  const int64_t n = 3 * PG_OPTIM_PARALLEL_MIN + 17, piece = 1000;
  pg_params big, small;
  pg_params_init(&big);
  pg_params_init(&small);
  pg_tensor *b = pg_params_add(&big, PG_PARAM_WEIGHT, PG_SHAPE(n), "w");
  pg_rng rng;
  pg_rng_seed(&rng, 6);
  pg_fill_normal(b, 0, 1, &rng);
  for (int64_t off = 0, k = 0; off < n; off += piece, k++) {
    int64_t len = n - off < piece ? n - off : piece;
    pg_tensor *t = pg_params_add(&small, PG_PARAM_WEIGHT, PG_SHAPE(len), "w%lld", (long long)k);
    memcpy(t->data, b->data + off, (size_t)len * 4);
  }
  pg_optim_config cfgs[] = {pg_optim_sgd(0.01), pg_optim_adamw(0.01)};
  cfgs[0].momentum = 0.9;
  cfgs[0].nesterov = true;
  cfgs[1].amsgrad = true;
  for (int c = 0; c < 2; c++) {
    pg_optimizer ob, os;
    assert_int_equal(pg_optimizer_init(&ob, &big, &cfgs[c]), PG_OK);
    assert_int_equal(pg_optimizer_init(&os, &small, &cfgs[c]), PG_OK);
    for (int s = 0; s < 3; s++) {
      for (int64_t j = 0; j < n; j++) b->grad[j] = pg_rng_normal(&rng);
      for (int64_t off = 0, k = 0; off < n; off += piece, k++)
        memcpy(small.items[k].tensor->grad, b->grad + off, (size_t)small.items[k].tensor->numel * 4);
      assert_int_equal(pg_optimizer_step(&ob), PG_OK);
      assert_int_equal(pg_optimizer_step(&os), PG_OK);
    }
    for (int64_t off = 0, k = 0; off < n; off += piece, k++)
      assert_memory_equal(small.items[k].tensor->data, b->data + off,
                          (size_t)small.items[k].tensor->numel * 4);
    pg_optimizer_free(&ob);
    pg_optimizer_free(&os);
  }
  pg_params_free(&big);
  pg_params_free(&small);
}

/* ---- Errors ---- */

static void expect_config_error(pg_optim_config cfg, const char *needle) {
  pg_params ps;
  make_model(&ps, 7);
  pg_optimizer opt;
  assert_int_equal(pg_optimizer_init(&opt, &ps, &cfg), PG_ERR_ARG);
  assert_error_contains(needle);
  assert_null(opt.slots);
  assert_int_equal(opt.state.count, 0);
  pg_params_free(&ps);
}

static void test_errors(void **state) {
  (void)state;
  expect_config_error(pg_optim_sgd(-0.1), "lr = -0.1");
  expect_config_error(pg_optim_sgd(NAN), "lr = nan");
  pg_optim_config c = pg_optim_sgd(0.1);
  c.nesterov = true;
  expect_config_error(c, "nesterov needs momentum > 0");
  c.momentum = 0.9;
  c.dampening = 0.1;
  expect_config_error(c, "dampening 0.1");
  c = pg_optim_adam(1e-3);
  c.beta1 = 1.0;
  expect_config_error(c, "beta1 = 1 is out of range");
  c = pg_optim_adamw(1e-3);
  c.beta2 = -0.5;
  expect_config_error(c, "beta2 = -0.5");
  c = pg_optim_adam(1e-3);
  c.eps = -1e-8;
  expect_config_error(c, "eps = -1e-08");
  c.eps = 1e-8;
  c.weight_decay = -1;
  expect_config_error(c, "weight_decay = -1");
  c.weight_decay = 0;
  c.kind = (pg_optim_kind)7;
  expect_config_error(c, "kind = 7");

  pg_optim_kind kind;
  assert_int_equal(pg_optim_kind_parse("adamw", &kind), PG_OK);
  assert_int_equal(kind, PG_OPTIM_ADAMW);
  assert_string_equal(pg_optim_kind_name(PG_OPTIM_SGD), "sgd");
  assert_int_equal(pg_optim_kind_parse("adagrad", &kind), PG_ERR_ARG);
  assert_error_contains("unknown name 'adagrad' (expected sgd, adam or adamw)");

  pg_optimizer opt;
  c = pg_optim_sgd(0.1);
  assert_int_equal(pg_optimizer_init(&opt, NULL, &c), PG_ERR_ARG);
  assert_error_contains("params is NULL");
  assert_int_equal(pg_optimizer_step(NULL), PG_ERR_ARG);

  /* after init: a bad lr (from a schedule), momentum or amsgrad switched on
   * without their buffers, a parameter registered late. Nothing moves. */
  pg_params ps;
  make_model(&ps, 8);
  pg_params ref;
  make_model(&ref, 8);
  pg_rng rng;
  pg_rng_seed(&rng, 9);
  fill_grads(&ps, &rng);
  assert_int_equal(pg_optimizer_init(&opt, &ps, &c), PG_OK);
  opt.config.lr = INFINITY;
  assert_int_equal(pg_optimizer_step(&opt), PG_ERR_ARG);
  assert_error_contains("lr = inf");
  opt.config.lr = 0.1;
  opt.config.momentum = 0.9;
  assert_int_equal(pg_optimizer_step(&opt), PG_ERR_STATE);
  assert_error_contains("'blocks.0.fc.weight' has no momentum_buffer (momentum was 0 at init)");
  pg_optimizer_free(&opt);
  c = pg_optim_adam(0.1);
  assert_int_equal(pg_optimizer_init(&opt, &ps, &c), PG_OK);
  opt.config.amsgrad = true;
  assert_int_equal(pg_optimizer_step(&opt), PG_ERR_STATE);
  assert_error_contains("no max_exp_avg_sq (amsgrad was off at init)");
  opt.config.amsgrad = false;
  assert_non_null(pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(2), "late.weight"));
  assert_int_equal(pg_optimizer_step(&opt), PG_ERR_STATE);
  assert_error_contains("the parameter list has 6 entries, 5 at init");
  assert_int_equal(opt.step, 0);
  for (int i = 0; i < ref.count; i++)
    assert_memory_equal(ps.items[i].tensor->data, ref.items[i].tensor->data,
                        (size_t)ref.items[i].tensor->numel * 4);
  pg_optimizer_free(&opt);

  /* state names longer than the name limit are refused at init */
  pg_params longp;
  pg_params_init(&longp);
  char longname[PG_PARAM_NAME_MAX - 4];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  assert_non_null(pg_params_add(&longp, PG_PARAM_WEIGHT, PG_SHAPE(2), "%s", longname));
  c = pg_optim_adam(0.1);
  assert_int_equal(pg_optimizer_init(&opt, &longp, &c), PG_ERR_ARG);
  assert_error_contains("is longer than");
  pg_params_free(&longp);
  pg_params_free(&ps);
  pg_params_free(&ref);
}

int main(void) {
  pg_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_torch_trajectories),   cmocka_unit_test(test_torch_freezing_and_groups),
      cmocka_unit_test(test_state_names),
      cmocka_unit_test(test_restore_continues_exactly), cmocka_unit_test(test_no_decay_grouping),
      cmocka_unit_test(test_param_groups_assignment), cmocka_unit_test(test_param_groups_follow_schedule),
      cmocka_unit_test(test_freeze_skips_everything),
      cmocka_unit_test(test_large_parameter_threaded), cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
