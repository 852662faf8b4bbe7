/* Data-parallel training equals one process (docs/distributed.md). Under
 * `mpirun -n K` (the suite runs K = 2 and 4) rank 0 first trains alone
 * (no communicator: a plain run), then all K ranks train the same run at
 * the same global batch and seed; rank 0 compares the final parameters and
 * the loss curves: equal within float32 reduction-order tolerance, the
 * only difference being the order in which the gradient sum is added up.
 * Run alone (K = 1) it compares two plain runs, which must be identical.
 * For the tiny DiT (per-sample noise, timesteps and class dropout keyed by
 * the global sample index) and for the ViT classifier. And the DiT with its
 * optimizer state sharded (--shard-optimizer): bit for bit the run without,
 * and resumed across sharding and across K. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/data/synthetic.h"
#include "patchgrad/dist/dist.h"
#include "patchgrad/dit/trainer.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/vae/autoencode.h"
#include "patchgrad/vae/train.h"
#include "patchgrad/vit/classify.h"

#define STEPS 50
/* the largest relative difference of the final parameters accepted,
 * ||a - b|| / ||b|| (Adam's update divides by sqrt(v), which makes
 * reduction-order differences of ~1e-7 grow over the steps) */
#define TOLERANCE 1e-3
/* the loss curves: relative difference per logged row */
#define LOSS_TOLERANCE 1e-4

static pg_dist dist;
static char dir[256];

static void path_of(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

/* Every rank waits here (a sum over ranks is a barrier). */
static void barrier(void) {
  double one = 1;
  assert_int_equal(pg_dist_allreduce_sum(&dist, &one, 1), PG_OK);
  assert_true(one == (double)dist.size);
}

/* The folder all ranks share: named after the launcher's process, which
 * is every rank's parent. */
static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/pg_test_dp_%ld_%d", (long)getppid(), dist.size);
  int st = 0;
  if (dist.rank == 0) {
    mkdir(dir, 0755);
    pg_synthetic_opts so;
    pg_synthetic_opts_init(&so);
    so.count = 96;
    so.size = 8;
    so.classes = 4;
    char p[512];
    path_of(p, sizeof p, "train.h5");
    st |= pg_make_synthetic(&so, p) ? -1 : 0;
    so.seed = 1;
    so.count = 30; /* not divisible by 4: the validation shares differ in size */
    path_of(p, sizeof p, "val.h5");
    st |= pg_make_synthetic(&so, p) ? -1 : 0;
  }
  double one = 1;
  pg_dist_allreduce_sum(&dist, &one, 1);
  return st;
}

static int teardown(void **state) {
  (void)state;
  double one = 1;
  pg_dist_allreduce_sum(&dist, &one, 1);
  if (dist.rank == 0) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return -1;
  }
  return 0;
}

/* The relative difference of two parameter lists, ||a - b|| / ||b|| over
 * all their values; the largest per-tensor max |a - b| / max |b| is
 * printed. (The key part of the attention's qkv bias has a gradient that is
 * zero in exact arithmetic, softmax being blind to a shift shared by all
 * keys: there the gradient is rounding noise, which Adam scales up to
 * lr-sized steps, so that tensor's elements differ at the 1e-2 level
 * relative to its own tiny values, without changing what the model
 * computes.) */
static double rel_diff(const pg_params *a, const pg_params *b) {
  assert_int_equal(a->count, b->count);
  double d2 = 0, b2 = 0, worst = 0;
  const char *worst_name = "";
  for (int i = 0; i < a->count; i++) {
    const pg_tensor *x = a->items[i].tensor, *y = b->items[i].tensor;
    assert_string_equal(a->items[i].name, b->items[i].name);
    assert_int_equal(x->numel, y->numel);
    double scale = 0, diff = 0;
    for (int64_t k = 0; k < x->numel; k++) {
      const double dk = (double)x->data[k] - (double)y->data[k];
      scale = fmax(scale, fabs((double)y->data[k]));
      diff = fmax(diff, fabs(dk));
      d2 += dk * dk;
      b2 += (double)y->data[k] * (double)y->data[k];
    }
    if (scale > 0 && diff / scale > worst) {
      worst = diff / scale;
      worst_name = a->items[i].name;
    }
  }
  printf("# per tensor: the largest max|a - b| / max|b| is %.3g (%s)\n", worst, worst_name);
  return sqrt(d2 / b2);
}

/* Column `col` (0: step) of every row of a CSV log, into v; the row count. */
static int read_column(const char *path, int col, double *v, int cap) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[1024];
  int n = 0;
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  while (n < cap && fgets(line, sizeof line, f)) {
    char *p = line;
    for (int c = 0; c < col && p; c++) {
      p = strchr(p, ',');
      if (p) p++;
    }
    assert_non_null(p);
    v[n++] = strtod(p, NULL);
  }
  fclose(f);
  return n;
}

static double compare_logs(const char *one, const char *many, int col, const char *what, int rows) {
  double a[STEPS + 2], b[STEPS + 2];
  const int na = read_column(one, col, a, STEPS + 2), nb = read_column(many, col, b, STEPS + 2);
  assert_int_equal(na, nb);
  assert_true(na >= rows);
  double worst = 0;
  for (int i = 0; i < na; i++)
    if (a[i] != 0) worst = fmax(worst, fabs(a[i] - b[i]) / fabs(a[i])); /* 0: an empty field */
  printf("# %s with %d ranks: max relative difference of the %s curve over %d rows: %.3g\n",
         what, dist.size, what, na, worst);
  assert_true(worst <= LOSS_TOLERANCE);
  return worst;
}

static pg_train_opts dit_run(const char *out) {
  pg_train_opts o;
  pg_train_opts_init(&o);
  static char data[512], val[512];
  path_of(data, sizeof data, "train.h5");
  path_of(val, sizeof val, "val.h5");
  o.run.data_path = data;
  o.val_path = val;
  o.val_count = 30;
  o.model.hidden = 16;
  o.model.depth = 1;
  o.model.heads = 2;
  o.model.class_dropout = 0.25f;
  o.run.batch = 16;
  o.run.steps = STEPS;
  o.run.optim = pg_optim_adamw(1e-3);
  o.run.clip = 1.0;
  o.run.out_dir = out;
  o.run.log_every = 1;
  o.run.val_every = 10;
  o.run.ckpt_every = 0;
  o.run.quiet = true;
  o.sample_cols = 0;
  o.run.ema_decay = 0.9;
  o.run.seed = 7;
  return o;
}

static void load_dit(const char *ckpt, pg_dit *m) {
  pg_kv config;
  pg_kv_init(&config);
  pg_checkpoint c = {.config = &config};
  assert_int_equal(pg_checkpoint_load(ckpt, &c), PG_OK);
  pg_dit_config cfg;
  assert_int_equal(pg_dit_config_from_kv(&config, &cfg), PG_OK);
  pg_kv_free(&config);
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  assert_int_equal(pg_dit_init(m, &cfg, &rng), PG_OK);
  pg_checkpoint w = {.params = &m->params};
  assert_int_equal(pg_checkpoint_load(ckpt, &w), PG_OK);
}

static void test_dit_equals_one_process(void **state) {
  (void)state;
  char one[512], many[512];
  path_of(one, sizeof one, "dit1");
  path_of(many, sizeof many, "ditK");
  pg_train_result r;
  if (dist.rank == 0) {
    pg_train_opts o = dit_run(one);
    assert_int_equal(pg_train(&o, &r), PG_OK);
  }
  pg_train_opts o = dit_run(many);
  o.run.dist = &dist;
  const pg_status st = pg_train(&o, &r);
  if (st) fail_msg("rank %d: %s", dist.rank, pg_last_error());
  assert_int_equal(r.step, STEPS);
  if (dist.rank == 0) {
    char a[600], b[600];
    pg_dit m1, mk;
    snprintf(a, sizeof a, "%s/ckpt.h5", one);
    snprintf(b, sizeof b, "%s/ckpt.h5", many);
    load_dit(a, &m1);
    load_dit(b, &mk);
    const double worst = rel_diff(&mk.params, &m1.params);
    printf("# DiT, %d steps, %d ranks vs 1: relative parameter difference ||a - b|| / ||b|| %.3g\n", STEPS, dist.size, worst);
    if (dist.size == 1) assert_true(worst == 0);
    assert_true(worst <= TOLERANCE);
    pg_dit_free(&m1);
    pg_dit_free(&mk);
    snprintf(a, sizeof a, "%s/loss.csv", one);
    snprintf(b, sizeof b, "%s/loss.csv", many);
    compare_logs(a, b, 1, "DiT training loss", STEPS);
  }
  barrier();
}

/* The DiT run of the test below: blocks.* frozen, 10 steps. */
static pg_train_opts frozen_run(const char *out, pg_param_group *g) {
  pg_train_opts o = dit_run(out);
  o.run.steps = 10;
  *g = pg_param_group_make(&o.run.optim, "blocks.*");
  g->frozen = true;
  o.run.groups = g;
  o.run.n_groups = 1;
  return o;
}

/* A frozen param group under data parallelism: its tensors stay
 * bit-identical to their start on every rank, take no part in the gradient
 * reduction, and the run equals one process (there with one batch a step,
 * here with each rank's share as 2 accumulated micro-batches). */
static void test_frozen_group_is_not_reduced(void **state) {
  (void)state;
  char one[512], many[512];
  path_of(one, sizeof one, "frozen1");
  path_of(many, sizeof many, "frozenK");
  pg_train_result r;
  pg_param_group g;
  if (dist.rank == 0) {
    pg_train_opts o = frozen_run(one, &g);
    assert_int_equal(pg_train(&o, &r), PG_OK);
  }
  pg_train_opts o = frozen_run(many, &g);
  o.run.accum = 2;
  o.run.dist = &dist;
  const pg_status st = pg_train(&o, &r);
  if (st) fail_msg("rank %d: %s", dist.rank, pg_last_error());
  if (dist.rank == 0) {
    char a[600], b[600], init[600];
    pg_dit m1, mk, m0;
    snprintf(a, sizeof a, "%s/ckpt.h5", one);
    snprintf(b, sizeof b, "%s/ckpt.h5", many);
    snprintf(init, sizeof init, "%s/init.h5", many);
    load_dit(a, &m1);
    load_dit(b, &mk);
    load_dit(init, &m0);
    int64_t trained = 0;
    for (int i = 0; i < mk.params.count; i++) {
      const pg_param *p = &mk.params.items[i];
      if (!strncmp(p->name, "blocks.", 7))
        assert_memory_equal(p->tensor->data, m0.params.items[i].tensor->data, (size_t)p->tensor->numel * sizeof(float));
      else if (p->kind != PG_PARAM_BUFFER)
        trained += p->tensor->numel;
    }
    const double worst = rel_diff(&mk.params, &m1.params);
    printf("# DiT with blocks.* frozen, %d ranks with --accum 2 vs 1: relative parameter difference %.3g; %lld gradient elements "
           "reduced per step (the trained ones: %lld)\n", dist.size, worst, (long long)r.reduced_numel,
           (long long)trained);
    assert_true(worst <= TOLERANCE);
    if (dist.size > 1) assert_int_equal(r.reduced_numel, trained);
    pg_dit_free(&m1);
    pg_dit_free(&mk);
    pg_dit_free(&m0);
  }
  barrier();
}

/* ---- --shard-optimizer ---- */

/* The DiT run of the sharding tests: Adam with a frozen group and a group
 * with its own lr and no decay, `steps` steps in all, on all ranks (sharded
 * or not) or on rank 0 alone. */
typedef struct {
  pg_train_opts o;
  pg_param_group g[2];
} zero_run;

static void zero_run_make(zero_run *z, const char *out, int64_t steps, bool sharded, bool all_ranks) {
  z->o = dit_run(out);
  z->o.run.steps = steps;
  z->o.run.optim.weight_decay = 0.05;
  z->g[0] = pg_param_group_make(&z->o.run.optim, "x_embedder.*");
  z->g[0].frozen = true;
  z->g[1] = pg_param_group_make(&z->o.run.optim, "*.bias");
  z->g[1].lr = 3e-3;
  z->g[1].weight_decay = 0;
  z->o.run.groups = z->g;
  z->o.run.n_groups = 2;
  z->o.run.shard_optimizer = sharded;
  z->o.run.dist = all_ranks ? &dist : NULL;
}

/* Trains it (resuming from `resume` when given); on rank 0 alone when
 * all_ranks is false (the others skip it). Returns the optimizer state
 * elements this rank held. */
static int64_t zero_train(const char *out, int64_t steps, bool sharded, bool all_ranks, const char *resume) {
  if (!all_ranks && dist.rank > 0) return 0;
  zero_run z;
  zero_run_make(&z, out, steps, sharded, all_ranks);
  z.o.run.resume = resume;
  pg_train_result r;
  const pg_status st = pg_train(&z.o, &r);
  if (st) fail_msg("rank %d: %s", dist.rank, pg_last_error());
  assert_int_equal(r.step, steps);
  return r.optim_state_numel;
}

/* A run's final weights and optimizer state (read into an optimizer over
 * its groups, as the run built it). */
typedef struct {
  pg_dit m;
  pg_optimizer opt;
} zero_result;

static void zero_load(const char *out, zero_result *res) {
  char ckpt[600];
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", out);
  load_dit(ckpt, &res->m);
  zero_run z;
  zero_run_make(&z, out, 1, false, false);
  assert_int_equal(pg_optimizer_init_groups(&res->opt, &res->m.params, &z.o.run.optim, z.g, 2), PG_OK);
  int64_t step = 0;
  pg_checkpoint c = {.optim_state = &res->opt.state, .optim_step = &step};
  assert_int_equal(pg_checkpoint_load(ckpt, &c), PG_OK);
  res->opt.step = step;
}

static void zero_free(zero_result *res) {
  pg_optimizer_free(&res->opt);
  pg_dit_free(&res->m);
}

/* The relative differences of two runs' weights and optimizer states. */
static double zero_compare(const char *a, const char *b, const char *what) {
  zero_result x, y;
  zero_load(a, &x);
  zero_load(b, &y);
  assert_true(x.opt.step == y.opt.step);
  const double dp = rel_diff(&x.m.params, &y.m.params), ds = rel_diff(&x.opt.state, &y.opt.state);
  printf("# %s, %d ranks: relative difference of the parameters %.3g, of the optimizer state %.3g\n", what,
         dist.size, dp, ds);
  zero_free(&x);
  zero_free(&y);
  return fmax(dp, ds);
}

static void copy_file(const char *from, const char *to) {
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
  assert_int_equal(system(cmd), 0);
}

/* --shard-optimizer: the same run bit for bit (weights, optimizer state,
 * loss curve) as without it at the same K; its checkpoints are read by
 * unsharded runs and the reverse, at the same K (bit for bit again) and on
 * one rank (within the reduction-order tolerance of K ranks against one).
 * With one rank (the test run alone) the flag changes nothing. */
static void test_dit_shard_optimizer(void **state) {
  (void)state;
  enum { HALF = 10, ALL = 20 };
  char a[512], b[512], c[512], d[512], e[512], f[512], c10[600], log_a[600], log_b[600];
  path_of(a, sizeof a, "zeroA");
  path_of(b, sizeof b, "zeroB");
  path_of(c, sizeof c, "zeroC");
  path_of(d, sizeof d, "zeroD");
  path_of(e, sizeof e, "zeroE");
  path_of(f, sizeof f, "zeroF");
  snprintf(c10, sizeof c10, "%s/ckpt10.h5", c);
  /* A: unsharded, B: sharded, both straight to the end */
  const int64_t whole = zero_train(a, ALL, false, true, NULL);
  const int64_t part = zero_train(b, ALL, true, true, NULL);
  /* Adam: two kinds of state, each split to within one element */
  printf("# optimizer state per rank: %lld elements sharded over %d ranks, %lld not\n", (long long)part,
         dist.size, (long long)whole);
  assert_true(llabs(part * dist.size - whole) <= 2 * dist.size);
  /* C: sharded to the half, then unsharded to the end */
  zero_train(c, HALF, true, true, NULL);
  char ckpt[600];
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", c);
  if (dist.rank == 0) copy_file(ckpt, c10);
  barrier();
  zero_train(c, ALL, false, true, ckpt);
  /* D: unsharded to the half, then sharded to the end */
  zero_train(d, HALF, false, true, NULL);
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", d);
  zero_train(d, ALL, true, true, ckpt);
  /* E: C's sharded half resumed by rank 0 alone */
  zero_train(e, ALL, false, false, c10);
  /* F: rank 0 alone to the half, then all ranks sharded */
  zero_train(f, HALF, false, false, NULL);
  barrier();
  snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", f);
  zero_train(f, ALL, true, true, ckpt);
  if (dist.rank == 0) {
    assert_true(zero_compare(b, a, "sharded vs not") == 0);
    snprintf(log_a, sizeof log_a, "%s/loss.csv", a);
    snprintf(log_b, sizeof log_b, "%s/loss.csv", b);
    assert_true(compare_logs(log_a, log_b, 1, "DiT training loss, sharded vs not", ALL) == 0);
    assert_true(zero_compare(c, a, "sharded half, unsharded resume") == 0);
    assert_true(zero_compare(d, a, "unsharded half, sharded resume") == 0);
    /* one rank against K for half of the steps */
    const double one_rank = dist.size == 1 ? 0 : TOLERANCE;
    assert_true(zero_compare(e, a, "sharded half on K ranks, resumed on one") <= one_rank);
    assert_true(zero_compare(f, a, "half on one rank, resumed sharded on K") <= one_rank);
  }
  barrier();
}

static pg_classify_opts vit_run(const char *out) {
  pg_classify_opts o;
  pg_classify_opts_init(&o);
  static char data[512], val[512];
  path_of(data, sizeof data, "train.h5");
  path_of(val, sizeof val, "val.h5");
  o.run.data_path = data;
  o.val_path = val;
  o.val_count = 30;
  o.model.hidden = 16;
  o.model.depth = 1;
  o.model.heads = 2;
  o.run.batch = 16;
  o.run.steps = STEPS;
  o.run.epochs = 0;
  o.run.schedule.warmup_steps = 5;
  o.run.out_dir = out;
  o.run.log_every = 1;
  o.run.val_every = 10;
  o.run.quiet = true;
  o.run.seed = 3;
  return o;
}

static void test_vit_equals_one_process(void **state) {
  (void)state;
  char one[512], many[512];
  path_of(one, sizeof one, "vit1");
  path_of(many, sizeof many, "vitK");
  pg_classify_result r;
  if (dist.rank == 0) {
    pg_classify_opts o = vit_run(one);
    assert_int_equal(pg_classify_train(&o, &r), PG_OK);
  }
  pg_classify_opts o = vit_run(many);
  o.run.dist = &dist;
  const pg_status st = pg_classify_train(&o, &r);
  if (st) fail_msg("rank %d: %s", dist.rank, pg_last_error());
  assert_int_equal(r.step, STEPS);
  assert_int_equal(r.test.n, 30); /* every rank holds the global validation */
  if (dist.rank == 0) {
    char a[600], b[600];
    pg_vit m1, mk;
    snprintf(a, sizeof a, "%s/ckpt.h5", one);
    snprintf(b, sizeof b, "%s/ckpt.h5", many);
    assert_int_equal(pg_vit_load(a, &m1, NULL), PG_OK);
    assert_int_equal(pg_vit_load(b, &mk, NULL), PG_OK);
    const double worst = rel_diff(&mk.params, &m1.params);
    printf("# ViT, %d steps, %d ranks vs 1: relative parameter difference ||a - b|| / ||b|| %.3g\n", STEPS, dist.size, worst);
    if (dist.size == 1) assert_true(worst == 0);
    assert_true(worst <= TOLERANCE);
    pg_vit_free(&m1);
    pg_vit_free(&mk);
    snprintf(a, sizeof a, "%s/loss.csv", one);
    snprintf(b, sizeof b, "%s/loss.csv", many);
    compare_logs(a, b, 1, "ViT training loss", STEPS);
    compare_logs(a, b, 2, "ViT test loss", STEPS);
  }
  barrier();
}

static pg_vae_train_opts vae_run(const char *out) {
  pg_vae_train_opts o;
  pg_vae_train_opts_init(&o);
  static char data[512], val[512];
  path_of(data, sizeof data, "train.h5");
  path_of(val, sizeof val, "val.h5");
  o.run.data_path = data;
  o.val_path = val;
  o.model = (pg_vae_config){.patch_size = 4, .latent_channels = 2, .hidden = 16, .encoder_depth = 1,
                            .decoder_depth = 1, .heads = 2, .mlp_ratio = 2};
  o.run.batch = 16;
  o.run.steps = STEPS;
  o.run.epochs = 0;
  o.run.schedule.warmup_steps = 5;
  o.run.optim.lr = 5e-3;
  o.run.out_dir = out;
  o.run.log_every = 1;
  o.run.val_every = 10;
  o.run.quiet = true;
  o.run.seed = 5;
  o.sheet_per_class = 0;
  return o;
}

/* The VAE draws each sample's eps from its keyed generator, so K ranks
 * train what one process trains. */
static void test_vae_equals_one_process(void **state) {
  (void)state;
  char one[512], many[512];
  path_of(one, sizeof one, "vae1");
  path_of(many, sizeof many, "vaeK");
  pg_vae_train_result r;
  if (dist.rank == 0) {
    pg_vae_train_opts o = vae_run(one);
    assert_int_equal(pg_vae_train(&o, &r), PG_OK);
  }
  pg_vae_train_opts o = vae_run(many);
  o.run.dist = &dist;
  const pg_status st = pg_vae_train(&o, &r);
  if (st) fail_msg("rank %d: %s", dist.rank, pg_last_error());
  assert_int_equal(r.step, STEPS);
  if (dist.rank == 0) {
    char a[600], b[600];
    pg_vae m1, mk;
    snprintf(a, sizeof a, "%s/ckpt.h5", one);
    snprintf(b, sizeof b, "%s/ckpt.h5", many);
    assert_int_equal(pg_vae_load(a, &m1, NULL), PG_OK);
    assert_int_equal(pg_vae_load(b, &mk, NULL), PG_OK);
    const double worst = rel_diff(&mk.params, &m1.params);
    printf("# VAE, %d steps, %d ranks vs 1: relative parameter difference ||a - b|| / ||b|| %.3g\n", STEPS, dist.size, worst);
    if (dist.size == 1) assert_true(worst == 0);
    assert_true(worst <= TOLERANCE);
    pg_vae_free(&m1);
    pg_vae_free(&mk);
    snprintf(a, sizeof a, "%s/loss.csv", one);
    snprintf(b, sizeof b, "%s/loss.csv", many);
    compare_logs(a, b, 1, "VAE training loss", STEPS);
  }
  barrier();
}

/* The global batch must be divisible by the ranks: every rank fails with
 * the same message (no hang). */
static void test_batch_not_divisible(void **state) {
  (void)state;
  if (dist.size == 1) skip();
  char out[512];
  path_of(out, sizeof out, "bad");
  pg_train_opts o = dit_run(out);
  o.run.batch = 2 * dist.size + 1;
  o.run.dist = &dist;
  pg_train_result r;
  assert_int_not_equal(pg_train(&o, &r), PG_OK);
  assert_false(r.local_error);
  if (!strstr(pg_last_error(), "not divisible")) fail_msg("rank %d: %s", dist.rank, pg_last_error());
  char want[64];
  snprintf(want, sizeof want, "%d ranks", dist.size);
  assert_non_null(strstr(pg_last_error(), want));
  barrier();
}

int main(int argc, char **argv) {
  if (pg_dist_init(&dist, &argc, &argv)) {
    fprintf(stderr, "%s\n", pg_last_error());
    return 1;
  }
  pg_set_threads(1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dit_equals_one_process),
      cmocka_unit_test(test_vit_equals_one_process),
      cmocka_unit_test(test_vae_equals_one_process),
      cmocka_unit_test(test_frozen_group_is_not_reduced),
      cmocka_unit_test(test_dit_shard_optimizer),
      cmocka_unit_test(test_batch_not_divisible),
  };
  const int failed = cmocka_run_group_tests(tests, setup, teardown);
  pg_dist_finalize(&dist);
  return failed;
}
