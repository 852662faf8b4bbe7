/* Process-wide settings, made only when the program asks for them.
 *
 * The library changes nothing outside its own objects on its own: no
 * environment variable, signal handler or global library state. A program
 * that wants the settings below calls pg_runtime_init once, at the start of
 * main, before any other patchgrad call and before it starts threads (it
 * may change the environment, which is not thread-safe). The `patchgrad`
 * command does; a library user may or may not.
 *
 * What it changes, and why:
 *  - BLIS_ARCH_TYPE (environment). BLIS 0.9 (Debian 12) recognises no AMD
 *    CPU after Zen 3: on Zen 4 and Zen 5 it falls back to its reference
 *    "generic" kernels, about 6 times slower than its AVX-512 "skx" kernels
 *    on those CPUs (Zen 5, one core: 30 vs 190 GFLOP/s). BLIS reads its
 *    kernel set from this variable once, at its first call. On an AMD CPU
 *    with AVX-512, pg_runtime_init times BLIS's own choice against skx (a
 *    256^3 product on one thread, best of five, in two short-lived child
 *    processes: about 20 ms) and sets the variable to skx only when skx is
 *    more than 5% faster; on the Zen 4 machine this was written on, BLIS's
 *    own zen3 kernels won (about 100 against 90 GFLOP/s). The two kernel
 *    sets round differently, and on a busy machine the timing can go either
 *    way, so the choice is measured once per machine and kept in
 *    $PG_CACHE_DIR/blis-kernels (default
 *    ${XDG_CACHE_HOME:-~/.cache}/patchgrad/blis-kernels, with the CPU's
 *    name and both figures; a file lock makes concurrent first runs agree):
 *    every later run uses the same kernels, so runs with the same seed stay
 *    bit-identical. Delete the file to measure again; where it cannot be
 *    written, each run measures. A variable set already is the user's
 *    choice and wins. Any other CPU: nothing changes. It forks, so call it
 *    before MPI_Init and before any thread starts. */
#ifndef PG_RUNTIME_H
#define PG_RUNTIME_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>

#include "patchgrad/autograd/error.h"

typedef struct {
  /* Set BLIS_ARCH_TYPE as described above (true in pg_runtime_defaults). */
  bool blis_arch;
} pg_runtime_options;

/* What pg_runtime_init(NULL) applies: every setting above. */
PG_API pg_runtime_options pg_runtime_defaults(void);

/* Applies opts (NULL: the defaults). An error when BLIS has already run
 * (a matrix product or pg_set_threads came first): its kernel set is then
 * fixed, and nothing is changed. */
PG_API pg_status pg_runtime_init(const pg_runtime_options *opts);

/* What decided BLIS's kernel set, for reports ("zen3 (BLIS's own),
 * measured at start: 101 GFLOP/s against skx's 90"). */
PG_API const char *pg_runtime_blis_choice(void);

#endif
