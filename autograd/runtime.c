#include "patchgrad/autograd/runtime.h"

#include <blis.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "patchgrad/autograd/blas_internal.h"
#include "patchgrad/autograd/runtime_internal.h"

pg_runtime_options pg_runtime_defaults(void) { return (pg_runtime_options){.blis_arch = true}; }

static char blis_choice[160] = "BLIS's own detection (pg_runtime_init was not asked to choose)";

const char *pg_runtime_blis_choice(void) { return blis_choice; }

/* Seconds of the best of five 256^3 products on one thread, in a child
 * process whose BLIS starts with BLIS_ARCH_TYPE = arch (NULL: BLIS's own
 * detection); a negative value when the child could not run. The child
 * writes the figure and the kernel set's name through a pipe. */
static double time_kernels(const char *arch, char *name, size_t cap) {
  int fd[2];
  if (pipe(fd)) return -1;
  const pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]);
    close(fd[1]);
    return -1;
  }
  if (pid == 0) {
    close(fd[0]);
    if (arch) setenv("BLIS_ARCH_TYPE", arch, 1);
    enum { N = 256 };
    static float a[N * N], b[N * N], c[N * N];
    for (int i = 0; i < N * N; i++) a[i] = b[i] = (float)(i % 7) * 0.25f;
    float one = 1.0f, zero = 0.0f;
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    double best = 1e9;
    for (int rep = 0; rep < 6; rep++) {
      struct timespec t0, t1;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, N, N, N, &one, a, N, 1, b, N, 1, &zero, c, N, 1,
                   NULL, &rntm);
      clock_gettime(CLOCK_MONOTONIC, &t1);
      const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
      if (rep > 0 && s < best) best = s; /* the first call sets BLIS up */
    }
    char msg[64];
    /* the kernel set's name is known only after BLIS's first product */
    const int len = snprintf(msg, sizeof msg, "%.9f %s", best, bli_arch_string(bli_arch_query_id()));
    if (write(fd[1], msg, (size_t)len) != len) _exit(1);
    _exit(0);
  }
  close(fd[1]);
  char msg[64] = "";
  ssize_t got = 0, r;
  while (got < (ssize_t)sizeof msg - 1 && (r = read(fd[0], msg + got, sizeof msg - 1 - (size_t)got)) > 0)
    got += r;
  close(fd[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  msg[got > 0 ? got : 0] = '\0';
  double s = -1;
  char kname[32] = "";
  if (sscanf(msg, "%lf %31s", &s, kname) != 2) return -1;
  snprintf(name, cap, "%s", kname);
  return s;
}

/* What the timing decided. */
typedef struct {
  bool use_skx;
  double own_gflops, skx_gflops;
  char own_name[32];
} kernel_choice;

static void measure_choice(const char *skx_id, kernel_choice *c) {
  char skx_name[32] = "?";
  memset(c, 0, sizeof *c);
  snprintf(c->own_name, sizeof c->own_name, "?");
  const double own = time_kernels(NULL, c->own_name, sizeof c->own_name);
  const double skx = time_kernels(skx_id, skx_name, sizeof skx_name);
  const double gflop = 2.0 * 256 * 256 * 256 * 1e-9;
  c->own_gflops = own > 0 ? gflop / own : 0.0;
  c->skx_gflops = skx > 0 ? gflop / skx : 0.0;
  c->use_skx = skx > 0 && (own <= 0 || skx < 0.95 * own);
}

void pg_cpu_model(char *buf, size_t cap) {
  unsigned r[12] = {0};
  snprintf(buf, cap, "unknown");
#if defined(__x86_64__)
  unsigned max_ext = __get_cpuid_max(0x80000000u, NULL);
  if (max_ext < 0x80000004u) return;
  for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
  char brand[49];
  memcpy(brand, r, 48);
  brand[48] = '\0';
  const char *b = brand;
  while (*b == ' ') b++;
  snprintf(buf, cap, "%s", b);
  for (char *p = buf; *p; p++)
    if (*p == '\n' || *p == '=') *p = ' ';
#endif
}

int pg_cache_file_open(const char *name, char *path, size_t cap) {
  const char *dir = getenv("PG_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char base[900];
  if (dir && *dir) snprintf(base, sizeof base, "%s", dir);
  else if (xdg && *xdg) snprintf(base, sizeof base, "%s/patchgrad", xdg);
  else if (home && *home) snprintf(base, sizeof base, "%s/.cache/patchgrad", home);
  else return -1;
  /* the folder and its parent (XDG's cache folder may not exist yet) */
  char parent[900];
  snprintf(parent, sizeof parent, "%s", base);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    if (mkdir(parent, 0755) && errno != EEXIST) return -1;
  }
  if (mkdir(base, 0755) && errno != EEXIST) return -1;
  snprintf(path, cap, "%s/%s", base, name);
  return open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
}

/* The kept choice, when the file holds one for this CPU. */
static bool read_choice(int fd, const char *cpu, kernel_choice *c) {
  char text[512];
  const ssize_t n = pread(fd, text, sizeof text - 1, 0);
  if (n <= 0) return false;
  text[n] = '\0';
  char kept_cpu[128] = "", kernels[32] = "";
  memset(c, 0, sizeof *c);
  if (sscanf(text, "cpu=%127[^\n]\nkernels=%31s\nown=%31s %lf\nskx=%lf", kept_cpu, kernels, c->own_name,
             &c->own_gflops, &c->skx_gflops) != 5)
    return false;
  if (strcmp(kept_cpu, cpu) || (strcmp(kernels, "skx") && strcmp(kernels, "own"))) return false;
  c->use_skx = !strcmp(kernels, "skx");
  return true;
}

static void write_choice(int fd, const char *cpu, const kernel_choice *c) {
  char text[512];
  const int n = snprintf(text, sizeof text,
                         "cpu=%s\nkernels=%s\nown=%s %.1f\nskx=%.1f\n"
                         "# patchgrad: BLIS's kernel set for this CPU, chosen by timing a 256^3 sgemm on one\n"
                         "# thread with BLIS's own choice and with skx. Delete this file to measure again.\n",
                         cpu, c->use_skx ? "skx" : "own", c->own_name, c->own_gflops, c->skx_gflops);
  if (n > 0 && ftruncate(fd, 0) == 0 && pwrite(fd, text, (size_t)n, 0) == n) fsync(fd);
}

/* On AMD CPUs with AVX-512, BLIS's own detection can fall back to its slow
 * generic kernels (runtime.h); there the kernel set is chosen by timing
 * BLIS's choice against skx, each in a child process (BLIS fixes its kernels
 * at its first call, so they cannot both be tried in this one), and the
 * faster one is kept: skx only when it is more than 5% faster. */
static void choose_blis_arch(void) {
#if defined(__x86_64__)
  if (getenv("BLIS_ARCH_TYPE")) {
    snprintf(blis_choice, sizeof blis_choice, "BLIS_ARCH_TYPE=%s, set by the user", getenv("BLIS_ARCH_TYPE"));
    return;
  }
  unsigned max_leaf, vendor_b, vendor_c, vendor_d;
  if (!__get_cpuid(0, &max_leaf, &vendor_b, &vendor_c, &vendor_d)) return;
  const bool amd = vendor_b == 0x68747541u; /* "Auth" of "AuthenticAMD" */
  __builtin_cpu_init();
  /* the instruction sets of the skx kernels, with the OS saving zmm state */
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  if (!amd || !avx512) {
    snprintf(blis_choice, sizeof blis_choice, "BLIS's own detection (not an AMD CPU with AVX-512)");
    return;
  }
  char skx_id[16];
  snprintf(skx_id, sizeof skx_id, "%d", (int)BLIS_ARCH_SKX);
  /* The choice is measured once per machine and kept (runtime.h), so that
   * every later run uses the same kernels, hence the same rounding. */
  char cpu[64];
  pg_cpu_model(cpu, sizeof cpu);
  char path[1024];
  const int fd = pg_cache_file_open("blis-kernels", path, sizeof path);
  if (fd >= 0) flock(fd, LOCK_EX); /* a second process waits for the first one's figures */
  kernel_choice c;
  const bool cached = fd >= 0 && read_choice(fd, cpu, &c);
  if (!cached) {
    measure_choice(skx_id, &c);
    if (fd >= 0) write_choice(fd, cpu, &c);
  }
  if (fd >= 0) {
    flock(fd, LOCK_UN);
    close(fd);
  }
  if (c.use_skx) setenv("BLIS_ARCH_TYPE", skx_id, 0);
  const char *how = cached ? "measured on this machine earlier" : fd >= 0 ? "measured now" : "measured now, not kept";
  if (c.use_skx)
    snprintf(blis_choice, sizeof blis_choice, "skx, %s: %.0f GFLOP/s against %s's %.0f", how, c.skx_gflops,
             c.own_name, c.own_gflops);
  else
    snprintf(blis_choice, sizeof blis_choice, "%s (BLIS's own), %s: %.0f GFLOP/s against skx's %.0f", c.own_name, how,
             c.own_gflops, c.skx_gflops);
#endif
}

pg_status pg_runtime_init(const pg_runtime_options *opts) {
  const pg_runtime_options o = opts ? *opts : pg_runtime_defaults();
  if (pg_blis_started())
    return pg_fail(PG_ERR_STATE, "pg_runtime_init: BLIS has run already (a matrix product or "
                                 "pg_set_threads came first), so its kernels are chosen; call it "
                                 "at the start of main");
  if (o.blis_arch) choose_blis_arch();
  return PG_OK;
}
