/* Latent datasets: writing and reading back, every validation error on
 * files broken on purpose, the image <-> latent transform, IDX parsing, and
 * the dataset makers (Fashion-MNIST on a fake IDX folder written here, the
 * real one when Debian's package is installed, and the synthetic shapes). */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "patchgrad/data/fashion_mnist.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/data/idx.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/data/synthetic.h"

static int setup(void **state) {
  (void)state;
  return pg_test_tmpdir_make("latents");
}

/* A small labelled dataset: sample i holds i + k / 1000 at element k. */
static void fill_samples(float *x, int64_t n, int64_t per) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = 0; k < per; k++) x[i * per + k] = (float)i + (float)k / 1000.0f;
}

static pg_latents_info small_info(int64_t n) {
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = n;
  info.height = 4;
  info.width = 3;
  info.channels = 2;
  info.has_labels = true;
  info.num_classes = 5;
  info.mean = 0.25;
  info.std = 2.0;
  snprintf(info.source, sizeof info.source, "unit-test");
  snprintf(info.description, sizeof info.description, "made by test_latents");
  return info;
}

static void test_round_trip(void **state) {
  (void)state;
  pg_latents_info info = small_info(7);
  float x[7 * 24];
  int64_t y[7] = {0, 1, 2, 3, 4, 0, 1};
  fill_samples(x, 7, 24);
  assert_int_equal(pg_latents_save(pg_test_tmp("rt.h5"), &info, x, y), PG_OK);
  assert_int_equal(pg_test_temporaries(pg_test_tmp("rt.h5")), 0);

  pg_latents *ds = pg_latents_open(pg_test_tmp("rt.h5"));
  assert_non_null(ds);
  assert_int_equal(ds->info.n, 7);
  assert_int_equal(ds->info.height, 4);
  assert_int_equal(ds->info.width, 3);
  assert_int_equal(ds->info.channels, 2);
  assert_true(ds->info.has_labels);
  assert_int_equal(ds->info.num_classes, 5);
  assert_true(ds->info.mean == 0.25 && ds->info.std == 2.0);
  assert_string_equal(ds->info.source, "unit-test");
  assert_string_equal(ds->info.description, "made by test_latents");
  for (int i = 0; i < 7; i++) assert_int_equal(ds->labels[i], y[i]);
  float back[7 * 24];
  assert_int_equal(pg_latents_read(ds, 0, 7, back), PG_OK);
  assert_memory_equal(back, x, sizeof x);
  /* a hyperslab in the middle: exactly samples 3 and 4 */
  float two[2 * 24];
  assert_int_equal(pg_latents_read(ds, 3, 2, two), PG_OK);
  assert_memory_equal(two, x + 3 * 24, sizeof two);
  assert_int_not_equal(pg_latents_read(ds, 6, 2, two), PG_OK);
  assert_error_contains("outside the 7 rows");
  pg_latents_close(ds);
  /* loaded into memory: the same samples, the same bounds */
  ds = pg_latents_load(pg_test_tmp("rt.h5"));
  assert_non_null(ds);
  assert_int_equal(pg_latents_read(ds, 3, 2, two), PG_OK);
  assert_memory_equal(two, x + 3 * 24, sizeof two);
  assert_int_not_equal(pg_latents_read(ds, 6, 2, two), PG_OK);
  assert_error_contains("outside the 7 rows");
  pg_latents_close(ds);

  /* chunked by sample and compressed, as documented */
  hid_t f = H5Fopen(pg_test_tmp("rt.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "latents", H5P_DEFAULT);
  hid_t dcpl = H5Dget_create_plist(d);
  hsize_t chunk[4];
  assert_int_equal(H5Pget_chunk(dcpl, 4, chunk), 4);
  assert_true(chunk[0] == 1 && chunk[1] == 4 && chunk[2] == 3 && chunk[3] == 2);
  assert_int_equal(H5Pget_nfilters(dcpl), 3); /* shuffle, deflate, fletcher32 */
  H5Pclose(dcpl);
  H5Dclose(d);
  H5Fclose(f);
}

static void test_streamed_writer(void **state) {
  (void)state;
  pg_latents_info info = small_info(5);
  info.num_classes = 0; /* taken from the labels: max + 1 */
  float x[5 * 24];
  int64_t y[5] = {2, 0, 3, 1, 2};
  fill_samples(x, 5, 24);
  pg_latents_writer *w = pg_latents_create(pg_test_tmp("stream.h5"), &info);
  assert_non_null(w);
  assert_int_equal(pg_latents_append(w, 2, x, y), PG_OK);
  assert_int_equal(pg_latents_append(w, 3, x + 2 * 24, y + 2), PG_OK);
  assert_int_not_equal(pg_latents_append(w, 1, x, y), PG_OK); /* a sixth sample */
  assert_error_contains("exceeds N = 5");
  assert_int_equal(pg_latents_finish(w), PG_OK);
  pg_latents *ds = pg_latents_open(pg_test_tmp("stream.h5"));
  assert_non_null(ds);
  assert_int_equal(ds->info.num_classes, 4);
  float back[5 * 24];
  pg_latents_read(ds, 0, 5, back);
  assert_memory_equal(back, x, sizeof x);
  pg_latents_close(ds);

  /* finishing short of N is an error and leaves no file behind */
  w = pg_latents_create(pg_test_tmp("short.h5"), &info);
  assert_int_equal(pg_latents_append(w, 2, x, y), PG_OK);
  assert_int_not_equal(pg_latents_finish(w), PG_OK);
  assert_error_contains("2 of N = 5");
  assert_false(pg_test_exists(pg_test_tmp("short.h5")));
  assert_int_equal(pg_test_temporaries(pg_test_tmp("short.h5")), 0);

  /* the writer refuses what the reader would refuse */
  w = pg_latents_create(pg_test_tmp("nan.h5"), &info);
  x[1 * 24 + 7] = NAN;
  assert_int_not_equal(pg_latents_append(w, 5, x, y), PG_OK);
  assert_error_contains("sample 1");
  pg_latents_abort(w);
  assert_int_equal(pg_test_temporaries(pg_test_tmp("nan.h5")), 0);
  x[1 * 24 + 7] = 0;
  info.num_classes = 3;
  w = pg_latents_create(pg_test_tmp("lab.h5"), &info);
  assert_int_not_equal(pg_latents_append(w, 5, x, y), PG_OK);
  assert_error_contains("label of sample 2 is 3, outside [0, 3)");
  pg_latents_abort(w);
  info.n = 0;
  assert_null(pg_latents_create(pg_test_tmp("empty.h5"), &info));
  assert_error_contains("N = 0");
}

/* The disk fills up while the file is written: an error naming the file,
 * no partial file or .tmp left, the previous file intact, and the process
 * carries on (HDF5 itself never sees the failed write). */
static void test_disk_full(void **state) {
  (void)state;
  pg_latents_info info = small_info(3);
  float x[3 * 24];
  int64_t y[3] = {0, 1, 2};
  fill_samples(x, 3, 24);
  char path[512];
  snprintf(path, sizeof path, "%s", pg_test_tmp("full.h5"));
  assert_int_equal(pg_latents_save(path, &info, x, y), PG_OK);
  struct stat before;
  stat(path, &before);

  pg_latents_info big = small_info(3000);
  big.height = big.width = 16;
  big.channels = 4;
  float *bx = malloc(3000 * 1024 * sizeof *bx);
  int64_t *by = calloc(3000, sizeof *by);
  for (int64_t i = 0; i < 3000 * 1024; i++) bx[i] = (float)((i * 7919) % 1009) / 7.0f;
  struct rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of a signal */
  struct rlimit limited = {256 * 1024, old.rlim_max};
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &limited), 0);
  pg_status st = pg_latents_save(path, &big, bx, by);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  free(bx);
  free(by);
  assert_int_not_equal(st, PG_OK);
  assert_error_contains(path);
  assert_error_contains("the previous file is unchanged");
  assert_int_equal(pg_test_temporaries(pg_test_tmp("full.h5")), 0);
  struct stat after;
  stat(path, &after);
  assert_int_equal(after.st_size, before.st_size);
  pg_latents *ds = pg_latents_open(path);
  assert_non_null(ds);
  assert_int_equal(ds->info.n, 3);
  pg_latents_close(ds);
}

/* ---- Files broken on purpose, written with raw HDF5 ---- */

static hid_t raw_create(const char *name) {
  return H5Fcreate(pg_test_tmp(name), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

static void raw_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                        const void *data) {
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (data) H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  H5Dclose(d);
  H5Sclose(s);
}

static void expect_open_error(const char *name, const char *needle) {
  assert_null(pg_latents_open(pg_test_tmp(name)));
  assert_error_contains(pg_test_tmp(name)); /* every message names the file */
  assert_error_contains(needle);
}

static void test_validation_errors(void **state) {
  (void)state;
  float x[4 * 8];
  for (int i = 0; i < 32; i++) x[i] = (float)i;
  hsize_t d4[4] = {4, 2, 2, 2};

  /* a text file named .h5 */
  FILE *t = fopen(pg_test_tmp("text.h5"), "w");
  fputs("this is not HDF5\n", t);
  fclose(t);
  expect_open_error("text.h5", "not an HDF5 file");

  /* a truncated file: the first half of a good one */
  pg_latents_info info = small_info(40);
  float *big = calloc(40 * 24, sizeof *big);
  int64_t labels[40] = {0};
  fill_samples(big, 40, 24);
  pg_latents_save(pg_test_tmp("whole.h5"), &info, big, labels);
  free(big);
  struct stat st;
  stat(pg_test_tmp("whole.h5"), &st);
  FILE *in = fopen(pg_test_tmp("whole.h5"), "rb"), *out = fopen(pg_test_tmp("truncated.h5"), "wb");
  char *bytes = malloc((size_t)st.st_size);
  assert_int_equal(fread(bytes, 1, (size_t)st.st_size, in), st.st_size);
  fwrite(bytes, 1, (size_t)st.st_size / 2, out);
  fclose(in);
  fclose(out);
  free(bytes);
  assert_null(pg_latents_open(pg_test_tmp("truncated.h5")));
  assert_error_contains(pg_test_tmp("truncated.h5"));

  /* a missing 'latents' dataset */
  hid_t f = raw_create("missing.h5");
  raw_dataset(f, "images", H5T_NATIVE_FLOAT, 4, d4, x);
  H5Fclose(f);
  expect_open_error("missing.h5", "missing dataset 'latents'");

  /* a wrong rank */
  f = raw_create("rank.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 3, (hsize_t[]){4, 4, 2}, x);
  H5Fclose(f);
  expect_open_error("rank.h5", "dataset 'latents' has rank 3, shape [4, 4, 2]");

  /* a non-float dtype */
  int32_t xi[32] = {0};
  f = raw_create("dtype.h5");
  raw_dataset(f, "latents", H5T_NATIVE_INT32, 4, d4, xi);
  H5Fclose(f);
  expect_open_error("dtype.h5", "dataset 'latents' has dtype int32 (expected float16, float32 or float64)");

  /* N = 0 */
  f = raw_create("empty.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){0, 2, 2, 2}, NULL);
  H5Fclose(f);
  expect_open_error("empty.h5", "N = 0");

  /* NaN and Inf: the message names the sample */
  x[2 * 8 + 5] = NAN;
  f = raw_create("nan.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  H5Fclose(f);
  expect_open_error("nan.h5", "sample 2 holds nan");
  assert_null(pg_latents_load(pg_test_tmp("nan.h5"))); /* checked in memory the same way */
  assert_error_contains("sample 2 holds nan");
  x[2 * 8 + 5] = 0;
  x[3 * 8] = -INFINITY;
  f = raw_create("inf.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  H5Fclose(f);
  expect_open_error("inf.h5", "sample 3 holds -inf");
  x[3 * 8] = 0;

  /* labels: count, sign, range against the attribute, dtype, rank */
  int64_t three[3] = {0, 1, 2};
  f = raw_create("count.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  raw_dataset(f, "labels", H5T_NATIVE_INT64, 1, (hsize_t[]){3}, three);
  H5Fclose(f);
  expect_open_error("count.h5", "'labels' has 3 entries but 'latents' has N = 4");

  int64_t neg[4] = {0, -1, 2, 1};
  f = raw_create("negative.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  raw_dataset(f, "labels", H5T_NATIVE_INT64, 1, (hsize_t[]){4}, neg);
  H5Fclose(f);
  expect_open_error("negative.h5", "labels[1] = -1 is negative");

  int64_t high[4] = {0, 9, 10, 1};
  f = raw_create("range.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  raw_dataset(f, "labels", H5T_NATIVE_INT64, 1, (hsize_t[]){4}, high);
  pg_h5_set_attr_int(f, "num_classes", 10);
  H5Fclose(f);
  expect_open_error("range.h5", "labels[2] = 10 is outside [0, 10)");

  /* without the attribute, num_classes = max + 1 (and int32 labels are fine) */
  int32_t ok32[4] = {0, 9, 10, 1};
  f = raw_create("noattr.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  raw_dataset(f, "labels", H5T_NATIVE_INT32, 1, (hsize_t[]){4}, ok32);
  H5Fclose(f);
  pg_latents *ds = pg_latents_open(pg_test_tmp("noattr.h5"));
  assert_non_null(ds);
  assert_int_equal(ds->info.num_classes, 11);
  assert_true(ds->info.mean == 0.0 && ds->info.std == 1.0); /* unscaled by default */
  pg_latents_close(ds);

  float fl[4] = {0, 1, 2, 3};
  f = raw_create("floatlabels.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  raw_dataset(f, "labels", H5T_NATIVE_FLOAT, 1, (hsize_t[]){4}, fl);
  H5Fclose(f);
  expect_open_error("floatlabels.h5", "dataset 'labels' has dtype float32");

  int64_t l2[4] = {0, 1, 2, 3};
  f = raw_create("labelrank.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  raw_dataset(f, "labels", H5T_NATIVE_INT64, 2, (hsize_t[]){2, 2}, l2);
  H5Fclose(f);
  expect_open_error("labelrank.h5", "dataset 'labels' has rank 2");

  /* an attribute promising classes without labels */
  f = raw_create("nolabels.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  pg_h5_set_attr_int(f, "num_classes", 10);
  H5Fclose(f);
  expect_open_error("nolabels.h5", "no dataset 'labels'");

  /* a bad scaling attribute */
  f = raw_create("std.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, d4, x);
  pg_h5_set_attr_double(f, "std", 0.0);
  H5Fclose(f);
  expect_open_error("std.h5", "std = 0");

  assert_null(pg_latents_open(pg_test_tmp("no-such-file.h5")));
  assert_error_contains("cannot open");
}

/* ---- The image <-> latent transform ---- */

static void test_space_to_depth_order(void **state) {
  (void)state;
  /* a 4x4 one-channel image holding 0..15: PyTorch's pixel_unshuffle(2) puts
   * pixel (2i + di, 2j + dj) in channel 2 di + dj of latent (i, j) */
  float img[16], lat[16], back[16];
  for (int i = 0; i < 16; i++) img[i] = (float)i;
  assert_int_equal(pg_space_to_depth(img, 4, 4, 1, 2, lat), PG_OK);
  /* torch.arange(16.).reshape(1,1,4,4) -> pixel_unshuffle(2) -> permute(0,2,3,1) */
  const float want[16] = {0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
  assert_close(lat, want, 16, 0, 0);
  assert_int_equal(pg_depth_to_space(lat, 2, 2, 4, 2, back), PG_OK);
  assert_close(back, img, 16, 0, 0);
  /* two image channels: channel c * 4 + 2 di + dj */
  float img2[2 * 2 * 2] = {10, 20, 11, 21, 12, 22, 13, 23}; /* [2, 2, 2] HWC */
  float lat2[8];
  pg_space_to_depth(img2, 2, 2, 2, 2, lat2);
  const float want2[8] = {10, 11, 12, 13, 20, 21, 22, 23};
  assert_close(lat2, want2, 8, 0, 0);
  assert_int_not_equal(pg_space_to_depth(img, 3, 5, 1, 2, lat), PG_OK);
  assert_error_contains("does not divide by 2");
}

static void test_image_latent_round_trip(void **state) {
  (void)state;
  /* a 6x6 image, pad 1, factor 2 -> latent 4x4x4; the inverse gives it back */
  uint8_t img[36], back[36];
  for (int i = 0; i < 36; i++) img[i] = (uint8_t)(i * 7);
  pg_latent_transform tf = {.pad = 1, .factor = 2, .mean = 0.3, .std = 0.4};
  float lat[64], scratch[64];
  assert_int_equal(pg_image_to_latent(&tf, img, 6, 6, 1, lat), PG_OK);
  /* pixel (y, x) sits at padded (y + 1, x + 1): latent ((y+1)/2, (x+1)/2), channel 2 di + dj */
  int y = 2, x = 3, py = y + 1, px = x + 1;
  float want = (float)((img[y * 6 + x] / 255.0f - 0.3f) / 0.4f);
  assert_close(&lat[((py / 2) * 4 + px / 2) * 4 + 2 * (py % 2) + px % 2], &want, 1, 1e-6, 0);
  assert_close(&lat[0], &(float){(float)(-0.3 / 0.4)}, 1, 1e-6, 0); /* padding is 0 */
  int64_t h, w, c;
  assert_int_equal(pg_latent_image_size(&tf, 4, 4, 4, &h, &w, &c), PG_OK);
  assert_true(h == 6 && w == 6 && c == 1);
  assert_int_equal(pg_latent_to_image(&tf, lat, 4, 4, 4, scratch, back), PG_OK);
  assert_memory_equal(back, img, 36);
  /* samples may leave [0, 1]: clamped, and NaN shows as black */
  for (int i = 0; i < 64; i++) lat[i] = 1e3f;
  lat[((1 / 2) * 4 + 1 / 2) * 4 + 3] = NAN; /* image pixel (0, 0) */
  pg_latent_to_image(&tf, lat, 4, 4, 4, scratch, back);
  assert_int_equal(back[0], 0);
  assert_int_equal(back[1], 255);
}

/* ---- IDX files ---- */

static void write_idx(const char *path, bool gzip, const uint8_t *header, int header_len,
                      const uint8_t *data, int data_len) {
  if (gzip) {
    gzFile g = gzopen(path, "wb");
    gzwrite(g, header, (unsigned)header_len);
    if (data_len) gzwrite(g, data, (unsigned)data_len);
    gzclose(g);
  } else {
    FILE *f = fopen(path, "wb");
    fwrite(header, 1, (size_t)header_len, f);
    fwrite(data, 1, (size_t)data_len, f);
    fclose(f);
  }
}

static void test_idx(void **state) {
  (void)state;
  uint8_t data[2 * 3 * 2];
  for (int i = 0; i < 12; i++) data[i] = (uint8_t)(i * 20);
  const uint8_t good[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2};
  write_idx(pg_test_tmp("good.gz"), true, good, sizeof good, data, 12);
  pg_idx idx;
  assert_int_equal(pg_idx_read(pg_test_tmp("good.gz"), 3, &idx), PG_OK);
  assert_int_equal(idx.ndim, 3);
  assert_true(idx.shape[0] == 2 && idx.shape[1] == 3 && idx.shape[2] == 2);
  assert_memory_equal(idx.data, data, 12);
  pg_idx_free(&idx);
  /* an uncompressed file reads the same */
  write_idx(pg_test_tmp("plain.idx"), false, good, sizeof good, data, 12);
  assert_int_equal(pg_idx_read(pg_test_tmp("plain.idx"), 0, &idx), PG_OK);
  assert_memory_equal(idx.data, data, 12);
  pg_idx_free(&idx);

  const uint8_t magic[] = {1, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2};
  write_idx(pg_test_tmp("magic.gz"), true, magic, sizeof magic, data, 12);
  assert_int_not_equal(pg_idx_read(pg_test_tmp("magic.gz"), 3, &idx), PG_OK);
  assert_error_contains("bad IDX magic 01 00 08 03");
  const uint8_t type[] = {0, 0, 0x0d, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2};
  write_idx(pg_test_tmp("type.gz"), true, type, sizeof type, data, 12);
  assert_int_not_equal(pg_idx_read(pg_test_tmp("type.gz"), 3, &idx), PG_OK);
  assert_error_contains("element type 0x0d");
  assert_int_not_equal(pg_idx_read(pg_test_tmp("good.gz"), 1, &idx), PG_OK);
  assert_error_contains("IDX rank 3 (expected 1)");
  /* sizes that disagree with the file's length: short data, extra data */
  write_idx(pg_test_tmp("short.gz"), true, good, sizeof good, data, 11);
  assert_int_not_equal(pg_idx_read(pg_test_tmp("short.gz"), 3, &idx), PG_OK);
  assert_error_contains("promises 12 elements");
  const uint8_t huge[] = {0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  write_idx(pg_test_tmp("huge.gz"), true, huge, sizeof huge, data, 12);
  assert_int_not_equal(pg_idx_read(pg_test_tmp("huge.gz"), 2, &idx), PG_OK);
  assert_error_contains("more elements than the file");
  write_idx(pg_test_tmp("header.gz"), true, good, 10, NULL, 0);
  assert_int_not_equal(pg_idx_read(pg_test_tmp("header.gz"), 3, &idx), PG_OK);
  assert_error_contains("needs 16 bytes");
  /* a damaged gzip stream */
  write_idx(pg_test_tmp("good2.gz"), true, good, sizeof good, data, 12);
  FILE *f = fopen(pg_test_tmp("good2.gz"), "r+b");
  fseek(f, 12, SEEK_SET);
  fputc(0xAA, f);
  fputc(0x55, f);
  fclose(f);
  pg_status st = pg_idx_read(pg_test_tmp("good2.gz"), 3, &idx);
  assert_int_not_equal(st, PG_OK);
  assert_error_contains(pg_test_tmp("good2.gz"));
  assert_int_not_equal(pg_idx_read(pg_test_tmp("absent.gz"), 3, &idx), PG_OK);
  assert_error_contains("cannot open");
}

/* ---- Fashion-MNIST on a fake folder of four tiny IDX files ---- */

enum { FAKE_TRAIN = 5, FAKE_TEST = 3 };

static uint8_t fake_pixel(int split, int n, int y, int x) {
  return (uint8_t)((split * 97 + n * 31 + y * 28 + x * 3) % 256);
}

static void write_fake_split(const char *folder, const char *prefix, int split, int n) {
  char path[600];
  uint8_t head[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, 28, 0, 0, 0, 28};
  uint8_t *img = malloc((size_t)n * 784);
  for (int i = 0; i < n; i++)
    for (int y = 0; y < 28; y++)
      for (int x = 0; x < 28; x++) img[i * 784 + y * 28 + x] = fake_pixel(split, i, y, x);
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", folder, prefix);
  write_idx(path, true, head, 16, img, n * 784);
  free(img);
  uint8_t lhead[8] = {0, 0, 8, 1, 0, 0, 0, (uint8_t)n}, lab[8];
  for (int i = 0; i < n; i++) lab[i] = (uint8_t)((i * 3 + split) % 10);
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", folder, prefix);
  write_idx(path, true, lhead, 8, lab, n);
}

static void make_fake_fashion(const char *folder) {
  mkdir(folder, 0755);
  write_fake_split(folder, "train", 0, FAKE_TRAIN);
  write_fake_split(folder, "t10k", 1, FAKE_TEST);
}

static void test_fashion_pipeline_on_fake_idx(void **state) {
  (void)state;
  char fake[512];
  snprintf(fake, sizeof fake, "%s", pg_test_tmp("fake-fashion"));
  make_fake_fashion(fake);
  /* the train split's statistics over padded [0, 1] pixels, computed here directly */
  double sum = 0, sq = 0, total = FAKE_TRAIN * 32.0 * 32.0;
  for (int i = 0; i < FAKE_TRAIN; i++)
    for (int y = 0; y < 28; y++)
      for (int x = 0; x < 28; x++) sum += fake_pixel(0, i, y, x) / 255.0;
  double mean = sum / total;
  for (int i = 0; i < FAKE_TRAIN; i++)
    for (int y = -2; y < 30; y++)
      for (int x = -2; x < 30; x++) {
        double v = (y >= 0 && y < 28 && x >= 0 && x < 28) ? fake_pixel(0, i, y, x) / 255.0 : 0;
        sq += (v - mean) * (v - mean);
      }
  double std = sqrt(sq / total);

  /* the test split is scaled with the train split's statistics */
  assert_int_equal(pg_make_fashion_mnist(fake, "test", 0, pg_test_tmp("fake-test.h5")), PG_OK);
  pg_latents *ds = pg_latents_open(pg_test_tmp("fake-test.h5"));
  assert_non_null(ds);
  assert_int_equal(ds->info.n, FAKE_TEST);
  assert_true(ds->info.height == 16 && ds->info.width == 16 && ds->info.channels == 4);
  assert_int_equal(ds->info.num_classes, 10);
  assert_true(fabs(ds->info.mean - mean) < 1e-12 && fabs(ds->info.std - std) < 1e-12);
  assert_true(ds->info.pad == 2 && ds->info.space_to_depth == 2);
  assert_string_equal(ds->info.source, "fashion-mnist");
  assert_string_equal(ds->info.split, "test");
  for (int i = 0; i < FAKE_TEST; i++) assert_int_equal(ds->labels[i], (i * 3 + 1) % 10);
  float lat[FAKE_TEST * 1024];
  pg_latents_read(ds, 0, FAKE_TEST, lat);
  /* every pixel lands where docs/latents.md ("Fashion-MNIST") says, with the train scale */
  for (int i = 0; i < FAKE_TEST; i++)
    for (int y = 0; y < 28; y++)
      for (int x = 0; x < 28; x++) {
        int py = y + 2, px = x + 2;
        float got = lat[i * 1024 + ((py / 2) * 16 + px / 2) * 4 + 2 * (py % 2) + px % 2];
        float want = (float)((fake_pixel(1, i, y, x) / 255.0f - mean) / std);
        assert_close(&got, &want, 1, 1e-5, 1e-5);
      }
  /* and the inverse gives the images back exactly */
  pg_latent_transform tf = pg_latent_transform_of(&ds->info);
  float scratch[1024];
  uint8_t img[784];
  pg_latent_to_image(&tf, lat + 1024, 16, 16, 4, scratch, img);
  for (int y = 0; y < 28; y++)
    for (int x = 0; x < 28; x++) assert_int_equal(img[y * 28 + x], fake_pixel(1, 1, y, x));
  pg_latents_close(ds);

  /* --count takes the first images; too many is an error */
  assert_int_equal(pg_make_fashion_mnist(fake, "train", 2, pg_test_tmp("fake-train.h5")), PG_OK);
  ds = pg_latents_open(pg_test_tmp("fake-train.h5"));
  assert_int_equal(ds->info.n, 2);
  pg_latents_close(ds);
  assert_int_not_equal(pg_make_fashion_mnist(fake, "train", 9, pg_test_tmp("x.h5")), PG_OK);
  assert_error_contains("--count 9 exceeds the 5 images");
  assert_int_not_equal(pg_make_fashion_mnist(fake, "validation", 0, pg_test_tmp("x.h5")), PG_OK);
  assert_error_contains("split 'validation'");
  /* a missing folder names the Debian package */
  assert_int_not_equal(pg_make_fashion_mnist(pg_test_tmp("nowhere"), "train", 0, pg_test_tmp("x.h5")),
                       PG_OK);
  assert_error_contains("install the Debian package dataset-fashion-mnist");
  /* a corrupt header in the folder is reported with its file */
  char bad[600];
  snprintf(bad, sizeof bad, "%s/t10k-labels-idx1-ubyte.gz", fake);
  const uint8_t lhead[8] = {0, 0, 8, 1, 0, 0, 0, 7};
  write_idx(bad, true, lhead, 8, (const uint8_t[]){1, 2, 3}, 3);
  assert_int_not_equal(pg_make_fashion_mnist(fake, "test", 0, pg_test_tmp("x.h5")), PG_OK);
  assert_error_contains("t10k-labels-idx1-ubyte.gz: IDX header promises 7 elements");
  assert_false(pg_test_exists(pg_test_tmp("x.h5")));
}

/* The command itself, on the fake folder (--dir) and without the package. */
static void test_latents_command(void **state) {
  (void)state;
  char fake[512];
  snprintf(fake, sizeof fake, "%s", pg_test_tmp("fake-cli"));
  make_fake_fashion(fake);
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "%s/patchgrad latents --source fashion-mnist --dir %s --split test --out %s "
           "--preview %s > %s 2>&1", PG_BUILD_DIR, fake, pg_test_tmp("cli.h5"), pg_test_tmp("cli.png"),
           pg_test_tmp("cli.log"));
  assert_int_equal(system(cmd), 0);
  pg_latents *ds = pg_latents_open(pg_test_tmp("cli.h5"));
  assert_non_null(ds);
  assert_int_equal(ds->info.n, FAKE_TEST);
  pg_latents_close(ds);
  assert_true(pg_test_exists(pg_test_tmp("cli.png")));
  snprintf(cmd, sizeof cmd,
           "%s/patchgrad latents --source fashion-mnist --dir %s/none --out %s > %s 2>&1",
           PG_BUILD_DIR, pg_test_tmpdir(), pg_test_tmp("none.h5"), pg_test_tmp("none.log"));
  assert_int_equal(WEXITSTATUS(system(cmd)), 1);
  FILE *f = fopen(pg_test_tmp("none.log"), "r");
  char log[2048] = "";
  size_t n = fread(log, 1, sizeof log - 1, f);
  log[n] = '\0';
  fclose(f);
  assert_non_null(strstr(log, "dataset-fashion-mnist"));
  snprintf(cmd, sizeof cmd,
           "%s/patchgrad latents --source synthetic --out %s --count 30 --size 8 --channels 4 "
           "--classes 3 --seed 5 > %s 2>&1",
           PG_BUILD_DIR, pg_test_tmp("cli-syn.h5"), pg_test_tmp("syn.log"));
  assert_int_equal(system(cmd), 0);
  ds = pg_latents_open(pg_test_tmp("cli-syn.h5"));
  assert_non_null(ds);
  assert_true(ds->info.n == 30 && ds->info.height == 8 && ds->info.num_classes == 3);
  pg_latents_close(ds);
  snprintf(cmd, sizeof cmd, "%s/patchgrad latents --source synthetic --out %s --count -4 > %s 2>&1",
           PG_BUILD_DIR, pg_test_tmp("neg.h5"), pg_test_tmp("neg.log"));
  assert_int_equal(WEXITSTATUS(system(cmd)), 2);
}

/* The real Fashion-MNIST, when Debian's package is installed. */
static void test_fashion_mnist_installed(void **state) {
  (void)state;
  if (access(PG_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
    print_message("dataset-fashion-mnist is not installed: skipped\n");
    skip();
  }
  assert_int_equal(pg_make_fashion_mnist(NULL, "test", 0, pg_test_tmp("fm-test.h5")), PG_OK);
  pg_latents *ds = pg_latents_open(pg_test_tmp("fm-test.h5"));
  assert_non_null(ds);
  assert_int_equal(ds->info.n, 10000);
  assert_true(ds->info.height == 16 && ds->info.width == 16 && ds->info.channels == 4);
  assert_int_equal(ds->info.num_classes, 10);
  /* the train split's pixel mean is 0.2860 over 28 x 28, so 0.2860 * 784 / 1024 padded */
  assert_true(fabs(ds->info.mean - 0.2860 * 784 / 1024) < 1e-3);
  double mean, std;
  pg_fashion_mnist_stats(NULL, &mean, &std);
  assert_true(ds->info.mean == mean && ds->info.std == std);
  /* the test split, scaled by train statistics, is close to zero mean, unit std */
  float *x = malloc(10000 * 1024 * sizeof *x);
  pg_latents_read(ds, 0, 10000, x);
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < 10000 * 1024; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
  }
  s /= 10000 * 1024.0;
  s2 = sqrt(s2 / (10000 * 1024.0) - s * s);
  assert_true(fabs(s) < 0.02 && fabs(s2 - 1) < 0.02);
  free(x);
  int counts[10] = {0};
  for (int i = 0; i < 10000; i++) counts[ds->labels[i]]++;
  for (int k = 0; k < 10; k++) assert_int_equal(counts[k], 1000);
  pg_latents_close(ds);
}

/* ---- Synthetic shapes ---- */

static void test_synthetic(void **state) {
  (void)state;
  pg_synthetic_opts o;
  pg_synthetic_opts_init(&o);
  assert_true(o.size == 16 && o.channels == 4 && o.classes == 10);
  o.count = 400;
  o.size = 8;
  o.seed = 3;
  assert_int_equal(pg_make_synthetic(&o, pg_test_tmp("syn.h5")), PG_OK);
  pg_latents *ds = pg_latents_open(pg_test_tmp("syn.h5"));
  assert_non_null(ds);
  assert_true(ds->info.n == 400 && ds->info.height == 8 && ds->info.channels == 4);
  assert_int_equal(ds->info.num_classes, 10);
  assert_int_equal(ds->info.space_to_depth, 2);
  int64_t per = 8 * 8 * 4;
  float *x = malloc((size_t)(400 * per) * sizeof *x);
  pg_latents_read(ds, 0, 400, x);
  /* normalized by its own statistics */
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < 400 * per; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
  }
  s /= 400.0 * per;
  assert_true(fabs(s) < 1e-4);
  assert_true(fabs(sqrt(s2 / (400.0 * per) - s * s) - 1) < 1e-3);
  /* every class appears; class means differ far more than samples of a class
   * differ from their own mean (what a conditional model can learn) */
  double *cm = calloc((size_t)(10 * per), sizeof *cm);
  int counts[10] = {0};
  for (int i = 0; i < 400; i++) {
    counts[ds->labels[i]]++;
    for (int64_t k = 0; k < per; k++) cm[ds->labels[i] * per + k] += x[i * per + k];
  }
  for (int c = 0; c < 10; c++) {
    assert_true(counts[c] > 10);
    for (int64_t k = 0; k < per; k++) cm[c * per + k] /= counts[c];
  }
  double between = 0;
  for (int a = 0; a < 10; a++)
    for (int b = a + 1; b < 10; b++)
      for (int64_t k = 0; k < per; k++) between += pow(cm[a * per + k] - cm[b * per + k], 2);
  between /= 45.0 * per;
  assert_true(between > 0.2);
  free(cm);
  /* sample i depends on (seed, i) only: the same seed gives the same data */
  float one[256], scratch[1024];
  int64_t label = pg_synthetic_sample(&o, 17, one, scratch);
  assert_int_equal(label, ds->labels[17]);
  for (int k = 0; k < per; k++) one[k] = (float)((one[k] - ds->info.mean) / ds->info.std);
  assert_close(one, x + 17 * per, per, 1e-5, 1e-5);
  o.seed = 4;
  pg_synthetic_sample(&o, 17, one, scratch);
  for (int k = 0; k < per; k++) one[k] = (float)((one[k] - ds->info.mean) / ds->info.std);
  assert_true(memcmp(one, x + 17 * per, sizeof(float) * (size_t)per) != 0);
  free(x);
  pg_latents_close(ds);

  /* three channels: drawn directly (no space-to-depth); bad options */
  o.channels = 3;
  o.count = 20;
  o.classes = 40;
  assert_int_equal(pg_make_synthetic(&o, pg_test_tmp("syn3.h5")), PG_OK);
  ds = pg_latents_open(pg_test_tmp("syn3.h5"));
  assert_true(ds->info.channels == 3 && ds->info.space_to_depth == 1);
  pg_latents_close(ds);
  o.classes = 41;
  assert_int_not_equal(pg_make_synthetic(&o, pg_test_tmp("bad.h5")), PG_OK);
  assert_error_contains("--classes 41");
  assert_false(pg_test_exists(pg_test_tmp("bad.h5")));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_streamed_writer),
      cmocka_unit_test(test_disk_full),
      cmocka_unit_test(test_validation_errors),
      cmocka_unit_test(test_space_to_depth_order),
      cmocka_unit_test(test_image_latent_round_trip),
      cmocka_unit_test(test_idx),
      cmocka_unit_test(test_fashion_pipeline_on_fake_idx),
      cmocka_unit_test(test_latents_command),
      cmocka_unit_test(test_fashion_mnist_installed),
      cmocka_unit_test(test_synthetic),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
