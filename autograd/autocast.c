/* bf16 autocast (autocast.h): the per-thread precision, the reference
 * float32 <-> bfloat16 conversion, and the oneDNN engine that multiplies
 * bf16 inputs with float32 accumulation.
 *
 * oneDNN's matmul primitive is created once per (shape, transposes, strides,
 * alpha, beta) and kept in a small table; each call rounds op(A) and op(B)
 * into two grow-only bf16 buffers, points the primitive's memory objects at
 * them and runs it on oneDNN's OpenMP threads (Debian's libdnnl uses the
 * OpenMP runtime, so these are the same threads as the rest of patchgrad).
 * The scratchpad is ours too (dnnl_scratchpad_mode_user), so oneDNN keeps no
 * per-primitive buffers. oneDNN still makes a few small heap allocations
 * inside every execute call (its argument map); bench reports them. */
#include "patchgrad/autograd/autocast.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/autocast_gemm.h"
#include "patchgrad/autograd/blas.h"
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
  s.primitives_created = __atomic_load_n(&stats.primitives_created, __ATOMIC_RELAXED);
  s.fallbacks = __atomic_load_n(&stats.fallbacks, __ATOMIC_RELAXED);
  return s;
}

/* One row of round_block by the reference rule, written so GCC vectorises
 * it (for CPUs without AVX512_BF16 and for tests). */
static void round_row_reference(const uint32_t *s, int64_t cols, uint16_t *d) {
  for (int64_t j = 0; j < cols; j++) {
    const uint32_t u = s[j];
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    d[j] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(PG_HAVE_DNNL)
#include <immintrin.h>
/* The same row with AVX512_BF16's VCVTNEPS2BF16: round to nearest even and
 * quiet NaNs as the reference, 16 floats per instruction; it flushes
 * subnormal inputs to a signed zero, which changes no product because
 * oneDNN's bf16 dot products (VDPBF16PS) read subnormal inputs as zero too.
 * Only called where pg_bf16_available() found the instruction set. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void round_row_avx512bf16(const uint32_t *s, int64_t cols, uint16_t *d) {
  const float *f = (const float *)(const void *)s;
  int64_t j = 0;
  for (; j + 32 <= cols; j += 32) {
    const __m512bh two = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(f + j + 16), _mm512_loadu_ps(f + j));
    _mm512_storeu_si512((void *)(d + j), (__m512i)two);
  }
  for (; j < cols; j += 16) {
    const __mmask16 m = cols - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - j)) - 1u);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, f + j));
    _mm256_mask_storeu_epi16((void *)(d + j), m, (__m256i)h);
  }
}
#define HAVE_ROUND_AVX512BF16 1
#endif

/* Rounds rows x cols floats (row stride ld) into a packed bf16 block, on
 * all threads when it is large (parallel.h). */
static void round_block(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst) {
#ifdef HAVE_ROUND_AVX512BF16
  static int fast = -1; /* decided once (the CPU does not change) */
  int f = __atomic_load_n(&fast, __ATOMIC_RELAXED);
  if (f < 0) __atomic_store_n(&fast, f = __builtin_cpu_supports("avx512bf16") ? 1 : 0, __ATOMIC_RELAXED);
  if (f) {
    PG_FOR(rows * cols, r, rows, round_row_avx512bf16((const uint32_t *)(const void *)(src + r * ld), cols, dst + r * cols));
    return;
  }
#endif
  PG_FOR(rows * cols, r, rows, round_row_reference((const uint32_t *)(const void *)(src + r * ld), cols, dst + r * cols));
}

#ifdef PG_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>

#define CACHE_SIZE 128

typedef struct {
  bool used, trans_a, trans_b;
  int64_t m, n, k, ldc;
  uint32_t alpha_bits, beta_bits;
  dnnl_primitive_t prim;
  dnnl_memory_t mem_a, mem_b, mem_c, mem_scratch;
} cache_entry;

static struct {
  pthread_mutex_t lock;
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  pg_status availability;
  char why[256];
  cache_entry entries[CACHE_SIZE];
  int next_victim;
  uint16_t *buf_a, *buf_b;
  size_t cap_a, cap_b; /* elements */
  void *scratch;
  size_t cap_scratch; /* bytes */
} dn = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t dn_once = PTHREAD_ONCE_INIT;

static void dn_init(void) {
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  /* oneDNN's ISA values are bit sets; the bf16 instructions come with
   * avx512_core_bf16 and every AMX level above it. */
  if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16) {
    snprintf(dn.why, sizeof dn.why,
             "bf16 needs a CPU with AVX512_BF16 or AMX; oneDNN finds only ISA 0x%x here", (unsigned)isa);
    dn.availability = PG_ERR_STATE;
    return;
  }
  if (dnnl_engine_create(&dn.engine, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&dn.stream, dn.engine, dnnl_stream_default_flags) != dnnl_success) {
    snprintf(dn.why, sizeof dn.why, "bf16: oneDNN could not create its CPU engine");
    dn.availability = PG_ERR_STATE;
    return;
  }
  dn.availability = PG_OK;
}

pg_status pg_bf16_available(void) {
  pthread_once(&dn_once, dn_init);
  if (dn.availability) return pg_fail(dn.availability, "%s", dn.why);
  return PG_OK;
}

static void destroy_entry(cache_entry *e) {
  if (!e->used) return;
  dnnl_primitive_destroy(e->prim);
  dnnl_memory_destroy(e->mem_a);
  dnnl_memory_destroy(e->mem_b);
  dnnl_memory_destroy(e->mem_c);
  dnnl_memory_destroy(e->mem_scratch);
  memset(e, 0, sizeof *e);
}

static bool grow(void **buf, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  void *p = NULL;
  if (posix_memalign(&p, 64, need * elem)) return false;
  free(*buf);
  *buf = p;
  *cap = need;
  return true;
}

static uint32_t bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

/* The primitive for this product, created on first use. Called locked. */
static cache_entry *entry_for(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                              int64_t ldc) {
  const uint32_t ab = bits(alpha), bb = bits(beta);
  for (int i = 0; i < CACHE_SIZE; i++) {
    cache_entry *e = &dn.entries[i];
    if (e->used && e->trans_a == ta && e->trans_b == tb && e->m == m && e->n == n && e->k == k &&
        e->ldc == ldc && e->alpha_bits == ab && e->beta_bits == bb)
      return e;
  }
  cache_entry *e = NULL;
  for (int i = 0; i < CACHE_SIZE && !e; i++)
    if (!dn.entries[i].used) e = &dn.entries[i];
  if (!e) {
    e = &dn.entries[dn.next_victim];
    dn.next_victim = (dn.next_victim + 1) % CACHE_SIZE;
    destroy_entry(e);
  }
  /* op(A) [m, k] and op(B) [k, n] are packed as stored: A^T is a [k, m]
   * block read with strides (1, m). */
  dnnl_memory_desc_t md_a, md_b, md_c;
  dnnl_dims_t dims_a = {m, k}, dims_b = {k, n}, dims_c = {m, n};
  dnnl_dims_t str_a = {ta ? 1 : k, ta ? m : 1}, str_b = {tb ? 1 : n, tb ? k : 1}, str_c = {ldc, 1};
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t post = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_matmul_desc_t desc;
  bool ok = dnnl_memory_desc_init_by_strides(&md_a, 2, dims_a, dnnl_bf16, str_a) == dnnl_success &&
            dnnl_memory_desc_init_by_strides(&md_b, 2, dims_b, dnnl_bf16, str_b) == dnnl_success &&
            dnnl_memory_desc_init_by_strides(&md_c, 2, dims_c, dnnl_f32, str_c) == dnnl_success &&
            dnnl_matmul_desc_init(&desc, &md_a, &md_b, NULL, &md_c) == dnnl_success &&
            dnnl_primitive_attr_create(&attr) == dnnl_success &&
            dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
  if (ok && alpha != 1.0f) ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
  if (ok && beta != 0.0f)
    ok = dnnl_post_ops_create(&post) == dnnl_success &&
         dnnl_post_ops_append_sum(post, beta) == dnnl_success &&
         dnnl_primitive_attr_set_post_ops(attr, post) == dnnl_success;
  if (ok) ok = dnnl_primitive_desc_create(&pd, &desc, attr, dn.engine, NULL) == dnnl_success;
  if (ok) ok = dnnl_primitive_create(&e->prim, pd) == dnnl_success;
  const dnnl_memory_desc_t *md_s = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
  if (ok) ok = md_s != NULL;
  const size_t scratch_bytes = ok ? dnnl_memory_desc_get_size(md_s) : 0;
  if (ok) ok = grow(&dn.scratch, &dn.cap_scratch, scratch_bytes ? scratch_bytes : 1, 1);
  if (ok)
    ok = dnnl_memory_create(&e->mem_a, &md_a, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->mem_b, &md_b, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->mem_c, &md_c, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->mem_scratch, md_s, dn.engine, DNNL_MEMORY_NONE) == dnnl_success;
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (post) dnnl_post_ops_destroy(post);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    dnnl_memory_t mems[4] = {e->mem_a, e->mem_b, e->mem_c, e->mem_scratch};
    for (int i = 0; i < 4; i++)
      if (mems[i]) dnnl_memory_destroy(mems[i]);
    memset(e, 0, sizeof *e);
    return NULL;
  }
  e->used = true;
  e->trans_a = ta;
  e->trans_b = tb;
  e->m = m;
  e->n = n;
  e->k = k;
  e->ldc = ldc;
  e->alpha_bits = ab;
  e->beta_bits = bb;
  __atomic_add_fetch(&stats.primitives_created, 1, __ATOMIC_RELAXED);
  return e;
}

pg_status pg_gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                       int64_t ldc) {
  const pg_status avail = pg_bf16_available();
  if (avail) return avail;
  if (m < 0 || n < 0 || k < 0) return pg_fail(PG_ERR_ARG, "pg_gemm_bf16: negative size m %lld n %lld k %lld", (long long)m, (long long)n, (long long)k);
  if (m == 0 || n == 0) return PG_OK;
  pthread_mutex_lock(&dn.lock);
  pg_status st = PG_OK;
  cache_entry *e = entry_for(trans_a, trans_b, m, n, k, alpha, beta, ldc);
  if (!e) {
    st = pg_fail(PG_ERR_STATE, "pg_gemm_bf16: oneDNN has no bf16 matmul for m %lld n %lld k %lld", (long long)m,
                 (long long)n, (long long)k);
  } else if (!grow((void **)&dn.buf_a, &dn.cap_a, (size_t)(m * k), sizeof(uint16_t)) ||
             !grow((void **)&dn.buf_b, &dn.cap_b, (size_t)(k * n), sizeof(uint16_t))) {
    st = pg_fail(PG_ERR_MEMORY, "pg_gemm_bf16: out of memory for the bf16 copies (%lld + %lld elements)",
                 (long long)(m * k), (long long)(k * n));
  } else {
    /* stored A is [m, k] (or [k, m] when transposed) with row stride lda */
    round_block(a, trans_a ? k : m, trans_a ? m : k, lda, dn.buf_a);
    round_block(b, trans_b ? n : k, trans_b ? k : n, ldb, dn.buf_b);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->mem_a},
                               {DNNL_ARG_WEIGHTS, e->mem_b},
                               {DNNL_ARG_DST, e->mem_c},
                               {DNNL_ARG_SCRATCHPAD, e->mem_scratch}};
    if (dnnl_memory_set_data_handle(e->mem_a, dn.buf_a) != dnnl_success ||
        dnnl_memory_set_data_handle(e->mem_b, dn.buf_b) != dnnl_success ||
        dnnl_memory_set_data_handle(e->mem_c, c) != dnnl_success ||
        dnnl_memory_set_data_handle(e->mem_scratch, dn.scratch) != dnnl_success ||
        dnnl_primitive_execute(e->prim, dn.stream, 4, args) != dnnl_success ||
        dnnl_stream_wait(dn.stream) != dnnl_success)
      st = pg_fail(PG_ERR_STATE, "pg_gemm_bf16: oneDNN failed to run m %lld n %lld k %lld", (long long)m,
                   (long long)n, (long long)k);
    else
      __atomic_add_fetch(&stats.bf16_products, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&dn.lock);
  return st;
}

void pg_autocast_release(void) {
  pthread_mutex_lock(&dn.lock);
  for (int i = 0; i < CACHE_SIZE; i++) destroy_entry(&dn.entries[i]);
  free(dn.buf_a);
  free(dn.buf_b);
  free(dn.scratch);
  dn.buf_a = dn.buf_b = NULL;
  dn.scratch = NULL;
  dn.cap_a = dn.cap_b = dn.cap_scratch = 0;
  pthread_mutex_unlock(&dn.lock);
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
