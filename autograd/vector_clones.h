/* PG_VECTOR_CLONES in front of a function: function multiversioning. GCC
 * compiles the function for AVX-512, AVX2 and the x86-64 baseline, and the
 * loader picks the widest the CPU runs, so the build itself stays generic.
 * With other compilers or targets it is an ordinary function. For the hot
 * loops that vectorise (LayerNorm, GELU, the optimizer updates). Internal
 * to the library: not installed. */
#ifndef PG_VECTOR_CLONES_H
#define PG_VECTOR_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PG_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PG_VECTOR_CLONES
#endif

#endif
