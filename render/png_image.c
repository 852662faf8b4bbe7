#include "patchgrad/render/png_image.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/io/atomic.h"

pg_image *pg_image_new(int width, int height, int channels) {
  if (width < 1 || height < 1 || width > 65536 || height > 65536 ||
      (channels != 1 && channels != 3)) {
    pg_fail(PG_ERR_ARG, "pg_image_new: %d x %d with %d channels (sizes 1..65536, channels 1 or 3)",
            width, height, channels);
    return NULL;
  }
  pg_image *im = malloc(sizeof *im);
  uint8_t *px = calloc((size_t)width * (size_t)height * (size_t)channels, 1);
  if (!im || !px) {
    free(im);
    free(px);
    pg_fail(PG_ERR_MEMORY, "pg_image_new: out of memory for %d x %d", width, height);
    return NULL;
  }
  *im = (pg_image){width, height, channels, px};
  return im;
}

void pg_image_free(pg_image *im) {
  if (!im) return;
  free(im->pixels);
  free(im);
}

pg_image *pg_image_grid(int n, const pg_image *const *tiles, int cols, int pad,
                        uint8_t background) {
  if (n < 1 || cols < 1 || pad < 0) {
    pg_fail(PG_ERR_ARG, "pg_image_grid: %d tiles, %d columns, pad %d (need >= 1, >= 1, >= 0)", n,
            cols, pad);
    return NULL;
  }
  int tw = tiles[0]->width, th = tiles[0]->height, c = tiles[0]->channels;
  for (int i = 1; i < n; i++)
    if (tiles[i]->width != tw || tiles[i]->height != th || tiles[i]->channels != c) {
      pg_fail(PG_ERR_ARG, "pg_image_grid: tile %d is %d x %d x %d, tile 0 is %d x %d x %d", i,
              tiles[i]->width, tiles[i]->height, tiles[i]->channels, tw, th, c);
      return NULL;
    }
  if (cols > n) cols = n;
  int rows = (n + cols - 1) / cols;
  int64_t gw = pad + (int64_t)cols * (tw + pad), gh = pad + (int64_t)rows * (th + pad);
  if (gw > 65536 || gh > 65536) {
    pg_fail(PG_ERR_ARG, "pg_image_grid: %d tiles of %d x %d, %d a row, make a %lld x %lld image "
            "(at most 65536 a side)", n, tw, th, cols, (long long)gw, (long long)gh);
    return NULL;
  }
  pg_image *g = pg_image_new((int)gw, (int)gh, c);
  if (!g) return NULL;
  memset(g->pixels, background, (size_t)g->width * (size_t)g->height * (size_t)c);
  for (int i = 0; i < n; i++) {
    int x0 = pad + (i % cols) * (tw + pad), y0 = pad + (i / cols) * (th + pad);
    for (int y = 0; y < th; y++)
      memcpy(g->pixels + ((size_t)(y0 + y) * (size_t)g->width + (size_t)x0) * (size_t)c,
             tiles[i]->pixels + (size_t)y * (size_t)tw * (size_t)c, (size_t)tw * (size_t)c);
  }
  return g;
}

pg_image *pg_image_zoom(const pg_image *im, int k) {
  if (k < 1 || (int64_t)im->width * k > 65536 || (int64_t)im->height * k > 65536) {
    pg_fail(PG_ERR_ARG, "pg_image_zoom: a %d x %d image zoomed %d times (need a zoom >= 1 and at "
            "most 65536 pixels a side)", im->width, im->height, k);
    return NULL;
  }
  pg_image *z = pg_image_new(im->width * k, im->height * k, im->channels);
  if (!z) return NULL;
  const size_t c = (size_t)im->channels;
  for (int y = 0; y < z->height; y++) {
    const uint8_t *src = im->pixels + (size_t)(y / k) * (size_t)im->width * c;
    uint8_t *dst = z->pixels + (size_t)y * (size_t)z->width * c;
    for (int x = 0; x < z->width; x++) memcpy(dst + (size_t)x * c, src + (size_t)(x / k) * c, c);
  }
  return z;
}

/* libpng reports errors by longjmp; its message is kept for ours. */
static void on_png_error(png_structp png, png_const_charp msg) {
  pg_fail(PG_ERR_IO, "libpng: %s", msg);
  png_longjmp(png, 1);
}
static void on_png_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

/* Everything touched after setjmp lives in this struct (not in locals that
 * a longjmp could leave stale). */
typedef struct {
  FILE *f;
  png_structp png;
  png_infop info;
  png_bytep *rows;
  pg_image *im;
  int write_errno; /* the system's reason when a write failed */
} png_job;

/* libpng's own writer says only "Write Error": this one keeps errno. */
static void write_bytes(png_structp png, png_bytep data, size_t n) {
  png_job *j = png_get_io_ptr(png);
  if (fwrite(data, 1, n, j->f) != n) {
    j->write_errno = errno ? errno : EIO;
    png_error(png, strerror(j->write_errno));
  }
}

static void flush_bytes(png_structp png) {
  png_job *j = png_get_io_ptr(png);
  if (fflush(j->f) != 0) {
    j->write_errno = errno ? errno : EIO;
    png_error(png, strerror(j->write_errno));
  }
}

static pg_status write_png(png_job *j, const pg_image *im) {
  if (setjmp(png_jmpbuf(j->png))) return PG_ERR_IO;
  png_set_write_fn(j->png, j, write_bytes, flush_bytes);
  png_set_IHDR(j->png, j->info, (png_uint_32)im->width, (png_uint_32)im->height, 8,
               im->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(j->png, j->info);
  for (int y = 0; y < im->height; y++)
    png_write_row(j->png, im->pixels + (size_t)y * (size_t)im->width * (size_t)im->channels);
  png_write_end(j->png, NULL);
  return PG_OK;
}

pg_status pg_png_write(const char *path, const pg_image *im) {
  if (!im || im->width < 1 || im->height < 1 || (im->channels != 1 && im->channels != 3))
    return pg_fail(PG_ERR_ARG, "%s: image must have positive size and 1 or 3 channels", path);
  char tmp[PG_ATOMIC_PATH_CAP];
  if (pg_atomic_begin(path, tmp, sizeof tmp)) return pg_last_status();
  png_job j = {0};
  j.f = fopen(tmp, "wb");
  if (!j.f) return pg_fail(PG_ERR_IO, "%s: cannot create the file: %s", path, strerror(errno));
  j.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, on_png_error, on_png_warning);
  j.info = j.png ? png_create_info_struct(j.png) : NULL;
  pg_status st = j.info ? write_png(&j, im) : pg_fail(PG_ERR_MEMORY, "libpng: out of memory");
  png_destroy_write_struct(&j.png, &j.info);
  errno = 0;
  if (fclose(j.f) != 0 && !st) {
    j.write_errno = errno ? errno : EIO;
    st = PG_ERR_IO;
  }
  if (st) {
    pg_atomic_discard(tmp);
    if (j.write_errno)
      return pg_fail(st, "%s: writing failed: %s (the previous file is unchanged)", path, strerror(j.write_errno));
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pg_last_error());
    return pg_fail(st, "%s: %s", path, msg);
  }
  return pg_atomic_commit(tmp, path);
}

static pg_status read_png(png_job *j) {
  if (setjmp(png_jmpbuf(j->png))) return PG_ERR_FORMAT;
  png_init_io(j->png, j->f);
  png_read_info(j->png, j->info);
  png_uint_32 w = png_get_image_width(j->png, j->info), h = png_get_image_height(j->png, j->info);
  int type = png_get_color_type(j->png, j->info);
  /* normalise every PNG flavour to 8-bit gray or RGB */
  png_set_strip_16(j->png);
  png_set_packing(j->png);
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(j->png);
  if (type == PNG_COLOR_TYPE_GRAY) png_set_expand_gray_1_2_4_to_8(j->png);
  png_set_strip_alpha(j->png);
  png_read_update_info(j->png, j->info);
  int channels = png_get_channels(j->png, j->info);
  if (channels != 1 && channels != 3)
    return pg_fail(PG_ERR_FORMAT, "unsupported PNG layout (%d channels)", channels);
  j->im = pg_image_new((int)w, (int)h, channels);
  j->rows = j->im ? malloc(h * sizeof *j->rows) : NULL;
  if (!j->rows) return pg_fail(PG_ERR_MEMORY, "out of memory for a %u x %u image", w, h);
  for (png_uint_32 y = 0; y < h; y++) j->rows[y] = j->im->pixels + (size_t)y * w * (size_t)channels;
  png_read_image(j->png, j->rows);
  png_read_end(j->png, NULL);
  return PG_OK;
}

pg_image *pg_png_read(const char *path) {
  png_job j = {0};
  if (pg_check_regular_file(path)) return NULL;
  j.f = fopen(path, "rb");
  if (!j.f) {
    pg_fail(PG_ERR_IO, "%s: cannot open (no such file, or not readable)", path);
    return NULL;
  }
  uint8_t sig[8];
  pg_status st = PG_OK;
  if (fread(sig, 1, 8, j.f) != 8 || png_sig_cmp(sig, 0, 8))
    st = pg_fail(PG_ERR_FORMAT, "not a PNG file");
  if (!st) {
    j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, on_png_error, on_png_warning);
    j.info = j.png ? png_create_info_struct(j.png) : NULL;
    if (!j.info) st = pg_fail(PG_ERR_MEMORY, "libpng: out of memory");
    else {
      png_set_sig_bytes(j.png, 8);
      st = read_png(&j);
    }
    png_destroy_read_struct(&j.png, &j.info, NULL);
  }
  fclose(j.f);
  free(j.rows);
  if (st) {
    pg_image_free(j.im);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pg_last_error());
    pg_fail(st, "%s: %s", path, msg);
    return NULL;
  }
  return j.im;
}
