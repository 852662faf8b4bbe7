/* Latent datasets: the HDF5 files the trainer learns from.
 *
 * Layout (docs/latents.md):
 *   /latents  float32 [N, H, W, C], channels last, one chunk per sample,
 *             shuffle + deflate compressed (so one sample is one disk read),
 *             with the attribute layout = "NHWC"
 *   /labels   int64 [N], optional: class of each sample, in [0, num_classes)
 *   root attributes: format, format_version, source, split, num_classes,
 *             mean, std, pad, space_to_depth, image_height, image_width,
 *             image_channels, class_names, description; VAE latents have
 *             scale_factor and vae_checkpoint instead of the image_* ones
 *
 * The stored values are (x - mean) / std, where x is the image padded with
 * `pad` zero pixels on every side, scaled to [0, 1], and rearranged by a
 * space_to_depth x space_to_depth pixel-unshuffle (data/latent_image.h undoes
 * it). Files written here carry checksums: HDF5's on all metadata, and
 * Fletcher32 on every chunk of `latents` and `labels`.
 *
 * Files written by other tools are read too (pg_latents_open_with): the
 * samples float16, float32 or float64 under any dataset name, stored
 * channels last or channels first (the `layout` attribute: NHWC / NCHW,
 * NLC / NCL, NDHWC / NCDHW; channels-first samples are transposed as they
 * are read), the labels of any integer type under any name, and a scale
 * and shift applied as they are read.
 *
 * Opening validates everything a training run relies on, and each error
 * names the file, the dataset and the offending value. */
#ifndef PG_LATENTS_H
#define PG_LATENTS_H

#include "patchgrad/autograd/api.h"

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/autograd/tensor.h"

/* How a dataset stores its samples: the value of its `layout` attribute.
 * N is the sample axis, C the channels; L a 1D sample's length; D, H, W a
 * 3D sample's depth, height and width. Readers always hand out samples
 * channels last ([L, C], [H, W, C], [D, H, W, C]). */
typedef enum {
  PG_LAYOUT_NHWC, /* 2D, channels last (what patchgrad writes) */
  PG_LAYOUT_NCHW, /* 2D, channels first (PyTorch) */
  PG_LAYOUT_NLC,
  PG_LAYOUT_NCL,
  PG_LAYOUT_NDHWC,
  PG_LAYOUT_NCDHW,
} pg_layout;

/* "NHWC", "NCHW", ... */
PG_API const char *pg_layout_name(pg_layout layout);
/* The rank of a dataset of this layout (3, 4 or 5). */
PG_API int pg_layout_rank(pg_layout layout);
PG_API bool pg_layout_channels_first(pg_layout layout);
/* A layout from its name, in any case; spaces and commas are ignored, and
 * so is anything after a ':' (patchgrad's files before the names had
 * "N, H, W, C: sample, row, column, channel (channels last)", read as
 * NHWC). false for anything else. */
PG_API bool pg_layout_parse(const char *text, pg_layout *out);

/* What a reader does to a file besides reading it (all zero: read the file
 * as it is, the `latents` and `labels` datasets). The same options are
 * given for every file a run reads (training and held-out data), so that
 * all of them come out in one scale. */
typedef struct {
  const char *data_key;   /* the samples' dataset (may hold '/'); NULL: "latents" */
  const char *label_key;  /* the labels' dataset; NULL: "labels" */
  /* Each value is read as (z - shift) * scale, where z is the stored value
   * x itself, or with stats_from, x brought to that file's statistics:
   * z = (x * std + mean - stats_mean) / stats_std (std and mean: this file's
   * attributes). scale 0 means 1. The info's mean and std then describe
   * the values as read (std / scale, mean + shift * std), so that the
   * inverse transform (sample sheets, decoding) undoes the scale and the
   * shift too. */
  double scale, shift;
  /* A latent file whose statistics every file is brought to: its `mean`
   * and `std` attributes when it has either, else the mean and
   * (population) standard deviation of its values (read with data_key and
   * label_key). NULL: none. */
  const char *stats_from;
  bool allow_3d;          /* accept 3D samples (the models take 1D and 2D only) */
} pg_data_opts;

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
  /* Set by the readers (the writers ignore them): how the samples are
   * stored and read. A 1D sample [L, C] is read as height 1, width L; a 3D
   * one [D, H, W, C] (only with allow_3d) has depth D. */
  int spatial_dims;       /* 1, 2 or 3 */
  int64_t depth;          /* 1 unless 3D */
  pg_layout layout;       /* as stored */
  char dtype[16];         /* stored element type: "float16", "float32", "float64" */
  char data_key[128];     /* the datasets read ("" when there are no labels) */
  char label_key[128];
  /* value read = stored * read_scale + read_offset (1 and 0 without a
   * scale, shift or stats_from) */
  double read_scale, read_offset;
  double value_mean, value_std; /* of every value as read (population std) */
} pg_latents_info;

/* Defaults: mean 0, std 1, pad 0, space_to_depth 1, empty strings; 2D,
 * NHWC, read as stored. */
PG_API void pg_latents_info_init(pg_latents_info *info);

/* The name of class k in a class_names attribute ("0 T-shirt/top,
 * 1 Trouser, ..."), copied into buf and returned; "" when the list does not
 * name class k (it may be cut: "... (300 classes: see /classes)") or the
 * attribute is not such a list (it does not start with "0 "). */
PG_API const char *pg_latents_class_name(const char *class_names, int64_t k, char *buf, size_t cap);

/* Limits of what a latent file may declare (beyond them a file is refused,
 * whoever wrote it): classes (labels lie below), the transform's padding and
 * space-to-depth factor, and the side of the image it decodes to. */
#define PG_LATENTS_MAX_CLASSES (1 << 24)
#define PG_LATENTS_MAX_PAD 65536
#define PG_LATENTS_MAX_FACTOR 64
#define PG_LATENTS_MAX_IMAGE 65536

/* Checks a latent <-> image transform: mean finite, std finite and > 0,
 * pad in [0, PG_LATENTS_MAX_PAD], factor (space_to_depth) in
 * [1, PG_LATENTS_MAX_FACTOR]; with a latent shape (height, width, channels
 * all >= 1; pass 0s to skip) also that it decodes: channels divide by
 * factor^2 and the image (height factor - 2 pad) x (width factor - 2 pad)
 * has 1..PG_LATENTS_MAX_IMAGE pixels a side. `who` begins the message. */
PG_API pg_status pg_latents_check_transform(const char *who, double mean, double std, int64_t pad,
                                            int64_t factor, int64_t height, int64_t width,
                                            int64_t channels);
/* Everything pg_latents_create checks before it starts: N and the sample
 * shape positive, num_classes in [0, PG_LATENTS_MAX_CLASSES], the transform
 * (pg_latents_check_transform, with the shape), and the memory the file
 * needs while it is assembled (its uncompressed size and the labels), which
 * must be available: "needs 3.8 TB of memory, 22.1 GB available". Makers
 * call it before any work. */
PG_API pg_status pg_latents_check_info(const char *path, const pg_latents_info *info);

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
  int64_t sample_numel; /* D * H * W * C */
  float *all;      /* the whole dataset (pg_latents_load), else NULL */
  float *scratch;  /* one stored sample, for channels-first files */
} pg_latents;

/* Opens and validates: `latents` present, rank 4 (or as its `layout` says),
 * float16, float32 or float64, N > 0, its sizes'
 * products within 64 bits, one sample and 16 bytes a sample (labels, the
 * loader's order) within the memory available, every chunk stored, every
 * value finite (which reads the whole file once: HDF5 verifies each chunk's
 * checksum then); the transform attributes (pg_latents_check_transform, with
 * the sample shape); `labels` (when present) rank 1, integer (or floats
 * holding integers), N of them, each in [0, num_classes) (without the
 * attribute: below PG_LATENTS_MAX_CLASSES, and num_classes is the largest
 * + 1). The layout: the dataset's `layout` attribute (pg_layout_parse),
 * which a dataset of rank 3 or 5 must have; a rank-4 dataset without it is
 * NHWC unless its shape looks channels first ([N, A, B, C] with 2 A <= B
 * and 2 A <= C, e.g. [N, 4, 32, 32]), which is an error asking for the
 * attribute rather than a guess. NULL with a message naming file, dataset
 * and value. */
PG_API pg_latents *pg_latents_open(const char *path);
/* pg_latents_open, then the whole of `latents` read into memory once (and
 * checked there): reads are then copies from RAM. */
PG_API pg_latents *pg_latents_load(const char *path);
/* The same with reading options (NULL: none; see pg_data_opts); load:
 * pg_latents_load's in-memory copy. */
PG_API pg_latents *pg_latents_open_with(const char *path, const pg_data_opts *opts, bool load);
/* One line for people: the file, its dataset, dtype, stored shape and
 * layout, the sample shape read, the normalisation and the values' mean
 * and std, and the read transform when there is one. */
PG_API const char *pg_latents_describe(const pg_latents_info *info, const char *path, char *buf,
                                       size_t cap);
/* A dataset of samples [N, ...] of an open file as a channels-last float32
 * tensor, its `layout` attribute honoured as pg_latents_open honours it
 * (for files of samples that are not latent files: patchgrad sample's
 * grid.h5). `path` names the file in messages. */
PG_API pg_status pg_latents_read_tensor(hid_t file, const char *name, const char *path,
                                        pg_tensor **out);
PG_API void pg_latents_close(pg_latents *ds);
/* Samples [start, start + count) into dst (count * sample_numel floats),
 * channels last and with the read transform applied, read by hyperslab:
 * only those samples are read from disk (or copied from memory after
 * pg_latents_load). A channels-first file is transposed sample by sample
 * through ds->scratch: one thread at a time per pg_latents. */
PG_API pg_status pg_latents_read(const pg_latents *ds, int64_t start, int64_t count, float *dst);

#endif
