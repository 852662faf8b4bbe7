/* `patchgrad check` handler for the whole DiT (op `dit`): builds the model of
 * the case's config, loads every parameter from params/, compares its own
 * pos_embed table with the file's, runs the forward, and compares `out`,
 * grad/x and grad/params/<name> for every trained parameter. */
#include "check_model.h"
#include "check_ops.h"
#include "patchgrad/dit/dit.h"
#include "patchgrad/autograd/tape.h"

void pg_check_dit(pg_case *c) {
  pg_dit_config cfg = {0};
  pg_case_read_fields(c, PG_DIT_CONFIG_FIELDS, pg_dit_config_fields, &cfg);
  if (c->error) return;
  pg_dit m;
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  if (pg_dit_init(&m, &cfg, &rng)) {
    pg_case_fail(c, "bad config: %s", pg_last_error());
    return;
  }
  pg_tensor *x = pg_case_array(c, "x");
  pg_tensor *t = pg_case_array(c, "t");
  int64_t ny = 0, *y = cfg.num_classes > 0 ? pg_case_ints(c, "y", &ny) : NULL;
  if (!c->error && x->shape[0] != t->numel)
    pg_case_fail(c, "array 't' has %lld values for a batch of %lld", (long long)t->numel, (long long)x->shape[0]);
  if (!c->error && y && ny != x->shape[0])
    pg_case_fail(c, "array 'y' has %lld values for a batch of %lld", (long long)ny, (long long)x->shape[0]);
  /* Every parameter of the model comes from the file; pos_embed is built
   * here and compared with the file's. */
  pg_case_load_params(c, &m.params);
  if (!c->error) {
    pg_tensor *out = pg_dit_forward(c->ctx, &m, x, t->data, y);
    pg_case_check_op(c, out, 1, (const char *const[]){"x"}, &x);
    pg_case_compare_param_grads(c, &m.params);
  }
  pg_dit_free(&m);
}
