/* The training loop of train/run.h with a model of the test's own, plugged
 * in through callbacks only: a line y = a u + b (two parameters) fitted to
 * samples of a latent file whose two channels hold u and 3 u - 1. It must
 * fit, log, validate at each epoch's end, save a checkpoint that holds the
 * fitted line, stop after the current step when the stop flag is set (and
 * save), and resume from that checkpoint to exactly the run that was not
 * stopped. */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/train/run.h"
#include "alloc_count.h"

enum { N = 64, VAL = 16 };

/* u uniform in [-1, 1], target 3 u - 1: [n, 1, 1, 2] */
static void line_data(float *x, int64_t n, uint64_t seed) {
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  for (int64_t i = 0; i < n; i++) {
    const float u = 2.0f * pg_rng_uniform(&rng) - 1.0f;
    x[2 * i] = u;
    x[2 * i + 1] = 3.0f * u - 1.0f;
  }
}

static int setup_dir(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("train_run")) return -1;
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = N;
  info.height = info.width = 1;
  info.channels = 2;
  snprintf(info.source, sizeof info.source, "line");
  float x[2 * N];
  line_data(x, N, 1);
  return pg_latents_save(pg_test_tmp("line.h5"), &info, x, NULL) ? -1 : 0;
}

/* ---- the model: its state and callbacks ---- */

typedef struct {
  pg_params params;
  pg_tensor *a, *b;
  bool built;
  float val_x[2 * VAL];          /* held-out samples */
  int64_t stop_at;               /* the loss callback sets *stop on this call (0: never) */
  volatile sig_atomic_t *stop;
  int64_t loss_calls, finish_calls, events[PG_RUN_DONE + 1];
  float a_at_finish;             /* the weight the closing callback saw */
  long allocs[64];               /* the process's allocation count at each loss call */
} line_model;

static pg_status line_build(void *self, const pg_latents_info *info, pg_rng *rng, pg_params **params) {
  (void)rng;
  line_model *m = self;
  if (info->channels != 2 || info->has_labels)
    return pg_fail(PG_ERR_ARG, "line: wants [n, 1, 1, 2] latents without labels");
  pg_params_init(&m->params);
  m->a = pg_params_add(&m->params, PG_PARAM_WEIGHT, PG_SHAPE(1), "a");
  m->b = pg_params_add(&m->params, PG_PARAM_BIAS, PG_SHAPE(1), "b");
  if (!m->a || !m->b) return pg_last_status();
  pg_fill(m->a, 0.0f);
  pg_fill(m->b, 0.0f);
  m->built = true;
  *params = &m->params;
  return PG_OK;
}

/* mse(a u + b, target) over the n samples of x [n, 1, 1, 2] */
static pg_tensor *line_mse(line_model *m, pg_ctx *ctx, pg_tensor *x, int64_t n) {
  pg_tensor *x2 = pg_reshape(ctx, x, 2, (int64_t[]){n, 2});
  pg_tensor *u = pg_slice(ctx, x2, 1, 0, 1), *target = pg_slice(ctx, x2, 1, 1, 2);
  return pg_mse(ctx, pg_add(ctx, pg_mul(ctx, u, m->a), m->b), target);
}

static pg_tensor *line_loss(void *self, pg_ctx *ctx, const pg_batch *b, pg_rng *rng, double *metrics) {
  (void)rng;
  line_model *m = self;
  if (m->loss_calls < 64) m->allocs[m->loss_calls] = pg_alloc_count();
  if (++m->loss_calls == m->stop_at) *m->stop = 1; /* as a signal would, mid-step */
  metrics[0] += (double)b->count;                   /* one per sample: the mean is 1 */
  return line_mse(m, ctx, b->x, b->count);
}

static pg_status line_validate(void *self, pg_ctx *ctx, double *values) {
  line_model *m = self;
  pg_tensor *x = pg_from_array(ctx, 4, (int64_t[]){VAL, 1, 1, 2}, m->val_x);
  pg_tensor *loss = line_mse(m, ctx, x, VAL);
  if (!loss) return pg_last_status();
  values[0] = loss->data[0];
  return PG_OK;
}

static pg_status line_config(void *self, pg_kv *config) {
  (void)self;
  return pg_kv_set_string(config, "model", "line");
}

static pg_status line_check_resume(void *self, const pg_kv *config, const char *path) {
  (void)self;
  const char *model = NULL;
  if (pg_kv_get_string(config, "model", &model) != 1 || strcmp(model, "line"))
    return pg_fail(PG_ERR_ARG, "line: %s is not a checkpoint of a line", path);
  return PG_OK;
}

static pg_status line_finish(void *self, pg_run *run) {
  (void)run;
  line_model *m = self;
  m->finish_calls++;
  m->a_at_finish = m->a->data[0];
  return PG_OK;
}

static void line_report(void *self, const pg_run *run, pg_run_event event) {
  (void)run;
  ((line_model *)self)->events[event]++;
}

static pg_run_model line_of(line_model *m) {
  line_data(m->val_x, VAL, 2);
  return (pg_run_model){
      .name = "line",
      .self = m,
      .n_metrics = 1,
      .n_val = 1,
      .build = line_build,
      .check_resume = line_check_resume,
      .loss = line_loss,
      .validate = line_validate,
      .config = line_config,
      .finish = line_finish,
      .report = line_report,
  };
}

static pg_run_opts opts_of(const char *out, int64_t steps) {
  return (pg_run_opts){
      .data_path = pg_test_tmp("line.h5"),
      .out_dir = out,
      .batch = 16,
      .steps = steps,
      .seed = 3,
      .optim = pg_optim_sgd(0.2),
      .schedule = pg_schedule_make(PG_SCHEDULE_CONSTANT, 0),
      .log_every = 2,
      .val_every = 0, /* each epoch: 4 steps of 16 */
  };
}

/* The checkpoint at path holds m's a and b (bit for bit) at `step`. */
static void assert_checkpoint_holds(const char *path, const line_model *m, int64_t step) {
  pg_params ps;
  pg_params_init(&ps);
  pg_tensor *a = pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(1), "a");
  pg_tensor *b = pg_params_add(&ps, PG_PARAM_BIAS, PG_SHAPE(1), "b");
  int64_t saved_step = -1;
  pg_checkpoint ck = {.params = &ps, .step = &saved_step};
  if (pg_checkpoint_load(path, &ck)) fail_msg("%s", pg_last_error());
  assert_int_equal(saved_step, step);
  assert_true(a->data[0] == m->a->data[0] && b->data[0] == m->b->data[0]);
  pg_params_free(&ps);
}

static int count_lines(const char *path, int *with_val) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[512];
  int n = 0;
  *with_val = 0;
  while (fgets(line, sizeof line, f)) {
    n++;
    const char *c2 = strchr(line, ',') ? strchr(strchr(line, ',') + 1, ',') : NULL;
    if (n > 1 && c2 && c2[1] != ',') (*with_val)++;
  }
  fclose(f);
  return n;
}

static void test_line_fits_through_callbacks(void **state) {
  (void)state;
  line_model m = {0};
  const pg_run_model model = line_of(&m);
  const pg_run_opts o = opts_of(pg_test_tmp("fit"), 200);
  pg_run_result r;
  assert_int_equal(pg_run_training(&o, &model, &r), PG_OK);
  assert_int_equal(r.step, 200);
  assert_false(r.stopped);
  assert_float_equal(m.a->data[0], 3.0f, 1e-3);
  assert_float_equal(m.b->data[0], -1.0f, 1e-3);
  assert_true(r.train_loss < 1e-6);
  assert_true(r.val[0] < 1e-6);
  assert_float_equal(r.metrics[0], 1.0, 1e-12); /* a per-sample metric of 1 */
  /* the callbacks: one loss per step, one closing call, the progress events */
  assert_int_equal(m.loss_calls, 200);
  assert_int_equal(m.finish_calls, 1);
  assert_int_equal(m.events[PG_RUN_START], 1);
  assert_int_equal(m.events[PG_RUN_ROW], 200 / 2);
  assert_int_equal(m.events[PG_RUN_DONE], 1);
  assert_int_equal(m.events[PG_RUN_STOPPED], 0);
  /* loss.csv: the header, a row every 2 steps, validation every epoch (4 steps) */
  int with_val;
  assert_int_equal(count_lines(pg_test_tmp("fit/loss.csv"), &with_val), 1 + 200 / 2);
  assert_int_equal(with_val, 200 / 4);
  /* the checkpoint holds the fitted line at step 200 */
  assert_checkpoint_holds(pg_test_tmp("fit/ckpt.h5"), &m, 200);
  pg_params_free(&m.params);

  /* with an EMA, the closing callback sees the EMA weights, and the model
   * gets its own back afterwards */
  line_model e = {0};
  const pg_run_model em = line_of(&e);
  pg_run_opts eo = opts_of(pg_test_tmp("ema"), 12);
  eo.ema_decay = 0.5;
  assert_int_equal(pg_run_training(&eo, &em, &r), PG_OK);
  assert_int_equal(e.finish_calls, 1);
  assert_true(e.a_at_finish != e.a->data[0]);
  pg_params_free(&e.params);
}

static void test_stop_flag_saves_after_the_step(void **state) {
  (void)state;
  volatile sig_atomic_t stop = 0;
  line_model m = {.stop_at = 7, .stop = &stop};
  const pg_run_model model = line_of(&m);
  pg_run_opts o = opts_of(pg_test_tmp("stopped"), 20);
  o.stop = &stop;
  pg_run_result r;
  assert_int_equal(pg_run_training(&o, &model, &r), PG_OK);
  /* the flag came during step 7: that step completes, is saved, and the run ends */
  assert_true(r.stopped);
  assert_int_equal(r.step, 7);
  assert_int_equal(m.loss_calls, 7);
  assert_int_equal(m.finish_calls, 0);
  assert_int_equal(m.events[PG_RUN_STOPPED], 1);
  assert_int_equal(m.events[PG_RUN_DONE], 0);
  assert_checkpoint_holds(pg_test_tmp("stopped/ckpt.h5"), &m, 7);
  pg_params_free(&m.params);

  /* resumed to step 20, it is the run that was never stopped */
  line_model rm = {0}, full = {0};
  const pg_run_model resumed = line_of(&rm), whole = line_of(&full);
  pg_run_opts ro = opts_of(pg_test_tmp("stopped"), 20);
  char ckpt[512];
  snprintf(ckpt, sizeof ckpt, "%s", pg_test_tmp("stopped/ckpt.h5"));
  ro.resume = ckpt;
  assert_int_equal(pg_run_training(&ro, &resumed, &r), PG_OK);
  assert_int_equal(r.step, 20);
  assert_int_equal(rm.loss_calls, 13);
  const pg_run_opts fo = opts_of(pg_test_tmp("whole"), 20);
  assert_int_equal(pg_run_training(&fo, &whole, &r), PG_OK);
  assert_true(rm.a->data[0] == full.a->data[0] && rm.b->data[0] == full.b->data[0]);
  /* and its log is the whole run's (the stopped run's rows, then its own) */
  int v1, v2;
  assert_int_equal(count_lines(pg_test_tmp("stopped/loss.csv"), &v1), count_lines(pg_test_tmp("whole/loss.csv"), &v2));
  assert_int_equal(v1, v2);
  pg_params_free(&rm.params);
  pg_params_free(&full.params);
}

static void test_errors_name_the_model(void **state) {
  (void)state;
  line_model m = {0};
  const pg_run_model model = line_of(&m);
  pg_run_result r;
  /* a diverging step: the loss is not finite, nothing is saved */
  pg_run_opts o = opts_of(pg_test_tmp("nan"), 50);
  o.optim = pg_optim_sgd(1e30);
  assert_int_equal(pg_run_training(&o, &model, &r), PG_ERR_STATE);
  assert_error_contains("line: the loss is");
  assert_false(pg_test_exists(pg_test_tmp("nan/ckpt.h5")));
  pg_params_free(&m.params);
  /* a checkpoint of another model does not resume */
  line_model m2 = {0};
  pg_run_model other = line_of(&m2);
  other.check_resume = NULL;
  pg_run_opts ro = opts_of(pg_test_tmp("other"), 5);
  char ckpt[512];
  snprintf(ckpt, sizeof ckpt, "%s", pg_test_tmp("fit/ckpt.h5"));
  ro.resume = ckpt;
  assert_int_equal(pg_run_training(&ro, &other, &r), PG_ERR_ARG);
  assert_error_contains("cannot resume");
  if (m2.built) pg_params_free(&m2.params);
}

/* --accum: each step runs the loss on `accum` micro-batches of the batch;
 * the fit is the one-batch fit within float rounding, and after the first
 * steps a step allocates nothing (no log rows, files or validation in
 * between: each loss call sees the same allocation count). */
static void test_accumulation_allocates_nothing(void **state) {
  (void)state;
  line_model one = {0}, four = {0};
  pg_run_model m1 = line_of(&one), m4 = line_of(&four);
  m1.validate = m4.validate = NULL;
  pg_run_opts o = opts_of(NULL, 12);
  o.log_every = 1000;
  o.quiet = true;
  pg_run_result r;
  assert_int_equal(pg_run_training(&o, &m1, &r), PG_OK);
  o.accum = 4;
  assert_int_equal(pg_run_training(&o, &m4, &r), PG_OK);
  assert_int_equal(one.loss_calls, 12);
  assert_int_equal(four.loss_calls, 48);
  printf("# line fit, 12 SGD steps of batch 16, --accum 4 vs 1: a differs by %.3g, b by %.3g\n",
         fabs(four.a->data[0] - one.a->data[0]), fabs(four.b->data[0] - one.b->data[0]));
  assert_float_equal(four.a->data[0], one.a->data[0], 1e-6);
  assert_float_equal(four.b->data[0], one.b->data[0], 1e-6);
  if (pg_alloc_count_active())
    for (int i = 8; i < 48; i++) assert_int_equal(four.allocs[i], four.allocs[8]);
  pg_params_free(&one.params);
  pg_params_free(&four.params);
}

/* The progress line fits the terminal: fields dropped from the right,
 * never wider than width - 1. */
static void test_progress_line_fits(void **state) {
  (void)state;
  const char *f[] = {"step 12/100", "loss 0.1234", "lr 1.00e-04", "9.9 steps/s"};
  char buf[128];
  assert_string_equal(pg_run_fit_line(buf, sizeof buf, f, 4, 80), "step 12/100  loss 0.1234  lr 1.00e-04  9.9 steps/s");
  assert_string_equal(pg_run_fit_line(buf, sizeof buf, f, 4, 40), "step 12/100  loss 0.1234  lr 1.00e-04");
  assert_string_equal(pg_run_fit_line(buf, sizeof buf, f, 4, 37), "step 12/100  loss 0.1234");
  assert_string_equal(pg_run_fit_line(buf, sizeof buf, f, 4, 8), "step 12");
  setenv("COLUMNS", "57", 1);
  if (!isatty(2)) assert_int_equal(pg_run_terminal_width(), 57);
  setenv("COLUMNS", "wide", 1);
  if (!isatty(2)) assert_int_equal(pg_run_terminal_width(), 80);
  unsetenv("COLUMNS");
}

int main(void) {
  pg_set_threads(1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_line_fits_through_callbacks),
      cmocka_unit_test(test_stop_flag_saves_after_the_step),
      cmocka_unit_test(test_errors_name_the_model),
      cmocka_unit_test(test_accumulation_allocates_nothing),
      cmocka_unit_test(test_progress_line_fits),
  };
  return cmocka_run_group_tests(tests, setup_dir, pg_test_tmpdir_remove);
}
