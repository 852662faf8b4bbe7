/* oneDNN's matrix products for the library's own files (internal, not
 * installed): one CPU engine and stream, and one table of matmul primitives
 * shared by the bf16 autocast path (autocast.c) and the float32 engine
 * choice (gemm_engine.c).
 *
 * A primitive is created the first time its product is seen (the key is
 * every field of pg_dnnl_product) and kept; the table holds
 * PG_DNNL_TABLE_SIZE of them and replaces the oldest when full. The
 * scratchpad is ours (dnnl_scratchpad_mode_user): one buffer that only
 * grows, so oneDNN keeps no per-primitive memory. Products run one at a
 * time (a lock), on oneDNN's OpenMP threads: Debian's libdnnl uses the
 * OpenMP runtime, so these are the same threads as the rest of patchgrad,
 * omp_get_max_threads() of them.
 *
 * Allocation: creating a primitive allocates; running one does too, inside
 * oneDNN 2.6's dnnl_primitive_execute (its argument map: 6 small
 * malloc/free pairs per call, 7 with beta != 0, freed before it returns). A
 * build without oneDNN (no PG_HAVE_DNNL) keeps every function: they return
 * an error saying so. */
#ifndef PG_DNNL_MATMUL_H
#define PG_DNNL_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"

#define PG_DNNL_TABLE_SIZE 128

/* C[m, n] = alpha * op(A)[m, k] op(B)[k, n] + beta * C, row-major, every
 * stride in elements: A is stored [m, k] with row stride lda, or [k, m] when
 * trans_a (likewise B: [k, n], or [n, k] when trans_b); C [m, n] with row
 * stride ldc. With bf16, A and B hold bfloat16 (uint16_t) values, else
 * float; C is always float32. With beta == 0, C is not read. */
typedef struct {
  bool bf16, trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
} pg_dnnl_product;

/* PG_OK when oneDNN's CPU engine and stream exist (made at the first call);
 * otherwise an error naming why (a build without oneDNN, or oneDNN failed
 * to create them). */
pg_status pg_dnnl_available(void);

/* Computes the product p (m, n, k >= 1) with the primitive for p, created
 * on first use. Errors, with C untouched: oneDNN unavailable, refusing the
 * product (no implementation for it) or out of memory (PG_ERR_STATE or
 * PG_ERR_MEMORY); a failure while running (PG_ERR_STATE) may leave C
 * partly written. */
pg_status pg_dnnl_matmul(const pg_dnnl_product *p, const void *a, const void *b, float *c);

/* Primitives created since the start, for the bf16 products or the float32
 * ones. */
int64_t pg_dnnl_primitives_created(bool bf16);

/* Destroys the kept primitives of bf16 products (bf16 true) or of float32
 * ones, and frees the scratchpad once the table is empty. Call only when no
 * product is running; later products create their primitives again. */
void pg_dnnl_release(bool bf16);

#endif
