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
} pg_attn_kernels;

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

static const pg_attn_kernels *kernels;
static const char *kernels_isa;
static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;

static void choose_kernels_once(void);

static bool cpu_runs(const char *isa) {
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

bool pg_attn_fused_use_isa(const char *isa) {
  pthread_once(&kernels_once, choose_kernels_once);
  if (!cpu_runs(isa)) return false;
#ifdef HAVE_X86_VARIANTS
  if (!strcmp(isa, "avx512")) kernels = &kernels_avx512;
  if (!strcmp(isa, "avx2")) kernels = &kernels_avx2;
#endif
  if (!strcmp(isa, "sse2")) kernels = &kernels_base;
  kernels_isa = kernels == &kernels_base ? "sse2" : isa;
  return true;
}

static void choose_kernels_once(void) {
  kernels = &kernels_base;
  kernels_isa = "sse2";
#ifdef HAVE_X86_VARIANTS
  if (cpu_runs("avx512")) {
    kernels = &kernels_avx512;
    kernels_isa = "avx512";
  } else if (cpu_runs("avx2")) {
    kernels = &kernels_avx2;
    kernels_isa = "avx2";
  }
#endif
}

static void choose_kernels(void) { pthread_once(&kernels_once, choose_kernels_once); }

const char *pg_attn_fused_isa(void) {
  choose_kernels();
  return kernels_isa;
}

#define FUSED_MAX_TOKENS 1024
#define FUSED_MAX_HEAD 256

bool pg_attn_fused_fits(int64_t tokens, int64_t dk, int64_t dv) {
  return tokens >= 1 && tokens <= FUSED_MAX_TOKENS && dk >= 1 && dk <= FUSED_MAX_HEAD && dv >= 1 &&
         dv <= FUSED_MAX_HEAD;
}

/* Per thread: one transposed k or v [d, T] and one T x T block, each
 * rounded up to whole cache lines so that threads never share one. */
static int64_t per_thread_floats(const pg_attn_fused_args *a) {
  int64_t d = a->dk > a->dv ? a->dk : a->dv;
  int64_t n = d * a->tokens + a->tokens * a->tokens;
  return (n + 15) / 16 * 16;
}

int64_t pg_attn_fused_scratch_floats(const pg_attn_fused_args *a, int threads) {
  return per_thread_floats(a) * (threads > 0 ? threads : 1);
}

/* One team of `threads` for every call (never a team of one, which libgomp
 * allocates afresh each time), pairs spread evenly. */
void pg_attn_fused_forward(const pg_attn_fused_args *a, float *scratch, int threads) {
  choose_kernels();
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
  choose_kernels();
  const int64_t pairs = a->batch * a->heads, per = per_thread_floats(a);
  if (threads <= 1) {
    for (int64_t pr = 0; pr < pairs; pr++) kernels->backward_pair(a, g, pr, scratch);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t pr = 0; pr < pairs; pr++)
    kernels->backward_pair(a, g, pr, scratch + omp_get_thread_num() * per);
}
