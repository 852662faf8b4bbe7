#include "patchgrad/autograd/parallel.h"

#include <omp.h>

bool pg_parallel_worth(int64_t work) {
  return work > PG_PARALLEL_MIN && omp_get_max_threads() > 1 && !omp_in_parallel();
}

int pg_parallel_threads(int64_t work) {
  return pg_parallel_worth(work) ? omp_get_max_threads() : 1;
}

bool pg_parallel_gemm_worth(int64_t m, int64_t n, int64_t k) {
  /* in double: the product of three sizes may pass int64's range */
  const double work = (double)m * (double)n * (double)k;
  return pg_parallel_worth(work > (double)INT64_MAX ? INT64_MAX : (int64_t)work);
}

void pg_parallel_ranges(int64_t n, void (*range)(void *user, int64_t lo, int64_t hi), void *user) {
  if (!pg_parallel_worth(n)) {
    range(user, 0, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t slice = ((n + threads - 1) / threads + 15) / 16 * 16;
    const int64_t lo = omp_get_thread_num() * slice;
    if (lo < n) range(user, lo, lo + slice < n ? lo + slice : n);
  }
}
