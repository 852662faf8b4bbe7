/* Files replaced atomically, and files checked before they are read.
 *
 * A writer asks pg_atomic_begin for a temporary name beside PATH
 * ("PATH.patchgrad-PID.tmp": this process's own), writes it, and commits it:
 * the data is flushed to disk (fsync) and renamed over PATH in one step. A
 * failure anywhere before the rename (a full disk, an I/O error, a crash)
 * leaves the previous PATH untouched; a failed write removes its temporary;
 * a temporary left by a process that died (kill -9, power loss) is removed
 * by the next pg_atomic_begin for the same PATH, while temporaries of live
 * processes and files of other programs are left alone. Used by every file
 * patchgrad writes (checkpoints, latent datasets, sample sheets, PNG images).
 *
 * Readers call pg_check_regular_file first: a FIFO, a device or a folder
 * given as a data file is refused instead of blocking the reader forever. */
#ifndef PG_ATOMIC_H
#define PG_ATOMIC_H

#include "patchgrad/autograd/api.h"

#include <stddef.h>

#include "patchgrad/autograd/error.h"

/* Room for a temporary's name: pg_atomic_begin's `cap` should be this. */
#define PG_ATOMIC_PATH_CAP 4096

/* Checks that path and its temporary name fit the system's limits (PATH_MAX
 * for the whole path, NAME_MAX for the file name), without touching the
 * disk: commands call it on their output paths before doing any work. An
 * empty path is an error too. */
PG_API pg_status pg_atomic_check_path(const char *path);
/* pg_atomic_check_path, then removes the stale temporaries of path (those
 * of processes that are gone), and writes this process's temporary name for
 * path into tmp (cap bytes). */
PG_API pg_status pg_atomic_begin(const char *path, char *tmp, size_t cap);
/* fsync(tmp), rename(tmp, path), fsync of the directory. On failure tmp is
 * removed and the message names both paths and the system's error. */
PG_API pg_status pg_atomic_commit(const char *tmp, const char *path);
/* Removes a temporary file after a failed write (no error if it is gone;
 * only a regular file is ever removed). */
PG_API void pg_atomic_discard(const char *tmp);
/* The whole of a file in one call: begin, write `size` bytes, commit. A
 * short write (ENOSPC, EIO, EFBIG) is an error naming path, the temporary and
 * the system's reason, with the temporary removed and PATH unchanged. */
PG_API pg_status pg_atomic_write(const char *path, const void *data, size_t size);

/* PG_OK when path names a regular file (symbolic links followed); an error
 * naming the kind of file otherwise (FIFO, folder, device, socket), or
 * "cannot open" when it does not exist or cannot be examined. */
PG_API pg_status pg_check_regular_file(const char *path);

#endif
