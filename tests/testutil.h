/* Helpers shared by the cmocka tests. Include after cmocka's prerequisites. */
#ifndef PG_TESTUTIL_H
#define PG_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "tensor.h"

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

#endif
