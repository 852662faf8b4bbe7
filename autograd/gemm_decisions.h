/* The float32 engine's decisions per product key (internal, not
 * installed): a table in memory, loaded once from the per-machine file
 * `gemm-engine` (runtime_internal.h's folder) and appended to under a file
 * lock, as gemm_engine.h describes.
 *
 * The file: text, one decision per line, each naming its CPU, e.g.
 *   v1 cpu="AMD EPYC" trans=tn m=384 n=384 k=4096 lda=384 ldb=384 ldc=384
 *   alpha1=1 beta0=1 threads=2 engine=blis blis=188.2 onednn=121.0
 * (one line in the file), where trans gives A's then B's flag (n or t) and
 * the last two fields are the GFLOP/s measured (0: that engine could not
 * run the product). Lines starting with '#' are comments; lines of another
 * CPU, lines that do not parse and keys already seen are skipped, so the
 * first line of a key wins in every process. */
#ifndef PG_GEMM_DECISIONS_H
#define PG_GEMM_DECISIONS_H

#include <stdbool.h>
#include <stdint.h>

/* A product as the choice sees it. */
typedef struct {
  bool trans_a, trans_b, alpha_one, beta_zero;
  int threads;
  int64_t m, n, k, lda, ldb, ldc;
} pg_gemm_key;

typedef struct {
  bool onednn;                       /* the engine chosen: oneDNN, else BLIS */
  double blis_gflops, onednn_gflops; /* as measured; 0 when it could not run */
} pg_gemm_decision;

/* Measures key's product and fills *out (gemm_engine.c times the two
 * engines). */
typedef void (*pg_gemm_measure_fn)(void *user, pg_gemm_decision *out);

/* The decision for key: this process's, else the file's (loaded at the
 * first call), else, under the file's lock, a line another process has
 * just written, else measure(user, ...)'s, appended to the file. Always
 * returns a decision (in memory only when the file cannot be written, or
 * when memory for the table runs out: then it is not remembered either and
 * the next call measures again). Thread-safe; measure runs under the
 * table's lock. */
pg_gemm_decision pg_gemm_decide(const pg_gemm_key *key, pg_gemm_measure_fn measure, void *user);

/* The decision for key if this process or the file has one (loading the
 * file at the first call); false otherwise. Measures nothing. */
bool pg_gemm_decision_find(const pg_gemm_key *key, pg_gemm_decision *out);

/* Counts since the start: keys measured here, read at load, taken from the
 * file under its lock, and measured here but not written to the file. */
typedef struct {
  int64_t timed, loaded, adopted, not_kept;
} pg_gemm_decision_counts;
pg_gemm_decision_counts pg_gemm_decision_counts_get(void);

/* The file's path, "not kept: <why>", or "" before the first load. */
const char *pg_gemm_decisions_where(void);

/* Forgets every decision in memory (the counts stay) so that the next
 * call loads the file again from the folder the environment names then:
 * for tests of the file's round trip. Call only while no product runs. */
void pg_gemm_decisions_forget(void);

#endif
