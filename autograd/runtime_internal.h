/* What runtime.c shares with the library's other per-machine choices
 * (internal, not installed): where such choices are kept, and the name of
 * the CPU they were measured on. */
#ifndef PG_RUNTIME_INTERNAL_H
#define PG_RUNTIME_INTERNAL_H

#include <stddef.h>

/* Opens the per-machine cache file `name` for reading and writing, created
 * empty when missing, in $PG_CACHE_DIR, else
 * ${XDG_CACHE_HOME:-$HOME/.cache}/patchgrad (made when missing, with its
 * parent). Writes the file's path into path[cap] and returns the descriptor
 * (O_CLOEXEC; the caller closes it), or -1 when no such folder can be made
 * or the file cannot be opened for writing. Callers lock it with flock. */
int pg_cache_file_open(const char *name, char *path, size_t cap);

/* The CPU's brand string (cpuid 0x80000002..4) without leading blanks,
 * with newlines and '=' replaced by blanks; "unknown" without it. */
void pg_cpu_model(char *buf, size_t cap);

#endif
