/* Helpers shared by the cmocka tests. Include after cmocka's prerequisites. */
#ifndef PG_TESTUTIL_H
#define PG_TESTUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "patchgrad/autograd/gradcheck.h"
#include "patchgrad/autograd/tensor.h"
#include "patchgrad/dist/dist.h"

/* Fails the test, naming the first element where |got - want| > atol + rtol |want|. */
#define assert_close(got, want, n, atol, rtol) \
  pg_test_assert_close((got), (want), (n), (atol), (rtol), __FILE__, __LINE__)
void pg_test_assert_close(const float *got, const float *want, int64_t n, double atol,
                          double rtol, const char *file, int line);

/* Runs pg_gradcheck and fails the test with the worst element when it does not pass. */
#define assert_gradcheck(f, user, n, inputs, opts) \
  pg_test_assert_gradcheck((f), (user), (n), (inputs), (opts), __FILE__, __LINE__)
void pg_test_assert_gradcheck(pg_fn f, void *user, int n, pg_tensor *const *inputs,
                              const pg_gradcheck_opts *opts, const char *file, int line);

/* A heap tensor with requires_grad, filled with normal(0, scale) from seed. */
pg_tensor *pg_test_randn(int ndim, const int64_t *shape, float scale, uint64_t seed);

/* Asserts that the last error message contains `needle`. */
#define assert_error_contains(needle) \
  pg_test_assert_error_contains((needle), __FILE__, __LINE__)
void pg_test_assert_error_contains(const char *needle, const char *file, int line);

/* Path of a committed test fixture (tests/data/NAME). */
const char *pg_test_data(const char *name);

/* Small arena chunks for tests that make many contexts (bigger requests get
 * their own): a 64 MiB default chunk is slow to map under MALLOC_PERTURB_. */
#define PG_TEST_ARENA_CHUNK ((size_t)1 << 20)

/* Fails the test unless t's values look drawn from uniform(-bound, bound):
 * all within it, the mean within 4 standard errors of 0, the variance
 * bound^2 / 3 within 5%, and the range used to > 99% of the bound. */
#define assert_uniform(t, bound) pg_test_assert_uniform((t), (bound), __FILE__, __LINE__)
void pg_test_assert_uniform(const pg_tensor *t, double bound, const char *file, int line);

/* Unpatchify's definition in double, loop by loop, for the 2-D patch tests:
 * adds into out [B, H, W, C] every token of tokens [B, GH, GW, E] times its
 * patch of w [E, C, P, P], placed at the given stride. The same loops are
 * Patchify's input gradient (tokens: its output gradient, w: its weight). */
void pg_test_unpatchify_reference(const pg_tensor *tokens, const pg_tensor *w, int64_t stride,
                                  int64_t H, int64_t W, double *out);

/* A scratch folder for the whole test program: make it in the group setup
 * (pg_test_tmpdir_make("png") makes /tmp/pg_test_png_XXXXXX; 0 or -1), and
 * pass pg_test_tmpdir_remove as the group teardown (it deletes the folder
 * with everything in it). */
int pg_test_tmpdir_make(const char *name);
int pg_test_tmpdir_remove(void **state);
/* The folder, and the path of NAME in it (a ring of 4 buffers: copy a path
 * that must outlive 4 more calls). */
const char *pg_test_tmpdir(void);
const char *pg_test_tmp(const char *name);
bool pg_test_exists(const char *path);
/* The temporary files of atomic writes to path (io/atomic.h) present in its
 * folder: "PATH.patchgrad-PID.tmp", any PID. */
int pg_test_temporaries(const char *path);
/* This process's temporary name for path (a ring of 4 buffers). */
const char *pg_test_temporary_of(const char *path);

/* Runs the built `patchgrad check FILE`, its report copied to stdout (the
 * test log); returns its exit status, and the counts of its "N passed, M
 * failed" line (-1 when it printed none). */
int pg_test_run_check(const char *file, int *passed, int *failed);
/* The main() of a test program that runs alone and under `mpirun -n K`:
 * joins MPI into *dist (pg_dist_init), prints "rank R of K", runs the group
 * on every rank and ends MPI; 0 when no rank failed, else 1 (every rank's
 * verdict counts). */
#define pg_test_mpi_group(dist, argc, argv, tests, setup, teardown)                             \
  pg_test_mpi_run((dist), (argc), (argv), #tests, (tests), sizeof(tests) / sizeof((tests)[0]), \
                  (setup), (teardown))
int pg_test_mpi_run(pg_dist *dist, int *argc, char ***argv, const char *name,
                    const struct CMUnitTest *tests, size_t n, CMFixtureFunction setup,
                    CMFixtureFunction teardown);

/* Runs a shell command (printf format) with its stdout and stderr captured
 * into out (cap bytes, NUL-terminated, also copied to the test log);
 * returns its exit status, or 128 + the signal that killed it. */
int pg_test_run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Pixel-space images for the VAE tests: `count` synthetic 16 x 16 x 1
 * images of 4 classes, pixel-unshuffled by 2 into [8, 8, 4] samples as
 * Fashion-MNIST's files (data/synthetic.h, drawn from `seed`). And a tiny
 * VAE for them (16 x 16 x 1 -> 4 x 4 x 2 latents, hidden 16, one block each
 * side, weights drawn from seed 3), saved as trained on images_path. 0 or -1. */
int pg_test_make_images(const char *path, int64_t count, uint64_t seed);
int pg_test_save_tiny_vae(const char *images_path, const char *vae_path);

/* Writes a new case file dst holding the cases of src whose op is one of
 * ops[0..n); returns how many were copied. */
int pg_test_copy_cases(const char *src, const char *dst, int n, const char *const *ops);

#endif
