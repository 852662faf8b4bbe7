/* Matrix product, 2D and batched, with optional transposes; forward and
 * backward entirely through pg_gemm (BLIS).
 *
 * With op(A) = A or A^T and C = op(A) op(B), G = dL/dC:
 *   dL/d op(A) = G op(B)^T,  dL/d op(B) = op(A)^T G,
 * and a stored-transposed operand receives the transpose of that, which
 * BLIS gets as transpose flags on the same buffers (no copies):
 *   dA = G op(B)^T            (A stored [m, k])
 *   dA = op(B) G^T            (A stored [k, m], trans_a)
 *   dB = op(A)^T G            (B stored [k, n])
 *   dB = G^T op(A)            (B stored [n, k], trans_b)
 * A b of rank 2 shared by a batched a: when a is not transposed its batch
 * axes fold into m, so forward, dA and even dB (the sum over the batch) are
 * each one GEMM. */
#include <string.h>

#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/op_util.h"
#include "patchgrad/autograd/ops.h"

/* C_i = op(A_i) op(B_i) + beta C_i for i < batch; sa, sb, sc are the element
 * distances between batch entries (0: the same matrix for every entry; for C
 * that means the products are summed into it).
 * One product after the other, each on all of BLIS's threads. Running one
 * product per thread through pg_gemm_serial would suit tiny products better,
 * but BLIS's OpenMP build then creates a one-thread team per call, which
 * calls malloc, and a training step must not. */
static void gemm_batch(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                       const float *a, int64_t lda, int64_t sa, const float *b, int64_t ldb,
                       int64_t sb, float beta, float *c, int64_t ldc, int64_t sc) {
  for (int64_t i = 0; i < batch; i++) {
    const float beta_i = sc == 0 && i > 0 ? 1.0f : beta; /* summing into one C */
    pg_gemm(ta, tb, m, n, k, 1.0f, a + i * sa, lda, b + i * sb, ldb, beta_i, c + i * sc, ldc);
  }
}

typedef struct {
  bool trans_a, trans_b;
  bool shared;               /* b of rank 2, shared by every batch entry of a */
  int64_t m, n, k, batch;
} matmul_saved;

static void matmul_backward(pg_ctx *ctx, pg_node *node) {
  const matmul_saved *s = node->saved;
  const pg_tensor *a = node->in[0], *b = node->in[1];
  const float *g = node->out->grad;
  const bool ta = s->trans_a, tb = s->trans_b, shared = s->shared;
  const int64_t m = s->m, n = s->n, k = s->k, batch = s->batch;
  const int64_t lda = a->shape[a->ndim - 1], ldb = b->shape[b->ndim - 1];
  const int64_t sb = shared ? 0 : k * n;
  if (m == 0 || n == 0 || k == 0) { /* an empty product: zero contributions */
    pg_grad_accum(ctx, node->in[0]);
    pg_grad_accum(ctx, node->in[1]);
    return;
  }
  bool fresh;
  float *da = pg_grad_dest(ctx, node->in[0], &fresh);
  if (da) {
    const float beta = fresh ? 0.0f : 1.0f;
    if (!ta && shared) /* all of a's rows at once */
      pg_gemm(false, !tb, batch * m, k, n, 1.0f, g, n, b->data, ldb, beta, da, k);
    else if (!ta)
      gemm_batch(batch, false, !tb, m, k, n, g, n, m * n, b->data, ldb, sb, beta, da, k, m * k);
    else
      gemm_batch(batch, tb, true, k, m, n, b->data, ldb, sb, g, n, m * n, beta, da, m, m * k);
  }
  float *db = pg_grad_dest(ctx, node->in[1], &fresh);
  if (db) {
    const float beta = fresh ? 0.0f : 1.0f;
    if (!ta && shared && !tb) /* the batch sum is the folded inner dimension */
      pg_gemm(true, false, k, n, batch * m, 1.0f, a->data, lda, g, n, beta, db, n);
    else if (!ta && shared)
      pg_gemm(true, false, n, k, batch * m, 1.0f, g, n, a->data, lda, beta, db, k);
    else if (!tb)
      gemm_batch(batch, !ta, false, k, n, m, a->data, lda, m * k, g, n, m * n, beta, db, n, sb);
    else
      gemm_batch(batch, true, ta, n, k, m, g, n, m * n, a->data, lda, m * k, beta, db, k, sb);
  }
}

pg_tensor *pg_matmul(pg_ctx *ctx, pg_tensor *a, pg_tensor *b, bool trans_a, bool trans_b) {
  if (!a || !b) return NULL;
  if (a->ndim < 2 || b->ndim < 2) {
    pg_fail(PG_ERR_ARG, "pg_matmul: a %s and b %s must both have rank >= 2 (got rank %d and %d)",
            pg_shape_of(a), pg_shape_of(b), a->ndim, b->ndim);
    return NULL;
  }
  const int64_t a_rows = a->shape[a->ndim - 2], a_cols = a->shape[a->ndim - 1];
  const int64_t b_rows = b->shape[b->ndim - 2], b_cols = b->shape[b->ndim - 1];
  const int64_t m = trans_a ? a_cols : a_rows, k = trans_a ? a_rows : a_cols;
  const int64_t kb = trans_b ? b_cols : b_rows, n = trans_b ? b_rows : b_cols;
  if (k != kb) {
    pg_fail(PG_ERR_ARG,
            "pg_matmul: inner sizes differ: a %s%s has k = %lld, b %s%s has k = %lld",
            pg_shape_of(a), trans_a ? " (transposed)" : "", (long long)k, pg_shape_of(b),
            trans_b ? " (transposed)" : "", (long long)kb);
    return NULL;
  }
  const bool shared = b->ndim == 2 && a->ndim > 2;
  bool same_batch = a->ndim == b->ndim;
  for (int i = 0; same_batch && i < a->ndim - 2; i++) same_batch = a->shape[i] == b->shape[i];
  if (!shared && !same_batch) {
    pg_fail(PG_ERR_ARG,
            "pg_matmul: batch axes of a %s and b %s differ (b must have a's batch axes or rank 2)",
            pg_shape_of(a), pg_shape_of(b));
    return NULL;
  }
  int64_t shape[PG_MAX_DIMS], batch = 1;
  for (int i = 0; i < a->ndim - 2; i++) batch *= shape[i] = a->shape[i];
  shape[a->ndim - 2] = m;
  shape[a->ndim - 1] = n;
  pg_tensor *out = pg_empty(ctx, a->ndim, shape);
  if (!out) return NULL;
  if (k == 0) /* an empty sum */
    memset(out->data, 0, (size_t)out->numel * sizeof(float));
  else if (shared && !trans_a)
    pg_gemm(false, trans_b, batch * m, n, k, 1.0f, a->data, a_cols, b->data, b_cols, 0.0f,
            out->data, n);
  else
    gemm_batch(batch, trans_a, trans_b, m, n, k, a->data, a_cols, m * k, b->data, b_cols,
               shared ? 0 : k * n, 0.0f, out->data, n, m * n);
  pg_node *node = pg_tape_record(ctx, "pg_matmul", matmul_backward, out, 2, (pg_tensor *[]){a, b});
  PG_SAVE(ctx, node, matmul_saved, .trans_a = trans_a, .trans_b = trans_b, .shared = shared,
          .m = m, .n = n, .k = k, .batch = batch);
  return out;
}
