#include "patchgrad/autograd/blas.h"

#include "patchgrad/autograd/autocast_gemm.h"
#include "patchgrad/autograd/parallel.h"

#include <blis.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

static int thread_count = 0;

/* BLIS 0.9 (Debian 12) recognises no AMD CPU after Zen 3: on Zen 4 and Zen 5
 * it falls back to its reference "generic" kernels, which run about 6 times
 * slower than its AVX-512 "skx" kernels on those CPUs (Zen 5, one core: 30
 * vs 190 GFLOP/s). BLIS reads its arch_t id from the BLIS_ARCH_TYPE
 * environment variable once, at its first call, so the choice is made here,
 * before any BLIS call, and only when the user has not set the variable. */
static void choose_blis_arch(void) {
#if defined(__x86_64__)
  if (getenv("BLIS_ARCH_TYPE")) return;
  unsigned max_leaf, vendor_b, vendor_c, vendor_d;
  if (!__get_cpuid(0, &max_leaf, &vendor_b, &vendor_c, &vendor_d)) return;
  const bool amd = vendor_b == 0x68747541u; /* "Auth" of "AuthenticAMD" */
  __builtin_cpu_init();
  /* the instruction sets of the skx kernels, with the OS saving zmm state */
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  if (amd && avx512) {
    char id[16];
    snprintf(id, sizeof id, "%d", (int)BLIS_ARCH_SKX);
    setenv("BLIS_ARCH_TYPE", id, 0);
  }
#endif
}

static pthread_once_t blis_arch_once = PTHREAD_ONCE_INIT;

void pg_set_threads(int n) {
  pthread_once(&blis_arch_once, choose_blis_arch);
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
  pthread_once(&blis_arch_once, choose_blis_arch);
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
  if (pg_parallel_gemm_worth(m, n, k))
    pg_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    pg_gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
