#include "patchgrad/io/latents.h"

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
      pg_h5_set_attr_string(w->dset, "layout", "N, H, W, C: sample, row, column, channel "
                                               "(channels last)")) {
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

static pg_status open_latents_dataset(pg_latents *ds) {
  const char *p = ds->path;
  pg_latents_info *in = &ds->info;
  if (pg_h5_is_external_link(ds->file, "latents"))
    return pg_fail(PG_ERR_FORMAT, "%s: 'latents' is a link to another file (not followed)", p);
  if (!pg_h5_exists(ds->file, "latents"))
    return pg_fail(PG_ERR_FORMAT, "%s: missing dataset 'latents' (a latent dataset holds "
                                  "'latents' [N, H, W, C] and optionally 'labels' [N])", p);
  pg_h5_dtype dt;
  int ndim;
  int64_t shape[PG_MAX_DIMS];
  if (pg_h5_dataset_dtype(ds->file, "latents", p, &dt) ||
      pg_h5_dataset_shape(ds->file, "latents", p, &ndim, shape))
    return pg_last_status();
  if (dt.cls != H5T_FLOAT)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset 'latents' has dtype %s (expected float32)", p,
                   dt.name);
  if (ndim != 4) {
    char s[128];
    return pg_fail(PG_ERR_FORMAT, "%s: dataset 'latents' has rank %d, shape %s (expected rank 4: "
                                  "[N, H, W, C])", p, ndim,
                   pg_h5_shape_str(s, sizeof s, ndim, shape));
  }
  if (shape[0] == 0)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset 'latents' has N = 0 samples", p);
  char s[128];
  pg_h5_shape_str(s, sizeof s, 4, shape);
  if (shape[1] == 0 || shape[2] == 0 || shape[3] == 0)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset 'latents' has an empty sample shape %s", p, s);
  /* Sizes first (a batch holds whole samples, the loader keeps 16 bytes a
   * sample: labels and its order), then that the data is there at all. */
  int64_t per, sample_bytes, index_bytes;
  char what[1300];
  snprintf(what, sizeof what, "%s: dataset 'latents' %s", p, s);
  if (pg_shape_bytes(what, 3, shape + 1, 4, &per, &sample_bytes) ||
      pg_check_memory(what, sample_bytes))
    return pg_last_status();
  snprintf(what, sizeof what, "%s: dataset 'latents' %s (labels and sample order, 16 bytes a "
           "sample)", p, s);
  if (!pg_mul_i64(shape[0], 16, &index_bytes)) index_bytes = INT64_MAX;
  if (pg_check_memory(what, index_bytes)) return pg_last_status();
  in->n = shape[0];
  in->height = shape[1];
  in->width = shape[2];
  in->channels = shape[3];
  ds->sample_numel = per;
  ds->dset = pg_h5_open_dataset(ds->file, "latents", p);
  if (ds->dset < 0) return pg_last_status();
  return pg_h5_check_storage(ds->dset, "latents", p);
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

static pg_status read_labels(pg_latents *ds) {
  const char *p = ds->path;
  pg_latents_info *in = &ds->info;
  in->has_labels = pg_h5_exists(ds->file, "labels");
  if (!in->has_labels) {
    if (in->num_classes > 0)
      return pg_fail(PG_ERR_FORMAT, "%s: attribute num_classes = %lld but there is no dataset "
                                    "'labels'", p, (long long)in->num_classes);
    in->num_classes = 0;
    return PG_OK;
  }
  pg_h5_dtype dt;
  int ndim;
  int64_t shape[PG_MAX_DIMS];
  if (pg_h5_dataset_dtype(ds->file, "labels", p, &dt) ||
      pg_h5_dataset_shape(ds->file, "labels", p, &ndim, shape))
    return pg_last_status();
  if (dt.cls != H5T_INTEGER)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset 'labels' has dtype %s (expected an integer type, "
                                  "int64)", p, dt.name);
  if (ndim != 1)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset 'labels' has rank %d (expected rank 1: [N])", p,
                   ndim);
  if (shape[0] != in->n)
    return pg_fail(PG_ERR_FORMAT, "%s: dataset 'labels' has %lld entries but 'latents' has "
                                  "N = %lld samples", p, (long long)shape[0], (long long)in->n);
  if (pg_h5_read_int64(ds->file, "labels", p, &ds->labels, &ndim, shape)) return pg_last_status();
  /* without the attribute, labels must still leave num_classes = max + 1
   * within the limit (a label near INT64_MAX would overflow it) */
  int64_t limit = in->num_classes >= 0 ? in->num_classes : PG_LATENTS_MAX_CLASSES, max = -1;
  for (int64_t i = 0; i < in->n; i++) {
    int64_t y = ds->labels[i];
    if (y < 0)
      return pg_fail(PG_ERR_FORMAT, "%s: dataset 'labels': labels[%lld] = %lld is negative", p,
                     (long long)i, (long long)y);
    if (y >= limit) {
      if (in->num_classes >= 0)
        return pg_fail(PG_ERR_FORMAT, "%s: dataset 'labels': labels[%lld] = %lld is outside "
                                      "[0, %lld) (attribute num_classes = %lld)", p, (long long)i,
                       (long long)y, (long long)in->num_classes, (long long)in->num_classes);
      return pg_fail(PG_ERR_FORMAT, "%s: dataset 'labels': labels[%lld] = %lld is outside "
                                    "[0, %d) (at most %d classes)", p, (long long)i, (long long)y,
                     PG_LATENTS_MAX_CLASSES, PG_LATENTS_MAX_CLASSES);
    }
    if (y > max) max = y;
  }
  if (in->num_classes < 0) in->num_classes = max + 1;
  return PG_OK;
}

/* Reads the whole dataset block by block (never all of it at once) and
 * names the first sample holding NaN or Inf. */
static pg_status non_finite_error(const pg_latents *ds, int64_t sample, const float *x,
                                  int64_t element) {
  return pg_fail(PG_ERR_FORMAT, "%s: dataset 'latents': sample %lld holds %g at element %lld "
                                "(every value must be finite)", ds->path, (long long)sample,
                 x[element], (long long)element);
}

static pg_status check_finite(pg_latents *ds) {
  int64_t per = ds->sample_numel;
  if (ds->all) { /* already in memory */
    for (int64_t s = 0; s < ds->info.n; s++) {
      int64_t bad = first_non_finite(ds->all + s * per, per);
      if (bad >= 0) return non_finite_error(ds, s, ds->all + s * per, bad);
    }
    return PG_OK;
  }
  int64_t block = (1 << 20) / per; /* about 4 MB per read */
  if (block < 1) block = 1;
  if (block > ds->info.n) block = ds->info.n;
  float *buf = malloc((size_t)(block * per) * sizeof *buf);
  if (!buf) return pg_fail(PG_ERR_MEMORY, "%s: out of memory checking 'latents'", ds->path);
  pg_status st = PG_OK;
  for (int64_t start = 0; !st && start < ds->info.n; start += block) {
    int64_t count = ds->info.n - start < block ? ds->info.n - start : block;
    if (pg_latents_read(ds, start, count, buf)) {
      st = pg_last_status();
      break;
    }
    for (int64_t s = 0; s < count; s++) {
      int64_t bad = first_non_finite(buf + s * per, per);
      if (bad >= 0) {
        st = non_finite_error(ds, start + s, buf + s * per, bad);
        break;
      }
    }
  }
  free(buf);
  return st;
}

static pg_status load_everything(pg_latents *ds) {
  int64_t shape[2] = {ds->info.n, ds->sample_numel}, bytes;
  char what[1200];
  snprintf(what, sizeof what, "%s: reading all of 'latents' into memory (read from disk "
           "instead)", ds->path);
  if (pg_shape_bytes(what, 2, shape, sizeof(float), NULL, &bytes) || pg_check_memory(what, bytes))
    return pg_last_status();
  float *all = malloc((size_t)bytes);
  if (!all)
    return pg_fail(PG_ERR_MEMORY, "%s: out of memory reading all of 'latents' (%lld MB; read "
                                  "from disk instead)", ds->path, (long long)(bytes >> 20));
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

static pg_latents *open_dataset(const char *path, bool load_all) {
  pg_latents *ds = calloc(1, sizeof *ds);
  if (!ds) {
    pg_fail(PG_ERR_MEMORY, "%s: out of memory", path);
    return NULL;
  }
  snprintf(ds->path, sizeof ds->path, "%s", path);
  pg_latents_info_init(&ds->info);
  ds->dset = -1;
  ds->file = pg_h5_open(path, false);
  if (ds->file < 0 || open_latents_dataset(ds) || read_attributes(ds) || read_labels(ds) ||
      (load_all && load_everything(ds)) || check_finite(ds)) {
    pg_latents_close(ds);
    return NULL;
  }
  return ds;
}

pg_latents *pg_latents_open(const char *path) { return open_dataset(path, false); }
pg_latents *pg_latents_load(const char *path) { return open_dataset(path, true); }

void pg_latents_close(pg_latents *ds) {
  if (!ds) return;
  if (ds->dset >= 0) H5Dclose(ds->dset);
  if (ds->file >= 0) H5Fclose(ds->file);
  free(ds->labels);
  free(ds->all);
  free(ds);
}

pg_status pg_latents_read(const pg_latents *ds, int64_t start, int64_t count, float *dst) {
  if (ds->all) {
    if (start < 0 || count < 0 || start + count > ds->info.n)
      return pg_fail(PG_ERR_ARG, "%s: dataset 'latents': rows [%lld, %lld) outside the %lld rows",
                     ds->path, (long long)start, (long long)(start + count), (long long)ds->info.n);
    memcpy(dst, ds->all + start * ds->sample_numel,
           (size_t)(count * ds->sample_numel) * sizeof *dst);
    return PG_OK;
  }
  if (pg_h5_read_rows(ds->dset, start, count, dst)) {
    char where[1100];
    snprintf(where, sizeof where, "%s: dataset 'latents'", ds->path);
    return pg_error_prefix(where);
  }
  return PG_OK;
}
