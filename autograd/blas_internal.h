/* BLIS entry points for the library's own files, and the float32 engine
 * choice's hook (internal, not installed). */
#ifndef PG_BLAS_INTERNAL_H
#define PG_BLAS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

/* True once the library has called BLIS (a product or pg_set_threads). */
bool pg_blis_started(void);

/* pg_gemm in float32 whatever this thread's autocast precision
 * (autocast.h) and whatever the float32 engine (gemm_engine.h): BLIS on
 * all its threads. For the products autocast leaves in float32
 * (attention's per-head products), and the engine choice's BLIS side. */
void pg_gemm_float32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc);

/* The float32 engine choice (gemm_engine.h), called by pg_gemm and by
 * pg_gemm_auto's threaded path after autocast and before BLIS, with their
 * arguments: true when oneDNN computed the product into C; false when the
 * caller computes it with BLIS (a covered product is then counted as
 * BLIS's). Decides the product's key on first sight (gemm_engine.c). */
bool pg_gemm_engine_run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                        int64_t ldc);

#endif
