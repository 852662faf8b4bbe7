/* Atomic file replacement: a writer writes "PATH.tmp", then commits it,
 * which flushes it to disk and renames it over PATH in one step. A failure
 * (or a crash) before the rename leaves the previous PATH untouched; a
 * failed write discards its temporary file. Used by every file we write
 * (checkpoints, latent datasets, PNG images). */
#ifndef PG_ATOMIC_H
#define PG_ATOMIC_H

#include "patchgrad/autograd/api.h"

#include <stddef.h>

#include "patchgrad/autograd/error.h"

/* Writes "PATH.tmp" into buf; an error when it does not fit. */
PG_API pg_status pg_atomic_tmp_path(const char *path, char *buf, size_t cap);
/* fsync(tmp), rename(tmp, path), fsync of the directory. On failure tmp is
 * removed and the message names both paths. */
PG_API pg_status pg_atomic_commit(const char *tmp, const char *path);
/* Removes a temporary file after a failed write (no error if it is gone). */
PG_API void pg_atomic_discard(const char *tmp);

#endif
