/* Hostile files given to the readers: FIFOs and other non-regular files
 * (refused, never blocking), absurd declared sizes (refused with the size
 * needed and the memory available, never overflowed or allocated), labels
 * near INT64_MAX, transforms that cannot be decoded, filters the HDF5
 * library lacks (named), flipped bits (reported as damage by HDF5's
 * checksums, never used and never a crash), and every failed open leaving no
 * HDF5 object open. */
#include "testutil.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "patchgrad/data/idx.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/io/limits.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/render/png_image.h"

static int setup(void **state) {
  (void)state;
  pg_h5_quiet();
  return pg_test_tmpdir_make("hostile");
}

/* No HDF5 file, dataset, group, attribute or type is left open. */
#define assert_nothing_open() assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0)

/* ---- Running a reader that might block or crash ---- */

typedef bool (*reader_fn)(const char *path);

/* Runs fn(arg) in a child process and returns its exit status; the test
 * fails when the child has not finished within `seconds` (a reader blocked
 * on a FIFO, or looping) or died of a signal. cmocka's asserts are not used
 * in the child. */
static int run_child(int (*fn)(const void *), const void *arg, const char *what, int seconds) {
  fflush(stdout);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(fn(arg));
  int status = 0;
  for (int tick = 0; tick < seconds * 1000; tick++) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      if (WIFSIGNALED(status)) fail_msg("%s: the reader died of signal %d", what, WTERMSIG(status));
      return WEXITSTATUS(status);
    }
    struct timespec t = {0, 1000 * 1000};
    nanosleep(&t, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  fail_msg("%s: the reader did not return within %d s (blocked or looping)", what, seconds);
  return -1;
}

typedef struct {
  reader_fn fn;
  const char *path;
} reader_call;

static int call_reader(const void *arg) {
  const reader_call *c = arg;
  return c->fn(c->path) ? 0 : 1;
}

/* fn(path) returns true (refused as expected) in a child, in time. */
static void assert_refuses_in_time(reader_fn fn, const char *path, int seconds) {
  reader_call c = {fn, path};
  assert_int_equal(run_child(call_reader, &c, path, seconds), 0);
}

/* Each reader: refused, with a message that names the file as not regular. */
static bool refused(const char *path, bool failed) {
  if (!failed) return false;
  if (!strstr(pg_last_error(), path) || !strstr(pg_last_error(), "not a regular file")) {
    fprintf(stderr, "unexpected message: %s\n", pg_last_error());
    return false;
  }
  return true;
}
static bool latents_reader(const char *path) { return refused(path, !pg_latents_open(path)); }
static bool loader_reader(const char *path) {
  pg_loader_opts o;
  pg_loader_opts_init(&o);
  return refused(path, !pg_loader_open(path, &o));
}
static bool checkpoint_reader(const char *path) {
  int64_t step;
  return refused(path, pg_checkpoint_load(path, &(pg_checkpoint){.step = &step}) != PG_OK);
}
static bool idx_reader(const char *path) {
  pg_idx idx;
  return refused(path, pg_idx_read(path, 0, &idx) != PG_OK);
}
static bool png_reader(const char *path) { return refused(path, !pg_png_read(path)); }
static bool check_command(const char *path) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "%s/patchgrad check '%s' >/dev/null 2>&1", PG_BUILD_DIR, path);
  int rc = system(cmd);
  return WIFEXITED(rc) && WEXITSTATUS(rc) == 2;
}
static bool train_command(const char *path) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "%s/patchgrad train --data '%s' --steps 1 --quiet --out '%s' 2>&1 | "
           "grep -q 'not a regular file'", PG_BUILD_DIR, path, pg_test_tmp("fifo-run"));
  return system(cmd) == 0;
}

static void test_fifo_and_folders_refused(void **state) {
  (void)state;
  char fifo[600];
  snprintf(fifo, sizeof fifo, "%s", pg_test_tmp("pipe.h5"));
  assert_int_equal(mkfifo(fifo, 0600), 0);
  reader_fn readers[] = {latents_reader, loader_reader, checkpoint_reader, idx_reader,
                         png_reader, check_command, train_command};
  for (size_t i = 0; i < sizeof readers / sizeof *readers; i++)
    assert_refuses_in_time(readers[i], fifo, 20);
  /* a folder and a character device are refused the same way */
  assert_null(pg_latents_open(pg_test_tmpdir()));
  assert_error_contains("is a folder, not a regular file");
  assert_null(pg_latents_open("/dev/zero"));
  assert_error_contains("is a character device");
  pg_idx idx;
  assert_int_not_equal(pg_idx_read("/dev/zero", 0, &idx), PG_OK); /* would never end */
  assert_error_contains("not a regular file");
  assert_nothing_open();
}

/* ---- Files written with raw HDF5 ---- */

static hid_t raw_create(const char *name) {
  hid_t f = H5Fcreate(pg_test_tmp(name), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  return f;
}

/* A dataset of the given shape; chunked by `chunk` when not NULL, written
 * from data when not NULL (else nothing is written: a tiny file). */
static void raw_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                        const hsize_t *chunk, const void *data) {
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk) assert_true(H5Pset_chunk(dcpl, rank, chunk) >= 0);
  hid_t d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  assert_true(d >= 0);
  if (data) assert_true(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(s);
}

static bool open_refused_quickly(const char *path) {
  pg_latents *ds = pg_latents_open(path);
  pg_latents_close(ds);
  return ds == NULL;
}

static void expect_refused(const char *name, const char *needle) {
  const char *path = pg_test_tmp(name);
  assert_refuses_in_time(open_refused_quickly, path, 20); /* never a hang or a crash */
  assert_null(pg_latents_open(path));
  assert_error_contains(path);
  assert_error_contains(needle);
  assert_null(pg_latents_load(path));
  assert_error_contains(needle);
  assert_nothing_open();
}

static void test_absurd_sizes(void **state) {
  (void)state;
  /* 2^61 samples, chunked, nothing written: a file of a few KB */
  hid_t f = raw_create("huge_n.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){1ull << 61, 4, 4, 4},
              (hsize_t[]){1, 4, 4, 4}, NULL);
  H5Fclose(f);
  expect_refused("huge_n.h5", "more elements than a 64-bit size can count");

  /* 2^40 samples: the size needed and the memory available */
  f = raw_create("tera.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){1ull << 40, 4, 4, 4},
              (hsize_t[]){1, 4, 4, 4}, NULL);
  H5Fclose(f);
  expect_refused("tera.h5", "needs 16.0 TB of memory");

  /* 2^31 x 2^31 images: the sample's size overflows 64 bits */
  f = raw_create("wide.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){4, 1ull << 31, 1ull << 31, 4},
              (hsize_t[]){1, 1024, 1024, 4}, NULL);
  H5Fclose(f);
  expect_refused("wide.h5", "64-bit");

  /* a modest size, declared but never written: no endless fill values */
  f = raw_create("unwritten.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){1000, 4, 4, 4},
              (hsize_t[]){1, 4, 4, 4}, NULL);
  H5Fclose(f);
  expect_refused("unwritten.h5", "declares 1000 chunks but stores 0");

  /* contiguous, and the file cut short */
  float x[4 * 8] = {0};
  f = raw_create("cut.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){4, 2, 2, 2}, NULL, x);
  H5Fclose(f);
  struct stat st;
  assert_int_equal(stat(pg_test_tmp("cut.h5"), &st), 0);
  assert_int_equal(truncate(pg_test_tmp("cut.h5"), st.st_size - 64), 0);
  assert_null(pg_latents_open(pg_test_tmp("cut.h5")));
  assert_nothing_open();

  /* labels near INT64_MAX without num_classes: max + 1 would overflow */
  int64_t labels[4] = {0, 1, INT64_MAX, 2};
  f = raw_create("biglabel.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){4, 2, 2, 2}, NULL, x);
  raw_dataset(f, "labels", H5T_NATIVE_INT64, 1, (hsize_t[]){4}, NULL, labels);
  H5Fclose(f);
  expect_refused("biglabel.h5", "labels[2] = 9223372036854775807 is outside [0, 16777216)");

  /* a pad or factor that cannot be decoded, a float where an integer belongs */
  const struct {
    const char *attr;
    double value;
    bool as_int;
    const char *needle;
  } bad[] = {
      {"pad", -1, true, "pad = -1"},
      {"pad", -100, true, "pad = -100"},
      {"space_to_depth", 4294967296.0, true, "space_to_depth = 4294967296"},
      {"space_to_depth", 2, true, "do not divide by space_to_depth^2 = 4"},
      {"pad", 2.5, false, "attribute 'pad' is 2.5, not an integer"},
      {"std", NAN, false, "std = nan"},
      {"num_classes", 1e30, false, "not an integer"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char name[64];
    snprintf(name, sizeof name, "attr%zu.h5", i);
    f = raw_create(name);
    raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){4, 2, 2, 2}, NULL, x);
    if (bad[i].as_int) pg_h5_set_attr_int(f, bad[i].attr, (int64_t)bad[i].value);
    else pg_h5_set_attr_double(f, bad[i].attr, bad[i].value);
    H5Fclose(f);
    expect_refused(name, bad[i].needle);
  }

  /* the same attributes decoded straight from a transform: never an overflow */
  float lat[2 * 2 * 4] = {0};
  pg_latent_transform tfs[] = {{-1, 1, 0, 1}, {-100, 1, 0, 1}, {0, (int64_t)1 << 32, 0, 1},
                               {0, 2, 0, 0}, {0, 2, NAN, 1}};
  for (size_t i = 0; i < sizeof tfs / sizeof *tfs; i++) {
    assert_null(pg_latents_to_grid(&tfs[i], 1, lat, 2, 2, 4, 1, 0));
    assert_error_contains("pg_latent_to_image");
  }
}

static void test_writers_refuse_up_front(void **state) {
  (void)state;
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = 1000000000;
  info.height = info.width = 16;
  info.channels = 4;
  assert_null(pg_latents_create(pg_test_tmp("billion.h5"), &info));
  assert_error_contains("1000000000 samples of [16, 16, 4]");
  assert_error_contains("TB of memory");
  assert_error_contains("available");
  /* the command says so at once, before generating anything */
  char out[4096];
  time_t t0 = time(NULL);
  int rc = pg_test_run(out, sizeof out, "%s/patchgrad latents --source synthetic --count 1000000000 "
                       "--out %s", PG_BUILD_DIR, pg_test_tmp("billion.h5"));
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out, "of memory"));
  assert_true(time(NULL) - t0 < 30);
  assert_false(pg_test_exists(pg_test_tmp("billion.h5")));
  /* labels too large for num_classes = max + 1 */
  info.n = 2;
  info.height = info.width = info.channels = 1;
  info.has_labels = true;
  pg_latents_writer *w = pg_latents_create(pg_test_tmp("lab.h5"), &info);
  assert_non_null(w);
  assert_int_not_equal(pg_latents_append(w, 2, (float[]){0, 1}, (int64_t[]){0, INT64_MAX}), PG_OK);
  assert_error_contains("outside [0, 16777216)");
  pg_latents_abort(w);
  assert_nothing_open();
}

/* ---- Malformed files: every error path closes what it opened ---- */

static void test_malformed_files_leave_nothing_open(void **state) {
  (void)state;
  float x[4 * 8] = {0};
  hid_t f = raw_create("group_latents.h5");
  H5Gclose(H5Gcreate2(f, "latents", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Fclose(f);
  expect_refused("group_latents.h5", "'latents' is not a dataset");

  f = raw_create("group_labels.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){4, 2, 2, 2}, NULL, x);
  H5Gclose(H5Gcreate2(f, "labels", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Fclose(f);
  expect_refused("group_labels.h5", "'labels' is not a dataset");

  f = raw_create("null_space.h5");
  hid_t s = H5Screate(H5S_NULL);
  H5Dclose(H5Dcreate2(f, "latents", H5T_NATIVE_FLOAT, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Sclose(s);
  H5Fclose(f);
  expect_refused("null_space.h5", "null");

  /* an external link is not followed (it could name a FIFO) */
  f = raw_create("external.h5");
  H5Lcreate_external(pg_test_tmp("pipe.h5"), "/latents", f, "latents", H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  expect_refused("external.h5", "link to another file");

  /* a checkpoint whose parts are the wrong kind of object */
  f = raw_create("ck_wrong.h5");
  pg_h5_set_attr_string(f, "format", "patchgrad checkpoint");
  pg_h5_set_attr_int(f, "format_version", 1);
  raw_dataset(f, "config", H5T_NATIVE_FLOAT, 4, (hsize_t[]){4, 2, 2, 2}, NULL, x);
  hid_t g = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(H5Gcreate2(g, "w", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Gclose(g);
  H5Fclose(f);
  pg_kv config;
  pg_kv_init(&config);
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("ck_wrong.h5"), &(pg_checkpoint){.config = &config}), PG_OK);
  assert_nothing_open();
  pg_params ps;
  pg_params_init(&ps);
  pg_params_add(&ps, PG_PARAM_WEIGHT, PG_SHAPE(2), "w");
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("ck_wrong.h5"), &(pg_checkpoint){.params = &ps}), PG_OK);
  assert_error_contains("'w' is not a dataset");
  assert_nothing_open();
  pg_params_free(&ps);
  pg_kv_free(&config);
}

/* ---- A filter the library lacks ---- */

static size_t pass_through(unsigned flags, size_t n_values, const unsigned values[], size_t nbytes,
                           size_t *buf_size, void **buf) {
  (void)flags, (void)n_values, (void)values, (void)buf_size, (void)buf;
  return nbytes;
}

static void test_missing_filter_named(void **state) {
  (void)state;
  /* h5py's LZF (filter 32000), registered here only while the file is written */
  const H5Z_class2_t lzf = {H5Z_CLASS_T_VERS, 32000, 1, 1, "lzf", NULL, NULL, pass_through};
  assert_true(H5Zregister(&lzf) >= 0);
  float x[4 * 8] = {0};
  hid_t f = raw_create("lzf.h5");
  hid_t s = H5Screate_simple(4, (hsize_t[]){4, 2, 2, 2}, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 4, (hsize_t[]){1, 2, 2, 2});
  assert_true(H5Pset_filter(dcpl, 32000, H5Z_FLAG_MANDATORY, 0, NULL) >= 0);
  hid_t d = H5Dcreate2(f, "latents", H5T_NATIVE_FLOAT, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(s);
  H5Fclose(f);
  assert_true(H5Zunregister(32000) >= 0);
  expect_refused("lzf.h5", "compressed with HDF5 filter 32000 ('lzf'), which this HDF5 library "
                           "does not have");
}

/* ---- Checksums ---- */

static unsigned char *read_file(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  rewind(f);
  unsigned char *b = malloc((size_t)*len);
  assert_int_equal(fread(b, 1, (size_t)*len, f), (size_t)*len);
  fclose(f);
  return b;
}

static void write_file(const char *path, const unsigned char *b, long len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
}

/* The file offset of chunk `index` of a dataset, and its stored size. */
static void chunk_place(const char *path, const char *dset, hsize_t index, haddr_t *addr,
                        hsize_t *size) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
  hid_t s = H5Dget_space(d);
  hsize_t offset[PG_MAX_DIMS];
  unsigned mask;
  assert_true(H5Dget_chunk_info(d, s, index, offset, &mask, addr, size) >= 0);
  H5Sclose(s);
  H5Dclose(d);
  H5Fclose(f);
}

static void small_params(pg_params *ps, float value) {
  pg_params_init(ps);
  pg_tensor *w = pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(3, 5), "blocks.0.w");
  pg_tensor *b = pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(5), "blocks.0.b");
  for (int64_t i = 0; i < w->numel; i++) w->data[i] = value + (float)i;
  for (int64_t i = 0; i < b->numel; i++) b->data[i] = -value - (float)i;
}

typedef struct {
  const char *path;
  pg_params *saved, *loaded;
} flip_load;

/* 0: loaded the saved values; 1: refused; 2: loaded something else. */
static int load_compare(const void *arg) {
  const flip_load *l = arg;
  int64_t step = -1;
  if (pg_checkpoint_load(l->path, &(pg_checkpoint){.params = l->loaded, .step = &step})) return 1;
  if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0 || step != 7) return 2;
  for (int k = 0; k < l->saved->count; k++)
    if (memcmp(l->loaded->items[k].tensor->data, l->saved->items[k].tensor->data,
               (size_t)l->saved->items[k].tensor->numel * sizeof(float)))
      return 2;
  return 0;
}

static void test_lookup3_is_hdf5s(void **state) {
  (void)state;
  /* a superblock HDF5 itself wrote to disk, in the 1.10 format */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
  hid_t f = H5Fcreate(pg_test_tmp("sb.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  H5Fclose(f);
  long len;
  unsigned char *b = read_file(pg_test_tmp("sb.h5"), &len);
  assert_int_equal(b[8], 3); /* superblock version 3 */
  uint32_t stored = b[44] | b[45] << 8 | b[46] << 16 | (uint32_t)b[47] << 24;
  assert_int_equal(pg_h5_checksum(b, 44), stored);
  free(b);
}

static void test_flipped_bits_are_damage(void **state) {
  (void)state;
  /* raw data of a checkpoint: the tensor is named, the model untouched */
  pg_params saved, loaded;
  small_params(&saved, 1.0f);
  small_params(&loaded, 100.0f);
  int64_t step = 7;
  char ck[600]; /* pg_test_tmp's buffers are reused */
  snprintf(ck, sizeof ck, "%s", pg_test_tmp("flip_ck.h5"));
  assert_int_equal(pg_checkpoint_save(ck, &(pg_checkpoint){.params = &saved, .step = &step}), PG_OK);
  haddr_t addr;
  hsize_t size;
  chunk_place(ck, "params/blocks.0.b", 0, &addr, &size);
  long len;
  unsigned char *b = read_file(ck, &len);
  b[addr + 5] ^= 0x04;
  write_file(pg_test_tmp("flip_data.h5"), b, len);
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("flip_data.h5"),
                                          &(pg_checkpoint){.params = &loaded}), PG_OK);
  assert_error_contains("params/blocks.0.b");
  assert_error_contains("checksum");
  assert_float_equal(loaded.items[0].tensor->data[0], 100.0f, 0); /* nothing was loaded */
  assert_nothing_open();
  free(b);

  /* a latent file: the dataset is named at open, before training reads it */
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = 6;
  info.height = info.width = 3;
  info.channels = 2;
  float x[6 * 18];
  for (int i = 0; i < 6 * 18; i++) x[i] = (float)i / 7.0f;
  char lat[600];
  snprintf(lat, sizeof lat, "%s", pg_test_tmp("flip_lat.h5"));
  assert_int_equal(pg_latents_save(lat, &info, x, NULL), PG_OK);
  chunk_place(lat, "latents", 3, &addr, &size);
  b = read_file(lat, &len);
  b[addr + size / 2] ^= 0x40;
  write_file(pg_test_tmp("flip_lat2.h5"), b, len);
  free(b);
  assert_null(pg_latents_open(pg_test_tmp("flip_lat2.h5")));
  assert_error_contains("dataset 'latents'");
  assert_error_contains("checksum");
  assert_nothing_open();

  /* Every single byte of the checkpoint flipped in turn: each copy is
   * refused, or loads exactly the saved values (a byte HDF5 never reads);
   * never a crash or a hang (each load runs in a child) and never different
   * numbers. */
  b = read_file(ck, &len);
  int refused_n = 0, same = 0;
  flip_load load = {ck, &saved, &loaded};
  assert_int_equal(run_child(load_compare, &load, "the file as saved", 30), 0);
  char one[600];
  snprintf(one, sizeof one, "%s", pg_test_tmp("flip_one.h5"));
  load.path = one;
  for (long i = 0; i < len; i++) {
    b[i] ^= 0x20;
    write_file(load.path, b, len);
    b[i] ^= 0x20;
    char what[64];
    snprintf(what, sizeof what, "byte %ld flipped", i);
    int rc = run_child(load_compare, &load, what, 30);
    if (rc == 2) fail_msg("%s: the checkpoint loaded with different numbers", what);
    if (rc == 1) refused_n++;
    else same++;
  }
  print_message("flipping each of %ld bytes of a checkpoint: %d refused, %d loaded unchanged "
                "(bytes HDF5 does not read), 0 loaded different numbers, 0 crashes\n",
                len, refused_n, same);
  assert_true(refused_n >= len * 9 / 10); /* the file holds (almost) no unread padding */
  free(b);
  pg_params_free(&saved);
  pg_params_free(&loaded);
}

/* Files written by other tools without checksums still read, hyperslabs too. */
static void test_files_without_checksums_still_read(void **state) {
  (void)state;
  float x[5 * 8];
  for (int i = 0; i < 40; i++) x[i] = (float)i;
  int32_t y[5] = {0, 1, 2, 1, 0};
  hid_t f = raw_create("plain.h5");
  raw_dataset(f, "latents", H5T_NATIVE_FLOAT, 4, (hsize_t[]){5, 2, 2, 2}, NULL, x);
  raw_dataset(f, "labels", H5T_NATIVE_INT32, 1, (hsize_t[]){5}, NULL, y);
  H5Fclose(f);
  pg_latents *ds = pg_latents_open(pg_test_tmp("plain.h5"));
  assert_non_null(ds);
  float two[16];
  assert_int_equal(pg_latents_read(ds, 2, 2, two), PG_OK);
  assert_memory_equal(two, x + 16, sizeof two);
  assert_int_equal(ds->info.num_classes, 3);
  pg_latents_close(ds);
  /* chunked by h5py's default of other sizes, compressed, no checksum */
  f = raw_create("chunky.h5");
  hid_t s = H5Screate_simple(4, (hsize_t[]){5, 2, 2, 2}, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 4, (hsize_t[]){2, 2, 1, 2});
  H5Pset_deflate(dcpl, 1);
  hid_t d = H5Dcreate2(f, "latents", H5T_IEEE_F64LE, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(s);
  H5Fclose(f);
  ds = pg_latents_open(pg_test_tmp("chunky.h5"));
  assert_non_null(ds);
  assert_int_equal(pg_latents_read(ds, 3, 2, two), PG_OK);
  assert_memory_equal(two, x + 24, sizeof two);
  pg_latents_close(ds);
  assert_nothing_open();
}

/* Files patchgrad writes carry the checksums: 1.10-format metadata and a
 * Fletcher32 filter on every dataset. */
static void test_written_files_carry_checksums(void **state) {
  (void)state;
  pg_params ps;
  small_params(&ps, 0.5f);
  const char *ck = pg_test_tmp("sums.h5");
  assert_int_equal(pg_checkpoint_save(ck, &(pg_checkpoint){.params = &ps}), PG_OK);
  long len;
  unsigned char *b = read_file(ck, &len);
  assert_int_equal(b[8], 3); /* superblock version 3: checksummed metadata */
  free(b);
  hid_t f = H5Fopen(ck, H5F_ACC_RDONLY, H5P_DEFAULT);
  const char *names[] = {"params/blocks.0.w", "params/blocks.0.b"};
  for (int i = 0; i < 2; i++) {
    hid_t d = H5Dopen2(f, names[i], H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    assert_int_equal(H5Pget_nfilters(dcpl), 1);
    unsigned flags;
    size_t n = 0;
    assert_int_equal(H5Pget_filter2(dcpl, 0, &flags, &n, NULL, 0, NULL, NULL), H5Z_FILTER_FLETCHER32);
    H5Pclose(dcpl);
    H5Dclose(d);
  }
  H5Fclose(f);
  pg_params_free(&ps);
}

static void test_memory_limit_helpers(void **state) {
  (void)state;
  int64_t avail = pg_memory_available();
  assert_true(avail > 0);
  assert_int_equal(pg_check_memory("a small thing", 1024), PG_OK);
  assert_int_equal(pg_check_memory("a huge thing", INT64_MAX), PG_ERR_MEMORY);
  assert_error_contains("a huge thing needs 8.0 EB of memory");
  int64_t out;
  assert_false(pg_mul_i64(INT64_MAX / 2 + 1, 2, &out));
  assert_true(pg_mul_i64(3, 5, &out) && out == 15);
  int64_t numel, bytes;
  assert_int_equal(pg_shape_bytes("t", 2, (int64_t[]){1ll << 30, 1ll << 30}, 4, &numel, &bytes),
                   PG_OK);
  assert_true(numel == 1ll << 60 && bytes == 1ll << 62);
  assert_int_not_equal(pg_shape_bytes("t", 2, (int64_t[]){1ll << 31, 1ll << 31}, 4, NULL, NULL),
                       PG_OK);
  assert_error_contains("more elements than a 64-bit size can count");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_and_folders_refused),
      cmocka_unit_test(test_absurd_sizes),
      cmocka_unit_test(test_writers_refuse_up_front),
      cmocka_unit_test(test_malformed_files_leave_nothing_open),
      cmocka_unit_test(test_missing_filter_named),
      cmocka_unit_test(test_lookup3_is_hdf5s),
      cmocka_unit_test(test_flipped_bits_are_damage),
      cmocka_unit_test(test_files_without_checksums_still_read),
      cmocka_unit_test(test_written_files_carry_checksums),
      cmocka_unit_test(test_memory_limit_helpers),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
