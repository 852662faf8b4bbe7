/* PNG images: gray and RGB written and read back with libpng (sizes and
 * every pixel), the image grid, the line plot and its digit font, a sample
 * sheet made from latents, and failures that leave nothing behind. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/data/latent_image.h"
#include "patchgrad/render/plot.h"
#include "patchgrad/render/png_image.h"

static int setup(void **state) {
  (void)state;
  return pg_test_tmpdir_make("png");
}

static void test_gray_and_rgb_round_trip(void **state) {
  (void)state;
  for (int channels = 1; channels <= 3; channels += 2) {
    pg_image *im = pg_image_new(7, 5, channels);
    assert_non_null(im);
    for (int i = 0; i < 7 * 5 * channels; i++) im->pixels[i] = (uint8_t)(i * 37 + 11);
    assert_int_equal(pg_png_write(pg_test_tmp("a.png"), im), PG_OK);
    assert_int_equal(pg_test_temporaries(pg_test_tmp("a.png")), 0);
    pg_image *back = pg_png_read(pg_test_tmp("a.png"));
    assert_non_null(back);
    assert_int_equal(back->width, 7);
    assert_int_equal(back->height, 5);
    assert_int_equal(back->channels, channels);
    assert_memory_equal(back->pixels, im->pixels, (size_t)(7 * 5 * channels));
    pg_image_free(back);
    pg_image_free(im);
  }
}

static void test_failures(void **state) {
  (void)state;
  pg_image *im = pg_image_new(2, 2, 1);
  assert_int_not_equal(pg_png_write(pg_test_tmp("no/such/folder/a.png"), im), PG_OK);
  assert_error_contains("cannot create");
  pg_image_free(im);
  assert_null(pg_image_new(0, 3, 1));
  assert_error_contains("0 x 3");
  assert_null(pg_image_new(3, 3, 2));
  assert_error_contains("2 channels");
  FILE *f = fopen(pg_test_tmp("text.png"), "w");
  fputs("not a png at all", f);
  fclose(f);
  assert_null(pg_png_read(pg_test_tmp("text.png")));
  assert_error_contains("not a PNG file");
  /* a PNG cut in half */
  pg_image *big = pg_image_new(64, 64, 3);
  for (int i = 0; i < 64 * 64 * 3; i++) big->pixels[i] = (uint8_t)(i * 7919 % 251);
  pg_png_write(pg_test_tmp("whole.png"), big);
  pg_image_free(big);
  f = fopen(pg_test_tmp("whole.png"), "rb");
  char bytes[20000];
  size_t n = fread(bytes, 1, sizeof bytes, f);
  fclose(f);
  f = fopen(pg_test_tmp("half.png"), "wb");
  fwrite(bytes, 1, n / 2, f);
  fclose(f);
  assert_null(pg_png_read(pg_test_tmp("half.png")));
  assert_error_contains("half.png");
}

static void test_grid(void **state) {
  (void)state;
  pg_image *tiles[5];
  for (int i = 0; i < 5; i++) {
    tiles[i] = pg_image_new(3, 2, 1);
    memset(tiles[i]->pixels, 10 * (i + 1), 6);
  }
  pg_image *g = pg_image_grid(5, (const pg_image *const *)tiles, 2, 1, 200);
  assert_non_null(g);
  /* 2 columns, 3 rows, 1 pixel around and between */
  assert_int_equal(g->width, 1 + 2 * (3 + 1));
  assert_int_equal(g->height, 1 + 3 * (2 + 1));
  assert_int_equal(g->pixels[0], 200);               /* border */
  assert_int_equal(g->pixels[1 * g->width + 1], 10); /* tile 0 */
  assert_int_equal(g->pixels[1 * g->width + 5], 20); /* tile 1 */
  assert_int_equal(g->pixels[4 * g->width + 1], 30); /* tile 2, second row */
  assert_int_equal(g->pixels[7 * g->width + 1], 50); /* tile 4 */
  assert_int_equal(g->pixels[7 * g->width + 5], 200); /* no tile 5 */
  assert_int_equal(pg_png_write(pg_test_tmp("grid.png"), g), PG_OK);
  pg_image *back = pg_png_read(pg_test_tmp("grid.png"));
  assert_memory_equal(back->pixels, g->pixels, (size_t)(g->width * g->height));
  pg_image_free(back);
  pg_image_free(g);
  pg_image_free(tiles[4]);
  tiles[4] = pg_image_new(4, 2, 1);
  assert_null(pg_image_grid(5, (const pg_image *const *)tiles, 2, 1, 0));
  assert_error_contains("tile 4 is 4 x 2 x 1");
  for (int i = 0; i < 5; i++) pg_image_free(tiles[i]);
}

/* The colour of pixel (x, y). */
static const uint8_t *at(const pg_image *im, int x, int y) {
  return im->pixels + ((size_t)y * (size_t)im->width + (size_t)x) * 3;
}

static int count_colour(const pg_image *im, uint8_t r, uint8_t g, uint8_t b) {
  int n = 0;
  for (int y = 0; y < im->height; y++)
    for (int x = 0; x < im->width; x++) {
      const uint8_t *p = at(im, x, y);
      n += p[0] == r && p[1] == g && p[2] == b;
    }
  return n;
}

static void test_plot(void **state) {
  (void)state;
  float loss[200], val_x[10], val_y[10];
  for (int i = 0; i < 200; i++) loss[i] = 2.0f * expf(-i / 50.0f) + 0.05f;
  for (int i = 0; i < 10; i++) {
    val_x[i] = (float)(i * 20 + 10);
    val_y[i] = 2.2f * expf(-val_x[i] / 50.0f) + 0.08f;
  }
  loss[100] = NAN; /* a gap, not a failure */
  pg_plot_curve curves[2] = {{NULL, loss, 200}, {val_x, val_y, 10}};
  pg_plot_opts o;
  pg_plot_opts_init(&o);
  for (int log_y = 0; log_y <= 1; log_y++) {
    o.log_y = log_y;
    pg_image *im = pg_plot_lines(&o, 2, curves);
    assert_non_null(im);
    assert_true(im->width == 640 && im->height == 400 && im->channels == 3);
    const uint8_t *corner = at(im, im->width - 1, 0);
    assert_true(corner[0] == 255 && corner[1] == 255 && corner[2] == 255);
    assert_true(count_colour(im, 31, 119, 180) > 300); /* curve 0, blue */
    assert_true(count_colour(im, 255, 127, 14) > 100); /* curve 1, orange */
    assert_true(count_colour(im, 0, 0, 0) > 600);      /* axes and digits */
    /* the first loss value (2.05, the top) is drawn near the top left of the plot area */
    bool found = false;
    for (int y = 10; y < 30 && !found; y++)
      for (int x = 60; x < 70 && !found; x++) {
        const uint8_t *p = at(im, x, y);
        found = p[0] == 31 && p[1] == 119 && p[2] == 180;
      }
    assert_true(found);
    assert_int_equal(pg_png_write(pg_test_tmp(log_y ? "loss_log.png" : "loss.png"), im), PG_OK);
    pg_image_free(im);
  }
  float bad[3] = {NAN, -1, 0};
  pg_plot_curve none = {NULL, bad, 3};
  o.log_y = true;
  assert_null(pg_plot_lines(&o, 1, &none));
  assert_error_contains("no curve has a drawable point");
  /* a flat curve still plots */
  float flat[4] = {1, 1, 1, 1};
  pg_plot_curve one = {NULL, flat, 4};
  o.log_y = false;
  pg_image *im = pg_plot_lines(&o, 1, &one);
  assert_non_null(im);
  pg_image_free(im);
}

static void test_digit_font(void **state) {
  (void)state;
  pg_image *im = pg_image_new(20, 7, 3);
  const uint8_t white[3] = {255, 255, 255};
  pg_draw_text(im, 1, 1, "1-", 1, white);
  /* "1" is 010 / 110 / 010 / 010 / 111 at x 1..3; "-" is row 2 of x 5..7 */
  const char *want[5] = {".#......", "##......", ".#..###.", ".#......", "###....."};
  for (int r = 0; r < 5; r++)
    for (int c = 0; c < 8; c++)
      assert_int_equal(at(im, 1 + c, 1 + r)[0], want[r][c] == '#' ? 255 : 0);
  pg_image_free(im);
}

static void test_latent_sheet(void **state) {
  (void)state;
  /* two 2x2x4 latents of a 4x4 gray image (factor 2, no pad), std 1 mean 0 */
  pg_latent_transform tf = {.pad = 0, .factor = 2, .mean = 0, .std = 1};
  float lat[2 * 16];
  for (int i = 0; i < 32; i++) lat[i] = (float)(i % 16) / 15.0f;
  pg_image *g = pg_latents_to_grid(&tf, 2, lat, 2, 2, 4, 2, 1);
  assert_non_null(g);
  assert_true(g->width == 1 + 2 * 5 && g->height == 1 + 5 && g->channels == 1);
  /* image pixel (y, x) = latent ((y/2, x/2), channel 2 (y%2) + x%2) */
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) {
      int k = ((y / 2) * 2 + x / 2) * 4 + 2 * (y % 2) + x % 2;
      assert_int_equal(g->pixels[(1 + y) * g->width + 1 + x], (int)lround(k / 15.0 * 255));
    }
  assert_int_equal(pg_png_write(pg_test_tmp("sheet.png"), g), PG_OK);
  pg_image_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gray_and_rgb_round_trip),
      cmocka_unit_test(test_failures),
      cmocka_unit_test(test_grid),
      cmocka_unit_test(test_plot),
      cmocka_unit_test(test_digit_font),
      cmocka_unit_test(test_latent_sheet),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
