/* patchgrad check FILE.h5 [--atol A] [--rtol R] [--verbose]
 * Replays every case of a case file (casefile.md) and reports, per case, the
 * worst absolute and relative error of each checked array and PASS/FAIL.
 * Tolerances: command-line flag > case attribute > root attribute > default
 * (atol 1e-5 + rtol 1e-4; for `dit` 1e-4 + 1e-3). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "check_ops.h"
#include "patchgrad/io/h5util.h"

static const struct {
  const char *op;
  pg_case_handler run;
  double atol, rtol; /* this op's default tolerance */
  const char *attrs; /* its settings (any other attribute is refused) */
} handlers[] = {
    {"patchify", pg_check_patchify, 1e-5, 1e-4, "data_dim patch_size stride bias"},
    {"unpatchify", pg_check_unpatchify, 1e-5, 1e-4,
     "data_dim patch_size stride bias output_spatial_shape"},
    /* optimizers: float32 updates against float64 PyTorch trajectories
     * (docs/casefile.md, "Tolerance") */
    {"sgd", pg_check_sgd, 1e-6, 1e-5, "lr momentum dampening nesterov weight_decay steps"},
    {"adam", pg_check_adam, 1e-6, 1e-5, "lr beta1 beta2 eps weight_decay steps amsgrad"},
    {"adamw", pg_check_adamw, 1e-6, 1e-5, "lr beta1 beta2 eps weight_decay steps amsgrad"},
    {"linear", pg_check_linear, 1e-5, 1e-4, "bias"},
    {"layernorm", pg_check_layernorm, 1e-5, 1e-4, "eps affine"},
    {"attention", pg_check_attention, 1e-5, 1e-4, "heads causal qkv_bias"},
    {"attention_head", pg_check_attention_head, 1e-5, 1e-4, "causal scale"},
    {"dit", pg_check_dit, 1e-4, 1e-3,
     "input_size in_channels patch_size hidden depth heads mlp_ratio num_classes"},
    {"gelu", pg_check_gelu, 1e-5, 1e-4, "approximate"},
    {"silu", pg_check_silu, 1e-5, 1e-4, ""},
    {"softmax", pg_check_softmax, 1e-5, 1e-4, ""},
    {"mse", pg_check_mse, 1e-5, 1e-4, ""},
    /* patchgrad's own op names (tests/data/ops_torch.h5) */
    {"add", pg_check_add, 1e-5, 1e-4, ""},
    {"sub", pg_check_sub, 1e-5, 1e-4, ""},
    {"mul", pg_check_mul, 1e-5, 1e-4, ""},
    {"div", pg_check_div, 1e-5, 1e-4, ""},
    {"matmul", pg_check_matmul, 1e-5, 1e-4, "trans_a trans_b"},
    {"sum", pg_check_sum, 1e-5, 1e-4, "axes keepdims"},
    {"mean", pg_check_mean, 1e-5, 1e-4, "axes keepdims"},
    {"embedding", pg_check_embedding, 1e-5, 1e-4, ""},
    {"cross_entropy", pg_check_cross_entropy, 1e-5, 1e-4, "label_smoothing"},
    {"vit", pg_check_vit, 1e-4, 1e-3,
     "height width in_channels patch_size hidden depth heads mlp_ratio num_classes single_head"},
    {"reparameterize", pg_check_reparameterize, 1e-5, 1e-4, ""},
    {"kl_normal", pg_check_kl_normal, 1e-5, 1e-4, ""},
    {"vae", pg_check_vae, 1e-4, 1e-3,
     "height width in_channels patch_size latent_channels hidden encoder_depth decoder_depth heads "
     "mlp_ratio beta"},
    {NULL, NULL, 0, 0, NULL},
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
  hsize_t visited; /* links of the root seen */
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

static void count(check_run *run, const pg_case *c) {
  report(c, run->verbose);
  if (pg_case_passed(c)) run->passed++;
  else run->failed++;
}

/* A case that cannot even be opened still counts, as failed. */
static void count_unreadable(check_run *run, const char *name, const char *fmt, const char *detail) {
  pg_case c;
  memset(&c, 0, sizeof c);
  c.name = name;
  pg_case_fail(&c, fmt, detail);
  count(run, &c);
}

static herr_t visit_case(hid_t root, const char *name, const H5L_info_t *info, void *data) {
  check_run *run = data;
  run->visited++;
  if (info->type != H5L_TYPE_HARD && info->type != H5L_TYPE_SOFT) {
    count_unreadable(run, name, "%s", "a link to another file (not followed)");
    return 0;
  }
  H5O_info_t oi;
  if (H5Oget_info_by_name(root, name, &oi, H5P_DEFAULT) < 0) {
    count_unreadable(run, name, "cannot be read (%s)", pg_h5_damage());
    return 0;
  }
  if (oi.type != H5O_TYPE_GROUP) return 0; /* only groups are cases */
  hid_t g = H5Gopen2(root, name, H5P_DEFAULT);
  if (g < 0) {
    count_unreadable(run, name, "cannot be opened (%s)", pg_h5_damage());
    return 0;
  }
  char op[64] = "";
  pg_h5_attr_string(g, "op", op, sizeof op);
  double atol = 1e-5, rtol = 1e-4;
  pg_case_handler handler = NULL;
  const char *attrs = "";
  for (size_t i = 0; handlers[i].op; i++)
    if (!strcmp(handlers[i].op, op)) {
      handler = handlers[i].run;
      atol = handlers[i].atol;
      rtol = handlers[i].rtol;
      attrs = handlers[i].attrs;
    }
  if (run->root_atol_set) atol = run->root_atol;
  if (run->root_rtol_set) rtol = run->root_rtol;
  if (run->atol_set) atol = run->atol;
  if (run->rtol_set) rtol = run->rtol;
  pg_case c;
  pg_case_begin(&c, g, name, atol, rtol, run->atol_set, run->rtol_set);
  if (!c.error && !handler) pg_case_fail(&c, "unknown op '%s'", c.op);
  pg_case_check_attrs(&c, attrs);
  if (!c.error) {
    pg_clear_error();
    handler(&c);
  }
  count(run, &c);
  pg_case_end(&c);
  H5Gclose(g);
  return 0;
}

/* A root tolerance: absent (false), or a finite number >= 0; anything else
 * stops the command (it would apply to every case). */
static bool root_tolerance(hid_t file, const char *path, const char *name, double *v, bool *set) {
  int rc = pg_h5_attr_double(file, name, v);
  *set = rc == 1;
  if (rc < 0) fprintf(stderr, "patchgrad check: %s: %s\n", path, pg_last_error());
  else if (rc == 1 && !(*v >= 0 && isfinite(*v)))
    fprintf(stderr, "patchgrad check: %s: attribute '%s' is %g (a tolerance must be finite and "
                    ">= 0)\n", path, name, *v);
  else return true;
  return false;
}

int pg_cmd_check(int argc, char **argv) {
  check_run run = {0};
  const char *path = NULL;
  pg_args a = pg_args_begin("check", argc, argv);
  while (pg_args_next(&a)) {
    const char *tol = NULL, *operand;
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_switch(&a, "--verbose", &run.verbose) || pg_arg_switch(&a, "-v", &run.verbose)) continue;
    const bool atol = pg_arg_string(&a, "--atol", &tol);
    if (atol || pg_arg_string(&a, "--rtol", &tol)) {
      if (a.failed) break;
      char *end;
      double v = strtod(tol, &end);
      if (*end || end == tol || !(v >= 0) || !isfinite(v))
        return pg_args_error(&a, "%s needs a finite number >= 0, got '%s'", atol ? "--atol" : "--rtol", tol);
      if (atol) run.atol = v, run.atol_set = true;
      else run.rtol = v, run.rtol_set = true;
      continue;
    }
    if (!pg_arg_operand(&a, &operand)) return pg_args_unknown(&a);
    if (path) return pg_args_error(&a, "one file at a time (got '%s' and '%s')", path, operand);
    path = operand;
  }
  if (a.failed) return 2;
  if (!path) return usage(stderr);
  hid_t file = pg_h5_open(path, false);
  if (file < 0) {
    pg_cli_print_error("check", pg_last_error());
    return 2;
  }
  if (!root_tolerance(file, path, "atol", &run.root_atol, &run.root_atol_set) ||
      !root_tolerance(file, path, "rtol", &run.root_rtol, &run.root_rtol_set)) {
    H5Fclose(file);
    return 2;
  }
  hsize_t idx = 0;
  H5G_info_t gi;
  bool listed = H5Gget_info(file, &gi) >= 0;
  herr_t e = H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_case, &run);
  /* every member of the root is accounted for: one that could not be listed is a failed case */
  if (e < 0 || !listed || run.visited < gi.nlinks) {
    hsize_t gap = listed && gi.nlinks > run.visited ? gi.nlinks - run.visited : 1;
    long long missing = gap < (1u << 30) ? (long long)gap : 1 << 30;
    printf("FAIL  %-40s ?\n        error: %lld member(s) of the root could not be listed (%s)\n",
           "(unlisted)", missing, pg_h5_damage());
    run.failed += (int)missing;
  }
  H5Fclose(file);
  if (run.passed + run.failed == 0) {
    fprintf(stderr, "patchgrad check: %s holds no case (no group at its root)\n", path);
    printf("0 passed, 0 failed\n");
    return 1;
  }
  printf("%d passed, %d failed\n", run.passed, run.failed);
  return run.failed ? 1 : 0;
}
