/* A folder of images as a latent dataset (io/latents.h), in torchvision's
 * ImageFolder layout:
 *
 *   DIR/<class>/<file>      one sub-folder per class; files may also lie in
 *                           deeper folders of a class
 *
 * Classes are the sub-folders' names sorted by byte value (Python's sorted()
 * on str), label = position in that order; the files of a class are sorted
 * as torchvision's os.walk order gives them: by folder, then by name. Names
 * starting with '.' are ignored (torchvision would make ".ipynb_checkpoints"
 * a class); files directly in DIR are ignored as torchvision does. Every
 * other file of a class folder is read by content (PNG signature or JPEG SOI
 * marker, whatever its extension): a file that is neither, or that fails to
 * decode, is a bad file, refused or skipped as `on_bad` says.
 *
 * Each image becomes, in this order (torchvision's Resize(S) then
 * CenterCrop(S)):
 *   decoded: PNG by libpng (16-bit taken to its high byte, palettes
 *            expanded, alpha dropped without compositing, as PIL's convert
 *            does), JPEG by libjpeg-turbo; an image of more than 178956970
 *            pixels (PIL's decompression-bomb limit) is a bad file, refused
 *            before it is decoded;
 *   converted to `channels`: gray -> RGB repeats the value; RGB -> gray is
 *            PIL's convert("L"), L = (19595 R + 38470 G + 7471 B + 32768) >> 16;
 *   resized so that its shorter side is S (the longer side int(S * long /
 *            short)) by stb_image_resize (Mitchell filter when shrinking,
 *            Catmull-Rom when enlarging, clamped edges, no gamma
 *            conversion); an image already S on its shorter side is not
 *            filtered;
 *   centre-cropped to S x S (offsets round((size - S) / 2), halves to even
 *            as Python's round);
 * and then goes through the transform of the latent datasets
 * (data/latent_image.h): `pad` zero pixels on every side, scaled to [0, 1],
 * pixel_unshuffle by `space_to_depth`, (x - mean) / std. mean and std are
 * one scalar each, the population statistics of every padded [0, 1] pixel
 * value of the folder (exact, from a histogram of the 8-bit values), or
 * those of another latent file (`stats_from`: a test split made with the
 * train split's statistics).
 *
 * The file gets, besides the usual datasets and attributes (source
 * "images"):
 *   /classes       string [K]: class names, index = label (torchvision's
 *                  ImageFolder.classes)
 *   /files         string [N]: each sample's file, relative to DIR
 *   class_names    root attribute "0 cat, 1 dog, ..." as the other makers
 *                  write it; when the list does not fit in 511 bytes it is
 *                  cut at a name and ends with "... (K classes: see /classes)"
 *
 * The folder is read twice (statistics and the count of good images first,
 * then the samples), unless the decoded images fit in `cache_bytes`: then
 * they are kept in memory between the two passes. */
#ifndef PG_IMAGE_FOLDER_H
#define PG_IMAGE_FOLDER_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/error.h"

typedef enum {
  PG_IMAGE_BAD_FAIL, /* the first bad file stops the run, named in the error */
  PG_IMAGE_BAD_SKIP, /* bad files are left out, each reported to on_skip */
} pg_image_bad_policy;

#define PG_IMAGE_MAX_SIZE 8192

typedef struct {
  int64_t size;           /* S: output images are S x S, 1..PG_IMAGE_MAX_SIZE (no default) */
  int64_t channels;       /* 1 (gray) or 3 (RGB); default 3 */
  int64_t pad;            /* zero pixels on every side; default 0 */
  int64_t space_to_depth; /* pixel_unshuffle factor, must divide S + 2 pad; default 2 */
  pg_image_bad_policy on_bad; /* default PG_IMAGE_BAD_FAIL */
  /* NULL: mean and std of this folder. Else a latent file whose mean and std
   * are used; its pad, space_to_depth and image size and channels must be
   * these, and its classes (dataset /classes, else num_classes) the folder's. */
  const char *stats_from;
  const char *split;      /* the `split` attribute; default "train" */
  int64_t cache_bytes;    /* decoded images kept in memory up to this; default 1 GiB */
  /* Called once per skipped file (on_bad = skip), with its path and the
   * message saying why (which names the file too). May be NULL. */
  void (*on_skip)(void *ctx, const char *path, const char *message);
  void *on_skip_ctx;
} pg_image_folder_opts;

typedef struct {
  int64_t images;         /* samples written */
  int64_t skipped;        /* bad files left out */
  int64_t classes;
  double mean, std;       /* the normalisation used */
} pg_image_folder_result;

PG_API void pg_image_folder_opts_init(pg_image_folder_opts *o);

/* Writes the latent dataset of folder `dir` to out_path (atomically: on any
 * error nothing is written and a previous out_path is intact). Errors name
 * the folder or file: a folder that cannot be read, no class sub-folders, a
 * class without files, a class left without images after skipping, a bad
 * file under PG_IMAGE_BAD_FAIL, a stats_from file that does not match.
 * res may be NULL. */
PG_API pg_status pg_make_image_folder(const char *dir, const pg_image_folder_opts *o,
                                      const char *out_path, pg_image_folder_result *res);

/* One image file, decoded, converted to `channels` (1 or 3), resized and
 * centre-cropped as above into out [size, size, channels] (uint8). A file
 * that is not PNG or JPEG, or does not decode, is PG_ERR_FORMAT (PG_ERR_IO
 * when it cannot be opened) with a message naming it. */
PG_API pg_status pg_image_file_load(const char *path, int64_t size, int64_t channels, uint8_t *out);

#endif
