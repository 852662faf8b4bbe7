#include "patchgrad/io/limits.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

bool pg_mul_i64(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

/* One "Key:   123 kB" line of /proc/meminfo, in bytes; -1 when absent. */
static int64_t meminfo_bytes(const char *key) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  int64_t v = -1;
  size_t len = strlen(key);
  while (fgets(line, sizeof line, f)) {
    long long kb;
    if (!strncmp(line, key, len) && line[len] == ':' && sscanf(line + len + 1, "%lld", &kb) == 1) {
      v = kb >= 0 && kb < INT64_MAX / 1024 ? (int64_t)kb * 1024 : -1;
      break;
    }
  }
  fclose(f);
  return v;
}

/* A single number in a file (cgroup v2 interface files); -1 when absent or "max". */
static int64_t file_number(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long long v = -1;
  if (fscanf(f, "%lld", &v) != 1) v = -1;
  fclose(f);
  return v;
}

static int64_t least(int64_t a, int64_t b) { return b >= 0 && (a < 0 || b < a) ? b : a; }

int64_t pg_memory_available(void) {
  int64_t avail = meminfo_bytes("MemAvailable");
  if (avail < 0) {
    long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && size > 0 && pages < INT64_MAX / size) avail = (int64_t)pages * size;
  }
  int64_t max = file_number("/sys/fs/cgroup/memory.max");
  int64_t cur = file_number("/sys/fs/cgroup/memory.current");
  if (max >= 0 && cur >= 0) avail = least(avail, max > cur ? max - cur : 0);
  const int limits[] = {RLIMIT_AS, RLIMIT_DATA};
  for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
    struct rlimit r;
    if (getrlimit(limits[i], &r) == 0 && r.rlim_cur != RLIM_INFINITY && r.rlim_cur < INT64_MAX)
      avail = least(avail, (int64_t)r.rlim_cur);
  }
  return avail >= 0 ? avail : INT64_MAX; /* nothing known: no limit of ours */
}

char *pg_bytes_str(char *buf, size_t cap, double bytes) {
  const char *units[] = {"B", "KB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    u++;
  }
  if (u == 0) snprintf(buf, cap, "%.0f B", bytes);
  else snprintf(buf, cap, "%.1f %s", bytes, units[u]);
  return buf;
}

pg_status pg_check_memory(const char *what, int64_t bytes) {
  int64_t avail = pg_memory_available();
  if (bytes <= avail) return PG_OK;
  char need[32], have[32];
  return pg_fail(PG_ERR_MEMORY, "%s needs %s of memory, %s available", what,
                 pg_bytes_str(need, sizeof need, (double)bytes),
                 pg_bytes_str(have, sizeof have, (double)avail));
}

pg_status pg_shape_bytes(const char *what, int ndim, const int64_t *shape, int64_t elem_size,
                         int64_t *numel, int64_t *bytes) {
  int64_t n = 1;
  bool ok = true;
  for (int i = 0; i < ndim; i++) ok = ok && shape[i] >= 0 && pg_mul_i64(n, shape[i], &n);
  int64_t b = 0;
  ok = ok && pg_mul_i64(n, elem_size, &b);
  if (!ok) {
    long long s[16];
    int nd = ndim < 16 ? ndim : 16;
    for (int i = 0; i < nd; i++) s[i] = shape[i];
    char str[256];
    return pg_fail(PG_ERR_FORMAT, "%s: shape %s holds more elements than a 64-bit size can count",
                   what, pg_shape_str(str, sizeof str, nd, s));
  }
  if (numel) *numel = n;
  if (bytes) *bytes = b;
  return PG_OK;
}
