#include "patchgrad/render/plot.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pg_plot_opts_init(pg_plot_opts *o) { *o = (pg_plot_opts){.width = 640, .height = 400}; }

/* ---- A 3x5 pixel font: each glyph is five rows of three bits ---- */

static const struct {
  char c;
  uint8_t rows[5];
} glyphs[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}},
    {'3', {7, 1, 7, 1, 7}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}},
    {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}}, {'8', {7, 5, 7, 5, 7}},
    {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
    {'+', {0, 2, 7, 2, 0}}, {'e', {0, 7, 7, 4, 7}}, {'/', {1, 1, 2, 4, 4}},
    {'(', {2, 4, 4, 4, 2}}, {')', {2, 1, 1, 1, 2}}, {',', {0, 0, 0, 2, 4}},
    {':', {0, 2, 0, 2, 0}}, {'_', {0, 0, 0, 0, 7}}, {'\'', {2, 2, 0, 0, 0}},
    {'A', {2, 5, 7, 5, 5}}, {'B', {6, 5, 6, 5, 6}}, {'C', {3, 4, 4, 4, 3}},
    {'D', {6, 5, 5, 5, 6}}, {'E', {7, 4, 6, 4, 7}}, {'F', {7, 4, 6, 4, 4}},
    {'G', {3, 4, 5, 5, 3}}, {'H', {5, 5, 7, 5, 5}}, {'I', {7, 2, 2, 2, 7}},
    {'J', {1, 1, 1, 5, 2}}, {'K', {5, 5, 6, 5, 5}}, {'L', {4, 4, 4, 4, 7}},
    {'M', {5, 7, 7, 5, 5}}, {'N', {6, 5, 5, 5, 5}}, {'O', {2, 5, 5, 5, 2}},
    {'P', {6, 5, 6, 4, 4}}, {'Q', {2, 5, 5, 6, 3}}, {'R', {6, 5, 6, 5, 5}},
    {'S', {3, 4, 2, 1, 6}}, {'T', {7, 2, 2, 2, 2}}, {'U', {5, 5, 5, 5, 7}},
    {'V', {5, 5, 5, 5, 2}}, {'W', {5, 5, 7, 7, 5}}, {'X', {5, 5, 2, 5, 5}},
    {'Y', {5, 5, 2, 2, 2}}, {'Z', {7, 1, 2, 4, 7}},
};

/* A pixel of an RGB image, or of a gray one in the mean of rgb. */
static void put(pg_image *im, int x, int y, const uint8_t rgb[3]) {
  if (x < 0 || y < 0 || x >= im->width || y >= im->height) return;
  const size_t c = (size_t)im->channels;
  uint8_t *p = im->pixels + ((size_t)y * (size_t)im->width + (size_t)x) * c;
  if (c == 1) {
    p[0] = (uint8_t)((rgb[0] + rgb[1] + rgb[2]) / 3);
    return;
  }
  p[0] = rgb[0];
  p[1] = rgb[1];
  p[2] = rgb[2];
}

void pg_draw_text(pg_image *im, int x, int y, const char *text, int scale, const uint8_t rgb[3]) {
  for (const char *t = text; *t; t++, x += 4 * scale) {
    /* capitals for letters, but the small e of an exponent ("1e-05") */
    const bool exponent = *t == 'e' && t > text && (isdigit((unsigned char)t[-1]) || t[-1] == '.');
    const char ch = exponent ? 'e' : (char)toupper((unsigned char)*t);
    for (size_t g = 0; g < sizeof glyphs / sizeof *glyphs; g++) {
      if (glyphs[g].c != ch) continue;
      for (int r = 0; r < 5; r++)
        for (int c = 0; c < 3; c++)
          if (glyphs[g].rows[r] & (4 >> c))
            for (int dy = 0; dy < scale; dy++)
              for (int dx = 0; dx < scale; dx++) put(im, x + c * scale + dx, y + r * scale + dy, rgb);
    }
  }
}

int pg_text_width(const char *text, int scale) {
  const int n = (int)strlen(text);
  return n ? (4 * n - 1) * scale : 0;
}

pg_image *pg_image_label_rows(const pg_image *im, int n, const int *centre_y,
                              const char *const *labels, int scale) {
  int text = 0;
  for (int r = 0; r < n; r++)
    if (labels[r] && pg_text_width(labels[r], scale) > text) text = pg_text_width(labels[r], scale);
  const int margin = text > 0 ? text + 4 * scale + 4 : 0;
  if ((int64_t)im->width + margin > 65536) {
    pg_fail(PG_ERR_ARG, "pg_image_label_rows: labels %d pixels wide beside a %d pixel image", margin,
            im->width);
    return NULL;
  }
  pg_image *out = pg_image_new(im->width + margin, im->height, im->channels);
  if (!out) return NULL;
  const size_t c = (size_t)im->channels, row = (size_t)im->width * c;
  for (int y = 0; y < im->height; y++) {
    uint8_t *dst = out->pixels + (size_t)y * (size_t)out->width * c;
    memset(dst, 255, (size_t)margin * c);
    memcpy(dst + (size_t)margin * c, im->pixels + (size_t)y * row, row);
  }
  const uint8_t black[3] = {0, 0, 0};
  for (int r = 0; r < n; r++)
    if (labels[r])
      pg_draw_text(out, 2 * scale + 2, centre_y[r] - (5 * scale) / 2, labels[r], scale, black);
  return out;
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

/* Whether a curve has a point the plot draws. */
static bool drawable(const pg_plot_opts *o, const pg_plot_curve *c) {
  for (int64_t i = 0; i < c->n; i++) {
    double x = c->x ? c->x[i] : (double)i, y = c->y[i];
    if (isfinite(x) && isfinite(y) && !(o->log_y && y <= 0)) return true;
  }
  return false;
}

/* The legend in the top right corner of the plot area (right, top): a
 * white box, then for each named curve with a point a short line in its
 * colour and its name. */
static void legend(pg_image *im, const pg_plot_opts *o, int n_curves, const pg_plot_curve *curves,
                   const uint8_t colours[][3], int right, int top) {
  const int s = 2, line_h = 7 * s, swatch = 16;
  int rows = 0, text = 0;
  for (int c = 0; c < n_curves; c++) {
    if (!o->names[c] || !drawable(o, &curves[c])) continue;
    rows++;
    if (pg_text_width(o->names[c], s) > text) text = pg_text_width(o->names[c], s);
  }
  if (!rows) return;
  const int w = swatch + 6 + text + 12, h = rows * line_h + 8, x0 = right - w - 8, y0 = top + 8;
  const uint8_t white[3] = {255, 255, 255}, frame[3] = {160, 160, 160}, black[3] = {0, 0, 0};
  for (int y = y0; y <= y0 + h; y++)
    for (int x = x0; x <= x0 + w; x++)
      put(im, x, y, (y == y0 || y == y0 + h || x == x0 || x == x0 + w) ? frame : white);
  int y = y0 + 5;
  for (int c = 0; c < n_curves; c++) {
    if (!o->names[c] || !drawable(o, &curves[c])) continue;
    const int mid = y + (5 * s) / 2;
    line(im, x0 + 6, mid - 1, x0 + 6 + swatch, mid - 1, colours[c % 5]);
    pg_draw_text(im, x0 + 6 + swatch + 6, y, o->names[c], s, black);
    y += line_h;
  }
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

  const int left = 64, right = 16, top = o->y_label ? 28 : 16, bottom = o->x_label ? 50 : 36,
            s = 2; /* font scale */
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
  if (o->x_label)
    pg_draw_text(im, left + pw / 2 - pg_text_width(o->x_label, s) / 2, top + ph + 28, o->x_label, s, black);
  if (o->y_label) pg_draw_text(im, 4, 6, o->y_label, s, black);
  if (o->names) legend(im, o, n_curves, curves, colours, left + pw, top);
  return im;
}
