#include "patchgrad/io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pg_status pg_atomic_tmp_path(const char *path, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%s.tmp", path);
  if (n < 0 || (size_t)n >= cap)
    return pg_fail(PG_ERR_ARG, "%s: path too long (at most %zu characters)", path, cap - 5);
  return PG_OK;
}

/* fsync of the folder holding path, so the rename itself survives a crash. */
static void sync_parent_dir(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  int fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    fsync(fd); /* best effort: some file systems refuse fsync on folders */
    close(fd);
  }
}

pg_status pg_atomic_commit(const char *tmp, const char *path) {
  int fd = open(tmp, O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    pg_atomic_discard(tmp);
    return pg_fail(PG_ERR_IO, "%s: cannot flush the temporary file %s: %s", path, tmp,
                   strerror(err));
  }
  close(fd);
  if (rename(tmp, path) != 0) {
    int err = errno;
    pg_atomic_discard(tmp);
    return pg_fail(PG_ERR_IO, "%s: cannot rename %s over it: %s (the previous file is unchanged)",
                   path, tmp, strerror(err));
  }
  sync_parent_dir(path);
  return PG_OK;
}

void pg_atomic_discard(const char *tmp) {
  struct stat st;
  /* only a regular file: never remove a folder someone put at that name */
  if (lstat(tmp, &st) == 0 && S_ISREG(st.st_mode)) unlink(tmp);
}
