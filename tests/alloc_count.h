/* A process-wide count of heap allocations, for `patchgrad bench` and the
 * allocation-free tests. Linking alloc_count.c into a program replaces
 * malloc, calloc, realloc, free and the aligned allocators for the whole
 * process (the library, BLIS, OpenMP and HDF5 included); each forwards to
 * glibc's own implementation and counts the call.
 *
 * Under AddressSanitizer (and the other sanitizers that own the heap) the
 * replacement is compiled out: pg_alloc_count_active() is then false and
 * pg_alloc_count() stays 0. */
#ifndef PG_ALLOC_COUNT_H
#define PG_ALLOC_COUNT_H

#include <stdbool.h>

/* malloc/calloc/realloc/aligned_alloc/memalign/posix_memalign calls so far. */
long pg_alloc_count(void);
/* True when the counter is live (not under a sanitizer). */
bool pg_alloc_count_active(void);

#endif
