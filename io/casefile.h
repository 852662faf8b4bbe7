/* Case files (spec: casefile.md): one HDF5 group per case, an `op` attribute,
 * input arrays, parameters under params/, expected `out` and grad/ arrays.
 * A pg_case is one case being replayed: the handler of its op reads inputs
 * through it and hands it what it computed; the case compares, keeps the
 * worst errors per array, and frees everything it handed out. */
#ifndef PG_CASEFILE_H
#define PG_CASEFILE_H

#include "patchgrad/autograd/api.h"

#include <hdf5.h>
#include <stdbool.h>

#include "patchgrad/autograd/tensor.h"

#define PG_CASE_MAX_OWNED 512

typedef struct {
  char path[128];
  double max_abs, max_rel; /* worst |got - want| and |got - want| / |want| */
  int64_t worst_index;
  double worst_got, worst_want;
  bool pass;
} pg_case_result;

typedef struct pg_case {
  hid_t group;
  const char *name;
  char op[64];
  pg_ctx *ctx;          /* a fresh step context for the case's ops */
  double atol, rtol;    /* resolved tolerances */
  bool error;           /* the case could not be run (message in error_msg) */
  char error_msg[512];
  pg_case_result results[64];
  int n_results;
  void *owned[PG_CASE_MAX_OWNED]; /* heap tensors and arrays to free */
  bool owned_is_tensor[PG_CASE_MAX_OWNED];
  int n_owned;
} pg_case;

/* Tolerances from the case's attributes (falling back to the given ones, which
 * the caller resolved from flag / root attribute / default); an attribute
 * that is not a finite number >= 0 (a string, NaN) marks the case, as does a
 * missing or non-string `op`. */
PG_API void pg_case_begin(pg_case *c, hid_t group, const char *name, double atol, double rtol,
                   bool atol_forced, bool rtol_forced);
PG_API void pg_case_end(pg_case *c);
PG_API bool pg_case_passed(const pg_case *c);

/* Attributes every case may carry, whatever its op. */
#define PG_CASE_COMMON_ATTRS "op atol rtol description"

/* Marks the case when it has an attribute that is neither common nor one of
 * `known` (the op's settings, space-separated: "data_dim patch_size stride
 * bias"), naming it and the known ones: a misspelled `strides` is refused,
 * not silently ignored. */
PG_API void pg_case_check_attrs(pg_case *c, const char *known);

/* Marks the case as not runnable, with a message (printf format). */
PG_API void pg_case_fail(pg_case *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A required input array (e.g. "x", "params/weight") as a heap float32 tensor
 * with requires_grad set, owned by the case. NULL (and the case marked) when
 * missing or unreadable. */
PG_API pg_tensor *pg_case_array(pg_case *c, const char *path);
/* The same, but NULL without error when absent. */
PG_API pg_tensor *pg_case_array_opt(pg_case *c, const char *path);
/* An integer array (labels); *count receives its length. Owned by the case.
 * Floats are accepted only when they hold integers (2.7 marks the case,
 * naming the array and the element). */
PG_API int64_t *pg_case_ints(pg_case *c, const char *path, int64_t *count);

/* Settings. A wrongly typed attribute marks the case. */
PG_API int64_t pg_case_attr_int(pg_case *c, const char *name, int64_t fallback);
PG_API double pg_case_attr_double(pg_case *c, const char *name, double fallback);
/* Fills buf; returns buf (fallback copied when absent). */
PG_API const char *pg_case_attr_string(pg_case *c, const char *name, const char *fallback, char *buf, size_t cap);
/* A 1-D integer attribute; returns its length (0 when absent). */
PG_API int pg_case_attr_ints(pg_case *c, const char *name, int64_t *values, int cap);

/* Compares `got` with the expected array at `path` when the file has it (an
 * absent expectation is not checked). A shape mismatch marks the case.
 * Non-finite expected values are compared by position: NaN passes only
 * against NaN, +Inf only against +Inf (and a non-finite result where a
 * finite value is expected fails). */
PG_API void pg_case_compare(pg_case *c, const char *path, const pg_tensor *got);
PG_API void pg_case_compare_raw(pg_case *c, const char *path, const float *got, int ndim, const int64_t *shape);

/* True when the case has expected gradients (a grad/ group). */
PG_API bool pg_case_wants_grads(pg_case *c);

/* The usual tail of an op handler: compares `out`; when gradients are
 * expected, reads `grad_out`, runs backward and compares grad/<names[i]> with
 * inputs[i]->grad (a NULL gradient counts as zeros). */
PG_API void pg_case_check_op(pg_case *c, pg_tensor *out, int n, const char *const *names,
                      pg_tensor *const *inputs);

#endif
