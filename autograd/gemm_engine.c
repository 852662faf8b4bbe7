/* The float32 engine choice (gemm_engine.h): the setting and
 * PG_GEMM_ENGINE, the timing of a new key, and the hook pg_gemm calls
 * (blas_internal.h). The decisions themselves are kept by
 * gemm_decisions.c; oneDNN's primitives by dnnl_matmul.c. */
#include "patchgrad/autograd/gemm_engine.h"

#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/blas_internal.h"
#include "patchgrad/autograd/dnnl_matmul.h"
#include "patchgrad/autograd/gemm_decisions.h"

/* oneDNN is chosen for a key when its best time is below this share of
 * BLIS's (more than 5% faster). */
#define ONEDNN_MARGIN 0.95
/* Timed runs per engine after one warm-up each. */
#define TIMED_RUNS 3

static const char *const engine_names[] = {"auto", "blis", "onednn"};
_Static_assert(sizeof engine_names / sizeof engine_names[0] == PG_GEMM_ENGINE_COUNT, "one name per pg_gemm_engine");

const char *pg_gemm_engine_name(pg_gemm_engine e) {
  return (unsigned)e < PG_GEMM_ENGINE_COUNT ? engine_names[e] : NULL;
}

/* The engine named text, or -1; sets no error. */
static int lookup(const char *text) {
  for (int e = 0; text && e < PG_GEMM_ENGINE_COUNT; e++)
    if (!strcmp(text, engine_names[e])) return e;
  return -1;
}

pg_status pg_gemm_engine_parse(const char *text, pg_gemm_engine *out) {
  const int e = lookup(text);
  if (e < 0) return pg_fail(PG_ERR_ARG, "GEMM engine '%s' is not one of auto, blis, onednn", text ? text : "(null)");
  *out = (pg_gemm_engine)e;
  return PG_OK;
}

/* The thread's last error, kept across calls that may overwrite it while
 * the operation that runs them succeeds. */
typedef struct {
  pg_status status;
  char message[1024];
} saved_error;

static void save_error(saved_error *s) {
  s->status = pg_last_status();
  snprintf(s->message, sizeof s->message, "%s", pg_last_error());
}

static void restore_error(const saved_error *s) {
  if (s->status == PG_OK && !s->message[0]) pg_clear_error();
  else pg_fail(s->status, "%s", s->message);
}

static struct {
  atomic_int setting;
  bool dnnl_ok;            /* oneDNN's engine started */
  char dnnl_why[512];      /* why not, when it did not */
  pg_status env_status;    /* PG_GEMM_ENGINE's error, PG_OK when none */
  char env_why[768];
} g;

static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Once per process: can oneDNN run, and what PG_GEMM_ENGINE asks for. */
static void start(void) {
  saved_error saved;
  save_error(&saved);
  g.dnnl_ok = pg_dnnl_available() == PG_OK;
  if (!g.dnnl_ok) snprintf(g.dnnl_why, sizeof g.dnnl_why, "%s", pg_last_error());
  int e = PG_GEMM_ENGINE_AUTO;
  const char *v = getenv("PG_GEMM_ENGINE");
  if (v && *v) {
    e = lookup(v);
    if (e < 0) {
      g.env_status = PG_ERR_ARG;
      snprintf(g.env_why, sizeof g.env_why, "PG_GEMM_ENGINE='%.64s' is not one of auto, blis, onednn", v);
      e = PG_GEMM_ENGINE_BLIS;
    } else if (e == PG_GEMM_ENGINE_ONEDNN && !g.dnnl_ok) {
      g.env_status = PG_ERR_STATE;
      snprintf(g.env_why, sizeof g.env_why, "PG_GEMM_ENGINE=onednn: the oneDNN engine is unavailable: %s",
               g.dnnl_why);
      e = PG_GEMM_ENGINE_BLIS;
    }
  }
  atomic_store(&g.setting, e);
  restore_error(&saved);
}

pg_status pg_gemm_engine_onednn_available(void) {
  pthread_once(&once, start);
  if (!g.dnnl_ok) return pg_fail(PG_ERR_STATE, "the oneDNN GEMM engine is unavailable: %s", g.dnnl_why);
  return PG_OK;
}

pg_status pg_gemm_engine_set(pg_gemm_engine e) {
  pthread_once(&once, start);
  if ((unsigned)e >= PG_GEMM_ENGINE_COUNT)
    return pg_fail(PG_ERR_ARG, "pg_gemm_engine_set: %d is not a pg_gemm_engine", (int)e);
  if (e == PG_GEMM_ENGINE_ONEDNN) {
    const pg_status st = pg_gemm_engine_onednn_available();
    if (st) return st;
  }
  atomic_store(&g.setting, (int)e);
  return PG_OK;
}

pg_gemm_engine pg_gemm_engine_get(void) {
  pthread_once(&once, start);
  return (pg_gemm_engine)atomic_load(&g.setting);
}

pg_status pg_gemm_engine_env(void) {
  pthread_once(&once, start);
  if (g.env_status) return pg_fail(g.env_status, "%s", g.env_why);
  return PG_OK;
}

static struct {
  atomic_llong onednn, blis, fallbacks;
} counts;

pg_gemm_engine_stats pg_gemm_engine_get_stats(void) {
  const pg_gemm_decision_counts d = pg_gemm_decision_counts_get();
  return (pg_gemm_engine_stats){.onednn_products = atomic_load(&counts.onednn),
                                .blis_products = atomic_load(&counts.blis),
                                .keys_timed = d.timed,
                                .keys_loaded = d.loaded,
                                .keys_adopted = d.adopted,
                                .keys_not_kept = d.not_kept,
                                .fallbacks = atomic_load(&counts.fallbacks)};
}

const char *pg_gemm_engine_cache(void) { return pg_gemm_decisions_where(); }

/* One product's arguments, for the timing. */
typedef struct {
  bool trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b, *c;
} product;

static pg_dnnl_product dnnl_product(const product *p) {
  return (pg_dnnl_product){.bf16 = false, .trans_a = p->trans_a, .trans_b = p->trans_b, .m = p->m, .n = p->n,
                           .k = p->k, .lda = p->lda, .ldb = p->ldb, .ldc = p->ldc, .alpha = p->alpha,
                           .beta = p->beta};
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Gives the scratch output the caller's C when beta != 0 (C is read then);
 * with beta == 0 neither engine reads it. */
static void prepare(const product *p, float *scratch) {
  if (p->beta == 0.0f) return;
  for (int64_t i = 0; i < p->m; i++) memcpy(scratch + i * p->ldc, p->c + i * p->ldc, (size_t)p->n * sizeof(float));
}

/* BLIS's time into the scratch (seconds). */
static double time_blis(const product *p, float *scratch) {
  prepare(p, scratch);
  const double t0 = now_s();
  pg_gemm_float32(p->trans_a, p->trans_b, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, scratch,
                  p->ldc);
  return now_s() - t0;
}

/* oneDNN's time into the scratch (seconds), negative when it failed. */
static double time_onednn(const product *p, float *scratch) {
  prepare(p, scratch);
  const pg_dnnl_product d = dnnl_product(p);
  const double t0 = now_s();
  if (pg_dnnl_matmul(&d, p->a, p->b, scratch)) return -1;
  return now_s() - t0;
}

/* gemm_decisions.h's measure: both engines alternately into a scratch
 * output, a warm-up each (it also creates oneDNN's primitive), then the
 * best of TIMED_RUNS each. BLIS when oneDNN cannot run the product (its
 * figure then 0) or when the scratch cannot be had (both 0). */
static void measure(void *user, pg_gemm_decision *out) {
  const product *p = user;
  *out = (pg_gemm_decision){0};
  saved_error saved;
  save_error(&saved);
  float *scratch = NULL;
  const size_t elems = (size_t)((p->m - 1) * p->ldc + p->n);
  if (posix_memalign((void **)&scratch, 64, elems * sizeof(float))) return;
  /* the warm-ups: BLIS's packing buffers, oneDNN's primitive */
  time_blis(p, scratch);
  double blis = 1e300, onednn = time_onednn(p, scratch) < 0 ? -1 : 1e300;
  for (int r = 0; r < TIMED_RUNS; r++) {
    const double tb = time_blis(p, scratch);
    if (tb < blis) blis = tb;
    if (onednn < 0) continue;
    const double to = time_onednn(p, scratch);
    onednn = to < 0 ? -1 : to < onednn ? to : onednn;
  }
  free(scratch);
  const double gflop = 2e-9 * (double)p->m * (double)p->n * (double)p->k;
  out->blis_gflops = blis > 0 ? gflop / blis : 0;
  out->onednn_gflops = onednn > 0 ? gflop / onednn : 0;
  out->onednn = onednn > 0 && blis > 0 && onednn < ONEDNN_MARGIN * blis;
  restore_error(&saved);
}

bool pg_gemm_engine_run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m < 1 || n < 1 || k < 1 || 2.0 * (double)m * (double)n * (double)k < (double)PG_GEMM_ENGINE_MIN_FLOPS ||
      omp_in_parallel())
    return false;
  pthread_once(&once, start);
  const int setting = atomic_load_explicit(&g.setting, memory_order_relaxed);
  const product p = {.trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb,
                     .ldc = ldc, .alpha = alpha, .beta = beta, .a = a, .b = b, .c = c};
  bool onednn = setting == PG_GEMM_ENGINE_ONEDNN;
  if (setting == PG_GEMM_ENGINE_AUTO && g.dnnl_ok) {
    const pg_gemm_key key = {.trans_a = trans_a, .trans_b = trans_b, .alpha_one = alpha == 1.0f,
                             .beta_zero = beta == 0.0f, .threads = pg_get_threads(), .m = m, .n = n, .k = k,
                             .lda = lda, .ldb = ldb, .ldc = ldc};
    onednn = pg_gemm_decide(&key, measure, (void *)&p).onednn;
  }
  if (onednn) {
    const pg_dnnl_product d = dnnl_product(&p);
    if (pg_dnnl_matmul(&d, a, b, c) == PG_OK) {
      atomic_fetch_add_explicit(&counts.onednn, 1, memory_order_relaxed);
      return true;
    }
    atomic_fetch_add_explicit(&counts.fallbacks, 1, memory_order_relaxed);
  }
  atomic_fetch_add_explicit(&counts.blis, 1, memory_order_relaxed);
  return false;
}
