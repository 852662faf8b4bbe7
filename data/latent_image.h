/* Images <-> latents, the transform of the latent datasets (latents.h):
 *   image uint8 [h, w, c]  --pad `pad` zero pixels on every side, /255-->
 *   x in [0, 1] [h + 2 pad, w + 2 pad, c]  --pixel-unshuffle by f-->
 *   [(h + 2 pad) / f, (w + 2 pad) / f, c f f]  --(x - mean) / std--> latent
 * Channel order of the space-to-depth is PyTorch's pixel_unshuffle:
 * latent channel = ci * f * f + di * f + dj for the pixel at (f i + di, f j + dj)
 * of image channel ci (for one image channel: 2 di + dj when f = 2).
 * The inverse un-scales, depth-to-spaces, drops the padding, clamps to
 * [0, 1] and rounds to 8 bits, for writing samples as PNG. */
#ifndef PG_LATENT_IMAGE_H
#define PG_LATENT_IMAGE_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/render/png_image.h"

typedef struct {
  int64_t pad;    /* zero pixels on every side */
  int64_t factor; /* space-to-depth factor f (1: none) */
  double mean, std;
} pg_latent_transform;

/* The transform a dataset was made with (from its attributes). */
PG_API pg_latent_transform pg_latent_transform_of(const pg_latents_info *info);

/* The transform as the config entries of a model's checkpoint that say
 * what its data was: data_mean, data_std (doubles), data_pad,
 * data_space_to_depth (integers). From: the entries present replace tf's
 * values, the absent ones leave them. */
PG_API pg_status pg_latent_transform_to_kv(const pg_latent_transform *tf, pg_kv *kv);
/* pg_latents_check_transform of tf alone (no latent shape): mean finite, std
 * finite and > 0, pad and factor within the limits of latents.h. */
PG_API pg_status pg_latent_transform_check(const pg_latent_transform *tf, const char *who);
/* The transform a checkpoint's config records (data_mean, data_std,
 * data_pad, data_space_to_depth; an absent key keeps the identity's value),
 * checked: a key of the wrong type (a string for data_std) or a value out of
 * range (data_pad -1, data_std 0 or NaN, data_space_to_depth 2^32) is an
 * error naming it; `who` (the checkpoint's path) begins the message. */
PG_API pg_status pg_latent_transform_from_kv(const pg_kv *config, const char *who,
                                             pg_latent_transform *tf);

/* Channels-last space-to-depth: src [h, w, c] -> dst [h/f, w/f, c f f];
 * depth-to-space is its exact inverse. h and w must divide by f. */
PG_API pg_status pg_space_to_depth(const float *src, int64_t h, int64_t w, int64_t c, int64_t f,
                            float *dst);
PG_API pg_status pg_depth_to_space(const float *src, int64_t h, int64_t w, int64_t c, int64_t f,
                            float *dst);

/* One image [h, w, c] (uint8) -> one latent [(h+2p)/f, (w+2p)/f, c f f]. */
PG_API pg_status pg_image_to_latent(const pg_latent_transform *tf, const uint8_t *img, int64_t h,
                             int64_t w, int64_t c, float *latent);
/* The dimensions pg_latent_to_image gives for a latent [lh, lw, lc]; an
 * error when the transform is out of range or does not fit the shape
 * (pg_latents_check_transform). */
PG_API pg_status pg_latent_image_size(const pg_latent_transform *tf, int64_t lh, int64_t lw, int64_t lc,
                               int64_t *h, int64_t *w, int64_t *c);
/* One latent [lh, lw, lc] -> image uint8 [h, w, c] (sizes from
 * pg_latent_image_size). `scratch` holds lh * lw * lc floats. */
PG_API pg_status pg_latent_to_image(const pg_latent_transform *tf, const float *latent, int64_t lh,
                             int64_t lw, int64_t lc, float *scratch, uint8_t *img);

/* A sheet of n latents [n, lh, lw, lc] turned back into images, `cols` per
 * row with `pad` gray pixels between them (for pg_png_write). Images with 1
 * or 3 channels are shown as they are; any other count shows channel 0 in
 * gray. NULL with a message on error. */
PG_API pg_image *pg_latents_to_grid(const pg_latent_transform *tf, int64_t n, const float *latents,
                             int64_t lh, int64_t lw, int64_t lc, int cols, int pad);

/* A sheet for people to look at: pg_latents_to_grid with 2 gray pixels
 * between the images, magnified `zoom` times (nearest neighbour; 0: the
 * smallest zoom, at most PG_SHEET_MAX_ZOOM, that makes the grid at least
 * PG_SHEET_WIDTH pixels wide), with row_labels[r] (NULL: no labels, or a
 * NULL entry: none for that row) written in the white margin left of row
 * r. NULL with a message on error. */
#define PG_SHEET_WIDTH 512
#define PG_SHEET_MAX_ZOOM 64
PG_API pg_image *pg_latents_to_sheet(const pg_latent_transform *tf, int64_t n, const float *latents,
                                     int64_t lh, int64_t lw, int64_t lc, int cols, int zoom,
                                     const char *const *row_labels);

#endif
