/* dist/zero.h, the sharded optimizer state (ZeRO stage 1). Run alone (one
 * rank) and under `mpirun -n 2` and `-n 4` (the suite runs all three). On
 * every rank a model A is trained by the sharded optimizer (gradients
 * averaged by the reducer) and a copy B by the plain pg_optimizer on the
 * same averaged gradients; after every step A and B must hold the same
 * parameters bit for bit, for SGD with momentum (and a group without),
 * Adam with amsgrad and L2 decay, AdamW with per-group settings, a frozen
 * group, a parameter frozen for one step and one frozen before the reducer
 * was built. Also: each rank holds 1/K of the state; gathering the state
 * gives B's state bit for bit; gather, scatter and gather again is the
 * identity; a checkpoint written from K sharded ranks resumes on one rank
 * (sharded and plain) and one written by the plain optimizer resumes on K
 * sharded ranks, both continuing equal to B. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "patchgrad/autograd/params.h"
#include "patchgrad/dist/dist.h"
#include "patchgrad/dist/reducer.h"
#include "patchgrad/dist/zero.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/optim_kv.h"
#include "patchgrad/optim/optimizer.h"

static pg_dist dist;

/* Odd sizes, so that parameters straddle the ranks' ranges. */
static void make_model(pg_params *ps) {
  pg_params_init(ps);
  assert_non_null(pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(37, 29), "a.weight"));
  assert_non_null(pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(29), "a.bias"));
  assert_non_null(pg_params_add(ps, PG_PARAM_NORM, PG_SHAPE(13), "norm.weight"));
  assert_non_null(pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(5), "table"));
  assert_non_null(pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(101, 7), "b.weight"));
  assert_non_null(pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(7), "b.bias"));
  assert_non_null(pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(11, 3), "c.weight"));
  assert_non_null(pg_params_add(ps, PG_PARAM_EMBEDDING, PG_SHAPE(9, 4), "emb"));
  for (int p = 0; p < ps->count; p++) {
    pg_tensor *t = ps->items[p].tensor;
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = 0.1f * sinf(0.37f * (float)i + (float)p);
  }
}

/* Rank-dependent gradients of every tensor that has a buffer. */
static void fill_grads(pg_params *ps, int rank, int step) {
  for (int p = 0; p < ps->count; p++) {
    pg_tensor *t = ps->items[p].tensor;
    if (!t->grad) continue;
    for (int64_t i = 0; i < t->numel; i++)
      t->grad[i] = 0.05f * cosf(0.11f * (float)i * (float)(rank + 1) + (float)(step * 3 + p)) +
                   0.01f * (float)rank;
  }
}

static void copy_grads(pg_params *to, const pg_params *from) {
  for (int p = 0; p < to->count; p++)
    if (to->items[p].tensor->grad && from->items[p].tensor->grad)
      memcpy(to->items[p].tensor->grad, from->items[p].tensor->grad,
             sizeof(float) * (size_t)to->items[p].tensor->numel);
}

/* a and b hold the same values, bit for bit. */
static void assert_same(const pg_params *a, const pg_params *b, const char *what, int step) {
  assert_int_equal(a->count, b->count);
  for (int p = 0; p < a->count; p++) {
    const pg_tensor *x = a->items[p].tensor, *y = b->items[p].tensor;
    assert_string_equal(a->items[p].name, b->items[p].name);
    assert_int_equal(x->numel, y->numel);
    for (int64_t i = 0; i < x->numel; i++)
      if (memcmp(&x->data[i], &y->data[i], sizeof(float))) {
        fprintf(stderr, "rank %d, %s, step %d: %s[%lld] = %.9g, expected %.9g\n", dist.rank, what, step,
                a->items[p].name, (long long)i, x->data[i], y->data[i]);
        fail();
      }
  }
}

static pg_tensor *find(pg_params *ps, const char *name) {
  pg_param *p = pg_params_find(ps, name);
  assert_non_null(p);
  return p->tensor;
}

typedef struct {
  pg_optim_config cfg;
  pg_param_group groups[3];
  int n_groups;
  bool pre_frozen; /* "emb" frozen before the reducer is built */
  int64_t piece;   /* 0: the default */
} setup;

/* The sharded A and the plain B, side by side. */
typedef struct {
  pg_params a, b;
  pg_reducer red;
  pg_zero z;
  pg_optimizer opt;
} pair;

static void pair_init(pair *pr, const setup *s) {
  make_model(&pr->a);
  make_model(&pr->b);
  if (s->pre_frozen) {
    assert_int_equal(pg_tensor_set_requires_grad(find(&pr->a, "emb"), false), PG_OK);
    assert_int_equal(pg_tensor_set_requires_grad(find(&pr->b, "emb"), false), PG_OK);
  }
  /* small buckets: several per step */
  assert_int_equal(pg_reducer_init(&pr->red, &dist, &pr->a, 512), PG_OK);
  assert_int_equal(pg_zero_init(&pr->z, &pr->red, &s->cfg, s->groups, s->n_groups), PG_OK);
  if (s->piece) pr->z.piece = s->piece;
  assert_int_equal(pg_optimizer_init_groups(&pr->opt, &pr->b, &s->cfg, s->groups, s->n_groups), PG_OK);
}

static void pair_free(pair *pr) {
  pg_zero_free(&pr->z);
  pg_reducer_free(&pr->red);
  pg_optimizer_free(&pr->opt);
  pg_params_free(&pr->a);
  pg_params_free(&pr->b);
}

/* The averaged gradients of step `step` in A and B, and the settings of
 * that step: "b.bias" sits out step 2; the lr follows a schedule. */
static void pair_grads(pair *pr, int step) {
  const bool sit_out = step == 2;
  assert_int_equal(pg_tensor_set_requires_grad(find(&pr->a, "b.bias"), !sit_out), PG_OK);
  assert_int_equal(pg_tensor_set_requires_grad(find(&pr->b, "b.bias"), !sit_out), PG_OK);
  const double lr = pr->opt.initial_lr * (1.0 - 0.1 * (double)step);
  pr->z.opt.config.lr = pr->opt.config.lr = lr;
  fill_grads(&pr->a, dist.rank, step);
  assert_int_equal(pg_reducer_finish(&pr->red), PG_OK);
  copy_grads(&pr->b, &pr->a);
}

/* Both step; they must agree bit for bit; the gradients are zeroed. */
static void pair_update(pair *pr, int step) {
  assert_int_equal(pg_zero_step(&pr->z), PG_OK);
  assert_int_equal(pg_optimizer_step(&pr->opt), PG_OK);
  assert_same(&pr->a, &pr->b, "parameters", step);
  pg_zero_zero_grad(&pr->z);
  pg_optimizer_zero_grad(&pr->opt);
  for (int p = 0; p < pr->a.count; p++) {
    const pg_tensor *t = pr->a.items[p].tensor;
    for (int64_t i = 0; t->grad && i < t->numel; i++) assert_true(t->grad[i] == 0.0f);
  }
}

static void pair_step(pair *pr, int step) {
  pair_grads(pr, step);
  pair_update(pr, step);
}

/* Rank 0 gathers the whole state: it equals B's (names, order, values). */
static void check_gathered(pair *pr) {
  pg_params full = {0};
  if (dist.rank == 0) assert_int_equal(pg_zero_full_state(&pr->z, &full), PG_OK);
  assert_int_equal(pg_zero_gather_state(&pr->z, dist.rank == 0 ? &full : NULL), PG_OK);
  if (dist.rank == 0) {
    assert_same(&full, &pr->opt.state, "gathered state", -1);
    for (int p = 0; p < full.count; p++) assert_true(pg_same_shape(full.items[p].tensor, pr->opt.state.items[p].tensor));
  }
  pg_params_free(&full);
  assert_true(pr->z.opt.step == pr->opt.step);
  for (int k = 0; k < pr->opt.n_slots; k++) assert_true(pr->z.opt.slots[k].skipped == pr->opt.slots[k].skipped);
}

/* Each rank holds its range's share: kinds x (end - begin) elements, 1/K
 * of the trainable elements (those outside the reducer's buffer included)
 * to within one per kind; summed over ranks, the plain optimizer's state. */
static void check_memory(pair *pr, int kinds) {
  const int64_t mine = pg_zero_state_numel(&pr->z);
  if (kinds > 0) {
    assert_int_equal(mine, kinds * (pr->z.end - pr->z.begin));
    const double share = (double)pg_params_numel(&pr->a, true) / dist.size;
    assert_true(fabs((double)mine - kinds * share) <= kinds);
  }
  double total = (double)mine;
  assert_int_equal(pg_dist_allreduce_sum(&dist, &total, 1), PG_OK);
  assert_true(total == (double)pg_params_numel(&pr->opt.state, false));
  if (dist.rank == 0)
    printf("state per rank: %lld of %lld elements (K = %d)\n", (long long)mine,
           (long long)pg_params_numel(&pr->opt.state, false), dist.size);
}

static void run_equality(const setup *s, int kinds) {
  pair pr;
  pair_init(&pr, s);
  for (int step = 0; step < 6; step++) pair_step(&pr, step);
  check_gathered(&pr);
  check_memory(&pr, kinds);
  pair_free(&pr);
}

static setup sgd_setup(void) {
  setup s = {.cfg = pg_optim_sgd(0.05)};
  s.cfg.momentum = 0.9;
  s.cfg.dampening = 0.1;
  s.cfg.weight_decay = 1e-2;
  s.groups[0] = pg_param_group_make(&s.cfg, "c.*");
  s.groups[0].frozen = true;
  s.groups[1] = pg_param_group_make(&s.cfg, "*.bias");
  s.groups[1].momentum = 0; /* no momentum buffer for the biases */
  s.groups[1].lr = 0.1;
  s.n_groups = 2;
  return s;
}

static void test_sgd_momentum(void **state) {
  (void)state;
  setup s = sgd_setup();
  run_equality(&s, 0);
  /* nesterov, every parameter with a buffer */
  setup n = {.cfg = pg_optim_sgd(0.02)};
  n.cfg.momentum = 0.8;
  n.cfg.nesterov = true;
  n.groups[0] = pg_param_group_make(&n.cfg, "c.*");
  n.groups[0].frozen = true;
  n.n_groups = 1;
  run_equality(&n, 1);
}

static void test_adam(void **state) {
  (void)state;
  setup s = {.cfg = pg_optim_adam(1e-2)};
  s.cfg.weight_decay = 1e-3; /* L2, added to the gradient */
  s.cfg.amsgrad = true;
  s.groups[0] = pg_param_group_make(&s.cfg, "c.*");
  s.groups[0].frozen = true;
  s.groups[1] = pg_param_group_make(&s.cfg, "norm.*");
  s.groups[1].lr = 3e-2;
  s.groups[1].betas[0] = 0.8;
  s.groups[1].betas[1] = 0.99;
  s.n_groups = 2;
  run_equality(&s, 3);
}

static setup adamw_setup(void) {
  setup s = {.cfg = pg_optim_adamw(2e-2)};
  s.cfg.decay_weights_only = true;
  s.groups[0] = pg_param_group_make(&s.cfg, "c.*");
  s.groups[0].frozen = true;
  s.groups[1] = pg_param_group_make(&s.cfg, "b.*");
  s.groups[1].lr = 5e-3;
  s.groups[1].weight_decay = 0.1;
  s.n_groups = 2;
  return s;
}

static void test_adamw_groups(void **state) {
  (void)state;
  setup s = adamw_setup();
  run_equality(&s, 2);
  /* a parameter frozen before the reducer: outside its buffer, its state
   * sharded after it; and MPI counts cut in pieces of 97 elements */
  s.pre_frozen = true;
  s.piece = 97;
  run_equality(&s, 2);
}

/* A parameter outside the reducer's buffer may not take part; errors of the
 * optimizer's init come back unchanged and leave the model as it was. */
static void test_errors(void **state) {
  (void)state;
  setup s = adamw_setup();
  s.pre_frozen = true;
  pair pr;
  pair_init(&pr, &s);
  assert_int_equal(pg_tensor_set_requires_grad(find(&pr.a, "emb"), true), PG_OK);
  const float before = pr.a.items[0].tensor->data[0];
  assert_int_equal(pg_zero_step(&pr.z), PG_ERR_STATE);
  assert_error_contains("parameter 'emb' takes part");
  assert_true(pr.a.items[0].tensor->data[0] == before);
  assert_true(pr.z.opt.step == 0);
  /* scatter: a missing entry, a wrong size */
  pg_params full;
  assert_int_equal(pg_zero_full_state(&pr.z, &full), PG_OK);
  pg_params shorter;
  pg_params_init(&shorter);
  for (int p = 1; p < full.count; p++)
    assert_non_null(pg_params_add(&shorter, PG_PARAM_BUFFER, full.items[p].tensor->ndim,
                                  full.items[p].tensor->shape, "%s", full.items[p].name));
  assert_int_equal(pg_zero_scatter_state(&pr.z, &shorter), PG_ERR_ARG);
  assert_error_contains("the full state has no entry 'a.weight.exp_avg'");
  pg_params_free(&shorter);
  pg_params wrong;
  pg_params_init(&wrong);
  for (int p = 0; p < full.count; p++)
    assert_non_null(pg_params_add(&wrong, PG_PARAM_BUFFER, PG_SHAPE(p == 2 ? 2 : full.items[p].tensor->numel),
                                  "%s", full.items[p].name));
  assert_int_equal(pg_zero_scatter_state(&pr.z, &wrong), PG_ERR_ARG);
  assert_error_contains("'a.bias.exp_avg' has 2 elements, its parameter 29");
  pg_params_free(&wrong);
  pg_params_free(&full);
  pair_free(&pr);

  /* a bad group: the optimizer's message; the data stays where it was */
  pg_params ps;
  make_model(&ps);
  pg_reducer red;
  assert_int_equal(pg_reducer_init(&red, &dist, &ps, 512), PG_OK);
  const float *where = ps.items[0].tensor->data;
  pg_optim_config cfg = pg_optim_adam(1e-3);
  pg_param_group g = pg_param_group_make(&cfg, "nothing.*");
  pg_zero z;
  assert_int_equal(pg_zero_init(&z, &red, &cfg, &g, 1), PG_ERR_ARG);
  assert_error_contains("param group 1: the pattern 'nothing.*' matches no trainable parameter");
  assert_true(ps.items[0].tensor->data == where);
  assert_true(ps.items[6].tensor->requires_grad);
  pg_reducer_free(&red);
  pg_params_free(&ps);
}

/* gather, scatter, gather: the same state; and training goes on equal. */
static void test_round_trip(void **state) {
  (void)state;
  setup s = {.cfg = pg_optim_adam(1e-2)};
  s.cfg.amsgrad = true;
  pair pr;
  pair_init(&pr, &s);
  for (int step = 0; step < 3; step++) pair_step(&pr, step);
  pg_params full, again;
  assert_int_equal(pg_zero_full_state(&pr.z, &full), PG_OK);
  assert_int_equal(pg_zero_full_state(&pr.z, &again), PG_OK);
  assert_int_equal(pg_zero_gather_state(&pr.z, &full), PG_OK);
  /* every rank gets rank 0's whole state, as from one checkpoint file */
  assert_int_equal(pg_dist_broadcast_params(&dist, &full), PG_OK);
  for (int j = 0; j < pr.z.opt.state.count; j++) pg_fill(pr.z.opt.state.items[j].tensor, 7.0f);
  assert_int_equal(pg_zero_scatter_state(&pr.z, &full), PG_OK);
  assert_int_equal(pg_zero_gather_state(&pr.z, &again), PG_OK);
  if (dist.rank == 0) assert_same(&again, &full, "state after gather, scatter, gather", -1);
  for (int step = 3; step < 5; step++) pair_step(&pr, step);
  check_gathered(&pr);
  pg_params_free(&full);
  pg_params_free(&again);
  pair_free(&pr);
}

/* ---- checkpoints across K ---- */

/* Rank 0's scratch folder, known to every rank (the characters travel as
 * floats). */
static char shared_dir[512];

static const char *shared_path(const char *name) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%s", shared_dir, name);
  return path;
}

static pg_status save(const char *path, pg_params *params, pg_params *state, const pg_optimizer *opt) {
  pg_kv kv;
  pg_kv_init(&kv);
  int64_t step = opt->step;
  pg_status st = pg_optimizer_to_kv(opt, &kv);
  pg_checkpoint ck = {.params = params, .optim_state = state, .optim_step = &step, .optim_config = &kv};
  st = st ? st : pg_checkpoint_save(path, &ck);
  pg_kv_free(&kv);
  return st;
}

/* The parameters, the state (into `state`), the step and the skipped counts. */
static void load(const char *path, pg_params *params, pg_params *state, pg_optimizer *opt) {
  pg_kv kv;
  pg_kv_init(&kv);
  pg_checkpoint ck = {.params = params, .optim_state = state, .optim_step = &opt->step, .optim_config = &kv};
  assert_int_equal(pg_checkpoint_load(path, &ck), PG_OK);
  assert_int_equal(pg_optimizer_check_kv(&kv, opt, NULL), PG_OK);
  assert_int_equal(pg_optimizer_restore_kv(opt, &kv), PG_OK);
  pg_kv_free(&kv);
}

/* A model resumed by a sharded optimizer over `d`: its own reducer. */
typedef struct {
  pg_params ps;
  pg_reducer red;
  pg_zero z;
} resumed;

static void resume_sharded(resumed *m, const pg_dist *d, const setup *s, const char *path) {
  make_model(&m->ps);
  for (int p = 0; p < m->ps.count; p++) pg_fill(m->ps.items[p].tensor, 0.5f);
  assert_int_equal(pg_reducer_init(&m->red, d, &m->ps, 512), PG_OK);
  assert_int_equal(pg_zero_init(&m->z, &m->red, &s->cfg, s->groups, s->n_groups), PG_OK);
  pg_params full;
  assert_int_equal(pg_zero_full_state(&m->z, &full), PG_OK);
  load(path, &m->ps, &full, &m->z.opt);
  assert_int_equal(pg_zero_scatter_state(&m->z, &full), PG_OK);
  pg_params_free(&full);
}

static void resumed_free(resumed *m) {
  pg_zero_free(&m->z);
  pg_reducer_free(&m->red);
  pg_params_free(&m->ps);
}

/* x takes step `step` with the reference pair's gradients and lr. */
static void follow(pg_params *x, const pair *pr, pg_optimizer *opt) {
  for (int p = 0; p < x->count; p++)
    assert_int_equal(pg_tensor_set_requires_grad(x->items[p].tensor,
                                                 pr->a.items[p].tensor->requires_grad),
                     PG_OK);
  copy_grads(x, &pr->b);
  opt->config.lr = pr->opt.config.lr;
}

/* Saved by K sharded ranks, resumed by one rank (sharded over a one-rank
 * communicator, and plain): both continue equal to the reference B. */
static void test_checkpoint_k_to_1(void **state) {
  (void)state;
  setup s = adamw_setup();
  pair pr;
  pair_init(&pr, &s);
  for (int step = 0; step < 3; step++) pair_step(&pr, step); /* b.bias sat out step 2 */
  pg_params full = {0};
  if (dist.rank == 0) assert_int_equal(pg_zero_full_state(&pr.z, &full), PG_OK);
  assert_int_equal(pg_zero_gather_state(&pr.z, &full), PG_OK);
  const char *path = shared_path("k_to_1.h5");
  pg_status st = dist.rank == 0 ? save(path, &pr.a, &full, &pr.z.opt) : PG_OK;
  assert_int_equal(pg_dist_agree(&dist, st), PG_OK);
  pg_params_free(&full);

  /* rank 0 resumes alone: C sharded over one rank, E plain */
  const pg_dist solo = {.rank = 0, .size = 1};
  resumed c;
  pg_params e;
  pg_optimizer oe;
  const bool root = dist.rank == 0;
  if (root) {
    resume_sharded(&c, &solo, &s, path);
    make_model(&e);
    assert_int_equal(pg_optimizer_init_groups(&oe, &e, &s.cfg, s.groups, s.n_groups), PG_OK);
    load(path, &e, &oe.state, &oe);
    assert_same(&c.ps, &pr.b, "parameters resumed on one rank", 3);
    assert_same(&oe.state, &pr.opt.state, "plain state resumed on one rank", 3);
    assert_true(c.z.opt.step == 3 && oe.step == 3);
    assert_true(c.z.opt.slots[4].skipped == 1 && oe.slots[4].skipped == 1); /* b.bias */
  }
  for (int step = 3; step < 6; step++) {
    pair_grads(&pr, step);
    if (root) {
      follow(&c.ps, &pr, &c.z.opt);
      follow(&e, &pr, &oe);
      assert_int_equal(pg_zero_step(&c.z), PG_OK);
      assert_int_equal(pg_optimizer_step(&oe), PG_OK);
    }
    pair_update(&pr, step);
    if (root) {
      assert_same(&c.ps, &pr.b, "resumed sharded on one rank", step);
      assert_same(&e, &pr.b, "resumed plain on one rank", step);
    }
  }
  if (root) {
    resumed_free(&c);
    pg_optimizer_free(&oe);
    pg_params_free(&e);
  }
  pair_free(&pr);
}

/* Saved by the plain optimizer (one process), resumed by K sharded ranks,
 * each loading the file: they continue equal to the plain one. */
static void test_checkpoint_1_to_k(void **state) {
  (void)state;
  setup s = sgd_setup();
  pair pr;
  pair_init(&pr, &s);
  for (int step = 0; step < 3; step++) pair_step(&pr, step);
  const char *path = shared_path("1_to_k.h5");
  pg_status st = dist.rank == 0 ? save(path, &pr.b, &pr.opt.state, &pr.opt) : PG_OK;
  assert_int_equal(pg_dist_agree(&dist, st), PG_OK);
  resumed d;
  resume_sharded(&d, &dist, &s, path);
  assert_same(&d.ps, &pr.b, "parameters resumed on K ranks", 3);
  for (int step = 3; step < 6; step++) {
    pair_grads(&pr, step);
    follow(&d.ps, &pr, &d.z.opt);
    assert_int_equal(pg_zero_step(&d.z), PG_OK);
    pair_update(&pr, step);
    assert_same(&d.ps, &pr.b, "resumed sharded on K ranks", step);
  }
  /* and its gathered state is the plain one's */
  pg_params full = {0};
  if (dist.rank == 0) assert_int_equal(pg_zero_full_state(&d.z, &full), PG_OK);
  assert_int_equal(pg_zero_gather_state(&d.z, &full), PG_OK);
  if (dist.rank == 0) assert_same(&full, &pr.opt.state, "state resumed on K ranks", 6);
  pg_params_free(&full);
  resumed_free(&d);
  pair_free(&pr);
}

static int group_setup(void **state) {
  (void)state;
  int bad = dist.rank == 0 ? pg_test_tmpdir_make("zero") : 0;
  float chars[sizeof shared_dir] = {0};
  if (dist.rank == 0 && !bad) {
    snprintf(shared_dir, sizeof shared_dir, "%s", pg_test_tmpdir());
    for (size_t i = 0; i < sizeof shared_dir; i++) chars[i] = (float)(unsigned char)shared_dir[i];
  }
  if (pg_dist_broadcast_floats(&dist, chars, (int64_t)sizeof shared_dir, 0)) return -1;
  for (size_t i = 0; i < sizeof shared_dir; i++) shared_dir[i] = (char)(unsigned char)chars[i];
  shared_dir[sizeof shared_dir - 1] = '\0';
  return bad;
}

static int group_teardown(void **state) {
  return dist.rank == 0 ? pg_test_tmpdir_remove(state) : 0;
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sgd_momentum),
      cmocka_unit_test(test_adam),
      cmocka_unit_test(test_adamw_groups),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_checkpoint_k_to_1),
      cmocka_unit_test(test_checkpoint_1_to_k),
  };
  return pg_test_mpi_group(&dist, &argc, &argv, tests, group_setup, group_teardown);
}
