#include "patchgrad/render/plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void pg_plot_opts_init(pg_plot_opts *o) { *o = (pg_plot_opts){640, 400, false}; }

/* ---- A 3x5 pixel font: each glyph is five rows of three bits ---- */

static const struct {
  char c;
  uint8_t rows[5];
} glyphs[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}},
    {'3', {7, 1, 7, 1, 7}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}},
    {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}}, {'8', {7, 5, 7, 5, 7}},
    {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
    {'+', {0, 2, 7, 2, 0}}, {'e', {0, 7, 7, 4, 7}},
};

static void put(pg_image *im, int x, int y, const uint8_t rgb[3]) {
  if (x < 0 || y < 0 || x >= im->width || y >= im->height) return;
  uint8_t *p = im->pixels + ((size_t)y * (size_t)im->width + (size_t)x) * 3;
  p[0] = rgb[0];
  p[1] = rgb[1];
  p[2] = rgb[2];
}

void pg_draw_text(pg_image *im, int x, int y, const char *text, int scale, const uint8_t rgb[3]) {
  for (; *text; text++, x += 4 * scale) {
    for (size_t g = 0; g < sizeof glyphs / sizeof *glyphs; g++) {
      if (glyphs[g].c != *text) continue;
      for (int r = 0; r < 5; r++)
        for (int c = 0; c < 3; c++)
          if (glyphs[g].rows[r] & (4 >> c))
            for (int dy = 0; dy < scale; dy++)
              for (int dx = 0; dx < scale; dx++) put(im, x + c * scale + dx, y + r * scale + dy, rgb);
    }
  }
}

/* A straight line, two pixels thick (Bresenham). */
static void line(pg_image *im, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
  int dx = x1 > x0 ? x1 - x0 : x0 - x1, dy = -(y1 > y0 ? y1 - y0 : y0 - y1);
  int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
  for (;;) {
    put(im, x0, y0, rgb);
    put(im, x0 + 1, y0, rgb);
    put(im, x0, y0 + 1, rgb);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

/* Step between ticks: 1, 2 or 5 times a power of ten, about `want` ticks. */
static double nice_step(double span, int want) {
  double raw = span / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void tick_label(char *buf, size_t cap, double v, bool as_power) {
  if (fabs(v) < 1e-12) v = 0;
  if (as_power) snprintf(buf, cap, "%g", v);
  else snprintf(buf, cap, "%.4g", v);
}

pg_image *pg_plot_lines(const pg_plot_opts *o, int n_curves, const pg_plot_curve *curves) {
  /* the data range over every drawable point */
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (int c = 0; c < n_curves; c++)
    for (int64_t i = 0; i < curves[c].n; i++) {
      double x = curves[c].x ? curves[c].x[i] : (double)i, y = curves[c].y[i];
      if (!isfinite(x) || !isfinite(y) || (o->log_y && y <= 0)) continue;
      if (o->log_y) y = log10(y);
      x_lo = fmin(x_lo, x);
      x_hi = fmax(x_hi, x);
      y_lo = fmin(y_lo, y);
      y_hi = fmax(y_hi, y);
    }
  if (!(x_lo <= x_hi)) {
    pg_fail(PG_ERR_ARG, "pg_plot_lines: no curve has a drawable point (%d curves)", n_curves);
    return NULL;
  }
  if (x_hi == x_lo) x_hi = x_lo + 1;
  if (y_hi == y_lo) {
    y_lo -= 0.5;
    y_hi += 0.5;
  }
  pg_image *im = pg_image_new(o->width, o->height, 3);
  if (!im) return NULL;
  memset(im->pixels, 255, (size_t)im->width * (size_t)im->height * 3);

  const int left = 64, right = 16, top = 16, bottom = 36, s = 2; /* font scale */
  int pw = im->width - left - right, ph = im->height - top - bottom;
  if (pw < 10 || ph < 10) {
    pg_image_free(im);
    pg_fail(PG_ERR_ARG, "pg_plot_lines: %d x %d is too small for a plot", o->width, o->height);
    return NULL;
  }
  const uint8_t black[3] = {0, 0, 0}, grid[3] = {225, 225, 225};
#define PX(x) (left + (int)lround(((x) - x_lo) / (x_hi - x_lo) * pw))
#define PY(y) (top + ph - (int)lround(((y) - y_lo) / (y_hi - y_lo) * ph))
  char label[32];
  /* x ticks */
  double xs = nice_step(x_hi - x_lo, 6);
  for (double t = ceil(x_lo / xs) * xs; t <= x_hi + 1e-9 * xs; t += xs) {
    int px = PX(t);
    line(im, px, top, px, top + ph, grid);
    tick_label(label, sizeof label, t, false);
    pg_draw_text(im, px - (int)strlen(label) * 2 * s, top + ph + 8, label, s, black);
  }
  /* y ticks: decades on a log axis (with 2 and 5 when it spans little) */
  if (o->log_y) {
    double span = y_hi - y_lo;
    for (double d = floor(y_lo); d <= ceil(y_hi); d += 1)
      for (int m = 1; m <= 5; m += (m == 1 ? 1 : 3)) { /* 1, 2, 5 */
        if (m > 1 && span > 2.5) continue;
        double t = d + log10((double)m);
        if (t < y_lo - 1e-9 || t > y_hi + 1e-9) continue;
        int py = PY(t);
        line(im, left, py, left + pw, py, grid);
        tick_label(label, sizeof label, pow(10.0, t), true);
        pg_draw_text(im, left - 6 - (int)strlen(label) * 4 * s, py - 5, label, s, black);
      }
  } else {
    double ys = nice_step(y_hi - y_lo, 5);
    for (double t = ceil(y_lo / ys) * ys; t <= y_hi + 1e-9 * ys; t += ys) {
      int py = PY(t);
      line(im, left, py, left + pw, py, grid);
      tick_label(label, sizeof label, t, false);
      pg_draw_text(im, left - 6 - (int)strlen(label) * 4 * s, py - 5, label, s, black);
    }
  }
  line(im, left, top, left, top + ph, black); /* axes over the grid */
  line(im, left, top + ph, left + pw, top + ph, black);

  static const uint8_t colours[5][3] = {
      {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}};
  for (int c = 0; c < n_curves; c++) {
    const uint8_t *rgb = colours[c % 5];
    bool have_prev = false;
    int qx = 0, qy = 0;
    for (int64_t i = 0; i < curves[c].n; i++) {
      double x = curves[c].x ? curves[c].x[i] : (double)i, y = curves[c].y[i];
      if (!isfinite(x) || !isfinite(y) || (o->log_y && y <= 0)) {
        have_prev = false; /* a gap */
        continue;
      }
      int px = PX(x), py = PY(o->log_y ? log10(y) : y);
      if (have_prev) line(im, qx, qy, px, py, rgb);
      else put(im, px, py, rgb);
      qx = px;
      qy = py;
      have_prev = true;
    }
  }
#undef PX
#undef PY
  return im;
}
