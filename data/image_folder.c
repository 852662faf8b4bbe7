#include "patchgrad/data/image_folder.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>

#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/render/png_image.h"

/* stb_image_resize is header-only: its implementation is compiled here, with
 * file scope. Its asserts check arguments validated before every call. */
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_STATIC
#define STBIR_ASSERT(x) ((void)0)
#include <stb_image_resize.h>

#define PATH_CAP 4096
/* PIL's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS): a larger
 * image is a bad file, not an attempt to allocate gigabytes. */
#define MAX_PIXELS 178956970.0
#define MAX_DEPTH 32 /* folders inside a class folder (a symlink loop stops here) */

/* ---- Decoding ---- */

/* libjpeg reports fatal errors through error_exit, which must not return:
 * it jumps back to the decoder with the message kept. Warnings (level -1)
 * about data ending early mean a truncated file: PIL refuses those too. */
typedef struct {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;
} jpeg_errors;

static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_errors *e = (jpeg_errors *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, e->message);
  longjmp(e->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
  jpeg_errors *e = (jpeg_errors *)cinfo->err;
  int code = cinfo->err->msg_code;
  if (level < 0 && !e->truncated && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER)) {
    (*cinfo->err->format_message)(cinfo, e->message);
    e->truncated = true;
  }
}

/* Everything touched after setjmp lives here, not in locals a longjmp could
 * leave stale. */
typedef struct {
  FILE *f;
  struct jpeg_decompress_struct cinfo;
  jpeg_errors err;
  pg_image *im;
} jpeg_job;

static pg_status read_jpeg(jpeg_job *j, const char *path) {
  if (setjmp(j->err.jump))
    return pg_fail(PG_ERR_FORMAT, "%s: not a readable JPEG (libjpeg: %s)", path, j->err.message);
  jpeg_create_decompress(&j->cinfo);
  jpeg_stdio_src(&j->cinfo, j->f);
  jpeg_read_header(&j->cinfo, TRUE);
  J_COLOR_SPACE in = j->cinfo.jpeg_color_space;
  if (in == JCS_CMYK || in == JCS_YCCK)
    return pg_fail(PG_ERR_FORMAT, "%s: a CMYK JPEG (only grayscale and RGB/YCbCr JPEGs are read)",
                   path);
  j->cinfo.out_color_space = j->cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&j->cinfo);
  JDIMENSION w = j->cinfo.output_width, h = j->cinfo.output_height;
  int c = j->cinfo.output_components;
  if ((double)w * (double)h > MAX_PIXELS)
    return pg_fail(PG_ERR_FORMAT, "%s: a JPEG of %u x %u pixels, more than %.0f", path, w, h,
                   MAX_PIXELS);
  j->im = pg_image_new((int)w, (int)h, c);
  if (!j->im) return pg_fail(PG_ERR_MEMORY, "%s: out of memory for a %u x %u image", path, w, h);
  while (j->cinfo.output_scanline < h) {
    JSAMPROW row = j->im->pixels + (size_t)j->cinfo.output_scanline * w * (size_t)c;
    jpeg_read_scanlines(&j->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&j->cinfo);
  if (j->err.truncated)
    return pg_fail(PG_ERR_FORMAT, "%s: corrupt or truncated JPEG (libjpeg: %s)", path,
                   j->err.message);
  return PG_OK;
}

static pg_image *jpeg_read(const char *path) {
  jpeg_job j;
  memset(&j, 0, sizeof j);
  j.f = fopen(path, "rb");
  if (!j.f) {
    pg_fail(PG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  j.cinfo.err = jpeg_std_error(&j.err.mgr);
  j.err.mgr.error_exit = jpeg_on_error;
  j.err.mgr.emit_message = jpeg_on_message;
  pg_status st = read_jpeg(&j, path);
  jpeg_destroy_decompress(&j.cinfo);
  fclose(j.f);
  if (st) {
    pg_image_free(j.im);
    return NULL;
  }
  return j.im;
}

/* PNG or JPEG by the first bytes; anything else is named with them. */
static pg_image *decode(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    pg_fail(PG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  uint8_t head[24]; /* a PNG's signature and the size in its first chunk, IHDR */
  size_t got = fread(head, 1, sizeof head, f);
  fclose(f);
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (got >= 8 && !memcmp(head, png_sig, 8)) {
    if (got == 24 && !memcmp(head + 12, "IHDR", 4)) {
      double w = (double)((uint32_t)head[16] << 24 | (uint32_t)head[17] << 16 |
                          (uint32_t)head[18] << 8 | head[19]);
      double h = (double)((uint32_t)head[20] << 24 | (uint32_t)head[21] << 16 |
                          (uint32_t)head[22] << 8 | head[23]);
      if (w * h > MAX_PIXELS) {
        pg_fail(PG_ERR_FORMAT, "%s: a PNG of %.0f x %.0f pixels, more than %.0f", path, w, h,
                MAX_PIXELS);
        return NULL;
      }
    }
    return pg_png_read(path);
  }
  if (got >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff) return jpeg_read(path);
  if (got == 0) {
    pg_fail(PG_ERR_FORMAT, "%s: not an image (empty file)", path);
    return NULL;
  }
  char hex[16] = "";
  for (size_t k = 0, len = 0; k < got && k < 4; k++)
    len += (size_t)snprintf(hex + len, sizeof hex - len, "%s%02x", k ? " " : "", head[k]);
  pg_fail(PG_ERR_FORMAT, "%s: not a PNG or JPEG image (it starts with bytes %s)", path, hex);
  return NULL;
}

/* ---- Resizing ---- */

/* Python's round() of d / 2 for d >= 0: halves go to the even neighbour. */
static int64_t half_round_even(int64_t d) {
  int64_t q = d / 2;
  return (d % 2 && q % 2) ? q + 1 : q;
}

/* im (gray or RGB) converted to c channels in place of a new buffer. */
static uint8_t *convert_channels(const pg_image *im, int64_t c) {
  size_t n = (size_t)im->width * (size_t)im->height;
  uint8_t *out = malloc(n * (size_t)c);
  if (!out) return NULL;
  const uint8_t *p = im->pixels;
  if (im->channels == c) memcpy(out, p, n * (size_t)c);
  else if (c == 3)
    for (size_t i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = p[i];
  else
    for (size_t i = 0; i < n; i++) /* PIL's convert("L"), ITU-R 601-2 luma */
      out[i] = (uint8_t)((19595u * p[3 * i] + 38470u * p[3 * i + 1] + 7471u * p[3 * i + 2] +
                          0x8000u) >> 16);
  return out;
}

pg_status pg_image_file_load(const char *path, int64_t size, int64_t channels, uint8_t *out) {
  if (size < 1 || size > PG_IMAGE_MAX_SIZE || (channels != 1 && channels != 3))
    return pg_fail(PG_ERR_ARG, "pg_image_file_load: size %lld (1..%d) and channels %lld (1 or 3)",
                   (long long)size, PG_IMAGE_MAX_SIZE, (long long)channels);
  pg_image *im = decode(path);
  if (!im) return pg_last_status();
  int64_t w = im->width, h = im->height, S = size;
  uint8_t *px = convert_channels(im, channels);
  pg_image_free(im);
  if (!px) return pg_fail(PG_ERR_MEMORY, "%s: out of memory for a %lld x %lld image", path,
                          (long long)w, (long long)h);
  /* Resize(S): the shorter side becomes S, the other int(S * long / short). */
  int64_t rw = w <= h ? S : (int64_t)((double)S * (double)w / (double)h);
  int64_t rh = w <= h ? (int64_t)((double)S * (double)h / (double)w) : S;
  if (rw < S) rw = S; /* guards the float division; int() of an exact S stays S */
  if (rh < S) rh = S;
  /* CenterCrop(S): offsets in the resized image. */
  int64_t left = half_round_even(rw - S), top = half_round_even(rh - S);
  pg_status st = PG_OK;
  if (rw == w && rh == h) {
    for (int64_t y = 0; y < S; y++)
      memcpy(out + y * S * channels, px + ((top + y) * w + left) * channels, (size_t)(S * channels));
  } else {
    /* The crop window mapped back to the source, resized in one step (the
     * same scale as resizing the whole image to rw x rh, then cropping). */
    float s0 = (float)left / (float)rw, s1 = (float)(left + S) / (float)rw;
    float t0 = (float)top / (float)rh, t1 = (float)(top + S) / (float)rh;
    if (!stbir_resize_region(px, (int)w, (int)h, 0, out, (int)S, (int)S, 0, STBIR_TYPE_UINT8,
                             (int)channels, STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                             STBIR_EDGE_CLAMP, STBIR_FILTER_DEFAULT, STBIR_FILTER_DEFAULT,
                             STBIR_COLORSPACE_LINEAR, NULL, s0, t0, s1, t1))
      st = pg_fail(PG_ERR_MEMORY, "%s: out of memory resizing %lld x %lld to %lld x %lld", path,
                   (long long)w, (long long)h, (long long)rw, (long long)rh);
  }
  free(px);
  return st;
}

/* ---- Listing the folder ---- */

typedef struct {
  char *path;      /* DIR/<class>/.../<name> */
  size_t dir_len;  /* path[0..dir_len) is its folder */
  int64_t label;
  bool good;
} entry;

typedef struct {
  const char *dir;
  char **classes;  /* [n_classes], sorted */
  int64_t n_classes;
  entry *files;    /* grouped by class, each class in torchvision's order */
  int64_t n_files, cap_files;
} listing;

static void listing_free(listing *l) {
  for (int64_t i = 0; i < l->n_classes; i++) free(l->classes[i]);
  free(l->classes);
  for (int64_t i = 0; i < l->n_files; i++) free(l->files[i].path);
  free(l->files);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* os.walk sorted: by folder path, then by name within a folder. */
static int cmp_entries(const void *a, const void *b) {
  const entry *x = a, *y = b;
  size_t n = x->dir_len < y->dir_len ? x->dir_len : y->dir_len;
  int c = memcmp(x->path, y->path, n);
  if (c) return c;
  if (x->dir_len != y->dir_len) return x->dir_len < y->dir_len ? -1 : 1;
  return strcmp(x->path + x->dir_len, y->path + y->dir_len);
}

/* The names in folder `path` not starting with '.', sorted. */
static pg_status read_names(const char *path, char ***names, int64_t *count) {
  *names = NULL;
  *count = 0;
  DIR *d = opendir(path);
  if (!d) return pg_fail(PG_ERR_IO, "images: cannot read the folder %s: %s", path, strerror(errno));
  int64_t cap = 0;
  pg_status st = PG_OK;
  struct dirent *e;
  while (!st && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (*count == cap) {
      cap = cap ? 2 * cap : 64;
      char **grown = realloc(*names, (size_t)cap * sizeof *grown);
      if (!grown) {
        st = pg_fail(PG_ERR_MEMORY, "images: out of memory listing %s", path);
        break;
      }
      *names = grown;
    }
    if (!((*names)[*count] = strdup(e->d_name)))
      st = pg_fail(PG_ERR_MEMORY, "images: out of memory listing %s", path);
    else (*count)++;
  }
  closedir(d);
  if (!st && *count) qsort(*names, (size_t)*count, sizeof **names, cmp_names);
  return st;
}

static void free_names(char **names, int64_t count) {
  for (int64_t i = 0; i < count; i++) free(names[i]);
  free(names);
}

static pg_status join(char *buf, const char *a, const char *b) {
  if (snprintf(buf, PATH_CAP, "%s/%s", a, b) >= PATH_CAP)
    return pg_fail(PG_ERR_ARG, "images: path %s/%s is longer than %d bytes", a, b, PATH_CAP - 1);
  return PG_OK;
}

static pg_status add_file(listing *l, const char *path, int64_t label) {
  if (l->n_files == l->cap_files) {
    int64_t cap = l->cap_files ? 2 * l->cap_files : 256;
    entry *grown = realloc(l->files, (size_t)cap * sizeof *grown);
    if (!grown) return pg_fail(PG_ERR_MEMORY, "images: out of memory for %lld files", (long long)cap);
    l->files = grown;
    l->cap_files = cap;
  }
  entry *e = &l->files[l->n_files];
  if (!(e->path = strdup(path))) return pg_fail(PG_ERR_MEMORY, "images: out of memory");
  e->dir_len = (size_t)(strrchr(e->path, '/') - e->path) + 1;
  e->label = label;
  e->good = false;
  l->n_files++;
  return PG_OK;
}

/* Every regular file under folder `path` (following links, as os.walk with
 * followlinks=True does). */
static pg_status walk(listing *l, const char *path, int64_t label, int depth) {
  if (depth > MAX_DEPTH)
    return pg_fail(PG_ERR_FORMAT, "images: %s is %d folders deep inside its class folder (a "
                                  "symbolic link loop?)", path, MAX_DEPTH);
  char **names;
  int64_t n;
  pg_status st = read_names(path, &names, &n);
  char child[PATH_CAP];
  for (int64_t i = 0; !st && i < n; i++) {
    struct stat sb;
    if ((st = join(child, path, names[i]))) break;
    if (stat(child, &sb)) st = pg_fail(PG_ERR_IO, "images: cannot read %s: %s", child, strerror(errno));
    else if (S_ISDIR(sb.st_mode)) st = walk(l, child, label, depth + 1);
    else if (S_ISREG(sb.st_mode)) st = add_file(l, child, label);
  }
  free_names(names, n);
  return st;
}

static pg_status list_folder(const char *dir, listing *l) {
  memset(l, 0, sizeof *l);
  l->dir = dir;
  char **names;
  int64_t n;
  if (read_names(dir, &names, &n)) return pg_last_status();
  pg_status st = PG_OK;
  char path[PATH_CAP];
  int64_t loose = 0; /* files directly in dir, ignored */
  l->classes = calloc((size_t)(n ? n : 1), sizeof *l->classes);
  if (!l->classes) st = pg_fail(PG_ERR_MEMORY, "images: out of memory");
  for (int64_t i = 0; !st && i < n; i++) {
    struct stat sb;
    if ((st = join(path, dir, names[i]))) break;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
      l->classes[l->n_classes++] = names[i];
      names[i] = NULL;
    } else {
      loose++;
    }
  }
  free_names(names, n);
  if (!st && l->n_classes == 0)
    st = pg_fail(PG_ERR_FORMAT, "images: %s has no class sub-folders (%lld other entries): "
                                "expected %s/<class>/<image files>, torchvision's ImageFolder "
                                "layout", dir, (long long)loose, dir);
  for (int64_t k = 0; !st && k < l->n_classes; k++) {
    int64_t before = l->n_files;
    if ((st = join(path, dir, l->classes[k])) || (st = walk(l, path, k, 0))) break;
    if (l->n_files == before)
      st = pg_fail(PG_ERR_FORMAT, "images: class '%s' (folder %s) has no files", l->classes[k], path);
    else
      qsort(l->files + before, (size_t)(l->n_files - before), sizeof *l->files, cmp_entries);
  }
  return st;
}

/* ---- Statistics ---- */

/* Population mean and std of the pixel values v / 255 counted in hist. */
static void histogram_stats(const int64_t hist[256], double *mean, double *std) {
  double total = 0, sum = 0;
  for (int v = 0; v < 256; v++) {
    total += (double)hist[v];
    sum += (double)hist[v] * (v / 255.0);
  }
  double m = sum / total, var = 0;
  for (int v = 0; v < 256; v++) var += (double)hist[v] * (v / 255.0 - m) * (v / 255.0 - m);
  *mean = m;
  *std = sqrt(var / total);
}

/* The /classes strings of a latent file: 1 with *names set, 0 when absent. */
static int read_string_list(hid_t file, const char *name, char ***names, int64_t *count) {
  if (!pg_h5_exists(file, name)) return 0;
  hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
  hid_t space = d < 0 ? -1 : H5Dget_space(d);
  hid_t type = d < 0 ? -1 : H5Dget_type(d);
  int rc = -1;
  hsize_t n = 0;
  if (space >= 0 && type >= 0 && H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) > 0 &&
      H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, &n, NULL) == 1) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(type));
    *names = calloc((size_t)n + 1, sizeof **names);
    if (*names && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, *names) >= 0) {
      *count = (int64_t)n;
      rc = 1;
    }
    H5Tclose(mt);
  }
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  if (d >= 0) H5Dclose(d);
  if (rc < 0) pg_fail(PG_ERR_FORMAT, "dataset '%s' is not a 1-D list of strings", name);
  return rc;
}

static void free_string_list(char **names, int64_t count) {
  if (!names) return;
  for (int64_t i = 0; i < count; i++) H5free_memory(names[i]);
  free(names);
}

/* mean and std of o->stats_from, after checking it was made like this folder. */
static pg_status stats_from_file(const pg_image_folder_opts *o, const listing *l, double *mean,
                                 double *std) {
  const char *p = o->stats_from;
  pg_latents *ds = pg_latents_open(p);
  if (!ds) return pg_last_status();
  const pg_latents_info *in = &ds->info;
  int64_t f = o->space_to_depth, side = (o->size + 2 * o->pad) / f;
  pg_status st = PG_OK;
  if (in->pad != o->pad || in->space_to_depth != f || in->height != side || in->width != side ||
      in->channels != o->channels * f * f)
    st = pg_fail(PG_ERR_ARG, "images: --stats-from %s holds latents [%lld, %lld, %lld] with pad "
                             "%lld and space_to_depth %lld; this folder makes [%lld, %lld, %lld] "
                             "with pad %lld and space_to_depth %lld (use the same --size, "
                             "--channels, --pad and --space-to-depth)", p,
                 (long long)in->height, (long long)in->width, (long long)in->channels,
                 (long long)in->pad, (long long)in->space_to_depth, (long long)side,
                 (long long)side, (long long)(o->channels * f * f), (long long)o->pad, (long long)f);
  char **names = NULL;
  int64_t n = 0;
  int rc = st ? 0 : read_string_list(ds->file, "classes", &names, &n);
  if (rc < 0) st = pg_error_prefix(p);
  if (!st && rc == 1) {
    for (int64_t k = 0; !st && k < n && k < l->n_classes; k++)
      if (strcmp(names[k], l->classes[k]))
        st = pg_fail(PG_ERR_ARG, "images: class %lld is '%s' in --stats-from %s but '%s' in %s "
                                 "(the labels would not mean the same classes)", (long long)k,
                     names[k], p, l->classes[k], l->dir);
    if (!st && n != l->n_classes)
      st = pg_fail(PG_ERR_ARG, "images: --stats-from %s has %lld classes, %s has %lld", p,
                   (long long)n, l->dir, (long long)l->n_classes);
  } else if (!st && in->num_classes != l->n_classes) {
    st = pg_fail(PG_ERR_ARG, "images: --stats-from %s has %lld classes, %s has %lld", p,
                 (long long)in->num_classes, l->dir, (long long)l->n_classes);
  }
  free_string_list(names, n);
  *mean = in->mean;
  *std = in->std;
  pg_latents_close(ds);
  return st;
}

/* ---- Writing ---- */

static pg_status write_strings(hid_t file, const char *name, int64_t n, const char *const *s,
                               const char *description) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hsize_t dims[1] = {(hsize_t)n};
  hid_t space = H5Screate_simple(1, dims, NULL);
  hid_t d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  pg_status st = PG_OK;
  if (d < 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0)
    st = pg_fail(PG_ERR_IO, "cannot write dataset '%s' (%lld strings)", name, (long long)n);
  if (!st) st = pg_h5_set_attr_string(d, "description", description);
  if (d >= 0) H5Dclose(d);
  H5Sclose(space);
  H5Tclose(type);
  return st;
}

/* "0 cat, 1 dog, ..." cut at a name when it does not fit in cap bytes. */
static void class_names_attr(const listing *l, char *buf, size_t cap) {
  char tail[96];
  snprintf(tail, sizeof tail, "... (%lld classes: see /classes)", (long long)l->n_classes);
  size_t len = 0;
  buf[0] = '\0';
  for (int64_t k = 0; k < l->n_classes; k++) {
    char item[PATH_CAP];
    int n = snprintf(item, sizeof item, "%s%lld %s", k ? ", " : "", (long long)k, l->classes[k]);
    bool last = k == l->n_classes - 1;
    /* room for this item, and for the tail after it unless it is the last */
    if (len + (size_t)n + (last ? 0 : strlen(tail) + 2) >= cap) {
      snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", tail);
      return;
    }
    memcpy(buf + len, item, (size_t)n + 1);
    len += (size_t)n;
  }
}

/* The latent file written by pg_latents_finish to `staged`, read back into
 * memory, given /classes and /files, and written to out_path atomically. */
static pg_status add_lists(const char *staged, const char *out_path, const listing *l,
                           int64_t n_good) {
  pg_h5_quiet();
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, (size_t)16 << 20, false); /* in memory; the staged file is not changed */
  hid_t file = H5Fopen(staged, H5F_ACC_RDWR, fapl);
  H5Pclose(fapl);
  unlink(staged);
  if (file < 0) return pg_fail(PG_ERR_IO, "%s: cannot read back the staged file %s", out_path, staged);
  const char **rel = malloc((size_t)n_good * sizeof *rel);
  if (!rel) {
    H5Fclose(file);
    return pg_fail(PG_ERR_MEMORY, "%s: out of memory", out_path);
  }
  size_t skip = strlen(l->dir) + 1;
  int64_t k = 0;
  for (int64_t i = 0; i < l->n_files; i++)
    if (l->files[i].good) rel[k++] = l->files[i].path + skip;
  pg_status st = write_strings(file, "classes", l->n_classes, (const char *const *)l->classes,
                               "class names, index = label (the sorted sub-folder names)");
  if (!st) st = write_strings(file, "files", n_good, rel, "each sample's image file, relative "
                                                           "to the folder the dataset was made from");
  free(rel);
  if (st) {
    H5Fclose(file);
    return pg_error_prefix(out_path);
  }
  return pg_h5_commit_image(file, out_path);
}

void pg_image_folder_opts_init(pg_image_folder_opts *o) {
  memset(o, 0, sizeof *o);
  o->channels = 3;
  o->space_to_depth = 2;
  o->on_bad = PG_IMAGE_BAD_FAIL;
  o->split = "train";
  o->cache_bytes = (int64_t)1 << 30;
}

static pg_status check_opts(const pg_image_folder_opts *o) {
  if (o->size < 1 || o->size > PG_IMAGE_MAX_SIZE)
    return pg_fail(PG_ERR_ARG, "images: --size %lld (expected 1..%d)", (long long)o->size,
                   PG_IMAGE_MAX_SIZE);
  if (o->channels != 1 && o->channels != 3)
    return pg_fail(PG_ERR_ARG, "images: --channels %lld (expected 1 for gray or 3 for RGB)",
                   (long long)o->channels);
  if (o->pad < 0 || o->pad > PG_IMAGE_MAX_SIZE || o->space_to_depth < 1 ||
      (o->size + 2 * o->pad) % o->space_to_depth)
    return pg_fail(PG_ERR_ARG, "images: --size %lld plus twice --pad %lld is %lld, which "
                               "--space-to-depth %lld must divide (pad >= 0, factor >= 1)",
                   (long long)o->size, (long long)o->pad, (long long)(o->size + 2 * o->pad),
                   (long long)o->space_to_depth);
  if (o->on_bad != PG_IMAGE_BAD_FAIL && o->on_bad != PG_IMAGE_BAD_SKIP)
    return pg_fail(PG_ERR_ARG, "images: on_bad %d (expected fail or skip)", (int)o->on_bad);
  return PG_OK;
}

/* The first pass: each file decoded, counted in hist, kept in cache when
 * there is one; bad files refused or skipped. */
static pg_status first_pass(listing *l, const pg_image_folder_opts *o, uint8_t *cache,
                            int64_t hist[256], int64_t *n_good) {
  int64_t per = o->size * o->size * o->channels;
  uint8_t *img = malloc((size_t)per);
  if (!img) return pg_fail(PG_ERR_MEMORY, "images: out of memory for one image");
  int64_t *per_class = calloc((size_t)l->n_classes, sizeof *per_class);
  pg_status st = per_class ? PG_OK : pg_fail(PG_ERR_MEMORY, "images: out of memory");
  *n_good = 0;
  for (int64_t i = 0; !st && i < l->n_files; i++) {
    entry *e = &l->files[i];
    uint8_t *dst = cache ? cache + *n_good * per : img;
    pg_status bad = pg_image_file_load(e->path, o->size, o->channels, dst);
    if (bad == PG_ERR_MEMORY || (bad && o->on_bad == PG_IMAGE_BAD_FAIL)) {
      st = bad;
      if (bad != PG_ERR_MEMORY) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pg_last_error());
        pg_fail(bad, "images: %s (a bad file stops the run; --on-bad skip leaves such files out)",
                msg);
      }
    } else if (bad) {
      if (o->on_skip) o->on_skip(o->on_skip_ctx, e->path, pg_last_error());
    } else {
      e->good = true;
      for (int64_t k = 0; k < per; k++) hist[dst[k]]++;
      per_class[e->label]++;
      (*n_good)++;
    }
  }
  for (int64_t k = 0; !st && k < l->n_classes; k++)
    if (per_class[k] == 0)
      st = pg_fail(PG_ERR_FORMAT, "images: class '%s' (folder %s/%s) has no readable image: "
                                  "every file was skipped", l->classes[k], l->dir, l->classes[k]);
  free(per_class);
  free(img);
  return st;
}

pg_status pg_make_image_folder(const char *dir, const pg_image_folder_opts *o,
                               const char *out_path, pg_image_folder_result *res) {
  if (check_opts(o)) return pg_last_status();
  listing l;
  pg_status st = list_folder(dir, &l);
  double mean = 0, std = 1;
  if (!st && o->stats_from) st = stats_from_file(o, &l, &mean, &std);

  const int64_t S = o->size, C = o->channels, f = o->space_to_depth, P = S + 2 * o->pad;
  const int64_t per = S * S * C;
  uint8_t *cache = NULL;
  if (!st && o->cache_bytes > 0 && l.n_files <= o->cache_bytes / per)
    cache = malloc((size_t)(l.n_files * per)); /* NULL: decode twice instead */
  int64_t hist[256] = {0}, n_good = 0;
  if (!st) st = first_pass(&l, o, cache, hist, &n_good);
  if (!st && !o->stats_from) {
    hist[0] += n_good * (P * P - S * S) * C; /* the padding */
    histogram_stats(hist, &mean, &std);
    if (!(std > 0))
      st = pg_fail(PG_ERR_FORMAT, "images: every pixel of the %lld images in %s has the value "
                                  "%g: std 0 cannot normalise them", (long long)n_good, dir, mean);
  }

  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = n_good;
  info.height = info.width = P / f;
  info.channels = C * f * f;
  info.has_labels = true;
  info.num_classes = l.n_classes;
  info.mean = mean;
  info.std = std;
  info.pad = o->pad;
  info.space_to_depth = f;
  snprintf(info.source, sizeof info.source, "images");
  snprintf(info.split, sizeof info.split, "%s", o->split ? o->split : "");
  if (!st) class_names_attr(&l, info.class_names, sizeof info.class_names);
  snprintf(info.description, sizeof info.description,
           "images of %s: %lld files in %lld classes (%lld bad files skipped), shorter side "
           "resized to %lld (stb_image_resize), centre-cropped to %lldx%lld, %s, padded with "
           "%lld zero pixels per side, scaled to [0, 1], pixel_unshuffle(%lld) to "
           "%lldx%lldx%lld, then (x - mean) / std with the mean and std of %s",
           dir, (long long)n_good, (long long)l.n_classes, (long long)(l.n_files - n_good),
           (long long)S, (long long)S, (long long)S, C == 1 ? "gray" : "RGB", (long long)o->pad,
           (long long)f, (long long)info.height, (long long)info.width, (long long)info.channels,
           o->stats_from ? o->stats_from : "these images");

  /* The second pass, in blocks; written to a staged file first, which
   * add_lists completes and writes to out_path. */
  char staged[PATH_CAP + 16];
  if (!st && snprintf(staged, sizeof staged, "%s.staged", out_path) >= (int)sizeof staged)
    st = pg_fail(PG_ERR_ARG, "images: output path %s is too long", out_path);
  enum { BLOCK = 256 };
  const int64_t lper = info.height * info.width * info.channels;
  float *buf = st ? NULL : malloc((size_t)(BLOCK * lper) * sizeof *buf);
  uint8_t *img = st || cache ? NULL : malloc((size_t)per);
  if (!st && (!buf || (!cache && !img))) st = pg_fail(PG_ERR_MEMORY, "images: out of memory");
  pg_latents_writer *w = st ? NULL : pg_latents_create(staged, &info);
  if (!st && !w) st = pg_last_status();
  pg_latent_transform tf = {o->pad, f, mean, std};
  int64_t labels[BLOCK], m = 0, k = 0;
  for (int64_t i = 0; !st && i < l.n_files; i++) {
    if (!l.files[i].good) continue;
    const uint8_t *src = cache ? cache + k * per : img;
    if (!cache && pg_image_file_load(l.files[i].path, S, C, img)) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", pg_last_error());
      st = pg_fail(PG_ERR_IO, "images: %s (it was read in the first pass: did it change?)", msg);
      break;
    }
    st = pg_image_to_latent(&tf, src, S, S, C, buf + m * lper);
    labels[m++] = l.files[i].label;
    k++;
    if (!st && (m == BLOCK || k == n_good)) {
      st = pg_latents_append(w, m, buf, labels);
      m = 0;
    }
  }
  if (w && st) pg_latents_abort(w);
  else if (w) st = pg_latents_finish(w);
  if (w && !st) st = add_lists(staged, out_path, &l, n_good);
  if (w && st) unlink(staged); /* gone already unless the failure came before */
  if (!st && res) *res = (pg_image_folder_result){n_good, l.n_files - n_good, l.n_classes, mean, std};
  free(img);
  free(buf);
  free(cache);
  listing_free(&l);
  return st;
}
