/* The fused attention kernel of attention_fused.h. The kernels themselves
 * are written once, in attention_fused_body.h, and compiled here three
 * times: for AVX-512, for AVX2 and for the x86-64 baseline (SSE2), each
 * under its own `#pragma GCC target`; the first call picks the widest the
 * CPU runs. The build itself stays generic. */
#include "patchgrad/layers/attention_fused.h"

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
  if (!strcmp(isa, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return false;
}

/* The kernels of a named set, NULL when this CPU or build does not run it. */
static const pg_attn_kernels *kernels_of(const char *isa) {
  if (!pg_attn_fused_runs(isa)) return NULL;
#ifdef HAVE_X86_VARIANTS
  if (!strcmp(isa, "avx512")) return &kernels_avx512;
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

static const pg_attn_kernels *kernels_for(const pg_attn_fused_args *a) {
  return kernels_of(a->isa ? a->isa : pg_attn_fused_isa());
}

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

/* Per thread: one transposed k or v [d, T] and one T x T block; with
 * dropout also a second T x T block (the dropped weights, backward) and a
 * tile of MAX_RB rows (forward). Rounded up to whole cache lines so that
 * threads never share one. */
static int64_t per_thread_floats(const pg_attn_fused_args *a) {
  const int64_t T = a->tokens, d = a->dk > a->dv ? a->dk : a->dv;
  int64_t n = d * T + T * T;
  if (a->dropout > 0.0f) n += T * T + MAX_RB * T;
  return (n + 15) / 16 * 16;
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
