#include "patchgrad/autograd/arena.h"

#include <stdint.h>
#include <stdlib.h>

#include "patchgrad/autograd/error.h"

#define PG_ALIGN 64

struct pg_arena_chunk {
  pg_arena_chunk *next;
  size_t size; /* usable bytes after the header */
  size_t used;
  _Alignas(PG_ALIGN) unsigned char data[];
};

void pg_arena_init(pg_arena *arena, size_t chunk_bytes) {
  *arena = (pg_arena){.chunk_bytes = chunk_bytes ? chunk_bytes : (size_t)64 << 20};
}

static pg_arena_chunk *chunk_new(size_t size) {
  pg_arena_chunk *c = aligned_alloc(PG_ALIGN, (sizeof *c + size + PG_ALIGN - 1) / PG_ALIGN * PG_ALIGN);
  if (!c) return NULL;
  c->next = NULL;
  c->size = size;
  c->used = 0;
  return c;
}

void *pg_arena_alloc(pg_arena *arena, size_t bytes) {
  size_t need = (bytes + PG_ALIGN - 1) / PG_ALIGN * PG_ALIGN;
  if (need == 0) need = PG_ALIGN;
  /* Walk the kept chunks first: after a reset this is where a repeated step
   * finds its memory again. */
  pg_arena_chunk **link = arena->current ? &arena->current : &arena->first;
  while (*link && (*link)->used + need > (*link)->size) {
    pg_arena_chunk *c = *link;
    if (c->next) c->next->used = 0;
    link = &c->next;
  }
  if (!*link) {
    size_t size = need > arena->chunk_bytes ? need : arena->chunk_bytes;
    pg_arena_chunk *c = chunk_new(size);
    if (!c) {
      pg_fail(PG_ERR_MEMORY, "arena: cannot allocate a chunk of %zu bytes", size);
      return NULL;
    }
    arena->mallocs++;
    arena->reserved += size;
    *link = c;
  }
  pg_arena_chunk *c = *link;
  arena->current = c;
  void *p = c->data + c->used;
  c->used += need;
  arena->used += need;
  if (arena->used > arena->high_water) arena->high_water = arena->used;
  return p;
}

void pg_arena_reset(pg_arena *arena) {
  if (arena->first) arena->first->used = 0;
  arena->current = arena->first;
  arena->used = 0;
}

void pg_arena_free(pg_arena *arena) {
  pg_arena_chunk *c = arena->first;
  while (c) {
    pg_arena_chunk *next = c->next;
    free(c);
    c = next;
  }
  arena->first = arena->current = NULL;
  arena->used = arena->reserved = 0;
}
