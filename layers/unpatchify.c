/* Unpatchify forward and backward: Patchify's machinery run the other way.
 *
 *   cols   = x @ w_rows                    [B*T, P^d*C_out]   (one GEMM)
 *   out    = bias + col2im(cols)           (one scatter; overlaps sum)
 *   grad_cols   = im2col(grad_out)         [B*T, P^d*C_out]   (one gather)
 *   grad_x      = grad_cols @ w_rows^T     [B*T, C_embed]
 *   grad_w_rows = x^T @ grad_cols          [C_embed, P^d*C_out]
 *
 * w_rows is the weight reordered from [C_embed, C_out, P^d] to
 * [C_embed, P^d, C_out] so that a product row is a channels-last patch. */
#include "patchgrad/layers/unpatchify.h"

#include <math.h>
#include <string.h>

#include "patchgrad/layers/patch_geometry.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/op.h"

typedef struct {
  pg_patch_geom geom; /* of the output signal */
  float *w_rows;      /* [C_embed, P^d*C_out], the reordered weight */
} unpatchify_saved;

static pg_status check_inputs(const pg_tensor *x, const pg_tensor *w, const pg_tensor *b,
                              int d, int64_t patch, int64_t stride, const int64_t *out_spatial) {
  static const pg_patch_layout layout = {.who = "pg_unpatchify", .weight_axes = "C_embed, C_out",
                                         .x_axes = "[B, *grid, C_embed]", .in_axis = 0, .out_axis = 1};
  const char *who = layout.who;
  if (pg_patch_check_tensors(&layout, x, w, b, d, patch, stride)) return pg_last_status();
  for (int a = 1; a <= d; a++) {
    if (x->shape[a] < 1)
      return pg_fail(PG_ERR_ARG, "%s: x's grid axis %d has size %lld (x is %s); it needs >= 1 patch",
                     who, a, (long long)x->shape[a], pg_shape_of(x));
    if (!out_spatial) continue;
    int64_t low = pg_unpatch_output_size(x->shape[a], patch, stride), high = low + stride - 1;
    int64_t want = out_spatial[a - 1];
    if (want < low || want > high)
      return pg_fail(PG_ERR_ARG,
                     "%s: output_spatial_shape[%d] = %lld is invalid: %lld patches of patch_size "
                     "%lld and stride %lld need %lld <= size <= %lld",
                     who, a - 1, (long long)want, (long long)x->shape[a], (long long)patch,
                     (long long)stride, (long long)low, (long long)high);
  }
  return PG_OK;
}

static void unpatchify_backward(pg_ctx *ctx, pg_node *n) {
  const unpatchify_saved *s = n->saved;
  pg_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  const float *grad_out = n->out->grad;
  const int64_t rows = s->geom.batch * s->geom.tokens, k = s->geom.row_len;
  const int64_t c_embed = w->shape[0], c_out = w->shape[1];

  bool b_fresh;
  float *grad_b = pg_grad_dest(ctx, b, &b_fresh);
  if (grad_b) pg_column_sums(grad_out, n->out->numel / c_out, c_out, grad_b, !b_fresh);

  bool x_fresh, w_fresh;
  float *grad_x = pg_grad_dest(ctx, x, &x_fresh);
  float *grad_w = pg_grad_dest(ctx, w, &w_fresh);
  if (!grad_x && !grad_w) return;
  float *grad_cols = pg_scratch(ctx, (size_t)(rows * k) * sizeof(float));
  float *grad_w_rows = grad_w ? pg_scratch(ctx, (size_t)(c_embed * k) * sizeof(float)) : NULL;
  if (!grad_cols || (grad_w && !grad_w_rows)) return;
  pg_im2col(&s->geom, grad_out, grad_cols);
  if (grad_x)
    pg_gemm_auto(false, true, rows, c_embed, k, 1.0f, grad_cols, k, s->w_rows, k,
                 x_fresh ? 0.0f : 1.0f, grad_x, c_embed);
  if (grad_w) {
    pg_gemm_auto(true, false, c_embed, k, rows, 1.0f, x->data, c_embed, grad_cols, k, 0.0f,
                 grad_w_rows, k);
    /* [C_embed, P^d, C_out] back to [C_embed, C_out, P^d] */
    pg_swap_inner_axes(grad_w_rows, grad_w, c_embed, k / c_out, c_out, !w_fresh);
  }
}

pg_tensor *pg_unpatchify_op(pg_ctx *ctx, pg_tensor *x, pg_tensor *weight, pg_tensor *bias,
                            int data_dim, int64_t patch, int64_t stride,
                            const int64_t *output_spatial_shape) {
  if (!x || !weight) return NULL;
  if (check_inputs(x, weight, bias, data_dim, patch, stride, output_spatial_shape)) return NULL;
  const int d = data_dim;
  const int64_t c_embed = weight->shape[0], c_out = weight->shape[1];
  int64_t out_shape[PG_MAX_DIMS];
  out_shape[0] = x->shape[0];
  for (int a = 0; a < d; a++)
    out_shape[1 + a] = output_spatial_shape
                           ? output_spatial_shape[a]
                           : pg_unpatch_output_size(x->shape[1 + a], patch, stride);
  out_shape[d + 1] = c_out;

  pg_tensor *out = pg_empty(ctx, d + 2, out_shape);
  if (!out) return NULL;
  unpatchify_saved s;
  pg_patch_geom_init(&s.geom, d, x->shape[0], out_shape + 1, x->shape + 1, c_out, patch, stride);
  const int64_t rows = s.geom.batch * s.geom.tokens, k = s.geom.row_len;
  s.w_rows = pg_scratch(ctx, (size_t)(c_embed * k) * sizeof(float));
  float *cols = pg_scratch(ctx, (size_t)(rows * k) * sizeof(float));
  if (!s.w_rows || !cols) return NULL;

  pg_swap_inner_axes(weight->data, s.w_rows, c_embed, c_out, k / c_out, false);
  pg_gemm_auto(false, false, rows, k, c_embed, 1.0f, x->data, c_embed, s.w_rows, k, 0.0f,
               cols, k);
  /* Every pixel starts at the bias: cells no patch covers (past the last
   * patch, or in the gaps of stride > patch) keep only it. */
  pg_fill_rows(out->data, bias ? bias->data : NULL, out->numel / c_out, c_out);
  pg_col2im_add(&s.geom, cols, out->data);

  pg_tensor *in[3] = {x, weight, bias};
  pg_node *node = pg_tape_record(ctx, "pg_unpatchify_op", unpatchify_backward, out, 3, in);
  pg_node_save(ctx, node, &s, sizeof s);
  return out;
}

static const char *const init_names[] = {"default", "zeros", "fan_in"};
_Static_assert(sizeof init_names / sizeof *init_names == PG_UNPATCH_INIT_COUNT,
               "a name for every pg_unpatch_init scheme");

pg_status pg_unpatch_init_parse(const char *name, pg_unpatch_init *out) {
  for (int i = 0; i < PG_UNPATCH_INIT_COUNT; i++)
    if (name && !strcmp(name, init_names[i])) {
      *out = (pg_unpatch_init)i;
      return PG_OK;
    }
  return pg_fail(PG_ERR_ARG, "Unpatchify: unknown weight_init '%s' (expected default, zeros or fan_in)",
                 name ? name : "(null)");
}

const char *pg_unpatch_init_name(pg_unpatch_init scheme) {
  return (unsigned)scheme < PG_UNPATCH_INIT_COUNT ? init_names[scheme] : "unknown";
}

pg_status pg_unpatchify_init(pg_unpatchify *l, pg_params *ps, const char *prefix,
                             int64_t in_features, int64_t out_features, int data_dim,
                             int64_t patch, int64_t stride, bool bias,
                             pg_unpatch_init weight_init, pg_rng *rng) {
  const char *who = "pg_unpatchify_init";
  if (!l || !ps || !prefix || !rng)
    return pg_fail(PG_ERR_ARG, "%s: layer, params, prefix and rng must not be NULL", who);
  *l = (pg_unpatchify){0};
  if (pg_patch_check_init(who, data_dim, patch, stride, in_features, out_features))
    return pg_last_status();
  if ((unsigned)weight_init >= PG_UNPATCH_INIT_COUNT)
    return pg_fail(PG_ERR_ARG, "%s: unknown weight_init %d (expected PG_UNPATCH_INIT_DEFAULT, "
                   "_ZEROS or _FAN_IN)", who, (int)weight_init);
  int64_t shape[5] = {in_features, out_features, patch, patch, patch};
  pg_tensor *w, *b;
  if (pg_patch_add_params(ps, prefix, data_dim, shape, bias ? out_features : 0, &w, &b))
    return pg_last_status();
  int64_t kernel = w->numel / (in_features * out_features); /* P^d */
  if (weight_init == PG_UNPATCH_INIT_DEFAULT) {
    /* PyTorch's fan for a [C_embed, C_out, P...] weight is its axis 1 times
     * the kernel: C_out * P^d, not the true fan-in. */
    float bound = (float)(1.0 / sqrt((double)(out_features * kernel)));
    pg_fill_uniform(w, -bound, bound, rng);
    if (b) pg_fill_uniform(b, -bound, bound, rng);
  } else if (weight_init == PG_UNPATCH_INIT_FAN_IN) {
    /* Kaiming uniform, gain sqrt(2): variance 2 / (C_embed * P^d). */
    float bound = (float)sqrt(6.0 / (double)(in_features * kernel));
    pg_fill_uniform(w, -bound, bound, rng);
  } /* ZEROS: pg_params_add gave zeros already; FAN_IN's bias stays 0. */
  *l = (pg_unpatchify){.weight = w, .bias = b, .data_dim = data_dim, .in_features = in_features,
                       .out_features = out_features, .patch = patch, .stride = stride};
  return PG_OK;
}

pg_tensor *pg_unpatchify_forward(pg_ctx *ctx, const pg_unpatchify *l, pg_tensor *x,
                                 const int64_t *output_spatial_shape) {
  if (!x) return NULL;
  if (!l || !l->weight) {
    pg_fail(PG_ERR_ARG, "pg_unpatchify_forward: the layer is NULL or was not initialised");
    return NULL;
  }
  return pg_unpatchify_op(ctx, x, l->weight, l->bias, l->data_dim, l->patch, l->stride,
                          output_spatial_shape);
}
