#include "patchgrad/vae/autoencode.h"

#include "patchgrad/autograd/batches.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/gaussian.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"

pg_vae_data_info pg_vae_data_info_of(const pg_latents_info *info) {
  pg_vae_data_info d = {.tf = pg_latent_transform_of(info)};
  snprintf(d.source, sizeof d.source, "%s", info->source);
  return d;
}

pg_status pg_vae_image_shape(const pg_latents_info *info, const char *path, int64_t shape[3]) {
  const int64_t f = info->space_to_depth;
  if (info->channels % (f * f))
    return pg_fail(PG_ERR_ARG, "%s: %lld channels do not divide by space_to_depth %lld squared: "
                               "not a file of images", path, (long long)info->channels, (long long)f);
  shape[0] = info->height * f;
  shape[1] = info->width * f;
  shape[2] = info->channels / (f * f);
  return PG_OK;
}

pg_status pg_vae_check_data(const pg_vae *m, const pg_vae_data_info *trained,
                            const pg_latents_info *info, const char *path) {
  const pg_latent_transform *t = &trained->tf;
  if (info->vae_checkpoint[0])
    return pg_fail(PG_ERR_ARG, "%s holds VAE latents (of %s), not images", path, info->vae_checkpoint);
  if (info->pad != t->pad || info->space_to_depth != t->factor)
    return pg_fail(PG_ERR_ARG, "%s has pad %lld and space_to_depth %lld; the VAE was trained on pad "
                               "%lld and space_to_depth %lld (%s)", path, (long long)info->pad,
                   (long long)info->space_to_depth, (long long)t->pad, (long long)t->factor,
                   trained->source[0] ? trained->source : "unknown source");
  /* 5% of the scale, as the classifier's check (vit/classify.h) */
  const double tol = 0.05 * fabs(t->std);
  if (fabs(info->mean - t->mean) > tol || fabs(info->std - t->std) > tol)
    return pg_fail(PG_ERR_ARG, "%s holds images normalised with mean %g, std %g; the VAE was trained "
                               "on mean %g, std %g (%s): make both from the same training split",
                   path, info->mean, info->std, t->mean, t->std,
                   trained->source[0] ? trained->source : "unknown source");
  int64_t s[3];
  if (pg_vae_image_shape(info, path, s)) return pg_last_status();
  const pg_vae_config *c = &m->cfg;
  if (s[0] != c->height || s[1] != c->width || s[2] != c->in_channels)
    return pg_fail(PG_ERR_ARG, "%s holds [%lld, %lld, %lld] images, the VAE takes [%lld, %lld, %lld]",
                   path, (long long)s[0], (long long)s[1], (long long)s[2], (long long)c->height,
                   (long long)c->width, (long long)c->in_channels);
  return PG_OK;
}

/* fn over each of n samples of [h, w, c] floats */
static pg_status each_sample(pg_status (*fn)(const float *, int64_t, int64_t, int64_t, int64_t, float *),
                             int64_t f, int64_t n, const float *src, int64_t h, int64_t w, int64_t c,
                             float *dst) {
  const int64_t per = h * w * c;
  for (int64_t i = 0; i < n; i++)
    if (fn(src + i * per, h, w, c, f, dst + i * per)) return pg_last_status();
  return PG_OK;
}

pg_status pg_vae_images_of(const pg_latent_transform *tf, int64_t n, const float *samples,
                           int64_t lh, int64_t lw, int64_t lc, float *images) {
  return each_sample(pg_depth_to_space, tf->factor, n, samples, lh, lw, lc, images);
}

pg_status pg_vae_samples_of(const pg_latent_transform *tf, int64_t n, const float *images,
                            int64_t h, int64_t w, int64_t c, float *samples) {
  return each_sample(pg_space_to_depth, tf->factor, n, images, h, w, c, samples);
}

pg_status pg_vae_read_images(const char *path, int64_t limit, const pg_vae *m,
                             const pg_vae_data_info *trained, pg_latents_info *info, float **images,
                             int64_t **labels, int64_t *n) {
  return pg_vae_read_images_with(path, NULL, limit, m, trained, info, images, labels, n);
}

pg_status pg_vae_read_images_with(const char *path, const pg_data_opts *data, int64_t limit,
                                  const pg_vae *m, const pg_vae_data_info *trained,
                                  pg_latents_info *info, float **images, int64_t **labels,
                                  int64_t *n) {
  *images = NULL;
  *labels = NULL;
  *n = 0;
  pg_latents *ds = pg_latents_open_with(path, data, false);
  if (!ds) return pg_last_status();
  *info = ds->info;
  const int64_t count = limit > 0 && limit < ds->info.n ? limit : ds->info.n;
  const size_t bytes = (size_t)(count * ds->sample_numel) * sizeof(float);
  float *raw = NULL;
  pg_status st = pg_vae_check_data(m, trained, &ds->info, path);
  if (!st) {
    raw = malloc(bytes);
    *images = malloc(bytes);
    if (ds->labels) *labels = malloc((size_t)count * sizeof(int64_t));
    if (!raw || !*images || (ds->labels && !*labels))
      st = pg_fail(PG_ERR_MEMORY, "vae: out of memory for %lld images of %s", (long long)count, path);
  }
  if (!st) st = pg_latents_read(ds, 0, count, raw);
  if (!st) st = pg_vae_images_of(&trained->tf, count, raw, ds->info.height, ds->info.width, ds->info.channels, *images);
  if (!st && ds->labels) memcpy(*labels, ds->labels, (size_t)count * sizeof(int64_t));
  if (!st) *n = count;
  free(raw);
  pg_latents_close(ds);
  if (st) {
    free(*images);
    free(*labels);
    *images = NULL;
    *labels = NULL;
  }
  return st;
}

pg_status pg_vae_write_images(const char *path, const pg_vae *m, const pg_vae_data_info *trained,
                              const pg_latents_info *like, const char *description, int64_t n,
                              const float *images, const int64_t *labels) {
  const pg_vae_config *c = &m->cfg;
  const pg_latent_transform *tf = &trained->tf;
  const int64_t f = tf->factor, per = c->height * c->width * c->in_channels;
  if (c->height % f || c->width % f)
    return pg_fail(PG_ERR_ARG, "vae: images %lld x %lld do not divide by the data's space_to_depth %lld",
                   (long long)c->height, (long long)c->width, (long long)f);
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = n;
  info.height = c->height / f;
  info.width = c->width / f;
  info.channels = c->in_channels * f * f;
  info.has_labels = labels != NULL;
  info.num_classes = labels ? like->num_classes : 0;
  info.mean = tf->mean;
  info.std = tf->std;
  info.pad = tf->pad;
  info.space_to_depth = f;
  snprintf(info.source, sizeof info.source, "%s", trained->source);
  snprintf(info.split, sizeof info.split, "%s", like->split);
  snprintf(info.class_names, sizeof info.class_names, "%s", like->class_names);
  snprintf(info.description, sizeof info.description, "%s", description);
  float *samples = malloc((size_t)(n * per) * sizeof *samples);
  if (!samples) return pg_fail(PG_ERR_MEMORY, "vae: out of memory for %lld images", (long long)n);
  pg_status st = pg_vae_samples_of(tf, n, images, c->height, c->width, c->in_channels, samples);
  if (!st) st = pg_latents_save(path, &info, samples, labels);
  free(samples);
  return st;
}

pg_image *pg_vae_images_to_grid(const pg_vae *m, const pg_vae_data_info *trained, int64_t n,
                                const float *images, int cols, int pad) {
  /* the images are the files' samples before the pixel-unshuffle */
  const pg_latent_transform tf = {.pad = trained->tf.pad, .factor = 1, .mean = trained->tf.mean,
                                  .std = trained->tf.std};
  const pg_vae_config *c = &m->cfg;
  return pg_latents_to_grid(&tf, n, images, c->height, c->width, c->in_channels, cols, pad);
}

pg_status pg_vae_write_sheet(const char *path, const pg_vae *m, const pg_vae_data_info *trained,
                             const float *images, const float *recon, const int64_t *labels,
                             int64_t num_classes, int64_t n, int64_t per_class, int64_t cols) {
  const int64_t per = m->cfg.height * m->cfg.width * m->cfg.in_channels;
  const int64_t K = labels ? num_classes : 0;
  if (n < 1 || per_class < 1 || cols < 1)
    return pg_fail(PG_ERR_ARG, "reconstruction sheet: %lld images, %lld per class, %lld columns (each must be >= 1)",
                   (long long)n, (long long)per_class, (long long)cols);
  if (K < 1) cols = cols < n ? cols : n;
  const int64_t c = K > 0 ? K : cols, rows = K > 0 ? per_class : (n / cols < 2 ? n / cols : 2);
  int64_t *pick = malloc((size_t)(rows * c) * sizeof *pick);
  float *tiles = malloc((size_t)(2 * rows * c * per) * sizeof *tiles);
  pg_status st = pick && tiles ? PG_OK : pg_fail(PG_ERR_MEMORY, "reconstruction sheet: out of memory");
  for (int64_t k = 0; !st && k < c; k++) { /* column k: class k, or images k, k + cols */
    int64_t found = 0;
    for (int64_t i = 0; i < n && found < rows; i++)
      if (K > 0 ? labels[i] == k : i % c == k) pick[found++ * c + k] = i;
    if (found < rows)
      st = pg_fail(PG_ERR_ARG, "reconstruction sheet: %lld images of class %lld among the %lld, the sheet needs %lld",
                   (long long)found, (long long)k, (long long)n, (long long)rows);
  }
  for (int64_t r = 0; !st && r < rows; r++)
    for (int64_t k = 0; k < c; k++) {
      const int64_t i = pick[r * c + k];
      memcpy(tiles + ((2 * r) * c + k) * per, images + i * per, (size_t)per * sizeof(float));
      memcpy(tiles + ((2 * r + 1) * c + k) * per, recon + i * per, (size_t)per * sizeof(float));
    }
  pg_image *grid = st ? NULL : pg_vae_images_to_grid(m, trained, 2 * rows * c, tiles, (int)c, 2);
  if (!st) st = grid ? pg_png_write(path, grid) : pg_last_status();
  pg_image_free(grid);
  free(pick);
  free(tiles);
  return st;
}

/* ---- checkpoints ---- */

pg_status pg_vae_checkpoint_config(const pg_vae *m, const pg_vae_data_info *data, double beta,
                                   pg_kv *config) {
  pg_status st = pg_vae_config_to_kv(&m->cfg, config);
  st = st ? st : pg_kv_set_double(config, "beta", beta);
  if (data) {
    st = st ? st : pg_kv_set_string(config, "data_source", data->source);
    st = st ? st : pg_latent_transform_to_kv(&data->tf, config);
  }
  return st;
}

pg_status pg_vae_save(const char *path, pg_vae *m, const pg_vae_data_info *data, double beta,
                      int64_t step) {
  pg_kv config;
  pg_kv_init(&config);
  pg_status st = pg_vae_checkpoint_config(m, data, beta, &config);
  pg_checkpoint ck = {.config = &config, .params = &m->params, .step = &step};
  st = st ? st : pg_checkpoint_save(path, &ck);
  pg_kv_free(&config);
  return st;
}

typedef struct {
  pg_vae *m;
  pg_vae_data_info *data;
} vae_loading;

static pg_params *vae_from_config(void *self, const pg_kv *config, const char *path) {
  vae_loading *l = self;
  pg_vae_config c;
  if (pg_vae_config_from_kv(config, &c)) {
    pg_error_prefix(path);
    return NULL;
  }
  if (l->data) {
    const char *source = "";
    *l->data = (pg_vae_data_info){.tf = {.pad = 0, .factor = 1, .mean = 0, .std = 1}};
    if (pg_latent_transform_from_kv(config, path, &l->data->tf)) return NULL;
    pg_kv_get_string(config, "data_source", &source);
    snprintf(l->data->source, sizeof l->data->source, "%s", source);
  }
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  return pg_vae_init(l->m, &c, &rng) ? NULL : &l->m->params;
}

static void vae_unbuild(void *self) { pg_vae_free(((vae_loading *)self)->m); }

pg_status pg_vae_load(const char *path, pg_vae *m, pg_vae_data_info *data) {
  memset(m, 0, sizeof *m);
  vae_loading l = {m, data};
  return pg_checkpoint_load_model(path, false, &(pg_checkpoint_model){vae_from_config, vae_unbuild, &l});
}

/* ---- whole datasets ---- */

/* One direction of the VAE over a whole array (pg_eval_batches): each
 * batch's output is copied to out at its samples' place. */
typedef struct {
  pg_vae *m;
  pg_rng *rng;       /* encode: draw z (else the posterior mean) */
  bool encode;
  int64_t out_per;   /* floats per output sample */
  float *out;
} coder_job;

static pg_status coder_batch(pg_ctx *ctx, pg_tensor *x, int64_t first, void *self) {
  coder_job *job = self;
  pg_tensor *y;
  if (job->encode) {
    pg_tensor *logvar, *mean = pg_vae_encode(ctx, job->m, x, &logvar);
    y = job->rng ? pg_reparameterize(ctx, mean, logvar, job->rng) : mean;
  } else {
    y = pg_vae_decode(ctx, job->m, x);
  }
  if (!y) return pg_last_status();
  memcpy(job->out + first * job->out_per, y->data, (size_t)(x->shape[0] * job->out_per) * sizeof(float));
  return PG_OK;
}

pg_status pg_vae_encode_all(pg_ctx *ctx, pg_vae *m, const float *images, int64_t n, int64_t batch,
                            pg_rng *rng, float *latents) {
  const pg_vae_config *c = &m->cfg;
  int64_t ls[3];
  pg_vae_latent_shape(c, ls);
  const int64_t img[3] = {c->height, c->width, c->in_channels};
  coder_job job = {m, rng, true, ls[0] * ls[1] * ls[2], latents};
  return pg_eval_batches(ctx, images, n, 3, img, batch, "vae", coder_batch, &job);
}

pg_status pg_vae_decode_all(pg_ctx *ctx, pg_vae *m, const float *latents, int64_t n, int64_t batch,
                            float *images) {
  const pg_vae_config *c = &m->cfg;
  int64_t ls[3];
  pg_vae_latent_shape(c, ls);
  coder_job job = {m, NULL, false, c->height * c->width * c->in_channels, images};
  return pg_eval_batches(ctx, latents, n, 3, ls, batch, "vae", coder_batch, &job);
}

pg_status pg_vae_decode_stored(pg_ctx *ctx, pg_vae *m, double scale_factor,
                               const pg_latent_transform *tf, const float *x, int64_t n,
                               int64_t batch, float *images) {
  if (!(scale_factor > 0) || !isfinite(scale_factor))
    return pg_fail(PG_ERR_ARG, "vae: scale factor %g (need a finite value > 0)", scale_factor);
  int64_t ls[3];
  pg_vae_latent_shape(&m->cfg, ls);
  const int64_t count = n * ls[0] * ls[1] * ls[2];
  float *z = malloc((size_t)count * sizeof *z);
  if (!z) return pg_fail(PG_ERR_MEMORY, "vae: out of memory for %lld latents", (long long)n);
  const double a = tf ? tf->std : 1, b = tf ? tf->mean : 0;
  for (int64_t i = 0; i < count; i++) z[i] = (float)((x[i] * a + b) / scale_factor);
  pg_status st = pg_vae_decode_all(ctx, m, z, n, batch, images);
  free(z);
  return st;
}

pg_status pg_vae_decoder_load(pg_vae_decoder *d, const char *path, double scale_factor,
                              const int64_t latent_shape[3]) {
  memset(d, 0, sizeof *d);
  if (!(scale_factor > 0) || !isfinite(scale_factor))
    return pg_fail(PG_ERR_ARG, "vae: scale factor %g (need a finite value > 0)", scale_factor);
  if ((size_t)snprintf(d->path, sizeof d->path, "%s", path) >= sizeof d->path)
    return pg_fail(PG_ERR_ARG, "vae: checkpoint path too long (%zu characters, at most %zu)", strlen(path),
                   sizeof d->path - 1);
  pg_status st = pg_vae_load(path, &d->model, &d->data);
  if (st) return st;
  int64_t ls[3];
  pg_vae_latent_shape(&d->model.cfg, ls);
  if (ls[0] != latent_shape[0] || ls[1] != latent_shape[1] || ls[2] != latent_shape[2]) {
    pg_vae_free(&d->model);
    return pg_fail(PG_ERR_ARG, "the VAE %s decodes [%lld, %lld, %lld] latents, the samples are [%lld, %lld, %lld]",
                   path, (long long)ls[0], (long long)ls[1], (long long)ls[2], (long long)latent_shape[0],
                   (long long)latent_shape[1], (long long)latent_shape[2]);
  }
  d->scale_factor = scale_factor;
  d->loaded = true;
  return PG_OK;
}

void pg_vae_decoder_free(pg_vae_decoder *d) {
  if (d->loaded) pg_vae_free(&d->model);
  d->loaded = false;
}

void pg_vae_decoder_sample_shape(const pg_vae_decoder *d, int64_t shape[3]) {
  const pg_vae_config *c = &d->model.cfg;
  const int64_t f = d->data.tf.factor;
  shape[0] = c->height / f;
  shape[1] = c->width / f;
  shape[2] = c->in_channels * f * f;
}

pg_status pg_vae_decoder_run(pg_ctx *ctx, pg_vae_decoder *d, const pg_latent_transform *tf,
                             const float *x, int64_t n, int64_t batch, float *samples) {
  const pg_vae_config *c = &d->model.cfg;
  float *images = malloc((size_t)(n * c->height * c->width * c->in_channels) * sizeof *images);
  if (!images) return pg_fail(PG_ERR_MEMORY, "vae: out of memory for %lld images", (long long)n);
  pg_status st = pg_vae_decode_stored(ctx, &d->model, d->scale_factor, tf, x, n, batch, images);
  if (!st) st = pg_vae_samples_of(&d->data.tf, n, images, c->height, c->width, c->in_channels, samples);
  free(images);
  return st;
}

pg_status pg_vae_reconstruct_all(pg_ctx *ctx, pg_vae *m, const float *images, int64_t n,
                                 int64_t batch, pg_rng *rng, const pg_vae_arrays *out, double *mse,
                                 double *kl) {
  if (batch < 1) return pg_fail(PG_ERR_ARG, "vae: batch must be >= 1, got %lld", (long long)batch);
  const pg_vae_config *c = &m->cfg;
  int64_t ls[3];
  pg_vae_latent_shape(c, ls);
  const int64_t per = c->height * c->width * c->in_channels, lper = ls[0] * ls[1] * ls[2];
  const bool grad_was = pg_set_grad_enabled(ctx, false);
  const bool training_was = pg_set_training(ctx, false);
  double se = 0, kl_sum = 0;
  pg_status st = PG_OK;
  for (int64_t s = 0; s < n && !st; s += batch) {
    const int64_t b = n - s < batch ? n - s : batch;
    pg_ctx_reset(ctx);
    const int64_t lshape[4] = {b, ls[0], ls[1], ls[2]};
    pg_tensor *x = pg_from_array(ctx, 4, (int64_t[]){b, c->height, c->width, c->in_channels}, images + s * per);
    pg_tensor *eps = rng ? pg_normal(ctx, 4, lshape, 0.0f, 1.0f, rng) : pg_zeros(ctx, 4, lshape);
    pg_vae_output o;
    pg_tensor *k = NULL;
    if (!x || !eps || pg_vae_forward(ctx, m, x, eps, NULL, &o) || !(k = pg_kl_normal(ctx, o.mean, o.logvar))) {
      st = pg_last_status();
      break;
    }
    kl_sum += (double)k->data[0] * (double)b;
    for (int64_t i = 0; i < b * per; i++) {
      const double d = (double)o.recon->data[i] - x->data[i];
      se += d * d;
    }
    const struct {
      float *dst;
      const pg_tensor *src;
      int64_t per;
    } copies[] = {{out->eps, o.eps, lper},       {out->mean, o.mean, lper}, {out->logvar, o.logvar, lper},
                  {out->z, o.z, lper},           {out->recon, o.recon, per}};
    for (size_t j = 0; j < sizeof copies / sizeof *copies; j++)
      if (copies[j].dst)
        memcpy(copies[j].dst + s * copies[j].per, copies[j].src->data, (size_t)(b * copies[j].per) * sizeof(float));
  }
  pg_ctx_reset(ctx);
  pg_set_grad_enabled(ctx, grad_was);
  pg_set_training(ctx, training_was);
  if (!st && mse) *mse = se / (double)(n * per);
  if (!st && kl) *kl = kl_sum / (double)n;
  return st;
}

pg_status pg_vae_scale_factor(const float *latents, int64_t n, int64_t per, double *scale) {
  const int64_t count = n * per;
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < count; i++) sum += latents[i];
  const double mean = count ? sum / (double)count : 0;
  for (int64_t i = 0; i < count; i++) sq += (latents[i] - mean) * (latents[i] - mean);
  const double std = count ? sqrt(sq / (double)count) : 0;
  if (!(std > 0) || !isfinite(std))
    return pg_fail(PG_ERR_ARG, "vae: the %lld latent values have std %g; no scale makes them unit "
                               "variance", (long long)count, std);
  *scale = 1.0 / std;
  return PG_OK;
}

pg_status pg_vae_write_latents(const char *path, const pg_latents_info *images,
                               const char *vae_checkpoint, double scale, int64_t n, int64_t h,
                               int64_t w, int64_t c, float *latents, const int64_t *labels) {
  if (!(scale > 0) || !isfinite(scale))
    return pg_fail(PG_ERR_ARG, "vae: scale factor %g (need a finite value > 0)", scale);
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = n;
  info.height = h;
  info.width = w;
  info.channels = c;
  info.has_labels = labels != NULL;
  info.num_classes = labels ? images->num_classes : 0;
  snprintf(info.source, sizeof info.source, "vae");
  snprintf(info.split, sizeof info.split, "%s", images->split);
  snprintf(info.class_names, sizeof info.class_names, "%s", images->class_names);
  info.scale_factor = scale;
  if ((size_t)snprintf(info.vae_checkpoint, sizeof info.vae_checkpoint, "%s", vae_checkpoint) >=
      sizeof info.vae_checkpoint)
    return pg_fail(PG_ERR_ARG, "vae: checkpoint path too long (%zu characters, at most %zu)",
                   strlen(vae_checkpoint), sizeof info.vae_checkpoint - 1);
  snprintf(info.description, sizeof info.description,
           "%s latents [%lld, %lld, %lld] of the VAE %.200s, multiplied by scale_factor %.6g (unit "
           "variance); the VAE decodes latents / scale_factor into images of %s",
           images->split[0] ? images->split : "the", (long long)h, (long long)w, (long long)c,
           vae_checkpoint, scale, images->source[0] ? images->source : "its training data");
  for (int64_t i = 0; i < n * h * w * c; i++) latents[i] = (float)(latents[i] * scale);
  return pg_latents_save(path, &info, latents, labels);
}
