/* Every matrix product of patchgrad goes through here, and from here through
 * BLIS, or oneDNN where gemm_engine.h chooses it for a float32 product or
 * bf16 autocast (autocast.h) for a bf16 one. Row-major: C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C,
 * where op(A) = A^T when trans_a (A is then stored [k, m]). lda, ldb, ldc are
 * row strides in elements. With beta == 0, C is not read. */
#ifndef PG_BLAS_H
#define PG_BLAS_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

/* BLIS on all threads, or the engine gemm_engine.h chooses for this
 * product (at least PG_GEMM_ENGINE_MIN_FLOPS, outside a parallel region). */
PG_API void pg_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
             float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
             float beta, float *c, int64_t ldc);

/* The same product on the calling thread only, always BLIS: for loops that
 * already run in parallel (OpenMP over batch x heads), where BLIS's own
 * threads would fight. */
PG_API void pg_gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                    float beta, float *c, int64_t ldc);

/* pg_gemm or pg_gemm_serial, as the threading policy decides
 * (pg_parallel_gemm_worth in parallel.h): products too small to pay for
 * waking BLIS's threads run on the calling thread. Under bf16 autocast
 * (autocast.h) a large product goes to oneDNN first, whatever the thread
 * count; in float32 a large product (outside a parallel region, on any
 * thread count) goes through the engine choice of gemm_engine.h, as
 * pg_gemm's do, and the rest as before. With the BLIS engine,
 * same arguments, same result bits either way (BLIS splits rows and
 * columns across threads, never the inner sum); with auto or onednn a
 * product may be oneDNN's at one thread count and BLIS's at another. */
PG_API void pg_gemm_auto(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                         float beta, float *c, int64_t ldc);

/* Sets the thread count for BLIS and OpenMP (n < 1: the number of cores).
 * Call it once at start-up; BLIS otherwise reads BLIS_NUM_THREADS. */
PG_API void pg_set_threads(int n);
PG_API int pg_get_threads(void);

/* The name of the kernel set BLIS runs ("zen3", "skx", ...) once it has run
 * a product; "(BLIS has not run yet)" before (asking earlier could make BLIS
 * 0.9 abort when BLIS_ARCH_TYPE is set). */
PG_API const char *pg_blas_kernels(void);

#endif
