/* A procedural labelled dataset that needs nothing installed, for tests and
 * for the demo when Fashion-MNIST is absent. Each class is a shape drawn on
 * a dark canvas (disk, square, ring, plus, horizontal stripes, vertical
 * stripes, X, triangle, checkerboard, two dots; classes 10..39 repeat them
 * small, large, and inverted), with a class-dependent colour across image
 * channels, and per-sample jitter of position, size and brightness plus a
 * little noise: a class-conditional model can learn it, an unconditional one
 * sees a mixture.
 *
 * When `channels` divides by 4 the shapes are drawn at 2 size x 2 size with
 * channels / 4 image channels and pixel-unshuffled by 2 (as Fashion-MNIST),
 * so the dataset's inverse transform shows them as images; otherwise they
 * are drawn directly at size x size x channels. Sample i depends only on
 * (seed, i). Values are normalized by the dataset's own mean and std. */
#ifndef PG_SYNTHETIC_H
#define PG_SYNTHETIC_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/error.h"

#define PG_SYNTHETIC_MAX_CLASSES 40

typedef struct {
  int64_t count;    /* samples (default 10000) */
  int64_t size;     /* latent height = width (default 16) */
  int64_t channels; /* latent channels (default 4) */
  int64_t classes;  /* 1..PG_SYNTHETIC_MAX_CLASSES (default 10) */
  uint64_t seed;    /* default 0 */
} pg_synthetic_opts;

PG_API void pg_synthetic_opts_init(pg_synthetic_opts *o);
PG_API pg_status pg_make_synthetic(const pg_synthetic_opts *o, const char *out_path);

/* Sample `index` before normalization ([size, size, channels] floats in
 * [0, 1]); returns its label. `scratch` holds 4 * size * size * channels
 * floats. Options must have passed pg_make_synthetic's checks. */
PG_API int64_t pg_synthetic_sample(const pg_synthetic_opts *o, int64_t index, float *latent,
                            float *scratch);

#endif
