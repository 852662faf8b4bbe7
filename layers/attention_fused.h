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
 * floats apart), likewise k, v, out and the gradients; probs and keep are
 * [B, heads, T, T].
 *
 * Masks and dropout as pg_sdpa_op documents them (attention.h): a causal
 * query i sees keys 0..i, a padded key is seen by no query of its batch
 * entry, a query that sees no key gets a zero row of weights; dropout keeps
 * each weight with probability 1 - p (drawn in row-major order from the
 * pair's own seed, so the masks do not depend on the threads) and scales
 * the kept ones by 1 / (1 - p).
 *
 * The exp, softmax row and softmax backward row are SIMD versions of
 * autograd/kernels.h's (same clamps and special values; the polynomial
 * uses fused multiply-adds where the CPU has them), checked against those
 * by tests/test_kernels.c through pg_attn_fused_math. */
#ifndef PG_ATTENTION_FUSED_H
#define PG_ATTENTION_FUSED_H

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/rng.h"

typedef struct {
  int64_t batch, tokens, heads, dk, dv;
  const float *q, *k, *v;
  int64_t q_ld, k_ld, v_ld;
  float *out;      /* [B, T, out_ld], head n at column n*dv */
  int64_t out_ld;
  float scale;
  float *probs;    /* [B, heads, T, T] softmax saved for backward, or NULL */
  bool causal;
  const uint8_t *pad;     /* [B, T], 1 = a padded key; NULL: none (forward only) */
  float dropout;          /* probability of dropping a weight; 0: none */
  const uint64_t *seeds;  /* [B * heads] dropout seeds (forward only) */
  uint8_t *keep;          /* [B, heads, T, T] dropout keep-mask: written forward when
                           * non-NULL, read backward (required there with dropout) */
  const char *isa;        /* NULL: the default (below); else "avx512", "avx512bf16",
                           * "avx2" or "sse2" (tests), which the CPU must run */
} pg_attn_fused_args;

typedef struct {
  const float *dout; /* laid out like out */
  float *dq, *dk, *dv; /* laid out like q, k, v; NULL: not wanted */
  int64_t dq_ld, dk_ld, dv_ld;
  bool acc_q, acc_k, acc_v; /* add into the destination instead of writing it */
} pg_attn_fused_grads;

/* bf16 products. Under bf16 autocast (autograd/autocast.h) on the calling
 * thread, with at least PG_ATTN_BF16_MIN_TOKENS tokens and a CPU with
 * AVX512_BF16, the default set is "avx512bf16": the six products of a pair
 * (scores, output, dv, dP, dq, dk) round their operands to bf16 (round to
 * nearest even; subnormal inputs read as zero) and accumulate in float32
 * with VDPBF16PS, as torch.autocast runs attention's bmm in bf16; the
 * softmax, its backward, masks, dropout and the saved probabilities stay
 * float32. Each product then carries autocast.h's error bound. Below that
 * many tokens the rounding and packing cost more than bf16 saves, and the
 * float32 kernels run. */
#define PG_ATTN_BF16_MIN_TOKENS 32

/* True when a call with these args runs the bf16 products (named, or the
 * default under bf16 autocast as above); ask on the thread that will call. */
bool pg_attn_fused_bf16(const pg_attn_fused_args *a);

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

/* The instruction set the kernels run with by default: the widest of
 * "avx512", "avx2", "sse2" this CPU runs, chosen once (thread-safe). */
const char *pg_attn_fused_isa(void);
/* True when this CPU and build run the kernels of `isa`. */
bool pg_attn_fused_runs(const char *isa);

/* The SIMD math of one instruction set, for tests against kernels.h: y = exp
 * of each x (n values, y may be x), one softmax row in place (n >= 1), one
 * softmax backward row in place (ds = p * (ds - sum(p * ds))). NULL when
 * this CPU does not run `isa`. */
typedef struct {
  void (*exp)(const float *x, float *y, int64_t n);
  void (*softmax_row)(float *s, int64_t n);
  void (*softmax_grad_row)(const float *p, float *ds, int64_t n);
} pg_attn_fused_math_fns;
const pg_attn_fused_math_fns *pg_attn_fused_math(const char *isa);

#endif
