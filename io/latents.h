/* Latent datasets: the HDF5 files the trainer learns from.
 *
 * Layout (README "Latent datasets"):
 *   /latents  float32 [N, H, W, C], channels last, one chunk per sample,
 *             shuffle + deflate compressed (so one sample is one disk read)
 *   /labels   int64 [N], optional: class of each sample, in [0, num_classes)
 *   root attributes: format, format_version, source, split, num_classes,
 *             mean, std, pad, space_to_depth, image_height, image_width,
 *             image_channels, class_names, description; VAE latents have
 *             scale_factor and vae_checkpoint instead of the image_* ones
 *
 * The stored values are (x - mean) / std, where x is the image padded with
 * `pad` zero pixels on every side, scaled to [0, 1], and rearranged by a
 * space_to_depth x space_to_depth pixel-unshuffle (imagelatents.h undoes it).
 *
 * Opening validates everything a training run relies on, and each error
 * names the file, the dataset and the offending value. */
#ifndef PG_LATENTS_H
#define PG_LATENTS_H

#include "patchgrad/autograd/api.h"

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"

typedef struct {
  int64_t n, height, width, channels;
  bool has_labels;
  /* labels lie in [0, num_classes); from the attribute when the file has it,
   * else the largest label + 1; 0 for a file without labels. */
  int64_t num_classes;
  double mean, std;       /* stored = (x - mean) / std; 0 and 1 when not scaled */
  int64_t pad;            /* zero pixels added on every side of the image */
  int64_t space_to_depth; /* pixel-unshuffle factor (1: none) */
  char source[64];        /* "fashion-mnist", "synthetic", ... */
  char split[16];         /* "train", "test", or "" */
  char class_names[512];  /* "0 T-shirt/top, 1 Trouser, ..." or "" */
  char description[512];  /* how the file was made */
  /* VAE latents (vae/autoencode.h): stored = z * scale_factor, z the latent
   * of the VAE checkpoint at vae_checkpoint, which decodes them (attributes
   * of those names); 0 and "" for any other file. */
  double scale_factor;
  char vae_checkpoint[1024];
} pg_latents_info;

/* Defaults: mean 0, std 1, pad 0, space_to_depth 1, empty strings. */
PG_API void pg_latents_info_init(pg_latents_info *info);

/* ---- Writing ----
 * Samples are appended in order and compressed as they come; the file is
 * assembled in memory (compressed size only) and written out at the end as
 * PATH.tmp, fsync'ed and renamed over PATH, so a failure at any point (disk
 * full included) leaves no partial file and any previous PATH intact. */
typedef struct pg_latents_writer pg_latents_writer;

/* Starts a dataset of info->n samples of [height, width, channels] (labels
 * when info->has_labels; with num_classes > 0 they are checked against it).
 * NULL with a message on error. */
PG_API pg_latents_writer *pg_latents_create(const char *path, const pg_latents_info *info);
/* Appends count samples (count * H * W * C floats) and, with labels, their
 * labels. A non-finite value or a label out of range is an error naming the
 * sample; the writer is then unusable (call pg_latents_abort). */
PG_API pg_status pg_latents_append(pg_latents_writer *w, int64_t count, const float *latents,
                            const int64_t *labels);
/* Checks that all n samples came, writes labels and attributes, and writes
 * the file to PATH (atomically). Frees w, also on failure. */
PG_API pg_status pg_latents_finish(pg_latents_writer *w);
/* Drops an unfinished dataset (nothing is on disk yet) and frees w. NULL is
 * a no-op. */
PG_API void pg_latents_abort(pg_latents_writer *w);

/* The whole dataset at once: latents [n, H, W, C], labels [n] or NULL. */
PG_API pg_status pg_latents_save(const char *path, const pg_latents_info *info, const float *latents,
                          const int64_t *labels);

/* ---- Reading ---- */
typedef struct {
  char path[1024];
  hid_t file, dset;
  pg_latents_info info;
  int64_t *labels; /* [n], or NULL without labels */
  int64_t sample_numel; /* H * W * C */
  float *all;      /* the whole dataset (pg_latents_load), else NULL */
} pg_latents;

/* Opens and validates: `latents` present, rank 4, float, N > 0, every value
 * finite; `labels` (when present) rank 1, integer, N of them, each in
 * [0, num_classes). NULL with a message naming file, dataset and value. */
PG_API pg_latents *pg_latents_open(const char *path);
/* pg_latents_open, then the whole of `latents` read into memory once (and
 * checked there): reads are then copies from RAM. */
PG_API pg_latents *pg_latents_load(const char *path);
PG_API void pg_latents_close(pg_latents *ds);
/* Samples [start, start + count) into dst (count * sample_numel floats),
 * read by hyperslab: only those samples are read from disk (or copied from
 * memory after pg_latents_load). */
PG_API pg_status pg_latents_read(const pg_latents *ds, int64_t start, int64_t count, float *dst);

#endif
