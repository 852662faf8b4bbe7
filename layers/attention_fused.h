/* A fused multi-head attention kernel for small heads: per (batch, head)
 * pair, scores = scale * q k^T, a stable softmax and out = P v in one pass
 * over cache-resident blocks, and the backward (dv = P^T dout, dP = dout
 * v^T, dS = P * (dP - rowsum(P * dP)), dq = scale dS k, dk = scale dS^T q)
 * likewise. The products run through register-blocked micro-kernels
 * written for AVX-512, AVX2 and plain SSE2 (chosen at run time), threaded
 * over the pairs: thousands of tiny BLIS calls (and BLIS's per-call
 * threading and packing) cost more than the arithmetic at these sizes.
 *
 * Layouts: head n of batch entry b reads q at q + b*T*q_ld + n*dk (rows ld
 * floats apart), likewise k, v, out and the gradients; probs is
 * [B, heads, T, T]. No masks and no dropout: callers with those use the
 * general path. */
#ifndef PG_ATTENTION_FUSED_H
#define PG_ATTENTION_FUSED_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  int64_t batch, tokens, heads, dk, dv;
  const float *q, *k, *v;
  int64_t q_ld, k_ld, v_ld;
  float *out;      /* [B, T, out_ld], head n at column n*dv */
  int64_t out_ld;
  float scale;
  float *probs;    /* [B, heads, T, T] softmax saved for backward, or NULL */
} pg_attn_fused_args;

typedef struct {
  const float *dout; /* laid out like out */
  float *dq, *dk, *dv; /* laid out like q, k, v; NULL: not wanted */
  int64_t dq_ld, dk_ld, dv_ld;
  bool acc_q, acc_k, acc_v; /* add into the destination instead of writing it */
} pg_attn_fused_grads;

/* True when the fused kernel takes heads of this size: it keeps a T x T
 * block and the transposed k, v of one pair per thread in scratch. */
bool pg_attn_fused_fits(int64_t tokens, int64_t dk, int64_t dv);

/* Floats of scratch the calls need for `threads` threads. */
int64_t pg_attn_fused_scratch_floats(const pg_attn_fused_args *a, int threads);

/* out (and probs, when non-NULL) for every pair, on `threads` threads. */
void pg_attn_fused_forward(const pg_attn_fused_args *a, float *scratch, int threads);

/* Gradients from the saved probs (a->probs must be set). */
void pg_attn_fused_backward(const pg_attn_fused_args *a, const pg_attn_fused_grads *g,
                            float *scratch, int threads);

/* The instruction set the kernels run with: "avx512", "avx2" or "sse2". */
const char *pg_attn_fused_isa(void);
/* For tests: run the kernels of `isa` from now on; false (nothing changed)
 * when this CPU or build cannot run them. */
bool pg_attn_fused_use_isa(const char *isa);

#endif
