#include "patchgrad/layers/patch_geometry.h"

#include <string.h>

#include "patchgrad/autograd/broadcast.h"

int64_t pg_patch_grid_size(int64_t s, int64_t patch, int64_t stride) {
  return s < patch ? 0 : (s - patch) / stride + 1;
}

int64_t pg_unpatch_output_size(int64_t g, int64_t patch, int64_t stride) {
  return (g - 1) * stride + patch;
}

pg_status pg_patch_check_settings(const char *who, int data_dim, int64_t patch, int64_t stride) {
  if (data_dim < 1 || data_dim > 3)
    return pg_fail(PG_ERR_ARG, "%s: data_dim must be 1, 2 or 3, got %d", who, data_dim);
  if (patch < 1)
    return pg_fail(PG_ERR_ARG, "%s: patch_size must be >= 1, got %lld", who, (long long)patch);
  if (stride < 1)
    return pg_fail(PG_ERR_ARG, "%s: stride must be >= 1, got %lld", who, (long long)stride);
  return PG_OK;
}

pg_status pg_patch_check_init(const char *who, int data_dim, int64_t patch, int64_t stride,
                              int64_t in_features, int64_t out_features) {
  if (pg_patch_check_settings(who, data_dim, patch, stride)) return pg_last_status();
  if (in_features < 1)
    return pg_fail(PG_ERR_ARG, "%s: in_features must be >= 1, got %lld", who, (long long)in_features);
  if (out_features < 1)
    return pg_fail(PG_ERR_ARG, "%s: out_features must be >= 1, got %lld", who, (long long)out_features);
  return PG_OK;
}

pg_status pg_patch_add_params(pg_params *ps, const char *prefix, int data_dim,
                              const int64_t *weight_shape, int64_t bias_len, pg_tensor **w,
                              pg_tensor **b) {
  *b = NULL;
  *w = pg_params_add(ps, PG_PARAM_WEIGHT, data_dim + 2, weight_shape, "%s.weight", prefix);
  if (!*w) return pg_last_status();
  if (bias_len > 0) {
    *b = pg_params_add(ps, PG_PARAM_BIAS, 1, &bias_len, "%s.bias", prefix);
    if (!*b) return pg_last_status();
  }
  return PG_OK;
}

pg_status pg_patch_check_tensors(const pg_patch_layout *l, const pg_tensor *x, const pg_tensor *w,
                                 const pg_tensor *b, int d, int64_t patch, int64_t stride) {
  const char *who = l->who;
  if (pg_patch_check_settings(who, d, patch, stride)) return pg_last_status();
  bool w_ok = w->ndim == d + 2 && w->shape[0] >= 1 && w->shape[1] >= 1;
  for (int a = 2; w_ok && a < w->ndim; a++) w_ok = w->shape[a] == patch;
  if (!w_ok)
    return pg_fail(PG_ERR_ARG,
                   "%s: weight must be [%s%s] (data_dim %d axes of patch_size %lld), got %s",
                   who, l->weight_axes, d == 1 ? ", P" : d == 2 ? ", P, P" : ", P, P, P", d,
                   (long long)patch, pg_shape_of(w));
  const int64_t c_in = w->shape[l->in_axis], c_out = w->shape[l->out_axis];
  if (b && (b->ndim != 1 || b->shape[0] != c_out))
    return pg_fail(PG_ERR_ARG, "%s: bias must be [C_out] = [%lld], got %s", who, (long long)c_out,
                   pg_shape_of(b));
  if (x->ndim != d + 2)
    return pg_fail(PG_ERR_ARG, "%s: x must have rank data_dim + 2 = %d (%s), got %s", who, d + 2,
                   l->x_axes, pg_shape_of(x));
  if (x->shape[d + 1] != c_in)
    return pg_fail(PG_ERR_ARG, "%s: x has %lld channels (last axis of %s), but in_features is %lld",
                   who, (long long)x->shape[d + 1], pg_shape_of(x), (long long)c_in);
  return PG_OK;
}

void pg_patch_geom_init(pg_patch_geom *g, int data_dim, int64_t batch, const int64_t *spatial,
                        const int64_t *grid, int64_t channels, int64_t patch, int64_t stride) {
  g->data_dim = data_dim;
  g->batch = batch;
  g->channels = channels;
  g->tokens = 1;
  g->row_len = channels;
  int pad = 3 - data_dim; /* leading axes of size 1 */
  for (int a = 0; a < 3; a++) {
    bool real = a >= pad;
    g->spatial[a] = real ? spatial[a - pad] : 1;
    g->grid[a] = real ? grid[a - pad] : 1;
    g->kernel[a] = real ? patch : 1;
    g->step[a] = real ? stride : 1;
    g->tokens *= g->grid[a];
    g->row_len *= g->kernel[a];
  }
}

/* Offset (in floats) of the first pixel of patch `token` of sample b. */
static inline int64_t patch_origin(const pg_patch_geom *g, int64_t b, int64_t token) {
  int64_t t2 = token % g->grid[2];
  int64_t t1 = token / g->grid[2] % g->grid[1];
  int64_t t0 = token / (g->grid[2] * g->grid[1]);
  int64_t y0 = b * g->spatial[0] + t0 * g->step[0];
  int64_t y1 = y0 * g->spatial[1] + t1 * g->step[1];
  return (y1 * g->spatial[2] + t2 * g->step[2]) * g->channels;
}

void pg_im2col(const pg_patch_geom *g, const float *signal, float *cols) {
  const int64_t rows = g->batch * g->tokens;
  const int64_t run = g->kernel[2] * g->channels;       /* contiguous floats */
  const int64_t axis1 = g->spatial[2] * g->channels;    /* one step along axis 1 */
  const int64_t axis0 = g->spatial[1] * axis1;          /* one step along axis 0 */
  PG_FOR(rows * g->row_len, r, rows, {
    const float *origin = signal + patch_origin(g, r / g->tokens, r % g->tokens);
    float *dst = cols + r * g->row_len;
    for (int64_t k0 = 0; k0 < g->kernel[0]; k0++)
      for (int64_t k1 = 0; k1 < g->kernel[1]; k1++) {
        memcpy(dst, origin + k0 * axis0 + k1 * axis1, (size_t)run * sizeof(float));
        dst += run;
      }
  });
}

static inline void add_run(float *restrict dst, const float *restrict src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

void pg_col2im_add(const pg_patch_geom *g, const float *cols, float *signal) {
  if (g->batch * g->tokens == 0) return;
  const int64_t run = g->kernel[2] * g->channels;
  const int64_t axis1 = g->spatial[2] * g->channels;
  const int64_t axis0 = g->spatial[1] * axis1;
  /* Threads must not add into the same pixel. Split along the first real
   * axis a: the patches of one slab (a fixed sample and grid index along a)
   * go to one thread, and slabs whose indices along a differ by at least
   * ceil(P / stride) never overlap. So the slabs are done in that many
   * rounds, each round's slabs in parallel (one round when stride >= P). */
  const int a = 3 - g->data_dim;
  const int64_t rounds = (g->kernel[a] + g->step[a] - 1) / g->step[a];
  const int64_t slab_tokens = g->tokens / g->grid[a];
  for (int64_t round = 0; round < rounds && round < g->grid[a]; round++) {
    const int64_t per_sample = (g->grid[a] - round + rounds - 1) / rounds;
    const int64_t slabs = g->batch * per_sample;
    PG_FOR(slabs * slab_tokens * g->row_len, s, slabs, {
      int64_t b = s / per_sample, ga = round + (s % per_sample) * rounds;
      for (int64_t u = 0; u < slab_tokens; u++) {
        int64_t token = ga * slab_tokens + u;
        float *origin = signal + patch_origin(g, b, token);
        const float *src = cols + (b * g->tokens + token) * g->row_len;
        for (int64_t k0 = 0; k0 < g->kernel[0]; k0++)
          for (int64_t k1 = 0; k1 < g->kernel[1]; k1++) {
            add_run(origin + k0 * axis0 + k1 * axis1, src, run);
            src += run;
          }
      }
    });
  }
}

void pg_swap_inner_axes(const float *src, float *dst, int64_t outer, int64_t n1, int64_t n2,
                        bool accumulate) {
  for (int64_t o = 0; o < outer; o++) {
    const float *s = src + o * n1 * n2;
    float *d = dst + o * n1 * n2;
    for (int64_t i = 0; i < n1; i++)
      for (int64_t j = 0; j < n2; j++) {
        if (accumulate) d[j * n1 + i] += s[i * n2 + j];
        else d[j * n1 + i] = s[i * n2 + j];
      }
  }
}

void pg_fill_rows(float *signal, const float *bias, int64_t rows, int64_t channels) {
  PG_FOR(rows * channels, r, rows, {
    if (bias) memcpy(signal + r * channels, bias, (size_t)channels * sizeof(float));
    else memset(signal + r * channels, 0, (size_t)channels * sizeof(float));
  });
}
