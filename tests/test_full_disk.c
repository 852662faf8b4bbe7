/* Writers on a full file system: a tiny tmpfs is mounted here (root only;
 * the tests skip with a message otherwise), filled up, and every writer
 * (checkpoints, latent files, PNG images, the `sample` and `latents`
 * commands) must stop with a message naming the system's reason, leave the
 * previous file byte for byte, and leave no temporary file behind. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/render/png_image.h"

static char mnt[600];
static bool mounted;

static int setup(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("fulldisk")) return -1;
  snprintf(mnt, sizeof mnt, "%s", pg_test_tmp("fs"));
  if (mkdir(mnt, 0755)) return -1;
  if (geteuid() != 0) {
    print_message("full-disk tests skipped: mounting a tmpfs needs root\n");
    return 0;
  }
  if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0755") != 0) {
    print_message("full-disk tests skipped: cannot mount a tmpfs on %s: %s\n", mnt, strerror(errno));
    return 0;
  }
  mounted = true;
  /* a tiny trained model for `sample`, made outside the small file system */
  char out[8192];
  int rc = pg_test_run(out, sizeof out,
                       "%s/patchgrad latents --source synthetic --count 32 --size 4 --channels 4 "
                       "--classes 2 --out %s && %s/patchgrad train --data %s --hidden 16 --depth 1 "
                       "--heads 2 --patch 2 --batch 8 --steps 2 --cols 0 --threads 1 --quiet "
                       "--out %s",
                       PG_BUILD_DIR, pg_test_tmp("d.h5"), PG_BUILD_DIR, pg_test_tmp("d.h5"),
                       pg_test_tmp("run"));
  return rc == 0 ? 0 : -1;
}

static int teardown(void **state) {
  if (mounted) umount2(mnt, MNT_DETACH);
  return pg_test_tmpdir_remove(state);
}

#define SKIP_UNLESS_MOUNTED()                                          \
  do {                                                                 \
    if (!mounted) {                                                    \
      print_message("skipped: no tmpfs mounted (see the setup note)\n"); \
      skip();                                                          \
    }                                                                  \
  } while (0)

static const char *on_fs(const char *name) {
  static char buf[4][700];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", mnt, name);
  return buf[k];
}

/* Writes a filler file until the file system has no room left. */
static void fill_up(void) {
  int fd = open(on_fs("filler"), O_WRONLY | O_CREAT | O_APPEND, 0644);
  assert_true(fd >= 0);
  char block[4096];
  memset(block, 0x5a, sizeof block);
  while (write(fd, block, sizeof block) > 0) {}
  while (write(fd, block, 1) > 0) {}
  assert_int_equal(errno, ENOSPC);
  close(fd);
}

static void make_room(void) { unlink(on_fs("filler")); }

static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  rewind(f);
  char *b = malloc((size_t)*len + 1);
  assert_int_equal(fread(b, 1, (size_t)*len, f), (size_t)*len);
  fclose(f);
  return b;
}

static void assert_unchanged(const char *path, const char *before, long before_len) {
  long len;
  char *now = slurp(path, &len);
  assert_int_equal(len, before_len);
  assert_memory_equal(now, before, (size_t)len);
  free(now);
}

static void test_checkpoint_on_full_disk(void **state) {
  (void)state;
  SKIP_UNLESS_MOUNTED();
  pg_params small, big;
  pg_params_init(&small);
  pg_params_init(&big);
  pg_fill(pg_params_add(&small, PG_PARAM_WEIGHT, PG_SHAPE(4, 4), "w"), 1.0f);
  pg_fill(pg_params_add(&big, PG_PARAM_WEIGHT, PG_SHAPE(64, 1024), "w"), 2.0f);
  const char *path = on_fs("ck.h5");
  assert_int_equal(pg_checkpoint_save(path, &(pg_checkpoint){.params = &small}), PG_OK);
  long len;
  char *before = slurp(path, &len);
  fill_up();
  assert_int_not_equal(pg_checkpoint_save(path, &(pg_checkpoint){.params = &big}), PG_OK);
  assert_error_contains(path);
  assert_error_contains("No space left on device");
  assert_error_contains("the previous file is unchanged");
  assert_int_equal(pg_test_temporaries(path), 0);
  assert_unchanged(path, before, len);
  pg_params loaded;
  pg_params_init(&loaded);
  pg_params_add(&loaded, PG_PARAM_WEIGHT, PG_SHAPE(4, 4), "w");
  assert_int_equal(pg_checkpoint_load(path, &(pg_checkpoint){.params = &loaded}), PG_OK);
  assert_float_equal(loaded.items[0].tensor->data[5], 1.0f, 0);
  make_room();
  free(before);
  pg_params_free(&loaded);
  pg_params_free(&small);
  pg_params_free(&big);
}

static void test_latents_and_png_on_full_disk(void **state) {
  (void)state;
  SKIP_UNLESS_MOUNTED();
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = 4;
  info.height = info.width = 2;
  info.channels = 1;
  float x[16] = {0};
  const char *lat = on_fs("l.h5");
  assert_int_equal(pg_latents_save(lat, &info, x, NULL), PG_OK);
  pg_image *im = pg_image_new(8, 8, 1);
  const char *png = on_fs("p.png");
  assert_int_equal(pg_png_write(png, im), PG_OK);
  pg_image_free(im);
  long lat_len, png_len;
  char *lat_before = slurp(lat, &lat_len), *png_before = slurp(png, &png_len);

  fill_up();
  info.n = 4000;
  info.height = info.width = 8;
  float *big = malloc(4000 * 64 * sizeof *big);
  for (int i = 0; i < 4000 * 64; i++) big[i] = (float)((i * 7919) % 1013) / 13.0f;
  assert_int_not_equal(pg_latents_save(lat, &info, big, NULL), PG_OK);
  free(big);
  assert_error_contains("No space left on device");
  assert_error_contains("the previous file is unchanged");
  assert_int_equal(pg_test_temporaries(lat), 0);
  assert_unchanged(lat, lat_before, lat_len);

  im = pg_image_new(512, 512, 3);
  for (size_t i = 0; i < 512 * 512 * 3; i++) im->pixels[i] = (uint8_t)(i * 2654435761u >> 24);
  assert_int_not_equal(pg_png_write(png, im), PG_OK);
  pg_image_free(im);
  assert_error_contains(png);
  assert_error_contains("No space left on device");
  assert_int_equal(pg_test_temporaries(png), 0);
  assert_unchanged(png, png_before, png_len);
  make_room();
  free(lat_before);
  free(png_before);
}

/* The command that segfaulted: after "cannot write" it went on and crashed
 * inside HDF5 at exit. */
static void test_sample_command_on_full_disk(void **state) {
  (void)state;
  SKIP_UNLESS_MOUNTED();
  char out[8192];
  const char *png = on_fs("s.png"), *raw = on_fs("s.h5");
  int rc = pg_test_run(out, sizeof out, "%s/patchgrad sample --ckpt %s --out %s --sample-steps 2 --cols 2 "
                       "--threads 1", PG_BUILD_DIR, pg_test_tmp("run/ckpt.h5"), png);
  assert_int_equal(rc, 0);
  long png_len, raw_len;
  char *png_before = slurp(png, &png_len), *raw_before = slurp(raw, &raw_len);
  fill_up();
  rc = pg_test_run(out, sizeof out, "%s/patchgrad sample --ckpt %s --out %s --sample-steps 2 --cols 3 "
                   "--seed 1 --threads 1", PG_BUILD_DIR, pg_test_tmp("run/ckpt.h5"), png);
  assert_int_equal(rc, 1); /* a message and exit status 1, not a signal */
  assert_non_null(strstr(out, "No space left on device"));
  assert_int_equal(pg_test_temporaries(png), 0);
  assert_int_equal(pg_test_temporaries(raw), 0);
  assert_unchanged(png, png_before, png_len);
  assert_unchanged(raw, raw_before, raw_len);
  /* the latents command the same way */
  rc = pg_test_run(out, sizeof out, "%s/patchgrad latents --source synthetic --count 2000 --out %s",
                   PG_BUILD_DIR, on_fs("new.h5"));
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out, "No space left on device"));
  assert_false(pg_test_exists(on_fs("new.h5")));
  assert_int_equal(pg_test_temporaries(on_fs("new.h5")), 0);
  make_room();
  free(png_before);
  free(raw_before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_checkpoint_on_full_disk),
      cmocka_unit_test(test_latents_and_png_on_full_disk),
      cmocka_unit_test(test_sample_command_on_full_disk),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
