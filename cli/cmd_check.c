/* patchgrad check FILE.h5 [--atol A] [--rtol R] [--verbose]
 * Replays every case of a case file (casefile.md) and reports, per case, the
 * worst absolute and relative error of each checked array and PASS/FAIL.
 * Tolerances: command-line flag > case attribute > root attribute > default
 * (atol 1e-5 + rtol 1e-4; for `dit` 1e-4 + 1e-3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_ops.h"
#include "patchgrad/io/h5util.h"

static const struct {
  const char *op;
  pg_case_handler run;
  double atol, rtol; /* this op's default tolerance */
} handlers[] = {
    {"patchify", pg_check_patchify, 1e-5, 1e-4},
    {"unpatchify", pg_check_unpatchify, 1e-5, 1e-4},
    /* optimizers: clarification 1's float32-vs-float64 trajectory tolerance */
    {"sgd", pg_check_sgd, 1e-6, 1e-5},
    {"adam", pg_check_adam, 1e-6, 1e-5},
    {"adamw", pg_check_adamw, 1e-6, 1e-5},
    {"linear", pg_check_linear, 1e-5, 1e-4},
    {"layernorm", pg_check_layernorm, 1e-5, 1e-4},
    {"attention", pg_check_attention, 1e-5, 1e-4},
    {"attention_head", pg_check_attention_head, 1e-5, 1e-4},
    {"dit", pg_check_dit, 1e-4, 1e-3},
    {"gelu", pg_check_gelu, 1e-5, 1e-4},
    {"silu", pg_check_silu, 1e-5, 1e-4},
    {"softmax", pg_check_softmax, 1e-5, 1e-4},
    {"mse", pg_check_mse, 1e-5, 1e-4},
    /* patchgrad's own op names (tests/data/ops_torch.h5) */
    {"add", pg_check_add, 1e-5, 1e-4},
    {"sub", pg_check_sub, 1e-5, 1e-4},
    {"mul", pg_check_mul, 1e-5, 1e-4},
    {"div", pg_check_div, 1e-5, 1e-4},
    {"matmul", pg_check_matmul, 1e-5, 1e-4},
    {"sum", pg_check_sum, 1e-5, 1e-4},
    {"mean", pg_check_mean, 1e-5, 1e-4},
    {"embedding", pg_check_embedding, 1e-5, 1e-4},
    {"cross_entropy", pg_check_cross_entropy, 1e-5, 1e-4},
    {"vit", pg_check_vit, 1e-4, 1e-3},
    {"reparameterize", pg_check_reparameterize, 1e-5, 1e-4},
    {"kl_normal", pg_check_kl_normal, 1e-5, 1e-4},
    {"vae", pg_check_vae, 1e-4, 1e-3},
    {NULL, NULL, 0, 0},
};

static int usage(FILE *f) {
  fprintf(f, "usage: patchgrad check FILE.h5 [--atol A] [--rtol R] [--verbose]\n"
             "Replays every case of an HDF5 case file; exits 1 when any case fails.\n");
  return f == stdout ? 0 : 2;
}

typedef struct {
  double atol, rtol;
  bool atol_set, rtol_set, verbose;
  double root_atol, root_rtol;
  bool root_atol_set, root_rtol_set;
  int passed, failed;
} check_run;

static void report(const pg_case *c, bool verbose) {
  bool pass = pg_case_passed(c);
  printf("%-4s  %-40s %s\n", pass ? "PASS" : "FAIL", c->name, c->op[0] ? c->op : "?");
  for (int i = 0; i < c->n_results; i++) {
    const pg_case_result *r = &c->results[i];
    printf("        %-44s max_abs %.3e  max_rel %.3e%s\n", r->path, r->max_abs, r->max_rel,
           r->pass ? "" : "  <- beyond tolerance");
    if (verbose || !r->pass)
      printf("        %-44s worst element %lld: got %.9g, want %.9g (atol %g, rtol %g)\n", "",
             (long long)r->worst_index, r->worst_got, r->worst_want, c->atol, c->rtol);
  }
  if (c->error) printf("        error: case '%s': %s\n", c->name, c->error_msg);
  else if (c->n_results == 0) printf("        error: case '%s': no expected array to check\n", c->name);
}

static herr_t visit_case(hid_t root, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  check_run *run = data;
  H5O_info_t oi;
  if (H5Oget_info_by_name(root, name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_GROUP)
    return 0; /* only groups are cases */
  hid_t g = H5Gopen2(root, name, H5P_DEFAULT);
  char op[64] = "";
  pg_h5_attr_string(g, "op", op, sizeof op);
  double atol = 1e-5, rtol = 1e-4;
  pg_case_handler handler = NULL;
  for (size_t i = 0; handlers[i].op; i++)
    if (!strcmp(handlers[i].op, op)) {
      handler = handlers[i].run;
      atol = handlers[i].atol;
      rtol = handlers[i].rtol;
    }
  if (run->root_atol_set) atol = run->root_atol;
  if (run->root_rtol_set) rtol = run->root_rtol;
  if (run->atol_set) atol = run->atol;
  if (run->rtol_set) rtol = run->rtol;
  pg_case c;
  pg_case_begin(&c, g, name, atol, rtol, run->atol_set, run->rtol_set);
  if (!c.error && !handler) pg_case_fail(&c, "unknown op '%s'", c.op);
  if (!c.error) {
    pg_clear_error();
    handler(&c);
  }
  report(&c, run->verbose);
  if (pg_case_passed(&c)) run->passed++;
  else run->failed++;
  pg_case_end(&c);
  H5Gclose(g);
  return 0;
}

int pg_cmd_check(int argc, char **argv) {
  check_run run = {0};
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout);
    if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
      run.verbose = true;
    } else if ((!strcmp(argv[i], "--atol") || !strcmp(argv[i], "--rtol")) && i + 1 < argc) {
      char *end;
      double v = strtod(argv[i + 1], &end);
      if (*end || v < 0) {
        fprintf(stderr, "patchgrad check: %s needs a number >= 0, got '%s'\n", argv[i], argv[i + 1]);
        return 2;
      }
      if (argv[i][2] == 'a') run.atol = v, run.atol_set = true;
      else run.rtol = v, run.rtol_set = true;
      i++;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "patchgrad check: unknown option '%s'\n", argv[i]);
      return usage(stderr);
    } else if (!path) {
      path = argv[i];
    } else {
      fprintf(stderr, "patchgrad check: one file at a time (got '%s' and '%s')\n", path, argv[i]);
      return 2;
    }
  }
  if (!path) return usage(stderr);
  hid_t file = pg_h5_open(path, false);
  if (file < 0) {
    fprintf(stderr, "patchgrad check: %s\n", pg_last_error());
    return 2;
  }
  run.root_atol_set = pg_h5_attr_double(file, "atol", &run.root_atol) == 1;
  run.root_rtol_set = pg_h5_attr_double(file, "rtol", &run.root_rtol) == 1;
  hsize_t idx = 0;
  H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_case, &run);
  H5Fclose(file);
  if (run.passed + run.failed == 0) {
    fprintf(stderr, "patchgrad check: %s holds no case (no group at its root)\n", path);
    printf("0 passed, 0 failed\n");
    return 1;
  }
  printf("%d passed, %d failed\n", run.passed, run.failed);
  return run.failed ? 1 : 0;
}
