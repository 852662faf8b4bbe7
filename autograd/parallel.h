/* The threading policy of patchgrad, in one rule, decided here and nowhere
 * else:
 *
 *   A piece of work runs on every OpenMP thread when it is larger than
 *   PG_PARALLEL_MIN, there is more than one thread, and the caller is not
 *   already inside a parallel region; otherwise it runs on the calling
 *   thread without entering OpenMP at all.
 *
 * "Work" is the number of elements a loop touches, or the number of
 * multiply-adds (m * n * k) of a matrix product. A parallel region always
 * has the full team (omp_get_max_threads(), set by pg_set_threads), never
 * a part of it: threads without a task idle for that region.
 *
 * Why never a region of one thread, and never a team of another size:
 * libgomp reuses the thread team of the previous region only when the new
 * one has the same number of threads (more than one) and is not nested; any
 * other region (a false if() clause, num_threads(1), a nested region, a
 * different size) allocates a new team, and a training step must not call
 * malloc after its first step. BLIS's OpenMP build behaves the same way for
 * its own regions: a product on one thread (pg_gemm_serial) allocates a
 * team each call, so small products pay one malloc for not waking threads.
 *
 * The threshold is one value for the whole library: below 2^15 elements
 * (or multiply-adds) waking the other threads costs more than the loop.
 *
 * Results and the decision: a loop that gives each output to one thread
 * (all of PG_FOR's, pg_parallel_ranges's, and BLIS's products, which split
 * rows and columns, never the inner sum) computes the same bits on any
 * number of threads (products: on the BLIS engine; under auto a product's
 * engine may differ between thread counts, gemm_engine.h). The few sums split across threads (the MSE loss, the
 * gradient norm of clipping, LayerNorm's weight gradient) add per-thread
 * partial sums kept in double, so the thread count moves them by double
 * rounding only, below float resolution but for rare ties. */
#ifndef PG_PARALLEL_H
#define PG_PARALLEL_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

/* Work above this runs on all threads. */
#define PG_PARALLEL_MIN ((int64_t)1 << 15)

/* True when `work` should run on all threads: work > PG_PARALLEL_MIN, more
 * than one OpenMP thread, and not inside a parallel region already. */
PG_API bool pg_parallel_worth(int64_t work);

/* The team size for `work`: omp_get_max_threads() when
 * pg_parallel_worth(work), else 1 (then run without entering OpenMP). For
 * loops that keep per-thread scratch or partial sums:
 *   int threads = pg_parallel_threads(work);
 *   if (threads == 1) serial(); else { #pragma omp parallel num_threads(threads) ... } */
PG_API int pg_parallel_threads(int64_t work);

/* True when a matrix product of m x k by k x n should use BLIS's threads
 * (pg_gemm) rather than the calling thread only (pg_gemm_serial): the same
 * rule with work = m * n * k multiply-adds. */
PG_API bool pg_parallel_gemm_worth(int64_t m, int64_t n, int64_t k);

/* Calls range(user, lo, hi) to cover [0, n): once per thread on
 * consecutive slices that start on multiples of 16 elements (64 bytes of
 * floats: no two threads write one cache line) when pg_parallel_worth(n),
 * else once, range(user, 0, n), on this thread. */
PG_API void pg_parallel_ranges(int64_t n, void (*range)(void *user, int64_t lo, int64_t hi),
                               void *user);

/* for (int64_t i = 0; i < n; i++) STATEMENT; on all threads when
 * pg_parallel_worth(work), else on this thread without entering OpenMP:
 *   PG_FOR(rows * cols, r, rows, scale_row(x + r * cols, cols));
 * Iteration i must write only its own outputs. Without OpenMP (a program
 * compiled without -fopenmp) the pragma is ignored and the loop is serial. */
#define PG_FOR(work, i, n, ...)                        \
  do {                                                 \
    if (pg_parallel_worth(work)) {                     \
      _Pragma("omp parallel for")                      \
      for (int64_t i = 0; i < (n); i++) __VA_ARGS__;   \
    } else {                                           \
      for (int64_t i = 0; i < (n); i++) __VA_ARGS__;   \
    }                                                  \
  } while (0)

#endif
