/* 8-bit images and PNG files (libpng): grayscale or RGB rasters, an image
 * grid with padding (sample sheets), reading back (for tests and tools).
 * Writing is atomic: PATH.tmp, then a rename. */
#ifndef PG_PNG_IMAGE_H
#define PG_PNG_IMAGE_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/error.h"

typedef struct {
  int width, height;
  int channels;     /* 1: gray, 3: RGB */
  uint8_t *pixels;  /* [height][width][channels], row-major */
} pg_image;

/* A black image; NULL with a message on bad sizes or no memory. */
PG_API pg_image *pg_image_new(int width, int height, int channels);
PG_API void pg_image_free(pg_image *im);

/* Tiles of one size and channel count, `cols` per row, `pad` background
 * pixels around and between them. */
PG_API pg_image *pg_image_grid(int n, const pg_image *const *tiles, int cols, int pad,
                        uint8_t background);

/* im magnified k times (each pixel a k x k block: nearest neighbour);
 * NULL with a message when k < 1 or the result passes 65536 a side. */
PG_API pg_image *pg_image_zoom(const pg_image *im, int k);

PG_API pg_status pg_png_write(const char *path, const pg_image *im);
/* Any PNG, converted to 8-bit gray or RGB (alpha dropped, palettes expanded). */
PG_API pg_image *pg_png_read(const char *path);

#endif
