/* The float32 engine choice (autograd/gemm_engine.h): oneDNN's product
 * against float64 and BLIS for every transpose, padded strides, alpha and
 * beta; the BLIS engine bit for bit BLIS; the decisions file's round trip,
 * its lines of another CPU and its corrupt lines, a decision another
 * process wrote under the lock; the setting, its names and errors, and
 * PG_GEMM_ENGINE and --gemm-engine through the command. The decisions go to
 * a scratch folder (PG_CACHE_DIR), never to the user's cache. Without
 * oneDNN only what concerns BLIS and the refusals runs. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/blas_internal.h"
#include "patchgrad/autograd/gemm_decisions.h"
#include "patchgrad/autograd/gemm_engine.h"
#include "patchgrad/autograd/rng.h"
#include "patchgrad/autograd/runtime_internal.h"

static bool have_onednn;

/* A fresh decisions folder under the test's scratch folder, named `name`,
 * made the cache folder, with everything the process remembered
 * forgotten. Returns the decisions file's path (static). */
static const char *fresh_cache(const char *name) {
  static char file[600];
  char dir[512];
  snprintf(dir, sizeof dir, "%s", pg_test_tmp(name));
  mkdir(dir, 0755);
  setenv("PG_CACHE_DIR", dir, 1);
  pg_gemm_decisions_forget();
  snprintf(file, sizeof file, "%s/gemm-engine", dir);
  return file;
}

static int setup(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("gemm_engine")) return -1;
  fresh_cache("first");
  pg_set_threads(2);
  have_onednn = pg_gemm_engine_set(PG_GEMM_ENGINE_ONEDNN) == PG_OK;
  return pg_gemm_engine_set(PG_GEMM_ENGINE_AUTO) == PG_OK ? 0 : -1;
}

static int teardown(void **state) {
  pg_gemm_engine_set(PG_GEMM_ENGINE_AUTO);
  return pg_test_tmpdir_remove(state);
}

static void fill(float *x, int64_t n, pg_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)pg_rng_normal(rng);
}

/* One product's operands with padded strides: A stored [m, k] (or [k, m])
 * with row stride lda > its width, likewise B, and C [m, n] with ldc > n,
 * its padding filled with a sentinel that must survive. */
typedef struct {
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  float *a, *b, *c0, *c;
} operands;

#define SENTINEL 12345.0f

static operands make(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta, uint64_t seed) {
  operands o = {.ta = ta, .tb = tb, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta};
  o.lda = (ta ? m : k) + 3;
  o.ldb = (tb ? k : n) + 5;
  o.ldc = n + 7;
  const int64_t na = (ta ? k : m) * o.lda, nb = (tb ? n : k) * o.ldb, nc = m * o.ldc;
  o.a = malloc(sizeof(float) * (size_t)na);
  o.b = malloc(sizeof(float) * (size_t)nb);
  o.c0 = malloc(sizeof(float) * (size_t)nc);
  o.c = malloc(sizeof(float) * (size_t)nc);
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  fill(o.a, na, &rng);
  fill(o.b, nb, &rng);
  fill(o.c0, nc, &rng);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = n; j < o.ldc; j++) o.c0[i * o.ldc + j] = SENTINEL;
  return o;
}

static void unmake(operands *o) {
  free(o->a);
  free(o->b);
  free(o->c0);
  free(o->c);
}

static void reset_c(operands *o) { memcpy(o->c, o->c0, sizeof(float) * (size_t)(o->m * o->ldc)); }

static float a_at(const operands *o, int64_t i, int64_t p) { return o->ta ? o->a[p * o->lda + i] : o->a[i * o->lda + p]; }
static float b_at(const operands *o, int64_t p, int64_t j) { return o->tb ? o->b[j * o->ldb + p] : o->b[p * o->ldb + j]; }

/* c against the product in float64 within float32's bound: (k + 2) u
 * (|alpha| sum_p |a_ip b_pj| + |beta c_ij|), u = 2^-24 (k additions, the
 * scaling, the sum with beta C); the padding untouched. */
static void assert_product(const operands *o, const char *what) {
  const double u = 1.0 / 16777216.0;
  for (int64_t i = 0; i < o->m; i++) {
    for (int64_t j = 0; j < o->n; j++) {
      double exact = 0, mag = 0;
      for (int64_t p = 0; p < o->k; p++) {
        const double t = (double)a_at(o, i, p) * b_at(o, p, j);
        exact += t;
        mag += fabs(t);
      }
      const double c0 = o->beta != 0.0f ? o->c0[i * o->ldc + j] : 0.0;
      exact = o->alpha * exact + o->beta * c0;
      const double bound = (double)(o->k + 2) * u * (fabs(o->alpha) * mag + fabs(o->beta * c0));
      const double got = o->c[i * o->ldc + j];
      if (!(fabs(got - exact) <= bound))
        fail_msg("%s: C[%lld, %lld] = %.9g, exact %.9g, bound %.3g", what, (long long)i, (long long)j, got, exact,
                 bound);
    }
    for (int64_t j = o->n; j < o->ldc; j++)
      if (o->c[i * o->ldc + j] != SENTINEL) fail_msg("%s: C's padding at [%lld, %lld] was written", what, (long long)i, (long long)j);
  }
}

static void run_pg_gemm(operands *o) {
  pg_gemm(o->ta, o->tb, o->m, o->n, o->k, o->alpha, o->a, o->lda, o->b, o->ldb, o->beta, o->c, o->ldc);
}

/* 2 m n k = 2.42 MFLOP: covered (>= PG_GEMM_ENGINE_MIN_FLOPS). */
enum { M = 67, N = 45, K = 401 };

static void test_onednn_matches_blis(void **state) {
  (void)state;
  assert_true(2 * (int64_t)M * N * K >= PG_GEMM_ENGINE_MIN_FLOPS);
  if (!have_onednn) skip();
  const float alphas[] = {1.0f, -0.625f}, betas[] = {0.0f, 1.0f, 0.75f};
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int ai = 0; ai < 2; ai++)
        for (int bi = 0; bi < 3; bi++) {
          char what[96];
          snprintf(what, sizeof what, "trans %d%d alpha %g beta %g", ta, tb, (double)alphas[ai], (double)betas[bi]);
          operands o = make(ta, tb, M, N, K, alphas[ai], betas[bi], (uint64_t)(1 + ta + 2 * tb + 4 * ai + 8 * bi));
          /* oneDNN, twice: run to run the same bits */
          assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_ONEDNN), PG_OK);
          const pg_gemm_engine_stats before = pg_gemm_engine_get_stats();
          reset_c(&o);
          run_pg_gemm(&o);
          const pg_gemm_engine_stats after = pg_gemm_engine_get_stats();
          assert_int_equal(after.onednn_products - before.onednn_products, 1);
          assert_int_equal(after.fallbacks, before.fallbacks);
          assert_product(&o, what);
          float *first = malloc(sizeof(float) * (size_t)(M * o.ldc));
          memcpy(first, o.c, sizeof(float) * (size_t)(M * o.ldc));
          reset_c(&o);
          run_pg_gemm(&o);
          assert_memory_equal(first, o.c, sizeof(float) * (size_t)(M * o.ldc));
          /* BLIS within the same bound (and so within twice it of oneDNN) */
          reset_c(&o);
          pg_gemm_float32(o.ta, o.tb, o.m, o.n, o.k, o.alpha, o.a, o.lda, o.b, o.ldb, o.beta, o.c, o.ldc);
          assert_product(&o, what);
          free(first);
          unmake(&o);
        }
  assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_AUTO), PG_OK);
}

/* The BLIS engine: pg_gemm and pg_gemm_auto are pg_gemm_float32 bit for
 * bit, whatever the decisions say. */
static void test_blis_engine_is_blis(void **state) {
  (void)state;
  assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_BLIS), PG_OK);
  assert_int_equal(pg_gemm_engine_get(), PG_GEMM_ENGINE_BLIS);
  for (int t = 0; t < 4; t++) {
    operands o = make(t & 1, t >> 1, M, N, K, 1.0f, t == 3 ? 1.0f : 0.0f, 40 + t);
    const size_t bytes = sizeof(float) * (size_t)(M * o.ldc);
    float *want = malloc(bytes);
    memcpy(want, o.c0, bytes);
    pg_gemm_float32(o.ta, o.tb, M, N, K, o.alpha, o.a, o.lda, o.b, o.ldb, o.beta, want, o.ldc);
    const pg_gemm_engine_stats before = pg_gemm_engine_get_stats();
    reset_c(&o);
    run_pg_gemm(&o);
    assert_memory_equal(o.c, want, bytes);
    reset_c(&o);
    pg_gemm_auto(o.ta, o.tb, M, N, K, o.alpha, o.a, o.lda, o.b, o.ldb, o.beta, o.c, o.ldc);
    assert_memory_equal(o.c, want, bytes);
    const pg_gemm_engine_stats after = pg_gemm_engine_get_stats();
    assert_int_equal(after.onednn_products, before.onednn_products);
    assert_int_equal(after.blis_products - before.blis_products, 2);
    assert_int_equal(after.keys_timed, before.keys_timed);
    free(want);
    unmake(&o);
  }
  assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_AUTO), PG_OK);
}

static pg_gemm_key key_of(const operands *o) {
  return (pg_gemm_key){.trans_a = o->ta, .trans_b = o->tb, .alpha_one = o->alpha == 1.0f,
                       .beta_zero = o->beta == 0.0f, .threads = pg_get_threads(), .m = o->m, .n = o->n,
                       .k = o->k, .lda = o->lda, .ldb = o->ldb, .ldc = o->ldc};
}

/* The file's text (static, truncated at 64 KiB). */
static const char *file_text(const char *path) {
  static char text[65536];
  text[0] = '\0';
  FILE *f = fopen(path, "r");
  if (!f) return text;
  const size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = '\0';
  fclose(f);
  return text;
}

static void append_text(const char *path, const char *text) {
  FILE *f = fopen(path, "a");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* This CPU's name as the file writes it. */
static const char *cpu_name(void) {
  static char cpu[128];
  pg_cpu_model(cpu, sizeof cpu);
  for (char *p = cpu; *p; p++)
    if (*p == '"') *p = '\'';
  return cpu;
}

/* A line of the file for o's key on cpu. */
static const char *line_for(const operands *o, const char *cpu, const char *engine) {
  static char line[512];
  snprintf(line, sizeof line,
           "v1 cpu=\"%s\" trans=%c%c m=%lld n=%lld k=%lld lda=%lld ldb=%lld ldc=%lld alpha1=%d beta0=%d threads=%d "
           "engine=%s blis=1.5 onednn=2.5\n",
           cpu, o->ta ? 't' : 'n', o->tb ? 't' : 'n', (long long)o->m, (long long)o->n, (long long)o->k,
           (long long)o->lda, (long long)o->ldb, (long long)o->ldc, o->alpha == 1.0f, o->beta == 0.0f,
           pg_get_threads(), engine);
  return line;
}

/* auto: the first product of a key is timed and written to the file, the
 * second is not timed, its result is the chosen engine's bit for bit, and
 * a fresh load reads the decision back. */
static void test_auto_decides_once_and_keeps(void **state) {
  (void)state;
  if (!have_onednn) skip();
  const char *path = fresh_cache("round_trip");
  operands o = make(false, true, M, N, K, 1.0f, 0.0f, 7);
  const pg_gemm_key key = key_of(&o);
  pg_gemm_decision d;
  assert_false(pg_gemm_decision_find(&key, &d));
  const pg_gemm_engine_stats s0 = pg_gemm_engine_get_stats();
  reset_c(&o);
  run_pg_gemm(&o);
  const pg_gemm_engine_stats s1 = pg_gemm_engine_get_stats();
  assert_int_equal(s1.keys_timed - s0.keys_timed, 1);
  assert_int_equal(s1.keys_not_kept, s0.keys_not_kept);
  assert_string_equal(pg_gemm_engine_cache(), path);
  assert_true(pg_gemm_decision_find(&key, &d));
  assert_true(d.blis_gflops > 0 && d.onednn_gflops > 0);
  /* the margin: oneDNN only when more than 5% faster */
  assert_int_equal(d.onednn, d.blis_gflops < 0.95 * d.onednn_gflops);
  assert_int_equal(s1.onednn_products - s0.onednn_products, d.onednn ? 1 : 0);
  assert_product(&o, "auto");
  const size_t bytes = sizeof(float) * (size_t)(M * o.ldc);
  float *first = malloc(bytes);
  memcpy(first, o.c, bytes);
  reset_c(&o);
  run_pg_gemm(&o);
  assert_int_equal(pg_gemm_engine_get_stats().keys_timed, s1.keys_timed);
  assert_memory_equal(o.c, first, bytes);
  /* bit for bit the engine it names */
  assert_int_equal(pg_gemm_engine_set(d.onednn ? PG_GEMM_ENGINE_ONEDNN : PG_GEMM_ENGINE_BLIS), PG_OK);
  reset_c(&o);
  run_pg_gemm(&o);
  assert_memory_equal(o.c, first, bytes);
  assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_AUTO), PG_OK);
  /* one line for the key in the file, which a fresh load reads back */
  const char *text = file_text(path);
  char key_text[160];
  snprintf(key_text, sizeof key_text, "trans=nt m=%d n=%d k=%d lda=%lld ldb=%lld ldc=%lld alpha1=1 beta0=1 threads=2",
           M, N, K, (long long)o.lda, (long long)o.ldb, (long long)o.ldc);
  const char *at = strstr(text, key_text);
  assert_non_null(at);
  assert_null(strstr(at + 1, key_text));
  pg_gemm_decisions_forget();
  const int64_t loaded = pg_gemm_engine_get_stats().keys_loaded;
  pg_gemm_decision again;
  assert_true(pg_gemm_decision_find(&key, &again));
  assert_int_equal(again.onednn, d.onednn);
  assert_int_equal(pg_gemm_engine_get_stats().keys_loaded - loaded, 1);
  reset_c(&o);
  run_pg_gemm(&o);
  assert_memory_equal(o.c, first, bytes);
  assert_int_equal(pg_gemm_engine_get_stats().keys_timed, s1.keys_timed);
  free(first);
  unmake(&o);
}

/* Lines of another CPU and corrupt lines are ignored; a well-formed line of
 * this CPU is obeyed even where timing might disagree; a cut last line
 * gets its newline before the next decision is appended. */
static void test_file_other_cpu_and_corrupt_lines(void **state) {
  (void)state;
  if (!have_onednn) skip();
  const char *path = fresh_cache("corrupt");
  operands other = make(true, false, M, N, K, 1.0f, 0.0f, 8);   /* decided only for another CPU */
  operands mine = make(true, true, M, N, K, 1.0f, 1.0f, 9);     /* decided for this CPU: onednn */
  operands later = make(false, false, M, N, K, 1.0f, 0.0f, 10); /* decided in this test */
  char text[4096] = "# a comment\n\ngarbage\n";
  strcat(text, line_for(&other, "Some Other CPU 9000", "onednn"));
  strcat(text, "v1 cpu=\"x\" trans=nn m=-3\n");
  /* this CPU's lines, corrupt: a bad engine, a negative size, a trailer */
  char bad[600];
  snprintf(bad, sizeof bad, "%s", line_for(&other, cpu_name(), "fast"));
  strcat(text, bad);
  snprintf(bad, sizeof bad, "%s", line_for(&other, cpu_name(), "onednn"));
  char *m_field = strstr(bad, " m=");
  assert_non_null(m_field);
  m_field[3] = '-';
  strcat(text, bad);
  snprintf(bad, sizeof bad, "%s", line_for(&other, cpu_name(), "onednn"));
  bad[strlen(bad) - 1] = '\0';
  strcat(bad, " trailing words\n");
  strcat(text, bad);
  /* a line longer than any the file can hold */
  char longline[700];
  memset(longline, 'x', sizeof longline - 2);
  longline[sizeof longline - 2] = '\n';
  longline[sizeof longline - 1] = '\0';
  strcat(text, longline);
  strcat(text, line_for(&mine, cpu_name(), "onednn"));
  /* the last line cut short by a process killed while writing */
  strcat(text, "v1 cpu=\"x\" trans=n");
  append_text(path, text);

  pg_gemm_decision d;
  assert_false(pg_gemm_decision_find(&(pg_gemm_key){0}, &d)); /* loads the file */
  const pg_gemm_key other_key = key_of(&other), mine_key = key_of(&mine);
  assert_false(pg_gemm_decision_find(&other_key, &d));
  assert_true(pg_gemm_decision_find(&mine_key, &d));
  assert_true(d.onednn);
  assert_true(d.blis_gflops == 1.5 && d.onednn_gflops == 2.5);
  /* the product obeys the file: oneDNN, no timing */
  const pg_gemm_engine_stats s0 = pg_gemm_engine_get_stats();
  reset_c(&mine);
  run_pg_gemm(&mine);
  const pg_gemm_engine_stats s1 = pg_gemm_engine_get_stats();
  assert_int_equal(s1.onednn_products - s0.onednn_products, 1);
  assert_int_equal(s1.keys_timed, s0.keys_timed);
  assert_product(&mine, "from the file");
  /* a new decision is appended on a line of its own */
  reset_c(&later);
  run_pg_gemm(&later);
  assert_int_equal(pg_gemm_engine_get_stats().keys_timed - s1.keys_timed, 1);
  assert_non_null(strstr(file_text(path), "v1 cpu=\"x\" trans=n\nv1 cpu="));
  pg_gemm_decisions_forget();
  const pg_gemm_key later_key = key_of(&later);
  assert_true(pg_gemm_decision_find(&later_key, &d));
  assert_true(pg_gemm_decision_find(&mine_key, &d));
  assert_false(pg_gemm_decision_find(&other_key, &d));
  unmake(&other);
  unmake(&mine);
  unmake(&later);
}

/* A key another process decided after this one loaded the file: taken from
 * the file under its lock, not timed again. */
static void test_takes_another_process_decision(void **state) {
  (void)state;
  if (!have_onednn) skip();
  const char *path = fresh_cache("adopt");
  pg_gemm_decision d;
  assert_false(pg_gemm_decision_find(&(pg_gemm_key){0}, &d)); /* loads the (empty) file */
  operands o = make(false, false, M, N, K, 1.0f, 1.0f, 11);
  append_text(path, line_for(&o, cpu_name(), "onednn"));
  const pg_gemm_engine_stats s0 = pg_gemm_engine_get_stats();
  reset_c(&o);
  run_pg_gemm(&o);
  const pg_gemm_engine_stats s1 = pg_gemm_engine_get_stats();
  assert_int_equal(s1.keys_adopted - s0.keys_adopted, 1);
  assert_int_equal(s1.keys_timed, s0.keys_timed);
  assert_int_equal(s1.onednn_products - s0.onednn_products, 1);
  assert_product(&o, "adopted");
  unmake(&o);
}

/* Where no folder can be written, decisions stay in memory and products
 * still run. */
static void test_unwritable_cache(void **state) {
  (void)state;
  if (!have_onednn) skip();
  setenv("PG_CACHE_DIR", "/proc/pg_no_such_folder", 1);
  pg_gemm_decisions_forget();
  operands o = make(true, true, M, N, K, 0.5f, 0.0f, 12);
  const pg_gemm_engine_stats s0 = pg_gemm_engine_get_stats();
  reset_c(&o);
  run_pg_gemm(&o);
  assert_product(&o, "unwritable cache");
  const pg_gemm_engine_stats s1 = pg_gemm_engine_get_stats();
  assert_int_equal(s1.keys_timed - s0.keys_timed, 1);
  assert_int_equal(s1.keys_not_kept - s0.keys_not_kept, 1);
  assert_non_null(strstr(pg_gemm_engine_cache(), "not kept"));
  reset_c(&o);
  run_pg_gemm(&o); /* remembered in memory */
  assert_int_equal(pg_gemm_engine_get_stats().keys_timed, s1.keys_timed);
  unmake(&o);
  fresh_cache("after_unwritable");
}

static void test_setting_names_and_errors(void **state) {
  (void)state;
  const char *names[] = {"auto", "blis", "onednn"};
  for (int e = 0; e < PG_GEMM_ENGINE_COUNT; e++) {
    pg_gemm_engine got;
    assert_int_equal(pg_gemm_engine_parse(names[e], &got), PG_OK);
    assert_int_equal(got, e);
    assert_string_equal(pg_gemm_engine_name(got), names[e]);
  }
  assert_null(pg_gemm_engine_name(PG_GEMM_ENGINE_COUNT));
  pg_gemm_engine got = PG_GEMM_ENGINE_BLIS;
  assert_int_equal(pg_gemm_engine_parse("fast", &got), PG_ERR_ARG);
  assert_error_contains("'fast' is not one of auto, blis, onednn");
  assert_int_equal(got, PG_GEMM_ENGINE_BLIS);
  assert_int_equal(pg_gemm_engine_parse("BLIS", &got), PG_ERR_ARG);
  assert_int_equal(pg_gemm_engine_parse(NULL, &got), PG_ERR_ARG);
  assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_COUNT), PG_ERR_ARG);
  assert_int_equal(pg_gemm_engine_set((pg_gemm_engine)-1), PG_ERR_ARG);
  assert_int_equal(pg_gemm_engine_get(), PG_GEMM_ENGINE_AUTO); /* unchanged */
  assert_int_equal(pg_gemm_engine_onednn_available() == PG_OK, have_onednn);
  if (have_onednn) {
    assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_ONEDNN), PG_OK);
    assert_int_equal(pg_gemm_engine_get(), PG_GEMM_ENGINE_ONEDNN);
  } else {
    assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_ONEDNN), PG_ERR_STATE);
    assert_error_contains("without oneDNN");
  }
  assert_int_equal(pg_gemm_engine_set(PG_GEMM_ENGINE_AUTO), PG_OK);
  /* this program runs without PG_GEMM_ENGINE (the suite sets none) */
  assert_int_equal(pg_gemm_engine_env(), PG_OK);
}

/* Runs `patchgrad bench` (tiny, one step) with the environment and flags
 * given; its exit status, its output in out. */
static int bench(const char *env, const char *flags, char *out, size_t cap) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s PG_CACHE_DIR='%s' '%s/patchgrad' bench --size tiny --steps 1 --warmup 0 %s 2>&1",
           env, pg_test_tmp("cli"), PG_BUILD_DIR, flags);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  const size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_environment_and_flag(void **state) {
  (void)state;
  static char out[16384];
  assert_int_equal(bench("PG_GEMM_ENGINE=fast", "", out, sizeof out), 2);
  assert_non_null(strstr(out, "PG_GEMM_ENGINE='fast' is not one of auto, blis, onednn"));
  assert_int_equal(bench("", "--gemm-engine fast", out, sizeof out), 2);
  assert_non_null(strstr(out, "--gemm-engine: GEMM engine 'fast' is not one of auto, blis, onednn"));
  /* every command refuses it, not only those with the flag (vae encode has none) */
  {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "PG_GEMM_ENGINE=fast '%s/patchgrad' vae encode --ckpt a.h5 --data b.h5 --out c.h5 2>&1",
             PG_BUILD_DIR);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    const size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    const int status = pclose(p);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    assert_non_null(strstr(out, "PG_GEMM_ENGINE='fast' is not one of auto, blis, onednn"));
  }
  /* the flag wins over the variable */
  assert_int_equal(bench("PG_GEMM_ENGINE=fast", "--gemm-engine blis", out, sizeof out), 0);
  assert_non_null(strstr(out, "engine blis: 0.0 products per step by oneDNN"));
  assert_int_equal(bench("PG_GEMM_ENGINE=blis", "", out, sizeof out), 0);
  assert_non_null(strstr(out, "engine blis: 0.0 products per step by oneDNN"));
  if (have_onednn) {
    assert_int_equal(bench("PG_GEMM_ENGINE=onednn", "", out, sizeof out), 0);
    assert_non_null(strstr(out, "engine onednn: "));
    assert_null(strstr(out, "engine onednn: 0.0 products"));
  } else {
    assert_int_equal(bench("PG_GEMM_ENGINE=onednn", "", out, sizeof out), 2);
    assert_non_null(strstr(out, "without oneDNN"));
    assert_int_equal(bench("", "--gemm-engine onednn", out, sizeof out), 2);
  }
  assert_int_equal(bench("", "", out, sizeof out), 0);
  assert_non_null(strstr(out, "engine auto: "));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_setting_names_and_errors),
      cmocka_unit_test(test_onednn_matches_blis),
      cmocka_unit_test(test_blis_engine_is_blis),
      cmocka_unit_test(test_auto_decides_once_and_keeps),
      cmocka_unit_test(test_file_other_cpu_and_corrupt_lines),
      cmocka_unit_test(test_takes_another_process_decision),
      cmocka_unit_test(test_unwritable_cache),
      cmocka_unit_test(test_environment_and_flag),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
