/* bf16 autocast (autocast.h): the per-thread precision, the reference
 * float32 <-> bfloat16 conversion, and the oneDNN engine that multiplies
 * bf16 inputs with float32 accumulation.
 *
 * Each call rounds op(A) and op(B) into two grow-only bf16 buffers and
 * multiplies them with oneDNN's matmul primitive for that product, created
 * once and kept in the table that the float32 engine shares
 * (dnnl_matmul.h: engine, stream, primitives, scratchpad), on oneDNN's
 * OpenMP threads. oneDNN still makes a few small heap allocations inside
 * every execute call (its argument map); bench reports them. */
#include "patchgrad/autograd/autocast.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/autocast_gemm.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/dnnl_matmul.h"
#include "patchgrad/autograd/parallel.h"

static _Thread_local pg_precision thread_precision = PG_PRECISION_FP32;

static const char *const precision_names[] = {"fp32", "bf16"};
_Static_assert(sizeof precision_names / sizeof precision_names[0] == PG_PRECISION_COUNT,
               "one name per pg_precision");

const char *pg_precision_name(pg_precision p) {
  return (unsigned)p < PG_PRECISION_COUNT ? precision_names[p] : NULL;
}

pg_status pg_precision_parse(const char *text, pg_precision *out) {
  for (int p = 0; p < PG_PRECISION_COUNT; p++)
    if (text && strcmp(text, precision_names[p]) == 0) {
      *out = (pg_precision)p;
      return PG_OK;
    }
  return pg_fail(PG_ERR_ARG, "precision '%s' is not one of fp32, bf16", text ? text : "(null)");
}

uint16_t pg_float_to_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
  return (uint16_t)(u >> 16);
}

float pg_bf16_to_float(uint16_t x) {
  const uint32_t u = (uint32_t)x << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

pg_precision pg_autocast_get(void) { return thread_precision; }

pg_status pg_autocast_set(pg_precision p, pg_precision *previous) {
  if ((unsigned)p >= PG_PRECISION_COUNT) return pg_fail(PG_ERR_ARG, "pg_autocast_set: precision %d is not a pg_precision", (int)p);
  if (p == PG_PRECISION_BF16) {
    const pg_status st = pg_bf16_available();
    if (st) return st;
  }
  if (previous) *previous = thread_precision;
  thread_precision = p;
  return PG_OK;
}

static pg_autocast_stats stats;

pg_autocast_stats pg_autocast_get_stats(void) {
  pg_autocast_stats s;
  s.bf16_products = __atomic_load_n(&stats.bf16_products, __ATOMIC_RELAXED);
  s.primitives_created = pg_dnnl_primitives_created(true);
  s.fallbacks = __atomic_load_n(&stats.fallbacks, __ATOMIC_RELAXED);
  return s;
}

/* pg_bf16_round_row by the reference rule, written so GCC vectorises it
 * (CPUs without AVX512_BF16). */
static void round_row_reference(const float *src, int64_t n, uint16_t *d) {
  const uint32_t *s = (const uint32_t *)(const void *)src;
  for (int64_t j = 0; j < n; j++) {
    const uint32_t u = s[j];
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    d[j] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
/* The same row with AVX512_BF16's VCVTNEPS2BF16: round to nearest even and
 * quiet NaNs as the reference, 16 floats per instruction; subnormal inputs
 * become a signed zero. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void round_row_avx512bf16(const float *f, int64_t n, uint16_t *d) {
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m512bh two = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(f + j + 16), _mm512_loadu_ps(f + j));
    _mm512_storeu_si512((void *)(d + j), (__m512i)two);
  }
  for (; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1u);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, f + j));
    _mm256_mask_storeu_epi16((void *)(d + j), m, (__m256i)h);
  }
}

void pg_bf16_round_row(const float *src, int64_t n, uint16_t *dst) {
  static int fast = -1; /* decided once (the CPU does not change) */
  int f = __atomic_load_n(&fast, __ATOMIC_RELAXED);
  if (f < 0) __atomic_store_n(&fast, f = __builtin_cpu_supports("avx512bf16") ? 1 : 0, __ATOMIC_RELAXED);
  if (f) round_row_avx512bf16(src, n, dst);
  else round_row_reference(src, n, dst);
}
#else
void pg_bf16_round_row(const float *src, int64_t n, uint16_t *dst) { round_row_reference(src, n, dst); }
#endif

/* Rounds rows x cols floats (row stride ld) into a packed bf16 block, on
 * all threads when it is large (parallel.h). */
static void round_block(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst) {
  PG_FOR(rows * cols, r, rows, pg_bf16_round_row(src + r * ld, cols, dst + r * cols));
}

#ifdef PG_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>

/* The bf16 copies of A and B: grow-only buffers, used under the lock. */
static struct {
  pthread_mutex_t lock;
  pg_status availability;
  char why[256];
  uint16_t *buf_a, *buf_b;
  size_t cap_a, cap_b; /* elements */
} bf = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t bf_once = PTHREAD_ONCE_INIT;

static void bf_init(void) {
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  /* oneDNN's ISA values are bit sets; the bf16 instructions come with
   * avx512_core_bf16 and every AMX level above it. */
  if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16) {
    snprintf(bf.why, sizeof bf.why,
             "bf16 needs a CPU with AVX512_BF16 or AMX; oneDNN finds only ISA 0x%x here", (unsigned)isa);
    bf.availability = PG_ERR_STATE;
    return;
  }
  if (pg_dnnl_available()) {
    snprintf(bf.why, sizeof bf.why, "bf16: %s", pg_last_error());
    bf.availability = PG_ERR_STATE;
    return;
  }
  bf.availability = PG_OK;
}

pg_status pg_bf16_available(void) {
  pthread_once(&bf_once, bf_init);
  if (bf.availability) return pg_fail(bf.availability, "%s", bf.why);
  return PG_OK;
}

static bool grow(uint16_t **buf, size_t *cap, size_t need) {
  if (need <= *cap) return true;
  void *p = NULL;
  if (posix_memalign(&p, 64, need * sizeof(uint16_t))) return false;
  free(*buf);
  *buf = p;
  *cap = need;
  return true;
}

pg_status pg_gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                       int64_t ldc) {
  const pg_status avail = pg_bf16_available();
  if (avail) return avail;
  if (m < 0 || n < 0 || k < 0) return pg_fail(PG_ERR_ARG, "pg_gemm_bf16: negative size m %lld n %lld k %lld", (long long)m, (long long)n, (long long)k);
  if (m == 0 || n == 0) return PG_OK;
  pthread_mutex_lock(&bf.lock);
  pg_status st = PG_OK;
  if (!grow(&bf.buf_a, &bf.cap_a, (size_t)(m * k)) || !grow(&bf.buf_b, &bf.cap_b, (size_t)(k * n))) {
    st = pg_fail(PG_ERR_MEMORY, "pg_gemm_bf16: out of memory for the bf16 copies (%lld + %lld elements)",
                 (long long)(m * k), (long long)(k * n));
  } else {
    /* stored A is [m, k] (or [k, m] when transposed) with row stride lda;
     * its copy is packed: row stride k (or m) */
    round_block(a, trans_a ? k : m, trans_a ? m : k, lda, bf.buf_a);
    round_block(b, trans_b ? n : k, trans_b ? k : n, ldb, bf.buf_b);
    const pg_dnnl_product p = {.bf16 = true, .trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k,
                               .lda = trans_a ? m : k, .ldb = trans_b ? k : n, .ldc = ldc,
                               .alpha = alpha, .beta = beta};
    if ((st = pg_dnnl_matmul(&p, bf.buf_a, bf.buf_b, c))) {
      char why[512];
      snprintf(why, sizeof why, "%s", pg_last_error());
      st = pg_fail(st, "pg_gemm_bf16: %s", why);
    } else
      __atomic_add_fetch(&stats.bf16_products, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&bf.lock);
  return st;
}

void pg_autocast_release(void) {
  pthread_mutex_lock(&bf.lock);
  pg_dnnl_release(true);
  free(bf.buf_a);
  free(bf.buf_b);
  bf.buf_a = bf.buf_b = NULL;
  bf.cap_a = bf.cap_b = 0;
  pthread_mutex_unlock(&bf.lock);
}

#else /* built without oneDNN */

pg_status pg_bf16_available(void) {
  return pg_fail(PG_ERR_STATE, "bf16 needs oneDNN, and this patchgrad was built without it "
                 "(install libdnnl-dev and run meson setup again)");
}

pg_status pg_gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                       int64_t ldc) {
  (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b,
      (void)ldb, (void)beta, (void)c, (void)ldc;
  (void)round_block;
  return pg_bf16_available();
}

void pg_autocast_release(void) {}

#endif

/* Called by pg_gemm: true when it computed the product (bf16), false when
 * pg_gemm should run BLIS (fp32 autocast, a small product, or a oneDNN
 * failure, counted as a fallback). */
bool pg_autocast_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                      int64_t ldc) {
  if (thread_precision != PG_PRECISION_BF16) return false;
  if (2.0 * (double)m * (double)n * (double)k < (double)PG_AUTOCAST_MIN_FLOPS) return false;
  if (pg_gemm_bf16(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == PG_OK) return true;
  __atomic_add_fetch(&stats.fallbacks, 1, __ATOMIC_RELAXED);
  return false;
}
