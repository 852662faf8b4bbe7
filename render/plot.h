/* A line plot drawn into an RGB raster (for loss curves written as PNG):
 * white background, axes with "nice" ticks (1, 2, 5 x 10^k; powers of ten
 * on a log axis), light grid lines, tick labels in a built-in 3x5 pixel
 * digit font, and one or more curves in distinct colours. No other text:
 * the file name and README say what is plotted. */
#ifndef PG_PLOT_H
#define PG_PLOT_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/render/png_image.h"

typedef struct {
  const float *x; /* NULL: 0, 1, ..., n - 1 */
  const float *y; /* non-finite values (and <= 0 on a log axis) leave a gap */
  int64_t n;
} pg_plot_curve;

typedef struct {
  int width, height; /* pixels (default 640 x 400) */
  bool log_y;        /* logarithmic y axis (losses) */
} pg_plot_opts;

PG_API void pg_plot_opts_init(pg_plot_opts *o);

/* Curves 0, 1, ... are drawn in blue, orange, green, red, purple. NULL with
 * a message when no curve has a drawable point. */
PG_API pg_image *pg_plot_lines(const pg_plot_opts *o, int n_curves, const pg_plot_curve *curves);

/* Draws text made of digits and ". - + e" at (x, y) (top left), each font
 * pixel `scale` pixels wide; other characters leave a blank. */
PG_API void pg_draw_text(pg_image *im, int x, int y, const char *text, int scale, const uint8_t rgb[3]);

#endif
