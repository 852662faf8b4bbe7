/* Users' data in: latent files written by other tools (written here with
 * raw HDF5, as h5py would write them): the `layout` attribute (channels
 * first transposed on read, by hyperslab and in memory, 1D and 3D), shapes
 * that look channels first refused, float16/32/64 samples, every integer
 * label type, other dataset names, a scale and a shift undone on decode,
 * another file's statistics; then the commands (train, classify, sample)
 * on such files, and their errors: each names the file, the dataset and the
 * value, with a non-zero exit. */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/render/plot.h"
#include "patchgrad/render/png_image.h"

enum { N = 12, H = 4, W = 6, C = 3 };

static int setup(void **state) {
  (void)state;
  return pg_test_tmpdir_make("data_in");
}

/* Channels-last sample i: value at (y, x, c) = i + (y W + x) / 32 + c / 4,
 * exact in float16. */
static float value(int i, int y, int x, int c) { return (float)i + (float)(y * W + x) / 32.0f + (float)c / 4.0f; }

static void nhwc(float *x) {
  for (int i = 0; i < N; i++)
    for (int y = 0; y < H; y++)
      for (int xx = 0; xx < W; xx++)
        for (int c = 0; c < C; c++) x[((i * H + y) * W + xx) * C + c] = value(i, y, xx, c);
}

static void nchw(float *x) {
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++)
      for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) x[((i * C + c) * H + y) * W + xx] = value(i, y, xx, c);
}

/* IEEE half precision, as h5py writes numpy's float16. */
static hid_t float16_type(void) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_offset(t, 0);
  H5Tset_precision(t, 16);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

/* A dataset of `file_type` holding `data` (given as mem_type), with a string
 * attribute layout when not NULL. */
static void put(hid_t f, const char *name, hid_t file_type, hid_t mem_type, int rank, const hsize_t *dims,
                const void *data, const char *layout) {
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(f, name, file_type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(d >= 0);
  assert_true(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  if (layout) assert_int_equal(pg_h5_set_attr_string(d, "layout", layout), PG_OK);
  H5Dclose(d);
  H5Sclose(s);
}

static hid_t create(const char *name) {
  hid_t f = H5Fcreate(pg_test_tmp(name), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  return f;
}

static const int64_t labels12[N] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2};

/* An NCHW file of the samples above in `type`, labels int64. */
static void write_nchw(const char *name, hid_t type, const char *layout) {
  float x[N * H * W * C];
  nchw(x);
  hid_t f = create(name);
  put(f, "latents", type, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, C, H, W}, x, layout);
  put(f, "labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, (hsize_t[]){N}, labels12, NULL);
  H5Fclose(f);
}

static void expect_error(pg_latents *ds, const char *name, const char *needle) {
  assert_null(ds);
  assert_error_contains(pg_test_tmp(name));
  assert_error_contains(needle);
}

static void test_layout_names(void **state) {
  (void)state;
  pg_layout l;
  const char *names[] = {"NHWC", "NCHW", "NLC", "NCL", "NDHWC", "NCDHW"};
  for (int i = 0; i < 6; i++) {
    assert_true(pg_layout_parse(names[i], &l));
    assert_string_equal(pg_layout_name(l), names[i]);
    assert_int_equal(pg_layout_rank(l), i < 2 ? 4 : i < 4 ? 3 : 5);
    assert_int_equal(pg_layout_channels_first(l), i % 2 == 1);
  }
  assert_true(pg_layout_parse("nchw", &l) && l == PG_LAYOUT_NCHW);
  assert_true(pg_layout_parse("N, C, H, W", &l) && l == PG_LAYOUT_NCHW);
  /* what patchgrad wrote before the names */
  assert_true(pg_layout_parse("N, H, W, C: sample, row, column, channel (channels last)", &l));
  assert_int_equal(l, PG_LAYOUT_NHWC);
  assert_false(pg_layout_parse("NWHC", &l));
  assert_false(pg_layout_parse("", &l));
  assert_false(pg_layout_parse("channels first", &l));
}

/* NCHW in float16, float32 and float64: every reading road gives the NHWC
 * samples, exactly. */
static void test_channels_first_read(void **state) {
  (void)state;
  float want[N * H * W * C], got[N * H * W * C];
  nhwc(want);
  hid_t f16 = float16_type();
  const hid_t types[3] = {f16, H5T_IEEE_F32LE, H5T_IEEE_F64LE};
  const char *dtypes[3] = {"float16", "float32", "float64"};
  for (int t = 0; t < 3; t++) {
    write_nchw("nchw.h5", types[t], "NCHW");
    pg_latents *ds = pg_latents_open(pg_test_tmp("nchw.h5"));
    if (!ds) fail_msg("%s", pg_last_error());
    assert_string_equal(ds->info.dtype, dtypes[t]);
    assert_int_equal(ds->info.layout, PG_LAYOUT_NCHW);
    assert_true(ds->info.height == H && ds->info.width == W && ds->info.channels == C);
    assert_int_equal(ds->info.num_classes, 3);
    /* hyperslab reads of any block */
    memset(got, 0, sizeof got);
    assert_int_equal(pg_latents_read(ds, 0, 5, got), PG_OK);
    assert_int_equal(pg_latents_read(ds, 5, 1, got + 5 * H * W * C), PG_OK);
    assert_int_equal(pg_latents_read(ds, 6, N - 6, got + 6 * H * W * C), PG_OK);
    assert_memory_equal(got, want, sizeof want);
    pg_latents_close(ds);
    /* in memory */
    assert_non_null(ds = pg_latents_load(pg_test_tmp("nchw.h5")));
    memset(got, 0, sizeof got);
    assert_int_equal(pg_latents_read(ds, 0, N, got), PG_OK);
    assert_memory_equal(got, want, sizeof want);
    pg_latents_close(ds);
    /* the loader, from disk and from memory */
    for (int mem = 0; mem < 2; mem++) {
      pg_loader_opts lo;
      pg_loader_opts_init(&lo);
      lo.batch_size = 5;
      lo.in_memory = mem;
      pg_loader *l = pg_loader_open(pg_test_tmp("nchw.h5"), &lo);
      assert_non_null(l);
      int64_t idx[5], y[5], count;
      assert_int_equal(pg_loader_next(l, got, y, idx, &count), PG_OK);
      for (int k = 0; k < count; k++) {
        assert_memory_equal(got + k * H * W * C, want + idx[k] * H * W * C, H * W * C * sizeof(float));
        assert_int_equal(y[k], labels12[idx[k]]);
      }
      pg_loader_close(l);
    }
  }
  H5Tclose(f16);
  /* float16 is exact for these values; NHWC in float64 too */
  float x[N * H * W * C];
  nhwc(x);
  hid_t f = create("nhwc64.h5");
  put(f, "latents", H5T_IEEE_F64LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, x, "NHWC");
  H5Fclose(f);
  pg_latents *ds = pg_latents_open(pg_test_tmp("nhwc64.h5"));
  assert_non_null(ds);
  assert_int_equal(pg_latents_read(ds, 0, N, got), PG_OK);
  assert_memory_equal(got, want, sizeof want);
  assert_false(ds->info.has_labels);
  pg_latents_close(ds);
}

static void test_layout_errors(void **state) {
  (void)state;
  float x[N * H * W * C];
  nchw(x);
  /* [12, 3, 4, 6] does not look channels first (2 * 3 > 4): read as NHWC */
  write_nchw("plain.h5", H5T_IEEE_F32LE, NULL);
  pg_latents *ds = pg_latents_open(pg_test_tmp("plain.h5"));
  assert_non_null(ds);
  assert_true(ds->info.height == C && ds->info.width == H && ds->info.channels == W);
  pg_latents_close(ds);
  /* [2, 4, 32, 32] does: refused, naming the attribute and the layout */
  static float big[2 * 4 * 32 * 32];
  hid_t f = create("ambiguous.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){2, 4, 32, 32}, big, NULL);
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("ambiguous.h5")), "ambiguous.h5",
               "dataset 'latents' has shape [2, 4, 32, 32] and no attribute 'layout': it looks channels first");
  assert_error_contains("layout = \"NCHW\"");
  /* the attribute decides either way */
  f = create("said_nhwc.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){2, 4, 32, 32}, big, "NHWC");
  H5Fclose(f);
  assert_non_null(ds = pg_latents_open(pg_test_tmp("said_nhwc.h5")));
  assert_int_equal(ds->info.channels, 32);
  pg_latents_close(ds);
  /* an unknown layout, one of another rank, ranks 3 and 5 without one */
  f = create("badname.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, C, H, W}, x, "CHWN");
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("badname.h5")), "badname.h5",
               "dataset 'latents': attribute layout = \"CHWN\" is not one of NHWC, NCHW, NLC, NCL, NDHWC or NCDHW");
  f = create("badrank.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, (hsize_t[]){N, C, H * W}, x, "NCHW");
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("badrank.h5")), "badrank.h5",
               "dataset 'latents' has rank 3, shape [12, 3, 24], but its attribute layout = \"NCHW\" is for rank 4");
  f = create("rank3.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, (hsize_t[]){N, C, H * W}, x, NULL);
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("rank3.h5")), "rank3.h5",
               "has rank 3, shape [12, 3, 24], and no attribute 'layout': set it to \"NLC\" (channels last) or \"NCL\"");
  /* the attribute must be a string */
  f = create("numeric.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, C, H, W}, x, NULL);
  hid_t d = H5Dopen2(f, "latents", H5P_DEFAULT);
  assert_int_equal(pg_h5_set_attr_int(d, "layout", 4), PG_OK);
  H5Dclose(d);
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("numeric.h5")), "numeric.h5", "dataset 'latents'");
  assert_error_contains("layout");
  /* integer samples: the dtype is named */
  int32_t xi[N * H * W * C] = {0};
  f = create("ints.h5");
  put(f, "latents", H5T_STD_I32LE, H5T_NATIVE_INT32, 4, (hsize_t[]){N, H, W, C}, xi, "NHWC");
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("ints.h5")), "ints.h5",
               "dataset 'latents' has dtype int32 (expected float16, float32 or float64)");
}

/* 1D samples [L, C] come as height 1, width L; 3D ones only when asked. */
static void test_1d_and_3d(void **state) {
  (void)state;
  enum { L = 5, D = 2 };
  float x[N * C * L], want[N * L * C], got[N * L * C];
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++)
      for (int l = 0; l < L; l++) {
        x[(i * C + c) * L + l] = (float)(100 * i + 10 * c + l);
        want[(i * L + l) * C + c] = (float)(100 * i + 10 * c + l);
      }
  hid_t f = create("ncl.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, (hsize_t[]){N, C, L}, x, "NCL");
  H5Fclose(f);
  pg_latents *ds = pg_latents_open(pg_test_tmp("ncl.h5"));
  assert_non_null(ds);
  assert_true(ds->info.spatial_dims == 1 && ds->info.height == 1 && ds->info.width == L && ds->info.channels == C);
  assert_int_equal(pg_latents_read(ds, 0, N, got), PG_OK);
  assert_memory_equal(got, want, sizeof want);
  pg_latents_close(ds);

  static float v[N * C * D * H * W], vwant[N * D * H * W * C], vgot[N * D * H * W * C];
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++)
      for (int s = 0; s < D * H * W; s++) {
        v[(i * C + c) * D * H * W + s] = (float)(1000 * i + 100 * c + s);
        vwant[(i * D * H * W + s) * C + c] = (float)(1000 * i + 100 * c + s);
      }
  f = create("ncdhw.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 5, (hsize_t[]){N, C, D, H, W}, v, "NCDHW");
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("ncdhw.h5")), "ncdhw.h5",
               "dataset 'latents' holds 3D samples (shape [12, 3, 2, 4, 6], layout NCDHW)");
  const pg_data_opts o3 = {.allow_3d = true};
  ds = pg_latents_open_with(pg_test_tmp("ncdhw.h5"), &o3, false);
  if (!ds) fail_msg("%s", pg_last_error());
  assert_true(ds->info.spatial_dims == 3 && ds->info.depth == D && ds->info.height == H && ds->info.width == W &&
              ds->info.channels == C && ds->sample_numel == D * H * W * C);
  assert_int_equal(pg_latents_read(ds, 3, 4, vgot), PG_OK);
  assert_memory_equal(vgot, vwant + 3 * D * H * W * C, 4 * D * H * W * C * sizeof(float));
  char line[1024];
  pg_latents_describe(&ds->info, "ncdhw.h5", line, sizeof line);
  assert_non_null(strstr(line, "'latents' float32 [12, 3, 2, 4, 6] NCDHW, samples [2, 4, 6, 3]"));
  pg_latents_close(ds);
}

/* Labels of every integer type; out of range ones named with their value. */
static void test_label_types(void **state) {
  (void)state;
  float x[N * H * W * C];
  nhwc(x);
  const hid_t types[8] = {H5T_STD_I8LE, H5T_STD_I16LE, H5T_STD_I32LE, H5T_STD_I64LE,
                          H5T_STD_U8LE, H5T_STD_U16BE, H5T_STD_U32LE, H5T_STD_U64LE};
  for (int t = 0; t < 8; t++) {
    hid_t f = create("labels.h5");
    put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, x, NULL);
    put(f, "labels", types[t], H5T_NATIVE_INT64, 1, (hsize_t[]){N}, labels12, NULL);
    H5Fclose(f);
    pg_latents *ds = pg_latents_open(pg_test_tmp("labels.h5"));
    if (!ds) fail_msg("type %d: %s", t, pg_last_error());
    assert_memory_equal(ds->labels, labels12, sizeof labels12);
    assert_int_equal(ds->info.num_classes, 3);
    pg_latents_close(ds);
  }
  /* uint64 beyond INT64_MAX: named as stored */
  uint64_t huge[N] = {0};
  huge[7] = 18446744073709551615ULL;
  hid_t f = create("huge.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, x, NULL);
  put(f, "labels", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, (hsize_t[]){N}, huge, NULL);
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("huge.h5")), "huge.h5",
               "dataset 'labels': labels[7] = 18446744073709551615 is outside");
  /* int8 -1, and uint8 past the num_classes attribute */
  int8_t neg[N] = {0};
  neg[4] = -1;
  f = create("neg.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, x, NULL);
  put(f, "labels", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, (hsize_t[]){N}, neg, NULL);
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("neg.h5")), "neg.h5", "labels[4] = -1 is negative");
  uint8_t u[N] = {0};
  u[2] = 200;
  f = create("u8.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, x, NULL);
  put(f, "labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, (hsize_t[]){N}, u, NULL);
  assert_int_equal(pg_h5_set_attr_int(f, "num_classes", 10), PG_OK);
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("u8.h5")), "u8.h5",
               "labels[2] = 200 is outside [0, 10) (attribute num_classes = 10)");
  /* float labels: the dtype named */
  float fl[N] = {0};
  f = create("flabels.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, x, NULL);
  put(f, "labels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, (hsize_t[]){N}, fl, NULL);
  H5Fclose(f);
  expect_error(pg_latents_open(pg_test_tmp("flabels.h5")), "flabels.h5",
               "dataset 'labels' has dtype float32 (expected an integer type: int8 to int64, uint8 to uint64)");
}

/* A file of another tool: other dataset names, values stored as 4 x + 1
 * with the attributes mean 0.5 and std 2 (so the images are (4 x + 1) 2 + 0.5). */
static void write_foreign(const char *name, bool attrs) {
  float x[N * H * W * C];
  nchw(x);
  for (int i = 0; i < N * H * W * C; i++) x[i] = 4 * x[i] + 1;
  hid_t f = create(name);
  assert_true(H5Gclose(H5Gcreate2(f, "vae", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0);
  put(f, "vae/z", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, C, H, W}, x, "NCHW");
  put(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT64, 1, (hsize_t[]){N}, labels12, NULL);
  if (attrs) {
    assert_int_equal(pg_h5_set_attr_double(f, "mean", 0.5), PG_OK);
    assert_int_equal(pg_h5_set_attr_double(f, "std", 2.0), PG_OK);
  }
  H5Fclose(f);
}

static void test_keys_scale_shift(void **state) {
  (void)state;
  write_foreign("foreign.h5", true);
  float want[N * H * W * C], got[N * H * W * C];
  nhwc(want);
  /* the default names are not there */
  expect_error(pg_latents_open(pg_test_tmp("foreign.h5")), "foreign.h5", "missing dataset 'latents'");
  pg_data_opts o = {.data_key = "vae/z", .label_key = "y", .scale = 0.25, .shift = 1};
  pg_latents *ds = pg_latents_open_with(pg_test_tmp("foreign.h5"), &o, false);
  if (!ds) fail_msg("%s", pg_last_error());
  assert_int_equal(pg_latents_read(ds, 0, N, got), PG_OK);
  assert_close(got, want, N * H * W * C, 1e-6, 0);
  assert_memory_equal(ds->labels, labels12, sizeof labels12);
  assert_string_equal(ds->info.data_key, "vae/z");
  assert_string_equal(ds->info.label_key, "y");
  /* the normalisation now describes the values as read: decoding undoes
   * the scale and the shift, giving the file's own images */
  assert_true(fabs(ds->info.std - 8.0) < 1e-12 && fabs(ds->info.mean - 2.5) < 1e-12);
  assert_true(fabs(ds->info.read_scale - 0.25) < 1e-15 && fabs(ds->info.read_offset + 0.25) < 1e-15);
  const pg_latent_transform read = pg_latent_transform_of(&ds->info), file = {0, 1, 0.5, 2.0};
  float stored[H * W * C], scratch[H * W * C];
  uint8_t a[H * W * C], b[H * W * C];
  for (int k = 0; k < H * W * C; k++) stored[k] = 4 * want[k] + 1;
  /* values in [0, 1] after the file's transform: scale both down first */
  const pg_latent_transform read_small = {0, 1, read.mean / 64, read.std / 64},
                            file_small = {0, 1, file.mean / 64, file.std / 64};
  assert_int_equal(pg_latent_to_image(&read_small, got, H, W, C, scratch, a), PG_OK);
  assert_int_equal(pg_latent_to_image(&file_small, stored, H, W, C, scratch, b), PG_OK);
  assert_memory_equal(a, b, sizeof a);
  char line[1024];
  pg_latents_describe(&ds->info, "foreign.h5", line, sizeof line);
  assert_non_null(strstr(line, "foreign.h5: 'vae/z' float32 [12, 3, 4, 6] NCHW, samples [4, 6, 3], read as x * 0.25 - 0.25"));
  assert_non_null(strstr(line, "normalisation mean 2.5, std 8"));
  pg_latents_close(ds);

  /* a missing label dataset that was asked for, a bad scale */
  o.label_key = "labels";
  expect_error(pg_latents_open_with(pg_test_tmp("foreign.h5"), &o, false), "foreign.h5",
               "no dataset 'labels' (the labels' dataset asked for)");
  o = (pg_data_opts){.data_key = "z"};
  expect_error(pg_latents_open_with(pg_test_tmp("foreign.h5"), &o, false), "foreign.h5",
               "no dataset 'z' (the samples' dataset asked for)");
  o = (pg_data_opts){.data_key = "vae/z", .scale = -2};
  expect_error(pg_latents_open_with(pg_test_tmp("foreign.h5"), &o, false), "foreign.h5", "read scale -2");
  o = (pg_data_opts){.data_key = "vae/z", .scale = 1e300};
  expect_error(pg_latents_open_with(pg_test_tmp("foreign.h5"), &o, false), "foreign.h5", "sample 0 holds inf");
  assert_error_contains("read as x * 1e+300");
}

static void test_stats_from(void **state) {
  (void)state;
  float want[N * H * W * C], got[N * H * W * C];
  nhwc(want);
  /* a "training split" with attributes mean 1.5, std 0.5, written by the
   * same tool (the same dataset names) */
  hid_t f = create("train.h5");
  assert_true(H5Gclose(H5Gcreate2(f, "vae", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0);
  put(f, "vae/z", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, want, "NHWC");
  put(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT64, 1, (hsize_t[]){N}, labels12, NULL);
  assert_int_equal(pg_h5_set_attr_double(f, "mean", 1.5), PG_OK);
  assert_int_equal(pg_h5_set_attr_double(f, "std", 0.5), PG_OK);
  H5Fclose(f);
  /* a held-out file of other statistics (0.5, 2) and values 4 x + 1:
   * brought to the training split's, x' = ((4 x + 1) 2 + 0.5 - 1.5) / 0.5 */
  write_foreign("held.h5", true);
  pg_data_opts o = {.data_key = "vae/z", .label_key = "y", .stats_from = pg_test_tmp("train.h5")};
  pg_latents *ds = pg_latents_open_with(pg_test_tmp("held.h5"), &o, false);
  if (!ds) fail_msg("%s", pg_last_error());
  assert_int_equal(pg_latents_read(ds, 0, N, got), PG_OK);
  for (int i = 0; i < N * H * W * C; i++) want[i] = ((4 * want[i] + 1) * 2 + 0.5f - 1.5f) / 0.5f;
  assert_close(got, want, N * H * W * C, 1e-4, 1e-6);
  assert_true(ds->info.mean == 1.5 && ds->info.std == 0.5);
  pg_latents_close(ds);
  /* the training file itself is read as it is */
  o.stats_from = pg_test_tmp("train.h5");
  assert_non_null(ds = pg_latents_open_with(pg_test_tmp("train.h5"), &o, false));
  assert_true(ds->info.read_scale == 1 && ds->info.read_offset == 0);
  pg_latents_close(ds);
  /* without attributes: the statistics of its values, so that it is read
   * with mean 0 and std 1 */
  write_foreign("noattrs.h5", false);
  o = (pg_data_opts){.data_key = "vae/z", .label_key = "y", .stats_from = pg_test_tmp("noattrs.h5")};
  assert_non_null(ds = pg_latents_open_with(pg_test_tmp("noattrs.h5"), &o, false));
  assert_true(fabs(ds->info.value_mean) < 1e-5 && fabs(ds->info.value_std - 1) < 1e-5);
  pg_latents_close(ds);
  /* a statistics file that is missing, or constant */
  f = create("rt.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, got, NULL);
  H5Fclose(f);
  o.stats_from = pg_test_tmp("nothere.h5");
  assert_null(pg_latents_open_with(pg_test_tmp("noattrs.h5"), &o, false));
  assert_error_contains("nothere.h5");
  float zeros[N * H * W * C] = {0};
  f = create("flat.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){N, H, W, C}, zeros, NULL);
  H5Fclose(f);
  o = (pg_data_opts){.stats_from = pg_test_tmp("flat.h5")};
  expect_error(pg_latents_open_with(pg_test_tmp("rt.h5"), &o, false), "rt.h5", "the statistics of");
  assert_error_contains("flat.h5 are mean 0, std 0 (of its values");
}

static void test_read_tensor(void **state) {
  (void)state;
  float want[N * H * W * C];
  nhwc(want);
  write_nchw("samples.h5", H5T_IEEE_F32LE, "NCHW");
  hid_t f = pg_h5_open(pg_test_tmp("samples.h5"), false);
  pg_tensor *t = NULL;
  assert_int_equal(pg_latents_read_tensor(f, "latents", pg_test_tmp("samples.h5"), &t), PG_OK);
  assert_true(t->ndim == 4 && t->shape[0] == N && t->shape[1] == H && t->shape[2] == W && t->shape[3] == C);
  assert_memory_equal(t->data, want, sizeof want);
  pg_tensor_free(t);
  H5Fclose(f);
}

static void test_class_names(void **state) {
  (void)state;
  char b[64];
  const char *names = "0 T-shirt/top, 1 Trouser, 2 Pullover, 10 Ankle boot";
  assert_string_equal(pg_latents_class_name(names, 0, b, sizeof b), "T-shirt/top");
  assert_string_equal(pg_latents_class_name(names, 2, b, sizeof b), "Pullover");
  assert_string_equal(pg_latents_class_name(names, 10, b, sizeof b), "Ankle boot");
  assert_string_equal(pg_latents_class_name(names, 1, b, sizeof b), "Trouser");
  assert_string_equal(pg_latents_class_name(names, 3, b, sizeof b), "");
  /* cut lists, names with commas, and a description that is not a list */
  assert_string_equal(pg_latents_class_name("0 a, b, 1 c, ... (300 classes: see /classes)", 1, b, sizeof b), "c");
  assert_string_equal(pg_latents_class_name("0 a, b, 1 c", 0, b, sizeof b), "a, b");
  assert_string_equal(pg_latents_class_name("class k: shape k % 10 (0 disk, 1 square)", 1, b, sizeof b), "");
}

/* ---- Pictures ---- */

static int count_value(const pg_image *im, int x0, int x1, uint8_t v) {
  int n = 0;
  for (int y = 0; y < im->height; y++)
    for (int x = x0; x < x1; x++) n += im->pixels[((size_t)y * (size_t)im->width + (size_t)x) * (size_t)im->channels] == v;
  return n;
}

static void test_font_zoom_labels(void **state) {
  (void)state;
  /* capitals; a small letter is its capital; the exponent's e stays small */
  pg_image *a = pg_image_new(40, 7, 1), *b = pg_image_new(40, 7, 1);
  const uint8_t white[3] = {255, 255, 255};
  pg_draw_text(a, 1, 1, "Step", 1, white);
  pg_draw_text(b, 1, 1, "STEP", 1, white);
  assert_memory_equal(a->pixels, b->pixels, 40 * 7);
  assert_int_equal(count_value(a, 0, 40, 255), 7 + 7 + 10 + 8); /* S T E P */
  memset(a->pixels, 0, 40 * 7);
  memset(b->pixels, 0, 40 * 7);
  pg_draw_text(a, 1, 1, "1e", 1, white);
  pg_draw_text(b, 1, 1, "1E", 1, white);
  assert_memory_not_equal(a->pixels, b->pixels, 40 * 7);
  assert_int_equal(pg_text_width("STEP", 2), 30);
  pg_image_free(a);
  pg_image_free(b);
  /* nearest-neighbour zoom */
  pg_image *im = pg_image_new(2, 1, 3);
  const uint8_t px[6] = {1, 2, 3, 4, 5, 6};
  memcpy(im->pixels, px, 6);
  pg_image *z = pg_image_zoom(im, 3);
  assert_true(z->width == 6 && z->height == 3);
  for (int y = 0; y < 3; y++)
    for (int x = 0; x < 6; x++) assert_memory_equal(z->pixels + (y * 6 + x) * 3, px + (x / 3) * 3, 3);
  assert_null(pg_image_zoom(im, 0));
  assert_error_contains("zoomed 0 times");
  /* row labels in a white margin, black text at the row */
  const char *labels[2] = {"0 CAT", NULL};
  const int centre[2] = {1, 2};
  pg_image *l = pg_image_label_rows(z, 2, centre, labels, 1);
  assert_non_null(l);
  const int margin = l->width - z->width;
  assert_int_equal(margin, pg_text_width("0 CAT", 1) + 8);
  assert_memory_equal(l->pixels + (size_t)margin * 3, z->pixels, 6 * 3);
  assert_true(count_value(l, 0, margin, 0) > 0);
  pg_image_free(l);
  pg_image_free(z);
  pg_image_free(im);
}

static bool has_colour(const pg_image *im, int x0, int y0, int x1, int y1, uint8_t r, uint8_t g, uint8_t b) {
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      const uint8_t *p = im->pixels + ((size_t)y * (size_t)im->width + (size_t)x) * 3;
      if (p[0] == r && p[1] == g && p[2] == b) return true;
    }
  return false;
}

static void test_plot_labels_and_legend(void **state) {
  (void)state;
  float loss[50], vx[5], vy[5];
  for (int i = 0; i < 50; i++) loss[i] = 2.0f * expf(-i / 20.0f);
  for (int i = 0; i < 5; i++) {
    vx[i] = (float)(10 * i);
    vy[i] = 2.2f * expf(-vx[i] / 20.0f);
  }
  pg_plot_curve curves[2] = {{NULL, loss, 50}, {vx, vy, 5}};
  pg_plot_opts o;
  pg_plot_opts_init(&o);
  o.log_y = true;
  pg_image *plain = pg_plot_lines(&o, 2, curves);
  static const char *const names[2] = {"train", "validation"};
  o.x_label = "step";
  o.y_label = "loss";
  o.names = names;
  pg_image *im = pg_plot_lines(&o, 2, curves);
  assert_non_null(plain);
  assert_non_null(im);
  /* "loss" in the top left corner, "step" under the x axis, nothing there
   * without them */
  assert_true(has_colour(im, 0, 0, 30, 18, 0, 0, 0));
  assert_false(has_colour(plain, 0, 0, 30, 14, 0, 0, 0));
  assert_true(has_colour(im, 300, im->height - 24, 340, im->height - 10, 0, 0, 0));
  /* the legend: a framed white box in the top right with both colours */
  const int x0 = im->width - 220, y0 = 30;
  assert_true(has_colour(im, x0, y0, im->width - 16, y0 + 40, 160, 160, 160));
  assert_true(has_colour(im, x0, y0, im->width - 16, y0 + 40, 31, 119, 180));
  assert_true(has_colour(im, x0, y0, im->width - 16, y0 + 40, 255, 127, 14));
  assert_int_equal(pg_png_write(pg_test_tmp("loss_legend.png"), im), PG_OK);
  pg_image_free(im);
  /* a curve without a point has no legend entry */
  curves[1].n = 0;
  im = pg_plot_lines(&o, 2, curves);
  assert_false(has_colour(im, x0, y0, im->width - 16, y0 + 40, 255, 127, 14));
  pg_image_free(im);
  pg_image_free(plain);
}

static void test_sheet(void **state) {
  (void)state;
  /* 6 latents [2, 2, 4] of 4 x 4 gray images: 3 a row, 2 rows */
  pg_latent_transform tf = {.pad = 0, .factor = 2, .mean = 0, .std = 1};
  float lat[6 * 16];
  for (int i = 0; i < 6 * 16; i++) lat[i] = (float)(i % 16) / 15.0f;
  pg_image *grid = pg_latents_to_grid(&tf, 6, lat, 2, 2, 4, 3, 2);
  const int gw = grid->width;
  assert_int_equal(gw, 2 + 3 * 6);
  pg_image *sheet = pg_latents_to_sheet(&tf, 6, lat, 2, 2, 4, 3, 0, NULL);
  const int k = (PG_SHEET_WIDTH + gw - 1) / gw;
  assert_true(sheet->width == gw * k && sheet->height == grid->height * k && sheet->width >= 512);
  /* each pixel a k x k block of the grid's */
  for (int y = 0; y < sheet->height; y += 7)
    for (int x = 0; x < sheet->width; x += 5)
      assert_int_equal(sheet->pixels[y * sheet->width + x], grid->pixels[(y / k) * gw + x / k]);
  pg_image_free(sheet);
  const char *labels[2] = {"0 A", "1 B"};
  sheet = pg_latents_to_sheet(&tf, 6, lat, 2, 2, 4, 3, 2, labels);
  assert_true(sheet->width > gw * 2 && sheet->height == grid->height * 2);
  pg_image_free(sheet);
  pg_image_free(grid);
}

/* ---- The commands ---- */

static const char *patchgrad(void) {
  static char p[600];
  snprintf(p, sizeof p, "OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 '%s/patchgrad'", PG_BUILD_DIR);
  return p;
}

/* Synthetic latents written channels first with other names and a scale,
 * as another tool might: z = 3 x + 2 in "z" [N, C, H, W], labels "y" uint8. */
static void write_tool_file(void) {
  static char out[4096];
  assert_int_equal(pg_test_run(out, sizeof out, "%s latents --source synthetic --count 64 --size 8 --classes 3 --out '%s'",
                               patchgrad(), pg_test_tmp("syn.h5")), 0);
  pg_latents *ds = pg_latents_load(pg_test_tmp("syn.h5"));
  assert_non_null(ds);
  const int64_t n = ds->info.n, h = ds->info.height, w = ds->info.width, c = ds->info.channels;
  float *z = malloc((size_t)(n * h * w * c) * sizeof *z);
  uint8_t *y = malloc((size_t)n);
  for (int64_t i = 0; i < n; i++) {
    y[i] = (uint8_t)ds->labels[i];
    for (int64_t p = 0; p < h * w; p++)
      for (int64_t k = 0; k < c; k++) z[(i * c + k) * h * w + p] = 3 * ds->all[(i * h * w + p) * c + k] + 2;
  }
  hid_t f = create("tool.h5");
  put(f, "z", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){(hsize_t)n, (hsize_t)c, (hsize_t)h, (hsize_t)w}, z, "NCHW");
  put(f, "y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, (hsize_t[]){(hsize_t)n}, y, NULL);
  assert_int_equal(pg_h5_set_attr_string(f, "class_names", "0 disk, 1 square, 2 ring"), PG_OK);
  H5Fclose(f);
  /* the same without the layout */
  f = create("nolayout.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){(hsize_t)n, (hsize_t)c, (hsize_t)h, (hsize_t)w}, z, NULL);
  put(f, "labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, (hsize_t[]){(hsize_t)n}, y, NULL);
  H5Fclose(f);
  free(z);
  free(y);
  pg_latents_close(ds);
}

static void test_commands_on_tool_files(void **state) {
  (void)state;
  write_tool_file();
  static char out[1 << 16];
  const char *dit = "--hidden 16 --depth 1 --heads 2 --batch 16 --steps 4 --threads 1";
  /* train: the data line, and the scale undone in the checkpoint's transform */
  int rc = pg_test_run(out, sizeof out, "%s train --data '%s' --data-key z --label-key y --shift 2 --scale 0.3333333333333333 "
                       "%s --cols 1 --sample-steps 2 --out '%s'", patchgrad(), pg_test_tmp("tool.h5"), dit,
                       pg_test_tmp("run"));
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "train: data "));
  assert_non_null(strstr(out, "tool.h5: 'z' float32 [64, 4, 8, 8] NCHW, samples [8, 8, 4], read as x * 0.333333 - 0.666667"));
  pg_kv config;
  pg_kv_init(&config);
  pg_checkpoint ck = {.config = &config};
  assert_int_equal(pg_checkpoint_load(pg_test_tmp("run/ckpt.h5"), &ck), PG_OK);
  double std = 0, mean = 0;
  const char *names = NULL;
  assert_int_equal(pg_kv_get_double(&config, "data_std", &std), 1);
  assert_int_equal(pg_kv_get_double(&config, "data_mean", &mean), 1);
  assert_true(fabs(std - 3.0) < 1e-9 && fabs(mean - 2.0) < 1e-9);
  assert_int_equal(pg_kv_get_string(&config, "data_class_names", &names), 1);
  assert_string_equal(names, "0 disk, 1 square, 2 ring");
  pg_kv_free(&config);
  /* a resume reads the data as the run did, or is refused */
  rc = pg_test_run(out, sizeof out, "%s train --data '%s' --data-key z --label-key y --shift 2 --scale 0.5 %s --steps 6 "
                   "--cols 0 --resume '%s' --out '%s'", patchgrad(), pg_test_tmp("tool.h5"), dit, pg_test_tmp("run/ckpt.h5"),
                   pg_test_tmp("run"));
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(out, "--scale/--shift/--stats-from (the values' scale) 0.5 differs from the checkpoint's 0.333333"));
  /* the end-of-run sheet is magnified and labelled */
  pg_image *sheet = pg_png_read(pg_test_tmp("run/samples.png"));
  assert_non_null(sheet);
  assert_true(sheet->width >= 512);
  pg_image_free(sheet);
  /* sample: --zoom, labels from the checkpoint */
  rc = pg_test_run(out, sizeof out, "%s sample --ckpt '%s' --out '%s' --sample-steps 2 --cols 2 --zoom 3", patchgrad(),
                   pg_test_tmp("run/ckpt.h5"), pg_test_tmp("sheet.png"));
  assert_int_equal(rc, 0);
  sheet = pg_png_read(pg_test_tmp("sheet.png"));
  /* 2 images of 8 pixels a row (the file has no space_to_depth: channel 0
   * of the latents) with 2 between, times 3, and the labels' margin */
  const int grid = 3 * (2 + 2 * 10), margin = pg_text_width("1 SQUARE", 2) + 12;
  assert_int_equal(sheet->width, grid + margin);
  assert_int_equal(sheet->height, 3 * (2 + 3 * 10));
  assert_true(count_value(sheet, 0, margin, 0) > 100); /* text in the margin */
  pg_image_free(sheet);
  rc = pg_test_run(out, sizeof out, "%s sample --ckpt '%s' --out '%s' --zoom 0", patchgrad(), pg_test_tmp("run/ckpt.h5"),
                   pg_test_tmp("sheet0.png"));
  assert_int_equal(rc, 2);
  assert_non_null(strstr(out, "--zoom '0' is not an integer in [1, 64]"));

  /* validation data of its own statistics, brought to the training split's */
  rc = pg_test_run(out, sizeof out, "%s latents --source synthetic --count 32 --size 8 --classes 3 --seed 9 --out '%s'",
                   patchgrad(), pg_test_tmp("val.h5"));
  assert_int_equal(rc, 0);
  rc = pg_test_run(out, sizeof out, "%s train --data '%s' --val-data '%s' --stats-from '%s' %s --cols 0 --out '%s'",
                   patchgrad(), pg_test_tmp("syn.h5"), pg_test_tmp("val.h5"), pg_test_tmp("syn.h5"), dit,
                   pg_test_tmp("run3"));
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "validation loss"));
  /* classify train and validation data through the same options */
  rc = pg_test_run(out, sizeof out, "%s classify train --data '%s' --val-data '%s' --data-key z --label-key y "
                   "--steps 3 --batch 16 --hidden 16 --depth 1 --heads 2 --patch 2 --threads 1 --out '%s' --quiet",
                   patchgrad(), pg_test_tmp("tool.h5"), pg_test_tmp("tool.h5"), pg_test_tmp("cls"));
  assert_int_equal(rc, 0);
  /* the shape that looks channels first, without the attribute: refused */
  rc = pg_test_run(out, sizeof out, "%s classify train --data '%s' --steps 3 --batch 16 --threads 1 --out '%s'", patchgrad(),
                   pg_test_tmp("nolayout.h5"), pg_test_tmp("cls2"));
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out, "nolayout.h5: dataset 'latents' has shape [64, 4, 8, 8] and no attribute 'layout'"));
  rc = pg_test_run(out, sizeof out, "%s train --data '%s' %s --out '%s'", patchgrad(), pg_test_tmp("nolayout.h5"), dit,
                   pg_test_tmp("run2"));
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out, "looks channels first (4 channels of 8 x 8)"));
}

/* Bad input on every road: the file, the dataset, the value; exit 1 (2
 * for a bad flag). */
static void test_command_errors(void **state) {
  (void)state;
  static char out[1 << 16];
  if (!pg_test_exists(pg_test_tmp("tool.h5"))) write_tool_file();
  const char *dit = "--hidden 16 --depth 1 --heads 2 --batch 16 --steps 2 --threads 1 --cols 0";
  struct {
    const char *args, *needle;
    int rc;
  } cases[] = {
      {"train --data '%s' --data-key nope", "tool.h5: no dataset 'nope' (the samples' dataset asked for)", 1},
      {"train --data '%s' --data-key z --label-key labels", "tool.h5: no dataset 'labels' (the labels' dataset asked for)", 1},
      {"train --data '%s' --data-key z --label-key y --scale 0", "--scale '0' is not a number in [1e-30, 1e+30]", 2},
      {"train --data '%s' --data-key z --label-key y --shift nan", "--shift 'nan' is not a number", 2},
      {"train --data '%s' --data-key z --label-key y --stats-from /nonexistent/t.h5", "/nonexistent/t.h5", 1},
      {"train --data '%s' --data-key y", "tool.h5: dataset 'y' has dtype uint8 (expected float16, float32 or float64)", 1},
      {"classify train --data '%s' --data-key z --label-key z", "tool.h5: dataset 'z' has dtype float32 (expected an integer type", 1},
      {"vae train --data '%s' --data-key z --label-key y --shift -1e30 --scale 1e30", "tool.h5: dataset 'z': sample 0 holds inf", 1},
  };
  /* a label out of range, in a file of int32 labels */
  static float x[16 * 8 * 8 * 4];
  int32_t y[16] = {0};
  y[9] = 5;
  hid_t f = create("badlabel.h5");
  put(f, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, (hsize_t[]){16, 8, 8, 4}, x, "NHWC");
  put(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, (hsize_t[]){16}, y, NULL);
  assert_int_equal(pg_h5_set_attr_int(f, "num_classes", 3), PG_OK);
  H5Fclose(f);
  int rc = pg_test_run(out, sizeof out, "%s classify train --data '%s' --steps 2 --batch 8 --threads 1 --out '%s'", patchgrad(),
                       pg_test_tmp("badlabel.h5"), pg_test_tmp("err"));
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out, "badlabel.h5: dataset 'labels': labels[9] = 5 is outside [0, 3) (attribute num_classes = 3)"));
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char args[1024];
    snprintf(args, sizeof args, cases[i].args, pg_test_tmp("tool.h5"));
    rc = pg_test_run(out, sizeof out, "%s %s %s --out '%s'", patchgrad(), args,
                         strncmp(args, "train", 5) ? "--steps 2 --batch 16 --threads 1" : dit, pg_test_tmp("err"));
    assert_int_equal(rc, cases[i].rc);
    if (!strstr(out, cases[i].needle)) fail_msg("case %zu: no '%s' in: %s", i, cases[i].needle, out);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout_names),
      cmocka_unit_test(test_channels_first_read),
      cmocka_unit_test(test_layout_errors),
      cmocka_unit_test(test_1d_and_3d),
      cmocka_unit_test(test_label_types),
      cmocka_unit_test(test_keys_scale_shift),
      cmocka_unit_test(test_stats_from),
      cmocka_unit_test(test_read_tensor),
      cmocka_unit_test(test_class_names),
      cmocka_unit_test(test_font_zoom_labels),
      cmocka_unit_test(test_plot_labels_and_legend),
      cmocka_unit_test(test_sheet),
      cmocka_unit_test(test_commands_on_tool_files),
      cmocka_unit_test(test_command_errors),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
