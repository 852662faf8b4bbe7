#include "testutil.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/autograd/runtime.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/data/synthetic.h"
#include "patchgrad/vae/autoencode.h"

/* Every test program starts as the patchgrad command does
 * (autograd/runtime.h), so that the tests run the BLIS kernels the command
 * runs. tests/test_runtime.c, which does not link this file, checks the
 * library alone. */
__attribute__((constructor)) static void start_like_the_command(void) { pg_runtime_init(NULL); }

void pg_test_assert_close(const float *got, const float *want, int64_t n, double atol,
                          double rtol, const char *file, int line) {
  for (int64_t i = 0; i < n; i++) {
    double g = got[i], w = want[i];
    if (!(fabs(g - w) <= atol + rtol * fabs(w))) {
      char msg[256];
      snprintf(msg, sizeof msg, "element %lld: got %.9g, want %.9g (atol %g, rtol %g)",
               (long long)i, g, w, atol, rtol);
      print_error("%s\n", msg); /* before _fail, which does not return */
      _fail(file, line);
    }
  }
}

void pg_test_assert_gradcheck(pg_fn f, void *user, int n, pg_tensor *const *inputs,
                              const pg_gradcheck_opts *opts, const char *file, int line) {
  pg_gradcheck_result r;
  pg_status st = pg_gradcheck(f, user, n, inputs, opts, &r);
  if (st) {
    print_error("gradcheck could not run: %s\n", pg_last_error());
    _fail(file, line);
  }
  if (!r.ok) {
    print_error("gradcheck: input %d element %lld: analytic %.9g numeric %.9g (excess %.3g, %ld checked)\n",
                r.worst_input, (long long)r.worst_index, r.worst_analytic, r.worst_numeric,
                r.max_excess, r.checked);
    _fail(file, line);
  }
  if (r.checked == 0) {
    print_error("gradcheck compared no element\n");
    _fail(file, line);
  }
}

pg_tensor *pg_test_randn(int ndim, const int64_t *shape, float scale, uint64_t seed) {
  pg_tensor *t = pg_tensor_new(ndim, shape, true);
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  pg_fill_normal(t, 0.0f, scale, &rng);
  return t;
}

void pg_test_assert_error_contains(const char *needle, const char *file, int line) {
  if (!strstr(pg_last_error(), needle)) {
    print_error("error message \"%s\" does not contain \"%s\"\n", pg_last_error(), needle);
    _fail(file, line);
  }
}

const char *pg_test_data(const char *name) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/%s", PG_TEST_DATA, name);
  return path;
}

void pg_test_assert_uniform(const pg_tensor *t, double bound, const char *file, int line) {
  double sum = 0, sq = 0, peak = 0;
  for (int64_t i = 0; i < t->numel; i++) {
    double v = t->data[i];
    if (!(fabs(v) <= bound)) {
      print_error("element %lld = %.9g is outside [-%g, %g]\n", (long long)i, v, bound, bound);
      _fail(file, line);
    }
    sum += v, sq += v * v;
    peak = fmax(peak, fabs(v));
  }
  double n = (double)t->numel, mean = sum / n, var = sq / n - mean * mean;
  /* mean within 4 standard errors; variance bound^2/3 within 5% (its
   * standard error is about 0.9/sqrt(n) relative, < 1% at the sizes tested) */
  bool mean_ok = fabs(mean) < 4.0 * bound / sqrt(3.0 * n);
  bool var_ok = fabs(var / (bound * bound / 3.0) - 1.0) < 0.05;
  bool range_ok = peak > 0.99 * bound; /* the full range is used */
  if (!mean_ok || !var_ok || !range_ok) {
    print_error("not uniform(-%g, %g): mean %.4g, variance %.4g (want %.4g), largest |value| %.4g\n",
                bound, bound, mean, var, bound * bound / 3.0, peak);
    _fail(file, line);
  }
}

void pg_test_unpatchify_reference(const pg_tensor *tokens, const pg_tensor *w, int64_t stride,
                                  int64_t H, int64_t W, double *out) {
  const int64_t B = tokens->shape[0], GH = tokens->shape[1], GW = tokens->shape[2];
  const int64_t E = tokens->shape[3], C = w->shape[1], P = w->shape[2], S = stride;
  for (int64_t n = 0; n < B; n++)
    for (int64_t i = 0; i < GH; i++)
      for (int64_t j = 0; j < GW; j++)
        for (int64_t e = 0; e < E; e++) {
          double v = tokens->data[((n * GH + i) * GW + j) * E + e];
          for (int64_t c = 0; c < C; c++)
            for (int64_t ki = 0; ki < P; ki++)
              for (int64_t kj = 0; kj < P; kj++)
                out[((n * H + i * S + ki) * W + j * S + kj) * C + c] +=
                    v * w->data[((e * C + c) * P + ki) * P + kj];
        }
}

static char tmpdir[256];

int pg_test_tmpdir_make(const char *name) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/pg_test_%s_XXXXXX", name);
  return mkdtemp(tmpdir) ? 0 : -1;
}

int pg_test_tmpdir_remove(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

const char *pg_test_tmpdir(void) { return tmpdir; }

const char *pg_test_tmp(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

bool pg_test_exists(const char *path) { return access(path, F_OK) == 0; }

int pg_test_temporaries(const char *path) {
  char dir[512];
  const char *slash = strrchr(path, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
  const char *base = slash ? slash + 1 : path;
  char prefix[512];
  snprintf(prefix, sizeof prefix, "%s.patchgrad-", base);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (!strncmp(e->d_name, prefix, strlen(prefix)) && len > 4 && !strcmp(e->d_name + len - 4, ".tmp"))
      n++;
  }
  closedir(d);
  return n;
}

const char *pg_test_temporary_of(const char *path) {
  static char buf[4][600];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s.patchgrad-%ld.tmp", path, (long)getpid());
  return buf[k];
}

int pg_test_run_check(const char *file, int *passed, int *failed) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s/patchgrad check '%s' 2>&1", PG_BUILD_DIR, file);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char line[1024];
  *passed = *failed = -1;
  while (fgets(line, sizeof line, p)) {
    fputs(line, stdout);
    sscanf(line, "%d passed, %d failed", passed, failed);
  }
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int pg_test_run(char *out, size_t cap, const char *fmt, ...) {
  char cmd[16384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  char full[16500];
  snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
  FILE *p = popen(full, "r");
  assert_non_null(p);
  size_t n = 0;
  int ch;
  while ((ch = fgetc(p)) != EOF)
    if (n + 1 < cap) out[n++] = (char)ch;
  out[n] = '\0';
  printf("$ %s\n%s", cmd, out);
  int status = pclose(p);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

typedef struct {
  hid_t dst;
  int n;
  const char *const *ops;
  int copied;
} copy_state;

static herr_t copy_case_if_listed(hid_t root, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  copy_state *s = data;
  hid_t g = H5Gopen2(root, name, H5P_DEFAULT);
  if (g < 0) return 0;
  char op[64] = "";
  pg_h5_attr_string(g, "op", op, sizeof op);
  H5Gclose(g);
  for (int i = 0; i < s->n; i++)
    if (!strcmp(op, s->ops[i])) {
      if (H5Ocopy(root, name, s->dst, name, H5P_DEFAULT, H5P_DEFAULT) < 0) return -1;
      s->copied++;
    }
  return 0;
}

int pg_test_copy_cases(const char *src, const char *dst, int n, const char *const *ops) {
  hid_t in = pg_h5_open(src, false);
  if (in < 0) fail_msg("%s", pg_last_error());
  hid_t out = H5Fcreate(dst, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(out >= 0);
  copy_state s = {out, n, ops, 0};
  hsize_t idx = 0;
  assert_true(H5Literate(in, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_case_if_listed, &s) >= 0);
  H5Fclose(out);
  H5Fclose(in);
  return s.copied;
}

int pg_test_mpi_run(pg_dist *dist, int *argc, char ***argv, const char *name,
                    const struct CMUnitTest *tests, size_t n, CMFixtureFunction setup,
                    CMFixtureFunction teardown) {
  if (pg_dist_init(dist, argc, argv)) {
    fprintf(stderr, "%s\n", pg_last_error());
    return 1;
  }
  printf("rank %d of %d (MPI %s)\n", dist->rank, dist->size, pg_dist_built_with_mpi() ? "built in" : "absent");
  double failed = _cmocka_run_group_tests(name, tests, n, setup, teardown);
  pg_dist_allreduce_sum(dist, &failed, 1);
  pg_dist_finalize(dist);
  return failed > 0 ? 1 : 0;
}

int pg_test_make_images(const char *path, int64_t count, uint64_t seed) {
  pg_synthetic_opts so;
  pg_synthetic_opts_init(&so);
  so.count = count;
  so.size = 8;
  so.channels = 4;
  so.classes = 4;
  so.seed = seed;
  return pg_make_synthetic(&so, path) ? -1 : 0;
}

int pg_test_save_tiny_vae(const char *images_path, const char *vae_path) {
  pg_latents *ds = pg_latents_open(images_path);
  if (!ds) return -1;
  pg_vae_data_info data = pg_vae_data_info_of(&ds->info);
  pg_latents_close(ds);
  const pg_vae_config c = {.height = 16, .width = 16, .in_channels = 1, .patch_size = 4,
                           .latent_channels = 2, .hidden = 16, .encoder_depth = 1, .decoder_depth = 1,
                           .heads = 2, .mlp_ratio = 2};
  pg_rng rng;
  pg_rng_seed(&rng, 3);
  pg_vae m;
  if (pg_vae_init(&m, &c, &rng)) return -1;
  pg_status st = pg_vae_save(vae_path, &m, &data, 1e-4, 7);
  pg_vae_free(&m);
  return st ? -1 : 0;
}
