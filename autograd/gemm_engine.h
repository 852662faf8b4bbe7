/* Which library multiplies float32 matrices: BLIS or oneDNN, chosen per
 * product shape by timing both on this machine.
 *
 * What it covers. pg_gemm and pg_gemm_auto (blas.h), on any thread count,
 * for products of at least PG_GEMM_ENGINE_MIN_FLOPS floating-point
 * operations (2 m n k), called outside a parallel region. Everything else
 * is BLIS: smaller products, pg_gemm_serial (products inside parallel
 * loops), pg_gemm_float32 (attention's per-head products). With --threads 1
 * the large products are decided as with 2 (each thread count has its own
 * keys), so a one-thread run measures the same engines as a two-thread one. bf16 autocast (autocast.h) comes first
 * and is unchanged: under it a large product is bf16 on oneDNN whatever the
 * engine.
 *
 * The settings (process-wide, not per thread):
 *   PG_GEMM_ENGINE_AUTO    (the default) each product's key, (trans_a,
 *       trans_b, m, n, k, lda, ldb, ldc, alpha == 1, beta == 0, the thread
 *       count), is decided the first time it is seen: both engines compute
 *       it into a scratch output (never the caller's C; with beta != 0 the
 *       scratch is first given C's values, so the beta path itself is
 *       timed), alternately, one warm-up each then the best of 3 timed
 *       runs each, and oneDNN is chosen only when it takes less than 0.95
 *       times BLIS's time; then the real product runs on the chosen engine.
 *       In a build without oneDNN, or where oneDNN cannot start, auto is
 *       BLIS everywhere.
 *   PG_GEMM_ENGINE_BLIS    BLIS for every product: patchgrad before this
 *       choice existed, bit for bit, and malloc-free steps (below).
 *   PG_GEMM_ENGINE_ONEDNN  oneDNN for every covered product, without
 *       timing; refused in a build without oneDNN.
 * The environment variable PG_GEMM_ENGINE=auto|blis|onednn sets the engine
 * when the library first needs it; pg_gemm_engine_set wins over it.
 *
 * Determinism. The two engines round differently (each within float32
 * accuracy of the exact product), so a fresh timing that went the other
 * way would change a run's bits. The decisions are therefore made once per
 * machine and kept, one line per key with the CPU's name, in the file
 * gemm-engine beside BLIS's kernel choice (runtime.h: $PG_CACHE_DIR, else
 * ${XDG_CACHE_HOME:-~/.cache}/patchgrad). A process reads the file once,
 * at its first covered product; before it appends a decision of its own it
 * re-reads the file under a file lock and takes the decision another
 * process wrote for the same key meanwhile, so concurrent processes (MPI
 * ranks, tests run in parallel) agree, and every later run with one seed
 * repeats its bits. Lines of another CPU and lines that do not parse are
 * ignored (and kept). Delete the file to measure again. Where the file
 * cannot be written, each process decides in memory (runs still work,
 * but two runs may then choose differently: pin blis where bits must
 * repeat). oneDNN's float32 products are run-to-run deterministic at a
 * fixed thread count; the thread count is part of the key, and a product
 * may be decided differently at another thread count, so unlike BLIS
 * alone, results under auto or onednn can change with --threads, and a
 * row's result can change with the number of rows multiplied with it (a
 * batch of another size is another key, and oneDNN's blocking follows the
 * shape), which with BLIS it never does.
 *
 * Allocation. oneDNN 2.6 allocates its argument map inside every
 * dnnl_primitive_execute: each product oneDNN computes makes 6 small
 * malloc/free pairs, 7 with beta != 0 (freed before it returns: RSS stays
 * flat, no page fault). So a training step is malloc-free after its first only with the
 * BLIS engine (PG_GEMM_ENGINE=blis, or pg_gemm_engine_set); `patchgrad
 * bench` reports the products each engine served and the allocations.
 * Deciding a key (first sight) allocates a scratch output and creates a
 * oneDNN primitive, which is kept (dnnl_matmul.h). */
#ifndef PG_GEMM_ENGINE_H
#define PG_GEMM_ENGINE_H

#include "patchgrad/autograd/api.h"
#include "patchgrad/autograd/error.h"

#include <stdint.h>

typedef enum {
  PG_GEMM_ENGINE_AUTO = 0, /* per key, the faster by timing (kept per machine) */
  PG_GEMM_ENGINE_BLIS = 1, /* BLIS everywhere */
  PG_GEMM_ENGINE_ONEDNN = 2, /* oneDNN for every covered product */
  PG_GEMM_ENGINE_COUNT
} pg_gemm_engine;

/* Products below this many floating-point operations (2 m n k) are BLIS
 * under every setting: the choice, and oneDNN's per-call set-up and
 * allocations, would cost more than they can save there. The same size as
 * bf16 autocast's PG_AUTOCAST_MIN_FLOPS. */
#define PG_GEMM_ENGINE_MIN_FLOPS ((int64_t)1 << 21)

/* "auto" / "blis" / "onednn"; NULL for a value outside the enum. */
PG_API const char *pg_gemm_engine_name(pg_gemm_engine e);

/* Parses "auto", "blis" or "onednn"; an error naming the text otherwise
 * (PG_ERR_ARG). */
PG_API pg_status pg_gemm_engine_parse(const char *text, pg_gemm_engine *out);

/* PG_OK when the oneDNN engine can run here; otherwise an error
 * (PG_ERR_STATE) naming why: a build without oneDNN, or oneDNN could not
 * create its CPU engine. Where it fails, auto is BLIS everywhere. */
PG_API pg_status pg_gemm_engine_onednn_available(void);

/* Sets the engine for the whole process (wins over PG_GEMM_ENGINE).
 * Errors, changing nothing: a value outside the enum (PG_ERR_ARG); onednn
 * where oneDNN is unavailable (PG_ERR_STATE: a build without oneDNN, or
 * oneDNN could not start), with the reason. Call it between products, not
 * while another thread multiplies. */
PG_API pg_status pg_gemm_engine_set(pg_gemm_engine e);

/* The engine setting in force: pg_gemm_engine_set's, else PG_GEMM_ENGINE's
 * (read at the first call of this header's functions or the first covered
 * product), else auto. A PG_GEMM_ENGINE that is not a valid setting, or
 * asks for onednn where it is unavailable, is not applied: the setting is
 * then blis (the safe engine), and pg_gemm_engine_env says why. */
PG_API pg_gemm_engine pg_gemm_engine_get(void);

/* PG_OK when PG_GEMM_ENGINE is unset or was applied; otherwise the error
 * it caused (PG_ERR_ARG: "PG_GEMM_ENGINE='fast' is not one of auto, blis,
 * onednn"; PG_ERR_STATE: onednn unavailable). Commands call it at start to
 * refuse a bad value instead of running on BLIS. */
PG_API pg_status pg_gemm_engine_env(void);

/* What the covered products did since the start of the process: products
 * computed by each engine (blis_products counts covered products BLIS
 * computed: chosen, set, or after a oneDNN failure); keys decided by
 * timing in this process, read from the file, or taken from the file under
 * its lock because another process had just decided them; keys timed here
 * that could not be written to the file (kept in memory only); and oneDNN
 * failures that fell back to BLIS (0 unless something is wrong). */
typedef struct {
  int64_t onednn_products, blis_products;
  int64_t keys_timed, keys_loaded, keys_adopted, keys_not_kept;
  int64_t fallbacks;
} pg_gemm_engine_stats;
PG_API pg_gemm_engine_stats pg_gemm_engine_get_stats(void);

/* Where the decisions are kept, for reports: the file's path, or a
 * sentence saying why they are not kept ("not kept: ..."), or "" before
 * the first decision was needed. The text stays valid until the process
 * ends. */
PG_API const char *pg_gemm_engine_cache(void);

#endif
