#include "patchgrad/autograd/blas.h"

#include <blis.h>
#include <omp.h>
#include <stdatomic.h>

#include "patchgrad/autograd/autocast_gemm.h"
#include "patchgrad/autograd/blas_internal.h"
#include "patchgrad/autograd/parallel.h"

static int thread_count = 0;

/* Set before the library's first BLIS call (runtime.c must come first). */
static atomic_bool blis_started;

bool pg_blis_started(void) { return atomic_load(&blis_started); }

void pg_set_threads(int n) {
  atomic_store(&blis_started, true);
  if (n < 1) n = omp_get_num_procs();
  thread_count = n;
  omp_set_num_threads(n);
  bli_thread_set_num_threads(n);
}

int pg_get_threads(void) { return thread_count ? thread_count : omp_get_max_threads(); }

static void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc, rntm_t *rntm) {
  if (m == 0 || n == 0) return;
  atomic_store_explicit(&blis_started, true, memory_order_relaxed);
  /* BLIS takes general strides, so row-major needs no copy: a row stride of
   * ld and a column stride of 1, and its own transpose flags. */
  bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
               trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha, (float *)a, lda, 1,
               (float *)b, ldb, 1, &beta, c, ldc, 1, NULL, rntm);
}

void pg_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
             int64_t ldc) {
  /* under bf16 autocast (autocast.h) large products go to oneDNN */
  if (pg_autocast_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  /* in float32, a large product may be oneDNN's (gemm_engine.h) */
  if (pg_gemm_engine_run(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL);
}

void pg_gemm_float32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc) {
  gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL);
}

void pg_gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                    int64_t ldc) {
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  bli_rntm_set_num_threads(1, &rntm);
  gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, &rntm);
}

void pg_gemm_auto(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc) {
  /* bf16 autocast first: a large product goes to oneDNN whether or not
   * BLIS would have threaded it (with one thread it never would) */
  if (pg_autocast_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  /* then the fp32 engine's choice for a large product (gemm_engine.h),
   * outside parallel regions only (oneDNN would open a nested team), and
   * on one thread too, so that --threads 1 and 2 run the same engines */
  if (pg_gemm_engine_run(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  if (pg_parallel_gemm_worth(m, n, k))
    gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL);
  else
    pg_gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

const char *pg_blas_kernels(void) {
  if (!pg_blis_started()) return "(BLIS has not run yet)";
  return bli_arch_string(bli_arch_query_id());
}
