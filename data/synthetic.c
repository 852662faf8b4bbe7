#include "patchgrad/data/synthetic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/autograd/rng.h"

void pg_synthetic_opts_init(pg_synthetic_opts *o) {
  *o = (pg_synthetic_opts){.count = 10000, .size = 16, .channels = 4, .classes = 10, .seed = 0};
}

/* Space-to-depth factor: 2 when the channels split into image channels. */
static int64_t factor_of(const pg_synthetic_opts *o) { return o->channels % 4 == 0 ? 2 : 1; }

/* Whether point (dx, dy), relative to the shape's centre and in units of its
 * radius, lies inside shape `kind`. */
static bool inside(int kind, float dx, float dy) {
  float ax = fabsf(dx), ay = fabsf(dy);
  switch (kind) {
    case 0: return dx * dx + dy * dy < 1.0f;                                  /* disk */
    case 1: return ax < 0.8f && ay < 0.8f;                                     /* square */
    case 2: return fabsf(sqrtf(dx * dx + dy * dy) - 0.75f) < 0.22f;             /* ring */
    case 3: return (ax < 0.28f && ay < 1.0f) || (ay < 0.28f && ax < 1.0f);     /* plus */
    case 4: return ax < 1.0f && ay < 1.0f && ((int)floorf((dy + 1.0f) * 2.5f) % 2 == 0); /* h stripes */
    case 5: return ax < 1.0f && ay < 1.0f && ((int)floorf((dx + 1.0f) * 2.5f) % 2 == 0); /* v stripes */
    case 6: return ax < 0.9f && fabsf(ax - ay) < 0.25f;                        /* X */
    case 7: return dy > -0.9f && dy < 0.9f && ax < (dy + 0.9f) * 0.55f;        /* triangle */
    case 8: return ax < 0.9f && ay < 0.9f &&
                   (((int)floorf((dx + 0.9f) * 2.2f) + (int)floorf((dy + 0.9f) * 2.2f)) % 2 == 0);
    default: {                                                                 /* two dots */
      float l = (dx + 0.5f) * (dx + 0.5f) + dy * dy, r = (dx - 0.5f) * (dx - 0.5f) + dy * dy;
      return l < 0.16f || r < 0.16f;
    }
  }
}

int64_t pg_synthetic_sample(const pg_synthetic_opts *o, int64_t index, float *latent,
                            float *scratch) {
  pg_rng rng;
  /* splitmix64 seeding decorrelates neighbouring seeds */
  pg_rng_seed(&rng, o->seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(index + 1)));
  int64_t label = (int64_t)pg_rng_below(&rng, (uint64_t)o->classes);
  int kind = (int)(label % 10), variant = (int)(label / 10);
  int64_t f = factor_of(o), side = o->size * f, ic = o->channels / (f * f);
  float radius = 0.32f * (float)side * (variant == 1 ? 0.55f : variant == 2 ? 1.35f : 1.0f);
  radius *= 0.85f + 0.3f * pg_rng_uniform(&rng);
  float cx = 0.5f * (float)side + (pg_rng_uniform(&rng) - 0.5f) * 0.25f * (float)side;
  float cy = 0.5f * (float)side + (pg_rng_uniform(&rng) - 0.5f) * 0.25f * (float)side;
  float bright = 0.75f + 0.25f * pg_rng_uniform(&rng);
  float *img = f > 1 ? scratch : latent;
  for (int64_t y = 0; y < side; y++)
    for (int64_t x = 0; x < side; x++) {
      bool in = inside(kind, ((float)x + 0.5f - cx) / radius, ((float)y + 0.5f - cy) / radius);
      if (variant == 3) in = !in;
      for (int64_t c = 0; c < ic; c++) {
        /* class colour: each class weighs the image channels differently */
        float tint = 0.6f + 0.4f * cosf(6.2831853f * ((float)label / (float)o->classes +
                                                      (float)c / (float)ic));
        float v = (in ? bright * (ic > 1 ? tint : 1.0f) : 0.05f) + 0.03f * pg_rng_normal(&rng);
        img[(y * side + x) * ic + c] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  if (f > 1) pg_space_to_depth(scratch, side, side, ic, f, latent);
  return label;
}

pg_status pg_make_synthetic(const pg_synthetic_opts *o, const char *out_path) {
  if (o->count < 1 || o->size < 1 || o->channels < 1)
    return pg_fail(PG_ERR_ARG, "synthetic: --count %lld, --size %lld, --channels %lld must be "
                               ">= 1", (long long)o->count, (long long)o->size,
                   (long long)o->channels);
  if (o->size > 4096 || o->channels > 1024)
    return pg_fail(PG_ERR_ARG, "synthetic: --size %lld (at most 4096) or --channels %lld (at "
                               "most 1024) too large", (long long)o->size, (long long)o->channels);
  if (o->classes < 1 || o->classes > PG_SYNTHETIC_MAX_CLASSES)
    return pg_fail(PG_ERR_ARG, "synthetic: --classes %lld (expected 1..%d)", (long long)o->classes,
                   PG_SYNTHETIC_MAX_CLASSES);
  /* the size of the whole file, checked before the first sample is drawn */
  const int64_t f = factor_of(o);
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = o->count;
  info.height = info.width = o->size;
  info.channels = o->channels;
  info.has_labels = true;
  info.num_classes = o->classes;
  info.space_to_depth = f;
  if (pg_latents_check_info(out_path, &info)) return pg_last_status();
  int64_t per = o->size * o->size * o->channels;
  enum { BLOCK = 256 };
  float *buf = malloc((size_t)(BLOCK * per + 4 * per) * sizeof *buf);
  if (!buf) return pg_fail(PG_ERR_MEMORY, "synthetic: out of memory");
  float *scratch = buf + BLOCK * per;

  /* Pass 1: mean and std, accumulated in double around a shift (the first
   * value) so the one-pass variance does not cancel. Pass 2 regenerates
   * each sample (it depends only on seed and index) and writes it. */
  double shift = 0, sum = 0, sumsq = 0;
  for (int64_t i = 0; i < o->count; i++) {
    pg_synthetic_sample(o, i, buf, scratch);
    if (i == 0) shift = buf[0];
    for (int64_t k = 0; k < per; k++) {
      double d = buf[k] - shift;
      sum += d;
      sumsq += d * d;
    }
  }
  double total = (double)o->count * (double)per;
  double mean = shift + sum / total;
  double var = sumsq / total - (sum / total) * (sum / total);
  double std = var > 1e-12 ? sqrt(var) : 1.0;

  info.mean = mean;
  info.std = std;
  snprintf(info.source, sizeof info.source, "synthetic");
  snprintf(info.class_names, sizeof info.class_names,
           "class k: shape k %% 10 (0 disk, 1 square, 2 ring, 3 plus, 4 horizontal stripes, "
           "5 vertical stripes, 6 X, 7 triangle, 8 checkerboard, 9 two dots), variant k / 10 "
           "(0 plain, 1 small, 2 large, 3 inverted)");
  snprintf(info.description, sizeof info.description,
           "synthetic shapes, seed %llu, %lld samples of %lld classes: drawn at %lldx%lldx%lld "
           "in [0, 1] with jittered position, size and brightness and noise 0.03, "
           "pixel_unshuffle(%lld) to %lldx%lldx%lld, then (x - mean) / std over the whole set",
           (unsigned long long)o->seed, (long long)o->count, (long long)o->classes,
           (long long)(o->size * f), (long long)(o->size * f),
           (long long)(o->channels / (f * f)), (long long)f, (long long)o->size,
           (long long)o->size, (long long)o->channels);

  pg_latents_writer *w = pg_latents_create(out_path, &info);
  pg_status st = w ? PG_OK : pg_last_status();
  int64_t labels[BLOCK];
  for (int64_t start = 0; !st && start < o->count; start += BLOCK) {
    int64_t m = o->count - start < BLOCK ? o->count - start : BLOCK;
    for (int64_t s = 0; s < m; s++) {
      float *x = buf + s * per;
      labels[s] = pg_synthetic_sample(o, start + s, x, scratch);
      for (int64_t k = 0; k < per; k++) x[k] = (float)((x[k] - mean) / std);
    }
    st = pg_latents_append(w, m, buf, labels);
  }
  if (st) pg_latents_abort(w);
  else st = pg_latents_finish(w);
  free(buf);
  return st;
}
