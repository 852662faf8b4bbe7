/* libFuzzer harness: image files as `latents --source images` reads them
 * (data/image_folder.h's pg_image_file_load: PNG by libpng, JPEG by
 * libjpeg-turbo, chosen by content, then resized and centre-cropped), at
 * two output sizes, gray and RGB. A damaged file must come back as an
 * error, never a crash, a hang or a leak. */
#include "fuzz_util.h"

#include <jpeglib.h>

#include "patchgrad/data/image_folder.h"
#include "patchgrad/render/png_image.h"

/* pixel (y, x, c): distinct along rows and columns */
static uint8_t pattern(int y, int x, int c) { return (uint8_t)((y * 29 + x * 7 + c * 61) % 256); }

static void png_seed(const char *name, int w, int h, int c) {
  pg_image *im = pg_image_new(w, h, c);
  if (!im) exit(1);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int k = 0; k < c; k++) im->pixels[(y * w + x) * c + k] = pattern(y, x, k);
  fuzz_seed_ok(pg_png_write(fuzz_seed_path(name), im), name);
  pg_image_free(im);
}

static void jpeg_seed(const char *name, int w, int h, int c, bool progressive) {
  struct jpeg_compress_struct cinfo;
  struct jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  FILE *f = fopen(fuzz_seed_path(name), "wb");
  if (!f) exit(1);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = (JDIMENSION)w;
  cinfo.image_height = (JDIMENSION)h;
  cinfo.input_components = c;
  cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 90, TRUE);
  if (progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  uint8_t row[64 * 3];
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++)
      for (int k = 0; k < c; k++) row[x * c + k] = pattern(y, x, k);
    JSAMPROW r = row;
    jpeg_write_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  if (fclose(f)) exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  if (fuzz_seed_dir()) {
    png_seed("rgb.png", 12, 8, 3);
    png_seed("gray.png", 9, 9, 1);
    jpeg_seed("rgb.jpg", 16, 12, 3, false);
    jpeg_seed("gray.jpg", 8, 8, 1, false);
    jpeg_seed("progressive.jpg", 24, 16, 3, true);
    exit(0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_input_file(data, size, ".img");
  if (!path) return 0;
  static uint8_t out[16 * 16 * 3];
  const struct {
    int64_t size, channels;
  } asks[] = {{16, 3}, {5, 1}};
  for (size_t i = 0; i < sizeof asks / sizeof *asks; i++) {
    pg_status st = pg_image_file_load(path, asks[i].size, asks[i].channels, out);
    /* refused: with a message naming the file */
    if (st && !strstr(pg_last_error(), path) && st != PG_ERR_MEMORY) abort();
  }
  return 0;
}
