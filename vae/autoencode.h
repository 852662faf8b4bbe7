/* The patch VAE (vae.h) at work on files: its checkpoints, the pixel-space
 * latent files it reads (io/latents.h: images padded, scaled, normalised
 * and pixel-unshuffled, as `patchgrad latents` writes them), whole datasets
 * encoded to VAE latents and decoded back, and the reconstruction error.
 * docs/vae.md describes the files.
 *
 * The VAE sees images, not the pixel-unshuffled layout of the files: a
 * sample [lh, lw, lc] of a file with space_to_depth f becomes the image
 * [lh f, lw f, lc / f^2] by depth-to-space (data/latent_image.h), its values
 * still in the file's normalised units (x - mean) / std, padding included.
 * So for Fashion-MNIST the VAE sees 32 x 32 x 1 images of unit variance. */
#ifndef PG_VAE_AUTOENCODE_H
#define PG_VAE_AUTOENCODE_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/render/png_image.h"
#include "patchgrad/vae/vae.h"

/* What the VAE was trained on: the files' transform (pad, space_to_depth,
 * mean, std) and source; its images are [height, width, in_channels] of
 * the config. */
typedef struct {
  pg_latent_transform tf;
  char source[64];
} pg_vae_data_info;

/* The data info of a pixel-space latent file. */
PG_API pg_vae_data_info pg_vae_data_info_of(const pg_latents_info *info);
/* The VAE config's image shape for a file: [H f, W f, C / f^2]. An error
 * names the file when its channels do not divide by f^2. */
PG_API pg_status pg_vae_image_shape(const pg_latents_info *info, const char *path, int64_t shape[3]);
/* An error naming the file unless its transform is the one the VAE was
 * trained on (pad and space_to_depth equal, mean and std within 5% of the
 * trained std) and its images have the VAE's shape. */
PG_API pg_status pg_vae_check_data(const pg_vae *m, const pg_vae_data_info *trained,
                                   const pg_latents_info *info, const char *path);

/* n samples of a file [n, lh, lw, lc] <-> images [n, lh f, lw f, lc / f^2]
 * (f = tf->factor; the values are copied, not rescaled). */
PG_API pg_status pg_vae_images_of(const pg_latent_transform *tf, int64_t n, const float *samples,
                                  int64_t lh, int64_t lw, int64_t lc, float *images);
PG_API pg_status pg_vae_samples_of(const pg_latent_transform *tf, int64_t n, const float *images,
                                   int64_t h, int64_t w, int64_t c, float *samples);

/* The first `limit` samples (0: all) of a pixel-space latent file as the
 * VAE's images: malloc'd images [n, H, W, C] and labels [n] (NULL when the
 * file has none); the caller frees both. The file must pass
 * pg_vae_check_data; *info receives its attributes. */
PG_API pg_status pg_vae_read_images(const char *path, int64_t limit, const pg_vae *m,
                                    const pg_vae_data_info *trained, pg_latents_info *info,
                                    float **images, int64_t **labels, int64_t *n);
/* The same, read with data options (NULL: none; io/latents.h). */
PG_API pg_status pg_vae_read_images_with(const char *path, const pg_data_opts *data, int64_t limit,
                                         const pg_vae *m, const pg_vae_data_info *trained,
                                         pg_latents_info *info, float **images, int64_t **labels,
                                         int64_t *n);
/* Writes images [n, H, W, C] as a pixel-space latent file of the VAE's
 * training transform (space-to-depth back to the file layout), so the
 * classifier and `patchgrad vae encode` read it like the original data.
 * Labels (may be NULL), num_classes, class_names and split come from
 * `like`; description says where the images came from. */
PG_API pg_status pg_vae_write_images(const char *path, const pg_vae *m, const pg_vae_data_info *trained,
                                     const pg_latents_info *like, const char *description,
                                     int64_t n, const float *images, const int64_t *labels);
/* A sheet of n images [n, H, W, C] (`cols` per row, `pad` gray pixels
 * between), turned back into 8-bit pixels by the training data's transform
 * (un-normalised, padding cropped, clamped to [0, 1]); for pg_png_write. */
PG_API pg_image *pg_vae_images_to_grid(const pg_vae *m, const pg_vae_data_info *trained, int64_t n,
                                       const float *images, int cols, int pad);

/* A PNG sheet of originals above their reconstructions (images and recon
 * [n, H, W, C]): with labels and num_classes K > 0, one column per class
 * holding the first per_class images of that class, as per_class pairs of
 * rows (originals, then their reconstructions); without, the first
 * 2 * cols images as two such pairs of rows of cols. An error names the
 * class that has fewer than per_class images among the n. */
PG_API pg_status pg_vae_write_sheet(const char *path, const pg_vae *m, const pg_vae_data_info *trained,
                                    const float *images, const float *recon, const int64_t *labels,
                                    int64_t num_classes, int64_t n, int64_t per_class, int64_t cols);

/* ---- checkpoints (io/checkpoint.h format) ----
 * /config: pg_vae_config_to_kv plus data_source, data_mean, data_std,
 * data_pad, data_space_to_depth and the training's beta; /params: every
 * tensor of vae.h under its name; the step attribute. */
/* The /config entries above (data may be NULL: no data_* keys). */
PG_API pg_status pg_vae_checkpoint_config(const pg_vae *m, const pg_vae_data_info *data, double beta,
                                          pg_kv *config);
PG_API pg_status pg_vae_save(const char *path, pg_vae *m, const pg_vae_data_info *data, double beta,
                             int64_t step);
/* Builds m from the file's config and reads its weights; data (may be NULL)
 * receives what it was trained on. On error m holds nothing. */
PG_API pg_status pg_vae_load(const char *path, pg_vae *m, pg_vae_data_info *data);

/* ---- whole datasets, in batches, without gradients (ctx is reset per batch) ---- */

/* images [n, H, W, C] -> latents [n, H/p, W/p, C_lat]: the posterior mean,
 * or with rng a draw mean + exp(0.5 logvar) eps (eps from rng). */
PG_API pg_status pg_vae_encode_all(pg_ctx *ctx, pg_vae *m, const float *images, int64_t n,
                                   int64_t batch, pg_rng *rng, float *latents);
/* latents [n, H/p, W/p, C_lat] -> images [n, H, W, C]. */
PG_API pg_status pg_vae_decode_all(pg_ctx *ctx, pg_vae *m, const float *latents, int64_t n,
                                   int64_t batch, float *images);

/* Latents as a file of `vae encode` stores them (z * scale_factor) -> images
 * [n, H, W, C]: z = stored / scale_factor through the decoder. With tf (may
 * be NULL) the values x are read as a training run read them (io/latents.h:
 * stored = x * tf->std + tf->mean, the read options undone), else as
 * stored. An error when scale_factor is not a finite number > 0. */
PG_API pg_status pg_vae_decode_stored(pg_ctx *ctx, pg_vae *m, double scale_factor,
                                      const pg_latent_transform *tf, const float *x, int64_t n,
                                      int64_t batch, float *images);

/* ---- a diffusion model's samples back to images ----
 * A DiT trained on the latents of `vae encode` samples in their units; the
 * decoder its checkpoint names turns them into images, and those into
 * samples in the layout of the VAE's training files (pixel-unshuffled and
 * normalised as `patchgrad latents` writes them), which the classifier and
 * `patchgrad score` read like the real data. */
typedef struct {
  pg_vae model;
  pg_vae_data_info data;  /* the transform of the VAE's training files */
  double scale_factor;    /* stored latents = z * scale_factor */
  char path[1024];        /* the checkpoint it was loaded from */
  bool loaded;
} pg_vae_decoder;

/* Loads the VAE at path for latents stored with scale_factor, which must
 * be [latent_shape] = the VAE's [H/p, W/p, C_lat] (an error names both
 * shapes). On error d holds nothing (pg_vae_decoder_free is still safe). */
PG_API pg_status pg_vae_decoder_load(pg_vae_decoder *d, const char *path, double scale_factor,
                                     const int64_t latent_shape[3]);
PG_API void pg_vae_decoder_free(pg_vae_decoder *d);
/* The shape of one decoded sample in the training files' layout:
 * [H / f, W / f, C f^2] (f = their space_to_depth). */
PG_API void pg_vae_decoder_sample_shape(const pg_vae_decoder *d, int64_t shape[3]);
/* n latents x [n, H/p, W/p, C_lat] in a run's units (tf as in
 * pg_vae_decode_stored; may be NULL) -> samples [n, shape of
 * pg_vae_decoder_sample_shape] in the VAE's training files' layout. */
PG_API pg_status pg_vae_decoder_run(pg_ctx *ctx, pg_vae_decoder *d, const pg_latent_transform *tf,
                                    const float *x, int64_t n, int64_t batch, float *samples);

/* The arrays of n images through the whole model (pg_vae_forward); every
 * pointer but recon may be NULL. */
typedef struct {
  float *eps, *mean, *logvar, *z; /* [n, H/p, W/p, C_lat] each */
  float *recon;                   /* [n, H, W, C] */
} pg_vae_arrays;

/* Encodes and decodes images [n, H, W, C]: z = mean (eps = 0) without rng,
 * a draw mean + exp(0.5 logvar) eps with eps from rng otherwise. *mse
 * (may be NULL) receives the mean squared error of the reconstructions over
 * every pixel and channel, in the images' units; *kl (may be NULL) the mean
 * KL per image (gaussian.h). */
PG_API pg_status pg_vae_reconstruct_all(pg_ctx *ctx, pg_vae *m, const float *images, int64_t n,
                                        int64_t batch, pg_rng *rng, const pg_vae_arrays *out,
                                        double *mse, double *kl);

/* The latent-diffusion scale factor (Rombach et al. 2022, section 4.3.2):
 * 1 / std of all n * per values (population std about their mean), so that
 * latents * scale have unit variance. An error when the values are constant
 * or not finite. */
PG_API pg_status pg_vae_scale_factor(const float *latents, int64_t n, int64_t per, double *scale);

/* A latent file `patchgrad train` takes: latents [n, h, w, c] multiplied by
 * scale, the labels (may be NULL) with num_classes and class_names kept from
 * `images` (the info of the file that was encoded), and the attributes
 * source "vae", scale_factor and vae_checkpoint (the checkpoint's path). */
PG_API pg_status pg_vae_write_latents(const char *path, const pg_latents_info *images,
                                      const char *vae_checkpoint, double scale, int64_t n,
                                      int64_t h, int64_t w, int64_t c, float *latents,
                                      const int64_t *labels);

#endif
