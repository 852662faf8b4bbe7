/* A sheet of samples from a DiT: one row per class for a conditional model
 * (or one row of the chosen class), labelled with the class, written as a
 * PNG grid decoded back to images with the dataset's inverse transform and
 * magnified to be seen (pg_latents_to_sheet), and as raw samples in HDF5
 * next to it: grid.png -> grid.h5.
 *
 * A DiT trained on pixel-space latents (`patchgrad latents`): grid.h5 holds
 * `samples` [N, H, W, C], the DiT's output in the training data's
 * normalised units, `labels` [N] and the sampler settings as attributes.
 *
 * A DiT trained on VAE latents (`patchgrad vae encode`), with the VAE as
 * `vae`: the samples are decoded, latents / scale_factor through the VAE's
 * decoder (vae/autoencode.h), the sheet shows those images, and grid.h5
 * holds `samples` [N, H', W', C'], the decoded images in the layout and
 * normalisation of the VAE's training files (attributes mean, std, pad,
 * space_to_depth as a latent file's), which a classifier trained on those
 * files scores (`patchgrad score`); `diffusion_latents` [N, H, W, C], the
 * DiT's own output; and the attributes vae_checkpoint and scale_factor. */
#ifndef PG_SAMPLE_SHEET_H
#define PG_SAMPLE_SHEET_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/dit/diffusion.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/vae/autoencode.h"

typedef struct {
  pg_sampler_opts sampler;
  int per_class;   /* samples per row (columns) */
  int class_id;    /* -1: every class, one row each; else that class only */
  int rows;        /* unconditional models: rows of per_class samples (default 4) */
  int zoom;        /* magnification (nearest neighbour); 0: pg_latents_to_sheet's default */
  /* the data's class names ("0 T-shirt/top, 1 Trouser, ..." as latent files
   * store them) or NULL: a conditional model's rows are labelled "K NAME",
   * or "K" for a class the list does not name */
  const char *class_names;
  /* the VAE that decodes the samples (NULL: they are the data's own
   * latents, shown through the transform tf) */
  pg_vae_decoder *vae;
} pg_sample_sheet_opts;

/* The raw latents' file beside the PNG: grid.png -> grid.h5 (any other
 * name gets ".h5" appended). */
PG_API pg_status pg_sample_sheet_raw_path(const char *png_path, char *buf, size_t cap);

PG_API pg_status pg_sample_sheet(pg_ctx *ctx, pg_dit *m, const pg_diffusion *d,
                          const pg_latent_transform *tf, const pg_sample_sheet_opts *o,
                          const char *png_path, bool quiet);

#endif
