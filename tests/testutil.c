#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

void pg_test_assert_close(const float *got, const float *want, int64_t n, double atol,
                          double rtol, const char *file, int line) {
  for (int64_t i = 0; i < n; i++) {
    double g = got[i], w = want[i];
    if (!(fabs(g - w) <= atol + rtol * fabs(w))) {
      char msg[256];
      snprintf(msg, sizeof msg, "element %lld: got %.9g, want %.9g (atol %g, rtol %g)",
               (long long)i, g, w, atol, rtol);
      print_error("%s\n", msg); /* before _fail, which does not return */
      _fail(file, line);
    }
  }
}

void pg_test_assert_gradcheck(pg_fn f, void *user, int n, pg_tensor *const *inputs,
                              const pg_gradcheck_opts *opts, const char *file, int line) {
  pg_gradcheck_result r;
  pg_status st = pg_gradcheck(f, user, n, inputs, opts, &r);
  if (st) {
    print_error("gradcheck could not run: %s\n", pg_last_error());
    _fail(file, line);
  }
  if (!r.ok) {
    print_error("gradcheck: input %d element %lld: analytic %.9g numeric %.9g (excess %.3g, %ld checked)\n",
                r.worst_input, (long long)r.worst_index, r.worst_analytic, r.worst_numeric,
                r.max_excess, r.checked);
    _fail(file, line);
  }
  if (r.checked == 0) {
    print_error("gradcheck compared no element\n");
    _fail(file, line);
  }
}

pg_tensor *pg_test_randn(int ndim, const int64_t *shape, float scale, uint64_t seed) {
  pg_tensor *t = pg_tensor_new(ndim, shape, true);
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  pg_fill_normal(t, 0.0f, scale, &rng);
  return t;
}

void pg_test_assert_error_contains(const char *needle, const char *file, int line) {
  if (!strstr(pg_last_error(), needle)) {
    print_error("error message \"%s\" does not contain \"%s\"\n", pg_last_error(), needle);
    _fail(file, line);
  }
}

const char *pg_test_data(const char *name) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/%s", PG_TEST_DATA, name);
  return path;
}
