#include "patchgrad/autograd/broadcast.h"

#include "patchgrad/autograd/op.h"
#include "patchgrad/autograd/parallel.h"
#include "patchgrad/autograd/vector_clones.h"

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

/* One call of pg_bcast_apply, shared by its blocks or rows. */
typedef struct {
  const pg_bcast *p;
  pg_row_kernel kernel;
  const float *a, *b;
  float *out;
  bool acc;
  int64_t n, sa, sb; /* row length and the operands' strides within a row */
} apply_job;

/* A block of the single long row (same shapes, or one side a scalar). */
static void apply_block(const apply_job *j, int64_t blk) {
  const int64_t off = blk * ROW_BLOCK, len = j->n - off < ROW_BLOCK ? j->n - off : ROW_BLOCK;
  j->kernel(len, j->a + off * j->sa, j->sa, j->b + off * j->sb, j->sb, j->out + off, j->acc);
}

/* Row r: its operands' offsets come from r's index over the outer axes. */
static void apply_row(const apply_job *j, int64_t r) {
  const pg_bcast *p = j->p;
  int64_t oa = 0, ob = 0, idx = r;
  for (int ax = p->ndim - 2; ax >= 0; ax--) {
    const int64_t i = idx % p->size[ax];
    idx /= p->size[ax];
    oa += i * p->stride[0][ax];
    ob += i * p->stride[1][ax];
  }
  j->kernel(j->n, j->a + oa, j->sa, j->b + ob, j->sb, j->out + r * j->n, j->acc);
}

void pg_bcast_apply(const pg_bcast *p, pg_row_kernel k, const float *a, const float *b, float *out,
                    bool acc) {
  if (p->numel == 0) return;
  const int last = p->ndim - 1;
  /* Within a row an operand is either contiguous or one repeated value. */
  const apply_job job = {p, k, a, b, out, acc, p->size[last], p->stride[0][last] ? 1 : 0,
                         p->stride[1][last] ? 1 : 0};
  const int64_t rows = p->numel / job.n;
  const int64_t work = p->numel;
  if (rows == 1)
    PG_FOR(work, blk, (job.n + ROW_BLOCK - 1) / ROW_BLOCK, apply_block(&job, blk));
  else
    PG_FOR(work, r, rows, apply_row(&job, r));
}

/* ---- Summing over broadcast axes ---- */

/* The merged axes split into kept ones (dst has them) and reduced ones; src
 * is contiguous over the merged shape. */
typedef struct {
  const float *src;
  float *dst;
  double alpha;
  bool acc;
  const int64_t *size;
  int64_t src_stride[PG_MAX_DIMS];
  int kept[PG_MAX_DIMS], red[PG_MAX_DIMS], nk, nr;
  int64_t n;         /* length of the innermost axis */
  int64_t n_red;     /* reduced positions per output (without the innermost when reduced) */
  int64_t col_blocks;
} reduction;

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

/* Innermost axis reduced: output q sums contiguous runs of n. */
static void reduce_output(const reduction *r, int64_t q) {
  const float *base = r->src + offset_in(q, r->nk, r->kept, r->size, r->src_stride);
  double s = 0;
  for (int64_t i = 0; i < r->n_red; i++)
    s += sum_run(base + offset_in(i, r->nr - 1, r->red, r->size, r->src_stride), r->n);
  r->dst[q] = (r->acc ? r->dst[q] : 0.0f) + (float)(r->alpha * s);
}

/* Innermost axis kept: a block of columns of one output row adds up the
 * matching pieces of every reduced source row, in a double accumulator. */
static void reduce_columns(const reduction *r, int64_t t) {
  const int64_t row = t / r->col_blocks, c0 = (t % r->col_blocks) * COL_BLOCK;
  const int64_t len = r->n - c0 < COL_BLOCK ? r->n - c0 : COL_BLOCK;
  const float *base = r->src + offset_in(row, r->nk - 1, r->kept, r->size, r->src_stride) + c0;
  double accum[COL_BLOCK] = {0};
  for (int64_t i = 0; i < r->n_red; i++) {
    const float *s = base + offset_in(i, r->nr, r->red, r->size, r->src_stride);
    for (int64_t j = 0; j < len; j++) accum[j] += s[j];
  }
  float *d = r->dst + row * r->n + c0;
  for (int64_t j = 0; j < len; j++) d[j] = (r->acc ? d[j] : 0.0f) + (float)(r->alpha * accum[j]);
}

/* Nothing broadcast: dst (+)= alpha * src, one block. */
static void scaled_copy(float *restrict dst, const float *restrict src, int64_t n, float alpha,
                        bool acc, int64_t blk) {
  const int64_t off = blk * ROW_BLOCK, len = n - off < ROW_BLOCK ? n - off : ROW_BLOCK;
  dst += off;
  src += off;
  if (acc)
    for (int64_t i = 0; i < len; i++) dst[i] += alpha * src[i];
  else if (alpha == 1.0f)
    memcpy(dst, src, (size_t)len * sizeof *dst);
  else
    for (int64_t i = 0; i < len; i++) dst[i] = alpha * src[i];
}

void pg_reduce_to(int n_src, const int64_t *src_shape, const float *src, int nd,
                  const int64_t *d_shape, double alpha, float *dst, bool acc) {
  pg_bcast p;
  pg_bcast_plan(&p, n_src, src_shape, nd, d_shape, nd, d_shape);
  const int64_t n_dst = pg_shape_numel(nd, d_shape);
  const int64_t work = p.numel;
  if (!p.expanded[0]) {
    PG_FOR(work, blk, (n_dst + ROW_BLOCK - 1) / ROW_BLOCK,
           scaled_copy(dst, src, n_dst, (float)alpha, acc, blk));
    return;
  }
  if (p.numel == 0) { /* an empty sum is zero (times alpha: a mean of nothing is NaN) */
    const float empty = (float)(alpha * 0.0);
    for (int64_t i = 0; i < n_dst; i++) dst[i] = (acc ? dst[i] : 0.0f) + empty;
    return;
  }
  reduction r = {.src = src, .dst = dst, .alpha = alpha, .acc = acc, .size = p.size};
  int64_t run = 1, n_kept = 1;
  for (int ax = p.ndim - 1; ax >= 0; ax--) {
    r.src_stride[ax] = run;
    run *= p.size[ax];
  }
  r.n_red = 1;
  for (int ax = 0; ax < p.ndim; ax++) {
    if (p.stride[0][ax]) {
      r.kept[r.nk++] = ax;
      n_kept *= p.size[ax];
    } else {
      r.red[r.nr++] = ax;
      r.n_red *= p.size[ax];
    }
  }
  r.n = p.size[p.ndim - 1];
  if (!p.stride[0][p.ndim - 1]) { /* innermost reduced */
    r.n_red /= r.n;
    PG_FOR(work, q, n_kept, reduce_output(&r, q));
  } else {
    r.col_blocks = (r.n + COL_BLOCK - 1) / COL_BLOCK;
    PG_FOR(work, t, n_kept / r.n * r.col_blocks, reduce_columns(&r, t));
  }
}

/* pg_column_sums's kernel: columns [c0, c0 + len) (len <= COL_BLOCK) of a
 * contiguous [rows, cols] block, each summed down the rows in order in a
 * double accumulator: the same bits as reduce_columns, on any number of
 * threads and any blocking. Vectorised for AVX-512/AVX2 (vector_clones.h);
 * it runs at memory speed where the general reduction, which locates every
 * source row by division, did not (4.5% of a medium bf16 step). */
static PG_VECTOR_CLONES void column_sums_block(const float *restrict src, int64_t rows, int64_t cols,
                                               int64_t c0, int64_t len, float *restrict dst, bool acc) {
  double accum[COL_BLOCK];
  for (int64_t j = 0; j < len; j++) accum[j] = 0.0;
  for (int64_t i = 0; i < rows; i++) {
    const float *restrict s = src + i * cols + c0;
    for (int64_t j = 0; j < len; j++) accum[j] += (double)s[j];
  }
  float *restrict d = dst + c0;
  if (acc)
    for (int64_t j = 0; j < len; j++) d[j] += (float)accum[j];
  else
    for (int64_t j = 0; j < len; j++) d[j] = (float)accum[j];
}

void pg_column_sums(const float *src, int64_t rows, int64_t cols, float *dst, bool acc) {
  if (rows <= 0 || cols <= 0) {
    pg_reduce_to(2, (int64_t[]){rows, cols}, src, 1, &cols, 1.0, dst, acc);
    return;
  }
  /* as many column blocks as a multiple of the team, each a multiple of 16
   * columns (no two threads write one cache line of dst) */
  const int threads = pg_parallel_threads(rows * cols);
  int64_t blocks = (cols + COL_BLOCK - 1) / COL_BLOCK;
  blocks = (blocks + threads - 1) / threads * threads;
  int64_t width = (cols + blocks - 1) / blocks;
  width = (width + 15) / 16 * 16;
  if (width > COL_BLOCK) width = COL_BLOCK;
  const int64_t n_blocks = (cols + width - 1) / width;
  PG_FOR(rows * cols, b, n_blocks, {
    const int64_t c0 = b * width;
    column_sums_block(src, rows, cols, c0, cols - c0 < width ? cols - c0 : width, dst, acc);
  });
}
