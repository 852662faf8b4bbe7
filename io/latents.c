#include "patchgrad/io/latents.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "patchgrad/io/h5util.h"
#include "patchgrad/io/limits.h"
#include "patchgrad/autograd/tensor.h"

#define FORMAT_NAME "patchgrad latent dataset"
#define FORMAT_VERSION 1

void pg_latents_info_init(pg_latents_info *info) {
  memset(info, 0, sizeof *info);
  info->mean = 0.0;
  info->std = 1.0;
  info->space_to_depth = 1;
  info->spatial_dims = 2;
  info->depth = 1;
  info->layout = PG_LAYOUT_NHWC;
  info->read_scale = 1.0;
}

/* ", K " (a number and a space) starts at s. */
static bool class_entry_at(const char *s) {
  if (s[0] != ',' || s[1] != ' ' || !isdigit((unsigned char)s[2])) return false;
  for (s += 2; isdigit((unsigned char)*s); s++) {}
  return *s == ' ';
}

const char *pg_latents_class_name(const char *names, int64_t k, char *buf, size_t cap) {
  char key[32];
  const int len = snprintf(key, sizeof key, "%lld ", (long long)k);
  buf[0] = 0;
  if (strncmp(names, "0 ", 2)) return buf; /* not a list (a description in words) */
  for (const char *p = names; *p; p++) {
    if (p != names && (p - names < 2 || !class_entry_at(p - 2))) continue; /* entries follow ", " */
    if (strncmp(p, key, (size_t)len)) continue;
    const char *start = p + len, *end = start;
    while (*end && !class_entry_at(end) && strncmp(end, ", ...", 5)) end++;
    snprintf(buf, cap, "%.*s", (int)(end - start), start);
    break;
  }
  return buf;
}

/* ---- Layouts ---- */

static const struct {
  pg_layout layout;
  const char *name;
  int rank;
  bool channels_first;
} layouts[] = {
    {PG_LAYOUT_NHWC, "NHWC", 4, false},   {PG_LAYOUT_NCHW, "NCHW", 4, true},
    {PG_LAYOUT_NLC, "NLC", 3, false},     {PG_LAYOUT_NCL, "NCL", 3, true},
    {PG_LAYOUT_NDHWC, "NDHWC", 5, false}, {PG_LAYOUT_NCDHW, "NCDHW", 5, true},
};
#define N_LAYOUTS (sizeof layouts / sizeof *layouts)
#define LAYOUT_NAMES "NHWC, NCHW, NLC, NCL, NDHWC or NCDHW"

static int layout_index(pg_layout layout) {
  for (size_t i = 0; i < N_LAYOUTS; i++)
    if (layouts[i].layout == layout) return (int)i;
  return 0;
}

const char *pg_layout_name(pg_layout layout) { return layouts[layout_index(layout)].name; }
int pg_layout_rank(pg_layout layout) { return layouts[layout_index(layout)].rank; }
bool pg_layout_channels_first(pg_layout layout) { return layouts[layout_index(layout)].channels_first; }

bool pg_layout_parse(const char *text, pg_layout *out) {
  char key[8];
  size_t k = 0;
  for (const char *c = text; *c && *c != ':'; c++) {
    if (*c == ' ' || *c == ',') continue;
    if (k + 1 >= sizeof key) return false;
    key[k++] = (char)toupper((unsigned char)*c);
  }
  key[k] = 0;
  for (size_t i = 0; i < N_LAYOUTS; i++)
    if (!strcmp(key, layouts[i].name)) {
      *out = layouts[i].layout;
      return true;
    }
  return false;
}

/* The first non-finite value of a sample, or -1. */
static int64_t first_non_finite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return i;
  return -1;
}

/* ---- Writing ---- */

/* Samples are compressed here, chunk by chunk, with one zlib stream reused
 * for the whole file, and stored with H5Dwrite_chunk. The bytes are those
 * HDF5's own shuffle + deflate filters would write (readers use those
 * filters), but HDF5's filter path sets up a new zlib state (~256 KB) for
 * every 4 KB chunk, and glibc's heap trimming then makes writing 60000
 * chunks take a minute instead of a second. */
struct pg_latents_writer {
  char path[1024];
  hid_t file, dset; /* in memory until pg_latents_finish writes it out */
  pg_latents_info info;
  int64_t written;
  int64_t *labels;   /* [n], filled as samples come */
  z_stream zs;
  bool zs_ready;
  uint8_t *shuffled; /* one sample, bytes regrouped by significance */
  uint8_t *packed;   /* its deflated form */
  size_t packed_cap;
};

#define DEFLATE_LEVEL 4

/* HDF5's shuffle filter: byte k of every 4-byte element, for k = 0..3. */
static void shuffle4(const float *src, int64_t n, uint8_t *dst) {
  const uint8_t *b = (const uint8_t *)src;
  for (int64_t i = 0; i < n; i++)
    for (int k = 0; k < 4; k++) dst[k * n + i] = b[4 * i + k];
}

/* HDF5's Fletcher32 filter, which follows deflate in the pipeline: the
 * checksum of the stored bytes (16-bit big-endian words, an odd last byte
 * as the high half of a word), appended little-endian. */
static uint32_t fletcher32(const uint8_t *data, size_t len) {
  uint32_t sum1 = 0, sum2 = 0;
  for (size_t words = len / 2; words > 0;) {
    size_t block = words > 360 ? 360 : words; /* the most sums without overflow */
    words -= block;
    do {
      sum1 += (uint32_t)((data[0] << 8) | data[1]);
      data += 2;
      sum2 += sum1;
    } while (--block);
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (len % 2) {
    sum1 += (uint32_t)(*data << 8);
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return (sum2 << 16) | sum1;
}

static pg_status write_sample(pg_latents_writer *w, int64_t index, const float *x) {
  int64_t per = w->info.height * w->info.width * w->info.channels;
  shuffle4(x, per, w->shuffled);
  deflateReset(&w->zs);
  w->zs.next_in = w->shuffled;
  w->zs.avail_in = (uInt)(per * 4);
  w->zs.next_out = w->packed;
  w->zs.avail_out = (uInt)(w->packed_cap - 4);
  if (deflate(&w->zs, Z_FINISH) != Z_STREAM_END)
    return pg_fail(PG_ERR_IO, "%s: compressing sample %lld failed", w->path, (long long)index);
  size_t n = w->zs.total_out;
  uint32_t sum = fletcher32(w->packed, n);
  for (int k = 0; k < 4; k++) w->packed[n + (size_t)k] = (uint8_t)(sum >> (8 * k));
  hsize_t offset[4] = {(hsize_t)index, 0, 0, 0};
  if (H5Dwrite_chunk(w->dset, H5P_DEFAULT, 0, offset, n + 4, w->packed) < 0)
    return pg_fail(PG_ERR_IO, "%s: cannot write sample %lld (disk full?)", w->path,
                   (long long)index);
  return PG_OK;
}

pg_status pg_latents_check_transform(const char *who, double mean, double std, int64_t pad,
                                     int64_t factor, int64_t height, int64_t width,
                                     int64_t channels) {
  if (!(std > 0) || !isfinite(std) || !isfinite(mean))
    return pg_fail(PG_ERR_ARG, "%s: mean = %g, std = %g (std must be finite and > 0, the mean "
                               "finite)", who, mean, std);
  if (pad < 0 || pad > PG_LATENTS_MAX_PAD || factor < 1 || factor > PG_LATENTS_MAX_FACTOR)
    return pg_fail(PG_ERR_ARG, "%s: pad = %lld, space_to_depth = %lld (pad must lie in [0, %d], "
                               "space_to_depth in [1, %d])", who, (long long)pad,
                   (long long)factor, PG_LATENTS_MAX_PAD, PG_LATENTS_MAX_FACTOR);
  if (height < 1 || width < 1 || channels < 1) return PG_OK; /* no latent shape to fit */
  int64_t f2 = factor * factor, h, w;
  if (channels % f2)
    return pg_fail(PG_ERR_ARG, "%s: %lld latent channels do not divide by space_to_depth^2 = "
                               "%lld", who, (long long)channels, (long long)f2);
  if (!pg_mul_i64(height, factor, &h) || !pg_mul_i64(width, factor, &w) || h - 2 * pad < 1 ||
      w - 2 * pad < 1 || h - 2 * pad > PG_LATENTS_MAX_IMAGE || w - 2 * pad > PG_LATENTS_MAX_IMAGE)
    return pg_fail(PG_ERR_ARG, "%s: a %lld x %lld latent at space_to_depth %lld with pad %lld "
                               "gives no image of 1..%d pixels a side", who, (long long)height,
                   (long long)width, (long long)factor, (long long)pad, PG_LATENTS_MAX_IMAGE);
  return PG_OK;
}

pg_status pg_latents_check_info(const char *path, const pg_latents_info *in) {
  if (in->n < 1)
    return pg_fail(PG_ERR_ARG, "%s: a latent dataset needs N >= 1 samples (got N = %lld)", path,
                   (long long)in->n);
  if (in->height < 1 || in->width < 1 || in->channels < 1)
    return pg_fail(PG_ERR_ARG, "%s: sample shape [%lld, %lld, %lld] must be positive", path,
                   (long long)in->height, (long long)in->width, (long long)in->channels);
  if (in->num_classes < 0 || in->num_classes > PG_LATENTS_MAX_CLASSES)
    return pg_fail(PG_ERR_ARG, "%s: num_classes %lld outside [0, %d]", path,
                   (long long)in->num_classes, PG_LATENTS_MAX_CLASSES);
  if (pg_latents_check_transform(path, in->mean, in->std, in->pad, in->space_to_depth,
                                 in->height, in->width, in->channels))
    return pg_last_status();
  /* The file is assembled in memory before it is written: at most its
   * uncompressed size, plus the labels. */
  int64_t shape[4] = {in->n, in->height, in->width, in->channels}, per_sample, bytes;
  char what[1200];
  snprintf(what, sizeof what, "%s: %lld samples of [%lld, %lld, %lld] (assembled in memory "
           "before writing)", path, (long long)in->n, (long long)in->height,
           (long long)in->width, (long long)in->channels);
  if (pg_shape_bytes(what, 3, shape + 1, 4, NULL, &per_sample) ||
      per_sample > (int64_t)UINT32_MAX - 1024 ||
      !pg_mul_i64(per_sample + 8, in->n, &bytes))
    return pg_fail(PG_ERR_ARG, "%s: too large for one file", what);
  return pg_check_memory(what, bytes);
}

pg_latents_writer *pg_latents_create(const char *path, const pg_latents_info *info) {
  if (pg_latents_check_info(path, info)) return NULL;
  pg_latents_writer *w = calloc(1, sizeof *w);
  if (!w) {
    pg_fail(PG_ERR_MEMORY, "%s: out of memory", path);
    return NULL;
  }
  w->file = w->dset = -1;
  w->info = *info;
  snprintf(w->path, sizeof w->path, "%s", path);
  if (info->has_labels && !(w->labels = malloc((size_t)info->n * sizeof *w->labels))) {
    pg_fail(PG_ERR_MEMORY, "%s: out of memory for %lld labels", path, (long long)info->n);
    free(w);
    return NULL;
  }
  int64_t per_bytes = info->height * info->width * info->channels * 4;
  w->packed_cap = (size_t)compressBound((uLong)per_bytes) + 4; /* and the checksum */
  w->shuffled = malloc((size_t)per_bytes);
  w->packed = malloc(w->packed_cap);
  w->zs_ready = deflateInit(&w->zs, DEFLATE_LEVEL) == Z_OK;
  w->file = (w->shuffled && w->packed && w->zs_ready) ? pg_h5_create_in_memory(path) : -1;
  if (w->file < 0) {
    if (!w->shuffled || !w->packed || !w->zs_ready)
      pg_fail(PG_ERR_MEMORY, "%s: out of memory for the compressor", path);
    pg_latents_abort(w);
    return NULL;
  }
  hsize_t dims[4] = {(hsize_t)info->n, (hsize_t)info->height, (hsize_t)info->width,
                     (hsize_t)info->channels};
  hsize_t chunk[4] = {1, dims[1], dims[2], dims[3]}; /* one sample per chunk */
  hid_t space = H5Screate_simple(4, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 4, chunk);
  H5Pset_shuffle(dcpl);
  H5Pset_deflate(dcpl, DEFLATE_LEVEL);
  H5Pset_fletcher32(dcpl); /* computed here too: write_sample */
  /* native float: the chunks we compress hold the machine's own bytes */
  w->dset = H5Dcreate2(w->file, "latents", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(space);
  if (w->dset < 0 ||
      pg_h5_set_attr_string(w->dset, "layout", pg_layout_name(PG_LAYOUT_NHWC))) {
    pg_fail(PG_ERR_IO, "%s: cannot create dataset 'latents' [%llu, %llu, %llu, %llu]", path,
            (unsigned long long)dims[0], (unsigned long long)dims[1],
            (unsigned long long)dims[2], (unsigned long long)dims[3]);
    pg_latents_abort(w);
    return NULL;
  }
  return w;
}

pg_status pg_latents_append(pg_latents_writer *w, int64_t count, const float *latents,
                            const int64_t *labels) {
  const pg_latents_info *in = &w->info;
  if (count < 0 || w->written + count > in->n)
    return pg_fail(PG_ERR_ARG, "%s: appending %lld samples after %lld exceeds N = %lld", w->path,
                   (long long)count, (long long)w->written, (long long)in->n);
  if (in->has_labels && !labels)
    return pg_fail(PG_ERR_ARG, "%s: the dataset has labels but none were given", w->path);
  int64_t per = in->height * in->width * in->channels;
  for (int64_t s = 0; s < count; s++) {
    int64_t bad = first_non_finite(latents + s * per, per);
    if (bad >= 0)
      return pg_fail(PG_ERR_ARG, "%s: sample %lld has a non-finite value (%g at element %lld)",
                     w->path, (long long)(w->written + s), latents[s * per + bad],
                     (long long)bad);
    if (in->has_labels) {
      int64_t y = labels[s], k = in->num_classes > 0 ? in->num_classes : PG_LATENTS_MAX_CLASSES;
      if (y < 0 || y >= k)
        return pg_fail(PG_ERR_ARG, "%s: label of sample %lld is %lld, outside [0, %lld)",
                       w->path, (long long)(w->written + s), (long long)y, (long long)k);
      w->labels[w->written + s] = y;
    }
  }
  for (int64_t s = 0; s < count; s++)
    if (write_sample(w, w->written + s, latents + s * per)) return pg_last_status();
  w->written += count;
  return PG_OK;
}

static pg_status write_attributes(pg_latents_writer *w) {
  const pg_latents_info *in = &w->info;
  hid_t f = w->file;
  int64_t f2 = in->space_to_depth * in->space_to_depth;
  pg_status st = PG_OK;
  if (!st) st = pg_h5_set_attr_string(f, "format", FORMAT_NAME);
  if (!st) st = pg_h5_set_attr_int(f, "format_version", FORMAT_VERSION);
  if (!st) st = pg_h5_set_attr_string(f, "source", in->source);
  if (!st && in->split[0]) st = pg_h5_set_attr_string(f, "split", in->split);
  if (!st) st = pg_h5_set_attr_int(f, "num_classes", in->num_classes);
  if (!st) st = pg_h5_set_attr_double(f, "mean", in->mean);
  if (!st) st = pg_h5_set_attr_double(f, "std", in->std);
  if (!st) st = pg_h5_set_attr_int(f, "pad", in->pad);
  if (!st) st = pg_h5_set_attr_int(f, "space_to_depth", in->space_to_depth);
  if (in->vae_checkpoint[0]) { /* the VAE decodes them into images */
    if (!st) st = pg_h5_set_attr_double(f, "scale_factor", in->scale_factor);
    if (!st) st = pg_h5_set_attr_string(f, "vae_checkpoint", in->vae_checkpoint);
  } else { /* the image size the inverse transform gives back, for readers' benefit */
    if (!st) st = pg_h5_set_attr_int(f, "image_height", in->height * in->space_to_depth - 2 * in->pad);
    if (!st) st = pg_h5_set_attr_int(f, "image_width", in->width * in->space_to_depth - 2 * in->pad);
    if (!st && in->channels % f2 == 0)
      st = pg_h5_set_attr_int(f, "image_channels", in->channels / f2);
  }
  if (!st && in->class_names[0]) st = pg_h5_set_attr_string(f, "class_names", in->class_names);
  if (!st) st = pg_h5_set_attr_string(f, "description", in->description);
  if (!st && in->has_labels) {
    int64_t shape[1] = {in->n};
    st = pg_h5_write_int64(f, "labels", 1, shape, w->labels);
    hid_t d = st ? -1 : H5Dopen2(f, "labels", H5P_DEFAULT);
    if (d >= 0) {
      st = pg_h5_set_attr_string(d, "description", "class index of each sample, in [0, num_classes)");
      H5Dclose(d);
    }
  }
  if (st) pg_error_prefix(w->path);
  return st;
}

static void free_writer(pg_latents_writer *w) {
  if (w->zs_ready) deflateEnd(&w->zs);
  free(w->shuffled);
  free(w->packed);
  free(w->labels);
  free(w);
}

pg_status pg_latents_finish(pg_latents_writer *w) {
  pg_status st = PG_OK;
  if (w->written != w->info.n)
    st = pg_fail(PG_ERR_STATE, "%s: %lld of N = %lld samples were written", w->path,
                 (long long)w->written, (long long)w->info.n);
  if (!st && w->info.has_labels && w->info.num_classes == 0)
    for (int64_t i = 0; i < w->info.n; i++)
      if (w->labels[i] + 1 > w->info.num_classes) w->info.num_classes = w->labels[i] + 1;
  if (!st) st = write_attributes(w);
  if (st) {
    pg_latents_abort(w);
    return st;
  }
  H5Dclose(w->dset);
  st = pg_h5_commit_image(w->file, w->path); /* PATH.tmp, fsync, rename */
  free_writer(w);
  return st;
}

void pg_latents_abort(pg_latents_writer *w) {
  if (!w) return;
  if (w->dset >= 0) H5Dclose(w->dset);
  if (w->file >= 0) H5Fclose(w->file); /* in memory: nothing on disk yet */
  free_writer(w);
}

pg_status pg_latents_save(const char *path, const pg_latents_info *info, const float *latents,
                          const int64_t *labels) {
  pg_latents_writer *w = pg_latents_create(path, info);
  if (!w) return pg_last_status();
  if (pg_latents_append(w, info->n, latents, labels)) {
    pg_status st = pg_last_status();
    pg_latents_abort(w); /* leaves the message alone */
    return st;
  }
  return pg_latents_finish(w);
}

/* ---- Reading and validation ---- */

/* A rank-4 shape [N, A, B, C] that looks channels first: 2 A <= B and
 * 2 A <= C ([N, 4, 32, 32] read as NHWC would be 4 x 32 images of 32
 * channels). */
static bool looks_channels_first(const int64_t *shape) {
  return shape[1] > 0 && 2 * shape[1] <= shape[2] && 2 * shape[1] <= shape[3];
}

/* The layout of a dataset of samples [N, ...]: its attribute, which must
 * fit its rank; without one, NHWC for a rank-4 dataset that does not look
 * channels first. `strict`: ranks other than 3, 4 and 5 are errors (else
 * they are left to the caller, as NHWC). */
static pg_status dataset_layout(hid_t dset, const char *path, const char *key, int ndim,
                                const int64_t *shape, bool strict, pg_layout *out) {
  char text[128], s[128];
  pg_h5_shape_str(s, sizeof s, ndim, shape);
  *out = PG_LAYOUT_NHWC;
  int rc = pg_h5_attr_string(dset, "layout", text, sizeof text);
  if (rc < 0) {
    char where[1200];
    snprintf(where, sizeof where, "%s: dataset '%s'", path, key);
    return pg_error_prefix(where);
  }
  if (rc == 1) {
    if (!pg_layout_parse(text, out))
      return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': attribute layout = \"%s\" is not one of "
                                    LAYOUT_NAMES, path, key, text);
    if (pg_layout_rank(*out) != ndim)
      return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has rank %d, shape %s, but its attribute "
                                    "layout = \"%s\" is for rank %d", path, key, ndim, s, text,
                     pg_layout_rank(*out));
    return PG_OK;
  }
  if (ndim == 4 && looks_channels_first(shape))
    return pg_fail(PG_ERR_FORMAT,
                   "%s: dataset '%s' has shape %s and no attribute 'layout': it looks channels "
                   "first (%lld channels of %lld x %lld), not %lld x %lld samples of %lld "
                   "channels. Set the attribute layout = \"NCHW\" on '%s' (h5py: "
                   "f[\"%s\"].attrs[\"layout\"] = \"NCHW\"), or \"NHWC\" if it is [N, H, W, C]",
                   path, key, s, (long long)shape[1], (long long)shape[2], (long long)shape[3],
                   (long long)shape[1], (long long)shape[2], (long long)shape[3], key, key);
  if (ndim == 3 || ndim == 5)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has rank %d, shape %s, and no attribute "
                                  "'layout': set it to \"%s\" (channels last) or \"%s\" (channels "
                                  "first)", path, key, ndim, s, ndim == 3 ? "NLC" : "NDHWC",
                   ndim == 3 ? "NCL" : "NCDHW");
  if (strict && ndim != 4)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has rank %d, shape %s (expected rank 4: "
                                  "[N, H, W, C], or with the attribute 'layout' [N, C, H, W] and "
                                  "ranks 3 and 5 for 1D and 3D samples)", path, key, ndim, s);
  return PG_OK;
}

/* One sample stored channels first, [c, s] (s the spatial size), written
 * channels last, [s, c]. */
static void to_channels_last(const float *src, int64_t c, int64_t s, float *dst) {
  for (int64_t i = 0; i < s; i++)
    for (int64_t k = 0; k < c; k++) dst[i * c + k] = src[k * s + i];
}

static pg_status open_latents_dataset(pg_latents *ds, bool allow_3d) {
  const char *p = ds->path;
  pg_latents_info *in = &ds->info;
  const char *key = in->data_key;
  if (!strchr(key, '/') && pg_h5_is_external_link(ds->file, key))
    return pg_fail(PG_ERR_FORMAT, "%s: '%s' is a link to another file (not followed)", p, key);
  if (!pg_h5_exists(ds->file, key)) {
    if (!strcmp(key, "latents"))
      return pg_fail(PG_ERR_FORMAT, "%s: missing dataset 'latents' (a latent dataset holds "
                                    "'latents' [N, H, W, C] and optionally 'labels' [N])", p);
    return pg_fail(PG_ERR_FORMAT, "%s: no dataset '%s' (the samples' dataset asked for)", p, key);
  }
  pg_h5_dtype dt;
  int ndim;
  int64_t shape[PG_MAX_DIMS];
  if (pg_h5_dataset_dtype(ds->file, key, p, &dt) ||
      pg_h5_dataset_shape(ds->file, key, p, &ndim, shape))
    return pg_last_status();
  if (dt.cls != H5T_FLOAT || (dt.size != 2 && dt.size != 4 && dt.size != 8))
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has dtype %s (expected float16, float32 or "
                                  "float64)", p, key, dt.name);
  snprintf(in->dtype, sizeof in->dtype, "%s", dt.name);
  ds->dset = pg_h5_open_dataset(ds->file, key, p);
  if (ds->dset < 0) return pg_last_status();
  if (dataset_layout(ds->dset, p, key, ndim, shape, true, &in->layout)) return pg_last_status();
  char s[128];
  pg_h5_shape_str(s, sizeof s, ndim, shape);
  if (ndim == 5 && !allow_3d)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' holds 3D samples (shape %s, layout %s); the "
                                  "models take 2D samples [H, W, C] (and 1D [L, C])", p, key, s,
                   pg_layout_name(in->layout));
  if (shape[0] == 0)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has N = 0 samples", p, key);
  for (int i = 1; i < ndim; i++)
    if (shape[i] == 0)
      return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has an empty sample shape %s", p, key, s);
  /* Sizes first (a batch holds whole samples, the loader keeps 16 bytes a
   * sample: labels and its order), then that the data is there at all. */
  int64_t per, sample_bytes, index_bytes;
  char what[1600];
  snprintf(what, sizeof what, "%s: dataset '%s' %s", p, key, s);
  if (pg_shape_bytes(what, ndim - 1, shape + 1, 4, &per, &sample_bytes) ||
      pg_check_memory(what, sample_bytes))
    return pg_last_status();
  snprintf(what, sizeof what, "%s: dataset '%s' %s (labels and sample order, 16 bytes a "
           "sample)", p, key, s);
  if (!pg_mul_i64(shape[0], 16, &index_bytes)) index_bytes = INT64_MAX;
  if (pg_check_memory(what, index_bytes)) return pg_last_status();
  /* the sample shape, channels last */
  const bool first = pg_layout_channels_first(in->layout);
  int64_t spatial[3] = {1, 1, 1};
  const int dims = ndim - 2;
  for (int i = 0; i < dims; i++) spatial[3 - dims + i] = shape[(first ? 2 : 1) + i];
  in->n = shape[0];
  in->spatial_dims = dims;
  in->depth = spatial[0];
  in->height = spatial[1];
  in->width = spatial[2];
  in->channels = first ? shape[1] : shape[ndim - 1];
  ds->sample_numel = per;
  if (first && !(ds->scratch = malloc((size_t)sample_bytes)))
    return pg_fail(PG_ERR_MEMORY, "%s: out of memory for one sample of '%s'", p, key);
  return pg_h5_check_storage(ds->dset, key, p);
}

static pg_status read_attributes(pg_latents *ds) {
  const char *p = ds->path;
  pg_latents_info *in = &ds->info;
  int64_t v;
  int rc;
  if ((rc = pg_h5_attr_double(ds->file, "mean", &in->mean)) < 0 ||
      (rc = pg_h5_attr_double(ds->file, "std", &in->std)) < 0 ||
      (rc = pg_h5_attr_int(ds->file, "pad", &in->pad)) < 0 ||
      (rc = pg_h5_attr_int(ds->file, "space_to_depth", &in->space_to_depth)) < 0 ||
      pg_h5_attr_string(ds->file, "source", in->source, sizeof in->source) < 0 ||
      pg_h5_attr_string(ds->file, "split", in->split, sizeof in->split) < 0 ||
      pg_h5_attr_string(ds->file, "class_names", in->class_names, sizeof in->class_names) < 0 ||
      pg_h5_attr_string(ds->file, "description", in->description, sizeof in->description) < 0 ||
      pg_h5_attr_double(ds->file, "scale_factor", &in->scale_factor) < 0 ||
      pg_h5_attr_string(ds->file, "vae_checkpoint", in->vae_checkpoint, sizeof in->vae_checkpoint) < 0)
    return pg_error_prefix(p);
  if (in->vae_checkpoint[0] && !(in->scale_factor > 0 && isfinite(in->scale_factor)))
    return pg_fail(PG_ERR_FORMAT, "%s: attribute scale_factor = %g (VAE latents need a finite "
                                  "scale_factor > 0)", p, in->scale_factor);
  char who[1100];
  snprintf(who, sizeof who, "%s: attributes", p);
  /* the inverse transform must be able to turn every sample into an image */
  if (pg_latents_check_transform(who, in->mean, in->std, in->pad, in->space_to_depth, in->height,
                                 in->width, in->channels)) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pg_last_error());
    return pg_fail(PG_ERR_FORMAT, "%s", msg);
  }
  rc = pg_h5_attr_int(ds->file, "num_classes", &v);
  if (rc < 0) return pg_error_prefix(p);
  if (rc == 1 && (v < 0 || v > PG_LATENTS_MAX_CLASSES))
    return pg_fail(PG_ERR_FORMAT, "%s: attribute num_classes = %lld is outside [0, %d]", p,
                   (long long)v, PG_LATENTS_MAX_CLASSES);
  in->num_classes = rc == 1 ? v : -1; /* -1: not given, from the labels below */
  return PG_OK;
}

/* Labels of an unsigned 64-bit type: read as they are, so that a value
 * beyond INT64_MAX is named as stored (HDF5 would clip it). */
static pg_status read_uint64_labels(pg_latents *ds, const char *key) {
  const int64_t n = ds->info.n;
  uint64_t *u = malloc((size_t)n * sizeof *u);
  ds->labels = malloc((size_t)n * sizeof *ds->labels);
  if (!u || !ds->labels) {
    free(u);
    return pg_fail(PG_ERR_MEMORY, "%s: out of memory for %lld labels", ds->path, (long long)n);
  }
  pg_status st = pg_h5_read_uint64(ds->file, key, ds->path, n, u);
  for (int64_t i = 0; !st && i < n; i++) {
    if (u[i] > (uint64_t)INT64_MAX)
      st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': %s[%lld] = %llu is outside [0, %d) (at most "
                                  "%d classes)", ds->path, key, key, (long long)i,
                   (unsigned long long)u[i], PG_LATENTS_MAX_CLASSES, PG_LATENTS_MAX_CLASSES);
    else ds->labels[i] = (int64_t)u[i];
  }
  free(u);
  return st;
}

static pg_status read_labels(pg_latents *ds, bool asked) {
  const char *p = ds->path;
  pg_latents_info *in = &ds->info;
  char key[sizeof in->label_key];
  snprintf(key, sizeof key, "%s", in->label_key);
  in->has_labels = pg_h5_exists(ds->file, key);
  if (!in->has_labels) {
    in->label_key[0] = 0;
    if (asked)
      return pg_fail(PG_ERR_FORMAT, "%s: no dataset '%s' (the labels' dataset asked for)", p, key);
    if (in->num_classes > 0)
      return pg_fail(PG_ERR_FORMAT, "%s: attribute num_classes = %lld but there is no dataset "
                                    "'%s'", p, (long long)in->num_classes, key);
    in->num_classes = 0;
    return PG_OK;
  }
  pg_h5_dtype dt;
  int ndim;
  int64_t shape[PG_MAX_DIMS];
  if (pg_h5_dataset_dtype(ds->file, key, p, &dt) ||
      pg_h5_dataset_shape(ds->file, key, p, &ndim, shape))
    return pg_last_status();
  if (dt.cls != H5T_INTEGER)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has dtype %s (expected an integer type: "
                                  "int8 to int64, uint8 to uint64)", p, key, dt.name);
  if (ndim != 1)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has rank %d (expected rank 1: [N])", p, key,
                   ndim);
  if (shape[0] != in->n)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has %lld entries but '%s' has N = %lld "
                                  "samples", p, key, (long long)shape[0], in->data_key,
                   (long long)in->n);
  if (!strcmp(dt.name, "uint64") ? read_uint64_labels(ds, key)
                                 : pg_h5_read_int64(ds->file, key, p, &ds->labels, &ndim, shape))
    return pg_last_status();
  /* without the attribute, labels must still leave num_classes = max + 1
   * within the limit (a label near INT64_MAX would overflow it) */
  int64_t limit = in->num_classes >= 0 ? in->num_classes : PG_LATENTS_MAX_CLASSES, max = -1;
  for (int64_t i = 0; i < in->n; i++) {
    int64_t y = ds->labels[i];
    if (y < 0)
      return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': %s[%lld] = %lld is negative", p, key, key,
                     (long long)i, (long long)y);
    if (y >= limit) {
      if (in->num_classes >= 0)
        return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': %s[%lld] = %lld is outside [0, %lld) "
                                      "(attribute num_classes = %lld)", p, key, key, (long long)i,
                       (long long)y, (long long)in->num_classes, (long long)in->num_classes);
      return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': %s[%lld] = %lld is outside [0, %d) (at "
                                    "most %d classes)", p, key, key, (long long)i, (long long)y,
                     PG_LATENTS_MAX_CLASSES, PG_LATENTS_MAX_CLASSES);
    }
    if (y > max) max = y;
  }
  if (in->num_classes < 0) in->num_classes = max + 1;
  return PG_OK;
}

/* The statistics the values are brought to: stats_from's (its attributes,
 * else its values' mean and std), else the file's own. */
static pg_status target_statistics(const pg_latents *ds, const pg_data_opts *o, double *mean,
                                   double *std) {
  *mean = ds->info.mean;
  *std = ds->info.std;
  if (!o->stats_from) return PG_OK;
  const pg_data_opts fo = {.data_key = o->data_key, .label_key = o->label_key,
                           .allow_3d = o->allow_3d};
  pg_latents *f = pg_latents_open_with(o->stats_from, &fo, false);
  if (!f) return pg_last_status();
  const bool attrs = H5Aexists(f->file, "mean") > 0 || H5Aexists(f->file, "std") > 0;
  *mean = attrs ? f->info.mean : f->info.value_mean;
  *std = attrs ? f->info.std : f->info.value_std;
  pg_latents_close(f);
  if (!(*std > 0) || !isfinite(*std) || !isfinite(*mean))
    return pg_fail(PG_ERR_ARG, "%s: the statistics of %s are mean %g, std %g (%s; the std must be "
                               "finite and > 0)", ds->path, o->stats_from, *mean, *std,
                   attrs ? "its attributes" : "of its values");
  return PG_OK;
}

/* The read transform of pg_data_opts: value = stored * read_scale +
 * read_offset, and the normalisation of the values as read. */
static pg_status set_read_transform(pg_latents *ds, const pg_data_opts *o) {
  pg_latents_info *in = &ds->info;
  if (!o) return PG_OK;
  const double scale = o->scale == 0 ? 1.0 : o->scale, shift = o->shift;
  if (!(scale > 0) || !isfinite(scale) || !isfinite(shift))
    return pg_fail(PG_ERR_ARG, "%s: read scale %g, shift %g (the scale must be finite and > 0, the "
                               "shift finite)", ds->path, o->scale, o->shift);
  double m0, s0;
  if (target_statistics(ds, o, &m0, &s0)) return pg_last_status();
  in->read_scale = scale * in->std / s0;
  in->read_offset = scale * ((in->mean - m0) / s0 - shift);
  in->mean = m0 + shift * s0;
  in->std = s0 / scale;
  char who[1200];
  snprintf(who, sizeof who, "%s: read with scale %g, shift %g%s%s", ds->path, scale, shift,
           o->stats_from ? " and the statistics of " : "", o->stats_from ? o->stats_from : "");
  if (!isfinite(in->read_scale) || !isfinite(in->read_offset))
    return pg_fail(PG_ERR_ARG, "%s: the values would be read as x * %g + (%g)", who,
                   in->read_scale, in->read_offset);
  return pg_latents_check_transform(who, in->mean, in->std, in->pad, in->space_to_depth,
                                    in->height, in->width, in->channels);
}

/* Mean and sum of squared deviations of values seen so far, merged block
 * by block (Chan et al.'s pairwise update, in double). */
typedef struct {
  double n, mean, m2;
} moments;

static void moments_add(moments *m, const float *x, int64_t count) {
  if (count <= 0) return;
  double sum = 0, m2 = 0;
  for (int64_t i = 0; i < count; i++) sum += x[i];
  const double mean = sum / (double)count;
  for (int64_t i = 0; i < count; i++) m2 += ((double)x[i] - mean) * ((double)x[i] - mean);
  const double n = m->n + (double)count, delta = mean - m->mean;
  m->mean += delta * (double)count / n;
  m->m2 += m2 + delta * delta * m->n * (double)count / n;
  m->n = n;
}

/* ", read as x * a + b" when the values are not read as stored, else "". */
static void read_as(const pg_latents_info *in, char *buf, size_t cap) {
  buf[0] = 0;
  if (in->read_scale != 1 || in->read_offset != 0)
    snprintf(buf, cap, ", read as x * %.6g %c %.6g", in->read_scale,
             in->read_offset < 0 ? '-' : '+', fabs(in->read_offset));
}

/* Reads the whole dataset block by block (never all of it at once), names
 * the first sample holding NaN or Inf, and measures the values. */
static pg_status non_finite_error(const pg_latents *ds, int64_t sample, const float *x,
                                  int64_t element) {
  const pg_latents_info *in = &ds->info;
  char how[160];
  read_as(in, how, sizeof how);
  return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': sample %lld holds %g at element %lld%s "
                                "(every value must be finite)", ds->path, in->data_key,
                 (long long)sample, x[element], (long long)element, how);
}

static pg_status check_block(const pg_latents *ds, int64_t first, int64_t count, const float *x,
                             moments *m) {
  const int64_t per = ds->sample_numel;
  for (int64_t s = 0; s < count; s++) {
    int64_t bad = first_non_finite(x + s * per, per);
    if (bad >= 0) return non_finite_error(ds, first + s, x + s * per, bad);
  }
  moments_add(m, x, count * per);
  return PG_OK;
}

static pg_status check_finite(pg_latents *ds) {
  int64_t per = ds->sample_numel;
  int64_t block = (1 << 20) / per; /* about 4 MB per read */
  if (block < 1) block = 1;
  if (block > ds->info.n) block = ds->info.n;
  moments m = {0, 0, 0};
  float *buf = ds->all ? NULL : malloc((size_t)(block * per) * sizeof *buf);
  if (!ds->all && !buf) return pg_fail(PG_ERR_MEMORY, "%s: out of memory checking '%s'", ds->path,
                                       ds->info.data_key);
  pg_status st = PG_OK;
  for (int64_t start = 0; !st && start < ds->info.n; start += block) {
    int64_t count = ds->info.n - start < block ? ds->info.n - start : block;
    if (ds->all) { /* already in memory */
      st = check_block(ds, start, count, ds->all + start * per, &m);
    } else if (!(st = pg_latents_read(ds, start, count, buf))) {
      st = check_block(ds, start, count, buf, &m);
    }
  }
  free(buf);
  ds->info.value_mean = m.mean;
  ds->info.value_std = m.n > 0 ? sqrt(m.m2 / m.n) : 0;
  return st;
}

static pg_status load_everything(pg_latents *ds) {
  int64_t shape[2] = {ds->info.n, ds->sample_numel}, bytes;
  char what[1300];
  snprintf(what, sizeof what, "%s: reading all of '%s' into memory (read from disk "
           "instead)", ds->path, ds->info.data_key);
  if (pg_shape_bytes(what, 2, shape, sizeof(float), NULL, &bytes) || pg_check_memory(what, bytes))
    return pg_last_status();
  float *all = malloc((size_t)bytes);
  if (!all)
    return pg_fail(PG_ERR_MEMORY, "%s: out of memory reading all of '%s' (%lld MB; read "
                                  "from disk instead)", ds->path, ds->info.data_key,
                   (long long)(bytes >> 20));
  /* in blocks of about 4 MB: HDF5 is much slower on one selection spanning
   * tens of thousands of chunks */
  int64_t block = (1 << 20) / ds->sample_numel + 1;
  for (int64_t start = 0; start < ds->info.n; start += block) {
    int64_t count = ds->info.n - start < block ? ds->info.n - start : block;
    if (pg_latents_read(ds, start, count, all + start * ds->sample_numel)) {
      free(all);
      return pg_last_status();
    }
  }
  ds->all = all;
  return PG_OK;
}

pg_latents *pg_latents_open_with(const char *path, const pg_data_opts *opts, bool load) {
  pg_latents *ds = calloc(1, sizeof *ds);
  if (!ds) {
    pg_fail(PG_ERR_MEMORY, "%s: out of memory", path);
    return NULL;
  }
  snprintf(ds->path, sizeof ds->path, "%s", path);
  pg_latents_info_init(&ds->info);
  const char *data_key = opts && opts->data_key ? opts->data_key : "latents";
  const char *label_key = opts && opts->label_key ? opts->label_key : "labels";
  ds->dset = -1;
  ds->file = -1;
  if (strlen(data_key) >= sizeof ds->info.data_key || strlen(label_key) >= sizeof ds->info.label_key ||
      !data_key[0] || !label_key[0]) {
    pg_fail(PG_ERR_ARG, "%s: dataset names '%.200s' and '%.200s' must have 1 to %zu characters",
            path, data_key, label_key, sizeof ds->info.data_key - 1);
    pg_latents_close(ds);
    return NULL;
  }
  snprintf(ds->info.data_key, sizeof ds->info.data_key, "%s", data_key);
  snprintf(ds->info.label_key, sizeof ds->info.label_key, "%s", label_key);
  ds->file = pg_h5_open(path, false);
  if (ds->file < 0 || open_latents_dataset(ds, opts && opts->allow_3d) || read_attributes(ds) ||
      read_labels(ds, opts && opts->label_key) || set_read_transform(ds, opts) ||
      (load && load_everything(ds)) || check_finite(ds)) {
    pg_latents_close(ds);
    return NULL;
  }
  return ds;
}

pg_latents *pg_latents_open(const char *path) { return pg_latents_open_with(path, NULL, false); }
pg_latents *pg_latents_load(const char *path) { return pg_latents_open_with(path, NULL, true); }

void pg_latents_close(pg_latents *ds) {
  if (!ds) return;
  if (ds->dset >= 0) H5Dclose(ds->dset);
  if (ds->file >= 0) H5Fclose(ds->file);
  free(ds->labels);
  free(ds->all);
  free(ds->scratch);
  free(ds);
}

pg_status pg_latents_read(const pg_latents *ds, int64_t start, int64_t count, float *dst) {
  const int64_t per = ds->sample_numel;
  if (ds->all) {
    if (start < 0 || count < 0 || start + count > ds->info.n)
      return pg_fail(PG_ERR_ARG, "%s: dataset '%s': rows [%lld, %lld) outside the %lld rows",
                     ds->path, ds->info.data_key, (long long)start, (long long)(start + count),
                     (long long)ds->info.n);
    memcpy(dst, ds->all + start * per, (size_t)(count * per) * sizeof *dst);
    return PG_OK;
  }
  if (pg_h5_read_rows(ds->dset, start, count, dst)) {
    char where[1200];
    snprintf(where, sizeof where, "%s: dataset '%s'", ds->path, ds->info.data_key);
    return pg_error_prefix(where);
  }
  const pg_latents_info *in = &ds->info;
  if (ds->scratch) /* channels first: each sample transposed where it lies */
    for (int64_t k = 0; k < count; k++) {
      memcpy(ds->scratch, dst + k * per, (size_t)per * sizeof *dst);
      to_channels_last(ds->scratch, in->channels, per / in->channels, dst + k * per);
    }
  if (in->read_scale != 1 || in->read_offset != 0)
    for (int64_t i = 0; i < count * per; i++)
      dst[i] = (float)((double)dst[i] * in->read_scale + in->read_offset);
  return PG_OK;
}

pg_status pg_latents_read_tensor(hid_t file, const char *name, const char *path, pg_tensor **out) {
  pg_tensor *t = NULL;
  *out = NULL;
  pg_status st = pg_h5_read_tensor(file, name, path, &t);
  if (st) return st;
  pg_layout layout = PG_LAYOUT_NHWC;
  hid_t d = t->ndim >= 3 ? pg_h5_open_dataset(file, name, path) : -1;
  if (t->ndim >= 3 && d < 0) st = pg_last_status();
  if (d >= 0) {
    st = dataset_layout(d, path, name, t->ndim, t->shape, false, &layout);
    H5Dclose(d);
  }
  if (!st && pg_layout_channels_first(layout) && t->shape[0] > 0) {
    const int64_t per = t->numel / t->shape[0], c = t->shape[1];
    float *scratch = malloc((size_t)per * sizeof *scratch);
    if (!scratch) st = pg_fail(PG_ERR_MEMORY, "%s: out of memory for one sample of '%s'", path, name);
    for (int64_t k = 0; !st && k < t->shape[0]; k++) {
      memcpy(scratch, t->data + k * per, (size_t)per * sizeof *scratch);
      to_channels_last(scratch, c, per / c, t->data + k * per);
    }
    free(scratch);
    for (int i = 1; i < t->ndim - 1; i++) t->shape[i] = t->shape[i + 1];
    t->shape[t->ndim - 1] = c;
  }
  if (st) pg_tensor_free(t);
  else *out = t;
  return st;
}

const char *pg_latents_describe(const pg_latents_info *in, const char *path, char *buf,
                                size_t cap) {
  /* the stored shape, from the layout */
  int64_t spatial[3] = {in->depth, in->height, in->width}, stored[5];
  const int dims = in->spatial_dims >= 1 && in->spatial_dims <= 3 ? in->spatial_dims : 2;
  const bool first = pg_layout_channels_first(in->layout);
  int k = 0;
  stored[k++] = in->n;
  if (first) stored[k++] = in->channels;
  for (int i = 3 - dims; i < 3; i++) stored[k++] = spatial[i];
  if (!first) stored[k++] = in->channels;
  char s[128], sample[128], how[160];
  pg_h5_shape_str(s, sizeof s, k, stored);
  int64_t last[4]; /* a sample as read: spatial, then channels */
  for (int i = 0; i < dims; i++) last[i] = spatial[3 - dims + i];
  last[dims] = in->channels;
  pg_h5_shape_str(sample, sizeof sample, dims + 1, last);
  read_as(in, how, sizeof how);
  snprintf(buf, cap, "%s: '%s' %s %s %s, samples %s%s; normalisation mean %.6g, std %.6g; values "
           "mean %.4g, std %.4g", path, in->data_key, in->dtype[0] ? in->dtype : "float32", s,
           pg_layout_name(in->layout), sample, how, in->mean, in->std, in->value_mean,
           in->value_std);
  return buf;
}
