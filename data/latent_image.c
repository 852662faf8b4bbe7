#include "patchgrad/data/latent_image.h"

#include "patchgrad/io/limits.h"
#include "patchgrad/render/plot.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

pg_latent_transform pg_latent_transform_of(const pg_latents_info *info) {
  return (pg_latent_transform){info->pad, info->space_to_depth, info->mean, info->std};
}

pg_status pg_latent_transform_to_kv(const pg_latent_transform *tf, pg_kv *kv) {
  pg_status st = pg_kv_set_double(kv, "data_mean", tf->mean);
  st = st ? st : pg_kv_set_double(kv, "data_std", tf->std);
  st = st ? st : pg_kv_set_int(kv, "data_pad", tf->pad);
  return st ? st : pg_kv_set_int(kv, "data_space_to_depth", tf->factor);
}

pg_status pg_latent_transform_check(const pg_latent_transform *tf, const char *who) {
  return pg_latents_check_transform(who, tf->mean, tf->std, tf->pad, tf->factor, 0, 0, 0);
}

pg_status pg_latent_transform_from_kv(const pg_kv *config, const char *who,
                                      pg_latent_transform *tf) {
  *tf = (pg_latent_transform){.pad = 0, .factor = 1, .mean = 0, .std = 1};
  if (pg_kv_get_double(config, "data_mean", &tf->mean) < 0 ||
      pg_kv_get_double(config, "data_std", &tf->std) < 0 ||
      pg_kv_get_int(config, "data_pad", &tf->pad) < 0 ||
      pg_kv_get_int(config, "data_space_to_depth", &tf->factor) < 0) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pg_last_error());
    return pg_fail(PG_ERR_FORMAT, "%s: config %s", who, msg);
  }
  char what[1100];
  snprintf(what, sizeof what, "%s: config data_mean, data_std, data_pad, data_space_to_depth",
           who);
  if (pg_latent_transform_check(tf, what)) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pg_last_error());
    return pg_fail(PG_ERR_FORMAT, "%s", msg);
  }
  return PG_OK;
}

static pg_status check_factor(const char *who, int64_t h, int64_t w, int64_t c, int64_t f) {
  if (f < 1 || h < 1 || w < 1 || c < 1)
    return pg_fail(PG_ERR_ARG, "%s: sizes [%lld, %lld, %lld] and factor %lld must be positive",
                   who, (long long)h, (long long)w, (long long)c, (long long)f);
  return PG_OK;
}

pg_status pg_space_to_depth(const float *src, int64_t h, int64_t w, int64_t c, int64_t f,
                            float *dst) {
  if (check_factor("pg_space_to_depth", h, w, c, f)) return pg_last_status();
  if (h % f || w % f)
    return pg_fail(PG_ERR_ARG, "pg_space_to_depth: image %lld x %lld does not divide by %lld",
                   (long long)h, (long long)w, (long long)f);
  int64_t oh = h / f, ow = w / f, oc = c * f * f;
  for (int64_t i = 0; i < oh; i++)
    for (int64_t j = 0; j < ow; j++)
      for (int64_t ci = 0; ci < c; ci++)
        for (int64_t di = 0; di < f; di++)
          for (int64_t dj = 0; dj < f; dj++)
            dst[(i * ow + j) * oc + ci * f * f + di * f + dj] =
                src[((i * f + di) * w + (j * f + dj)) * c + ci];
  return PG_OK;
}

pg_status pg_depth_to_space(const float *src, int64_t h, int64_t w, int64_t c, int64_t f,
                            float *dst) {
  if (check_factor("pg_depth_to_space", h, w, c, f)) return pg_last_status();
  if (c % (f * f))
    return pg_fail(PG_ERR_ARG, "pg_depth_to_space: %lld channels do not divide by %lld x %lld",
                   (long long)c, (long long)f, (long long)f);
  int64_t oc = c / (f * f), ow = w * f;
  for (int64_t i = 0; i < h; i++)
    for (int64_t j = 0; j < w; j++)
      for (int64_t co = 0; co < oc; co++)
        for (int64_t di = 0; di < f; di++)
          for (int64_t dj = 0; dj < f; dj++)
            dst[((i * f + di) * ow + (j * f + dj)) * oc + co] =
                src[(i * w + j) * c + co * f * f + di * f + dj];
  return PG_OK;
}

pg_status pg_image_to_latent(const pg_latent_transform *tf, const uint8_t *img, int64_t h,
                             int64_t w, int64_t c, float *latent) {
  if (pg_latent_transform_check(tf, "pg_image_to_latent")) return pg_last_status();
  int64_t f = tf->factor, p = tf->pad, ph = h + 2 * p, pw = w + 2 * p;
  if (check_factor("pg_image_to_latent", h, w, c, f)) return pg_last_status();
  if (ph % f || pw % f)
    return pg_fail(PG_ERR_ARG, "pg_image_to_latent: padded image %lld x %lld (pad %lld) does "
                               "not divide by factor %lld", (long long)ph, (long long)pw,
                   (long long)p, (long long)f);
  /* Each latent element picks its pixel directly: no padded copy needed. */
  int64_t oh = ph / f, ow = pw / f, oc = c * f * f;
  float inv_std = (float)(1.0 / tf->std), mean = (float)tf->mean;
  for (int64_t i = 0; i < oh; i++)
    for (int64_t j = 0; j < ow; j++)
      for (int64_t ci = 0; ci < c; ci++)
        for (int64_t di = 0; di < f; di++)
          for (int64_t dj = 0; dj < f; dj++) {
            int64_t y = i * f + di - p, x = j * f + dj - p;
            float v = (y >= 0 && y < h && x >= 0 && x < w) ? img[(y * w + x) * c + ci] / 255.0f
                                                           : 0.0f;
            latent[(i * ow + j) * oc + ci * f * f + di * f + dj] = (v - mean) * inv_std;
          }
  return PG_OK;
}

pg_status pg_latent_image_size(const pg_latent_transform *tf, int64_t lh, int64_t lw, int64_t lc,
                               int64_t *h, int64_t *w, int64_t *c) {
  int64_t f = tf->factor;
  if (check_factor("pg_latent_to_image", lh, lw, lc, f)) return pg_last_status();
  /* the transform and the latent shape together (overflow-checked) */
  if (pg_latents_check_transform("pg_latent_to_image", tf->mean, tf->std, tf->pad, f, lh, lw, lc))
    return pg_last_status();
  *h = lh * f - 2 * tf->pad;
  *w = lw * f - 2 * tf->pad;
  *c = lc / (f * f);
  return PG_OK;
}

pg_status pg_latent_to_image(const pg_latent_transform *tf, const float *latent, int64_t lh,
                             int64_t lw, int64_t lc, float *scratch, uint8_t *img) {
  int64_t h, w, c, f = tf->factor, p = tf->pad;
  if (pg_latent_image_size(tf, lh, lw, lc, &h, &w, &c)) return pg_last_status();
  pg_depth_to_space(latent, lh, lw, lc, f, scratch);
  int64_t pw = lw * f;
  for (int64_t y = 0; y < h; y++)
    for (int64_t x = 0; x < w; x++)
      for (int64_t ci = 0; ci < c; ci++) {
        double v = scratch[((y + p) * pw + (x + p)) * c + ci] * tf->std + tf->mean;
        if (!(v >= 0)) v = 0; /* samples may overshoot [0, 1]; NaN shows as black */
        if (v > 1) v = 1;
        img[(y * w + x) * c + ci] = (uint8_t)lround(v * 255.0);
      }
  return PG_OK;
}

pg_image *pg_latents_to_sheet(const pg_latent_transform *tf, int64_t n, const float *latents,
                              int64_t lh, int64_t lw, int64_t lc, int cols, int zoom,
                              const char *const *row_labels) {
  const int pad = 2;
  pg_image *grid = pg_latents_to_grid(tf, n, latents, lh, lw, lc, cols, pad);
  if (!grid) return NULL;
  const int gw = grid->width, gh = grid->height;
  int k = zoom;
  if (k <= 0) {
    k = (PG_SHEET_WIDTH + gw - 1) / gw;
    if (k > PG_SHEET_MAX_ZOOM) k = PG_SHEET_MAX_ZOOM;
  }
  pg_image *sheet = k == 1 ? grid : pg_image_zoom(grid, k);
  if (sheet != grid) pg_image_free(grid);
  if (!sheet || !row_labels) return sheet;
  /* the rows of pg_image_grid: image r at y = pad + r (th + pad) */
  const int used = cols < n ? cols : (int)n, rows = (int)((n + used - 1) / used);
  const int th = (gh - pad) / rows - pad;
  int *centre = malloc((size_t)rows * sizeof *centre);
  pg_image *out = NULL;
  if (!centre) {
    pg_fail(PG_ERR_MEMORY, "pg_latents_to_sheet: out of memory for %d row labels", rows);
  } else {
    for (int r = 0; r < rows; r++) centre[r] = k * (pad + r * (th + pad)) + k * th / 2;
    out = pg_image_label_rows(sheet, rows, centre, row_labels, k * th >= 14 ? 2 : 1);
  }
  free(centre);
  pg_image_free(sheet);
  return out;
}

pg_image *pg_latents_to_grid(const pg_latent_transform *tf, int64_t n, const float *latents,
                             int64_t lh, int64_t lw, int64_t lc, int cols, int pad) {
  int64_t h, w, c;
  if (n < 1) {
    pg_fail(PG_ERR_ARG, "pg_latents_to_grid: %lld latents (need >= 1)", (long long)n);
    return NULL;
  }
  if (pg_latent_image_size(tf, lh, lw, lc, &h, &w, &c)) return NULL;
  int64_t per, bytes;
  if (n > INT_MAX || !pg_mul_i64(lh * lw, lc, &per) || !pg_mul_i64(h * w, c, &bytes)) {
    pg_fail(PG_ERR_ARG, "pg_latents_to_grid: %lld latents of [%lld, %lld, %lld] are too many",
            (long long)n, (long long)lh, (long long)lw, (long long)lc);
    return NULL;
  }
  int shown = (c == 1 || c == 3) ? (int)c : 1;
  float *scratch = malloc((size_t)per * sizeof *scratch);
  uint8_t *img = malloc((size_t)bytes);
  pg_image **tiles = calloc((size_t)n, sizeof *tiles);
  pg_image *grid = NULL;
  if (!scratch || !img || !tiles) {
    pg_fail(PG_ERR_MEMORY, "pg_latents_to_grid: out of memory");
    goto done;
  }
  for (int64_t i = 0; i < n; i++) {
    tiles[i] = pg_image_new((int)w, (int)h, shown);
    if (!tiles[i]) goto done;
    pg_latent_to_image(tf, latents + i * per, lh, lw, lc, scratch, img);
    for (int64_t p = 0; p < h * w; p++)
      for (int k = 0; k < shown; k++) tiles[i]->pixels[p * shown + k] = img[p * c + k];
  }
  grid = pg_image_grid((int)n, (const pg_image *const *)tiles, cols, pad, 128);
done:
  for (int64_t i = 0; tiles && i < n; i++) pg_image_free(tiles[i]);
  free(tiles);
  free(img);
  free(scratch);
  return grid;
}
