/* Patchify forward and backward, as GEMMs over gathered patches:
 *
 *   cols   = im2col(x)                    [B*T, P^d*C_in]
 *   out    = cols @ w_rows^T + bias       [B*T, C_out]    (one GEMM)
 *   grad_w_rows = grad_out^T @ cols       [C_out, P^d*C_in]
 *   grad_x = col2im(grad_out @ w_rows)    (one GEMM, one scatter)
 *
 * w_rows is the weight reordered from [C_out, C_in, P^d] to
 * [C_out, P^d, C_in], the order of a channels-last column row: reordering
 * the small weight spares transposing the large signal. */
#include "patchgrad/layers/patchify.h"

#include <math.h>

#include "patchgrad/layers/patch_geometry.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/op.h"

typedef struct {
  pg_patch_geom geom;
  float *cols;   /* [B*T, P^d*C_in], the gathered patches */
  float *w_rows; /* [C_out, P^d*C_in], the reordered weight */
} patchify_saved;

/* Every check of the op, in the order a reader would make them. */
static pg_status check_inputs(const pg_tensor *x, const pg_tensor *w, const pg_tensor *b,
                              int d, int64_t patch, int64_t stride) {
  static const pg_patch_layout layout = {.who = "pg_patchify", .weight_axes = "C_out, C_in",
                                         .x_axes = "[B, *spatial, C_in]", .in_axis = 1, .out_axis = 0};
  const char *who = layout.who;
  if (pg_patch_check_tensors(&layout, x, w, b, d, patch, stride)) return pg_last_status();
  for (int a = 1; a <= d; a++)
    if (x->shape[a] < patch)
      return pg_fail(PG_ERR_ARG,
                     "%s: x's spatial axis %d has size %lld (x is %s), shorter than patch_size %lld",
                     who, a, (long long)x->shape[a], pg_shape_of(x), (long long)patch);
  return PG_OK;
}

static void patchify_backward(pg_ctx *ctx, pg_node *n) {
  const patchify_saved *s = n->saved;
  pg_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  const float *grad_out = n->out->grad;
  const int64_t rows = s->geom.batch * s->geom.tokens, k = s->geom.row_len, c_out = w->shape[0];

  bool fresh;
  float *grad_b = pg_grad_dest(ctx, b, &fresh);
  if (grad_b) pg_column_sums(grad_out, rows, c_out, grad_b, !fresh);

  float *grad_w = pg_grad_dest(ctx, w, &fresh);
  if (grad_w) {
    float *grad_w_rows = pg_scratch(ctx, (size_t)(c_out * k) * sizeof(float));
    if (!grad_w_rows) return;
    pg_gemm_auto(true, false, c_out, k, rows, 1.0f, grad_out, c_out, s->cols, k, 0.0f,
                 grad_w_rows, k);
    /* [C_out, P^d, C_in] back to [C_out, C_in, P^d] */
    pg_swap_inner_axes(grad_w_rows, grad_w, c_out, k / w->shape[1], w->shape[1], !fresh);
  }

  float *grad_x = pg_grad_accum(ctx, x);
  if (grad_x) {
    float *grad_cols = pg_scratch(ctx, (size_t)(rows * k) * sizeof(float));
    if (!grad_cols) return;
    pg_gemm_auto(false, false, rows, k, c_out, 1.0f, grad_out, c_out, s->w_rows, k, 0.0f,
                 grad_cols, k);
    pg_col2im_add(&s->geom, grad_cols, grad_x);
  }
}

pg_tensor *pg_patchify_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias,
                          int data_dim, int64_t patch, int64_t stride) {
  if (!x || !weight) return NULL;
  if (check_inputs(x, weight, bias, data_dim, patch, stride)) return NULL;
  const int d = data_dim;
  const int64_t c_in = weight->shape[1], c_out = weight->shape[0];
  int64_t grid[3], out_shape[PG_MAX_DIMS];
  out_shape[0] = x->shape[0];
  for (int a = 0; a < d; a++) {
    grid[a] = pg_patch_grid_size(x->shape[1 + a], patch, stride);
    out_shape[1 + a] = grid[a];
  }
  out_shape[d + 1] = c_out;

  pg_tensor *out = pg_empty(ctx, d + 2, out_shape);
  if (!out) return NULL;
  patchify_saved s;
  pg_patch_geom_init(&s.geom, d, x->shape[0], x->shape + 1, grid, c_in, patch, stride);
  const int64_t rows = s.geom.batch * s.geom.tokens, k = s.geom.row_len;
  s.cols = pg_scratch(ctx, (size_t)(rows * k) * sizeof(float));
  s.w_rows = pg_scratch(ctx, (size_t)(c_out * k) * sizeof(float));
  if (!s.cols || !s.w_rows) return NULL;

  pg_im2col(&s.geom, x->data, s.cols);
  pg_swap_inner_axes(weight->data, s.w_rows, c_out, c_in, k / c_in, false);
  if (bias) pg_fill_rows(out->data, bias->data, rows, c_out);
  pg_gemm_auto(false, true, rows, c_out, k, 1.0f, s.cols, k, s.w_rows, k,
               bias ? 1.0f : 0.0f, out->data, c_out);

  pg_tensor *in[3] = {x, weight, bias};
  pg_node *node = pg_tape_record(ctx, "pg_patchify_op", patchify_backward, out, 3, in);
  pg_node_save(ctx, node, &s, sizeof s);
  return out;
}

pg_status pg_patchify_init(pg_patchify *l, pg_params *ps, const char *prefix,
                           int64_t in_features, int64_t out_features, int data_dim,
                           int64_t patch, int64_t stride, bool bias, pg_rng *rng) {
  const char *who = "pg_patchify_init";
  if (!l || !ps || !prefix || !rng)
    return pg_fail(PG_ERR_ARG, "%s: layer, params, prefix and rng must not be NULL", who);
  *l = (pg_patchify){0};
  if (pg_patch_check_init(who, data_dim, patch, stride, in_features, out_features))
    return pg_last_status();
  int64_t shape[5] = {out_features, in_features, patch, patch, patch};
  pg_tensor *w, *b;
  if (pg_patch_add_params(ps, prefix, data_dim, shape, bias ? out_features : 0, &w, &b))
    return pg_last_status();
  /* PyTorch's Conv default: kaiming_uniform_(a = sqrt(5)) gives the bound
   * 1/sqrt(fan_in) for the weight; the bias uses the same bound. */
  float bound = (float)(1.0 / sqrt((double)(w->numel / out_features)));
  pg_fill_uniform(w, -bound, bound, rng);
  if (b) pg_fill_uniform(b, -bound, bound, rng);
  *l = (pg_patchify){.weight = w, .bias = b, .data_dim = data_dim, .in_features = in_features,
                     .out_features = out_features, .patch = patch, .stride = stride};
  return PG_OK;
}

pg_tensor *pg_patchify_forward(pg_ctx *ctx, const pg_patchify *l, pg_tensor *x) {
  if (!x) return NULL;
  if (!l || !l->weight) {
    pg_fail(PG_ERR_ARG, "pg_patchify_forward: the layer is NULL or was not initialised");
    return NULL;
  }
  return pg_patchify_op(ctx, x, l->weight, l->bias, l->data_dim, l->patch, l->stride);
}
