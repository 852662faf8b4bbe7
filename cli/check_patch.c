/* `patchgrad check` handlers of the patch ops (casefile.md):
 *   patchify:   data_dim, patch_size, stride, bias; x, params/weight, params/bias
 *   unpatchify: the same, and an optional int array output_spatial_shape */
#include "check_ops.h"
#include "patchgrad/layers/patchify.h"
#include "patchgrad/layers/unpatchify.h"

/* Settings shared by both ops; false (case marked) when one is missing. */
typedef struct {
  int64_t data_dim, patch, stride, bias;
} patch_settings;

static bool read_settings(pg_case *c, patch_settings *s) {
  s->data_dim = pg_case_attr_int(c, "data_dim", -1);
  s->patch = pg_case_attr_int(c, "patch_size", -1);
  s->stride = pg_case_attr_int(c, "stride", s->patch); /* torch's default */
  s->bias = pg_case_attr_int(c, "bias", 1);
  if (c->error) return false;
  if (s->data_dim == -1) pg_case_fail(c, "missing integer attribute 'data_dim'");
  else if (s->data_dim < 1 || s->data_dim > 3)
    pg_case_fail(c, "attribute 'data_dim' must be 1, 2 or 3, got %lld", (long long)s->data_dim);
  else if (s->patch == -1) pg_case_fail(c, "missing integer attribute 'patch_size'");
  return !c->error;
}

static void check_patch_op(pg_case *c, bool transposed) {
  patch_settings s;
  if (!read_settings(c, &s)) return;
  int64_t out_spatial[PG_MAX_DIMS];
  int n_out = 0;
  if (transposed) {
    n_out = pg_case_attr_ints(c, "output_spatial_shape", out_spatial, PG_MAX_DIMS);
    if (n_out && n_out != s.data_dim) {
      pg_case_fail(c, "attribute 'output_spatial_shape' has %d entries, data_dim is %lld", n_out,
                   (long long)s.data_dim);
      return;
    }
  }
  pg_tensor *x = pg_case_array(c, "x");
  pg_tensor *w = pg_case_array(c, "params/weight");
  pg_tensor *b = s.bias ? pg_case_array(c, "params/bias") : NULL;
  if (c->error) return;
  pg_tensor *out =
      transposed ? pg_unpatchify_op(c->ctx, x, w, b, (int)s.data_dim, s.patch, s.stride,
                                    n_out ? out_spatial : NULL)
                 : pg_patchify_op(c->ctx, x, w, b, (int)s.data_dim, s.patch, s.stride);
  const char *names[] = {"x", "params/weight", "params/bias"};
  pg_tensor *inputs[] = {x, w, b};
  pg_case_check_op(c, out, 3, names, inputs);
}

void pg_check_patchify(pg_case *c) { check_patch_op(c, false); }
void pg_check_unpatchify(pg_case *c) { check_patch_op(c, true); }
