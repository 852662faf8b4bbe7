/* The per-step arena: activations, their gradients and tape records of one
 * training step are carved out of large chunks and released all at once by
 * pg_arena_reset, which keeps the chunks. A step that asks for the same sizes
 * in the same order as the one before it therefore calls malloc zero times. */
#ifndef PG_ARENA_H
#define PG_ARENA_H

#include "patchgrad/autograd/api.h"

#include <stddef.h>

typedef struct pg_arena_chunk pg_arena_chunk;

typedef struct {
  pg_arena_chunk *first;   /* chunks, kept across resets */
  pg_arena_chunk *current; /* the chunk being filled */
  size_t chunk_bytes;      /* size of a new chunk (bigger requests get their own) */
  size_t used;             /* bytes handed out since the last reset */
  size_t high_water;       /* the largest `used` seen */
  size_t reserved;         /* bytes in all chunks */
  long mallocs;            /* chunks allocated so far */
} pg_arena;

PG_API void pg_arena_init(pg_arena *arena, size_t chunk_bytes);
/* 64-byte aligned, uninitialised; NULL (with an error) when out of memory. */
PG_API void *pg_arena_alloc(pg_arena *arena, size_t bytes);
PG_API void pg_arena_reset(pg_arena *arena);
PG_API void pg_arena_free(pg_arena *arena);

#endif
