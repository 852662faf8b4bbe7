/* Internal: the hook pg_gemm (blas.c) calls before BLIS. True when the
 * thread's autocast precision is bf16, the product is large enough and
 * oneDNN computed it; false when BLIS should (autocast.c). */
#ifndef PG_AUTOCAST_GEMM_H
#define PG_AUTOCAST_GEMM_H

#include <stdbool.h>
#include <stdint.h>

bool pg_autocast_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                      int64_t ldc);

#endif
