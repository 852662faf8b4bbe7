/* Shape ops: reshape (a view), permute/transpose, slice, concat,
 * split/chunk, broadcast_to. Forward and backward side by side; each
 * backward routes the output's gradient back to where the elements came
 * from. */
#include <string.h>

#include "patchgrad/autograd/op_util.h"
#include "patchgrad/autograd/ops.h"

/* ---- reshape ---- */

static void reshape_backward(pg_ctx *ctx, pg_node *node) {
  pg_tensor *x = node->in[0];
  const pg_tensor *out = node->out;
  /* Same elements in the same order: an intermediate without a gradient yet
   * adopts the output's buffer; others receive a copy. */
  if (pg_grad_adopt(x, out->grad)) return;
  bool fresh;
  float *gx = pg_grad_dest(ctx, x, &fresh);
  if (!gx) return;
  if (fresh)
    memcpy(gx, out->grad, (size_t)out->numel * sizeof *gx);
  else
    for (int64_t i = 0; i < out->numel; i++) gx[i] += out->grad[i];
}

pg_tensor *pg_reshape(pg_ctx *ctx, pg_tensor *x, int ndim, const int64_t *new_shape) {
  if (!x) return NULL;
  if (ndim < 0 || ndim > PG_MAX_DIMS || (ndim > 0 && !new_shape)) {
    pg_fail(PG_ERR_ARG, "pg_reshape: the new shape of rank %d is invalid (rank 0..%d, not NULL)",
            ndim, PG_MAX_DIMS);
    return NULL;
  }
  long long asked[PG_MAX_DIMS] = {0};
  char asked_str[128];
  for (int i = 0; i < ndim; i++) asked[i] = (long long)new_shape[i];
  pg_shape_str(asked_str, sizeof asked_str, ndim, asked);
  int64_t shape[PG_MAX_DIMS], known = 1;
  int inferred = -1;
  for (int i = 0; i < ndim; i++) {
    shape[i] = new_shape[i];
    if (new_shape[i] == -1 && inferred < 0) {
      inferred = i;
    } else if (new_shape[i] == -1) {
      pg_fail(PG_ERR_ARG, "pg_reshape: new shape %s has more than one -1", asked_str);
      return NULL;
    } else if (new_shape[i] < 0) {
      pg_fail(PG_ERR_ARG, "pg_reshape: new shape %s has a negative size at axis %d", asked_str, i);
      return NULL;
    } else {
      known *= new_shape[i];
    }
  }
  if (inferred >= 0) {
    if (known == 0 || x->numel % known) {
      pg_fail(PG_ERR_ARG, "pg_reshape: x %s (%lld elements) cannot become %s", pg_shape_of(x),
              (long long)x->numel, asked_str);
      return NULL;
    }
    shape[inferred] = x->numel / known;
    known *= shape[inferred];
  }
  if (known != x->numel) {
    pg_fail(PG_ERR_ARG, "pg_reshape: x %s (%lld elements) cannot become %s (%lld elements)",
            pg_shape_of(x), (long long)x->numel, asked_str, (long long)known);
    return NULL;
  }
  pg_tensor *out = pg_view(ctx, x, ndim, shape);
  if (out) pg_tape_record(ctx, "pg_reshape", reshape_backward, out, 1, &x);
  return out;
}

/* ---- permute, transpose ---- */

/* A permuted copy, walked over dst's rows; src is read with permuted strides. */
typedef struct {
  const float *src;
  float *dst;
  bool acc;
  int ndim;
  int64_t shape[PG_MAX_DIMS], stride[PG_MAX_DIMS]; /* dst's shape, src's stride per dst axis */
  int64_t n, step;                                 /* row length, src stride along a row */
} permute_job;

static void permute_row(const permute_job *j, int64_t r) {
  int64_t off = 0, idx = r;
  for (int ax = j->ndim - 2; ax >= 0; ax--) {
    off += (idx % j->shape[ax]) * j->stride[ax];
    idx /= j->shape[ax];
  }
  const float *restrict s = j->src + off;
  float *restrict d = j->dst + r * j->n;
  if (j->acc)
    for (int64_t i = 0; i < j->n; i++) d[i] += s[i * j->step];
  else
    for (int64_t i = 0; i < j->n; i++) d[i] = s[i * j->step];
}

/* dst = src with its axes reordered: dst.shape[i] = src.shape[perm[i]]; adds
 * into dst when acc. */
static void permute_copy(const float *src, int ndim, const int64_t *src_shape, const int *perm,
                         float *dst, bool acc) {
  permute_job j = {.src = src, .dst = dst, .acc = acc, .ndim = ndim, .n = 1, .step = 1};
  int64_t src_stride[PG_MAX_DIMS], numel = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    src_stride[i] = numel;
    numel *= src_shape[i];
  }
  for (int i = 0; i < ndim; i++) {
    j.shape[i] = src_shape[perm[i]];
    j.stride[i] = src_stride[perm[i]];
  }
  if (numel == 0) return;
  if (ndim > 0) {
    j.n = j.shape[ndim - 1];
    j.step = j.stride[ndim - 1];
  }
  PG_FOR(numel, r, numel / j.n, permute_row(&j, r));
}

typedef struct {
  int perm[PG_MAX_DIMS]; /* out.shape[i] = x.shape[perm[i]] */
} permute_saved;

static void permute_backward(pg_ctx *ctx, pg_node *node) {
  const permute_saved *s = node->saved;
  const pg_tensor *out = node->out;
  int inverse[PG_MAX_DIMS];
  for (int i = 0; i < out->ndim; i++) inverse[s->perm[i]] = i;
  bool fresh;
  float *gx = pg_grad_dest(ctx, node->in[0], &fresh);
  if (gx) permute_copy(out->grad, out->ndim, out->shape, inverse, gx, !fresh);
}

static pg_tensor *permute(pg_ctx *ctx, const char *who, pg_tensor *x, const int *perm) {
  int64_t shape[PG_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[perm[i]];
  pg_tensor *out = pg_empty(ctx, x->ndim, shape);
  if (!out) return NULL;
  permute_copy(x->data, x->ndim, x->shape, perm, out->data, false);
  pg_node *node = pg_tape_record(ctx, who, permute_backward, out, 1, &x);
  permute_saved *s = PG_SAVE(ctx, node, permute_saved, .perm = {0});
  if (s) memcpy(s->perm, perm, (size_t)x->ndim * sizeof *perm);
  return out;
}

pg_tensor *pg_permute(pg_ctx *ctx, pg_tensor *x, const int *perm) {
  if (!x) return NULL;
  if (x->ndim > 0 && !perm) {
    pg_fail(PG_ERR_ARG, "pg_permute: perm is NULL for x %s", pg_shape_of(x));
    return NULL;
  }
  bool seen[PG_MAX_DIMS] = {false};
  for (int i = 0; i < x->ndim; i++) {
    if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]]) {
      long long p[PG_MAX_DIMS];
      char buf[128];
      for (int j = 0; j < x->ndim; j++) p[j] = perm[j];
      pg_fail(PG_ERR_ARG, "pg_permute: perm %s is not a permutation of 0..%d (x %s)",
              pg_shape_str(buf, sizeof buf, x->ndim, p), x->ndim - 1, pg_shape_of(x));
      return NULL;
    }
    seen[perm[i]] = true;
  }
  return permute(ctx, "pg_permute", x, perm);
}

pg_tensor *pg_transpose(pg_ctx *ctx, pg_tensor *x, int axis0, int axis1) {
  if (!x) return NULL;
  int a0, a1;
  if (!pg_norm_axis(axis0, x->ndim, &a0) || !pg_norm_axis(axis1, x->ndim, &a1)) {
    pg_fail(PG_ERR_ARG, "pg_transpose: axes %d and %d are not both in range for x %s (rank %d)",
            axis0, axis1, pg_shape_of(x), x->ndim);
    return NULL;
  }
  int perm[PG_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++) perm[i] = i;
  perm[a0] = a1;
  perm[a1] = a0;
  return permute(ctx, "pg_transpose", x, perm);
}

/* ---- slice, concat, split, chunk: blocks along one axis ---- */

/* One outer index of copy_along_axis. */
static void copy_run(float *restrict d, const float *restrict s, int64_t n, bool acc) {
  if (acc)
    for (int64_t i = 0; i < n; i++) d[i] += s[i];
  else
    memcpy(d, s, (size_t)n * sizeof *d);
}

/* Viewing a tensor as [outer, axis, inner], copies (or adds, when acc) the
 * `len` entries starting at src_off of src's axis to those starting at
 * dst_off of dst's axis. */
static void copy_along_axis(float *dst, int64_t dst_axis, int64_t dst_off, const float *src,
                            int64_t src_axis, int64_t src_off, int64_t len, int64_t outer,
                            int64_t inner, bool acc) {
  const int64_t run = len * inner;
  PG_FOR(outer * run, o, outer,
         copy_run(dst + (o * dst_axis + dst_off) * inner, src + (o * src_axis + src_off) * inner,
                  run, acc));
}

static void outer_inner(const pg_tensor *t, int axis, int64_t *outer, int64_t *inner) {
  *outer = pg_shape_numel(axis, t->shape);
  *inner = pg_shape_numel(t->ndim - axis - 1, t->shape + axis + 1);
}

typedef struct {
  int axis;      /* normalised */
  int64_t start; /* the slice's first index along axis */
} slice_saved;

static void slice_backward(pg_ctx *ctx, pg_node *node) {
  const slice_saved *s = node->saved;
  const pg_tensor *x = node->in[0], *out = node->out;
  const int axis = s->axis;
  float *gx = pg_grad_accum(ctx, node->in[0]);
  if (!gx) return;
  int64_t outer, inner;
  outer_inner(x, axis, &outer, &inner);
  copy_along_axis(gx, x->shape[axis], s->start, out->grad, out->shape[axis], 0,
                  out->shape[axis], outer, inner, true);
}

static pg_tensor *slice(pg_ctx *ctx, const char *who, pg_tensor *x, int axis, int64_t start,
                        int64_t end) {
  int64_t shape[PG_MAX_DIMS], outer, inner;
  memcpy(shape, x->shape, sizeof shape);
  shape[axis] = end - start;
  pg_tensor *out = pg_empty(ctx, x->ndim, shape);
  if (!out) return NULL;
  outer_inner(x, axis, &outer, &inner);
  copy_along_axis(out->data, end - start, 0, x->data, x->shape[axis], start, end - start, outer,
                  inner, false);
  pg_node *node = pg_tape_record(ctx, who, slice_backward, out, 1, &x);
  PG_SAVE(ctx, node, slice_saved, .axis = axis, .start = start);
  return out;
}

pg_tensor *pg_slice(pg_ctx *ctx, pg_tensor *x, int axis, int64_t start, int64_t end) {
  if (!x) return NULL;
  int ax;
  if (!pg_norm_axis(axis, x->ndim, &ax)) {
    pg_fail(PG_ERR_ARG, "pg_slice: axis %d is out of range for x %s (rank %d)", axis,
            pg_shape_of(x), x->ndim);
    return NULL;
  }
  if (start < 0 || end < start || end > x->shape[ax]) {
    pg_fail(PG_ERR_ARG, "pg_slice: range [%lld, %lld) does not fit axis %d of size %lld (x %s)",
            (long long)start, (long long)end, axis, (long long)x->shape[ax], pg_shape_of(x));
    return NULL;
  }
  return slice(ctx, "pg_slice", x, ax, start, end);
}

typedef struct {
  int axis; /* normalised */
} concat_saved;

static void concat_backward(pg_ctx *ctx, pg_node *node) {
  const concat_saved *s = node->saved;
  const pg_tensor *out = node->out;
  const int axis = s->axis;
  int64_t offset = 0, outer, inner;
  outer_inner(out, axis, &outer, &inner);
  for (int j = 0; j < node->n_in; j++) {
    const pg_tensor *x = node->in[j];
    bool fresh;
    float *gx = pg_grad_dest(ctx, node->in[j], &fresh);
    if (gx)
      copy_along_axis(gx, x->shape[axis], 0, out->grad, out->shape[axis], offset, x->shape[axis],
                      outer, inner, !fresh);
    offset += x->shape[axis];
  }
}

pg_tensor *pg_concat(pg_ctx *ctx, int n, pg_tensor *const *xs, int axis) {
  if (n < 1 || !xs) {
    pg_fail(PG_ERR_ARG, "pg_concat: needs at least one tensor (n = %d)", n);
    return NULL;
  }
  for (int j = 0; j < n; j++)
    if (!xs[j]) return NULL;
  const pg_tensor *first = xs[0];
  int ax;
  if (!pg_norm_axis(axis, first->ndim, &ax)) {
    pg_fail(PG_ERR_ARG, "pg_concat: axis %d is out of range for xs[0] %s (rank %d)", axis,
            pg_shape_of(first), first->ndim);
    return NULL;
  }
  int64_t shape[PG_MAX_DIMS];
  memcpy(shape, first->shape, sizeof shape);
  shape[ax] = 0;
  for (int j = 0; j < n; j++) {
    bool fits = xs[j]->ndim == first->ndim;
    for (int i = 0; fits && i < first->ndim; i++) fits = i == ax || xs[j]->shape[i] == first->shape[i];
    if (!fits) {
      pg_fail(PG_ERR_ARG, "pg_concat: xs[%d] %s does not match xs[0] %s outside axis %d",
              j, pg_shape_of(xs[j]), pg_shape_of(first), axis);
      return NULL;
    }
    shape[ax] += xs[j]->shape[ax];
  }
  pg_tensor *out = pg_empty(ctx, first->ndim, shape);
  if (!out) return NULL;
  int64_t offset = 0, outer, inner;
  outer_inner(out, ax, &outer, &inner);
  for (int j = 0; j < n; j++) {
    copy_along_axis(out->data, shape[ax], offset, xs[j]->data, xs[j]->shape[ax], 0,
                    xs[j]->shape[ax], outer, inner, false);
    offset += xs[j]->shape[ax];
  }
  pg_node *node = pg_tape_record(ctx, "pg_concat", concat_backward, out, n, xs);
  PG_SAVE(ctx, node, concat_saved, .axis = ax);
  return out;
}

/* The parts of split and chunk: consecutive slices, sizes[i] each (or
 * `equal` each when sizes is NULL). */
static pg_status split_parts(pg_ctx *ctx, const char *who, pg_tensor *x, int ax, int n,
                             const int64_t *sizes, int64_t equal, pg_tensor **out) {
  int64_t start = 0;
  for (int i = 0; i < n; i++) {
    const int64_t len = sizes ? sizes[i] : equal;
    out[i] = slice(ctx, who, x, ax, start, start + len);
    if (!out[i]) {
      for (int j = 0; j < n; j++) out[j] = NULL;
      return pg_last_status() ? pg_last_status() : PG_ERR_MEMORY;
    }
    start += len;
  }
  return PG_OK;
}

/* Checks shared by split and chunk; clears out[] first so that a failure
 * leaves no stale pointers. */
static pg_status split_args(const char *who, pg_tensor *x, int axis, int n, pg_tensor **out,
                            int *ax) {
  if (!out) return pg_fail(PG_ERR_ARG, "%s: out is NULL", who);
  for (int i = 0; i < n; i++) out[i] = NULL;
  if (!x) return pg_last_status() ? pg_last_status() : PG_ERR_ARG;
  if (n < 1) return pg_fail(PG_ERR_ARG, "%s: n = %d parts, needs at least 1 (x %s)", who, n, pg_shape_of(x));
  if (!pg_norm_axis(axis, x->ndim, ax))
    return pg_fail(PG_ERR_ARG, "%s: axis %d is out of range for x %s (rank %d)", who, axis,
                   pg_shape_of(x), x->ndim);
  return PG_OK;
}

pg_status pg_split(pg_ctx *ctx, pg_tensor *x, int axis, int n, const int64_t *sizes,
                   pg_tensor **out) {
  int ax;
  pg_status st = split_args("pg_split", x, axis, n, out, &ax);
  if (st) return st;
  if (!sizes) return pg_fail(PG_ERR_ARG, "pg_split: sizes is NULL (x %s)", pg_shape_of(x));
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (sizes[i] < 0)
      return pg_fail(PG_ERR_ARG, "pg_split: sizes[%d] = %lld is negative (x %s)", i,
                     (long long)sizes[i], pg_shape_of(x));
    total += sizes[i];
  }
  if (total != x->shape[ax])
    return pg_fail(PG_ERR_ARG, "pg_split: sizes add up to %lld, but axis %d of x %s has %lld",
                   (long long)total, axis, pg_shape_of(x), (long long)x->shape[ax]);
  return split_parts(ctx, "pg_split", x, ax, n, sizes, 0, out);
}

pg_status pg_chunk(pg_ctx *ctx, pg_tensor *x, int axis, int n, pg_tensor **out) {
  int ax;
  pg_status st = split_args("pg_chunk", x, axis, n, out, &ax);
  if (st) return st;
  if (x->shape[ax] % n)
    return pg_fail(PG_ERR_ARG, "pg_chunk: axis %d of size %lld does not divide into %d equal parts (x %s)",
                   axis, (long long)x->shape[ax], n, pg_shape_of(x));
  return split_parts(ctx, "pg_chunk", x, ax, n, NULL, x->shape[ax] / n, out);
}

/* ---- broadcast_to ---- */

PG_ROW_KERNEL(static, kernel_copy, x)

static void broadcast_to_backward(pg_ctx *ctx, pg_node *node) {
  const pg_tensor *x = node->in[0], *out = node->out;
  bool fresh;
  float *gx = pg_grad_dest(ctx, node->in[0], &fresh);
  if (gx) pg_reduce_to(out->ndim, out->shape, out->grad, x->ndim, x->shape, 1.0f, gx, !fresh);
}

pg_tensor *pg_broadcast_to(pg_ctx *ctx, pg_tensor *x, int ndim, const int64_t *shape) {
  if (!x) return NULL;
  if (ndim < x->ndim || ndim > PG_MAX_DIMS || (ndim > 0 && !shape)) {
    pg_fail(PG_ERR_ARG, "pg_broadcast_to: target rank %d must be in %d..%d (x %s)", ndim, x->ndim,
            PG_MAX_DIMS, pg_shape_of(x));
    return NULL;
  }
  if (pg_check_shape("pg_broadcast_to", ndim, shape)) return NULL;
  for (int i = 1; i <= x->ndim; i++) {
    const int64_t have = x->shape[x->ndim - i], want = shape[ndim - i];
    if (have != want && have != 1) {
      long long s[PG_MAX_DIMS];
      char buf[128];
      for (int j = 0; j < ndim; j++) s[j] = (long long)shape[j];
      pg_fail(PG_ERR_ARG, "pg_broadcast_to: x %s cannot broadcast to %s (axis %d: %lld vs %lld)",
              pg_shape_of(x), pg_shape_str(buf, sizeof buf, ndim, s), -i, (long long)have,
              (long long)want);
      return NULL;
    }
  }
  pg_tensor *out = pg_empty(ctx, ndim, shape);
  if (!out) return NULL;
  pg_bcast plan;
  pg_bcast_plan(&plan, ndim, shape, x->ndim, x->shape, x->ndim, x->shape);
  pg_bcast_apply(&plan, kernel_copy, x->data, x->data, out->data, false);
  pg_tape_record(ctx, "pg_broadcast_to", broadcast_to_backward, out, 1, &x);
  return out;
}
