/* Fashion-MNIST as a latent dataset (docs/latents.md): each 28 x 28 image is
 * padded with 2 zero pixels on every side (32 x 32), scaled to [0, 1],
 * pixel-unshuffled by 2 (channel = 2 di + dj) into 16 x 16 x 4, and
 * normalized by one scalar mean and std of the whole train split (also for
 * the test split, so both share one scale). Labels (10 classes) are kept.
 *
 * The images come from Debian's dataset-fashion-mnist package (gzip IDX
 * files in PG_FASHION_MNIST_DIR), or from any folder holding the same four
 * files. */
#ifndef PG_FASHION_MNIST_H
#define PG_FASHION_MNIST_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/error.h"

#define PG_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define PG_FASHION_MNIST_PACKAGE "dataset-fashion-mnist"

/* split: "train" or "test"; count: the first `count` images (0: all).
 * dir NULL: PG_FASHION_MNIST_DIR. A missing file is an error naming the
 * Debian package to install. */
PG_API pg_status pg_make_fashion_mnist(const char *dir, const char *split, int64_t count,
                                const char *out_path);

/* The train split's pixel mean and std (population, over padded [0, 1]
 * images), computed exactly from a histogram of the 8-bit pixels. */
PG_API pg_status pg_fashion_mnist_stats(const char *dir, double *mean, double *std);

#endif
