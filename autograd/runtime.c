#include "patchgrad/autograd/runtime.h"

#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "patchgrad/autograd/blas_internal.h"

pg_runtime_options pg_runtime_defaults(void) { return (pg_runtime_options){.blis_arch = true}; }

/* The skx kernel set on AMD CPUs with AVX-512 (runtime.h says why). */
static void choose_blis_arch(void) {
#if defined(__x86_64__)
  if (getenv("BLIS_ARCH_TYPE")) return;
  unsigned max_leaf, vendor_b, vendor_c, vendor_d;
  if (!__get_cpuid(0, &max_leaf, &vendor_b, &vendor_c, &vendor_d)) return;
  const bool amd = vendor_b == 0x68747541u; /* "Auth" of "AuthenticAMD" */
  __builtin_cpu_init();
  /* the instruction sets of the skx kernels, with the OS saving zmm state */
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  if (amd && avx512) {
    char id[16];
    snprintf(id, sizeof id, "%d", (int)BLIS_ARCH_SKX);
    setenv("BLIS_ARCH_TYPE", id, 0);
  }
#endif
}

pg_status pg_runtime_init(const pg_runtime_options *opts) {
  const pg_runtime_options o = opts ? *opts : pg_runtime_defaults();
  if (pg_blis_started())
    return pg_fail(PG_ERR_STATE, "pg_runtime_init: BLIS has run already (a matrix product or "
                                 "pg_set_threads came first), so its kernels are chosen; call it "
                                 "at the start of main");
  if (o.blis_arch) choose_blis_arch();
  return PG_OK;
}
