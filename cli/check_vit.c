/* `patchgrad check` handlers of the ViT example (vit/, tests/data/vit_cases.h5):
 *   cross_entropy  label_smoothing (float, default 0)       logits [N, K], labels [N] (integers)
 *                  `out` is the 0-d mean loss of torch.nn.functional.cross_entropy
 *   vit            the settings of pg_vit_config_fields (vit/vit.h): height, width,
 *                  in_channels, patch_size, hidden, depth, heads (1), mlp_ratio (4),
 *                  num_classes, single_head (0/1, default 0)
 *                  x [B, H, W, C], params/<every name of vit/vit.h>; `out` the
 *                  logits [B, K]; grad/x and grad/params/<name> */
#include "check_model.h"
#include "check_ops.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/vit/vit.h"

void pg_check_cross_entropy(pg_case *c) {
  const double smoothing = pg_case_attr_double(c, "label_smoothing", 0.0);
  pg_tensor *logits = pg_case_array(c, "logits");
  int64_t n_labels = 0;
  const int64_t *labels = pg_case_ints(c, "labels", &n_labels);
  if (c->error) return;
  if (logits->ndim != 2 || n_labels != logits->shape[0]) {
    pg_case_fail(c, "logits must be [N, K] with one label per row; got logits %s and %lld labels",
                 pg_shape_of(logits), (long long)n_labels);
    return;
  }
  const char *names[] = {"logits"};
  pg_case_check_op(c, pg_cross_entropy_smoothed(c->ctx, logits, labels, (float)smoothing), 1, names,
                   &logits);
}

void pg_check_vit(pg_case *c) {
  pg_vit_config cfg = {0};
  pg_case_read_fields(c, PG_VIT_CONFIG_FIELDS, pg_vit_config_fields, &cfg);
  if (c->error) return;
  pg_vit m;
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  if (pg_vit_init(&m, &cfg, &rng)) {
    pg_case_fail(c, "bad config: %s", pg_last_error());
    return;
  }
  pg_tensor *x = pg_case_array(c, "x");
  /* every parameter comes from the file */
  pg_case_load_params(c, &m.params);
  if (!c->error) {
    pg_case_check_op(c, pg_vit_forward(c->ctx, &m, x), 1, (const char *const[]){"x"}, &x);
    pg_case_compare_param_grads(c, &m.params);
  }
  pg_vit_free(&m);
}
