#include "patchgrad/data/fashion_mnist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/data/idx.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/latents.h"

#define PAD 2
#define FACTOR 2
#define NUM_CLASSES 10

static const char *class_names =
    "0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, "
    "8 Bag, 9 Ankle boot";

static pg_status file_path(const char *dir, const char *prefix, const char *kind, char *buf,
                           size_t cap) {
  snprintf(buf, cap, "%s/%s-%s", dir, prefix, kind);
  if (access(buf, R_OK) != 0)
    return pg_fail(PG_ERR_IO, "Fashion-MNIST file %s not found: install the Debian package %s "
                              "(apt-get install %s), or point --dir at a folder holding "
                              "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                              "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
                   buf, PG_FASHION_MNIST_PACKAGE, PG_FASHION_MNIST_PACKAGE);
  return PG_OK;
}

static pg_status read_images(const char *dir, const char *prefix, pg_idx *images) {
  char path[1024];
  if (file_path(dir, prefix, "images-idx3-ubyte.gz", path, sizeof path)) return pg_last_status();
  return pg_idx_read(path, 3, images);
}

pg_status pg_fashion_mnist_stats(const char *dir, double *mean, double *std) {
  if (!dir) dir = PG_FASHION_MNIST_DIR;
  pg_idx img;
  if (read_images(dir, "train", &img)) return pg_last_status();
  /* A histogram makes the statistics exact and independent of summation order. */
  int64_t hist[256] = {0};
  for (int64_t i = 0; i < img.numel; i++) hist[img.data[i]]++;
  int64_t n = img.shape[0], h = img.shape[1] + 2 * PAD, w = img.shape[2] + 2 * PAD;
  hist[0] += n * (h * w - img.shape[1] * img.shape[2]); /* the padding */
  pg_idx_free(&img);
  double total = (double)(n * h * w), sum = 0;
  for (int v = 0; v < 256; v++) sum += hist[v] * (v / 255.0);
  double m = sum / total, var = 0;
  for (int v = 0; v < 256; v++) var += hist[v] * (v / 255.0 - m) * (v / 255.0 - m);
  *mean = m;
  *std = sqrt(var / total);
  return PG_OK;
}

pg_status pg_make_fashion_mnist(const char *dir, const char *split, int64_t count,
                                const char *out_path) {
  if (!dir) dir = PG_FASHION_MNIST_DIR;
  const char *prefix;
  if (!strcmp(split, "train")) prefix = "train";
  else if (!strcmp(split, "test")) prefix = "t10k";
  else return pg_fail(PG_ERR_ARG, "fashion-mnist: split '%s' (expected train or test)", split);
  if (count < 0) return pg_fail(PG_ERR_ARG, "fashion-mnist: count %lld is negative", (long long)count);

  double mean, std;
  if (pg_fashion_mnist_stats(dir, &mean, &std)) return pg_last_status();
  pg_idx img, lab = {0};
  char path[1024];
  if (read_images(dir, prefix, &img)) return pg_last_status();
  pg_status st = file_path(dir, prefix, "labels-idx1-ubyte.gz", path, sizeof path);
  if (!st) st = pg_idx_read(path, 1, &lab);
  if (!st && lab.shape[0] != img.shape[0])
    st = pg_fail(PG_ERR_FORMAT, "%s: %lld labels for %lld images", path, (long long)lab.shape[0],
                 (long long)img.shape[0]);
  for (int64_t i = 0; !st && i < lab.numel; i++)
    if (lab.data[i] >= NUM_CLASSES)
      st = pg_fail(PG_ERR_FORMAT, "%s: label %lld is %d (Fashion-MNIST has %d classes)", path,
                   (long long)i, lab.data[i], NUM_CLASSES);
  if (!st && count > img.shape[0])
    st = pg_fail(PG_ERR_ARG, "fashion-mnist: --count %lld exceeds the %lld images of the %s split",
                 (long long)count, (long long)img.shape[0], split);
  if (st) {
    pg_idx_free(&img);
    pg_idx_free(&lab);
    return st;
  }

  int64_t n = count ? count : img.shape[0], h = img.shape[1], w = img.shape[2];
  pg_latent_transform tf = {PAD, FACTOR, mean, std};
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = n;
  info.height = (h + 2 * PAD) / FACTOR;
  info.width = (w + 2 * PAD) / FACTOR;
  info.channels = FACTOR * FACTOR;
  info.has_labels = true;
  info.num_classes = NUM_CLASSES;
  info.mean = mean;
  info.std = std;
  info.pad = PAD;
  info.space_to_depth = FACTOR;
  snprintf(info.source, sizeof info.source, "fashion-mnist");
  snprintf(info.split, sizeof info.split, "%s", split);
  snprintf(info.class_names, sizeof info.class_names, "%s", class_names);
  snprintf(info.description, sizeof info.description,
           "Fashion-MNIST %s split from %s, first %lld of %lld images: each %lldx%lld image "
           "padded with %d zero pixels per side, scaled to [0, 1], pixel_unshuffle(%d) "
           "(channel = 2*di + dj) to %lldx%lldx%lld, then (x - mean) / std with the train "
           "split's mean and std",
           split, dir, (long long)n, (long long)img.shape[0], (long long)h, (long long)w, PAD,
           FACTOR, (long long)info.height, (long long)info.width, (long long)info.channels);

  /* Streamed in blocks: the output never has to fit in memory twice. */
  enum { BLOCK = 1000 };
  int64_t per = info.height * info.width * info.channels;
  float *buf = malloc((size_t)(BLOCK * per) * sizeof *buf);
  int64_t labels[BLOCK];
  pg_latents_writer *wr = buf ? pg_latents_create(out_path, &info) : NULL;
  if (!buf) st = pg_fail(PG_ERR_MEMORY, "fashion-mnist: out of memory");
  else if (!wr) st = pg_last_status();
  for (int64_t start = 0; !st && start < n; start += BLOCK) {
    int64_t m = n - start < BLOCK ? n - start : BLOCK;
    for (int64_t s = 0; !st && s < m; s++) {
      st = pg_image_to_latent(&tf, img.data + (start + s) * h * w, h, w, 1, buf + s * per);
      labels[s] = lab.data[start + s];
    }
    if (!st) st = pg_latents_append(wr, m, buf, labels);
  }
  if (st) pg_latents_abort(wr);
  else st = pg_latents_finish(wr);
  free(buf);
  pg_idx_free(&img);
  pg_idx_free(&lab);
  return st;
}
