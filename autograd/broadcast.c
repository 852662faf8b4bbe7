#include "broadcast.h"

#include <string.h>

/* A single long row is cut into blocks of this many elements so that the
 * threads can share it. */
#define ROW_BLOCK ((int64_t)8192)
/* Columns summed at once by the row-wise reduction (a double accumulator on
 * the stack). */
#define COL_BLOCK 256

int pg_bcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *n_out,
                   int64_t *out) {
  int n = na > nb ? na : nb;
  for (int i = 1; i <= n; i++) { /* i counts axes from the end */
    int64_t da = i <= na ? sa[na - i] : 1, db = i <= nb ? sb[nb - i] : 1;
    if (da != db && da != 1 && db != 1) return -i;
    out[n - i] = da == 1 ? db : da;
  }
  *n_out = n;
  return 0;
}

void pg_bcast_plan(pg_bcast *p, int n_out, const int64_t *out, int na, const int64_t *sa, int nb,
                   const int64_t *sb) {
  const int n_in[2] = {na, nb};
  const int64_t *in_shape[2] = {sa, sb};
  /* Walk the output axes from the innermost, merging an axis into the one
   * inside it when every operand is full on both or broadcast on both. */
  int64_t size[PG_MAX_DIMS], stride[2][PG_MAX_DIMS];
  bool full[2][PG_MAX_DIMS];
  int64_t run[2] = {1, 1}; /* each operand's element stride at this axis */
  int nd = 0;
  memset(p, 0, sizeof *p);
  p->numel = 1;
  for (int i = n_out - 1; i >= 0; i--) {
    p->numel *= out[i];
    if (out[i] == 1) continue; /* size-1 axes change no index */
    bool f[2];
    for (int o = 0; o < 2; o++) {
      int j = i - (n_out - n_in[o]);
      f[o] = j >= 0 && in_shape[o][j] == out[i];
    }
    if (nd > 0 && f[0] == full[0][nd - 1] && f[1] == full[1][nd - 1]) {
      size[nd - 1] *= out[i];
    } else {
      size[nd] = out[i];
      for (int o = 0; o < 2; o++) {
        full[o][nd] = f[o];
        stride[o][nd] = f[o] ? run[o] : 0;
      }
      nd++;
    }
    for (int o = 0; o < 2; o++)
      if (f[o]) run[o] *= out[i];
  }
  if (nd == 0) { /* a single element */
    size[0] = 1;
    stride[0][0] = stride[1][0] = 1;
    full[0][0] = full[1][0] = true;
    nd = 1;
  }
  /* Store outermost first. */
  p->ndim = nd;
  for (int k = 0; k < nd; k++) {
    p->size[k] = size[nd - 1 - k];
    for (int o = 0; o < 2; o++) {
      p->stride[o][k] = stride[o][nd - 1 - k];
      if (!full[o][nd - 1 - k]) p->expanded[o] = true;
    }
  }
}

void pg_bcast_apply(const pg_bcast *p, pg_row_kernel k, const float *a, const float *b, float *out,
                    bool acc) {
  if (p->numel == 0) return;
  const int last = p->ndim - 1;
  const int64_t n = p->size[last];
  const int64_t rows = p->numel / n;
  /* Within a row an operand is either contiguous or one repeated value. */
  int64_t sa = p->stride[0][last] ? 1 : 0, sb = p->stride[1][last] ? 1 : 0;
  if (n == 1) sa = sb = 1;
  if (rows == 1) {
    const int64_t blocks = (n + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel for if (n > PG_PARALLEL_MIN)
    for (int64_t blk = 0; blk < blocks; blk++) {
      const int64_t off = blk * ROW_BLOCK, len = n - off < ROW_BLOCK ? n - off : ROW_BLOCK;
      k(len, a + off * sa, sa, b + off * sb, sb, out + off, acc);
    }
    return;
  }
#pragma omp parallel for if (p->numel > PG_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    int64_t oa = 0, ob = 0, idx = r;
    for (int ax = last - 1; ax >= 0; ax--) {
      const int64_t i = idx % p->size[ax];
      idx /= p->size[ax];
      oa += i * p->stride[0][ax];
      ob += i * p->stride[1][ax];
    }
    k(n, a + oa, sa, b + ob, sb, out + r * n, acc);
  }
}

/* The offset of the idx-th combination of the listed axes (innermost last). */
static int64_t offset_in(int64_t idx, int n_axes, const int *axes, const int64_t *size,
                         const int64_t *stride) {
  int64_t off = 0;
  for (int j = n_axes - 1; j >= 0; j--) {
    off += (idx % size[axes[j]]) * stride[axes[j]];
    idx /= size[axes[j]];
  }
  return off;
}

static double sum_run(const float *x, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}

void pg_reduce_to(int n_src, const int64_t *src_shape, const float *src, int nd,
                  const int64_t *d_shape, float alpha, float *dst, bool acc) {
  pg_bcast p;
  pg_bcast_plan(&p, n_src, src_shape, nd, d_shape, nd, d_shape);
  const int64_t n_dst = pg_shape_numel(nd, d_shape);
  if (!p.expanded[0]) { /* nothing was broadcast: a scaled copy */
#pragma omp parallel for if (n_dst > PG_PARALLEL_MIN)
    for (int64_t i = 0; i < n_dst; i++) dst[i] = (acc ? dst[i] : 0.0f) + alpha * src[i];
    return;
  }
  if (p.numel == 0) { /* an empty sum is zero */
    if (!acc) memset(dst, 0, (size_t)n_dst * sizeof *dst);
    return;
  }
  /* Split the merged axes into kept (dst has them) and reduced ones; they
   * alternate. src is contiguous over the merged shape. */
  int kept[PG_MAX_DIMS], red[PG_MAX_DIMS], nk = 0, nr = 0;
  int64_t src_stride[PG_MAX_DIMS], n_kept = 1, n_red = 1;
  int64_t run = 1;
  for (int ax = p.ndim - 1; ax >= 0; ax--) {
    src_stride[ax] = run;
    run *= p.size[ax];
  }
  for (int ax = 0; ax < p.ndim; ax++) {
    if (p.stride[0][ax]) {
      kept[nk++] = ax;
      n_kept *= p.size[ax];
    } else {
      red[nr++] = ax;
      n_red *= p.size[ax];
    }
  }
  const int last = p.ndim - 1;
  if (!p.stride[0][last]) {
    /* The innermost axis is reduced: each output sums contiguous runs. */
    const int64_t n = p.size[last], runs = n_red / n;
#pragma omp parallel for if (p.numel > PG_PARALLEL_MIN)
    for (int64_t q = 0; q < n_kept; q++) {
      const float *base = src + offset_in(q, nk, kept, p.size, src_stride);
      double s = 0;
      for (int64_t r = 0; r < runs; r++) s += sum_run(base + offset_in(r, nr - 1, red, p.size, src_stride), n);
      dst[q] = (acc ? dst[q] : 0.0f) + (float)(alpha * s);
    }
    return;
  }
  /* The innermost axis is kept: each output row adds up whole source rows,
   * a block of columns at a time into a double accumulator. */
  const int64_t n = p.size[last], rows = n_kept / n;
  const int64_t blocks = (n + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if (p.numel > PG_PARALLEL_MIN)
  for (int64_t t = 0; t < rows * blocks; t++) {
    const int64_t row = t / blocks, c0 = (t % blocks) * COL_BLOCK;
    const int64_t len = n - c0 < COL_BLOCK ? n - c0 : COL_BLOCK;
    const float *base = src + offset_in(row, nk - 1, kept, p.size, src_stride) + c0;
    double accum[COL_BLOCK] = {0};
    for (int64_t r = 0; r < n_red; r++) {
      const float *s = base + offset_in(r, nr, red, p.size, src_stride);
      for (int64_t j = 0; j < len; j++) accum[j] += s[j];
    }
    float *d = dst + row * n + c0;
    for (int64_t j = 0; j < len; j++) d[j] = (acc ? d[j] : 0.0f) + (float)(alpha * accum[j]);
  }
}
