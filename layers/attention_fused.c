/* The fused attention kernel of attention_fused.h. The kernels themselves
 * are written once, in attention_fused_body.h, and compiled here three
 * times: for AVX-512, for AVX2 and for the x86-64 baseline (SSE2), each
 * under its own `#pragma GCC target`; the first call picks the widest the
 * CPU runs. The build itself stays generic. */
#include "patchgrad/layers/attention_fused.h"

#include "patchgrad/autograd/autocast.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>

typedef struct {
  void (*forward_pair)(const pg_attn_fused_args *a, int64_t pair, float *scratch);
  void (*backward_pair)(const pg_attn_fused_args *a, const pg_attn_fused_grads *g, int64_t pair,
                        float *scratch);
  pg_attn_fused_math_fns math;
} pg_attn_kernels;

/* Rows of a register tile, at most (the dropout tile in scratch has this many). */
#define MAX_RB 8

/* Per thread, the float32 kernels keep one transposed k or v [d, T] and one
 * T x T block; with dropout also a second T x T block (the dropped weights,
 * backward) and a tile of MAX_RB rows (forward). Rounded up to whole cache
 * lines so that threads never share one. */
static int64_t fp32_scratch_floats(const pg_attn_fused_args *a) {
  const int64_t T = a->tokens, d = a->dk > a->dv ? a->dk : a->dv;
  int64_t n = d * T + T * T;
  if (a->dropout > 0.0f) n += T * T + MAX_RB * T;
  return (n + 15) / 16 * 16;
}

/* The bf16 kernels' packed operands (uint32 pairs), after the float32
 * part: offsets in uint32s, each buffer a whole number of cache lines.
 *   kt      [max(dk, dv) / 2][Tp]  scores' B (k^T), dP's B (v^T)
 *   v       [T / 2][max(dk, dv)p]  the output's B (v), dv's B (dout), dq's B (k), dk's B (q)
 *   square  [T / 2][Tp]            dv's A (P^T), dk's A (dS^T)
 *   rows_d  [MAX_RB][max(dk, dv) / 2]  a tile's rows of q or dout
 *   rows_t  [MAX_RB][T / 2]        a tile's rows of P or dS
 * (halves rounded up; Tp, dkp, dvp: rounded up to 16). */
typedef struct {
  int64_t Tp, dkp, dvp, T2, dk2, dv2;
  int64_t kt, v, square, rows_d, rows_t, total;
} bf16_layout;

static int64_t up16(int64_t n) { return (n + 15) / 16 * 16; }

static bf16_layout bf16_layout_of(const pg_attn_fused_args *a) {
  bf16_layout L = {.Tp = up16(a->tokens), .dkp = up16(a->dk), .dvp = up16(a->dv),
                   .T2 = (a->tokens + 1) / 2, .dk2 = (a->dk + 1) / 2, .dv2 = (a->dv + 1) / 2};
  const int64_t d2 = L.dk2 > L.dv2 ? L.dk2 : L.dv2, dp = L.dkp > L.dvp ? L.dkp : L.dvp;
  L.kt = 0;
  L.v = L.kt + up16(d2 * L.Tp);
  L.square = L.v + up16(L.T2 * dp);
  L.rows_d = L.square + up16(L.T2 * L.Tp);
  L.rows_t = L.rows_d + up16(MAX_RB * d2);
  L.total = L.rows_t + up16(MAX_RB * L.T2);
  return L;
}

/* (clang, used for the fuzz build, ignores GCC's target pragmas: baseline only) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HAVE_X86_VARIANTS 1
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,fma")
#define W 16
#define RB 6
#define NV 4
#define ISA(name) name##_avx512
#define FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VMIN(a, b) _mm512_min_ps(a, b)
#include "patchgrad/layers/attention_fused_body.h"
#pragma GCC pop_options

/* The same kernels with bf16 products (attention_fused.h: "avx512bf16") */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,fma")
#define W 16
#define RB 6
#define NV 4
#define BF16 1
#define ISA(name) name##_avx512bf16
#define FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VMIN(a, b) _mm512_min_ps(a, b)
#include "patchgrad/layers/attention_fused_body.h"
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define W 8
#define RB 4
#define NV 3
#define ISA(name) name##_avx2
#define FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VMIN(a, b) _mm256_min_ps(a, b)
#include "patchgrad/layers/attention_fused_body.h"
#pragma GCC pop_options
#endif

/* The baseline: 4-wide vectors, which every x86-64 CPU (SSE2) and other
 * targets' generic vector support run. */
#define W 4
#define RB 4
#define NV 2
#define ISA(name) name##_base
#define FMADD(a, b, c) ((a) * (b) + (c))
#ifdef HAVE_X86_VARIANTS
#define VMAX(a, b) _mm_max_ps(a, b)
#define VMIN(a, b) _mm_min_ps(a, b)
#else /* the same rule: the second operand unless a > b (a < b for min) */
#define VMAX(a, b) ISA(select)((a) > (b), (a), (b))
#define VMIN(a, b) ISA(select)((a) < (b), (a), (b))
#endif
#include "patchgrad/layers/attention_fused_body.h"

bool pg_attn_fused_runs(const char *isa) {
  if (!isa) return false;
  if (!strcmp(isa, "sse2")) return true;
#ifdef HAVE_X86_VARIANTS
  __builtin_cpu_init();
  if (!strcmp(isa, "avx512"))
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
  if (!strcmp(isa, "avx512bf16"))
    return pg_attn_fused_runs("avx512") && __builtin_cpu_supports("avx512bf16");
  if (!strcmp(isa, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return false;
}

/* The kernels of a named set, NULL when this CPU or build does not run it. */
static const pg_attn_kernels *kernels_of(const char *isa) {
  if (!pg_attn_fused_runs(isa)) return NULL;
#ifdef HAVE_X86_VARIANTS
  if (!strcmp(isa, "avx512")) return &kernels_avx512;
  if (!strcmp(isa, "avx512bf16")) return &kernels_avx512bf16;
  if (!strcmp(isa, "avx2")) return &kernels_avx2;
#endif
  return &kernels_base;
}

/* The default set, chosen once by the first call from any thread; never
 * changed afterwards (callers that want another set name it in their args). */
static const char *default_isa = "sse2";
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void choose_default(void) {
  if (pg_attn_fused_runs("avx512")) default_isa = "avx512";
  else if (pg_attn_fused_runs("avx2")) default_isa = "avx2";
}

const char *pg_attn_fused_isa(void) {
  pthread_once(&default_once, choose_default);
  return default_isa;
}

/* The set a call runs: the one it names; else, on a thread under bf16
 * autocast with heads of at least PG_ATTN_BF16_MIN_TOKENS tokens, the bf16
 * products where the CPU has them; else the widest float32 set. Asked on
 * the calling thread (autocast is per thread), before any parallel region. */
static const char *isa_for(const pg_attn_fused_args *a) {
  if (a->isa) return a->isa;
  if (pg_autocast_get() == PG_PRECISION_BF16 && a->tokens >= PG_ATTN_BF16_MIN_TOKENS) {
    static int bf16 = -1; /* the CPU does not change */
    int have = __atomic_load_n(&bf16, __ATOMIC_RELAXED);
    if (have < 0) __atomic_store_n(&bf16, have = pg_attn_fused_runs("avx512bf16"), __ATOMIC_RELAXED);
    if (have) return "avx512bf16";
  }
  return pg_attn_fused_isa();
}

static const pg_attn_kernels *kernels_for(const pg_attn_fused_args *a) { return kernels_of(isa_for(a)); }

bool pg_attn_fused_bf16(const pg_attn_fused_args *a) { return !strcmp(isa_for(a), "avx512bf16"); }

const pg_attn_fused_math_fns *pg_attn_fused_math(const char *isa) {
  const pg_attn_kernels *k = kernels_of(isa);
  return k ? &k->math : NULL;
}

#define FUSED_MAX_TOKENS 1024
#define FUSED_MAX_HEAD 256

bool pg_attn_fused_fits(int64_t tokens, int64_t dk, int64_t dv) {
  return tokens >= 1 && tokens <= FUSED_MAX_TOKENS && dk >= 1 && dk <= FUSED_MAX_HEAD && dv >= 1 &&
         dv <= FUSED_MAX_HEAD;
}

/* Per thread: the float32 part, and the packed operands when the call runs
 * the bf16 products. */
static int64_t per_thread_floats(const pg_attn_fused_args *a) {
  return fp32_scratch_floats(a) + (pg_attn_fused_bf16(a) ? bf16_layout_of(a).total : 0);
}

int64_t pg_attn_fused_scratch_floats(const pg_attn_fused_args *a, int threads) {
  return per_thread_floats(a) * (threads > 0 ? threads : 1);
}

/* `threads` as the threading policy gives them (autograd/parallel.h): the
 * full team, pairs spread evenly, or one, without entering OpenMP. */
void pg_attn_fused_forward(const pg_attn_fused_args *a, float *scratch, int threads) {
  const pg_attn_kernels *kernels = kernels_for(a);
  const int64_t pairs = a->batch * a->heads, per = per_thread_floats(a);
  if (threads <= 1) {
    for (int64_t pr = 0; pr < pairs; pr++) kernels->forward_pair(a, pr, scratch);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t pr = 0; pr < pairs; pr++)
    kernels->forward_pair(a, pr, scratch + omp_get_thread_num() * per);
}

void pg_attn_fused_backward(const pg_attn_fused_args *a, const pg_attn_fused_grads *g,
                            float *scratch, int threads) {
  const pg_attn_kernels *kernels = kernels_for(a);
  const int64_t pairs = a->batch * a->heads, per = per_thread_floats(a);
  if (threads <= 1) {
    for (int64_t pr = 0; pr < pairs; pr++) kernels->backward_pair(a, g, pr, scratch);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t pr = 0; pr < pairs; pr++)
    kernels->backward_pair(a, g, pr, scratch + omp_get_thread_num() * per);
}
