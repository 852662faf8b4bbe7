/* Folders of images as latent datasets (data/image_folder.h): a folder of
 * PNG and JPEG files in class sub-folders is written here (libpng through
 * pg_png_write, libjpeg directly), with a corrupt PNG, a truncated JPEG and
 * a text file among them; the tests check the output's shapes, labels,
 * class names and file list, pixel values where they are exact (images
 * already of the output size, crops, the gray conversion), the statistics,
 * the skip and fail behaviour and their messages, and every folder error. */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <zlib.h>

#include "patchgrad/data/image_folder.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/render/png_image.h"

static int setup(void **state) {
  (void)state;
  return pg_test_tmpdir_make("image_folder");
}

/* ---- Writing the test images ---- */

static void make_dir(const char *path) { assert_int_equal(mkdir(path, 0755), 0); }

static const char *path_in(const char *folder, const char *name) {
  static char buf[4][1024];
  static int k;
  k = (k + 1) % 4;
  assert_true(snprintf(buf[k], sizeof buf[k], "%s/%s", folder, name) < (int)sizeof buf[k]);
  return buf[k];
}

/* pixel (y, x, c) of test pattern `seed`: distinct along rows and columns */
static uint8_t pattern(int seed, int y, int x, int c) {
  return (uint8_t)((seed * 37 + y * 29 + x * 7 + c * 61) % 256);
}

static void write_png(const char *path, int w, int h, int c, int seed) {
  pg_image *im = pg_image_new(w, h, c);
  assert_non_null(im);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int k = 0; k < c; k++) im->pixels[(y * w + x) * c + k] = pattern(seed, y, x, k);
  assert_int_equal(pg_png_write(path, im), PG_OK);
  pg_image_free(im);
}

/* A JPEG of one flat colour (c = 1 or 3), or of the pattern when flat is NULL. */
static void write_jpeg(const char *path, int w, int h, int c, const uint8_t *flat, int seed) {
  struct jpeg_compress_struct cinfo;
  struct jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = (JDIMENSION)w;
  cinfo.image_height = (JDIMENSION)h;
  cinfo.input_components = c;
  cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 95, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  uint8_t *row = malloc((size_t)(w * c));
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++)
      for (int k = 0; k < c; k++) row[x * c + k] = flat ? flat[k] : pattern(seed, y, x, k);
    JSAMPROW r = row;
    jpeg_write_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  fclose(f);
  free(row);
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

/* The first n bytes of src copied to dst (a truncated file). */
static void truncate_copy(const char *src, const char *dst, long n) {
  FILE *f = fopen(src, "rb");
  assert_non_null(f);
  uint8_t buf[65536];
  size_t got = fread(buf, 1, sizeof buf, f);
  fclose(f);
  assert_true(got > (size_t)n);
  write_bytes(dst, buf, (size_t)n);
}

static const uint8_t flat_blue[3] = {20, 60, 200};

/* The folder most tests read:
 *   apple/a.png      RGB 16 x 8 (w x h): cropped to columns 4..11, not resized
 *   apple/c.JPG      RGB 12 x 10 JPEG: resized and cropped
 *   apple/sub/b.png  gray 8 x 8, in a deeper folder: RGB repeats it
 *   mango/bad.png    a PNG signature, then garbage
 *   mango/m.png      RGB 8 x 8
 *   mango/notes.txt  text
 *   zebra/z0.jpg     flat blue 8 x 8 JPEG
 *   zebra/z1.png     RGB 8 x 8
 *   zebra/z2.jpg     a JPEG cut in the middle of its data
 *   .hidden/h.png    ignored (hidden folder)
 *   loose.png        ignored (not in a class folder) */
static void make_folder(const char *name, char dir[1024]) {
  snprintf(dir, 1024, "%s", pg_test_tmp(name));
  make_dir(dir);
  make_dir(path_in(dir, "apple"));
  make_dir(path_in(dir, "apple/sub"));
  make_dir(path_in(dir, "mango"));
  make_dir(path_in(dir, "zebra"));
  make_dir(path_in(dir, ".hidden"));
  write_png(path_in(dir, "apple/a.png"), 16, 8, 3, 1);
  write_jpeg(path_in(dir, "apple/c.JPG"), 12, 10, 3, NULL, 2);
  write_png(path_in(dir, "apple/sub/b.png"), 8, 8, 1, 3);
  uint8_t junk[64] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  for (int i = 8; i < 64; i++) junk[i] = (uint8_t)(i * 13);
  write_bytes(path_in(dir, "mango/bad.png"), junk, sizeof junk);
  write_png(path_in(dir, "mango/m.png"), 8, 8, 3, 4);
  const char *text = "these are my mangoes\n";
  write_bytes(path_in(dir, "mango/notes.txt"), text, strlen(text));
  write_jpeg(path_in(dir, "zebra/z0.jpg"), 8, 8, 3, flat_blue, 0);
  write_png(path_in(dir, "zebra/z1.png"), 8, 8, 3, 5);
  write_jpeg(path_in(dir, "zebra/full.tmp"), 64, 64, 3, NULL, 6);
  truncate_copy(path_in(dir, "zebra/full.tmp"), path_in(dir, "zebra/z2.jpg"), 900);
  assert_int_equal(remove(path_in(dir, "zebra/full.tmp")), 0);
  write_png(path_in(dir, ".hidden/h.png"), 8, 8, 3, 7);
  write_png(path_in(dir, "loose.png"), 8, 8, 3, 8);
}

/* ---- Reading the output ---- */

typedef struct {
  int count;
  char paths[8][1024];
  char messages[8][1024];
} skips;

static void on_skip(void *ctx, const char *path, const char *message) {
  skips *s = ctx;
  assert_true(s->count < 8);
  snprintf(s->paths[s->count], sizeof s->paths[0], "%s", path);
  snprintf(s->messages[s->count], sizeof s->messages[0], "%s", message);
  s->count++;
}

/* Options for make_folder's folder: size 8, RGB, skipped files into sk. */
static pg_image_folder_opts folder_opts(pg_image_bad_policy on_bad, skips *sk) {
  pg_image_folder_opts o;
  pg_image_folder_opts_init(&o);
  o.size = 8;
  o.on_bad = on_bad;
  o.on_skip = on_skip;
  o.on_skip_ctx = sk;
  return o;
}

/* A 1-D string dataset into a newly allocated array of n strings. */
static char **read_strings(const char *file, const char *name, int64_t *n) {
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  assert_true(d >= 0);
  hid_t space = H5Dget_space(d);
  hsize_t dims[1];
  assert_int_equal(H5Sget_simple_extent_ndims(space), 1);
  H5Sget_simple_extent_dims(space, dims, NULL);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  char **raw = calloc(dims[0], sizeof *raw), **out = calloc(dims[0], sizeof *out);
  assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0);
  for (hsize_t i = 0; i < dims[0]; i++) {
    out[i] = strdup(raw[i]);
    H5free_memory(raw[i]);
  }
  free(raw);
  H5Tclose(t);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  *n = (int64_t)dims[0];
  return out;
}

static void free_strings(char **s, int64_t n) {
  for (int64_t i = 0; i < n; i++) free(s[i]);
  free(s);
}

/* The latent of an 8 x 8 x c uint8 image under the file's own transform. */
static void expected_latent(const pg_latents *ds, const uint8_t *img, int64_t s, int64_t c,
                            float *out) {
  pg_latent_transform tf = pg_latent_transform_of(&ds->info);
  assert_int_equal(pg_image_to_latent(&tf, img, s, s, c, out), PG_OK);
}

/* ---- Tests ---- */

static void test_folder_skip(void **state) {
  (void)state;
  char dir_copy[1024];
  make_folder("skip", dir_copy);
  const char *out = pg_test_tmp("skip.h5");
  skips sk = {0};
  pg_image_folder_opts o = folder_opts(PG_IMAGE_BAD_SKIP, &sk);
  pg_image_folder_result r;
  assert_int_equal(pg_make_image_folder(dir_copy, &o, out, &r), PG_OK);
  assert_int_equal(r.images, 6);
  assert_int_equal(r.skipped, 3);
  assert_int_equal(r.classes, 3);
  assert_false(pg_test_exists(pg_test_tmp("skip.h5.staged")));

  /* the bad files, in listing order, each named with its reason */
  assert_int_equal(sk.count, 3);
  assert_string_equal(sk.paths[0], path_in(dir_copy, "mango/bad.png"));
  assert_string_equal(sk.paths[1], path_in(dir_copy, "mango/notes.txt"));
  assert_string_equal(sk.paths[2], path_in(dir_copy, "zebra/z2.jpg"));
  assert_non_null(strstr(sk.messages[0], "mango/bad.png: libpng"));
  assert_non_null(strstr(sk.messages[1], "mango/notes.txt: not a PNG or JPEG image (it starts "
                                         "with bytes 74 68 65 73)"));
  assert_non_null(strstr(sk.messages[2], "zebra/z2.jpg: corrupt or truncated JPEG"));

  pg_latents *ds = pg_latents_load(out);
  assert_non_null(ds);
  assert_int_equal(ds->info.n, 6);
  assert_int_equal(ds->info.height, 4);
  assert_int_equal(ds->info.width, 4);
  assert_int_equal(ds->info.channels, 12);
  assert_int_equal(ds->info.num_classes, 3);
  assert_int_equal(ds->info.pad, 0);
  assert_int_equal(ds->info.space_to_depth, 2);
  assert_string_equal(ds->info.source, "images");
  assert_string_equal(ds->info.split, "train");
  assert_string_equal(ds->info.class_names, "0 apple, 1 mango, 2 zebra");
  int64_t want_labels[6] = {0, 0, 0, 1, 2, 2};
  for (int i = 0; i < 6; i++) assert_int_equal(ds->labels[i], want_labels[i]);
  assert_true(fabs(ds->info.mean - r.mean) < 1e-12 && fabs(ds->info.std - r.std) < 1e-12);

  int64_t nc, nf;
  char **classes = read_strings(out, "classes", &nc);
  char **files = read_strings(out, "files", &nf);
  assert_int_equal(nc, 3);
  assert_string_equal(classes[0], "apple");
  assert_string_equal(classes[1], "mango");
  assert_string_equal(classes[2], "zebra");
  const char *want_files[6] = {"apple/a.png", "apple/c.JPG", "apple/sub/b.png",
                               "mango/m.png", "zebra/z0.jpg", "zebra/z1.png"};
  assert_int_equal(nf, 6);
  for (int i = 0; i < 6; i++) assert_string_equal(files[i], want_files[i]);
  free_strings(classes, nc);
  free_strings(files, nf);

  float want[4 * 4 * 12];
  uint8_t img[8 * 8 * 3];
  /* a.png, 16 wide: not resized, columns 4..11 kept */
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++)
      for (int k = 0; k < 3; k++) img[(y * 8 + x) * 3 + k] = pattern(1, y, x + 4, k);
  expected_latent(ds, img, 8, 3, want);
  assert_close(ds->all, want, 4 * 4 * 12, 1e-6, 0);
  /* sub/b.png: gray, repeated into R, G and B */
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++)
      for (int k = 0; k < 3; k++) img[(y * 8 + x) * 3 + k] = pattern(3, y, x, 0);
  expected_latent(ds, img, 8, 3, want);
  assert_close(ds->all + 2 * ds->sample_numel, want, 4 * 4 * 12, 1e-6, 0);
  /* z1.png as it is */
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++)
      for (int k = 0; k < 3; k++) img[(y * 8 + x) * 3 + k] = pattern(5, y, x, k);
  expected_latent(ds, img, 8, 3, want);
  assert_close(ds->all + 5 * ds->sample_numel, want, 4 * 4 * 12, 1e-6, 0);
  /* z0.jpg, flat blue: within JPEG's rounding of its colour */
  for (int p = 0; p < 64; p++) memcpy(img + 3 * p, flat_blue, 3);
  expected_latent(ds, img, 8, 3, want);
  assert_close(ds->all + 4 * ds->sample_numel, want, 4 * 4 * 12, 3.0 / 255.0 / ds->info.std, 0);
  /* c.JPG, resized: the sample is the transform of what pg_image_file_load gives */
  assert_int_equal(pg_image_file_load(path_in(dir_copy, "apple/c.JPG"), 8, 3, img), PG_OK);
  expected_latent(ds, img, 8, 3, want);
  assert_close(ds->all + 1 * ds->sample_numel, want, 4 * 4 * 12, 1e-6, 0);

  /* mean and std: exact population statistics of the six images' pixels */
  double sum = 0, sumsq = 0;
  for (int i = 0; i < 6; i++) {
    assert_int_equal(pg_image_file_load(path_in(dir_copy, want_files[i]), 8, 3, img), PG_OK);
    for (int k = 0; k < 8 * 8 * 3; k++) sum += img[k] / 255.0;
  }
  double mean = sum / (6 * 192);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(pg_image_file_load(path_in(dir_copy, want_files[i]), 8, 3, img), PG_OK);
    for (int k = 0; k < 8 * 8 * 3; k++) sumsq += (img[k] / 255.0 - mean) * (img[k] / 255.0 - mean);
  }
  assert_true(fabs(ds->info.mean - mean) < 1e-12);
  assert_true(fabs(ds->info.std - sqrt(sumsq / (6 * 192))) < 1e-12);
  pg_latents_close(ds);
}

static void test_folder_fail(void **state) {
  (void)state;
  char dir_copy[1024];
  make_folder("fail", dir_copy);
  const char *out = pg_test_tmp("fail.h5");
  skips sk = {0};
  pg_image_folder_opts o = folder_opts(PG_IMAGE_BAD_FAIL, &sk);
  assert_int_equal(pg_make_image_folder(dir_copy, &o, out, NULL), PG_ERR_FORMAT);
  assert_error_contains("mango/bad.png: libpng");
  assert_error_contains("--on-bad skip");
  assert_int_equal(sk.count, 0);
  assert_false(pg_test_exists(out));
  assert_false(pg_test_exists(pg_test_tmp("fail.h5.staged")));
}

static void test_folder_errors(void **state) {
  (void)state;
  pg_image_folder_opts o;
  pg_image_folder_opts_init(&o);
  o.size = 8;
  o.on_bad = PG_IMAGE_BAD_SKIP;
  const char *out = pg_test_tmp("err.h5");

  assert_int_equal(pg_make_image_folder(pg_test_tmp("nowhere"), &o, out, NULL), PG_ERR_IO);
  assert_error_contains("cannot read the folder");
  assert_error_contains("nowhere");

  char dir[1024];
  snprintf(dir, sizeof dir, "%s", pg_test_tmp("empty"));
  make_dir(dir);
  assert_int_equal(pg_make_image_folder(dir, &o, out, NULL), PG_ERR_FORMAT);
  assert_error_contains("has no class sub-folders (0 other entries)");

  /* files but no class folders */
  write_png(path_in(dir, "x.png"), 8, 8, 3, 1);
  assert_int_equal(pg_make_image_folder(dir, &o, out, NULL), PG_ERR_FORMAT);
  assert_error_contains("has no class sub-folders (1 other entries)");

  /* a class folder without files (a deeper empty folder does not count) */
  make_dir(path_in(dir, "full"));
  write_png(path_in(dir, "full/x.png"), 8, 8, 3, 1);
  make_dir(path_in(dir, "hollow"));
  make_dir(path_in(dir, "hollow/inner"));
  assert_int_equal(pg_make_image_folder(dir, &o, out, NULL), PG_ERR_FORMAT);
  assert_error_contains("class 'hollow'");
  assert_error_contains("has no files");

  /* a class whose every file is bad, under skip */
  write_bytes(path_in(dir, "hollow/inner/readme.md"), "# hi\n", 5);
  assert_int_equal(pg_make_image_folder(dir, &o, out, NULL), PG_ERR_FORMAT);
  assert_error_contains("class 'hollow'");
  assert_error_contains("has no readable image");

  /* options */
  o.size = 7;
  assert_int_equal(pg_make_image_folder(dir, &o, out, NULL), PG_ERR_ARG);
  assert_error_contains("--space-to-depth 2 must divide");
  o.size = 8;
  o.channels = 2;
  assert_int_equal(pg_make_image_folder(dir, &o, out, NULL), PG_ERR_ARG);
  assert_error_contains("--channels 2");
  assert_false(pg_test_exists(out));

  /* one colour everywhere: std 0 */
  char flat[1024];
  snprintf(flat, sizeof flat, "%s", pg_test_tmp("flat"));
  make_dir(flat);
  make_dir(path_in(flat, "only"));
  const uint8_t black[3] = {0, 0, 0};
  write_jpeg(path_in(flat, "only/a.jpg"), 8, 8, 3, black, 0);
  o.channels = 3;
  assert_int_equal(pg_make_image_folder(flat, &o, out, NULL), PG_ERR_FORMAT);
  assert_error_contains("std 0");
}

static void test_gray_and_crop(void **state) {
  (void)state;
  /* RGB -> gray is PIL's convert("L") */
  pg_image *im = pg_image_new(2, 2, 3);
  const uint8_t rgb[4][3] = {{200, 100, 50}, {255, 255, 255}, {0, 0, 255}, {1, 2, 3}};
  memcpy(im->pixels, rgb, sizeof rgb);
  const char *p = pg_test_tmp("rgb.png");
  assert_int_equal(pg_png_write(p, im), PG_OK);
  pg_image_free(im);
  uint8_t g[4];
  assert_int_equal(pg_image_file_load(p, 2, 1, g), PG_OK);
  for (int i = 0; i < 4; i++) {
    unsigned want = (19595u * rgb[i][0] + 38470u * rgb[i][1] + 7471u * rgb[i][2] + 0x8000u) >> 16;
    assert_int_equal(g[i], want);
  }
  /* PIL 9.4: Image.new("RGB", (1, 1), c).convert("L") gives 124, 255, 29, 2 */
  const uint8_t pil[4] = {124, 255, 29, 2};
  assert_memory_equal(g, pil, 4);

  /* centre crop offsets: round((w - S) / 2) with halves to even, as Python */
  const int widths[4] = {9, 11, 12, 13}, lefts[4] = {0, 2, 2, 2};
  for (int i = 0; i < 4; i++) {
    p = pg_test_tmp("wide.png");
    write_png(p, widths[i], 8, 3, 9);
    uint8_t out[8 * 8 * 3];
    assert_int_equal(pg_image_file_load(p, 8, 3, out), PG_OK);
    for (int y = 0; y < 8; y++)
      for (int x = 0; x < 8; x++)
        assert_int_equal(out[(y * 8 + x) * 3 + 1], pattern(9, y, x + lefts[i], 1));
  }
  /* tall: rows cropped the same way */
  p = pg_test_tmp("tall.png");
  write_png(p, 8, 11, 1, 10);
  uint8_t out[8 * 8];
  assert_int_equal(pg_image_file_load(p, 8, 1, out), PG_OK);
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++) assert_int_equal(out[y * 8 + x], pattern(10, y + 2, x, 0));

  /* a PNG claiming 20000 x 20000 pixels: refused before any allocation */
  uint8_t bomb[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                      0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20, 8, 2, 0, 0, 0};
  uLong crc = crc32(0L, bomb + 12, 17);
  for (int k = 0; k < 4; k++) bomb[29 + k] = (uint8_t)(crc >> (24 - 8 * k));
  p = pg_test_tmp("bomb.png");
  write_bytes(p, bomb, sizeof bomb);
  uint8_t small[8 * 8 * 3];
  assert_int_equal(pg_image_file_load(p, 8, 3, small), PG_ERR_FORMAT);
  assert_error_contains("bomb.png: a PNG of 20000 x 20000 pixels, more than 178956970");

  /* resizing keeps a flat image flat, enlarging and shrinking */
  const uint8_t grey[1] = {77};
  p = pg_test_tmp("flat.jpg");
  write_jpeg(p, 5, 3, 1, grey, 0);
  uint8_t big[16 * 16];
  assert_int_equal(pg_image_file_load(p, 16, 1, big), PG_OK);
  for (int i = 0; i < 256; i++) assert_true(abs(big[i] - 77) <= 1);
  write_jpeg(p, 40, 64, 1, grey, 0);
  assert_int_equal(pg_image_file_load(p, 4, 1, big), PG_OK);
  for (int i = 0; i < 16; i++) assert_true(abs(big[i] - 77) <= 1);
}

/* Two folders made alike: a train split, and a test split normalised with
 * its statistics; with padding; with and without the image cache. */
static void test_stats_from_and_cache(void **state) {
  (void)state;
  char train[1024], test[1024], other[1024];
  snprintf(train, sizeof train, "%s", pg_test_tmp("train"));
  snprintf(test, sizeof test, "%s", pg_test_tmp("test"));
  snprintf(other, sizeof other, "%s", pg_test_tmp("other"));
  make_dir(train);
  make_dir(test);
  make_dir(other);
  const char *cls[2] = {"a", "b"};
  for (int k = 0; k < 2; k++) {
    make_dir(path_in(train, cls[k]));
    make_dir(path_in(test, cls[k]));
    for (int i = 0; i < 3; i++) {
      char name[32];
      snprintf(name, sizeof name, "%s/%d.png", cls[k], i);
      write_png(path_in(train, name), 4, 4, 1, 10 * k + i);
      write_png(path_in(test, name), 4, 4, 1, 100 + 10 * k + i);
    }
  }
  make_dir(path_in(other, "a"));
  make_dir(path_in(other, "c"));
  write_png(path_in(other, "a/x.png"), 4, 4, 1, 1);
  write_png(path_in(other, "c/x.png"), 4, 4, 1, 2);

  pg_image_folder_opts o;
  pg_image_folder_opts_init(&o);
  o.size = 4;
  o.channels = 1;
  o.pad = 2;
  const char *train_h5 = pg_test_tmp("train.h5");
  pg_image_folder_result r;
  assert_int_equal(pg_make_image_folder(train, &o, train_h5, &r), PG_OK);
  /* statistics over the padded 8 x 8 images: the padding counts as zeros */
  double sum = 0, sumsq = 0;
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < 3; i++)
      for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) sum += pattern(10 * s + i, y, x, 0) / 255.0;
  double mean = sum / (6 * 64);
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < 3; i++)
      for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
          double d = pattern(10 * s + i, y, x, 0) / 255.0 - mean;
          sumsq += d * d;
        }
  sumsq += 6 * 48 * mean * mean;
  assert_true(fabs(r.mean - mean) < 1e-12);
  assert_true(fabs(r.std - sqrt(sumsq / (6 * 64))) < 1e-12);

  /* the test split with the train split's statistics */
  o.stats_from = train_h5;
  o.split = "test";
  const char *test_h5 = pg_test_tmp("test.h5");
  pg_image_folder_result rt;
  assert_int_equal(pg_make_image_folder(test, &o, test_h5, &rt), PG_OK);
  assert_true(rt.mean == r.mean && rt.std == r.std);
  pg_latents *a = pg_latents_load(test_h5);
  assert_non_null(a);
  assert_string_equal(a->info.split, "test");
  assert_true(a->info.mean == r.mean && a->info.std == r.std);
  assert_int_equal(a->info.height, 4);
  assert_int_equal(a->info.channels, 4);

  /* decoding twice (no cache) writes the same file content */
  o.cache_bytes = 0;
  const char *test2_h5 = pg_test_tmp("test2.h5");
  assert_int_equal(pg_make_image_folder(test, &o, test2_h5, NULL), PG_OK);
  pg_latents *b = pg_latents_load(test2_h5);
  assert_non_null(b);
  assert_int_equal(a->info.n, b->info.n);
  assert_memory_equal(a->all, b->all, (size_t)(a->info.n * a->sample_numel) * sizeof(float));
  assert_memory_equal(a->labels, b->labels, (size_t)a->info.n * sizeof(int64_t));
  pg_latents_close(a);
  pg_latents_close(b);

  /* statistics of a file made differently, or with other classes: refused */
  o.pad = 0;
  assert_int_equal(pg_make_image_folder(test, &o, test2_h5, NULL), PG_ERR_ARG);
  assert_error_contains("train.h5 holds latents [4, 4, 4] with pad 2");
  o.pad = 2;
  assert_int_equal(pg_make_image_folder(other, &o, test2_h5, NULL), PG_ERR_ARG);
  assert_error_contains("class 1 is 'b' in --stats-from");
  assert_error_contains("but 'c' in");
}

/* More classes than the class_names attribute holds: cut at a name, all of
 * them in /classes. */
static void test_many_classes(void **state) {
  (void)state;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", pg_test_tmp("many"));
  make_dir(dir);
  const int K = 60;
  for (int k = 0; k < K; k++) {
    char name[64];
    snprintf(name, sizeof name, "class_with_a_long_name_%02d", k);
    make_dir(path_in(dir, name));
    snprintf(name, sizeof name, "class_with_a_long_name_%02d/x.png", k);
    write_png(path_in(dir, name), 2, 2, 3, k);
  }
  pg_image_folder_opts o;
  pg_image_folder_opts_init(&o);
  o.size = 2;
  const char *out = pg_test_tmp("many.h5");
  assert_int_equal(pg_make_image_folder(dir, &o, out, NULL), PG_OK);
  pg_latents *ds = pg_latents_open(out);
  assert_non_null(ds);
  assert_int_equal(ds->info.num_classes, K);
  assert_int_equal(ds->info.n, K);
  const char *cn = ds->info.class_names;
  assert_true(strlen(cn) < 512);
  assert_true(!strncmp(cn, "0 class_with_a_long_name_00, 1 class_with_a_long_name_01, ", 58));
  assert_non_null(strstr(cn, ", ... (60 classes: see /classes)"));
  int64_t n;
  char **classes = read_strings(out, "classes", &n);
  assert_int_equal(n, K);
  assert_string_equal(classes[59], "class_with_a_long_name_59");
  for (int i = 0; i < K; i++) assert_int_equal(ds->labels[i], i);
  free_strings(classes, n);
  pg_latents_close(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_folder_skip),
      cmocka_unit_test(test_folder_fail),
      cmocka_unit_test(test_folder_errors),
      cmocka_unit_test(test_gray_and_crop),
      cmocka_unit_test(test_stats_from_and_cache),
      cmocka_unit_test(test_many_classes),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
