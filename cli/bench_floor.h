/* The GEMM floor of a DiT training step: the time BLIS itself needs for
 * every matrix product of one step (forward and the backward products),
 * measured shape by shape on this machine. A step cannot beat it by calling
 * BLIS; `patchgrad bench --floor` reports the step as a multiple of it. */
#ifndef PG_BENCH_FLOOR_H
#define PG_BENCH_FLOOR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "patchgrad/dit/dit.h"

typedef struct {
  double total_ms;      /* every GEMM of one step */
  double attention_ms;  /* of which the per-head QK^T, PV products and their backward */
  double gflop;         /* their FLOPs, in GFLOP */
  double blis_gflops;   /* BLIS's rate on a large product (4096 x 1536 x 384) */
} pg_gemm_floor;

/* A monotonic clock in milliseconds, for the benchmark's timings. */
double pg_bench_now_ms(void);

/* Times every product of one training step of cfg at `batch` with the
 * current thread count (pg_set_threads). Each shape runs until it has taken
 * ~budget_ms (at least 3 times); its time is the fastest run, with the
 * faster of BLIS on all threads and BLIS on one thread per product spread
 * over the threads (per-head products). With `log` non-NULL, prints one line
 * per shape. Allocates its operands on the heap (call it outside timed steps). */
pg_status pg_gemm_floor_measure(const pg_dit_config *cfg, int64_t batch, double budget_ms,
                                FILE *log, pg_gemm_floor *out);

#endif
