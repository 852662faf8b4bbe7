/* bf16 mixed precision for matrix products: PyTorch's CPU autocast recipe
 * (torch.autocast("cpu", dtype=torch.bfloat16)).
 *
 * While a thread's autocast precision is PG_PRECISION_BF16, every large
 * product that pg_gemm computes on that thread (Linear, Patchify/Unpatchify,
 * matmul, forward and backward) rounds its two inputs to bfloat16 (round to
 * nearest even) and multiplies them with oneDNN, accumulating in float32 and
 * writing float32. Everything else stays float32, as under torch.autocast:
 * parameters, optimizer state, gradients accumulated into parameters,
 * LayerNorm statistics, softmax, the loss and every reduction. Products too
 * small to pay for the rounding (m*n*k < PG_AUTOCAST_MIN_FLOPS / 2),
 * pg_gemm_serial and the general attention path's per-head products stay
 * float32; the fused attention kernel runs its own products in bf16 under
 * the same thread state (layers/attention_fused.h, 32 tokens or more).
 *
 * The state is per thread, like torch.autocast's: set it on the thread that
 * runs forward and backward. With PG_PRECISION_FP32 (the default) pg_gemm is
 * BLIS, bit for bit as without this header.
 *
 * Accuracy. bf16 keeps 8 significant bits, so rounding one input changes it
 * by at most u = 2^-8 relative. A product entry sum_k a_ik b_kj computed from
 * rounded inputs with float32 accumulation differs from the exact one by at
 * most (2u + u^2 + k 2^-24) sum_k |a_ik| |b_kj| (each factor rounded once,
 * then k float32 additions); tests/test_autocast.c checks that bound, and
 * gradients through a layer inherit one such factor per product on their
 * path. oneDNN's kernels flush subnormal inputs and results to zero (as
 * PyTorch's bf16 CPU path does through the same library).
 */
#ifndef PG_AUTOCAST_H
#define PG_AUTOCAST_H

#include "patchgrad/autograd/api.h"
#include "patchgrad/autograd/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  PG_PRECISION_FP32 = 0, /* every product in float32 through BLIS */
  PG_PRECISION_BF16 = 1, /* large products' inputs rounded to bf16, oneDNN, float32 out */
  PG_PRECISION_COUNT
} pg_precision;

/* "fp32" / "bf16"; NULL for a value outside the enum. */
PG_API const char *pg_precision_name(pg_precision p);
/* Parses "fp32" or "bf16"; an error naming the text otherwise. */
PG_API pg_status pg_precision_parse(const char *text, pg_precision *out);

/* PG_OK when bf16 products can run here; otherwise an error naming what is
 * missing: a build without oneDNN (libdnnl-dev), or a CPU without
 * AVX512_BF16 or AMX (oneDNN would emulate bf16 more slowly than float32). */
PG_API pg_status pg_bf16_available(void);

/* Sets this thread's autocast precision and returns the previous one through
 * *previous (may be NULL). Asking for bf16 where pg_bf16_available() fails
 * returns that error and changes nothing. */
PG_API pg_status pg_autocast_set(pg_precision p, pg_precision *previous);
PG_API pg_precision pg_autocast_get(void);

/* Round-to-nearest-even float32 -> bfloat16 (the top 16 bits of the float32
 * pattern after rounding; NaN stays a quiet NaN of the same sign), and back
 * (exact). The reference conversion; the GEMM path uses the same rule,
 * with AVX512_BF16's VCVTNEPS2BF16 where the CPU has it, which also flushes
 * subnormal inputs to a signed zero (as oneDNN's bf16 dot products read
 * subnormal inputs anyway). */
PG_API uint16_t pg_float_to_bf16(float x);
PG_API float pg_bf16_to_float(uint16_t x);

/* Rounds n floats src[0..n) into dst[0..n) by the rule above, on the
 * calling thread: the one row kernel behind every bf16 operand (products
 * here, attention's in layers/attention_fused.c). Where the CPU has
 * AVX512_BF16 it runs VCVTNEPS2BF16, which also reads subnormal inputs as
 * zero (as the bf16 dot products do anyway); elsewhere a loop of the rule. */
PG_API void pg_bf16_round_row(const float *src, int64_t n, uint16_t *dst);

/* The product pg_gemm computes under bf16 autocast, for callers that want it
 * regardless of the thread's state (and for tests): C[m, n] = alpha *
 * op(A) op(B) + beta * C, row-major, with op(A) and op(B) rounded to bf16.
 * Returns an error (and leaves C untouched) when bf16 is unavailable or
 * oneDNN refuses the shape. Primitives are created once per shape and kept;
 * the bf16 copies of A and B live in buffers that only grow. */
PG_API pg_status pg_gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                              float alpha, const float *a, int64_t lda, const float *b,
                              int64_t ldb, float beta, float *c, int64_t ldc);

/* Products below this many floating-point operations (2 m n k) stay float32
 * under autocast: rounding the inputs costs more than bf16 saves there. */
#define PG_AUTOCAST_MIN_FLOPS ((int64_t)1 << 21)

/* Statistics since the start (or the last reset): products computed in bf16,
 * primitives created, and products that fell back to float32 because oneDNN
 * failed on them (0 unless something is wrong; bench prints it). */
typedef struct {
  int64_t bf16_products, primitives_created, fallbacks;
} pg_autocast_stats;
PG_API pg_autocast_stats pg_autocast_get_stats(void);

/* Frees the cached primitives and buffers (they are otherwise kept until the
 * process ends). Call only when no product is running. */
PG_API void pg_autocast_release(void);

#endif
