/* The geometry shared by Patchify and Unpatchify: the checks of their
 * arguments, where the patches of a channels-last signal lie, and the two
 * data movements built on it.
 *
 *   im2col:      signal [B, *spatial, C] -> columns [B * T, P^d * C]
 *   col2im_add:  columns [B * T, P^d * C] -> added into signal [B, *spatial, C]
 *
 * T is the number of patches per sample (the product of the grid). A column
 * row holds one patch in (p_1, ..., p_d, c) order, so the last kernel axis
 * and the channels form one contiguous run of P * C floats in both the
 * signal and the row: a patch is copied as P^(d-1) memcpy's. Patchify is
 * im2col then one GEMM; its input gradient is a GEMM then col2im_add.
 * Unpatchify runs the same two movements the other way round.
 *
 * Internally every signal is 3-D: 1-D and 2-D ones get leading axes of size
 * 1 with a kernel of 1, so one loop nest serves data_dim 1, 2 and 3. */
#ifndef PG_PATCH_GEOMETRY_H
#define PG_PATCH_GEOMETRY_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/tensor.h"

typedef struct {
  int data_dim;
  int64_t batch;
  int64_t channels;   /* C of the signal: C_in for Patchify, C_out for Unpatchify */
  int64_t spatial[3]; /* signal sizes, padded in front with 1s to 3 axes */
  int64_t grid[3];    /* patches per axis, padded likewise */
  int64_t kernel[3];  /* patch extent per padded axis (1 on padding axes) */
  int64_t step[3];    /* stride per padded axis (1 on padding axes) */
  int64_t tokens;     /* patches per sample: the product of grid */
  int64_t row_len;    /* floats in one column row: P^d * channels */
} pg_patch_geom;

/* Patchify's grid along one axis of size s: floor((s - patch) / stride) + 1
 * (0 when s < patch). Pixels past the last full patch are not covered. */
PG_API int64_t pg_patch_grid_size(int64_t s, int64_t patch, int64_t stride);
/* Unpatchify's default output size along an axis of g patches:
 * (g - 1) * stride + patch. */
PG_API int64_t pg_unpatch_output_size(int64_t g, int64_t patch, int64_t stride);

/* Validates the settings common to both layers; `who` names the caller in
 * the message ("pg_patchify_init", ...). */
PG_API pg_status pg_patch_check_settings(const char *who, int data_dim, int64_t patch, int64_t stride);
/* The settings, then in_features and out_features >= 1: what both inits check. */
PG_API pg_status pg_patch_check_init(const char *who, int data_dim, int64_t patch, int64_t stride,
                              int64_t in_features, int64_t out_features);
/* Adds "<prefix>.weight" of weight_shape (data_dim + 2 axes) and, when
 * bias_len > 0, "<prefix>.bias" [bias_len] (*b NULL otherwise), zeroed. */
PG_API pg_status pg_patch_add_params(pg_params *ps, const char *prefix, int data_dim,
                              const int64_t *weight_shape, int64_t bias_len, pg_tensor **w,
                              pg_tensor **b);

/* How a layer names its tensors in messages, and which weight axis is which:
 * Patchify's weight is [C_out, C_in, P...], Unpatchify's [C_embed, C_out, P...]. */
typedef struct {
  const char *who;         /* "pg_patchify" */
  const char *weight_axes; /* "C_out, C_in" */
  const char *x_axes;      /* "[B, *spatial, C_in]" */
  int in_axis;             /* the weight axis that x's channels meet */
  int out_axis;            /* the weight axis of the output channels (the bias's length) */
} pg_patch_layout;

/* The input checks both layers make, in this order: the settings; the weight
 * [w0, w1, P x data_dim] (w0, w1 >= 1); the bias [weight axis out_axis]; x
 * of rank data_dim + 2 with as many channels as weight axis in_axis. The
 * spatial sizes are left to the caller (the layers want different ones). */
PG_API pg_status pg_patch_check_tensors(const pg_patch_layout *l, const pg_tensor *x, const pg_tensor *w,
                                 const pg_tensor *b, int data_dim, int64_t patch, int64_t stride);

/* Fills g for a signal [batch, *spatial, channels] cut into `grid` patches
 * per axis (data_dim entries each). */
PG_API void pg_patch_geom_init(pg_patch_geom *g, int data_dim, int64_t batch, const int64_t *spatial,
                        const int64_t *grid, int64_t channels, int64_t patch, int64_t stride);

/* cols[r, :] = the patch of row r = (b, token); every row is written. */
PG_API void pg_im2col(const pg_patch_geom *g, const float *signal, float *cols);
/* signal += each row of cols at its patch; overlapping patches sum. */
PG_API void pg_col2im_add(const pg_patch_geom *g, const float *cols, float *signal);

/* Kernel reordering, so that a channels-last column row meets the weight in
 * its own order: src [outer, n1, n2] -> dst [outer, n2, n1] (a small tensor:
 * the weight). accumulate: add into dst instead of writing it. */
PG_API void pg_swap_inner_axes(const float *src, float *dst, int64_t outer, int64_t n1, int64_t n2,
                        bool accumulate);

/* signal[r, :] = bias for every row (bias NULL: zeros). */
PG_API void pg_fill_rows(float *signal, const float *bias, int64_t rows, int64_t channels);

#endif
