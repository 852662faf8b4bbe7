#include "guard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char lock_path[4096];

/* The pid written in a lock file, or 0 when it holds none. */
static long lock_owner(const char *path) {
  FILE *f = fopen(path, "r");
  long pid = 0;
  if (f) {
    if (fscanf(f, "%ld", &pid) != 1) pid = 0;
    fclose(f);
  }
  return pid;
}

bool pg_cli_lock_out(const char *who, const char *dir) {
  if (!dir) return true;
  if (mkdir(dir, 0755) && errno != EEXIST) {
    fprintf(stderr, "patchgrad %s: cannot create the output folder %s: %s\n", who, dir, strerror(errno));
    return false;
  }
  char path[sizeof lock_path];
  if (snprintf(path, sizeof path, "%s/.lock", dir) >= (int)sizeof path) {
    fprintf(stderr, "patchgrad %s: the output folder's name is too long (%zu characters, at most %zu)\n", who,
            strlen(dir), sizeof path - 7);
    return false;
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0) {
      char pid[32];
      const int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
      const bool ok = write(fd, pid, (size_t)n) == n;
      close(fd);
      if (!ok) {
        unlink(path);
        fprintf(stderr, "patchgrad %s: cannot write the lock %s\n", who, path);
        return false;
      }
      snprintf(lock_path, sizeof lock_path, "%s", path);
      return true;
    }
    if (errno != EEXIST) {
      fprintf(stderr, "patchgrad %s: cannot create the lock %s: %s\n", who, path, strerror(errno));
      return false;
    }
    const long owner = lock_owner(path);
    if (owner > 0 && (kill((pid_t)owner, 0) == 0 || errno == EPERM)) {
      fprintf(stderr,
              "patchgrad %s: the output folder %s is in use by another run (pid %ld, lock %s); "
              "wait for it to end or choose another --out\n",
              who, dir, owner, path);
      return false;
    }
    fprintf(stderr, "patchgrad %s: note: taking over the stale lock %s (pid %ld is not running)\n", who, path,
            owner);
    unlink(path);
  }
  fprintf(stderr, "patchgrad %s: the output folder %s is being locked by another run (%s)\n", who, dir, path);
  return false;
}

void pg_cli_unlock_out(void) {
  if (lock_path[0]) unlink(lock_path);
  lock_path[0] = 0;
}

bool pg_cli_check_threads(const char *who, int64_t threads) {
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores > 0 && threads > cores) {
    fprintf(stderr, "patchgrad %s: --threads %lld is more than this machine's %ld cores\n", who,
            (long long)threads, cores);
    return false;
  }
  return true;
}

/* Bytes of memory available to a new run. */
static double available_bytes(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  double kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
  if (f) fclose(f);
  if (kb >= 0) return kb * 1024;
  return (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
}

bool pg_cli_check_memory(const char *who, double params, int copies) {
  const double need = params * (double)copies * 4, have = available_bytes();
  if (have > 0 && need > have) {
    fprintf(stderr,
            "patchgrad %s: the model needs at least %.3g GB (%.4g parameters x %d float32 copies: weights, "
            "gradients, optimizer moments, EMA), more than the %.3g GB of memory available\n",
            who, need / 1e9, params, copies, have / 1e9);
    return false;
  }
  return true;
}
