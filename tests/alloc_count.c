/* The allocation counter of alloc_count.h. A program that links this file
 * defines malloc and friends itself, which the dynamic linker then prefers
 * over glibc's for every library in the process; each definition forwards to
 * glibc's internal entry point (__libc_malloc, ...). The counter is atomic:
 * BLIS and OpenMP threads allocate too. */
#include "alloc_count.h"

#include <errno.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PG_COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define PG_COUNT_ALLOCS 0
#endif
#endif
#ifndef PG_COUNT_ALLOCS
#define PG_COUNT_ALLOCS 1
#endif

#if PG_COUNT_ALLOCS

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *p);

static long alloc_calls;

static void counted(void) { __atomic_add_fetch(&alloc_calls, 1, __ATOMIC_RELAXED); }

void *malloc(size_t size) {
  counted();
  return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
  counted();
  return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
  counted();
  return __libc_realloc(p, size);
}

void free(void *p) { __libc_free(p); }

void *aligned_alloc(size_t alignment, size_t size) {
  counted();
  return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
  counted();
  return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
  counted();
  void *p = __libc_memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

long pg_alloc_count(void) { return __atomic_load_n(&alloc_calls, __ATOMIC_RELAXED); }
bool pg_alloc_count_active(void) { return true; }

#else

long pg_alloc_count(void) { return 0; }
bool pg_alloc_count_active(void) { return false; }

#endif
