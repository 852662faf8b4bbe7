/* A line plot drawn into an RGB raster (for loss curves written as PNG):
 * white background, axes with "nice" ticks (1, 2, 5 x 10^k; powers of ten
 * on a log axis), light grid lines, tick labels in a built-in 3x5 pixel
 * font, one or more curves in distinct colours, and optionally the axes'
 * names and a legend. The same font labels the rows of sample sheets. */
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
  /* Text (NULL: none): the x axis's name under its tick labels, the y
   * axis's above it, and a legend in the top right corner naming curve c
   * names[c] (curves without a drawable point are left out). */
  const char *x_label, *y_label;
  const char *const *names;
} pg_plot_opts;

PG_API void pg_plot_opts_init(pg_plot_opts *o);

/* Curves 0, 1, ... are drawn in blue, orange, green, red, purple. NULL with
 * a message when no curve has a drawable point. */
PG_API pg_image *pg_plot_lines(const pg_plot_opts *o, int n_curves, const pg_plot_curve *curves);

/* Draws text at (x, y) (top left), each font pixel `scale` pixels wide, a
 * character every 4 * scale pixels, into an RGB image (or a gray one, in
 * the mean of rgb). The font has digits, capital letters (a small letter is
 * drawn as its capital, except an 'e' after a digit or '.', the small 'e'
 * of "1e-05") and ". - + / ( ) , : _ '"; other characters leave a blank. */
PG_API void pg_draw_text(pg_image *im, int x, int y, const char *text, int scale, const uint8_t rgb[3]);
/* The width in pixels pg_draw_text gives text (0 for ""). */
PG_API int pg_text_width(const char *text, int scale);

/* A copy of im with a white margin on its left holding labels[r] (black,
 * font scale `scale`), centred on row y = centre_y[r], for r < n; NULL
 * labels are skipped. The margin fits the longest label. NULL with a
 * message when out of memory. */
PG_API pg_image *pg_image_label_rows(const pg_image *im, int n, const int *centre_y,
                                     const char *const *labels, int scale);

#endif
