/* The ViT example: softmax cross-entropy (values, finite differences,
 * stability, errors, PyTorch fixtures), the ViT itself (PyTorch fixtures for
 * both attention forms, finite differences through the whole model, the
 * class token's gradient, overfitting a batch to 100%), classifier
 * checkpoints, and the sample score (on real held-out latents it is the
 * classifier's accuracy). Data: synthetic shapes (io/synthetic.h), so
 * nothing needs to be installed. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc_count.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/gemm_engine.h"
#include "patchgrad/vit/classify.h"
#include "patchgrad/optim/clip.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/vit/score.h"
#include "patchgrad/data/synthetic.h"
#include "patchgrad/vit/vit.h"

/* ---- cross-entropy ---- */

static void test_cross_entropy_values(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  /* row 0: logits 0, ln 2 -> p = 1/3, 2/3; label 1 -> -ln(2/3) = ln 1.5.
   * row 1: logits 1, 1 -> p = 1/2, 1/2; label 0 -> ln 2. */
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(2, 2), (float[]){0, logf(2), 1, 1});
  pg_tensor *loss = pg_cross_entropy(ctx, x, (int64_t[]){1, 0});
  assert_non_null(loss);
  assert_int_equal(loss->ndim, 0);
  assert_close(loss->data, ((float[]){(float)((log(1.5) + log(2)) / 2)}), 1, 1e-7, 1e-6);
  /* label smoothing s: (1 - s) nll + s * mean_k(-log p_k) (PyTorch's rule) */
  pg_tensor *sm = pg_cross_entropy_smoothed(ctx, x, (int64_t[]){1, 0}, 0.2f);
  const double row0 = 0.8 * log(1.5) + 0.2 * (log(3) + log(1.5)) / 2, row1 = log(2);
  assert_close(sm->data, ((float[]){(float)((row0 + row1) / 2)}), 1, 1e-7, 1e-6);
  /* logits of huge magnitude stay finite and exact: the max is subtracted */
  pg_tensor *big = pg_from_array(ctx, PG_SHAPE(2, 3), (float[]){1000, 0, -1000, -5000, -5000, -4999});
  pg_tensor *lb = pg_cross_entropy(ctx, big, (int64_t[]){0, 2});
  const double want = (0 + log1p(2 * exp(-1))) / 2;
  assert_close(lb->data, ((float[]){(float)want}), 1, 1e-6, 1e-5);
  /* a confidently wrong row costs the logit gap */
  pg_tensor *wrong = pg_cross_entropy(ctx, big, (int64_t[]){2, 2});
  assert_true(isfinite(wrong->data[0]) && fabs(wrong->data[0] - (1000.0 + want)) < 1e-2);
  /* no sample: NaN, as PyTorch's mean over nothing */
  pg_tensor *none = pg_empty(ctx, PG_SHAPE(0, 4));
  assert_true(isnan(pg_cross_entropy(ctx, none, NULL)->data[0]));
  pg_ctx_free(ctx);
}

/* A -inf logit for a class other than the label: PyTorch's loss and
 * gradient are finite (F.cross_entropy([[0, -inf, 0]], [0]) = ln 2, the
 * gradient [-1/2, 0, 1/2]); the smoothing term must not turn 0 * -inf into
 * NaN. */
static void test_cross_entropy_minus_inf_logit(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_tensor_new(PG_SHAPE(1, 3), true);
  x->data[0] = 0;
  x->data[1] = -INFINITY;
  x->data[2] = 0;
  pg_tensor *loss = pg_cross_entropy(ctx, x, (int64_t[]){0});
  assert_non_null(loss);
  assert_close(loss->data, ((float[]){(float)log(2)}), 1, 1e-7, 1e-6);
  assert_int_equal(pg_backward(ctx, loss), PG_OK);
  assert_non_null(x->grad);
  assert_close(x->grad, ((float[]){-0.5f, 0, 0.5f}), 3, 1e-7, 1e-6);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

typedef struct {
  const int64_t *labels;
  float smoothing;
} ce_user;

static pg_tensor *ce_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  const ce_user *u = user;
  return pg_cross_entropy_smoothed(ctx, in[0], u->labels, u->smoothing);
}

static void test_cross_entropy_gradcheck(void **state) {
  (void)state;
  const int64_t labels[5] = {0, 3, 3, 1, 2};
  for (int s = 0; s < 2; s++) {
    pg_tensor *x = pg_test_randn(PG_SHAPE(5, 4), 2.0f, 7 + s);
    ce_user u = {labels, s ? 0.15f : 0.0f};
    pg_gradcheck_opts o = {.eps = 1e-3, .atol = 1e-4, .rtol = 1e-2};
    assert_gradcheck(ce_fn, &u, 1, &x, &o);
    pg_tensor_free(x);
  }
  /* the gradient is (softmax - one-hot) / N, and accumulates with another use */
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_test_randn(PG_SHAPE(2, 3), 1.0f, 3);
  pg_tensor *l1 = pg_cross_entropy(ctx, x, (int64_t[]){2, 0});
  pg_tensor *p = pg_softmax(ctx, x);
  float want[6];
  for (int i = 0; i < 6; i++) want[i] = 2 * (p->data[i] - (i == 2 || i == 3 ? 1.0f : 0.0f)) / 2;
  pg_tensor *twice = pg_add(ctx, l1, pg_cross_entropy(ctx, x, (int64_t[]){2, 0}));
  assert_int_equal(pg_backward(ctx, twice), PG_OK);
  assert_close(x->grad, want, 6, 1e-6, 1e-5);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
}

static void test_cross_entropy_errors(void **state) {
  (void)state;
  pg_ctx *ctx = pg_ctx_new(0);
  pg_tensor *x = pg_zeros(ctx, PG_SHAPE(3, 4));
  assert_null(pg_cross_entropy(ctx, x, (int64_t[]){0, 4, 1}));
  assert_error_contains("label 4 of sample 1 is outside [0, 4)");
  assert_null(pg_cross_entropy(ctx, x, (int64_t[]){0, 1, -1}));
  assert_error_contains("label -1 of sample 2");
  assert_null(pg_cross_entropy(ctx, pg_zeros(ctx, PG_SHAPE(12)), (int64_t[]){0}));
  assert_error_contains("logits must be [N, K]");
  assert_null(pg_cross_entropy(ctx, x, NULL));
  assert_error_contains("labels must not be NULL");
  assert_null(pg_cross_entropy_smoothed(ctx, x, (int64_t[]){0, 1, 2}, 1.5f));
  assert_error_contains("label_smoothing must be in [0, 1], got 1.5");
  /* a NULL input passes through without touching the message */
  pg_fail(PG_ERR_ARG, "earlier");
  assert_null(pg_cross_entropy(ctx, NULL, (int64_t[]){0}));
  assert_error_contains("earlier");
  pg_ctx_free(ctx);
}

/* ---- PyTorch fixtures (tools/gen_fixtures_vit.py) ---- */

static int run_command(const char *cmd, char *out, size_t cap) {
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t len = 0;
  char line[1024];
  if (out) out[0] = 0;
  while (fgets(line, sizeof line, p)) {
    fputs(line, stdout); /* for the test log */
    size_t n = strlen(line);
    if (out && len + n < cap) {
      memcpy(out + len, line, n + 1);
      len += n;
    }
  }
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_pytorch_fixtures(void **state) {
  (void)state;
  char cmd[2048], out[16384];
  snprintf(cmd, sizeof cmd, "%s/patchgrad check '%s' 2>&1", PG_BUILD_DIR, pg_test_data("vit_cases.h5"));
  assert_int_equal(run_command(cmd, out, sizeof out), 0);
  /* 6 cross-entropy cases and the ViT with each attention form */
  assert_non_null(strstr(out, "9 passed, 0 failed"));
}

/* ---- the model ---- */

static const pg_vit_config tiny = {.height = 4, .width = 6, .in_channels = 2, .patch_size = 2,
                                   .hidden = 8, .depth = 2, .heads = 2, .mlp_ratio = 2,
                                   .num_classes = 3};

static void test_parameter_names(void **state) {
  (void)state;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  for (int single = 0; single < 2; single++) {
    pg_vit_config c = tiny;
    c.single_head = single;
    pg_vit m;
    assert_int_equal(pg_vit_init(&m, &c, &rng), PG_OK);
    const char *common[] = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                            "blocks.0.norm1.weight", "blocks.1.norm2.bias", "blocks.1.mlp.fc1.weight",
                            "blocks.0.mlp.fc2.bias", "norm.weight", "norm.bias", "head.weight", "head.bias"};
    for (size_t i = 0; i < sizeof common / sizeof *common; i++) assert_non_null(pg_params_find(&m.params, common[i]));
    /* [1, 1 + T, h] with T = (4/2)(6/2) = 6 patches */
    const pg_tensor *pe = pg_params_find(&m.params, "pos_embed")->tensor;
    assert_int_equal(pe->shape[1], 7);
    if (single) {
      assert_non_null(pg_params_find(&m.params, "blocks.0.attn.key.weight"));
      assert_non_null(pg_params_find(&m.params, "blocks.1.attn.value.weight"));
      assert_null(pg_params_find(&m.params, "blocks.0.attn.qkv.weight"));
    } else {
      assert_non_null(pg_params_find(&m.params, "blocks.0.attn.qkv.weight"));
      assert_non_null(pg_params_find(&m.params, "blocks.1.attn.proj.bias"));
      assert_null(pg_params_find(&m.params, "blocks.0.attn.key.weight"));
    }
    pg_vit_free(&m);
  }
  /* bad configs name the field */
  pg_vit m;
  pg_vit_config bad = tiny;
  bad.patch_size = 4;
  assert_int_not_equal(pg_vit_init(&m, &bad, &rng), PG_OK);
  assert_error_contains("patch_size 4 must be >= 1 and divide the input 4 x 6");
  bad = tiny;
  bad.heads = 3;
  assert_int_not_equal(pg_vit_init(&m, &bad, &rng), PG_OK);
  assert_error_contains("hidden 8 must be a positive multiple of heads 3");
  bad.single_head = true; /* the single head spans all of h: heads is not used */
  assert_int_equal(pg_vit_init(&m, &bad, &rng), PG_OK);
  pg_vit_free(&m);
  bad = tiny;
  bad.num_classes = 0;
  assert_int_not_equal(pg_vit_init(&m, &bad, &rng), PG_OK);
  assert_error_contains("num_classes must be >= 1, got 0");
  /* a wrong input shape */
  assert_int_equal(pg_vit_init(&m, &tiny, &rng), PG_OK);
  pg_ctx *ctx = pg_ctx_new(0);
  assert_null(pg_vit_forward(ctx, &m, pg_zeros(ctx, PG_SHAPE(2, 6, 4, 2))));
  assert_error_contains("input x has shape [2, 6, 4, 2], the model takes [B, 4, 6, 2]");
  pg_ctx_free(ctx);
  pg_vit_free(&m);
}

/* m: the model of config c with single-head or multi-head attention, its
 * weights drawn from rng seeded with seed (the test draws on from rng). */
static void init_vit(pg_vit *m, pg_vit_config c, bool single_head, pg_rng *rng, uint64_t seed) {
  c.single_head = single_head;
  pg_rng_seed(rng, seed);
  assert_int_equal(pg_vit_init(m, &c, rng), PG_OK);
}

typedef struct {
  pg_vit *m;
  const int64_t *labels;
} vit_user;

static pg_tensor *vit_loss_fn(pg_ctx *ctx, pg_tensor *const *in, void *user) {
  vit_user *u = user;
  return pg_cross_entropy(ctx, pg_vit_forward(ctx, u->m, in[0]), u->labels);
}

static void test_gradcheck_whole_model(void **state) {
  (void)state;
  for (int single = 0; single < 2; single++) {
    pg_vit m;
    pg_rng rng;
    init_vit(&m, tiny, single, &rng, 4);
    /* larger weights than the init, so that every path carries signal */
    for (int i = 0; i < m.params.count; i++) pg_fill_normal(m.params.items[i].tensor, 0.0f, 0.4f, &rng);
    pg_tensor *x = pg_test_randn(PG_SHAPE(2, 4, 6, 2), 1.0f, 5);
    const int64_t labels[2] = {2, 0};
    vit_user u = {&m, labels};
    const char *names[] = {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.norm1.weight",
                           single ? "blocks.1.attn.query.weight" : "blocks.1.attn.qkv.weight",
                           "blocks.1.mlp.fc1.bias", "norm.bias", "head.weight"};
    pg_tensor *inputs[9] = {x};
    for (int i = 0; i < 8; i++) inputs[i + 1] = pg_params_find(&m.params, names[i])->tensor;
    pg_gradcheck_opts o = {.eps = 1e-2, .atol = 1e-3, .rtol = 2e-2};
    assert_gradcheck(vit_loss_fn, &u, 9, inputs, &o);
    pg_tensor_free(x);
    pg_vit_free(&m);
  }
}

/* With the model's own init, one backward gives the class token (and the
 * position table's class row) a gradient: the head reads that token. */
static void test_class_token_gradient(void **state) {
  (void)state;
  for (int single = 0; single < 2; single++) {
    pg_vit m;
    pg_rng rng;
    init_vit(&m, tiny, single, &rng, 9);
    pg_ctx *ctx = pg_ctx_new(0);
    pg_tensor *x = pg_normal(ctx, PG_SHAPE(3, 4, 6, 2), 0.0f, 1.0f, &rng);
    pg_tensor *loss = pg_cross_entropy(ctx, pg_vit_forward(ctx, &m, x), (int64_t[]){0, 1, 2});
    assert_non_null(loss);
    assert_int_equal(pg_backward(ctx, loss), PG_OK);
    const pg_tensor *cls = m.cls_token, *pe = m.pos_embed;
    double norm = 0;
    for (int64_t i = 0; i < cls->numel; i++) norm += (double)cls->grad[i] * cls->grad[i];
    printf("%s: |grad cls_token| = %.3e\n", single ? "single head" : "multi-head", sqrt(norm));
    assert_true(sqrt(norm) > 1e-6);
    /* the class token and position row 0 meet only in their sum: equal gradients */
    assert_close(pe->grad, cls->grad, m.cfg.hidden, 1e-7, 1e-5);
    pg_ctx_free(ctx);
    pg_vit_free(&m);
  }
}

/* A tiny ViT learns 16 random inputs with random labels by heart. */
static void test_overfit_small_batch(void **state) {
  (void)state;
  for (int single = 0; single < 2; single++) {
    const pg_vit_config c = {.height = 4, .width = 4, .in_channels = 3, .patch_size = 2, .hidden = 16,
                             .depth = 1, .heads = 2, .mlp_ratio = 2, .num_classes = 4};
    pg_vit m;
    pg_rng rng;
    init_vit(&m, c, single, &rng, 11);
    pg_optimizer opt;
    pg_optim_config oc = pg_optim_adamw(3e-3);
    assert_int_equal(pg_optimizer_init(&opt, &m.params, &oc), PG_OK);
    pg_tensor *x = pg_test_randn(PG_SHAPE(16, 4, 4, 3), 1.0f, 12);
    x->requires_grad = false;
    int64_t labels[16];
    for (int i = 0; i < 16; i++) labels[i] = (int64_t)pg_rng_below(&rng, 4);
    pg_ctx *ctx = pg_ctx_new(0);
    float first = 0, last = 0;
    int64_t correct = 0;
    for (int step = 0; step < 300; step++) {
      pg_ctx_reset(ctx);
      pg_tensor *logits = pg_vit_forward(ctx, &m, x);
      pg_tensor *loss = pg_cross_entropy(ctx, logits, labels);
      assert_non_null(loss);
      if (step == 0) first = loss->data[0];
      last = loss->data[0];
      correct = 0;
      for (int i = 0; i < 16; i++) correct += pg_argmax(logits->data + i * 4, 4) == labels[i];
      assert_int_equal(pg_backward(ctx, loss), PG_OK);
      assert_int_equal(pg_optimizer_step(&opt), PG_OK);
      pg_optimizer_zero_grad(&opt);
    }
    printf("overfit (%s): loss %.4f -> %.5f, %lld/16 right\n", single ? "single head" : "multi-head",
           first, last, (long long)correct);
    assert_int_equal(correct, 16);
    assert_true(last < 0.05f * first);
    pg_ctx_free(ctx);
    pg_tensor_free(x);
    pg_optimizer_free(&opt);
    pg_vit_free(&m);
  }
}

/* After a warm-up step, a training step of the default ViT (forward,
 * cross-entropy, backward, clipping, AdamW; batch 128) and prediction
 * batches take all their memory from the context's arena: the allocation
 * counter linked into this program (cli/alloc_count.c; compiled out under
 * the sanitizers) counts no malloc over steps 2..4 of either attention form.
 * (Matrix products small enough for pg_gemm_serial, as in a toy-sized
 * model, enter BLIS's one-thread OpenMP region, for which libgomp allocates
 * a team each call.) On the BLIS engine: oneDNN's products allocate inside
 * every call (autograd/gemm_engine.h). */
static void test_steps_allocate_nothing(void **state) {
  (void)state;
  const pg_gemm_engine engine = pg_gemm_engine_get();
  assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_BLIS), PG_OK);
  for (int single = 0; single < 2; single++) {
    pg_classify_opts defaults;
    pg_classify_opts_init(&defaults);
    pg_vit_config c = defaults.model;
    c.height = c.width = 16;
    c.in_channels = 4;
    c.num_classes = 10;
    pg_vit m;
    pg_rng rng;
    init_vit(&m, c, single, &rng, 13);
    pg_optimizer opt;
    pg_optim_config oc = pg_optim_adamw(1e-3);
    assert_int_equal(pg_optimizer_init(&opt, &m.params, &oc), PG_OK);
    enum { B = 128 };
    pg_tensor *x = pg_test_randn(PG_SHAPE(B, 16, 16, 4), 1.0f, 14);
    x->requires_grad = false;
    int64_t labels[B];
    for (int i = 0; i < B; i++) labels[i] = i % 10;
    static float probs[B * 10];
    pg_ctx *ctx = pg_ctx_new(0);
    long allocs_after_first = 0;
    bool ok = true;
    for (int step = 0; step < 4; step++) {
      pg_ctx_reset(ctx);
      pg_tensor *loss = pg_cross_entropy(ctx, pg_vit_forward(ctx, &m, x), labels);
      ok &= loss && pg_backward(ctx, loss) == PG_OK;
      ok &= isfinite(pg_clip_grad_norm(&m.params, 1.0, 2.0));
      ok &= pg_optimizer_step(&opt) == PG_OK;
      pg_optimizer_zero_grad(&opt);
      ok &= pg_vit_predict(ctx, &m, x->data, B, 64, probs) == PG_OK;
      if (step == 0) allocs_after_first = pg_alloc_count();
    }
    const long allocs = pg_alloc_count() - allocs_after_first; /* before any assertion */
    assert_true(ok);
    if (pg_get_threads() > 1) assert_int_equal(allocs, 0);
    else printf("one thread: BLIS enters a one-thread OpenMP region per product; %ld allocations\n", allocs);
    pg_ctx_free(ctx);
    pg_tensor_free(x);
    pg_optimizer_free(&opt);
    pg_vit_free(&m);
  }
  assert_int_equal(pg_gemm_engine_set(engine), PG_OK);
}

/* ---- training, checkpoints and the score, on synthetic shapes ---- */

typedef struct {
  char dir[256], train[300], test[300], fresh[300], ckpt[300], samples[300], unlabelled[300];
} files;

static void make_files(files *f) {
  snprintf(f->dir, sizeof f->dir, "/tmp/pg_test_vit_XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->train, sizeof f->train, "%s/train.h5", f->dir);
  snprintf(f->test, sizeof f->test, "%s/test.h5", f->dir);
  snprintf(f->fresh, sizeof f->fresh, "%s/fresh.h5", f->dir);
  snprintf(f->ckpt, sizeof f->ckpt, "%s/ckpt.h5", f->dir);
  snprintf(f->samples, sizeof f->samples, "%s/samples.h5", f->dir);
  snprintf(f->unlabelled, sizeof f->unlabelled, "%s/unlabelled.h5", f->dir);
  pg_synthetic_opts so;
  pg_synthetic_opts_init(&so);
  so.size = 8;
  so.channels = 4;
  so.classes = 5;
  struct { const char *path; int64_t count; uint64_t seed; } sets[] = {
      {f->train, 1000, 1}, {f->test, 300, 2}, {f->fresh, 300, 3}};
  for (int i = 0; i < 3; i++) {
    so.count = sets[i].count;
    so.seed = sets[i].seed;
    assert_int_equal(pg_make_synthetic(&so, sets[i].path), PG_OK);
  }
}

static void remove_files(files *f) {
  const char *names[] = {"train.h5", "test.h5", "fresh.h5", "ckpt.h5", "loss.csv", "loss.png", "samples.h5", "unlabelled.h5"};
  char path[512];
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    snprintf(path, sizeof path, "%s/%s", f->dir, names[i]);
    remove(path);
  }
  rmdir(f->dir);
}

/* Writes latents and labels as `patchgrad sample` writes its grid.h5. */
static void write_samples_file(const char *path, const float *x, const int64_t *labels, int64_t n,
                               int64_t h, int64_t w, int64_t c) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  assert_int_equal(pg_h5_write_floats(f, "samples", 4, (int64_t[]){n, h, w, c}, x, 1), PG_OK);
  if (labels) assert_int_equal(pg_h5_write_int64(f, "labels", 1, &n, labels), PG_OK);
  assert_int_equal(pg_h5_set_attr_double(f, "cfg_scale", 1.0), PG_OK);
  H5Fclose(f);
}

static void test_train_and_score(void **state) {
  (void)state;
  /* The score below must equal the validation during training exactly, yet
   * they run the classifier in batches of different sizes (50 and 64
   * rows). BLIS computes each row of a product the same way whatever the
   * row count; under the auto engine (autograd/gemm_engine.h) a product of
   * another row count is another key, which may be oneDNN's, and oneDNN's
   * rounding may depend on the row count. So this part runs on BLIS. */
  const pg_gemm_engine engine = pg_gemm_engine_get();
  assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_BLIS), PG_OK);
  files f;
  make_files(&f);
  pg_classify_opts o;
  pg_classify_opts_init(&o);
  o.run.data_path = f.train;
  o.val_path = f.test;
  o.model = (pg_vit_config){.patch_size = 2, .hidden = 32, .depth = 2, .heads = 2, .mlp_ratio = 2};
  o.run.optim.lr = 2e-3;
  o.run.schedule.warmup_steps = 20;
  o.run.batch = 50;
  o.run.epochs = 8;
  o.run.out_dir = f.dir;
  o.run.quiet = true;
  pg_classify_result r;
  assert_int_equal(pg_classify_train(&o, &r), PG_OK);
  printf("synthetic shapes: %lld steps, train accuracy %.3f, test accuracy %.3f (confidence %.3f)\n",
         (long long)r.step, r.train_accuracy, r.test.accuracy, r.test.mean_confidence);
  assert_int_equal(r.step, 8 * 20);
  assert_int_equal(r.test.n, 300);
  assert_true(r.test.accuracy > 0.8); /* 5 classes: chance is 0.2 */

  /* the checkpoint brings back the same classifier */
  pg_vit m;
  pg_vit_data_info data;
  assert_int_equal(pg_vit_load(f.ckpt, &m, &data), PG_OK);
  assert_string_equal(data.source, "synthetic");
  assert_int_equal(m.cfg.num_classes, 5);
  assert_int_equal(m.cfg.height, 8);
  pg_latents_info info;
  float *x;
  int64_t *labels, n;
  assert_int_equal(pg_classify_read_latents(f.test, 0, &info, &x, &labels, &n), PG_OK);
  assert_int_equal(pg_vit_check_data(&data, &info, f.test), PG_OK);
  pg_ctx *ctx = pg_ctx_new(0);
  float *probs = malloc((size_t)(n * 5) * sizeof *probs);
  assert_int_equal(pg_vit_predict(ctx, &m, x, n, 64, probs), PG_OK);
  pg_classify_stats s;
  assert_int_equal(pg_classify_stats_of(probs, labels, n, 5, &s), PG_OK);
  assert_true(fabs(s.accuracy - r.test.accuracy) < 1e-12);

  /* real test latents written as a samples file with their true labels
   * score exactly the classifier's test accuracy ... */
  write_samples_file(f.samples, x, labels, n, 8, 8, 4);
  pg_score_result sr;
  assert_int_equal(pg_score_samples(ctx, &m, f.samples, 64, &sr), PG_OK);
  assert_int_equal(sr.all.n, 300);
  assert_true(fabs(sr.all.accuracy - r.test.accuracy) < 1e-12);
  assert_true(fabs(sr.all.mean_confidence - r.test.mean_confidence) < 1e-9);
  assert_true(fabs(sr.cfg_scale - 1.0) < 1e-12);
  int64_t sum_n = 0, sum_agree = 0;
  for (int64_t k = 0; k < 5; k++) sum_n += sr.per_class_n[k], sum_agree += sr.per_class_agree[k];
  assert_int_equal(sum_n, 300);
  assert_int_equal(sum_agree, sr.all.agree);
  pg_score_result_free(&sr);
  /* ... and about it on other real samples (a latent file is accepted too) */
  assert_int_equal(pg_score_samples(ctx, &m, f.fresh, 64, &sr), PG_OK);
  printf("score of fresh real samples %.3f vs test accuracy %.3f\n", sr.all.accuracy, r.test.accuracy);
  assert_true(fabs(sr.all.accuracy - r.test.accuracy) < 0.08);
  pg_score_result_free(&sr);
  /* a samples file whose labels say the wrong class scores low */
  for (int64_t i = 0; i < n; i++) labels[i] = (labels[i] + 1) % 5;
  write_samples_file(f.samples, x, labels, n, 8, 8, 4);
  assert_int_equal(pg_score_samples(ctx, &m, f.samples, 64, &sr), PG_OK);
  assert_true(sr.all.accuracy < 0.2);
  pg_score_result_free(&sr);

  /* errors name the file and the value */
  labels[7] = 5;
  write_samples_file(f.samples, x, labels, n, 8, 8, 4);
  assert_int_not_equal(pg_score_samples(ctx, &m, f.samples, 64, &sr), PG_OK);
  assert_error_contains("label 5 of sample 7 is outside the classifier's classes [0, 5)");
  write_samples_file(f.unlabelled, x, NULL, n, 8, 8, 4);
  assert_int_not_equal(pg_score_samples(ctx, &m, f.unlabelled, 64, &sr), PG_OK);
  assert_error_contains("has no 'labels'");
  write_samples_file(f.samples, x, labels, 10, 8, 4, 8);
  assert_int_not_equal(pg_score_samples(ctx, &m, f.samples, 64, &sr), PG_OK);
  assert_error_contains("'samples' has shape [10, 8, 4, 8], the classifier takes [N, 8, 8, 4]");
  /* a shape that looks channels first, without the layout attribute */
  write_samples_file(f.samples, x, labels, 10, 4, 8, 8);
  assert_int_not_equal(pg_score_samples(ctx, &m, f.samples, 64, &sr), PG_OK);
  assert_error_contains("'samples' has shape [10, 4, 8, 8] and no attribute 'layout': it looks channels first");
  x[3 * 256 + 5] = NAN;
  labels[7] = 0;
  write_samples_file(f.samples, x, labels, n, 8, 8, 4);
  assert_int_not_equal(pg_score_samples(ctx, &m, f.samples, 64, &sr), PG_OK);
  assert_error_contains("sample 3 holds a non-finite value");
  pg_latents_info off = info;
  off.mean += 1.0;
  assert_int_not_equal(pg_vit_check_data(&data, &off, "other.h5"), PG_OK);
  assert_error_contains("other.h5 holds latents normalised with mean");

  free(probs);
  free(x);
  free(labels);
  pg_ctx_free(ctx);
  pg_vit_free(&m);
  assert_int_equal(pg_gemm_engine_set(engine), PG_OK);

  /* the command line: eval and score print their numbers, errors exit 1 */
  char cmd[2048], out[8192];
  snprintf(cmd, sizeof cmd, "%s/patchgrad classify eval --ckpt %s --data %s 2>&1", PG_BUILD_DIR, f.ckpt, f.test);
  assert_int_equal(run_command(cmd, out, sizeof out), 0);
  assert_non_null(strstr(out, "accuracy"));
  snprintf(cmd, sizeof cmd, "%s/patchgrad score --classifier %s --samples %s 2>&1", PG_BUILD_DIR, f.ckpt, f.test);
  assert_int_equal(run_command(cmd, out, sizeof out), 0);
  assert_non_null(strstr(out, "agreement"));
  assert_non_null(strstr(out, "mean confidence"));
  snprintf(cmd, sizeof cmd, "%s/patchgrad score --classifier %s --samples %s 2>&1", PG_BUILD_DIR, f.ckpt,
           f.unlabelled);
  assert_int_equal(run_command(cmd, out, sizeof out), 1);
  assert_non_null(strstr(out, "has no 'labels'"));
  snprintf(cmd, sizeof cmd, "%s/patchgrad score --classifier %s --samples %s 2>&1", PG_BUILD_DIR, f.test,
           f.test);
  assert_int_equal(run_command(cmd, out, sizeof out), 1);
  snprintf(cmd, sizeof cmd, "%s/patchgrad classify fit 2>&1", PG_BUILD_DIR);
  assert_int_equal(run_command(cmd, out, sizeof out), 2);
  remove_files(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cross_entropy_values),
      cmocka_unit_test(test_cross_entropy_minus_inf_logit),
      cmocka_unit_test(test_cross_entropy_gradcheck),
      cmocka_unit_test(test_cross_entropy_errors),
      cmocka_unit_test(test_pytorch_fixtures),
      cmocka_unit_test(test_parameter_names),
      cmocka_unit_test(test_gradcheck_whole_model),
      cmocka_unit_test(test_class_token_gradient),
      cmocka_unit_test(test_overfit_small_batch),
      cmocka_unit_test(test_steps_allocate_nothing),
      cmocka_unit_test(test_train_and_score),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
