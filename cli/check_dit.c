/* `patchgrad check` handler for the whole DiT (op `dit`): builds the model of
 * the case's config, loads every parameter from params/, compares its own
 * pos_embed table with the file's, runs the forward, and compares `out`,
 * grad/x and grad/params/<name> for every trained parameter. */
#include <stdio.h>
#include <string.h>

#include "check_ops.h"
#include "dit.h"
#include "tape.h"

void pg_check_dit(pg_case *c) {
  pg_dit_config cfg = {
      .input_size = pg_case_attr_int(c, "input_size", 0),
      .in_channels = pg_case_attr_int(c, "in_channels", 0),
      .patch_size = pg_case_attr_int(c, "patch_size", 0),
      .hidden = pg_case_attr_int(c, "hidden", 0),
      .depth = pg_case_attr_int(c, "depth", 0),
      .heads = pg_case_attr_int(c, "heads", 0),
      .mlp_ratio = pg_case_attr_int(c, "mlp_ratio", 4),
      .num_classes = pg_case_attr_int(c, "num_classes", 0),
  };
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
   * here and compared with the file's (clarification 6). */
  for (int i = 0; i < m.params.count && !c->error; i++) {
    pg_param *p = &m.params.items[i];
    char path[PG_PARAM_NAME_MAX + 8];
    snprintf(path, sizeof path, "params/%s", p->name);
    if (p->kind == PG_PARAM_BUFFER) {
      pg_case_compare(c, path, p->tensor);
      continue;
    }
    pg_tensor *src = pg_case_array(c, path);
    if (!src) break;
    if (!pg_same_shape(src, p->tensor)) {
      pg_case_fail(c, "array '%s' has shape %s, the model's parameter is %s", path,
                   pg_shape_of(src), pg_shape_of(p->tensor));
      break;
    }
    memcpy(p->tensor->data, src->data, (size_t)src->numel * sizeof(float));
  }
  if (!c->error) {
    pg_tensor *out = pg_dit_forward(c->ctx, &m, x, t->data, y);
    pg_case_check_op(c, out, 1, (const char *const[]){"x"}, &x);
    if (!c->error && pg_case_wants_grads(c)) {
      for (int i = 0; i < m.params.count; i++) {
        pg_param *p = &m.params.items[i];
        if (p->kind == PG_PARAM_BUFFER) continue;
        char path[PG_PARAM_NAME_MAX + 16];
        snprintf(path, sizeof path, "grad/params/%s", p->name);
        pg_case_compare_raw(c, path, p->tensor->grad, p->tensor->ndim, p->tensor->shape);
      }
    }
  }
  pg_dit_free(&m);
}
