#include "patchgrad/io/casefile.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/io/h5util.h"
#include "patchgrad/autograd/tape.h"

void pg_case_begin(pg_case *c, hid_t group, const char *name, double atol, double rtol,
                   bool atol_forced, bool rtol_forced) {
  memset(c, 0, sizeof *c);
  c->group = group;
  c->name = name;
  c->atol = atol;
  c->rtol = rtol;
  const char *names[2] = {"atol", "rtol"};
  double *slots[2] = {&c->atol, &c->rtol};
  bool forced[2] = {atol_forced, rtol_forced};
  for (int i = 0; i < 2; i++) {
    double v;
    int rc = forced[i] ? 0 : pg_h5_attr_double(group, names[i], &v);
    if (rc < 0) pg_case_fail(c, "%s", pg_last_error());
    else if (rc == 1 && !(v >= 0 && isfinite(v)))
      pg_case_fail(c, "attribute '%s' is %g (a tolerance must be finite and >= 0)", names[i], v);
    else if (rc == 1) *slots[i] = v;
  }
  int rc = pg_h5_attr_string(group, "op", c->op, sizeof c->op);
  if (rc < 0) pg_case_fail(c, "%s", pg_last_error());
  else if (rc == 0) pg_case_fail(c, "no string attribute 'op'");
  c->ctx = pg_ctx_new((size_t)1 << 20); /* cases are small; chunks grow as needed */
  if (!c->ctx) pg_case_fail(c, "%s", pg_last_error());
}

typedef struct {
  const char *known;
  char unknown[128];
} attr_visit;

/* True when `name` is one of the space-separated words of `list`. */
static bool listed(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p && *p;) {
    const char *end = strchr(p, ' ');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n && !strncmp(p, name, n)) return true;
    p = end ? end + 1 : NULL;
  }
  return false;
}

static herr_t find_unknown_attr(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  (void)obj;
  (void)info;
  attr_visit *v = data;
  if (listed(PG_CASE_COMMON_ATTRS, name) || listed(v->known, name)) return 0;
  snprintf(v->unknown, sizeof v->unknown, "%s", name);
  return 1; /* stop at the first */
}

void pg_case_check_attrs(pg_case *c, const char *known) {
  if (c->error) return;
  attr_visit v = {known, ""};
  hsize_t idx = 0;
  if (H5Aiterate2(c->group, H5_INDEX_NAME, H5_ITER_INC, &idx, find_unknown_attr, &v) < 0) {
    pg_case_fail(c, "its attributes cannot be listed (%s)", pg_h5_damage());
    return;
  }
  if (v.unknown[0])
    pg_case_fail(c, "unknown attribute '%s' of op '%s' (its settings: %s; and %s for every op)",
                 v.unknown, c->op, known[0] ? known : "none", PG_CASE_COMMON_ATTRS);
}

void pg_case_end(pg_case *c) {
  for (int i = 0; i < c->n_owned; i++) {
    if (c->owned_is_tensor[i]) pg_tensor_free(c->owned[i]);
    else free(c->owned[i]);
  }
  c->n_owned = 0;
  pg_ctx_free(c->ctx);
  c->ctx = NULL;
}

bool pg_case_passed(const pg_case *c) {
  if (c->error || c->n_results == 0) return false;
  for (int i = 0; i < c->n_results; i++)
    if (!c->results[i].pass) return false;
  return true;
}

void pg_case_fail(pg_case *c, const char *fmt, ...) {
  if (c->error) return; /* keep the first cause */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->error_msg, sizeof c->error_msg, fmt, ap);
  va_end(ap);
  c->error = true;
}

static void own(pg_case *c, void *p, bool is_tensor) {
  if (c->n_owned == PG_CASE_MAX_OWNED) {
    pg_case_fail(c, "too many arrays in one case (more than %d)", PG_CASE_MAX_OWNED);
    if (is_tensor) pg_tensor_free(p);
    else free(p);
    return;
  }
  c->owned_is_tensor[c->n_owned] = is_tensor;
  c->owned[c->n_owned++] = p;
}

pg_tensor *pg_case_array_opt(pg_case *c, const char *path) {
  if (c->error || !pg_h5_exists(c->group, path)) return NULL;
  return pg_case_array(c, path);
}

pg_tensor *pg_case_array(pg_case *c, const char *path) {
  if (c->error) return NULL;
  if (!pg_h5_exists(c->group, path)) {
    pg_case_fail(c, "missing array '%s'", path);
    return NULL;
  }
  pg_tensor *t;
  if (pg_h5_read_tensor(c->group, path, c->name, &t)) {
    pg_case_fail(c, "%s", pg_last_error());
    return NULL;
  }
  pg_tensor_set_requires_grad(t, true);
  own(c, t, true);
  return c->error ? NULL : t;
}

int64_t *pg_case_ints(pg_case *c, const char *path, int64_t *count) {
  if (c->error) return NULL;
  int ndim;
  int64_t shape[PG_MAX_DIMS];
  int64_t *v;
  if (!pg_h5_exists(c->group, path)) {
    pg_case_fail(c, "missing array '%s'", path);
    return NULL;
  }
  if (pg_h5_read_int64(c->group, path, c->name, &v, &ndim, shape)) {
    pg_case_fail(c, "%s", pg_last_error());
    return NULL;
  }
  *count = pg_shape_numel(ndim, shape);
  own(c, v, false);
  return c->error ? NULL : v;
}

int64_t pg_case_attr_int(pg_case *c, const char *name, int64_t fallback) {
  int64_t v;
  int rc = pg_h5_attr_int(c->group, name, &v);
  if (rc < 0) pg_case_fail(c, "%s", pg_last_error());
  return rc == 1 ? v : fallback;
}

double pg_case_attr_double(pg_case *c, const char *name, double fallback) {
  double v;
  int rc = pg_h5_attr_double(c->group, name, &v);
  if (rc < 0) pg_case_fail(c, "%s", pg_last_error());
  return rc == 1 ? v : fallback;
}

const char *pg_case_attr_string(pg_case *c, const char *name, const char *fallback, char *buf,
                                size_t cap) {
  int rc = pg_h5_attr_string(c->group, name, buf, cap);
  if (rc < 0) pg_case_fail(c, "%s", pg_last_error());
  if (rc != 1) snprintf(buf, cap, "%s", fallback);
  return buf;
}

int pg_case_attr_ints(pg_case *c, const char *name, int64_t *values, int cap) {
  int count = 0;
  int rc = pg_h5_attr_int_array(c->group, name, values, cap, &count);
  if (rc < 0) pg_case_fail(c, "%s", pg_last_error());
  return rc == 1 ? count : 0;
}

void pg_case_compare_raw(pg_case *c, const char *path, const float *got, int ndim,
                         const int64_t *shape) {
  if (c->error || !pg_h5_exists(c->group, path)) return;
  if (c->n_results == (int)(sizeof c->results / sizeof *c->results)) {
    pg_case_fail(c, "too many checked arrays");
    return;
  }
  pg_tensor *want;
  if (pg_h5_read_tensor(c->group, path, c->name, &want)) {
    pg_case_fail(c, "%s", pg_last_error());
    return;
  }
  long long ws[PG_MAX_DIMS], gs[PG_MAX_DIMS];
  bool same = want->numel == pg_shape_numel(ndim, shape);
  for (int i = 0; i < want->ndim; i++) ws[i] = want->shape[i];
  for (int i = 0; i < ndim; i++) gs[i] = shape[i];
  /* A 0-d scalar and a [1] array are the same value. */
  if (same && want->numel != 1) {
    same = want->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = ws[i] == gs[i];
  }
  if (!same) {
    char a[128], b[128];
    pg_case_fail(c, "array '%s' has shape %s, the op produced %s", path,
                 pg_shape_str(a, sizeof a, want->ndim, ws), pg_shape_str(b, sizeof b, ndim, gs));
    pg_tensor_free(want);
    return;
  }
  pg_case_result *r = &c->results[c->n_results++];
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s", path);
  double worst = -1.0; /* the element furthest beyond its tolerance */
  for (int64_t i = 0; i < want->numel; i++) {
    double g = got ? got[i] : 0.0, w = want->data[i];
    double d, excess;
    if (!isfinite(w) || !isfinite(g)) {
      /* non-finite values match by position: NaN with NaN, +Inf with +Inf */
      bool same = (isnan(w) && isnan(g)) || w == g;
      d = excess = same ? 0.0 : INFINITY;
    } else {
      d = fabs(g - w);
      double tol = c->atol + c->rtol * fabs(w);
      excess = d <= tol ? (tol > 0 ? d / tol : 0.0) : (tol > 0 ? d / tol : INFINITY);
      if (w != 0.0 && d / fabs(w) > r->max_rel) r->max_rel = d / fabs(w);
    }
    if (d > r->max_abs) r->max_abs = d;
    if (excess > worst) {
      worst = excess;
      r->worst_index = i;
    }
  }
  r->pass = worst <= 1.0;
  if (want->numel) {
    r->worst_got = got ? got[r->worst_index] : 0.0;
    r->worst_want = want->data[r->worst_index];
  }
  pg_tensor_free(want);
}

void pg_case_compare(pg_case *c, const char *path, const pg_tensor *got) {
  if (!got) {
    pg_case_fail(c, "the op produced no '%s': %s", path, pg_last_error());
    return;
  }
  pg_case_compare_raw(c, path, got->data, got->ndim, got->shape);
}

bool pg_case_wants_grads(pg_case *c) { return pg_h5_exists(c->group, "grad"); }

void pg_case_check_op(pg_case *c, pg_tensor *out, int n, const char *const *names,
                      pg_tensor *const *inputs) {
  if (c->error) return;
  if (!out) {
    pg_case_fail(c, "the op failed: %s", pg_last_error());
    return;
  }
  pg_case_compare(c, "out", out);
  if (c->error || !pg_case_wants_grads(c)) return;
  pg_tensor *grad_out = pg_case_array(c, "grad_out");
  if (!grad_out) return;
  if (grad_out->numel != out->numel) {
    pg_case_fail(c, "array 'grad_out' has %s, but 'out' is %s", pg_shape_of(grad_out),
                 pg_shape_of(out));
    return;
  }
  if (!out->requires_grad) {
    pg_case_fail(c, "the op recorded no gradient");
    return;
  }
  if (pg_backward_with(c->ctx, out, grad_out->data)) {
    pg_case_fail(c, "backward failed: %s", pg_last_error());
    return;
  }
  for (int i = 0; i < n; i++) {
    char path[160];
    snprintf(path, sizeof path, "grad/%s", names[i]);
    if (inputs[i]) pg_case_compare_raw(c, path, inputs[i]->grad, inputs[i]->ndim, inputs[i]->shape);
  }
}
