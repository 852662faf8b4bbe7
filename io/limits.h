/* Sizes that come from files or command lines, checked before any
 * arithmetic or allocation: overflow-checked products, and the memory this
 * process can still get, so that a file declaring 2^40 samples is refused
 * up front with the size it needs and the size available, instead of
 * failing in the allocator half-way (or overflowing a product first). */
#ifndef PG_LIMITS_H
#define PG_LIMITS_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"

/* *out = a * b for a, b >= 0; false (out untouched) when it overflows int64. */
PG_API bool pg_mul_i64(int64_t a, int64_t b, int64_t *out);

/* Bytes of memory this process can still allocate: the least of the
 * kernel's MemAvailable (/proc/meminfo; sysconf(_SC_AVPHYS_PAGES) times the
 * page size where that file is absent), the room left under the cgroup's
 * memory.max, and RLIMIT_AS / RLIMIT_DATA. */
PG_API int64_t pg_memory_available(void);

/* PG_OK when `bytes` fit in pg_memory_available(); else PG_ERR_MEMORY with
 * "WHAT needs 4.0 TB of memory, 22.1 GB available". */
PG_API pg_status pg_check_memory(const char *what, int64_t bytes);

/* The elements of a shape (every size >= 0) and their bytes at elem_size
 * bytes each, overflow-checked: an error naming `what` and the shape when
 * either does not fit int64. */
PG_API pg_status pg_shape_bytes(const char *what, int ndim, const int64_t *shape,
                                int64_t elem_size, int64_t *numel, int64_t *bytes);

/* "512 B", "3.0 MB", "4.0 TB" (powers of 1024) into buf; returns buf. */
PG_API char *pg_bytes_str(char *buf, size_t cap, double bytes);

#endif
