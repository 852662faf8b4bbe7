#include "patchgrad/io/atomic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "PATH" + TMP_MARK + pid + TMP_END names a temporary of this program. */
#define TMP_MARK ".patchgrad-"
#define TMP_END ".tmp"
/* The longest suffix: the mark, a pid (at most 10 digits), the end. */
#define TMP_SUFFIX_MAX (sizeof TMP_MARK - 1 + 10 + sizeof TMP_END - 1)

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* The folder of path ("." for a bare name) and where its file name starts. */
static void split_path(const char *path, char *dir, size_t cap, const char **base) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, cap, ".");
  else if (slash == path) snprintf(dir, cap, "/");
  else snprintf(dir, cap, "%.*s", (int)(slash - path), path);
  *base = slash ? slash + 1 : path;
}

pg_status pg_atomic_check_path(const char *path) {
  if (!path || !path[0]) return pg_fail(PG_ERR_ARG, "an output path may not be empty");
  size_t len = strlen(path);
  if (path[len - 1] == '/')
    return pg_fail(PG_ERR_ARG, "%s: an output path must name a file, not a folder", path);
  char dir[PATH_MAX];
  const char *base;
  split_path(path, dir, sizeof dir, &base);
  long name_max = pathconf(dir, _PC_NAME_MAX); /* the folder's file system decides */
  if (name_max <= 0) name_max = 255;
  if (len + TMP_SUFFIX_MAX >= PATH_MAX || len + TMP_SUFFIX_MAX >= PG_ATOMIC_PATH_CAP)
    return pg_fail(PG_ERR_ARG, "%.60s...: output path of %zu characters is too long (at most %zu, "
                               "PATH_MAX %d less the %zu of its temporary name)",
                   path, len, (size_t)PATH_MAX - 1 - TMP_SUFFIX_MAX, PATH_MAX, TMP_SUFFIX_MAX);
  size_t base_len = strlen(base);
  if (base_len + TMP_SUFFIX_MAX > (size_t)name_max)
    return pg_fail(PG_ERR_ARG, "%s: file name of %zu characters is too long (at most %zu: "
                               "NAME_MAX %ld less the %zu of its temporary name)",
                   path, base_len, (size_t)name_max - TMP_SUFFIX_MAX, name_max, TMP_SUFFIX_MAX);
  return PG_OK;
}

/* The pid of a temporary of `base` named NAME, or -1 when NAME is not one. */
static long temporary_pid(const char *name, const char *base) {
  size_t bl = strlen(base), ml = sizeof TMP_MARK - 1;
  if (strncmp(name, base, bl) || strncmp(name + bl, TMP_MARK, ml)) return -1;
  const char *digits = name + bl + ml;
  size_t n = strspn(digits, "0123456789");
  if (n == 0 || n > 10 || strcmp(digits + n, TMP_END)) return -1;
  return strtol(digits, NULL, 10);
}

/* Removes path's temporaries whose process is gone. Best effort: a folder
 * that cannot be listed is simply not cleaned. */
static void remove_stale(const char *path) {
  char dir[PATH_MAX];
  const char *base;
  split_path(path, dir, sizeof dir, &base);
  DIR *d = opendir(dir);
  if (!d) return;
  pid_t self = getpid();
  struct dirent *e;
  while ((e = readdir(d))) {
    long pid = temporary_pid(e->d_name, base);
    if (pid <= 0 || pid == self) continue; /* our own name is rewritten anyway */
    if (pid <= INT_MAX && (kill((pid_t)pid, 0) == 0 || errno != ESRCH)) continue; /* alive */
    char stale[PATH_MAX + 256];
    snprintf(stale, sizeof stale, "%s/%s", dir, e->d_name);
    pg_atomic_discard(stale);
  }
  closedir(d);
}

pg_status pg_atomic_begin(const char *path, char *tmp, size_t cap) {
  if (pg_atomic_check_path(path)) return pg_last_status();
  int n = snprintf(tmp, cap, "%s" TMP_MARK "%ld" TMP_END, path, (long)getpid());
  if (n < 0 || (size_t)n >= cap)
    return pg_fail(PG_ERR_ARG, "%s: path too long for its temporary name (%zu characters)",
                   path, cap);
  remove_stale(path);
  return PG_OK;
}

/* fsync of the folder holding path, so the rename itself survives a crash. */
static void sync_parent_dir(const char *path) {
  char dir[PATH_MAX];
  const char *base;
  split_path(path, dir, sizeof dir, &base);
  int fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    fsync(fd); /* best effort: some file systems refuse fsync on folders */
    close(fd);
  }
}

static pg_status rename_into_place(const char *tmp, const char *path) {
  if (rename(tmp, path) != 0) {
    int err = errno;
    pg_atomic_discard(tmp);
    return pg_fail(PG_ERR_IO, "%s: cannot replace it: %s (the previous file is unchanged)", path, strerror(err));
  }
  sync_parent_dir(path);
  return PG_OK;
}

pg_status pg_atomic_commit(const char *tmp, const char *path) {
  int fd = open(tmp, O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    pg_atomic_discard(tmp);
    return pg_fail(PG_ERR_IO, "%s: cannot flush the new file to disk: %s (the previous file is unchanged)", path, strerror(err));
  }
  close(fd);
  return rename_into_place(tmp, path);
}

void pg_atomic_discard(const char *tmp) {
  struct stat st;
  /* only a regular file: never remove a folder someone put at that name */
  if (lstat(tmp, &st) == 0 && S_ISREG(st.st_mode)) unlink(tmp);
}

pg_status pg_atomic_write(const char *path, const void *data, size_t size) {
  char tmp[PG_ATOMIC_PATH_CAP];
  if (pg_atomic_begin(path, tmp, sizeof tmp)) return pg_last_status();
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0)
    return pg_fail(PG_ERR_IO, "%s: cannot create the file: %s", path, strerror(errno));
  const char *p = data;
  size_t left = size;
  int err = 0;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      err = w < 0 ? errno : ENOSPC;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  if (!err && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  if (err) {
    pg_atomic_discard(tmp);
    return pg_fail(PG_ERR_IO, "%s: writing %zu bytes failed: %s (the previous file is unchanged)", path, size, strerror(err));
  }
  return rename_into_place(tmp, path);
}

pg_status pg_check_regular_file(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    int err = errno;
    if (err == ENOENT || err == EACCES || err == ENOTDIR)
      return pg_fail(PG_ERR_IO, "%s: cannot open (no such file, or not readable)", path);
    return pg_fail(PG_ERR_IO, "%s: cannot open: %s", path, strerror(err));
  }
  if (S_ISREG(st.st_mode)) return PG_OK;
  const char *kind = S_ISFIFO(st.st_mode)  ? "a FIFO (named pipe)"
                     : S_ISDIR(st.st_mode) ? "a folder"
                     : S_ISCHR(st.st_mode) ? "a character device"
                     : S_ISBLK(st.st_mode) ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  return pg_fail(PG_ERR_IO, "%s: is %s, not a regular file: refused (reading it could block "
                            "forever or never end)", path, kind);
}
