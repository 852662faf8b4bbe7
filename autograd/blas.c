#include "blas.h"

#include <blis.h>
#include <omp.h>

static int thread_count = 0;

void pg_set_threads(int n) {
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
  /* BLIS takes general strides, so row-major needs no copy: a row stride of
   * ld and a column stride of 1, and its own transpose flags. */
  bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
               trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha, (float *)a, lda, 1,
               (float *)b, ldb, 1, &beta, c, ldc, 1, NULL, rntm);
}

void pg_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
             int64_t ldc) {
  gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL);
}

void pg_gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                    int64_t ldc) {
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  bli_rntm_set_num_threads(1, &rntm);
  gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, &rntm);
}
