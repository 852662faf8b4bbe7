#include "patchgrad/vit/score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/io/h5util.h"
#include "patchgrad/io/latents.h"

/* The samples and their labels, checked against the classifier. */
static pg_status read_samples(hid_t f, const char *path, const pg_vit_config *c, pg_tensor **x,
                              int64_t **labels, int64_t *n) {
  const char *name = pg_h5_exists(f, "samples") ? "samples" : pg_h5_exists(f, "latents") ? "latents" : NULL;
  if (!name)
    return pg_fail(PG_ERR_FORMAT, "%s has neither 'samples' (patchgrad sample's grid.h5) nor 'latents' (a latent dataset)", path);
  if (!pg_h5_exists(f, "labels"))
    return pg_fail(PG_ERR_FORMAT, "%s has no 'labels': the score needs class-conditional samples "
                                  "(an unconditional model's samples have no class asked for)", path);
  pg_status st = pg_latents_read_tensor(f, name, path, x); /* channels last, whatever its layout */
  if (st) return st;
  const pg_tensor *t = *x;
  if (t->ndim != 4 || t->shape[1] != c->height || t->shape[2] != c->width || t->shape[3] != c->in_channels)
    return pg_fail(PG_ERR_ARG, "%s: '%s' has shape %s, the classifier takes [N, %lld, %lld, %lld]", path,
                   name, pg_shape_of(t), (long long)c->height, (long long)c->width, (long long)c->in_channels);
  int ndim;
  int64_t shape[PG_MAX_DIMS];
  if ((st = pg_h5_read_int64(f, "labels", path, labels, &ndim, shape))) return st;
  if (ndim != 1 || shape[0] != t->shape[0])
    return pg_fail(PG_ERR_FORMAT, "%s: 'labels' must be [%lld], one per sample, got %d axes of first size %lld",
                   path, (long long)t->shape[0], ndim, (long long)(ndim ? shape[0] : 0));
  *n = t->shape[0];
  const int64_t per = t->numel / (*n > 0 ? *n : 1);
  for (int64_t i = 0; i < t->numel; i++)
    if (!isfinite(t->data[i]))
      return pg_fail(PG_ERR_ARG, "%s: sample %lld holds a non-finite value (%g)", path, (long long)(i / per),
                     (double)t->data[i]);
  for (int64_t i = 0; i < *n; i++)
    if ((*labels)[i] < 0 || (*labels)[i] >= c->num_classes)
      return pg_fail(PG_ERR_ARG, "%s: label %lld of sample %lld is outside the classifier's classes [0, %lld)",
                     path, (long long)(*labels)[i], (long long)i, (long long)c->num_classes);
  return PG_OK;
}

pg_status pg_score_samples(pg_ctx *ctx, pg_vit *m, const char *samples_path, int64_t batch,
                           pg_score_result *out) {
  memset(out, 0, sizeof *out);
  out->cfg_scale = NAN;
  const pg_vit_config *c = &m->cfg;
  hid_t f = pg_h5_open(samples_path, false);
  if (f < 0) return pg_last_status();
  pg_tensor *x = NULL;
  int64_t *labels = NULL, n = 0;
  float *probs = NULL;
  pg_status st = read_samples(f, samples_path, c, &x, &labels, &n);
  if (!st) {
    pg_h5_attr_string(f, "sampler", out->sampler, sizeof out->sampler);
    pg_h5_attr_int(f, "steps", &out->steps);
    pg_h5_attr_double(f, "cfg_scale", &out->cfg_scale);
    pg_clear_error(); /* an absent or odd attribute only leaves the field empty */
  }
  H5Fclose(f);
  if (!st && n == 0) st = pg_fail(PG_ERR_ARG, "%s holds no sample", samples_path);
  const int64_t K = c->num_classes;
  if (!st) {
    probs = malloc((size_t)(n * K) * sizeof *probs);
    out->per_class_n = calloc((size_t)K, sizeof *out->per_class_n);
    out->per_class_agree = calloc((size_t)K, sizeof *out->per_class_agree);
    if (!probs || !out->per_class_n || !out->per_class_agree)
      st = pg_fail(PG_ERR_MEMORY, "score: out of memory for %lld samples", (long long)n);
  }
  if (!st) st = pg_vit_predict(ctx, m, x->data, n, batch, probs);
  if (!st) st = pg_classify_stats_of(probs, labels, n, K, &out->all);
  if (!st) {
    out->num_classes = K;
    for (int64_t i = 0; i < n; i++) {
      out->per_class_n[labels[i]]++;
      out->per_class_agree[labels[i]] += pg_argmax(probs + i * K, K) == labels[i];
    }
  }
  pg_tensor_free(x);
  free(labels);
  free(probs);
  if (st) pg_score_result_free(out);
  return st;
}

void pg_score_result_free(pg_score_result *r) {
  free(r->per_class_n);
  free(r->per_class_agree);
  r->per_class_n = NULL;
  r->per_class_agree = NULL;
}
